"""The funnel's rows in a run's results store: one per (stage, rule, seed), in the table
``stage_evaluations`` of ``results.sqlite``, beside the search's own evaluations (`search.store`).

    table = StageTable(store)                         # a RunStore, open
    rows = table.add(1, key, rule, evaluation=12, seeds=[1000, 1001])   # promoted: pending rows
    table.add_attempt(rows[0].id, "host:123")
    table.record(rows[0].id, "ok", 1.04, result={...}, worker="host:123", duration=3.2)
    table.rows(stage=1), table.pending()

A row is a rule (its canonical key and text, the stage-0 evaluation it was promoted from) or a baseline
(key ``baseline:<name>``, text ``torch:<name>``, no evaluation) trained on stage ``stage``'s tasks with
evaluation seed ``seed``; ``(stage, canonical_key, seed)`` is unique, so a promotion made twice (a resume)
adds nothing. Writes are the store's own transactions (fsynced, one each, `RunStore._tx`): a row is on
disk when a method returns, and a kill loses no finished stage evaluation.

The table is created with the first promotion, not when a store is opened, so that a reader (``nos
report``, ``nos rules list``) never changes a store, and a store of a search without a funnel, or made
before funnels existed, has none: it reads as no rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, fields
from typing import Any

from search.store import LIMITS, Malformed, RunStore, StoreError, bounded, decoded, quoted, rule_problem

STAGE_STATUSES = ("pending", "ok", "diverged", "failed")
BASELINE = "baseline:"  # the canonical key prefix of a baseline's rows (their rule: torch:<name>)
TABLE = "stage_evaluations"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    id INTEGER PRIMARY KEY,
    stage INTEGER NOT NULL CHECK (stage >= 1),
    canonical_key TEXT NOT NULL, rule TEXT NOT NULL, evaluation INTEGER, seed INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'ok', 'diverged', 'failed')),
    reward REAL, result TEXT, worker TEXT, duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0), error TEXT,
    created_at REAL NOT NULL, finished_at REAL,
    CHECK (status NOT IN ('ok', 'diverged') OR reward IS NOT NULL),
    UNIQUE (stage, canonical_key, seed))
"""


@dataclass(frozen=True)
class StageRow:
    """One stage evaluation as read back."""
    id: int
    stage: int
    canonical_key: str
    rule: str
    evaluation: int | None  # the stage-0 evaluation the rule was promoted from; None for a baseline
    seed: int
    status: str
    reward: float | None
    result: dict | None  # the evaluation's task summaries (child_tasks.reward.Evaluation.to_dict, trimmed)
    worker: str | None
    duration: float | None
    attempts: int
    error: str | None
    created_at: float
    finished_at: float | None

    @property
    def finished(self) -> bool:
        return self.status != "pending"


_COLUMNS = ", ".join(f.name for f in fields(StageRow))
_NUMBER = (int, float)
_BOUNDED_COLUMNS = ", ".join(  # text over its bound (`search.store.LIMITS`) is cut in SQLite, as there
    f"CASE WHEN typeof({n}) IN ('text', 'blob') AND length({n}) > {LIMITS[n]} THEN substr({n}, 1, "
    f"{LIMITS[n] + 1}) ELSE {n} END AS {n}" if n in LIMITS else n for n in (f.name for f in fields(StageRow)))


