"""A candidate's reward: one or more tasks, each averaged over seeds shared by every rule, each scored by
its `reward` kind, normalised so that tasks can be averaged.

    evaluation = evaluate("exp(sign(g) * sign(m)) * g", suite, seed=0)
    evaluation.reward                 # the mean of the tasks' scores: what the controller learns from
    evaluation.tasks["mnist1d_cnn"]   # that task's score, raw loss, accuracy, lrs and per-seed results

**Common random numbers.** Evaluation seed ``s`` of a task with ``seeds_per_evaluation: k`` trains with
seeds ``s*k, ..., s*k + k - 1``: every rule gets the same initial weights and batch orders, so the
difference between two rules' rewards is a paired one, and a fresh evaluation seed (the confirmation's)
gives fresh training seeds.

**Scores.** ``reward: accuracy`` is NOS's: the validation metric on a 0-100 scale, as it is. The loss
kinds, ``val_loss`` (the final validation loss) and ``train_loss`` (the mean training loss over the run,
the area under its curve, as learned-optimizer benchmarks use), are continuous and normalised against the
task's `Reference`: ``(initial - loss) / (initial - adam)``, 1 for tuned Adam's loss, 0 for no progress,
above 1 for better than Adam, never below 0. Higher is better; a seed whose run diverged scores 0. A
suite averages its tasks' scores, so every task of a suite of several must use a normalised kind.

**References** are measured once per task (tuned Adam and the untrained network, over `REFERENCE_SEEDS`
seeds), stored in the task config (``reference:``) and checked against the task's `fingerprint`: when
missing or stale they are measured again and cached under `child_tasks.config.cache_dir`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import torch

from child_tasks.config import CONFIG_DIR, NORMALISED, Reference, TaskConfig, cache_dir
from child_tasks.optimizers import OptimizerSpec, resolve_optimizer
from child_tasks.problems import load_data, make_problem
from child_tasks.train import TrainResult, train
from configuration.files import json_safe, read_bounded, write_atomic
from dsl import Rule

log = logging.getLogger(__name__)

REFERENCE_SEEDS = 3
# What changes a training, hence a reference: not the config's name, seeds, time limit or eval batch.
_FINGERPRINT_KEYS = ("task", "model", "data", "metric", "reward", "epochs", "batch_size", "lr_grid",
                     "short_run_epochs", "blowup_factor", "weight_decay", "lr_schedule")


def training_seeds(task: TaskConfig, seed: int) -> list[int]:
    """The training seeds of evaluation seed ``seed`` (module docstring, common random numbers)."""
    k = task.seeds_per_evaluation
    return [seed * k + i for i in range(k)]


def raw_value(task: TaskConfig, result: TrainResult) -> float | None:
    """The quantity the task's reward is made of (a loss, or the metric); None for a run that ended."""
    if result.diverged:
        return None
    if task.reward == "train_loss":
        return result.mean_train_loss
    if task.reward == "val_loss":
        return result.val_loss
    return result.val_metric


def score(task: TaskConfig, value: float | None) -> float:
    """A raw value as the task's score (module docstring): higher is better, 0 for a run that ended."""
    if value is None or not math.isfinite(value):
        return 0.0
    if task.reward not in NORMALISED:
        return value
    ref = task.reference
    if ref is None:
        raise ValueError(f"task {task.name or task.task!r} has reward {task.reward!r} but no reference "
                         "values: measure them first (child_tasks.reward.with_reference)")
    return max(0.0, (ref.initial - value) / (ref.initial - ref.adam))


@dataclass
class TaskScore:
    """One task's part of an evaluation: its score (mean over the seeds), the raw values and metrics."""
    task: str
    reward: str  # the task's reward kind
    metric: str  # accuracy or bleu: what tables show beside the score
    score: float
    scores: list[float]  # per training seed
    raw: list[float | None]  # per seed: the loss (or metric) the score is made of; None where it ended
    results: list[TrainResult]

    @property
    def val_metric(self) -> float:
        return statistics.fmean(r.val_metric for r in self.results)

    @property
    def test_metric(self) -> float:
        return statistics.fmean(r.test_metric for r in self.results)

    @property
    def diverged(self) -> int:
        """Seeds whose run ended early."""
        return sum(r.diverged for r in self.results)

    def summary(self) -> dict[str, Any]:
        """Plain data without the per-seed curves: what the store and the tables keep per task."""
        return json_safe({"score": self.score, "reward": self.reward, "metric": self.metric,
                          "val_metric": self.val_metric, "test_metric": self.test_metric, "raw": self.raw,
                          "scores": self.scores, "lrs": [r.lr for r in self.results],
                          "seeds": [r.seed for r in self.results], "diverged": self.diverged,
                          "statuses": [r.status for r in self.results]})


