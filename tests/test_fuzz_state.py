"""Fuzzing what a run keeps on disk (issue 14): a controller checkpoint and the results store, damaged
at random (a key deleted or replaced by a value of another kind, a column set to any value SQLite
takes). The invariant: a documented error (ValueError naming the checkpoint; for the store a
StoreWarning naming the row, which is skipped) or a working result, within a time bound; never another
exception or a hang."""

from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller import ControllerConfig, Evolution, PPOController, RandomSearch
from controller.checkpoint import FORMAT
from search.store import FILENAME, RunStore, StoreError, StoreWarning

torch.set_num_threads(1)
FUZZ = settings(derandomize=True, deadline=None, database=None, max_examples=60,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
BOUND_S = 5.0

# Values of every kind a damaged file may hold where something else belongs.
VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.lists(st.integers(-5, 50), max_size=6),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
              st.lists(st.integers(0, 4), max_size=3).map(tuple),
              st.sampled_from([torch.float32, torch.int64, torch.uint8, torch.bool])),
)
SEARCHERS = {"ppo": PPOController, "evolution": Evolution, "random": RandomSearch}


def _config(kind: str) -> ControllerConfig:
    return ControllerConfig.from_mapping({"kind": kind, "batch_size": 6, "policy": {"hidden_size": 8},
                                          "evolution": {"population": 6, "tournament": 2}})


def _saved_state(kind: str) -> dict:
    searcher = SEARCHERS[kind](_config(kind))
    for _ in range(2):
        samples = searcher.sample()
        searcher.update(samples, [float(i) for i in range(len(samples))])
    return searcher.state_dict()


STATES = {kind: _saved_state(kind) for kind in SEARCHERS}


def _paths(state: dict) -> list[tuple[str, ...]]:
    """Every key of the state, nested ones (the policy's, the optimizer's) included, as paths."""
    out = []
    for key, value in state.items():
        out.append((key,))
        if isinstance(value, dict):
            out += [(key, inner) for inner in value]
    return out


@FUZZ
@given(kind=st.sampled_from(list(SEARCHERS)), data=st.data())
def test_a_damaged_checkpoint_loads_or_is_a_value_error(kind: str, data) -> None:
    state = {k: (dict(v) if isinstance(v, dict) else v) for k, v in STATES[kind].items()}
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(state)))
        parent = state if len(path) == 1 else state[path[0]]
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        if data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(VALUES)
    searcher = SEARCHERS[kind](_config(kind))
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / "controller.pt"
        torch.save({"format": FORMAT, **state}, file)
        start = time.perf_counter()
        try:
            searcher.load(file)
        except ValueError as err:
            assert str(err).startswith(str(file)) and "\n" not in str(err)
            searcher = SEARCHERS[kind](_config(kind))  # unchanged by the failed load: it still works
        assert time.perf_counter() - start < BOUND_S
    samples = searcher.sample()  # what loaded is usable
    searcher.update(samples, [0.5] * len(samples))


COLUMNS = ["batch", "position", "tokens", "log_probs", "version", "groups", "rule", "canonical_key",
           "reward", "lr", "curves", "result", "worker", "duration", "attempts", "error", "created_at",
           "finished_at"]
SQL_VALUES = st.one_of(st.none(), st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
                       st.text(max_size=30), st.binary(max_size=10),
                       st.sampled_from(['[1, 2]', '{"a": 1}', '[[1]]', '"x"', "[", "null", "1e999"]))


def _row(position: int) -> dict:
    return {"position": position, "tokens": [position, 3], "log_probs": [-0.5, -1.0], "version": 0,
            "groups": [["g", "m"]], "rule": f"g * {position + 1}", "canonical_key": f"k{position}"}


@FUZZ
@given(changes=st.lists(st.tuples(st.sampled_from(COLUMNS), SQL_VALUES), min_size=1, max_size=3),
       stats=st.one_of(st.none(), SQL_VALUES))
def test_a_damaged_store_row_reads_or_is_a_store_error(changes, stats) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with RunStore(tmp, {"run": "fuzz"}) as store:
            ids = store.add_batch(0, [_row(0), _row(1)])
            store.record(ids[0], "ok", 0.5, lr=0.1, curves={"val_curve": [1.0]}, result={"reward": 0.5})
            store.record_update(0, {"loss": 0.25})
        with sqlite3.connect(Path(tmp) / FILENAME) as db:  # a hand edit or a disk error
            for column, value in changes:
                try:
                    db.execute(f"UPDATE evaluations SET {column} = ? WHERE id = ?", (value, ids[0]))
                except sqlite3.IntegrityError:
                    pass  # the schema's own checks refuse it: nothing to read back
            if stats is not None:
                try:
                    db.execute("UPDATE updates SET stats = ? WHERE batch = 0", (stats,))
                except sqlite3.IntegrityError:
                    pass
        start = time.perf_counter()
        with RunStore(tmp, create=False) as store:
            for read in (store.evaluations, lambda: store.best(5), store.counts, store.updates,
                         store.pending, lambda: store.finished_reward("k0"), store.trained_by_batch,
                         store.last_batch, lambda: store.batch(0)):
                try:
                    result = read()
                except StoreError as err:
                    assert str(err).startswith(str(Path(tmp) / FILENAME)) and "\n" not in str(err)
                    continue
                for row in result if isinstance(result, list) else []:  # rows read are well-typed
                    if hasattr(row, "tokens"):
                        assert all(isinstance(t, int) for t in row.tokens)
                        assert row.reward is None or isinstance(row.reward, (int, float))
                        assert row.curves is None or isinstance(row.curves, dict)
        assert time.perf_counter() - start < BOUND_S


def test_the_fuzzing_above_reaches_both_outcomes(tmp_path) -> None:
    """A sanity check of the harness: an untouched store reads, a row with a text reward is skipped with a
    StoreWarning naming it (issue 23: the rest is read)."""
    with RunStore(tmp_path, {"run": "fuzz"}) as store:
        ids = store.add_batch(0, [_row(0)])
        store.record(ids[0], "ok", 0.5)
    with sqlite3.connect(tmp_path / FILENAME) as db:
        db.execute("UPDATE evaluations SET reward = 'high' WHERE id = ?", (ids[0],))
    with RunStore(tmp_path, create=False) as store:
        assert store.counts()["ok"] == 1
        with pytest.warns(StoreWarning, match=r"skipped evaluation 1 \(batch 0, position 0\): its reward "
                          "must be a number, found 'high'"):
            assert store.best(1) == []
        assert store.finished_reward("k0") is None  # the same row again: said once already


def test_oversized_files_are_refused_with_the_limit_named(tmp_path, monkeypatch) -> None:
    from controller import checkpoint
    from discovered_rules import RecordError, read_record
    from discovered_rules.records import MAX_RECORD_BYTES

    record = tmp_path / "big.json"
    record.write_bytes(b" " * (MAX_RECORD_BYTES + 1))
    with pytest.raises(RecordError, match=r"big.json: the rule record is larger than 4 MiB, the size limit"):
        read_record(record)
    searcher = RandomSearch(_config("random"))
    searcher.save(tmp_path / "c.pt")
    monkeypatch.setattr(checkpoint, "MAX_CHECKPOINT_BYTES", 100)
    with pytest.raises(ValueError, match=r"c.pt: not a readable controller checkpoint \(ValueError: larger "
                       r"than 0 MiB, the size limit"):
        searcher.load(tmp_path / "c.pt")
