"""The results store: rows round-trip, resumes check the config, errors are clear and lose nothing,
a SIGKILLed writer loses no recorded result, and readers browse while another connection writes."""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from search.store import FILENAME, SCHEMA_VERSION, STATUSES, Evaluation, RunStore, StoreError, StoreWarning

ROOT = Path(__file__).resolve().parents[1]
CONFIG = {"task": "digits", "controller": {"batch_size": 4, "lr": 0.0005}, "seeds": [0, 1]}


def row(position: int, **extra) -> dict:
    return {"position": position, "tokens": [position, 3, 1], "log_probs": [-0.5, -1.25, -2.0], "version": 2,
            "groups": [["g", "m"], ["sign"]], "rule": f"g * {position}", "canonical_key": f"k{position}",
            **extra}


@pytest.fixture
def store(tmp_path):
    with RunStore(tmp_path / "run", CONFIG) as s:
        yield s


# --- round trips ----------------------------------------------------------------------------------------

def test_a_recorded_evaluation_reads_back_field_for_field(store) -> None:
    [i] = store.add_batch(0, [row(0)])
    fresh = store.batch(0)[0]
    assert (fresh.status, fresh.reward, fresh.attempts, fresh.finished_at, fresh.curves) == (
        "pending", None, 0, None, None)
    assert store.add_attempt(i, worker="w1") == 1
    assert store.add_attempt(i) == 2  # no worker given: the last one stays
    curves = {"train_loss": [2.3, 1.1, float("nan")], "lrs": {"0.1": 0.9, "0.01": 0.8}}
    store.record(i, "ok", 0.875, lr=0.01, curves=curves, result={"reward": 0.875, "reason": None},
                 worker="w2", duration=1.5)
    e = store.batch(0)[0]
    assert isinstance(e, Evaluation)
    assert (e.id, e.batch, e.position, e.tokens, e.log_probs, e.version, e.groups) == (
        i, 0, 0, [0, 3, 1], [-0.5, -1.25, -2.0], 2, [["g", "m"], ["sign"]])
    assert (e.rule, e.canonical_key, e.status, e.reward, e.lr, e.worker, e.duration, e.attempts, e.error) == (
        "g * 0", "k0", "ok", 0.875, 0.01, "w2", 1.5, 2, None)
    assert e.curves["lrs"] == curves["lrs"] and math.isnan(e.curves["train_loss"][2])  # NaN survives JSON
    assert e.result == {"reward": 0.875, "reason": None}
    assert e.created_at <= e.finished_at
    # The durability settings: the log mode is stored in the file, the sync level is per connection.
    pragmas = [store._db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("journal_mode", "synchronous")]
    assert pragmas == ["wal", 2]  # 2 = FULL


def test_reopening_reads_back_run_id_and_config(tmp_path) -> None:
    with RunStore(tmp_path, {"a": (1, 2)}) as first:  # a tuple is stored (and compared) as a list
        run_id, created = first.run_id, first.created_at
        first.add_batch(0, [row(0)])
    for config in (None, {"a": [1, 2]}, {"a": (1, 2)}):
        with RunStore(tmp_path, config, create=False) as again:
            assert (again.run_id, again.created_at, again.config) == (run_id, created, {"a": [1, 2]})
            assert len(again.evaluations()) == 1
    with RunStore(tmp_path / "other") as other:  # no config: an empty one, and another run id
        assert other.config == {} and other.run_id != run_id


def test_decided_rows_and_batches(store) -> None:
    ids = store.add_batch(3, [row(1), row(0, status="invalid", error="no g"),
                              row(2, canonical_key="k0", status="duplicate", reward=0.5, error="same as 7")])
    assert [e.position for e in store.batch(3)] == [0, 1, 2]
    invalid = store.batch(3)[0]
    assert (invalid.id, invalid.status, invalid.error, invalid.reward) == (ids[1], "invalid", "no g", None)
    assert invalid.finished_at is not None
    assert [e.id for e in store.pending()] == [ids[0]]
    assert store.add_batch(3, [row(1), row(0), row(2)]) == ids  # re-adding (a resume) returns the same ids
    assert store.add_batch(4, []) == [] and store.last_batch() == 3
    with pytest.raises(StoreError, match=r"batch 3, row 0 \(position 1\) is stored with tokens \[1, 3, 1\], "
                                         r"re-added with \[9\]"):
        store.add_batch(3, [{**row(1), "tokens": [9]}])