class StageTable:
    """The stage rows of one open `RunStore` (module docstring)."""

    def __init__(self, store: RunStore) -> None:
        self.store = store

    def exists(self) -> bool:
        return bool(self.store._rows("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                                     (TABLE,)))

    def add(self, stage: int, canonical_key: str, rule: str, evaluation: int | None,
            seeds: list[int]) -> list[StageRow]:
        """Pending rows for ``rule`` at ``stage``, one per seed (rows that exist are kept as they are);
        the rule's rows of that stage, by seed."""
        now = time.time()
        with self.store._tx() as db:
            db.execute(_SCHEMA)
            db.executemany(f"INSERT OR IGNORE INTO {TABLE} (stage, canonical_key, rule, evaluation, seed, "
                           "created_at) VALUES (?, ?, ?, ?, ?, ?)",
                           [(stage, canonical_key, rule, evaluation, seed, now) for seed in seeds])
        return [r for r in self.rows(stage) if r.canonical_key == canonical_key and r.seed in seeds]

    def record(self, id: int, status: str, reward: float | None, *, result: dict | None = None,
               worker: str | None = None, duration: float | None = None, error: str | None = None) -> None:
        """Store a finished stage evaluation; it is on disk when this returns."""
        if status not in STAGE_STATUSES or status == "pending":
            raise ValueError(f"stage evaluation {id}: status must be one of ok, diverged, failed, got "
                             f"{status!r}")
        if status in ("ok", "diverged") and not isinstance(reward, _NUMBER):
            raise ValueError(f"stage evaluation {id}: status {status!r} needs a reward")
        text = None if result is None else json.dumps(result, sort_keys=True)
        with self.store._tx() as db:
            cursor = db.execute(f"UPDATE {TABLE} SET status = ?, reward = ?, result = ?, worker = ?, "
                                "duration = ?, error = ?, finished_at = ? WHERE id = ?",
                                (status, reward, text, worker, duration, error, time.time(), id))
            if cursor.rowcount != 1:
                raise StoreError(f"{self.store.path}: no stage evaluation with id {id!r} to record")

    def add_attempt(self, id: int, worker: str | None = None) -> None:
        """Count one more try at stage evaluation ``id``."""
        with self.store._tx() as db:
            db.execute(f"UPDATE {TABLE} SET attempts = attempts + 1, worker = COALESCE(?, worker) "
                       "WHERE id = ?", (worker, id))

    def rows(self, stage: int | None = None) -> list[StageRow]:
        """Every stage row (of ``stage``), in the order they were added; none without a table."""
        if not self.exists():
            return []
        where, params = ("WHERE stage = ?", (stage,)) if stage is not None else ("", ())
        out = []
        for r in self.store._rows(f"SELECT {_BOUNDED_COLUMNS} FROM {TABLE} {where} ORDER BY id", params):
            try:
                out.append(self._row(r))
            except Malformed as err:  # skipped with a warning naming it, as the store's own rows are
                self.store.skip(f"stage evaluation {quoted(r['id'])} (stage {quoted(r['stage'])})", err)
        return out

    def pending(self) -> list[StageRow]:
        return [r for r in self.rows() if not r.finished]

    @staticmethod
    def _row(r: Any) -> StageRow:
        """A row as a StageRow, each column checked as `RunStore._evaluation` checks its own; Malformed
        says what is wrong."""
        values = {k: bounded(k, v) for k, v in zip(r.keys(), tuple(r), strict=True)}
        values["result"] = decoded(values["result"], "result")
        if values["result"] is not None and not isinstance(values["result"], dict):
            raise Malformed(f"its result must be a mapping, found {quoted(values['result'])}")
        for name in ("id", "stage", "seed", "attempts"):
            if not isinstance(values[name], int) or isinstance(values[name], bool):
                raise Malformed(f"its {name} must be a whole number, found {quoted(values[name])}")
        for name in ("canonical_key", "rule", "status"):
            if not isinstance(values[name], str):
                raise Malformed(f"its {name} must be text, found {quoted(values[name])}")
        for name in ("reward", "duration", "created_at", "finished_at"):
            value = values[name]
            if value is None and name not in ("created_at",):
                continue
            if not isinstance(value, _NUMBER) or isinstance(value, bool) or not math.isfinite(value):
                raise Malformed(f"its {name} must be a finite number, found {quoted(value)}")
        for name in ("worker", "error"):
            if values[name] is not None and not isinstance(values[name], str):
                raise Malformed(f"its {name} must be text, found {quoted(values[name])}")
        if not values["canonical_key"].startswith(BASELINE) and (problem := rule_problem(values["rule"])):
            raise Malformed(f"its rule text {quoted(values['rule'])} does not parse ({problem})")
        return StageRow(**values)
