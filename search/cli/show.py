"""One rule in detail for ``nos rules show``: found by name, canonical key or text, shown as a table, and
its learning curves drawn as a PNG.

    found = find_rule("nos_3f9a1c_1")                     # a record (the default folder, or directory=...)
    found = find_rule("3f9a1c0d", run_dir="runs/x")       # a key (or its first 6+ hex digits) in a run
    table, png = details(found)                            # rich table; the plot's path (None: no curves)

Lookup order: a reference rule's name, a record's name, a canonical key (with ``run_dir``: among the run's
evaluations, else among the reference rules and the records), then rule text. A name that is none of these
is an `discovered_rules.UnknownRule` listing close matches. Every rule gets the same rows (text, simplified
text, formula, LaTeX, key, state, hyper-constants, static checks); a record adds its task, run, lr and
hyper-constants, rewards per seed, the baselines' rewards, the gain and its transfer results; a run's
evaluation adds its status, reward, lr, worker and error. Curves: a record's are drawn next to it
(``<name>_curves.png``), an evaluation's into ``<run_dir>/plots/<key>.png``.
"""

from __future__ import annotations

import difflib
import re
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.table import Table

import discovered_rules
from discovered_rules import RuleRecord, UnknownRule
from dsl import KNOWN_RULE_TEXT, Rule, RuleError, known_rules, parse
from dsl.known import KNOWN_RULE_KEYS, default_hypers, reference_key
from search.cli.browse import mean_std, record_gain

if TYPE_CHECKING:
    from search.store import Evaluation

# A rule's table needs dsl and no more: a run's store, its baselines and records, and matplotlib for the
# curves are imported where they are used. Of dsl, a reference rule's table needs sympy (its formula) but
# not torch (its key is pinned), so `nos rules show adam` imports no torch (`rule_rows`).

KEY_PREFIX = re.compile(r"[0-9a-f]{6,16}")
IDENTIFIER = re.compile(r"[A-Za-z_]\w*")


@dataclass(frozen=True)
class Found:
    """What a query named: a reference rule, rule text, a record, or an evaluation of a run."""

    kind: str  # "reference", "text", "record", "evaluation"
    rule: Rule
    name: str | None = None
    record: RuleRecord | None = None
    directory: Path | None = None  # the records' folder
    evaluation: Evaluation | None = None
    run_dir: Path | None = None  # kind "evaluation"