def test_queries_best_counts_finished_reward_and_updates(store) -> None:
    keys = ["a", "b", "a", "c", None, "d", "e"]
    ids = store.add_batch(0, [row(p, canonical_key=key) for p, key in enumerate(keys)])
    for i, (status, reward) in zip(ids, [("ok", 0.5), ("ok", 0.7), ("ok", 0.9), ("diverged", 0.0),
                                         ("ok", 0.7), ("failed", None)]):
        store.record(i, status, reward, error="Traceback ..." if status == "failed" else None)
    assert [(e.canonical_key, e.reward) for e in store.best()] == [("a", 0.9), ("b", 0.7), (None, 0.7)]
    assert [e.id for e in store.best(2)] == [ids[2], ids[1]] and store.best(0) == []
    assert store.counts() == {"pending": 1, "ok": 4, "diverged": 1, "invalid": 0, "duplicate": 0, "failed": 1}
    assert store.finished_reward("a") == (0.5, ids[0])  # the earliest finished one
    assert store.finished_reward("c") == (0.0, ids[3])  # diverged counts: it trained to the end
    assert store.finished_reward("d") is None and store.finished_reward("e") is None  # failed, pending
    assert [e.id for e in store.evaluations("ok")] == [ids[0], ids[1], ids[2], ids[4]]
    assert store.updates() == []
    store.record_update(0, {"loss": 0.25, "kl": 0.01})
    store.record_update(1, {"loss": 0.5})
    store.record_update(0, {"loss": 0.125})  # a resumed update replaces its earlier statistics
    assert store.updates() == [{"batch": 0, "loss": 0.125}, {"batch": 1, "loss": 0.5}]
    store.record(ids[2], "diverged", 0.0, error="loss blew up")  # recording again replaces the result
    assert store.best(1)[0].canonical_key == "b"


# --- errors ---------------------------------------------------------------------------------------------

def _garbage(path: Path) -> None:
    path.write_text("not a database, just text\n" * 100)


