"""The durable results store of a search run: one SQLite file, ``<run_dir>/results.sqlite``.

Tables (schema version 1; JSON columns hold lists and dicts as text written by the json module):

    meta(key, value)          format, schema_version, run_id, created_at, config, records_dir (JSON values)
    evaluations               one row per sampled candidate: batch (the controller update it belongs to)
                              and position (UNIQUE together), tokens, log_probs, version, groups (JSON),
                              rule, canonical_key, status (CHECKed to be one of STATUSES), reward, lr,
                              curves, result (JSON), worker, duration, attempts, error (reason or
                              traceback), created_at, finished_at
    updates(batch, stats)     the controller's update statistics after each batch (JSON)

Durability: the file is in WAL journal mode with ``synchronous=FULL``, and every write method is one
``BEGIN IMMEDIATE ... COMMIT`` transaction, so when `record` returns the result is in the fsynced
write-ahead log: a ``kill -9`` of the writer (or a power cut) loses no finished evaluation, and an error
rolls back only the transaction it happened in. WAL also lets other processes read (browse, plot) while the
search writes, without blocking it. Nothing in the file is unpickled or evaluated: it holds numbers, text
and JSON only, and a file that is not ours, or from a newer schema, is refused with a `StoreError`.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from configuration import describe_differences, differences

STATUSES = ("pending", "ok", "diverged", "invalid", "duplicate", "failed")  # pending = queued, not finished
FINISHED_WITH_REWARD = ("ok", "diverged")  # trained to the end: the reward can stand in for a duplicate's
FORMAT = "nos-results"
SCHEMA_VERSION = 1
FILENAME = "results.sqlite"

_IN = lambda names: "(" + ", ".join(f"'{n}'" for n in names) + ")"  # noqa: E731 (our constants only)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS evaluations (
    id INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL CHECK (batch >= 0),
    position INTEGER NOT NULL CHECK (position >= 0),
    tokens TEXT NOT NULL, log_probs TEXT NOT NULL, version INTEGER NOT NULL, groups TEXT NOT NULL,
    rule TEXT, canonical_key TEXT,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN {_IN(STATUSES)}),
    reward REAL, lr REAL, curves TEXT, result TEXT, worker TEXT, duration REAL,
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0), error TEXT,
    created_at REAL NOT NULL, finished_at REAL,
    CHECK (status NOT IN {_IN(FINISHED_WITH_REWARD)} OR reward IS NOT NULL),
    UNIQUE (batch, position));
CREATE INDEX IF NOT EXISTS evaluations_by_key ON evaluations (canonical_key, status);
CREATE INDEX IF NOT EXISTS evaluations_by_status ON evaluations (status);
CREATE TABLE IF NOT EXISTS updates (
    batch INTEGER PRIMARY KEY, stats TEXT NOT NULL, created_at REAL NOT NULL);
"""
_JSON_COLUMNS = ("tokens", "log_probs", "groups", "curves", "result")


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _list_of(check: Any) -> Any:
    return lambda x: isinstance(x, list) and all(check(v) for v in x)


