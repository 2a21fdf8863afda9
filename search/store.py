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
and JSON only, and a file that is not ours, from a newer schema, or missing one of its tables, is refused
with a `StoreError` naming it.

Reading: every row becomes an `Evaluation` in one place (`RunStore._evaluation`), which every reader goes
through (``nos report``, ``nos rules list/show/export``, ``--resume``). A row that a hand edit or a disk
error left malformed (text where a number belongs, JSON that does not parse, a rule that is NULL or does
not parse, a non-finite number, text longer than its bound in `LIMITS`) is skipped with one `StoreWarning`
naming the file and the row, and the rest is read; the row itself stays in the file. Text is cut to its
bound inside SQLite, before Python parses or shows it. ``RunStore(run_dir, read_only=True)`` opens the
file read-only (``mode=ro``): a reader never changes a store.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from configuration import describe_differences, differences
from dsl import RuleError, parse
from dsl.printable import visible
from dsl.text import MAX_TEXT

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
# The longest text each column may hold, in characters (bytes for a blob): the longest rule dsl parses; a
# key's 16 hex digits; JSON lists of a batch's tokens and a training's curves and result (a few KB in a
# search; records are bounded at 4 MiB alike); a traceback. A longer value is read as its first LIMIT + 1
# characters only (`_bounded_columns`) and the row is malformed, except the free text of `CUT`, which is
# shown cut.
LIMITS = {"rule": MAX_TEXT, "canonical_key": 64, "status": 16, "tokens": 64 * 1024, "log_probs": 256 * 1024,
          "groups": 64 * 1024, "curves": 4 * 2**20, "result": 4 * 2**20, "worker": 1024,
          "error": 256 * 1024}
CUT = ("worker", "error")
_FINITE = ("reward", "lr", "duration", "created_at", "finished_at")  # inf would rank first, NaN compare false
_ROW_KEYS = ("position", "tokens", "log_probs", "version", "groups", "rule", "canonical_key")
_OPTIONAL_ROW_KEYS = ("status", "reward", "error")


class StoreError(RuntimeError):
    """Not a results store of ours, a schema this code cannot read, an unknown row, or a run dir problem."""


class StoreWarning(UserWarning):
    """A malformed row of a store was skipped by a reader; the message names the file and the row."""


class Malformed(ValueError):
    """What is wrong with one row as read (a column and its problem); the row is skipped (`skip`)."""


def _bounded_columns(names: Any, limits: dict[str, int] = LIMITS) -> str:
    """The SELECT list of ``names``, each text or blob column with a bound read as at most its bound + 1
    characters: a 5 MB rule never reaches Python whole, and is still seen to be too long."""
    def column(name: str) -> str:
        n = limits.get(name)
        if n is None:
            return name
        return (f"CASE WHEN typeof({name}) IN ('text', 'blob') AND length({name}) > {n} "
                f"THEN substr({name}, 1, {n + 1}) ELSE {name} END AS {name}")
    return ", ".join(column(n) for n in names)


def bounded(name: str, value: Any, limits: dict[str, int] = LIMITS) -> Any:
    """``value`` of column ``name`` within its bound: free text (`CUT`) cut with a note, other text over
    its bound Malformed."""
    n = limits.get(name)
    if n is None or not isinstance(value, str | bytes) or len(value) <= n:
        return value
    if name in CUT and isinstance(value, str):
        return value[:n] + f"... (cut at {n} characters)"
    raise Malformed(f"its {name} is longer than {n} characters, the bound of a stored {name}")


@functools.lru_cache(maxsize=4096)  # a run repeats its rules (duplicates), and readers read a row often
def rule_problem(text: str) -> str | None:
    """Why stored rule text is not a rule (the parse error's first line), or None when it parses."""
    try:
        parse(text)
    except RuleError as err:
        return str(err).splitlines()[0]
    return None