def _foreign(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE photos (id INTEGER)")


def _foreign_meta(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE meta (name TEXT)")


def _meta_edit(sql: str):
    def make(path: Path) -> None:
        RunStore(path.parent).close()
        with sqlite3.connect(path) as db:
            db.execute(sql)
    return make


@pytest.mark.parametrize("make, message", [
    (_garbage, r"results.sqlite: cannot use as a results store \(DatabaseError: file is not a database\)"),
    (_foreign, r"results.sqlite: a SQLite file but not a nos results store \(tables: photos\)"),
    (_meta_edit(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'"),
     rf"results.sqlite: schema version {SCHEMA_VERSION + 1}, .* written by a newer nos"),
    (_meta_edit("UPDATE meta SET value = '\"someone-else\"' WHERE key = 'format'"),
     r"results.sqlite: not a nos results store \(meta format 'someone-else'\)"),
    (_foreign_meta,
     r"results.sqlite: cannot use as a results store \(OperationalError: no such column: key\)"),
    (_meta_edit("UPDATE meta SET value = '{oops' WHERE key = 'config'"),
     r"results.sqlite: cannot use as a results store \(JSONDecodeError: "),
    (_meta_edit("DELETE FROM meta WHERE key = 'run_id'"),
     r"results.sqlite: cannot use as a results store \(KeyError: 'run_id'\)"),
])
def test_files_that_are_not_our_store_are_refused(tmp_path, make, message) -> None:
    make(tmp_path / FILENAME)
    before = (tmp_path / FILENAME).read_bytes()
    for create in (True, False):
        with pytest.raises(StoreError, match=message):
            RunStore(tmp_path, create=create)
    assert (tmp_path / FILENAME).read_bytes() == before  # someone else's file is left as it was


def test_run_dir_problems(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="file: the run directory is a file"):
        RunStore(tmp_path / "file")
    with pytest.raises(StoreError, match=r"missing/results.sqlite: no results store there \(and create"):
        RunStore(tmp_path / "missing", create=False)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / FILENAME).touch()  # an empty file is an empty SQLite file; not ours to fill
    with pytest.raises(StoreError, match=r"not a nos results store \(tables: none\)"):
        RunStore(tmp_path / "empty", create=False)
    with pytest.raises(ValueError, match="config is not JSON data"):
        RunStore(tmp_path / "bad", {"f": object()})


def test_resuming_with_another_config_names_the_differences(tmp_path) -> None:
    RunStore(tmp_path, CONFIG).close()
    changed = {**CONFIG, "controller": {"batch_size": 8, "lr": 0.0005}, "extra": 1}
    del changed["seeds"]
    with pytest.raises(StoreError, match=r"results.sqlite: run \S+ was started with another config "
                                         r"\(controller.batch_size: stored 4, given 8; extra: stored absent, "
                                         r"given 1; seeds: stored \[0, 1\], given absent\)"):
        RunStore(tmp_path, changed)


BAD_CALLS = [
    (lambda s, i: s.record(i, "done", 1.0), ValueError, "unknown status 'done'; expected one of pending, ok"),
    (lambda s, i: s.record(i, "pending", None), ValueError, "record takes a finished status"),
    (lambda s, i: s.record(i, "ok", None), ValueError, "status 'ok' needs a reward"),
    (lambda s, i: s.record(i, "ok", float("nan")), ValueError, "reward must not be NaN"),
    (lambda s, i: s.record(i, "ok", "high"), ValueError, "reward must be a number or None, got 'high'"),
    (lambda s, i: s.record(i, "ok", 1.0, curves={"f": object()}), ValueError, "curves is not JSON data"),
    (lambda s, i: s.record(i + 99, "ok", 1.0), StoreError, r"no evaluation with id \d+ to record"),
    (lambda s, i: s.add_attempt(i + 99), StoreError, r"no evaluation with id \d+ to count an attempt"),
    (lambda s, i: s.add_batch(-1, [row(5)]), ValueError, "batch must be an int >= 0, got -1"),
    (lambda s, i: s.add_batch(1, [row(0), {"position": 1}]), ValueError,
     r"batch 1, row 1 \(position 1\): missing keys \['tokens', 'log_probs'"),
    (lambda s, i: s.add_batch(1, [row(0, colour="red")]), ValueError, r"unknown keys \['colour'\]"),
    (lambda s, i: s.add_batch(1, [row(0), row(1, status="great")]), ValueError, "unknown status 'great'"),
    (lambda s, i: s.add_batch(1, [row(0), row(1, tokens=["x"])]), ValueError,
     r"batch 1, row 1 \(position 1\): invalid literal for int"),
    (lambda s, i: s.add_batch(1, [row(0), row(1, rule=7)]), ValueError,
     r"batch 1, row 1 \(position 1\): rule must be a str or None, got int"),
    (lambda s, i: s.add_batch(1, [row(0), row(1, status="ok")]), sqlite3.IntegrityError, "CHECK constraint"),
    (lambda s, i: s.record(i, "failed", None, error=ValueError("x")), ValueError,
     r"evaluation \d+: error must be a str or None, got ValueError"),
    (lambda s, i: s.evaluations("unknown"), ValueError, "unknown status 'unknown'"),
    (lambda s, i: s.best(-1), ValueError, "k must be >= 0"),
]


@pytest.mark.parametrize("call, error, message", BAD_CALLS)
def test_bad_calls_raise_clear_errors_and_lose_nothing(store, call, error, message) -> None:
    [i] = store.add_batch(0, [row(0)])
    store.record(i, "ok", 0.5, lr=0.1)
    before = store.evaluations()
    with pytest.raises(error, match=message):
        call(store, i)
    assert store.evaluations() == before  # a failed batch rolls back whole: no row 0 of batch 1 either
    [j] = store.add_batch(2, [row(0)])  # and the store still takes writes
    store.record(j, "failed", None, error="Traceback ...")
    assert store.counts()["failed"] == 1


@pytest.mark.parametrize("table, column, where, read, what", [
    ("evaluations", "tokens", "position = 1", lambda s: s.evaluations(),
     r"evaluation 2 \(batch 0, position 1\): its tokens"),
    ("evaluations", "result", "position = 0", lambda s: s.best(),
     r"evaluation 1 \(batch 0, position 0\): its result"),
    ("updates", "stats", "batch = 0", lambda s: s.updates(), "update 0: its stats"),
])
def test_a_damaged_json_column_is_one_warning_naming_the_row(tmp_path, table, column, where, read,
                                                              what) -> None:
    with RunStore(tmp_path, CONFIG) as s:
        ids = s.add_batch(0, [row(0), row(1)])
        s.record(ids[0], "ok", 0.5, result={"reward": 0.5})
        s.record_update(0, {"loss": 0.25})
    with sqlite3.connect(tmp_path / FILENAME) as db:  # a hand edit or a disk error
        db.execute(f"UPDATE {table} SET {column} = '{{not json' WHERE {where}")
    with RunStore(tmp_path, create=False) as s:  # the row is skipped, the rest is read (issue 23)
        message = rf"{FILENAME}: skipped {what} is not valid JSON \(.*\); the store's other rows are read"
        with pytest.warns(StoreWarning, match=message) as said:
            read(s)
        assert len(said) == 1
        assert s.counts()["ok"] == 1 and len(s.evaluations()) == (2 if table == "updates" else 1)


def test_the_schema_refuses_bad_rows_itself(store) -> None:
    store.add_batch(0, [row(0)])
    db = sqlite3.connect(store.path)
    for sql in ("UPDATE evaluations SET status = 'great'", "UPDATE evaluations SET status = 'ok'",
                "UPDATE evaluations SET attempts = -1",
                "INSERT INTO evaluations (batch, position, tokens, log_probs, version, groups, created_at) "
                "SELECT batch, position, tokens, log_probs, version, groups, created_at FROM evaluations"):
        with pytest.raises(sqlite3.IntegrityError, match="CHECK|UNIQUE"):
            db.execute(sql)
    db.close()


# --- durability and concurrent readers ------------------------------------------------------------------

WRITER = textwrap.dedent("""
    import os, signal, sys
    from search.store import RunStore
    store = RunStore(sys.argv[1], {"run": "killed"})
    limit = int(sys.argv[2])
    batch = 0
    while limit < 0 or batch < limit:
        [i] = store.add_batch(batch, [{"position": 0, "tokens": [batch], "log_probs": [0.0], "version": 0,
                                       "groups": [], "rule": "g", "canonical_key": str(batch)}])
        store.record(i, "ok", float(batch), curves={"loss": [1.0] * 100})
        print(batch, flush=True)  # after the commit: this result must survive what follows
        batch += 1
    os.kill(os.getpid(), signal.SIGKILL)
""")


def _writer(run_dir: Path, limit: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", WRITER, str(run_dir), str(limit)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


def test_a_writer_that_kills_itself_loses_no_recorded_result(tmp_path) -> None:
    writer = _writer(tmp_path, 25)
    out, _ = writer.communicate(timeout=60)
    assert writer.returncode == -signal.SIGKILL
    assert out.split() == [str(b) for b in range(25)]
    with RunStore(tmp_path, create=False) as store:
        assert store.config == {"run": "killed"}
        rows = [(e.batch, e.status, e.reward) for e in store.evaluations()]
    assert rows == [(b, "ok", b) for b in range(25)]


def test_a_writer_killed_mid_stream_loses_nothing_and_readers_browse_while_it_writes(tmp_path) -> None:
    writer = _writer(tmp_path, -1)  # writes until killed
    try:
        seen = [int(writer.stdout.readline()) for _ in range(5)]
        with RunStore(tmp_path, create=False) as reader:  # a second process's connection, mid-write
            for _ in range(5):
                seen.append(int(writer.stdout.readline()))
                oks = reader.counts()["ok"]
                assert oks >= seen[-1] + 1 and len(reader.evaluations()) >= oks
                assert reader.best(1)[0].reward >= seen[-1]
        os.kill(writer.pid, signal.SIGKILL)
        seen += [int(line) for line in writer.stdout.read().split()]
    finally:
        writer.kill()
        writer.wait(timeout=30)
    with RunStore(tmp_path, create=False) as store:
        recorded = {e.batch for e in store.evaluations("ok")}
    assert seen == list(range(len(seen))) and set(seen) <= recorded


def test_readers_see_committed_rows_while_another_connection_holds_a_write(tmp_path) -> None:
    with RunStore(tmp_path, CONFIG) as writer:
        [i] = writer.add_batch(0, [row(0)])
        writer.record(i, "ok", 0.5)
        writer.record_update(0, {"loss": 1.0})
        writer._db.execute("BEGIN IMMEDIATE")  # hold the write lock, mid-transaction, as a busy writer does
        writer._db.execute("UPDATE evaluations SET reward = 0.99")
        with RunStore(tmp_path) as reader:  # opening and reading take no write lock
            assert [e.reward for e in reader.evaluations()] == [0.5]
            assert [e.reward for e in reader.best()] == [0.5]
            assert reader.counts()["ok"] == 1 and reader.updates() == [{"batch": 0, "loss": 1.0}]
            writer._db.execute("ROLLBACK")
            [j] = writer.add_batch(1, [row(1)])
            writer.record(j, "ok", 0.75)
            assert [e.reward for e in reader.best()] == [0.75, 0.5]  # the commit is visible at once
    assert json.loads(sqlite3.connect(tmp_path / FILENAME).execute(
        "SELECT value FROM meta WHERE key = 'config'").fetchone()[0]) == CONFIG


def test_threads_may_share_a_store(store) -> None:
    ids = store.add_batch(0, [row(p) for p in range(40)])

    def work(part: list[int]) -> None:
        for i in part:
            store.add_attempt(i, worker=threading.current_thread().name)
            store.record(i, "ok", float(i))

    threads = [threading.Thread(target=work, args=(ids[n::2],)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [(e.status, e.reward, e.attempts) for e in store.evaluations()] == [("ok", i, 1) for i in ids]


def test_statuses_match_the_schema() -> None:
    assert STATUSES == ("pending", "ok", "diverged", "invalid", "duplicate", "failed")


@pytest.mark.parametrize("pragma, reason", [
    ("max_page_count = {pages}", "database or disk is full"),  # SQLite's own "disk full", at this size
    ("query_only = ON", "readonly"),  # as a read-only disk refuses writes
])
def test_a_full_or_read_only_disk_is_one_error_and_loses_nothing(tmp_path, pragma, reason) -> None:
    with RunStore(tmp_path / "run", {"task": "digits"}) as store:
        ids = store.add_batch(0, [row(0), row(1)])
        store.record(ids[0], "ok", 1.5, lr=0.1)
        pages = store._db.execute("PRAGMA page_count").fetchone()[0]
        store._db.execute("PRAGMA " + pragma.format(pages=pages))
        with pytest.raises(StoreError) as caught:
            store.add_batch(1, [row(i, rule="g * " + "1.5 * " * 2000 + "g") for i in range(50)])
            store.record(ids[1], "ok", 2.5, lr=0.1)
    message = str(caught.value)
    assert "\n" not in message and reason in message and str(tmp_path / "run" / FILENAME) in message
    assert message.endswith(f"continue with: nos search --resume {tmp_path / 'run'}")
    with RunStore(tmp_path / "run", create=False) as store:
        rows = store.evaluations()
        assert [(r.id, r.status, r.reward) for r in rows] == [(ids[0], "ok", 1.5), (ids[1], "pending", None)]