_is_int = lambda x: isinstance(x, int) and not isinstance(x, bool)  # noqa: E731
_is_text = lambda x: isinstance(x, str)  # noqa: E731
# What each column of an evaluation reads back as (None allowed where the schema allows NULL). SQLite
# stores any value in any column, so a hand edit or a disk error could put text where a reward belongs;
# a row is checked as it is read, and a bad one is a StoreError naming it, never a TypeError later.
_COLUMN_CHECKS: dict[str, tuple[Any, bool, str]] = {  # column -> (check, nullable, what it must be)
    "id": (_is_int, False, "a whole number"), "batch": (_is_int, False, "a whole number"),
    "position": (_is_int, False, "a whole number"), "version": (_is_int, False, "a whole number"),
    "attempts": (_is_int, False, "a whole number"),
    "tokens": (_list_of(_is_int), False, "a list of whole numbers"),
    "log_probs": (_list_of(_is_number), False, "a list of numbers"),
    "groups": (_list_of(_list_of(_is_text)), False, "a list of lists of names"),
    "rule": (_is_text, True, "text"), "canonical_key": (_is_text, True, "text"),
    "status": (_is_text, False, "text"),
    "reward": (_is_number, True, "a number"), "lr": (_is_number, True, "a number"),
    "curves": (lambda x: isinstance(x, dict), True, "a mapping"),
    "result": (lambda x: isinstance(x, dict), True, "a mapping"),
    "worker": (_is_text, True, "text"), "duration": (_is_number, True, "a number"),
    "error": (_is_text, True, "text"), "created_at": (_is_number, False, "a number"),
    "finished_at": (_is_number, True, "a number"),
}
_ROW_KEYS = ("position", "tokens", "log_probs", "version", "groups", "rule", "canonical_key")
_OPTIONAL_ROW_KEYS = ("status", "reward", "error")


class StoreError(RuntimeError):
    """Not a results store of ours, a schema this code cannot read, an unknown row, or a run dir problem."""


@dataclass(frozen=True)
class Evaluation:
    """One evaluation as read back; ``batch`` is the controller update number the sample belongs to."""
    id: int
    batch: int
    position: int
    tokens: list[int]
    log_probs: list[float]
    version: int
    groups: list[list[str]]
    rule: str | None
    canonical_key: str | None
    status: str
    reward: float | None
    lr: float | None
    curves: dict | None
    result: dict | None  # the child task's TrainResult as a dict
    worker: str | None
    duration: float | None
    attempts: int
    error: str | None  # the reason (invalid, diverged) or the traceback (failed)
    created_at: float
    finished_at: float | None


_COLUMNS = ", ".join(f.name for f in fields(Evaluation))


def _json(value: Any, what: str) -> str:
    try:  # NaN is allowed: a diverged run's curves hold it, and Python's json reads it back
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not JSON data: {err}") from None


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or None, got {value!r}") from None
    if math.isnan(number):  # SQLite would store NaN as NULL, silently
        raise ValueError(f"{what} must not be NaN")
    return number


def _text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{what} must be a str or None, got {type(value).__name__}")
    return value


def _row_values(row: dict) -> tuple:
    """A new row's column values, in _ROW_KEYS + _OPTIONAL_ROW_KEYS order, checked and converted."""
    unknown = set(row) - set(_ROW_KEYS) - set(_OPTIONAL_ROW_KEYS)
    missing = [k for k in _ROW_KEYS if k not in row]
    if unknown or missing:
        raise ValueError(f"missing keys {missing}, unknown keys {sorted(unknown)}")
    status = row.get("status", "pending")
    _check_status(status)
    return (int(row["position"]), _json([int(t) for t in row["tokens"]], "tokens"),
            _json([float(p) for p in row["log_probs"]], "log_probs"), int(row["version"]),
            _json([[str(n) for n in g] for g in row["groups"]], "groups"), _text(row["rule"], "rule"),
            _text(row["canonical_key"], "canonical_key"), status, _number(row.get("reward"), "reward"),
            _text(row.get("error"), "error"))


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")


