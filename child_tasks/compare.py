"""Compare rules and baselines on one task over several seeds: the table behind transfer experiments.

Each optimizer is trained with `train` (so with its own lr chosen from the grid) once per seed, and the
table gives the mean and sample standard deviation of the validation metric (the reward: 0 for a run
that ended early) and of the test metric, with the lrs chosen and the number of failed runs.

    table = compare(["sgd", "adam", "powersign"], "digits", seeds=[0, 1, 2])
    table.print()            # a rich table
    table.to_rows()          # plain dicts, for JSON or pandas
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from child_tasks.config import TaskConfig, load_task_config
from child_tasks.train import OptimizerSpec, TrainResult, resolve_optimizer, train
from dsl import Rule

Optimizers = Sequence[Rule | str | OptimizerSpec] | Mapping[str, Rule | str | OptimizerSpec]


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


@dataclass
class ComparisonRow:
    name: str
    results: list[TrainResult]

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
    def failed(self) -> int:
        return sum(r.diverged for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "mean": self.mean, "std": self.std, "test_mean": self.test_mean,
                "test_std": self.test_std, "values": self.rewards, "seeds": [r.seed for r in self.results],
                "lrs": [r.lr for r in self.results], "failed": self.failed,
                "seconds": sum(r.wall_time for r in self.results)}


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

    def row(self, name: str) -> ComparisonRow:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def to_rows(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.rows]

    def to_rich(self) -> Any:
        from rich.table import Table

        table = Table(title=f"{self.task}: validation {self.metric} over seeds {self.seeds}")
        for column in ("optimizer", f"val {self.metric}", f"test {self.metric}", "lrs", "failed", "seconds"):
            table.add_column(column, justify="left" if column in ("optimizer", "lrs") else "right",
                             no_wrap=column != "optimizer")
        for r in self.rows:
            table.add_row(r.name, f"{r.mean:.2f} ± {r.std:.2f}", f"{r.test_mean:.2f} ± {r.test_std:.2f}",
                          " ".join(f"{lr:g}" if lr is not None else "-" for lr in r.to_dict()["lrs"]),
                          str(r.failed), f"{r.to_dict()['seconds']:.1f}")
        table.caption = f"spread (best - worst mean) {self.spread:.2f}; largest seed std {self.max_std:.2f}"
        return table

    def print(self, console: Any = None) -> None:
        from rich.console import Console

        (console or Console()).print(self.to_rich())

    def __str__(self) -> str:
        width = max([len(r.name) for r in self.rows] + [9])
        lines = [f"{self.task}: validation {self.metric}, mean ± std over seeds {self.seeds}"]
        for r in self.rows:
            lines.append(f"  {r.name:{width}s}  {r.mean:6.2f} ± {r.std:5.2f}   failed {r.failed}")
        lines.append(f"  spread {self.spread:.2f}, largest seed std {self.max_std:.2f}")
        return "\n".join(lines)


def compare(rules_and_baselines: Optimizers, task: TaskConfig | str | Path,
            seeds: Sequence[int] | None = None, *, progress: Callable[[TrainResult], None] | None = None,
            **train_options: Any) -> ComparisonTable:
    """Train each optimizer on ``task`` once per seed (the config's seeds when None) and tabulate.

    ``rules_and_baselines`` is a list (labels are the names or rule text) or a mapping label -> optimizer.
    ``train_options`` go to `train` (threads, device, time_limit_s, data, ...). ``progress`` is called
    with each result as it arrives.
    """
    config = task if isinstance(task, TaskConfig) else load_task_config(task)
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
    table = ComparisonTable(config.name or config.task, config.metric, seeds)
    for label, spec in specs:
        results = []
        for seed in seeds:
            result = train(spec, config, seed, **train_options)
            results.append(result)
            if progress is not None:
                progress(result)
        table.rows.append(ComparisonRow(label, results))
    return table
