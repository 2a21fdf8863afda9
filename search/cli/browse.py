"""Tables of rules for ``nos rules list``: the reference rules, the discovered records, a run's best rules.

    reference_table()                     # name, rule text, sympy formula, state of dsl.known_rules()
    discovered_table(directory)           # each record: task, reward mean ± std, gain over the best baseline
    listing = run_listing("runs/x", top=20, baselines=("adam", "sgd"))
    listing.table()                       # rank, reward, gain, confirmed reward and gain, rule, key

A run's listing ranks the store's ok evaluations (one per canonical key). Two gains, each measured alike:

* ``gain``: the search reward minus the best baseline trained on the run's own task, budget and eval seed
  (`search.results.baselines`: computed once, cached in the run directory);
* ``confirmed gain``: for rules exported by `search.results.winners`, the confirmed mean reward (more
  seeds, longer budget) minus the best baseline mean of the same confirmation, from the run's records.

The caption says where each comes from, and how many of the run's samples ended in each status. Rules
are shown in the rule language (`readable`), which can be pasted back; sympy's formula, which cannot
(``Min(...)``, ``**``), is in `nos rules show` and the --json/--csv rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

import discovered_rules
from discovered_rules import RuleRecord, best_baseline
from dsl import RuleError, from_sympy, known_rules, parse, to_sympy
from search.cli.terminal import shown

if TYPE_CHECKING:  # a run's store and baselines are imported where a run is listed
    from search.results.baselines import BaselineCache
    from search.store import Evaluation


def formula(rule_text: str) -> str:
    """The rule's sympy formula as text (shorter to read than the rule's own text for most rules)."""
    return str(to_sympy(parse(rule_text), exact=False))


def readable(rule_text: str) -> str:
    """The rule in the rule language, as short as its sympy formula: the formula read back by
    `dsl.from_sympy` (``min(g, m)`` where sympy writes ``Min(g, m)``, ``^`` for ``**``), so that it can be
    pasted into `nos rules show` or `RuleOptimizer`; the rule's own text where the reading back fails."""
    try:
        return str(from_sympy(to_sympy(parse(rule_text), exact=False)))
    except (RuleError, ValueError, TypeError, RecursionError):
        return rule_text


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def record_gain(rec: RuleRecord) -> tuple[float, str] | None:
    """The record's mean reward minus its best baseline's mean, and that baseline's name."""
    best = best_baseline(rec.baselines)
    if best is None or not rec.rewards:
        return None
    return statistics.fmean(rec.rewards.values()) - best[1], best[0]


def signed(value: float | None) -> str:
    return "-" if value is None else f"{value:+.3f}"


def task_columns(rows: Sequence[Evaluation]) -> list[str]:
    """The task names of a run's evaluations (their stored per-task scores), in the suite's order."""
    names: list[str] = []
    for row in rows:
        for name in ((row.result or {}).get("tasks") or {}):
            if name not in names:
                names.append(name)
    return names


def task_cells(row: Evaluation, tasks: Sequence[str]) -> list[str]:
    """Each task's score of one evaluation, with its validation metric (accuracy or BLEU) beside it."""
    stored = (row.result or {}).get("tasks") or {}
    cells = []
    for name in tasks:
        part = stored.get(name)
        if not isinstance(part, dict) or part.get("score") is None:
            cells.append("-")
            continue
        metric = part.get("val_metric")
        label = "acc" if part.get("metric") == "accuracy" else part.get("metric", "")
        beside = f" ({label} {metric:.1f})" if isinstance(metric, float) else ""
        cells.append(f"{part['score']:.3f}{beside}")
    return cells


def reference_table() -> Table:
    """The reference rules: name, rule text (the update is w <- w - lr * rule), formula, state."""
    table = Table(title="Reference rules (update: w <- w - lr * rule)")
    for column in ("name", "rule", "formula (sympy)", "state"):
        table.add_column(column, overflow="fold")
    for name, rule in known_rules().items():
        table.add_row(name, str(rule), str(to_sympy(rule, exact=False)), ", ".join(rule.state) or "-")
    return table


def discovered_table(directory: str | Path | None = None) -> Table | None:
    """The records in ``directory`` (default: `discovered_rules.default_folder`), or None when there are
    none."""
    records = discovered_rules.records(directory)
    if not records:
        return None
    table = Table(title=f"Discovered rules ({shown(discovered_rules.folder(directory))})",
                  caption="reward: mean ± std over the record's seeds; gain: over its best baseline on the "
                          "same seeds", caption_justify="left")
    for column in ("name", "task", "reward", "gain", "rule", "run", "date"):
        table.add_column(column, overflow="fold", justify="right" if column in ("reward", "gain") else "left")
    for rec in records:
        mean, std = mean_std(list(rec.rewards.values())) if rec.rewards else (None, None)
        gain = record_gain(rec)
        cells = (rec.name, rec.task or "-", "-" if mean is None else f"{mean:.3f} ± {std:.3f}",
                 "-" if gain is None else f"{gain[0]:+.3f} ({gain[1]})", readable(rec.rule),
                 rec.run_id or "-", rec.date.isoformat())
        table.add_row(*map(shown, cells))  # a record's text is shown as text (search.cli.terminal)
    return table


@dataclass(frozen=True)
class RunRow:
    rank: int
    evaluation: Evaluation
    formula: str  # sympy's spelling (in --json and --csv)
    text: str  # the rule language's, as short as the formula (`readable`): what the table shows
    gain: float | None  # search reward minus the best baseline at the run's budget
    record: RuleRecord | None  # the confirmed export of this rule, if any
    stages: dict[int, float] = field(default_factory=dict)  # its score at each funnel stage it completed

    @property
    def confirmed_gain(self) -> float | None:
        gain = record_gain(self.record) if self.record is not None else None
        return None if gain is None else gain[0]


