"""One process per run directory (search.lock): a live holder refuses a second search, a killed one does
not, and a refused resume writes nothing; what the driver keeps in or reads from the run directory (its
records folder, its baselines cache) at its start."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from search.driver import run_search
from search.lock import LOCK_FILE, RunLock, RunLockedError
from search.store import RunStore, StoreError
from tests.search_helpers import tiny_config

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys, time; from search.lock import RunLock; lock = RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(60)")


def _holder(run_dir: Path) -> subprocess.Popen:
    """Another process holding the run directory's lock, as a live `nos search` would."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_live_holder_refuses_a_second_lock_and_says_who(tmp_path) -> None:
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"in use by another nos process \(pid {proc.pid} on "):
            RunLock(tmp_path).acquire()
        assert isinstance(RunLockedError("x"), StoreError), "the CLI reports it as a store error, exit 1"
    finally:
        proc.kill()
        proc.wait()


def test_a_lock_left_by_a_killed_process_is_stale_and_taken(tmp_path) -> None:
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_FILE).exists(), "the file stays behind"
    with RunLock(tmp_path) as lock:
        assert f"pid {os.getpid()} " in (tmp_path / LOCK_FILE).read_text()
        with pytest.raises(RunLockedError):  # one holder at a time, in one process too
            RunLock(tmp_path).acquire()
    lock.release()  # twice is harmless
    RunLock(tmp_path).acquire().release()


def test_resuming_a_live_run_is_refused_before_anything_is_written(tmp_path) -> None:
    run_dir = tmp_path / "run"
    RunStore(run_dir, config=tiny_config()).close()
    before = (run_dir / "results.sqlite").read_bytes()
    proc = _holder(run_dir)
    try:
        start = time.perf_counter()
        with pytest.raises(RunLockedError, match=str(run_dir)):
            run_search(None, run_dir, resume=True, progress=False)
        assert time.perf_counter() - start < 5, "refused before Ray starts"
    finally:
        proc.kill()
        proc.wait()
    assert (run_dir / "results.sqlite").read_bytes() == before
    assert not (run_dir / "controller.pt").exists()


def test_a_run_remembers_its_records_folder_for_resumes(tmp_path, monkeypatch) -> None:
    from search.results.winners import records_folder as _records_dir

    monkeypatch.setenv("NOS_RULES_DIR", str(tmp_path / "default"))
    with RunStore(tmp_path / "run", config=tiny_config()) as store:
        assert _records_dir(store, None) == tmp_path / "default", "the default, remembered"
        monkeypatch.setenv("NOS_RULES_DIR", str(tmp_path / "changed"))
        assert _records_dir(store, None) == tmp_path / "default", "a resume keeps the run's folder"
        assert _records_dir(store, tmp_path / "given") == tmp_path / "given", "a folder given wins"
        assert _records_dir(store, None) == tmp_path / "given", "and is remembered"
        (tmp_path / "file").write_text("x")
        with pytest.raises(StoreError, match="the records folder is a file"):
            _records_dir(store, tmp_path / "file")


def test_a_damaged_baselines_cache_does_not_stop_a_search(tmp_path, caplog) -> None:
    from search.config import SearchConfig
    from search.driver import _baselines

    config = SearchConfig.from_mapping(tiny_config())
    RunStore(tmp_path, config=config.to_mapping()).close()
    (tmp_path / "baselines.json").write_text("{not json")
    assert _baselines(config, tmp_path, None, progress=False) is None
    assert "the baselines could not be trained" in caplog.text and "baselines.json" in caplog.text
