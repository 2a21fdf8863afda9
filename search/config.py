"""Run configs of a search: the child task, the controller, the search's budget and workers, tracking.

A run config is a YAML mapping (configs/quickstart.yaml is the default):

    task: mnist1d_cnn               # a task config name (configs/NAME.yaml), path or inline mapping, a list
                                    # of them, or a suite config (child_tasks.suite): the reward is the mean
                                    # of the tasks' scores
    task_overrides: {epochs: 2}     # dotted keys into every task config (child_tasks.config.override)
    controller: {kind: ppo, batch_size: 50}           # a ControllerConfig mapping
    search: {budget: 1000, patience: 20, max_batches_ahead: 1, workers: null, cpus_per_worker: 1,
             models_per_worker: 1, gpu_fraction: 0.25, invalid_reward: 0.0, max_retries: 2, eval_seed: 0,
             time_limit_s: null}
    confirm: {top_k: 3, seeds: 2, budget_scale: 2.0, baselines: [adam, momentum, sgd, rmsprop]}
    funnel:                         # stages after the search's own reward (stage 0); see search.funnel
      - {promote: 0.1, budget_scale: 4, seeds: 2}                     # the same tasks, 4x longer
      - {promote: 0.5, task: [mnist1d_cnn, nmt_tiny], seeds: 2}       # other kinds of task
    wandb: {mode: disabled, project: neural-optimizer-search, entity: null}

The budget counts the search's own child-task trainings (stage 0, its cost), not samples: a sample that
is invalid or a duplicate of a rule already trained costs no training and no budget. A search never
trains more than the budget: the batch that reaches it is cut after the sample that does (`search.driver`),
and no batch is drawn after it. It also stops when ``patience`` batches in a row brought no rule to train
(a controller that only proposes rules it has seen would otherwise spin). The funnel's stage trainings and
the confirmation's are extra, not counted in the budget: their number follows from ``promote``, ``seeds``
and ``top_k``. ``confirm`` retrains the
search's best rules at the end (`search.results.winners`); absent or ``top_k: 0``, nothing is confirmed.
``funnel`` promotes the best rules of each stage to the next, a longer budget or other tasks, as the
results arrive (`search.funnel`); a rule's rank is then its score at the highest stage it reached.

    config = load_search_config("configs/quickstart.yaml", ["search.budget=200", "controller.kind=random"])

``KEY=VALUE`` overrides (``nos search --set KEY=VALUE``) use dotted keys and YAML values
(``search.time_limit_s=30``, ``task=cifar10_convnet``, ``task_overrides.epochs=2``) and are applied to the
raw mapping before validation, so a misspelt override key is reported like a misspelt file key. Every
number is bounded both ways and every whole number is strict (`configuration.models`: ``search.budget=1e30``,
``=2.5`` or ``=true`` is refused with the key and its bound, before Ray starts); a task name or path is at
most 4096 characters and quoted in part. Every problem is reported at once with its key path and what was
expected; unknown keys get the closest known
keys suggested (a misspelt key silently ignored would change an experiment). Reading, wording and
overrides are `configuration`'s, shared by every config of the project.

`SearchConfig.to_mapping()` writes the task configs out in full (inline, overrides and reference values
applied), so the copy a run keeps in its results store is self-contained: resuming a run never re-reads
configs/*.yaml, which may have changed since, and never measures a reference again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, field_validator, model_validator

from child_tasks.config import CONFIG_DIR, TaskConfig
from child_tasks.suite import Suite, load_suite
from child_tasks.train import resolve_optimizer
from configuration import (MAX_BUDGET, MAX_SEEDS, MAX_WORKERS, Budget, Seed, Seeds, Strict, Workers,
                           apply_overrides, check_name, expect_mapping, flatten, load_yaml, quoted,
                           validation_error, whole)
from controller import ControllerConfig

DEFAULT_CONFIG = CONFIG_DIR / "quickstart.yaml"
DEFAULT_BASELINES = ("adam", "momentum", "sgd", "rmsprop")  # the torch optimizers rules are measured against


def check_baselines(names: Sequence[str]) -> list[str]:
    """The names, if each is a torch baseline; else ValueError naming it, with close matches."""
    for name in names:
        resolve_optimizer(f"torch:{name}")
    return list(names)


MAX_BUDGET_SCALE = 100.0  # a stage's or the confirmation's factor on the tasks' epochs and time limit
Scale = Annotated[float, Field(gt=0.0, le=MAX_BUDGET_SCALE)]


class SearchSection(Strict):
    """How much to search and on what: the training budget, when to stop early, the workers, penalties."""

    budget: Budget = Field(description=f"the search's child-task trainings in all, at most {MAX_BUDGET:,} "
                           "(invalid and duplicate samples cost none; the batch that reaches it is cut to "
                           "it); the funnel's and the confirmation's trainings are extra")
    patience: Budget = Field(20, description="stop early after this many batches in a row without a rule "
                             "to train (all invalid or duplicates)")
    max_batches_ahead: whole(64, 0) = Field(1, description="batches drawn beyond the one the next update "
                                            "needs, so that the workers never wait for the controller; "
                                            "samples are this many updates stale (PPO weighs them by their "
                                            "stored log-probabilities); at most 64")
    workers: Workers | None = Field(None, description=f"evaluation actors, at most {MAX_WORKERS} and at most "
                                    "what the cluster holds (checked on connecting); None: the cluster's "
                                    "CPUs / cpus_per_worker, or its GPUs / gpu_fraction when it has GPUs")
    cpus_per_worker: whole(1024) = Field(1, description="CPUs each worker reserves, and its torch threads "
                                         "(at most 1024)")
    models_per_worker: whole(1024) = Field(1, description="rules a worker trains side by side in one call "
                                           "(child_tasks.train_batch; the same rewards within float "
                                           "tolerance): more keep a GPU busy, 1 trains one rule at a time; "
                                           "at most 1024")
    gpu_fraction: float = Field(0.25, ge=1.0 / MAX_WORKERS, le=1.0, description="share of a GPU each "
                                f"worker reserves, at least 1/{MAX_WORKERS} (only on a cluster that has "
                                "GPUs)")
    invalid_reward: float = Field(0.0, description="the reward of a rule that cannot be trained: "
                                  "undecodable, rejected by the static checks, or failed")
    max_retries: whole(100, 0) = Field(2, description="re-runs of an evaluation whose worker process died "
                                       "(at most 100)")
    eval_seed: Seed = Field(0, description="the child task's seed for every evaluation")
    time_limit_s: float | None = Field(None, gt=0.0, description="one evaluation's wall time; the task "
                                       "config's when None")


class ConfirmSection(Strict):
    """How winners are confirmed at the end of a search (`search.results.winners.confirm_and_export`)."""

    top_k: whole(1000, 0) = Field(5, description="best distinct rules of the run to confirm and export "
                                  "(at most 1000); 0: none")
    seeds: Seeds = Field(3, description=f"seeds per rule and baseline (other than the search's "
                         f"eval_seed), at most {MAX_SEEDS}")
    budget_scale: Scale = Field(2.0, description="factor on the task's epochs and time limit, at most "
                                f"{MAX_BUDGET_SCALE:g}")
    baselines: tuple[str, ...] = Field(DEFAULT_BASELINES, max_length=16,
                                       description="torch baselines trained alongside")

    @field_validator("baselines")
    @classmethod
    def _known_baselines(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(check_baselines(value))  # a misspelt baseline fails now, not after the search


MAX_STAGES = 8


def _task_names(value: Any) -> Any:
    """A task value (a name or path, a mapping, a list of them) whose names are not too long to be files."""
    if isinstance(value, str):
        check_name(value, "task config name or path")
    elif isinstance(value, list):
        for item in value:
            _task_names(item)
    return value


class FunnelStage(Strict):
    """One stage of the funnel after stage 0 (the search's own reward): the fraction of the previous
    stage's rules promoted into it (η, as in successive halving), its tasks, budget and seeds."""

    name: str | None = Field(None, max_length=64, description="shown in tables; stage<k> when unset")
    promote: float = Field(gt=0.0, le=1.0, description="η: the fraction of the previous stage's rules "
                           "promoted into this stage (their best, as the results arrive)")
    task: str | dict[str, Any] | list[str | dict[str, Any]] | None = Field(
        None, description="a task config name, path or mapping, a list of them, or a suite config; None: "
        "the search's own tasks (with task_overrides)")
    task_overrides: dict[str, Any] = Field(default_factory=dict, description="dotted keys into every task "
                                           "config of this stage")
    budget_scale: Scale = Field(1.0, description="factor on the tasks' epochs and time limit, at most "
                                f"{MAX_BUDGET_SCALE:g}")
    seeds: Seeds = Field(1, description=f"evaluation seeds, at most {MAX_SEEDS}, shared by every rule of "
                         "the stage (1000 k, 1000 k + 1, ... at stage k: never the search's or the "
                         "confirmation's)")
    suite: dict[str, Any] | None = Field(None, description="the stage's tasks as trained (budget scaled, "
                                         "reference values measured): written by nos into a run's config, "
                                         "so that a resume trains exactly what the run did")

    @field_validator("task", mode="before")
    @classmethod
    def _bounded_names(cls, value: Any) -> Any:
        return _task_names(value)


class WandbSection(Strict):
    """Optional tracking with Weights & Biases; offline needs no account, disabled imports nothing."""

    mode: Literal["disabled", "offline", "online"] = "disabled"
    project: str = "neural-optimizer-search"
    entity: str | None = None


class SearchConfig(Strict):
    """Everything a search run is built from (see the module docstring)."""

    task: str | dict[str, Any] | list[str | dict[str, Any]] = Field(
        description="a task config name, path or mapping, a list of them, or a suite config")
    task_overrides: dict[str, Any] = Field(default_factory=dict)
    controller: ControllerConfig = ControllerConfig()
    search: SearchSection
    confirm: ConfirmSection = ConfirmSection(top_k=0)  # absent: no confirmation
    funnel: list[FunnelStage] = Field(default_factory=list, max_length=MAX_STAGES)
    wandb: WandbSection = WandbSection()
    _suite: Suite = PrivateAttr()
    _stages: tuple[Suite, ...] = PrivateAttr(default=())

    @field_validator("task", mode="before")
    @classmethod
    def _name_or_mapping(cls, value: Any) -> Any:
        if not isinstance(value, str | Mapping | list):
            raise ValueError(f"expected a task config name (e.g. mnist1d_cnn), a path, a mapping, a list of "
                             f"them or a suite config; got {quoted(value)}")
        return _task_names(value)

    @model_validator(mode="after")
    def _load_task(self) -> SearchConfig:
        key = "task_overrides" if self.task_overrides else "task"
        try:
            suite = load_suite(self.task, flatten(self.task_overrides) if self.task_overrides else None)
        except (FileNotFoundError, ValueError) as err:  # ConfigError is a ValueError
            # A model-level error has no key path of its own: name the key here, and indent the task
            # config's own list of problems under it.
            raise ValueError(f"{key}: " + str(err).replace("\n  ", "\n    ")) from None
        self._suite = suite
        self._stages = tuple(self._stage_suite(k, stage) for k, stage in enumerate(self.funnel, 1))
        return self

    def _stage_suite(self, k: int, stage: FunnelStage) -> Suite:
        """Stage ``k``'s suite: as stored (``suite``), else its tasks (the search's by default) scaled."""
        key = f"funnel[{k - 1}]." + ("suite" if stage.suite is not None else
                                    "task_overrides" if stage.task_overrides else "task")
        try:
            if stage.suite is not None:
                return load_suite(stage.suite)
            if stage.task is None:
                overrides = {**flatten(self.task_overrides), **flatten(stage.task_overrides)}
                suite = load_suite(self.task, overrides or None)
            else:
                suite = load_suite(stage.task, flatten(stage.task_overrides) or None)
        except (FileNotFoundError, ValueError) as err:
            raise ValueError(f"{key}: " + str(err).replace("\n  ", "\n    ")) from None
        return suite.scaled(stage.budget_scale)

    @property
    def suite(self) -> Suite:
        """The validated tasks the reward averages over, overrides applied."""
        return self._suite

    @property
    def stages(self) -> tuple[Suite, ...]:
        """The funnel's suites, stage 1 first (empty without a funnel)."""
        return self._stages

    @property
    def task_config(self) -> TaskConfig:
        """The first (often the only) task: the one that single-task views, such as transfer, use."""
        return self._suite.tasks[0]

    def with_references(self, log_fn: Any = None) -> SearchConfig:
        """A copy whose tasks hold current reference values (measured now where missing or stale), so that
        a run stores them and normalises every reward against the same values, resumed or not."""
        suite = self._suite.with_references(log_fn)
        stages = tuple(s.with_references(log_fn) for s in self._stages)
        if suite == self._suite and stages == self._stages:
            return self
        values = self.model_dump(mode="json")
        values.update(task=suite.to_mapping(), task_overrides={})
        for stage, stage_suite in zip(values["funnel"], stages, strict=True):
            stage["suite"] = stage_suite.to_mapping()
        return SearchConfig.from_mapping(values, "config")

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None, source: str = "<mapping>",
                     overrides: Sequence[str] | Mapping[str, Any] = ()) -> SearchConfig:
        """Validate a run config given as a mapping, after applying ``overrides`` (``KEY=VALUE`` strings or
        a mapping of dotted keys); ``source`` names the config in errors."""
        values = expect_mapping(values, source, "task: ..., search: ...")
        # Task keys live in task_overrides: `task` is often a name, with no keys to set.
        values = apply_overrides(values, overrides, source, hints={"task": "use task_overrides.{rest}=..."})
        try:
            return cls.model_validate(values)
        except ValidationError as err:
            given = ", ".join(quoted(item) for item in overrides)  # each cut short: a value may be huge
            where = f"{source} with overrides [{given}]" if overrides else source
            raise validation_error(where, "search config", err, cls) from None

    def to_mapping(self) -> dict[str, Any]:
        """Plain data with the task config inline and its overrides applied (self-contained, for the
        results store and for resuming)."""
        values = self.model_dump(mode="json")
        values["task"] = self._suite.to_mapping()
        values["task_overrides"] = {}
        for stage, stage_suite in zip(values["funnel"], self._stages, strict=True):
            stage["suite"] = stage_suite.to_mapping()
        return values

    def with_overrides(self, overrides: Sequence[str] | Mapping[str, Any]) -> SearchConfig:
        """A validated copy with ``overrides`` applied."""
        return SearchConfig.from_mapping(self.model_dump(mode="json"), "config", overrides)


def load_search_config(path: str | Path | None = None,
                       overrides: Sequence[str] | Mapping[str, Any] = ()) -> SearchConfig:
    """Read a run config (configs/quickstart.yaml when ``path`` is None) and apply ``overrides``."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    return SearchConfig.from_mapping(load_yaml(path, "run config"), source=str(path), overrides=overrides)

