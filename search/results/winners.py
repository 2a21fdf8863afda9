"""Confirm a run's best rules with more seeds and a longer budget, next to the baselines, and export them.

    confirmed = confirm_and_export("runs/20250101-120000-ppo", top_k=5, seeds=3, budget_scale=2.0,
                                   baselines=("adam", "momentum", "sgd", "rmsprop"))
    confirmed.table.print()              # every winner and baseline, mean ± std over the seeds
    [e.record.name for e in confirmed.exported]     # ["nos_3f9a1c_1", ...]

The top-K rules of the run's store (status ok, one per canonical key, in the funnel's order,
`search.funnel.ranked`: the highest stage reached, then the score there) are trained again
on the run's task or suite with each task's ``epochs`` (and time limit) scaled by ``budget_scale`` (so
with reference values of its own, measured for the longer budget), on seeds other than the
search's ``eval_seed`` (the seed that picked them, whose luck would flatter them), together with the
baselines on the same seeds (`search.results.comparison.compare_on_ray`: one Ray call per optimizer and seed).
Each rule is then written by `discovered_rules.export` as ``<name>.json`` and ``<name>.py``: its text,
formula, LaTeX and key (from `make_record`), the reward per seed, the baselines' rewards on the same seeds,
the val-metric curve per seed, the most often chosen lr as the optimizer's default lr, the run id, and as
``config`` the run's config with a ``confirmation`` entry (the confirmed task, seeds, scale, the rule's
search rank, reward and evaluation id, and its score at each funnel stage it completed).

Each record carries its verdict (`discovered_rules.Verdict`, by `discovered_rules.verdict`) against the
best baseline (the highest mean on the confirmation seeds): n paired seeds, the gain (mean paired
difference), t and p of a one-sided paired t-test; it beats that baseline with at least
`discovered_rules.MIN_SEEDS` (5) seeds and p <= 0.05, and with fewer its outcome is "not enough seeds". A
rule that did not beat it is exported all the same, and recorded, shown and described in its generated
module as one that did not.

Names are ``nos_<run short id>_<rank>`` with the rank in the search: stable for a run, lower-case, never a
reference rule's name. Exporting never silently replaces a record: where the name is taken, the record
takes the next free ``nos_<id>_<rank>_<n>``. With ``force`` a record of the same run and the same rule
(canonical key) is replaced in place, and what the confirmation does not recompute (its transfer results
and held-out panel) is carried over; a record of another rule, another run or a hand-made one is never
replaced.

The search driver calls `confirm_and_export` at the end of every search (a resumed one too) with the
run config's ``confirm`` section (`search.config.ConfirmSection`, re-exported here); ``nos rules export``
calls it too.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

import discovered_rules
from child_tasks.compare import ComparisonTable
from child_tasks.reward import Evaluation as TaskEvaluation
from child_tasks.suite import Suite
from discovered_rules import RecordError, RuleRecord, make_record, verdict
from search.config import DEFAULT_BASELINES, ConfirmSection, SearchConfig, check_baselines  # noqa: F401 (ConfirmSection re-exported)
from search.funnel import ranked
from search.results.comparison import compare_on_ray, contenders
from search.store import Evaluation, RunStore, StoreError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    record: RuleRecord
    json_path: Path
    py_path: Path


@dataclass(frozen=True)
class Confirmation:
    """What `confirm_and_export` did: the comparison table, the records written (best search rank first)."""

    run_id: str
    task: Suite  # the confirmed tasks (longer budget)
    table: ComparisonTable
    exported: list[Exported]


def record_name(run_id: str, rank: int) -> str:
    """``nos_<run short id>_<rank>``: the last 6 letters and digits of the run id (its random part)."""
    short = re.sub(r"[^a-z0-9]", "", run_id.lower())[-6:] or "run"
    return f"nos_{short}_{rank}"


def confirmation_seeds(count: int, eval_seed: int) -> list[int]:
    """``count`` seeds from 0 up, skipping the seed the search evaluated with."""
    return [s for s in range(count + 1) if s != eval_seed][:count]


def confirmed_suite(suite: Suite, budget_scale: float) -> Suite:
    """The suite with every task's budget scaled (`child_tasks.suite.scaled_task`) and its reference values
    current."""
    def note(message: str) -> None:  # the longer budget is a new task: say so, not merely "stale"
        log.warning("confirmation at %g x the search's epochs: %s", budget_scale, message)

    return suite.scaled(budget_scale).with_references(note)


def run_records(run_id: str, directory: str | Path | None = None) -> dict[str, RuleRecord]:
    """Canonical key -> record of the records of run ``run_id`` in ``directory`` (default: the default
    folder)."""
    out = {}
    for rec in discovered_rules.records(directory):
        if rec.run_id == run_id:
            out[rec.canonical_key] = rec
    return out


def confirm_and_export(run_dir: str | Path, top_k: int, *, seeds: int | Sequence[int] = 3,
                       budget_scale: float = 2.0, baselines: Sequence[str] = DEFAULT_BASELINES,
                       directory: str | Path | None = None, address: str | None = None, progress: bool = True,
                       console: Console | None = None, force: bool = False) -> Confirmation:
    """Confirm the run's ``top_k`` best rules and export them (see the module docstring).

    ``seeds``: a count (seeds from 0 up, the search's eval_seed left out) or the seeds themselves.
    ``directory``: where the records go (default: the folder the run remembers, else
    `discovered_rules.default_folder`).
    ``address``: the Ray cluster (None: a local Ray, or the one this process has already).
    ``force``: replace this run's records of the same rules in place, keeping their transfer results and
    panel
    (otherwise a taken name is never replaced: the record takes the next free one).
    Raises StoreError (no store in run_dir, a records folder that is a file), ValueError (no ok
    evaluation, unknown baseline),
    ComparisonError (a training failed).
    """
    baselines = check_baselines(baselines)
    with RunStore(run_dir, config=None, create=False) as store:
        config = SearchConfig.from_mapping(store.config, source=f"{store.path} (the run's config)")
        run_id, top = store.run_id, ranked(store, top_k, config.funnel)
        best = [r.row for r in top]
        run_config = store.config
        folder = records_folder(store, directory)  # before hours of training, not after
    if not best:
        raise ValueError(f"{run_dir}: run {run_id} has no finished ok evaluation to confirm")
    seed_list = confirmation_seeds(seeds, config.search.eval_seed) if isinstance(seeds, int) else list(seeds)
    names, previous = {}, {}
    for rank, row in enumerate(best, 1):
        names[row.id], previous[row.id] = _free_name(folder, record_name(run_id, rank), run_id,
                                                     row.canonical_key, force, set(names.values()))

    task = confirmed_suite(config.suite, budget_scale)
    search = config.search
    limit = search.time_limit_s * max(budget_scale, 1.0) if search.time_limit_s is not None else None
    table = compare_on_ray(contenders({names[row.id]: row.rule for row in best}, list(baselines)), task,
                           seed_list, address=address, workers=search.workers,
                           cpus_per_worker=search.cpus_per_worker, gpu_fraction=search.gpu_fraction,
                           time_limit_s=limit, max_retries=search.max_retries, progress=progress,
                           description=f"confirm {len(best)} rules", console=console)
    baseline_rewards = {b: table.row(b).rewards for b in baselines}
    exported = []
    for rank, (row, at) in enumerate(zip(best, top, strict=True), 1):
        name = names[row.id]
        results = table.row(name).results  # never a baseline's label: names start with nos_
        rec = _record(name, row, rank, results, baseline_rewards, run_id, run_config, task, budget_scale,
                      at.scores)
        if previous[row.id] is not None:  # what a confirmation does not recompute is kept
            kept = {"transfer": previous[row.id].transfer, "panel": previous[row.id].panel}
            rec = rec.model_copy(update={k: v for k, v in kept.items() if v})
        json_path, py_path = discovered_rules.export(rec, folder, overwrite=previous[row.id] is not None)
        exported.append(Exported(rec, json_path, py_path))
    return Confirmation(run_id, task, table, exported)


def _free_name(folder: Path, base: str, run_id: str, key: str | None, force: bool,
               taken: set[str]) -> tuple[str, RuleRecord | None]:
    """The name to export under, and the record it replaces (only with ``force``: same run, same rule)."""
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}_{n}"
        json_path, py_path = folder / f"{name}.json", folder / f"{name}.py"
        if name in taken:
            continue
        if not json_path.exists() and not py_path.exists():
            return name, None
        if force and json_path.is_file():
            try:
                existing = discovered_rules.read_record(json_path)
            except (RecordError, OSError):
                continue  # unreadable: not ours to replace
            if existing.run_id == run_id and existing.canonical_key == key:
                return name, existing
    raise FileExistsError(f"{folder}: {base} and 998 more names after it are taken")


def records_folder(store: RunStore, given: str | Path | None) -> Path:
    """The folder a run exports to: the one given (remembered from now on), else the one the run
    remembers, else the default folder (remembered too, so that a later change of $NOS_RULES_DIR does not
    split a run's records over two folders). StoreError when it is a file. The search and ``nos rules
    export`` both ask here, so a resume and an export find the same folder."""
    if given is None and store.records_dir is not None:
        return Path(store.records_dir)
    folder = discovered_rules.folder(given)
    if folder.exists() and not folder.is_dir():
        raise StoreError(f"{folder}: the records folder is a file")
    if store.records_dir is None or given is not None:
        store.remember_records_dir(folder)
    return Path(store.records_dir)


def _record(name: str, row: Evaluation, rank: int, results: list[TaskEvaluation],
            baselines: dict[str, list[float]], run_id: str, run_config: dict[str, Any], task: Suite,
            budget_scale: float, stages: dict[int, float]) -> RuleRecord:
    lrs = Counter(r.lr for r in results if r.lr is not None)
    # The lr the grid chose most often (ties: the one of the best seed) becomes the optimizer's default.
    best_lr = max(lrs, key=lambda lr: (lrs[lr], max(r.reward for r in results if r.lr == lr)), default=None)
    confirmation = {"task": task.to_mapping(), "seeds": [r.seed for r in results],
                    "tasks": {t: [r.tasks[t].summary() for r in results] for t in task.names},
                    "budget_scale": budget_scale, "search_rank": rank, "search_reward": row.reward,
                    "search_lr": row.lr, "evaluation_id": row.id,
                    "funnel": {str(stage): score for stage, score in stages.items()}}
    return make_record(name, row.rule, task=task.name,
                       rewards={r.seed: r.reward for r in results}, baselines=baselines,
                       verdict=verdict([r.reward for r in results], baselines),
                       hyper={} if best_lr is None else {"lr": best_lr}, run_id=run_id,
                       config={**run_config, "confirmation": confirmation},
                       curves={r.seed: list(r.val_curve) for r in results}, source="search")
