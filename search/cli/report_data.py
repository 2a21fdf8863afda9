"""What `nos report` shows, read from run stores and rule records: plain data, nothing trained or written.

    run = read_run("runs/20260101-120000-ppo", top=5)   # counts, progress, updates, best rules (+records)
    run.progress.best_so_far                             # best ok reward after each training
    records = read_library(directory=None)               # every exported record (discovered_rules)

A store is read through `search.store.RunStore` in short autocommit reads: the file is in WAL mode, so a
search that is still writing is neither blocked nor sees a half-written transaction (each read sees the
last commit). A folder that is not a run, or a run with no finished evaluation, is a `ReportError` whose
message is one line.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

import discovered_rules
from discovered_rules import RuleRecord
from dsl import RuleError, parse, to_latex, to_sympy
from search.cli.browse import task_columns
from search.funnel import baseline_scores, funnel_counts, ranked, stages_of
from search.results.baselines import BaselineCache, read_cache
from search.results.winners import run_records
from search.store import FILENAME, STATUSES, Evaluation, RunStore, StoreError

TRAINED = ("ok", "diverged", "failed")  # went to a worker: what the search's budget counts


class ReportError(RuntimeError):
    """Not a run, an empty run, or a store or record that cannot be read; the message is one line."""


@dataclass(frozen=True)
class Progress:
    """The search's reward against the number of trainings (x counts trainings, from 1)."""

    trainings: list[int] = field(default_factory=list)
    best_so_far: list[float | None] = field(default_factory=list)  # best ok reward after each training
    batch_end: list[int] = field(default_factory=list)  # trainings done at the end of each batch
    batch_mean: list[float] = field(default_factory=list)  # the mean reward of the batch's trainings


@dataclass(frozen=True)
class TopRule:
    """One of a run's best rules: its evaluation, formula and LaTeX (None: text that does not parse), and
    its confirmed record when the run's rules were exported."""

    rank: int
    evaluation: Evaluation
    formula: str | None
    latex: str | None
    record: RuleRecord | None
    stages: dict[int, float] = field(default_factory=dict)  # its score at each funnel stage it completed


@dataclass(frozen=True)
class RunData:
    run_dir: Path
    run_id: str
    controller: str
    task: str
    counts: dict[str, int]
    progress: Progress
    updates: list[dict]
    top: list[TopRule]
    tasks: list[str]  # the suite's task names, where the evaluations stored per-task scores
    baselines: BaselineCache | None  # the baselines at the run's own budget, when the run has them
    funnel: list[int] = field(default_factory=list)  # rules that completed each funnel stage (stage 0 first)
    stage_baselines: dict[int, dict[str, float]] = field(default_factory=dict)  # stage -> baseline -> score

    @property
    def label(self) -> str:
        return f"{self.run_dir.name} ({self.controller})"


def rule_forms(text: str | None) -> tuple[str | None, str | None]:
    """The rule's sympy formula and LaTeX, or (None, None) for text that is not a rule."""
    try:
        rule = parse(text or "")
    except RuleError:
        return None, None
    return str(to_sympy(rule, exact=False)), to_latex(rule)


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def progress(rows: list[Evaluation]) -> Progress:
    """Best-so-far and batch-mean reward over the trainings, in the order the samples were added."""
    out = Progress()
    best: float | None = None
    batch_rewards: dict[int, list[float]] = {}
    last_batch = None
    for row in rows:
        if row.status not in TRAINED:
            continue
        if last_batch is not None and row.batch != last_batch and batch_rewards.get(last_batch):
            out.batch_end.append(out.trainings[-1])
            out.batch_mean.append(statistics.fmean(batch_rewards[last_batch]))
        last_batch = row.batch
        if row.status == "ok" and row.reward is not None:
            best = row.reward if best is None else max(best, row.reward)
        if row.reward is not None:  # a diverged training has its (low) reward too; a failed one none
            batch_rewards.setdefault(row.batch, []).append(row.reward)
        out.trainings.append(len(out.trainings) + 1)
        out.best_so_far.append(best)
    if last_batch is not None and batch_rewards.get(last_batch):
        out.batch_end.append(out.trainings[-1])
        out.batch_mean.append(statistics.fmean(batch_rewards[last_batch]))
    return out


def _task_name(config: dict) -> str:
    task = config.get("task", "?")
    return (task.get("name") or task.get("task") or "?") if isinstance(task, dict) else str(task)


def read_run(run_dir: str | Path, top: int = 5, directory: str | Path | None = None) -> RunData:
    """The run's report data (module docstring); ReportError for a folder that is not a run or is empty."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"{run_dir}: " + ("a file, not a run directory" if run_dir.exists()
                                            else "no such run directory"))
    if not (run_dir / FILENAME).is_file():
        raise ReportError(f"{run_dir}: not a run directory (it has no {FILENAME})")
    try:
        with RunStore(run_dir, read_only=True) as store:
            run_id, config, counts = store.run_id, store.config, store.counts()
            funnel = stages_of(config)
            rows, updates, ranks = store.evaluations(), store.updates(), ranked(store, top, funnel)
            reached, stage_baselines = funnel_counts(store, funnel), baseline_scores(store, funnel)
            directory = directory if directory is not None else store.records_dir  # the run's own folder
        baselines = read_cache(run_dir)
    except (StoreError, OSError, ValueError) as err:  # ConfigError (a bad baselines.json) is a ValueError
        raise ReportError(" ".join(str(err).split())) from None
    if sum(counts[s] for s in STATUSES if s != "pending") == 0:
        raise ReportError(f"{run_dir}: run {run_id} has no finished evaluation yet, nothing to report")
    if baselines is not None and baselines.run_id != run_id:
        baselines = None  # copied from another run: not this run's line to beat
    try:
        records = run_records(run_id, directory)
    except (discovered_rules.RecordError, OSError) as err:
        raise ReportError(" ".join(str(err).split())) from None
    best = [r.row for r in ranks]
    top_rules = [TopRule(rank, r.row, *rule_forms(r.row.rule), records.get(r.row.canonical_key), r.scores)
                 for rank, r in enumerate(ranks, 1)]
    controller = config.get("controller", {})
    return RunData(run_dir, run_id, controller.get("kind", "?") if isinstance(controller, dict) else "?",
                   _task_name(config), counts, progress(rows), updates, top_rules, task_columns(best),
                   baselines, reached, stage_baselines)


def read_library(directory: str | Path | None = None) -> list[RuleRecord]:
    """Every exported record in ``directory`` (default: `discovered_rules.default_folder`), by name."""
    try:
        return discovered_rules.records(directory)
    except (discovered_rules.RecordError, OSError) as err:
        raise ReportError(" ".join(str(err).split())) from None
