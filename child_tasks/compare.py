"""Compare rules and baselines on a task or suite over several seeds: the table behind confirmation,
calibration and transfer experiments.

Each optimizer is evaluated with `child_tasks.reward.evaluate` (so with its own lr chosen from the grid,
its reward averaged over the task's training seeds, the same for every optimizer) once per evaluation
seed, and the table gives the mean and sample standard deviation of the reward (0 for a run that ended
early), each task's score where there are several, the validation and test metric beside it (accuracy or
BLEU: what people read), the lrs chosen and the number of failed runs. `paired` gives two rows' paired
difference and its z: every optimizer saw the same seeds, so differences are paired.

    table = compare(["sgd", "adam", "powersign"], "mnist1d_cnn", seeds=[0, 1, 2])
    table.print()            # a rich table
    table.to_rows()          # plain dicts, for JSON or pandas
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from child_tasks.config import TaskConfig
from child_tasks.optimizers import OptimizerSpec, resolve_optimizer
from child_tasks.reward import Evaluation, evaluate
from child_tasks.suite import Suite, load_suite
from dsl import Rule

Optimizers = Sequence[Rule | str | OptimizerSpec] | Mapping[str, Rule | str | OptimizerSpec]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def paired(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """The mean of the paired differences a - b and its z (the mean over its standard error): inf when
    every difference is the same non-zero value, 0 when they are all 0, nan with fewer than 2 pairs."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    if len(diffs) < 2:
        return (diffs[0] if diffs else math.nan), math.nan
    mean, sd = statistics.fmean(diffs), statistics.stdev(diffs)
    if sd == 0:
        return mean, (math.copysign(math.inf, mean) if mean else 0.0)
    return mean, mean / (sd / math.sqrt(len(diffs)))


@dataclass
class ComparisonRow:
    name: str
    results: list[Evaluation]

    @property
    def rewards(self) -> list[float]:
        return [r.reward for r in self.results]

    @property
    def mean(self) -> float:
        return mean_std(self.rewards)[0]

    @property
    def std(self) -> float:
        return mean_std(self.rewards)[1]

    @property
    def test_mean(self) -> float:
        return mean_std([r.test_metric for r in self.results])[0]

    @property
    def test_std(self) -> float:
        return mean_std([r.test_metric for r in self.results])[1]

    @property
    def val_mean(self) -> float:
        return mean_std([r.val_metric for r in self.results])[0]

    @property
    def failed(self) -> int:
        return sum(r.diverged for r in self.results)

    def task_scores(self, task: str) -> list[float]:
        """One task's score at each evaluation seed."""
        return [r.tasks[task].score for r in self.results]

    def to_dict(self) -> dict[str, Any]:
        tasks = list(self.results[0].tasks) if self.results else []
        return {"name": self.name, "mean": self.mean, "std": self.std, "test_mean": self.test_mean,
                "test_std": self.test_std, "val_metric": self.val_mean, "values": self.rewards,
                "seeds": [r.seed for r in self.results], "lrs": [r.lr for r in self.results],
                "tasks": {t: {"scores": self.task_scores(t),
                              "val_metric": [r.tasks[t].val_metric for r in self.results]} for t in tasks},
                "failed": self.failed, "seconds": sum(r.wall_time for r in self.results)}


