"""Task suites: what a search scores each rule on, one task or several whose scores are averaged.

A run config's ``task`` is any of:

    task: mnist1d_cnn                          # a task config (configs/NAME.yaml, a path, or a mapping)
    task: [mnist1d_cnn, digits_loss]           # a list of them: a suite
    task: embedded                             # a suite config: a YAML file with a `suite:` list

    suite = load_suite(["mnist1d_cnn", "digits_loss"], overrides={"epochs": 4})
    suite.tasks                                # validated TaskConfigs, in order; names are unique

Every task of a suite of several must have a normalised reward (`child_tasks.reward.NORMALISED`), since
a suite's reward is the mean of its tasks' scores: averaging a 0-100 accuracy with a loss score of about
1 would let one task decide alone. Every problem names the task (its position and name) it concerns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from child_tasks.config import (NORMALISED, ConfigError, TaskConfig, config_path, load_task_config, override,
                                task_config_from_dict)
from configuration import load_yaml

MAX_TASKS = 16


@dataclass(frozen=True)
class Suite:
    """The tasks a rule is scored on (one, or several averaged), with the suite's name."""
    name: str
    tasks: tuple[TaskConfig, ...]

    @property
    def names(self) -> list[str]:
        return [t.name or t.task for t in self.tasks]

    def to_mapping(self) -> dict[str, Any]:
        """Every task config inline, in full, as a suite config: what a run stores so that resuming never
        re-reads files (`load_suite` reads it back)."""
        return {"name": self.name, "suite": [t.model_dump(mode="json") for t in self.tasks]}

    def scaled(self, budget_scale: float) -> Suite:
        """This suite with every task's budget scaled (`scaled_task`): the confirmation's and a funnel
        stage's longer budgets. A longer budget is a new task, with reference values of its own."""
        if budget_scale == 1.0:
            return self
        return Suite(self.name, tuple(scaled_task(t, budget_scale) for t in self.tasks))

    def with_references(self, log_fn: Any = None) -> Suite:
        """This suite with every normalised task's reference values current (`child_tasks.reward`)."""
        from child_tasks.reward import with_reference  # training code: config-only users never import it

        kwargs = {} if log_fn is None else {"log_fn": log_fn}
        return Suite(self.name, tuple(with_reference(t, **kwargs) for t in self.tasks))


def scaled_task(task: TaskConfig, budget_scale: float) -> TaskConfig:
    """The task with its epochs (at least the short run's) and time limit scaled by ``budget_scale``."""
    epochs = max(round(task.epochs * budget_scale), math.ceil(task.short_run_epochs), 1)
    changes: dict[str, Any] = {"epochs": epochs}
    if task.time_limit_s is not None:
        changes["time_limit_s"] = task.time_limit_s * max(budget_scale, 1.0)
    return override(task, changes)


def is_suite_file(path: Path) -> bool:
    """Whether ``path`` holds a suite config (a mapping with a `suite` key)."""
    try:
        raw = load_yaml(path)
    except (OSError, ConfigError):
        return False  # load_task_config reports what is wrong with it
    return isinstance(raw, Mapping) and "suite" in raw


def load_suite(spec: str | Path | Mapping[str, Any] | Sequence[Any],
               overrides: Mapping[str, Any] | None = None) -> Suite:
    """The suite ``spec`` names (module docstring), with ``overrides`` (dotted keys) applied to each task.
    Raises ConfigError or FileNotFoundError naming the task at fault."""
    name, items = _items(spec)
    if not items:
        raise ConfigError(f"suite {name!r}: it lists no tasks")
    if len(items) > MAX_TASKS:
        raise ConfigError(f"suite {name!r}: {len(items)} tasks, at most {MAX_TASKS}")
    tasks = []
    for i, item in enumerate(items):
        where = f"suite {name!r}, task {i + 1}" if len(items) > 1 else ""
        try:
            if isinstance(item, Mapping):
                source = "the inline task config" + (f" ({where})" if where else "")
                task = task_config_from_dict(item, source=source)
            elif isinstance(item, str | Path):
                task = load_task_config(item)
            else:
                raise ConfigError(f"expected a task config name, path or mapping, got {item!r}")
            if overrides:
                task = override(task, overrides)
        except FileNotFoundError as err:
            raise FileNotFoundError(f"{where}: {err}" if where else str(err)) from None
        except ConfigError as err:
            raise ConfigError(f"{where}: {err}" if where else str(err)) from None
        tasks.append(task)
    names = [t.name or t.task for t in tasks]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigError(f"suite {name!r}: tasks named twice: {', '.join(repeated)} (give inline configs a "
                          "`name`)")
    if len(tasks) > 1:
        for task, task_name in zip(tasks, names, strict=True):
            if task.reward not in NORMALISED:
                raise ConfigError(f"suite {name!r}: task {task_name!r} has reward {task.reward!r}, which is "
                                  f"not normalised; a suite averages its tasks' scores, so use reward: "
                                  f"{' or '.join(NORMALISED)}")
    return Suite(name, tuple(tasks))


def _items(spec: Any) -> tuple[str, list[Any]]:
    """The suite's name and its task items, from any of the forms in the module docstring."""
    if isinstance(spec, TaskConfig):
        return spec.name or spec.task, [spec.model_dump(mode="json")]
    if isinstance(spec, Mapping):
        if "suite" not in spec:
            return str(spec.get("name") or spec.get("task") or "inline"), [spec]
        return _suite_mapping(spec, "the inline suite")
    if isinstance(spec, str | Path):
        path = config_path(spec)
        if path.is_file() and is_suite_file(path):
            return _suite_mapping(load_yaml(path, "suite config"), str(path), path.stem)
        return Path(str(spec)).stem, [spec]
    if isinstance(spec, Sequence):
        items = list(spec)
        return "+".join(_label(i) for i in items) or "empty", items
    raise ConfigError(f"expected a task config name, a path, a mapping or a list of them, got {spec!r}")


def _suite_mapping(raw: Mapping[str, Any], source: str, default_name: str = "suite") -> tuple[str, list[Any]]:
    unknown = sorted(set(raw) - {"suite", "name", "description"})
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)} (a suite config has suite, name "
                          "and description)")
    items = raw["suite"]
    if not isinstance(items, list):
        raise ConfigError(f"{source}: suite must be a list of task configs, got {type(items).__name__}")
    return str(raw.get("name") or default_name), items


def _label(item: Any) -> str:
    if isinstance(item, Mapping):
        return str(item.get("name") or item.get("task") or "inline")
    return Path(str(item)).stem