def decoded(text: str | bytes | None, column: str) -> Any:
    """A JSON column's value; a damaged one (edited by hand, a disk error) is Malformed."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except (ValueError, TypeError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError: ValueErrors
        raise Malformed(f"its {column} is not valid JSON ({visible(err, limit=120)})") from None


def quoted(value: Any) -> str:
    """A stored value as a malformed row's message quotes it: a short prefix, nothing hidden raw."""
    return repr(visible(value, limit=60)) if isinstance(value, str) else visible(repr(value), limit=60)


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


_COLUMNS = _bounded_columns(f.name for f in fields(Evaluation))
# The malformed rows this process has warned about (file, row): each is said once, however often it is read
# (Python's own once-per-location filter is reset whenever a library adds a filter).
_SKIPPED: set[tuple[str, str]] = set()


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

    def __init__(self, run_dir: str | Path, config: dict | None = None, create: bool = True, *,
                 read_only: bool = False) -> None:
        """Open (or create) the store of ``run_dir``; ``read_only``: an existing store, opened so that
        nothing this object does can change the file (every reader's way: report, list, show)."""
        create = create and not read_only
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
        if not read_only:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()  # one transaction at a time when threads share the store
        mode = "ro" if read_only else "rwc" if create else "rw"
        uri = self.path.resolve().as_uri() + f"?mode={mode}"
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
        tables = self._tables()
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
            tables = self._tables()
        meta = {r["key"]: json.loads(r["value"]) for r in self._db.execute("SELECT key, value FROM meta")}
        if meta.get("format") != FORMAT:
            raise StoreError(f"{self.path}: not a nos results store (meta format {meta.get('format')!r})")
        version = meta.get("schema_version")
        if version != SCHEMA_VERSION:
            newer = isinstance(version, int) and version > SCHEMA_VERSION
            raise StoreError(f"{self.path}: schema version {version!r}, this code reads version "
                             f"{SCHEMA_VERSION}" + ("; it was written by a newer nos, upgrade to read it"
                                                    if newer else ""))
        missing = [t for t in ("evaluations", "updates") if t not in tables]
        if missing:  # a table dropped by hand: every read of it would be SQLite's "no such table"
            raise StoreError(f"{self.path}: the results store has no table {' nor '.join(missing)} (dropped "
                             "or never made): the file is damaged; its other tables were not changed")
        self.run_id, self.config, self.created_at = meta["run_id"], meta["config"], meta["created_at"]
        self.records_dir: str | None = meta.get("records_dir")  # where its winners go (remember_records_dir)
        if config is not None and config != self.config:
            details = "; ".join(describe_differences(differences(self.config, config), "stored", "given", 8))
            raise StoreError(f"{self.path}: run {self.run_id} was started with another config ({details}); "
                             "resume it with its own config (pass config=None to read it back)")

    def _tables(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: all of it is on disk when the block ends, or none of it on an error."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")  # take the write lock now, not at the first write
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        with contextlib.suppress(sqlite3.Error):  # a full disk may refuse this too
                            self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:  # a full or read-only disk, an I/O error, a lock held
                raise StoreError(f"{self.path}: cannot write the results store ({err}); every result "
                                 "recorded before is kept. Free space or make it writable, then continue "
                                 f"with: nos search --resume {self.path.parent}") from err

    def _rows(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._db.execute(sql, params).fetchall()
            except sqlite3.DatabaseError as err:  # a table dropped while open, a damaged page
                raise StoreError(f"{self.path}: cannot read the results store ({type(err).__name__}: "
                                 f"{visible(err, limit=200)})") from None

    def skip(self, row: str, problem: Malformed | str) -> None:
        """Say once that ``row`` (e.g. "evaluation 12 (batch 3, position 1)") was skipped, and why."""
        if (str(self.path), row) in _SKIPPED:  # read again (best, then every row; a second open): said
            return
        _SKIPPED.add((str(self.path), row))
        warnings.warn(f"{self.path}: skipped {row}: {problem}; the store's other rows are read (the row is "
                      "left in the file)", StoreWarning, stacklevel=2)

    def _evaluations(self, where: str, params: tuple = (), tail: str = "ORDER BY id") -> list[Evaluation]:
        rows = self._rows(f"SELECT {_COLUMNS} FROM evaluations WHERE {where} {tail}", params)
        out = []
        for r in rows:
            try:
                out.append(self._evaluation(r))
            except Malformed as err:
                self.skip(f"evaluation {r['id']} (batch {quoted(r['batch'])}, position "
                          f"{quoted(r['position'])})", err)
        return out

    def _evaluation(self, r: sqlite3.Row) -> Evaluation:
        """A row as an Evaluation, each column checked (`_COLUMN_CHECKS`, `LIMITS`, finite numbers, rule
        text that parses); Malformed says what is wrong."""
        values = {}
        for k in r.keys():
            value = bounded(k, r[k])
            value = decoded(value, k) if k in _JSON_COLUMNS else value
            check, nullable, expected = _COLUMN_CHECKS[k]
            if not (value is None and nullable) and not check(value):
                raise Malformed(f"its {k} must be {expected}, found {quoted(value)}")
            if k in _FINITE and value is not None and not math.isfinite(value):
                raise Malformed(f"its {k} is {value}, not a finite number")
            values[k] = value
        if not all(math.isfinite(p) for p in values["log_probs"]):
            raise Malformed("its log_probs hold a non-finite number")
        if values["rule"] is None and values["status"] != "invalid":  # only an undecodable sample has none
            raise Malformed(f"it has no rule text (NULL) but the status {values['status']!r}")
        if values["rule"] is not None and (problem := rule_problem(values["rule"])) is not None:
            raise Malformed(f"its rule text {quoted(values['rule'])} does not parse ({problem})")
        return Evaluation(**values)

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
        rows = self._evaluations(f"canonical_key = ? AND status IN {_IN(FINISHED_WITH_REWARD)}",
                                 (canonical_key,))  # a malformed earliest row is skipped: the next stands in
        return (float(rows[0].reward), rows[0].id) if rows else None  # type: ignore[arg-type]

    def updates(self) -> list[dict]:
        """The controller's update statistics by batch, each with its ``batch`` added."""
        rows = self._rows(f"SELECT {_bounded_columns(('batch', 'stats'), {'stats': LIMITS['result']})} "
                          "FROM updates ORDER BY batch")
        out = []
        for r in rows:
            try:
                stats = decoded(bounded("stats", r["stats"], {"stats": LIMITS["result"]}), "stats")
                if not isinstance(stats, dict):
                    raise Malformed(f"its stats must be a mapping, found {quoted(stats)}")
            except Malformed as err:
                self.skip(f"update {quoted(r['batch'])}", err)
                continue
            out.append({"batch": r["batch"], **stats})
        return out

    def trained_by_batch(self) -> dict[int, int]:
        """Finished evaluations that went to a worker (attempts > 0), per batch that has any."""
        rows = self._rows("SELECT batch, COUNT(*) FROM evaluations "
                          "WHERE attempts > 0 AND status != 'pending' GROUP BY batch")
        counted = {}
        for batch, count in rows:
            if _is_int(batch):
                counted[batch] = int(count)
            else:  # the schema's CHECK (batch >= 0) lets text through; those rows are skipped by every read
                self.skip(f"{count} evaluation(s) of batch {quoted(batch)}", "a batch number must be a whole "
                          "number")
        return counted

    def last_batch(self) -> int | None:
        """The highest batch with evaluations, None for a new run."""
        # The schema's CHECK (batch >= 0) lets text through (SQLite ranks text above numbers): whole numbers
        # only, as the rows read (a row with a text batch is skipped by every read).
        last = self._rows("SELECT MAX(batch) FROM evaluations WHERE typeof(batch) = 'integer'")[0][0]
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
        # Ranked here, not in SQL, so that a malformed row (an inf reward would rank first, text above
        # every number) is skipped before it can stand for its key.
        best: dict[Any, Evaluation] = {}
        for row in self._evaluations("status = 'ok'"):
            key = row.canonical_key if row.canonical_key is not None else ("id", row.id)
            if key not in best or row.reward > best[key].reward:  # type: ignore[operator] (ok: a reward)
                best[key] = row
        return sorted(best.values(), key=lambda row: (-row.reward, row.id))[:k]  # type: ignore[operator]

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
