"""The search under faults, with real processes: a search killed with SIGKILL and resumed, a worker process
killed mid-evaluation, and a search on a Ray cluster started with `ray start --head`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
import torch
import yaml

from search.cluster import ClusterError, check_address
from search.driver import run_search
from search.store import RunStore, StoreError
from tests.search_helpers import TINY_TASK, free_port, kill_session, nos_command, tiny_config

torch.set_num_threads(1)
pytestmark = pytest.mark.slow


def _finished(run_dir: Path, statuses=("ok", "diverged")) -> list:
    """Rows with ``statuses`` in the run's store, read while another process may be writing it."""
    try:
        with RunStore(run_dir, create=False) as store:
            return [r for r in store.evaluations() if r.status in statuses]
    except StoreError:  # not created yet, or created but its schema not yet committed
        return []


def test_a_killed_search_resumes_and_evaluates_nothing_twice(ray_session, tmp_path) -> None:
    # Random search (its samples do not depend on the rewards) on a task of ~0.3 s per evaluation.
    config = tiny_config(budget=24, batch_size=6, kind="random", task={**TINY_TASK, "epochs": 6})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    process = subprocess.Popen([*nos_command(), "search", "--config", str(tmp_path / "run.yaml"),
                                "--run-dir", str(run_dir), "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_finished(run_dir)) < 3:  # some results on disk
            assert process.poll() is None, process.stdout.read().decode()
            assert time.monotonic() < deadline, "the search produced no results in time"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        kill_session(process.pid)  # Ray's helper processes that outlive their driver
        process.stdout.close()
    with RunStore(run_dir, create=False) as store:
        before = {r.id: r for r in store.evaluations() if r.status != "pending"}
        assert len(before) < 24, "killed before the end"

    summary = run_search(None, run_dir, resume=True, progress=False)

    with RunStore(run_dir, create=False) as store:
        after = store.evaluations()
        updates = store.updates()
    assert len(after) == 24 and summary.samples == 24 and summary.counts["pending"] == 0
    assert len({r.id for r in after}) == len({(r.batch, r.position) for r in after}) == 24
    assert [u["batch"] for u in updates] == [0, 1, 2, 3]
    by_id = {r.id: r for r in after}
    for row_id, row in before.items():  # nothing finished was evaluated again, or even touched
        assert by_id[row_id] == row
    # The resumed run is the run that was never interrupted: same samples, same outcomes.
    reference = run_search(config, tmp_path / "reference", progress=False)
    with RunStore(tmp_path / "reference", create=False) as store:
        expected = store.evaluations()
    assert [(r.batch, r.position, r.tokens, r.status) for r in after] == \
        [(r.batch, r.position, r.tokens, r.status) for r in expected]
    assert [r.reward for r in after] == pytest.approx([r.reward for r in expected], abs=1e-9)
    assert reference.best_reward == pytest.approx(summary.best_reward, abs=1e-9)


def test_a_killed_worker_is_replaced_and_its_evaluation_retried(ray_session, tmp_path) -> None:
    # The full digits task (~1 s per evaluation): an evaluation in flight stays in flight while we act.
    config = tiny_config(budget=8, batch_size=8, kind="random", task={})
    outcome: dict = {}

    def search() -> None:
        try:
            outcome["summary"] = run_search(config, tmp_path, progress=False)
        except BaseException as err:  # noqa: BLE001 (re-raised in the test's thread)
            outcome["error"] = err

    thread = threading.Thread(target=search)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        victim = None
        while victim is None:
            assert thread.is_alive(), outcome
            assert time.monotonic() < deadline, "no evaluation started in time"
            try:
                with RunStore(tmp_path, create=False) as store:
                    # The driver records the worker (host:pid, from the actor's info method) of each attempt.
                    victim = next((r for r in store.pending() if r.attempts == 1 and r.worker), None)
            except StoreError:
                pass
            time.sleep(0.02)
        os.kill(int(victim.worker.rsplit(":", 1)[1]), signal.SIGKILL)
    finally:
        thread.join(timeout=180)
    assert "error" not in outcome, outcome.get("error")
    summary = outcome["summary"]
    with RunStore(tmp_path, create=False) as store:
        row = next(r for r in store.evaluations() if r.id == victim.id)
    assert row.status == "ok" and row.attempts == 2 and row.reward > 0
    assert row.worker != victim.worker, "retried on the actor that replaced the killed one"
    assert summary.counts["pending"] == summary.counts["failed"] == 0 and summary.samples == 8


def test_search_on_a_cluster_started_with_ray_start(tmp_path) -> None:
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="nosray-", dir="/tmp")  # short: Ray's socket paths must stay short
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}  # loopback only; no token to hand around
    ray = str(Path(sys.executable).parent / "ray")
    head = subprocess.Popen([ray, "start", "--head", f"--port={port}", "--node-ip-address=127.0.0.1",
                             "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp_dir}",
                             "--disable-usage-stats", "--block"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                check_address(f"127.0.0.1:{port}")
                break
            except ClusterError:
                assert head.poll() is None, "ray start --head exited"
                assert time.monotonic() < deadline, "the head did not come up in time"
                time.sleep(0.5)
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(tiny_config(budget=8, batch_size=4)))
        run = subprocess.run([*nos_command(), "search", "--address", f"127.0.0.1:{port}", "--config",
                              str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"),
                              "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "busy fraction" in run.stdout and "best rule" in run.stdout
    finally:
        head.terminate()  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        finally:
            kill_session(head.pid)
            shutil.rmtree(temp_dir, ignore_errors=True)
    with RunStore(tmp_path / "run", create=False) as store:
        rows = store.evaluations()
        assert len(rows) == 8 and store.counts()["pending"] == 0 and len(store.updates()) == 2
    assert any(r.status == "ok" for r in rows)