class RunStore:
    """Every evaluation of one search run, durable as soon as it is recorded; see the module docstring."""

    run_id: str
    config: dict[str, Any]
    created_at: float

    def __init__(self, run_dir: str | Path, config: dict | None = None, create: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / FILENAME
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise StoreError(f"{self.run_dir}: the run directory is a file, not a directory")
        if not create and not self.path.is_file():
            raise StoreError(f"{self.path}: no results store there (and create=False)")
        if config is not None:
            if not isinstance(config, dict):
                raise ValueError(f"config must be a dict, got {type(config).__name__}")
            config = json.loads(_json(config, "config"))  # tuples become lists, as they will read back
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one transaction at a time when threads share the store
        uri = self.path.resolve().as_uri() + ("?mode=rwc" if create else "?mode=rw")
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        try:
            self._open(config, create)
        except (sqlite3.DatabaseError, json.JSONDecodeError, KeyError) as err:
            self._db.close()
            raise StoreError(f"{self.path}: cannot use as a results store "
                             f"({type(err).__name__}: {err})") from err
        except BaseException:
            self._db.close()
            raise

    def _open(self, config: dict | None, create: bool) -> None:
        self._db.execute("PRAGMA synchronous=FULL")  # fsync the log at every commit
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" not in tables:
            if tables or not create:
                found = ", ".join(sorted(tables)) or "none"
                raise StoreError(f"{self.path}: a SQLite file but not a nos results store (tables: {found})")
            self._db.execute("PRAGMA journal_mode=WAL")  # stored in the file, so set once, before any write
            with self._tx() as db:  # IF NOT EXISTS / OR IGNORE: a racing creator's meta wins, then is checked
                for statement in filter(str.strip, _SCHEMA.split(";")):
                    db.execute(statement)
                now = time.time()
                run_id = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + "-" + uuid.uuid4().hex[:6]
                meta = {"format": FORMAT, "schema_version": SCHEMA_VERSION, "run_id": run_id,
                        "created_at": now, "config": config if config is not None else {}}
                db.executemany("INSERT OR IGNORE INTO meta VALUES (?, ?)",
                               [(k, _json(v, k)) for k, v in meta.items()])
        meta = {r["key"]: json.loads(r["value"]) for r in self._db.execute("SELECT key, value FROM meta")}
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a nos results store (meta format {meta.get('format')!r})")
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise StoreError(f"{self.path}: schema version {version!r}, this code reads version "
                             f"{SCHEMA_VERSION}" + ("; it was written by a newer nos, upgrade to read it"
                                                    if newer else ""))
        self.run_id, self.config, self.created_at = meta["run_id"], meta["config"], meta["created_at"]
        self.records_dir: str | None = meta.get("records_dir")  # where its winners go (remember_records_dir)
        if config is not None and config != self.config:
            details = "; ".join(describe_differences(differences(self.config, config), "stored", "given", 8))
            raise StoreError(f"{self.path}: run {self.run_id} was started with another config ({details}); "
                             "resume it with its own config (pass config=None to read it back)")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is on disk when the block ends, or none of it on an error."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _evaluations(self, where: str, params: tuple = (), tail: str = "ORDER BY id",
                     source: str = "evaluations") -> list[Evaluation]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM {source} WHERE {where} {tail}", params)
        return [self._evaluation(r) for r in rows]

    def _evaluation(self, r: sqlite3.Row) -> Evaluation:
        """A row as an Evaluation, each column checked (`_COLUMN_CHECKS`)."""
        values = {}
        for k in r.keys():
            what = f"evaluation {r['id']}'s {k}"
            value = self._decode(r[k], what) if k in _JSON_COLUMNS else r[k]
            check, nullable, expected = _COLUMN_CHECKS[k]
            if not (value is None and nullable) and not check(value):
                raise StoreError(f"{self.path}: {what} must be {expected}, found {str(value)[:60]!r}; the "
                                 "store's other rows are intact")
            values[k] = value
        return Evaluation(**values)

    def _decode(self, text: str | None, what: str) -> Any:
        """A JSON column's value; a damaged one (edited by hand, a disk error) is a StoreError naming it."""
        if text is None:
            return None
        try:
            return json.loads(text)
        except (ValueError, TypeError) as err:  # JSONDecodeError, UnicodeDecodeError (bytes): ValueErrors
            raise StoreError(f"{self.path}: {what} is not valid JSON ({err}); the store's other rows are "
                             "intact") from None

    # --- writing --------------------------------------------------------------------------------------

    def add_batch(self, batch: int, rows: list[dict]) -> list[int]:
        """Insert a batch's samples in one transaction; ids in the order of ``rows``.

        Each row has the keys position, tokens, log_probs, version, groups, rule, canonical_key, and
        optionally status (default pending), reward and error for rows decided at once. Re-adding a batch
        (a resumed run) returns the existing ids; a row whose tokens differ from the stored ones is a
        StoreError, since its reward would then be credited to another sample.
        """
        if not isinstance(batch, int) or batch < 0:
            raise ValueError(f"batch must be an int >= 0, got {batch!r}")
        ids: list[int] = []
        with self._tx() as db:
            for index, row in enumerate(rows):
                where = f"batch {batch}, row {index} (position {row.get('position')!r})"
                try:
                    values = _row_values(row)
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{where}: {err}") from None
                found = db.execute("SELECT id, tokens FROM evaluations WHERE batch = ? AND position = ?",
                                   (batch, values[0])).fetchone()
                if found is None:
                    now = time.time()
                    ids.append(int(db.execute(  # type: ignore[arg-type]
                        "INSERT INTO evaluations (position, tokens, log_probs, version, groups, rule, "
                        "canonical_key, status, reward, error, batch, created_at, finished_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (*values, batch, now, None if values[7] == "pending" else now)).lastrowid))
                elif found["tokens"] == values[1]:
                    ids.append(found["id"])
                else:
                    raise StoreError(f"{self.path}: {where} is stored with tokens {found['tokens']}, "
                                     f"re-added with {values[1]}")
        return ids

    def record(self, id: int, status: str, reward: float | None, *, lr: float | None = None,
               curves: dict | None = None, result: dict | None = None, worker: str | None = None,
               duration: float | None = None, error: str | None = None) -> None:
        """Store a finished evaluation; it is on disk when this returns. Recording again replaces it."""
        _check_status(status)
        if status == "pending":
            raise ValueError(f"evaluation {id}: record takes a finished status, not 'pending'")
        if status in FINISHED_WITH_REWARD and reward is None:
            raise ValueError(f"evaluation {id}: status {status!r} needs a reward")
        what = f"evaluation {id}: "
        values = (status, _number(reward, what + "reward"), _number(lr, what + "lr"),
                  None if curves is None else _json(curves, what + "curves"),
                  None if result is None else _json(result, what + "result"), _text(worker, what + "worker"),
                  _number(duration, what + "duration"), _text(error, what + "error"), time.time(), id)
        with self._tx() as db:
            cursor = db.execute("UPDATE evaluations SET status = ?, reward = ?, lr = ?, curves = ?, "
                                "result = ?, worker = ?, duration = ?, error = ?, finished_at = ? "
                                "WHERE id = ?", values)
            if cursor.rowcount != 1:
                raise StoreError(f"{self.path}: no evaluation with id {id!r} to record")

    def add_attempt(self, id: int, worker: str | None = None) -> int:
        """Count one more try at evaluation ``id`` (on ``worker``, when given); returns the new count."""
        with self._tx() as db:
            # Not UPDATE ... RETURNING: that needs SQLite 3.35, newer than some Pythons ship.
            if db.execute("UPDATE evaluations SET attempts = attempts + 1, worker = COALESCE(?, worker) "
                          "WHERE id = ?", (worker, id)).rowcount != 1:
                raise StoreError(f"{self.path}: no evaluation with id {id!r} to count an attempt for")
            return int(db.execute("SELECT attempts FROM evaluations WHERE id = ?", (id,)).fetchone()[0])

    def remember_records_dir(self, path: str | Path) -> None:
        """Keep the folder the run's winners are exported to, so that a resume and ``nos rules export``
        use it without being told again (an absolute path: a resume may start elsewhere)."""
        value = str(Path(path).expanduser().resolve())
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('records_dir', ?)",
                       (_json(value, "records_dir"),))
        self.records_dir = value

    def record_update(self, batch: int, stats: dict) -> None:
        """Store the controller's statistics for its update on ``batch`` (replacing earlier ones)."""
        stats_json = _json(stats, f"update stats of batch {batch}")
        with self._tx() as db:
            db.execute("INSERT INTO updates VALUES (?, ?, ?) ON CONFLICT (batch) DO UPDATE "
                       "SET stats = excluded.stats, created_at = excluded.created_at",
                       (batch, stats_json, time.time()))

    # --- reading (works while another process writes) -----------------------------------------------

    def batch(self, batch: int) -> list[Evaluation]:
        """The evaluations of one batch, by position."""
        return self._evaluations("batch = ?", (batch,), "ORDER BY position")

    def pending(self) -> list[Evaluation]:
        """The evaluations queued but not finished, oldest first."""
        return self._evaluations("status = 'pending'", (), "ORDER BY batch, position")

    def finished_reward(self, canonical_key: str) -> tuple[float, int] | None:
        """Reward and id of the earliest evaluation with this key that trained to the end (ok, diverged)."""
        rows = self._rows(f"SELECT reward, id FROM evaluations WHERE canonical_key = ? AND status IN "
                          f"{_IN(FINISHED_WITH_REWARD)} ORDER BY id LIMIT 1", (canonical_key,))
        if not rows:
            return None
        if not _is_number(rows[0]["reward"]):
            raise StoreError(f"{self.path}: evaluation {rows[0]['id']}'s reward must be a number, found "
                             f"{str(rows[0]['reward'])[:60]!r}; the store's other rows are intact")
        return float(rows[0]["reward"]), int(rows[0]["id"])

    def updates(self) -> list[dict]:
        """The controller's update statistics by batch, each with its ``batch`` added."""
        rows = self._rows("SELECT batch, stats FROM updates ORDER BY batch")
        out = []
        for r in rows:
            stats = self._decode(r["stats"], f"update {r['batch']}'s stats")
            if not isinstance(stats, dict):
                raise StoreError(f"{self.path}: update {r['batch']}'s stats must be a mapping, found "
                                 f"{str(stats)[:60]!r}; the store's other rows are intact")
            out.append({"batch": r["batch"], **stats})
        return out

    def trained_by_batch(self) -> dict[int, int]:
        """Finished evaluations that went to a worker (attempts > 0), per batch that has any."""
        rows = self._rows("SELECT batch, COUNT(*) FROM evaluations "
                          "WHERE attempts > 0 AND status != 'pending' GROUP BY batch")
        return {self._whole(r[0], "a batch number"): int(r[1]) for r in rows}

    def last_batch(self) -> int | None:
        """The highest batch with evaluations, None for a new run."""
        last = self._rows("SELECT MAX(batch) FROM evaluations")[0][0]
        return None if last is None else self._whole(last, "the last batch number")

    def _whole(self, value: Any, what: str) -> int:
        # The schema's CHECK (batch >= 0) lets text through (SQLite ranks text above numbers).
        if not _is_int(value):
            raise StoreError(f"{self.path}: {what} must be a whole number, found {str(value)[:60]!r}; the "
                             "store's other rows are intact")
        return value

    def evaluations(self, status: str | None = None) -> list[Evaluation]:
        """Every evaluation (or those with ``status``), in the order they were added."""
        if status is None:
            return self._evaluations("1")
        _check_status(status)
        return self._evaluations("status = ?", (status,))

    def best(self, k: int = 10) -> list[Evaluation]:
        """The ``k`` best ok evaluations, highest reward first, one per canonical key (its best, earliest on
        ties); rows without a key count as distinct."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        ranked = ("(SELECT *, ROW_NUMBER() OVER (PARTITION BY COALESCE(canonical_key, 'id:' || id) "
                  "ORDER BY reward DESC, id) AS rank FROM evaluations WHERE status = 'ok')")
        return self._evaluations("rank = 1", (k,), "ORDER BY reward DESC, id LIMIT ?", source=ranked)

    def counts(self) -> dict[str, int]:
        """Rows per status, every status present (zero when none)."""
        counts = dict.fromkeys(STATUSES, 0)
        counts.update(dict(self._rows("SELECT status, COUNT(*) FROM evaluations GROUP BY status")))
        return counts

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