@dataclass(frozen=True)
class RunListing:
    run_dir: Path
    run_id: str
    task: str
    counts: dict[str, int]
    rows: list[RunRow]
    baselines: BaselineCache | None
    records_dir: Path
    funnel: list[int] = field(default_factory=list)  # rules that completed each stage (with a funnel)

    @property
    def stages(self) -> int:
        """The funnel's stages after stage 0."""
        return max(0, len(self.funnel) - 1)

    def table(self) -> Table:
        # Every text here may come from the store or a user (search.cli.terminal): shown, never markup.
        table = Table(title=shown(f"run {self.run_id} ({self.run_dir}), task {self.task}: best rules"),
                      caption_justify="left")
        tasks = task_columns([row.evaluation for row in self.rows])
        stages = [f"stage {s}" for s in range(1, self.stages + 1)]
        numeric = ("rank", "reward", *tasks, *stages, "gain", "confirmed", "conf. gain")
        for column in ("rank", "reward", *tasks, *stages, "gain", "confirmed", "conf. gain", "rule", "key"):
            table.add_column(shown(column), justify="right" if column in numeric else "left",
                             overflow="fold", no_wrap=column == "key")
        for row in self.rows:
            rec = row.record
            confirmed = "-"
            if rec is not None and rec.rewards:
                mean, std = mean_std(list(rec.rewards.values()))
                confirmed = f"{mean:.3f} ± {std:.3f} ({rec.name})"
            scores = [f"{row.stages[s]:.3f}" if s in row.stages else "-" for s in range(1, self.stages + 1)]
            cells = (str(row.rank), f"{row.evaluation.reward:.3f}", *task_cells(row.evaluation, tasks),
                     *scores, signed(row.gain), confirmed, signed(row.confirmed_gain), row.text,
                     row.evaluation.canonical_key or "-")
            table.add_row(*map(shown, cells))
        table.caption = shown(self.caption())
        return table

    def caption(self) -> str:
        from search.results.baselines import FILENAME as BASELINES_FILE
        from search.store import STATUSES

        counts = ", ".join(f"{status} {self.counts.get(status, 0)}" for status in STATUSES)
        lines = [f"samples: {sum(self.counts.values())} ({counts})"]
        if self.funnel:
            from search.funnel import reached

            lines.append(f"funnel: rules that completed each stage ({reached(self.funnel)}); rules are "
                         "ranked by the highest stage they completed, then their score there (stage k: mean "
                         "reward over its seeds)")
        if self.baselines is None:
            lines.append("gain: the run has no baselines at its budget (nos rules list RUN_DIR "
                         "--compute-baselines trains them once)")
        else:
            best = best_baseline({k: [v] for k, v in self.baselines.rewards.items()})
            others = ", ".join(f"{k} {v:.2f}" for k, v in self.baselines.rewards.items())
            lines.append(f"gain: search reward minus the best baseline at the run's budget, seed "
                         f"{self.baselines.seed} ({best[0] if best else '-'}; {others}), computed "
                         f"{self.baselines.date}, cached in {self.run_dir / BASELINES_FILE}")
        confirmed = sum(row.record is not None for row in self.rows)
        lines.append(f"confirmed: {confirmed} of these rules have records in {self.records_dir} (mean ± std "
                     "over their seeds at the longer budget); conf. gain: over the best baseline of the same "
                     "confirmation" if confirmed else
                     f"confirmed: none of these rules has a record in {self.records_dir} "
                     "(nos rules export RUN_DIR confirms and exports them)")
        return "\n".join(lines)


def run_listing(run_dir: str | Path, top: int = 20, *, baselines: Sequence[str] = (), compute: bool = False,
                directory: str | Path | None = None, address: str | None = None, progress: bool = True,
                console: Console | None = None) -> RunListing:
    """The run's ``top`` best rules with their gains (module docstring); StoreError without a store."""
    from search.funnel import funnel_counts, ranked, stages_of
    from search.results.baselines import run_baselines
    from search.results.winners import run_records
    from search.store import RunStore

    run_dir = Path(run_dir)
    with RunStore(run_dir, read_only=True) as store:
        funnel = stages_of(store.config)
        top_rules = ranked(store, top, funnel)
        reached = funnel_counts(store, funnel)
        run_id, counts, best = store.run_id, store.counts(), [r.row for r in top_rules]
        task = store.config.get("task", {})
        directory = directory if directory is not None else store.records_dir  # the run's own folder
    cache = run_baselines(run_dir, baselines, compute=compute, address=address, progress=progress,
                          console=console) if baselines and best else None
    if cache is not None:  # the cache may hold more baselines than were asked for: use those asked for
        cache = cache.model_copy(update={"rewards": {b: cache.rewards[b] for b in baselines}})
    best_reward = max(cache.rewards.values()) if cache is not None else None
    records = run_records(run_id, directory)
    rows = [RunRow(rank, row, formula(row.rule), readable(row.rule),
                   None if best_reward is None else row.reward - best_reward, records.get(row.canonical_key),
                   at.scores)
            for rank, (row, at) in enumerate(zip(best, top_rules, strict=True), 1)]
    name = (task.get("name") or task.get("task", "?")) if isinstance(task, dict) else str(task)
    return RunListing(run_dir, run_id, name, counts, rows, cache,
                      discovered_rules.folder(directory), reached)