@dataclass
class Evaluation:
    """A rule (or baseline) on a task or suite at one evaluation seed. Reads like a `TrainResult` where
    tables need it to (reward, lr, curves, test metric, status), so comparisons hold either."""
    optimizer: str
    seed: int
    tasks: dict[str, TaskScore]
    wall_time: float = 0.0

    @property
    def reward(self) -> float:
        """The mean of the tasks' scores."""
        return statistics.fmean(t.score for t in self.tasks.values())

    @property
    def first(self) -> TrainResult:
        """The first task's first seed: its lr and curves stand for the evaluation in one-line views."""
        return next(iter(self.tasks.values())).results[0]

    @property
    def status(self) -> str:
        """ok, or the first non-ok status of any seed of any task."""
        return next((r.status for t in self.tasks.values() for r in t.results if r.status != "ok"), "ok")

    @property
    def diverged(self) -> bool:
        return self.status != "ok"

    @property
    def reason(self) -> str | None:
        return next((r.reason for t in self.tasks.values() for r in t.results if r.reason), None)

    @property
    def lr(self) -> float | None:
        return self.first.lr

    @property
    def val_metric(self) -> float:
        return statistics.fmean(t.val_metric for t in self.tasks.values())

    @property
    def test_metric(self) -> float:
        return statistics.fmean(t.test_metric for t in self.tasks.values())

    @property
    def train_loss(self) -> list[float]:
        return self.first.train_loss

    @property
    def val_curve(self) -> list[float]:
        return self.first.val_curve

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: the reward, each task's summary, and every training's full result."""
        return json_safe({"optimizer": self.optimizer, "seed": self.seed, "reward": self.reward,
                          "status": self.status, "wall_time": self.wall_time,
                          "tasks": {name: t.summary() for name, t in self.tasks.items()},
                          "results": {name: [r.to_dict() for r in t.results]
                                      for name, t in self.tasks.items()}})


def evaluate(optimizer: Rule | str | OptimizerSpec, tasks: Sequence[TaskConfig], seed: int = 0, *,
             data: Sequence[Any] | None = None, threads: int | None = 1, device: str | torch.device = "cpu",
             time_limit_s: float | None = None, hyper: dict[str, float] | None = None,
             log_fn: Callable[[str], None] | None = None) -> Evaluation:
    """Train ``optimizer`` on every task at every training seed of evaluation ``seed``, and score it.

    ``tasks`` is one suite (see `child_tasks.suite`); ``data`` holds each task's data, in order, when the
    caller has it loaded already (a search worker does). ``time_limit_s`` bounds each training (the
    task's own limit when None)."""
    spec = resolve_optimizer(optimizer, hyper)
    start = time.perf_counter()
    scores: dict[str, TaskScore] = {}
    for i, task in enumerate(tasks):
        name = task.name or task.task
        results = [train(spec, task, s, data=data[i] if data is not None else None, threads=threads,
                         device=device, time_limit_s=time_limit_s, log=log_fn)
                   for s in training_seeds(task, seed)]
        scores[name] = _task_score(name, task, results)
    return Evaluation(spec.label, seed, scores, wall_time=time.perf_counter() - start)


def evaluate_batch(optimizers: Sequence[Rule | str | OptimizerSpec], tasks: Sequence[TaskConfig],
                   seed: int = 0, *, data: Sequence[Any] | None = None, threads: int | None = 1,
                   device: str | torch.device = "cpu", time_limit_s: float | None = None,
                   hyper: dict[str, float] | None = None, max_models: int | None = None,
                   log_fn: Callable[[str], None] | None = None) -> list[Evaluation]:
    """`evaluate` for each of ``optimizers``, their trainings batched (`child_tasks.batched.train_batch`:
    the same results within float tolerance); one Evaluation per optimizer, in order. Each one's
    ``wall_time`` is its share of the batch's time."""
    from child_tasks.batched import train_batch

    specs = [resolve_optimizer(o, hyper) for o in optimizers]
    scores: list[dict[str, TaskScore]] = [{} for _ in specs]
    for i, task in enumerate(tasks):
        per_seed = [train_batch(specs, task, s, data=data[i] if data is not None else None, threads=threads,
                                device=device, time_limit_s=time_limit_s, max_models=max_models, log=log_fn)
                    for s in training_seeds(task, seed)]
        for j in range(len(specs)):
            scores[j][task.name or task.task] = _task_score(task.name or task.task, task,
                                                            [batch[j] for batch in per_seed])
    return [Evaluation(spec.label, seed, s, wall_time=sum(r.wall_time for t in s.values() for r in t.results))
            for spec, s in zip(specs, scores, strict=True)]


def _task_score(name: str, task: TaskConfig, results: list[TrainResult]) -> TaskScore:
    raw = [raw_value(task, r) for r in results]
    per_seed = [score(task, v) for v in raw]
    return TaskScore(name, task.reward, task.metric, statistics.fmean(per_seed), per_seed, raw, results)


# --- references ------------------------------------------------------------------------------------

def fingerprint(task: TaskConfig) -> str:
    """A short hash of everything about ``task`` that changes a training (so its reference values)."""
    values = task.model_dump(mode="json", include=set(_FINGERPRINT_KEYS))
    return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]


