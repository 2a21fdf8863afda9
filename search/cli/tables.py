"""Machine-readable results: a run's best rules and the rules library as JSON or CSV rows, and every
evaluation of one or more runs as a CSV table.

    rows = listing_rows(run_listing("runs/x", top=20))     # nos rules list runs/x --json / --csv
    rows = library_rows(directory=None)                    # nos rules list --json / --csv
    write_rows(rows, "csv", sys.stdout)
    write_evaluations_csv(["runs/a", "runs/b"], "evaluations.csv")   # nos report RUN... --csv FILE

JSON keeps nested values (per-task scores, the verdict) as objects; CSV flattens them: a column per task
score (``score:<task>``), and a nested value that remains is written as JSON text in its cell. The same
table is one pandas line over the store: ``pd.read_sql("select * from evaluations",
sqlite3.connect("runs/x/results.sqlite"))``.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import fields
from pathlib import Path
from typing import IO, Any

import discovered_rules
from discovered_rules import RuleRecord
from dsl import known_rules, to_sympy
from dsl.printable import visible
from search.cli.browse import RunListing, mean_std, record_gain
from search.store import Evaluation, RunStore

FORMATS = ("json", "csv")


def _verdict(rec: RuleRecord | None) -> dict | None:
    return None if rec is None or rec.verdict is None else rec.verdict.model_dump()


def _confirmed(rec: RuleRecord | None) -> dict[str, Any]:
    if rec is None or not rec.rewards:
        return {"record": None if rec is None else rec.name, "confirmed_mean": None, "confirmed_std": None,
                "confirmed_gain": None, "verdict": _verdict(rec)}
    mean, std = mean_std(list(rec.rewards.values()))
    gain = record_gain(rec)
    return {"record": rec.name, "confirmed_mean": mean, "confirmed_std": std,
            "confirmed_gain": None if gain is None else gain[0], "verdict": _verdict(rec)}


def listing_rows(listing: RunListing) -> list[dict[str, Any]]:
    """One row per listed rule: what `nos rules list RUN` shows as a table, with full precision."""
    rows = []
    for row in listing.rows:
        e = row.evaluation
        tasks = ((e.result or {}).get("tasks") or {})
        rows.append({"run_id": listing.run_id, "rank": row.rank, "reward": e.reward,
                     "scores": {t: part.get("score") for t, part in tasks.items() if isinstance(part, dict)},
                     "stages": {str(k): v for k, v in row.stages.items()},
                     "gain": row.gain, **_confirmed(row.record), "rule": e.rule, "formula": row.formula,
                     "canonical_key": e.canonical_key, "lr": e.lr, "evaluation_id": e.id})
    return rows


def library_rows(directory: str | Path | None = None) -> list[dict[str, Any]]:
    """The reference rules, then every record of ``directory`` (default:
    `discovered_rules.default_folder`)."""
    rows: list[dict[str, Any]] = [
        {"name": name, "source": "reference", "rule": str(rule), "formula": str(to_sympy(rule, exact=False)),
         "task": None, "run_id": None, "date": None, "canonical_key": None, **_confirmed(None),
         "transfer": []} for name, rule in known_rules().items()]
    for rec in discovered_rules.records(directory):
        rows.append({"name": rec.name, "source": rec.source, "rule": rec.rule, "formula": rec.formula,
                     "task": rec.task, "run_id": rec.run_id, "date": rec.date.isoformat(),
                     "canonical_key": rec.canonical_key, **_confirmed(rec),
                     "transfer": list(rec.transfer or {})})
    return rows


def _plain(value: Any) -> Any:
    """A JSON-safe value: a non-finite float (a diverged curve) becomes None, not the invalid NaN."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key == "scores" and isinstance(value, dict):
            out.update({f"score:{task}": score for task, score in value.items()})
        elif key == "verdict":
            for part in ("best_baseline", "outcome", "n", "gain", "t", "p"):
                out[f"verdict_{part}"] = None if value is None else value.get(part)
        elif isinstance(value, dict | list):
            out[key] = json.dumps(_plain(value), sort_keys=True)
        else:
            out[key] = value
    return out


def write_rows(rows: Sequence[dict[str, Any]], fmt: str, stream: IO[str]) -> None:
    """The rows as a JSON array or a CSV table with a header (columns: every key, first seen first)."""
    if fmt == "json":
        json.dump([_plain(r) for r in rows], stream, indent=2, allow_nan=False)
        stream.write("\n")
        return
    if fmt != "csv":
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
    # JSON escapes every hidden character itself (ensure_ascii); a CSV table is text read on a terminal
    # too, so its text is written `visible` (a record's or a store's escape sequence never acts).
    _write_csv([{visible(k): visible(v) if isinstance(v, str) else v for k, v in _flat(r).items()}
                for r in rows], stream)


def _write_csv(rows: Iterable[dict[str, Any]], stream: IO[str], columns: Sequence[str] = ()) -> None:
    rows = list(rows)
    names = list(columns)
    for row in rows:
        names += [k for k in row if k not in names]
    writer = csv.DictWriter(stream, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else v for k, v in row.items()})


EVALUATION_COLUMNS = ["run_id", *(f.name for f in fields(Evaluation))]


def evaluation_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """Every evaluation of the run as a flat row (JSON columns as JSON text), with its run id first."""
    with RunStore(run_dir, read_only=True) as store:
        run_id, rows = store.run_id, store.evaluations()
    return [_flat({"run_id": run_id, **{f.name: getattr(e, f.name) for f in fields(Evaluation)}})
            for e in rows]


def write_evaluations_csv(run_dirs: Sequence[str | Path], path: str | Path) -> int:
    """Every evaluation of the runs in one CSV file; returns the number of rows written."""
    rows = [row for run_dir in run_dirs for row in evaluation_rows(run_dir)]
    with open(path, "w", encoding="utf-8", newline="") as stream:
        _write_csv(rows, stream, EVALUATION_COLUMNS)
    return len(rows)
