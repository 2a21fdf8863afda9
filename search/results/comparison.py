"""Optimizers compared over seeds on Ray workers: the parallel `child_tasks.compare` behind confirmation,
transfer and the baselines of a run.

    table = compare_on_ray([Contender("nos_ab12cd_1", "sign(m) * g"), Contender("adam", "adam")],
                           load_task_config("digits"), seeds=[1, 2, 3])
    table.print()                                   # child_tasks.ComparisonTable, mean ± std per optimizer

Each (optimizer, seed) evaluation (every task of the suite, every training seed of that evaluation seed,
`child_tasks.reward`) is one call on a `search.workers.WorkerPool` actor (the search's own
workers, sized by `search.cluster.worker_options`, replaced when their process dies), so a comparison uses
every worker of the cluster; the task's data is loaded here once and shared through Ray's object store.
Everything that can be checked without training is checked before Ray starts: the optimizer names, the
tasks' data (a missing CIFAR-10 is reported here, with the variable to set); missing or stale reference
values are measured here too. A rich progress bar counts
the trainings. ``address`` None starts a local Ray, or uses the one this process already has.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from child_tasks.compare import ComparisonRow, ComparisonTable
from child_tasks.config import TaskConfig
from child_tasks.problems import load_data
from child_tasks.reward import Evaluation, evaluate
from child_tasks.suite import Suite, load_suite
from child_tasks.train import resolve_optimizer
from search.cluster import connect, disconnect, worker_options
from search.progress import ComparisonProgress
from search.scheduling import Scheduler
from search.workers import EvaluationWorker, WorkerPool


class ComparisonError(RuntimeError):
    """A training that could not be done: it raised (with its traceback), or its worker kept dying."""


@dataclass(frozen=True)
class Contender:
    """One row of a comparison: its label, and a baseline name, reference rule name or rule text
    (anything `child_tasks.resolve_optimizer` takes) with hyper-constant defaults (lr is not one:
    the task's grid chooses it)."""

    label: str
    optimizer: str
    hyper: dict[str, float] = field(default_factory=dict)


def contenders(rules: dict[str, str], baselines: Sequence[str]) -> list[Contender]:
    """Rules (label -> text) then torch baselines; a rule labelled like a baseline becomes ``rule:LABEL``."""
    out = [Contender(f"rule:{label}" if label in baselines else label, text) for label, text in rules.items()]
    return out + [Contender(name, f"torch:{name}") for name in baselines]


class ComparisonWorker(EvaluationWorker):
    """An evaluation worker that evaluates any optimizer (baselines included) and returns the Evaluation."""

    def evaluate(self, optimizer: tuple[str, dict[str, float]],  # type: ignore[override]
                 seed: int) -> dict[str, Any]:
        """Train ``optimizer`` (text or name, hyper-constants) with ``seed``; never raises (see the base)."""
        start = time.perf_counter()
        text, hyper = optimizer
        try:
            result = evaluate(resolve_optimizer(text, hyper), self.tasks, seed, data=self.data,
                              threads=self.threads, device=self.device, time_limit_s=self.time_limit_s)
        except Exception:  # returned, not raised: the caller reports it with the worker's traceback
            return {"status": "failed", "error": traceback.format_exc(), "worker": self.id,
                    "duration": time.perf_counter() - start}
        return {"status": result.status, "result": result, "worker": self.id,
                "duration": time.perf_counter() - start}


def compare_on_ray(rows: Sequence[Contender], task: TaskConfig | Suite, seeds: Sequence[int], *,
                   address: str | None = None, workers: int | None = None, cpus_per_worker: int = 1,
                   gpu_fraction: float = 0.25, time_limit_s: float | None = None, max_retries: int = 2,
                   progress: bool = True, description: str = "compare", console: Console | None = None,
                   data: Any = None) -> ComparisonTable:
    """Evaluate every contender once per seed on ``task`` (a task config or a suite) on Ray workers; the
    table has the rows in the order given. ``data``: each task's data, in order (loaded here when None).
    ``workers`` None: as many as the cluster holds (at most one per training). ``time_limit_s``
    None: the task's. Raises ComparisonError when a training raises or its worker dies more than
    ``max_retries`` times, and the task's data errors (FileNotFoundError, ValueError) before Ray starts."""
    seeds = list(seeds)
    labels = [r.label for r in rows]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ValueError(f"optimizers listed twice: {', '.join(repeated)}")
    if not rows or not seeds:
        raise ValueError("a comparison needs at least one optimizer and one seed")
    for row in rows:  # a bad name fails here, not in a worker
        resolve_optimizer(row.optimizer, row.hyper)
    suite = (task if isinstance(task, Suite) else load_suite(task)).with_references()
    data = [load_data(t) for t in suite.tasks] if data is None else data
    jobs = [(row, seed) for seed in seeds for row in rows]  # seed-major: every optimizer advances together
    started = connect(address, num_cpus=workers * cpus_per_worker if workers else None)
    try:
        results = _run(jobs, suite, data, workers, cpus_per_worker, gpu_fraction, time_limit_s, max_retries,
                       ComparisonProgress(len(jobs), description, progress, console))
    finally:
        disconnect(started)
    table = ComparisonTable(suite.name, suite.tasks[0].metric, seeds)
    table.rows = [ComparisonRow(row.label, [results[row.label, seed] for seed in seeds]) for row in rows]
    return table


def _run(jobs: list[tuple[Contender, int]], suite: Suite, data: list[Any], workers: int | None,
         cpus_per_worker: int, gpu_fraction: float, time_limit_s: float | None, max_retries: int,
         bar: ComparisonProgress) -> dict[tuple[str, int], Evaluation]:
    import ray

    options = worker_options(workers, cpus_per_worker, gpu_fraction)
    pool = WorkerPool(min(options.workers, len(jobs)), options.ray_options, suite.to_mapping(),
                      ray.put(data), options.threads, time_limit_s, ComparisonWorker)
    scheduler = Scheduler(pool, max_retries, describe=lambda job: f"{job[0].label} seed {job[1]}")
    for row, seed in jobs:
        scheduler.add((row, seed), (row.optimizer, dict(row.hyper)), seed)
    results: dict[tuple[str, int], Evaluation] = {}
    try:
        with bar:
            while scheduler.under_way:
                scheduler.feed()
                for done in scheduler.collect():
                    row, seed = done.tag
                    if done.crashed is not None:
                        raise ComparisonError(f"{row.label} seed {seed}: the worker process died on each of "
                                              f"{done.attempts} attempts; last: {done.crashed}")
                    if done.result["status"] == "failed":
                        raise ComparisonError(f"{row.label} seed {seed} raised on worker {done.worker}:\n"
                                              f"{done.result['error']}")
                    results[row.label, seed] = done.result["result"]
                    bar.done(row.label, seed, done.result["result"])
    finally:
        pool.shutdown()
    return results