def reference_is_current(task: TaskConfig) -> bool:
    """Whether ``task`` needs no reference (accuracy) or holds one measured on this very task."""
    return task.reward not in NORMALISED or (task.reference is not None
                                             and task.reference.fingerprint == fingerprint(task))


def measure_reference(task: TaskConfig, seeds: int = REFERENCE_SEEDS, data: Any = None,
                      threads: int | None = 1) -> Reference:
    """Tuned Adam's loss and the untrained network's, each a mean over training seeds 0..seeds-1."""
    data = load_data(task) if data is None else data
    problem = make_problem(task, torch.device("cpu"), data)
    split = "train" if task.reward == "train_loss" else "val"
    initial, adam = [], []
    previous = torch.get_num_threads()
    try:
        for seed in range(seeds):
            result = train("torch:adam", task, seed, data=data, threads=threads)
            value = raw_value(task, result)
            if value is None:
                raise ValueError(f"measuring the reference of task {task.name or task.task!r}: Adam's run "
                                   f"with seed {seed} ended early ({result.status}: {result.reason})")
            adam.append(value)
            if threads:
                torch.set_num_threads(threads)
            with torch.random.fork_rng():  # the caller's generator is left as it was, as train leaves it
                torch.manual_seed(seed)  # the weights every rule starts from at this seed (as in train)
                model = problem.build_model()
            initial.append(problem.evaluate(model, split, task.metric)[1])
    finally:
        torch.set_num_threads(previous)
    start, tuned = statistics.fmean(initial), statistics.fmean(adam)
    if not tuned < start:  # a normalised score (start - loss) / (start - tuned) needs Adam to make progress
        raise ValueError(f"task {task.name or task.task!r}: tuned Adam's {task.reward} ({tuned:.4g}, mean of "
                         f"{seeds} seeds) is not below the untrained network's ({start:.4g}), so a "
                         f"{task.reward} reward cannot be normalised against it: train longer (epochs, "
                         "data.num_samples, lr_grid) or use reward: accuracy")
    return Reference(initial=start, adam=tuned, seeds=seeds, fingerprint=fingerprint(task))


def _cache_file(task: TaskConfig) -> Path:
    return cache_dir() / "references" / f"{fingerprint(task)}.json"


SHIPPED_REFERENCES = CONFIG_DIR / "references.json"  # fingerprint -> Reference, for the shipped configs


@cache
def shipped_references() -> dict[str, Reference]:
    """Reference values measured for the tasks the shipped run configs derive (a funnel's stages, the
    confirmation's longer budget), keyed by fingerprint, so that a first quickstart does not measure them
    (minutes on one core); tests/test_funnel.py checks the quickstart's are all here, and
    benchmarks/references.py writes the file. An unreadable file counts as empty: the values are measured."""
    if not SHIPPED_REFERENCES.is_file():
        return {}
    try:
        raw = json.loads(read_bounded(SHIPPED_REFERENCES, 1 << 20, "shipped references"))
        return {key: Reference.model_validate(value) for key, value in raw.items()
                if isinstance(value, dict) and value.get("fingerprint") == key}
    except (OSError, ValueError, AttributeError) as err:
        log.warning("shipped reference values %s unreadable (%s); they are measured when needed",
                    SHIPPED_REFERENCES, err)
        return {}


def with_reference(task: TaskConfig, data: Any = None, log_fn: Callable[[str], None] = log.warning
                   ) -> TaskConfig:
    """``task`` with current reference values: its own, else the shipped ones (`shipped_references`), else
    the cache's, else measured now (and cached).
    A task whose reward is not normalised is returned as it is."""
    if reference_is_current(task):
        return task
    name = task.name or task.task
    path = _cache_file(task)
    reference = shipped_references().get(fingerprint(task))
    if reference is None and path.is_file():
        try:
            reference = Reference.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError) as err:
            log_fn(f"reference cache {path} is unreadable ({err}); measuring again")
        if reference is not None and reference.fingerprint != fingerprint(task):
            reference = None
    if reference is None:
        why = "missing" if task.reference is None else "stale (the task changed since it was measured)"
        log_fn(f"task {name}: reference values {why}; measuring tuned Adam over {REFERENCE_SEEDS} seeds")
        reference = measure_reference(task, data=data)
        try:  # a cache only: a read-only home must not stop the search
            write_atomic(reference.model_dump_json(), path)
        except OSError as err:
            log_fn(f"could not cache the reference at {path}: {err}")
    return task.model_copy(update={"reference": reference})