def find_rule(query: str, *, run_dir: str | Path | None = None, directory: str | Path | None = None) -> Found:
    """The rule ``query`` names (module docstring). Raises UnknownRule (close matches listed), LookupError
    (a key found nowhere, or ambiguous), RuleError (text that does not parse), StoreError (bad run_dir)."""
    folder = discovered_rules.folder(directory)
    names = discovered_rules.names(folder)  # not read: showing one record reads that one only
    if query in KNOWN_RULE_TEXT:
        return Found("reference", known_rules()[query], name=query)
    if query in names:
        rec = discovered_rules.record(query, folder)
        return Found("record", rec.parsed_rule(), name=query, record=rec, directory=folder)
    if KEY_PREFIX.fullmatch(query):
        return _by_key(query, run_dir, folder)
    try:
        return Found("text", parse(query))
    except RuleError:
        if not IDENTIFIER.fullmatch(query):
            raise
    # A bare word that is neither a name nor a rule was meant as a name: say which names are close.
    close = difflib.get_close_matches(query, list(names), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    records = ", ".join(n for n in names if n not in KNOWN_RULE_TEXT) or "none"
    raise UnknownRule(f"no rule named {query!r}{hint} (reference rules: `nos rules list`; records in "
                      f"{folder}: {records})")


def _by_key(prefix: str, run_dir: str | Path | None, folder: Path) -> Found:
    from search.store import RunStore

    if run_dir is not None:
        with RunStore(run_dir, read_only=True) as store:
            rows = [r for r in store.evaluations() if r.canonical_key and r.canonical_key.startswith(prefix)]
        keys = sorted({r.canonical_key for r in rows})
        if not keys:
            raise LookupError(f"no evaluation of run {run_dir} has a canonical key starting {prefix!r} "
                              f"(nos rules list {run_dir} shows the keys)")
        if len(keys) > 1:
            raise LookupError(f"{prefix!r} starts {len(keys)} keys of run {run_dir}: {', '.join(keys[:5])}; "
                              "give more digits")
        # The best ok training of the key, else one that was trained (curves, error), else any row.
        ok = [r for r in rows if r.status == "ok"]
        trained = [r for r in rows if r.status in ("diverged", "failed")]
        row = max(ok, key=lambda r: r.reward) if ok else (trained or rows)[0]
        return Found("evaluation", parse(row.rule), directory=folder, evaluation=row, run_dir=Path(run_dir))
    # The reference rules (their keys are pinned) and every readable record (one that does not read is
    # skipped with a warning naming it).
    records = {r.name: r for r in discovered_rules.records(folder)}
    matches = [n for n, key in KNOWN_RULE_KEYS.items() if key.startswith(prefix)]
    matches += [n for n, r in records.items() if r.canonical_key.startswith(prefix)]
    if len(matches) != 1:
        found = f"{len(matches)} rules ({', '.join(matches)})" if matches else "no reference rule or record"
        raise LookupError(f"{found} with a canonical key starting {prefix!r} (records in {folder}); to look "
                          "in a run's results give --run RUN_DIR")
    name = matches[0]
    if name in KNOWN_RULE_TEXT:
        return Found("reference", known_rules()[name], name=name)
    return Found("record", records[name].parsed_rule(), name=name, record=records[name], directory=folder)


def rule_rows(rule: Rule, hyper: dict[str, float] | None = None) -> list[tuple[str, str]]:
    """The rows of every rule: text, simplified text, formula, LaTeX, key, state, hyper-constants, checks.

    A reference rule as written takes its key from `dsl.known.KNOWN_RULE_KEYS` and is shown as its own
    simplest form that passes the checks, without computing either (which needs torch);
    tests/test_cli_startup.py checks that the rows are then the same as computed."""
    from sympy import pretty

    from dsl import to_latex, to_sympy

    rows = [("text", str(rule))]
    key, note, reason = reference_key(rule), None, None
    if key is None:
        from dsl import canonical_key, why_invalid
        from dsl.equivalence import key_note
        from dsl.simplification import simplify_noted

        simpler, skipped = simplify_noted(rule)
        if simpler != rule:
            rows.append(("simplified", str(simpler)))
        if skipped:  # bounded symbolic work: say what was not done, rather than hang
            rows.append(("simplification", f"partial: {skipped}"))
        key, note, reason = canonical_key(rule), key_note(rule), why_invalid(rule)
    rows += [("formula", pretty(to_sympy(rule, exact=False), use_unicode=True)),
             ("LaTeX", to_latex(rule)), ("canonical key", key + (f" ({note})" if note else "")),
             ("state", ", ".join(rule.state) or "none")]
    # Named or implied (m reads beta1): what the rule's update depends on, with the record's values.
    hyper = dict(hyper or {})
    values = {"lr": hyper["lr"]} if "lr" in hyper else {}
    values |= default_hypers(rule) | hyper
    rows.append(("hyper-constants", ", ".join(f"{n}={v:g}" for n, v in values.items()) or "none"))
    rows.append(("static checks", "pass" if reason is None else f"rejected: {reason}"))
    return rows


def _seeds(values: dict[int, float]) -> str:
    mean, std = mean_std(list(values.values()))
    return ", ".join(f"seed {s}: {v:.3f}" for s, v in values.items()) + f"  (mean {mean:.3f} ± {std:.3f})"


def _task_rows(tasks: dict) -> list[tuple[str, str]]:
    """Per task of a suite: its score and validation metric, from stored summaries (one, or one per
    seed); nothing for data that is not of that shape (a record of an older version)."""
    rows = []
    for name, parts in (tasks or {}).items():
        parts = parts if isinstance(parts, list) else [parts]
        try:
            scores = ", ".join(f"{p['score']:.3f}" for p in parts)
            metrics = ", ".join(f"{p['val_metric']:.2f}" for p in parts)
            rows.append((f"task {name}", f"score {scores}; {parts[0]['reward']} reward; val "
                         f"{parts[0]['metric']} "
                         f"{metrics}"))
        except (KeyError, TypeError, ValueError):
            continue
    return rows


def record_rows(rec: RuleRecord) -> list[tuple[str, str]]:
    rows = [("task", rec.task or "-"), ("run", rec.run_id or "-"), ("date", rec.date.isoformat())]
    if rec.rewards:
        rows.append(("rewards", _seeds(rec.rewards)))
    seeds = list(rec.rewards)
    for name, values in rec.baselines.items():
        rows.append((f"baseline {name}", _seeds(dict(zip(seeds, values, strict=False)))))
    rows += _task_rows(((rec.config or {}).get("confirmation") or {}).get("tasks") or {})
    gain = record_gain(rec)
    if gain is not None:
        rows.append(("gain", f"{gain[0]:+.3f} over {gain[1]}, the best baseline"))
    for task, table in (rec.transfer or {}).items():
        cells = [f"{row['name']} {row['mean']:.2f} ± {row['std']:.2f}" for row in table]
        rows.append((f"transfer {task}", "; ".join(cells)))
    return rows


def evaluation_rows(row: Evaluation, run_dir: Path, directory: Path | None) -> list[tuple[str, str]]:
    from search.results.baselines import read_cache
    from search.results.winners import run_records
    from search.store import RunStore

    rows = [("run", str(run_dir)),
            ("evaluation", f"id {row.id} (batch {row.batch}, position {row.position})"),
            ("status", row.status), ("reward", "-" if row.reward is None else f"{row.reward:.3f}"),
            ("chosen lr", "-" if row.lr is None else f"{row.lr:g}")]
    rows += _task_rows((row.result or {}).get("tasks") or {})
    if row.worker:
        rows.append(("worker", f"{row.worker}, {row.duration or 0:.1f} s"))
    if row.error:
        rows.append(("error", row.error))
    cache = read_cache(run_dir)
    if cache is not None:
        rows.append(("baselines", ", ".join(f"{k} {v:.3f}" for k, v in cache.rewards.items())
                     + f" (run's budget, seed {cache.seed})"))
    with RunStore(run_dir, read_only=True) as store:
        rec = run_records(store.run_id, directory).get(row.canonical_key)
    if rec is not None:
        rows.append(("confirmed as", rec.name))
    return rows


def plot(found: Found) -> Path | None:
    """Draw the found rule's learning curves (module docstring); None when it has none."""
    if found.record is not None and found.record.curves:
        from search.cli.plots import plot_curves

        rec = found.record
        references = {n: statistics.fmean(v) for n, v in rec.baselines.items() if v}
        return plot_curves(found.directory / f"{rec.name}_curves.png",
                           {f"seed {s}": c for s, c in rec.curves.items()}, title=f"{rec.name} on {rec.task}",
                           ylabel="validation metric", references=references)
    row = found.evaluation
    if row is not None and row.curves and row.curves.get("val_curve"):
        from search.cli.plots import plot_curves
        from search.results.baselines import read_cache

        cache = read_cache(found.run_dir)
        return plot_curves(found.run_dir / "plots" / f"{row.canonical_key}.png",
                           {f"evaluation {row.id}": row.curves["val_curve"]},
                           title=f"{row.rule} (evaluation {row.id} of {found.run_dir})",
                           ylabel="validation metric",
                           references=cache.rewards if cache is not None else None,
                           lower={f"evaluation {row.id}": row.curves["train_loss"]}
                           if row.curves.get("train_loss") else None)
    return None


def details(found: Found) -> tuple[Table, Path | None]:
    """The rule's table (module docstring) and its curves' PNG (None: no curves). Every value is shown as
    text (`search.cli.terminal.cell`): a record's, a store's or a user's text never acts on the terminal."""
    from search.cli.terminal import cell, shown

    table = Table(show_header=False, title=shown(found.name or ("rule" if found.evaluation is None
                                                                else f"evaluation {found.evaluation.id}")))
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    rows = rule_rows(found.rule, found.record.hyper if found.record is not None else None)
    if found.record is not None:
        rows += record_rows(found.record)
    if found.evaluation is not None:
        rows += evaluation_rows(found.evaluation, found.run_dir, found.directory)
    png = plot(found)
    if png is not None:
        rows.append(("curves", str(png)))
    for name, value in rows:
        rejected = name == "static checks" and value != "pass"
        table.add_row(cell(name), cell(value, style="red" if rejected else ""))
    return table, png
