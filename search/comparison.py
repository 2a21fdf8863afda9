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

import logging
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from child_tasks.compare import ComparisonRow, ComparisonTable
from child_tasks.config import TaskConfig
from child_tasks.problems import load_data
from child_tasks.reward import Evaluation, evaluate
from child_tasks.suite import Suite, load_suite
from child_tasks.train import resolve_optimizer
from search.cluster import connect, disconnect, worker_options
from search.workers import EvaluationWorker, WorkerPool

log = logging.getLogger(__name__)

DEFAULT_BASELINES = ("adam", "momentum", "sgd", "rmsprop")
WAIT_WARNING_S = 60.0


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


def check_baselines(names: Sequence[str]) -> list[str]:
    """The names, if each is a torch baseline; else ValueError naming it, with close matches."""
    for name in names:
        resolve_optimizer(f"torch:{name}")
    return list(names)


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


class _Bar:
    """Trainings done of all, and the last one finished; a no-op when disabled."""

    def __init__(self, total: int, description: str, enabled: bool, console: Console | None) -> None:
        self._progress = Progress(TextColumn(f"[bold]{description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("trainings"), TimeElapsedColumn(),
                                  TextColumn("{task.fields[last]}"),
                                  console=console, disable=not enabled)
        self._task = self._progress.add_task(description, total=total, last="")

    def __enter__(self) -> _Bar:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def done(self, label: str, seed: int, result: Evaluation) -> None:
        last = f"{label} seed {seed}: {result.reward:.3f}"
        last += "" if result.status == "ok" else f" ({result.status})"
        self._progress.update(self._task, advance=1, last=last)


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
                       _Bar(len(jobs), description, progress, console))
    finally:
        disconnect(started)
    table = ComparisonTable(suite.name, suite.tasks[0].metric, seeds)
    table.rows = [ComparisonRow(row.label, [results[row.label, seed] for seed in seeds]) for row in rows]
    return table


def _run(jobs: list[tuple[Contender, int]], suite: Suite, data: list[Any], workers: int | None,
         cpus_per_worker: int, gpu_fraction: float, time_limit_s: float | None, max_retries: int,
         bar: _Bar) -> dict[tuple[str, int], Evaluation]:
    import ray

    options = worker_options(workers, cpus_per_worker, gpu_fraction)
    pool = WorkerPool(min(options.workers, len(jobs)), options.ray_options, suite.to_mapping(),
                      ray.put(data), options.threads, time_limit_s, ComparisonWorker)
    results: dict[tuple[str, int], Evaluation] = {}
    queue, tries = list(reversed(jobs)), {(row.label, seed): 0 for row, seed in jobs}
    try:
        with bar:
            while queue or pool.busy:
                while queue and pool.idle_worker() is not None:
                    row, seed = queue.pop()
                    tries[row.label, seed] += 1
                    pool.submit((row, seed), (row.optimizer, dict(row.hyper)), seed)
                finished = pool.wait(timeout=WAIT_WARNING_S)
                if not finished and pool.started == 0:
                    log.warning("no worker has started after %.0f s: the cluster may lack the resources each "
                                "worker asks for (%s); still waiting", WAIT_WARNING_S, pool.ray_options)
                for done in finished:
                    row, seed = done.tag
                    if done.crashed is not None:
                        if tries[row.label, seed] > max_retries:
                            attempts = tries[row.label, seed]
                            raise ComparisonError(f"{row.label} seed {seed}: the worker process died on each "
                                                  f"of {attempts} attempts; last: {done.crashed}")
                        log.warning("%s seed %d: worker %s died (%s); retrying", row.label, seed, done.worker,
                                    done.crashed)
                        queue.append((row, seed))
                        continue
                    if done.result["status"] == "failed":
                        raise ComparisonError(f"{row.label} seed {seed} raised on worker {done.worker}:\n"
                                              f"{done.result['error']}")
                    results[row.label, seed] = done.result["result"]
                    bar.done(row.label, seed, done.result["result"])
    finally:
        pool.shutdown()
    return results