@dataclass
class ComparisonTable:
    task: str
    metric: str
    seeds: list[int]
    rows: list[ComparisonRow] = field(default_factory=list)

    @property
    def spread(self) -> float:
        """Best mean minus worst mean: how far apart the task puts these optimizers."""
        means = [r.mean for r in self.rows]
        return max(means) - min(means) if means else 0.0

    @property
    def max_std(self) -> float:
        """The largest seed-to-seed standard deviation of any one optimizer."""
        return max((r.std for r in self.rows), default=0.0)

    @property
    def tasks(self) -> list[str]:
        """The suite's task names (one, for a single task)."""
        return list(self.rows[0].results[0].tasks) if self.rows and self.rows[0].results else []

    def paired(self, a: str, b: str) -> tuple[float, float]:
        """Row a's reward minus row b's, paired by seed: the mean difference and its z."""
        return paired(self.row(a).rewards, self.row(b).rewards)

    def row(self, name: str) -> ComparisonRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def to_rows(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]

    def to_rich(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.task}: reward over seeds {self.seeds}")
        tasks = self.tasks if len(self.tasks) > 1 else []
        columns = ["optimizer", "reward", *(f"{t} score" for t in tasks), f"val {self.metric}",
                   f"test {self.metric}", "lrs", "failed", "seconds"]
        names = max((len(r.name) for r in self.rows), default=9)
        for column in columns:  # rich narrows wrappable columns first: only the lrs may give way
            table.add_column(column, justify="left" if column in ("optimizer", "lrs") else "right",
                             no_wrap=column != "lrs", overflow="ellipsis" if column == "lrs" else "fold",
                             min_width=min(names, 24) if column == "optimizer" else None)
        for r in self.rows:
            per_task = [_pm(*mean_std(r.task_scores(t)), 3) for t in tasks]
            table.add_row(r.name, _pm(r.mean, r.std, 3), *per_task,
                          _pm(*mean_std([e.val_metric for e in r.results]), 2),
                          _pm(r.test_mean, r.test_std, 2),
                          " ".join(f"{lr:g}" if lr is not None else "-" for lr in r.to_dict()["lrs"]),
                          str(r.failed), f"{r.to_dict()['seconds']:.1f}")
        table.caption = (f"reward: the mean of the tasks' scores; spread (best - worst mean) "
                         f"{self.spread:.3f}, largest seed std {self.max_std:.3f}; {self.metric} (mean "
                         "over tasks) beside it")
        return table

    def print(self, console: Any = None) -> None:
        from rich.console import Console

        (console or Console()).print(self.to_rich())

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [9])
        lines = [f"{self.task}: reward, mean ± std over seeds {self.seeds} (val {self.metric} beside it)"]
        for r in self.rows:
            lines.append(f"  {r.name:{width}s}  {r.mean:7.3f} ± {r.std:6.3f}   {self.metric} "
                         f"{r.val_mean:6.2f}   failed {r.failed}")
        lines.append(f"  spread {self.spread:.3f}, largest seed std {self.max_std:.3f}")
        return "\n".join(lines)


def compare(rules_and_baselines: Optimizers, task: TaskConfig | Suite | str | Path | Sequence[Any],
            seeds: Sequence[int] | None = None, *, progress: Callable[[Evaluation], None] | None = None,
            **train_options: Any) -> ComparisonTable:
    """Evaluate each optimizer on ``task`` (a task config, a suite, or anything `load_suite` reads) once
    per evaluation seed (the first task's config seeds when None) and tabulate.

    ``rules_and_baselines`` is a list (labels are the names or rule text) or a mapping label -> optimizer.
    ``train_options`` go to `evaluate` (threads, device, time_limit_s, data, ...). ``progress`` is called
    with each evaluation as it arrives. Reference values missing or stale are measured first.
    """
    suite = (task if isinstance(task, Suite) else load_suite(task)).with_references()
    config = suite.tasks[0]
    seeds = list(config.seeds if seeds is None else seeds)
    if isinstance(rules_and_baselines, Mapping):
        items = list(rules_and_baselines.items())
    else:
        items = [(resolve_optimizer(o).label, o) for o in rules_and_baselines]
    labels = [label for label, _ in items]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise ValueError(f"optimizers listed twice: {', '.join(duplicates)}")
    specs = [(label, resolve_optimizer(o)) for label, o in items]  # fail on a bad name before training
    table = ComparisonTable(suite.name, config.metric, seeds)
    for label, spec in specs:
        results = []
        for seed in seeds:
            result = evaluate(spec, suite.tasks, seed, **train_options)
            results.append(result)
            if progress is not None:
                progress(result)
        table.rows.append(ComparisonRow(label, results))
    return table


def _pm(mean: float, std: float, digits: int) -> str:
    return f"{mean:.{digits}f} ± {std:.{digits}f}"
