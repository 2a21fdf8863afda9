"""The search under faults, with real processes: a search killed with SIGKILL and resumed, a worker process
killed mid-evaluation, and a search on a Ray cluster started with `ray start --head`."""

from __future__ import annotations

import logging
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

from controller import PPOController, make_searcher
from search.cluster import ClusterError, check_address
from search.config import SearchConfig
from search.driver import CHECKPOINT, run_search
from search.store import RunStore, StoreError
from tests.search_helpers import TINY_TASK, free_port, kill_session, nos_command, tiny_config

torch.set_num_threads(1)
pytestmark = pytest.mark.slow


def _updated(run_dir: Path) -> bool:
    """Whether the run has recorded a controller update (and so saved a checkpoint, or is about to)."""
    try:
        with RunStore(run_dir, create=False) as store:
            return bool(store.updates())
    except StoreError:
        return False


def _finished(run_dir: Path, statuses=("ok", "diverged")) -> list:
    """Rows with ``statuses`` in the run's store, read while another process may be writing it."""
    try:
        with RunStore(run_dir, create=False) as store:
            return [r for r in store.evaluations() if r.status in statuses]
    except StoreError:  # not created yet, or created but its schema not yet committed
        return []


def _same_run(rows: list, expected: list) -> None:
    """Two runs' rows are the same samples (batch, position, tokens, log-probabilities, policy version)
    with the same outcomes."""
    assert [(r.batch, r.position, r.tokens, r.version, r.status) for r in rows] == \
        [(r.batch, r.position, r.tokens, r.version, r.status) for r in expected]
    assert [r.log_probs for r in rows] == [r.log_probs for r in expected]
    assert [r.reward for r in rows] == pytest.approx([r.reward for r in expected], abs=1e-9)


def test_a_killed_search_resumes_and_evaluates_nothing_twice(ray_session, tmp_path) -> None:
    # PPO, whose batches depend on its updates: the resumed run equals the uninterrupted one only if the
    # stored batches, the checkpoint and the controller's generator are put back together exactly.
    config = tiny_config(budget=18, batch_size=6, task={**TINY_TASK, "epochs": 6})  # ~0.3 s a training
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "run"
    process = subprocess.Popen([*nos_command(), "search", "--config", str(tmp_path / "run.yaml"),
                                "--run-dir", str(run_dir), "--no-progress"], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while len(_finished(run_dir)) < 3 or not _updated(run_dir):  # results and an update on disk
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
        assert store.last_batch() + 1 > len(store.updates()), "killed before the end"

    summary = run_search(None, run_dir, resume=True, progress=False)

    with RunStore(run_dir, create=False) as store:
        after = store.evaluations()
        updates = store.updates()
    assert summary.counts["pending"] == 0 and summary.stopped is not None
    assert [u["batch"] for u in updates] == list(range(max(r.batch for r in after) + 1))
    by_id = {r.id: r for r in after}
    for row_id, row in before.items():  # nothing finished was evaluated again, or even touched
        assert by_id[row_id] == row
    trained = [r.canonical_key for r in after if r.attempts > 0]
    assert len(trained) == len(set(trained)) == summary.trained, "every rule trained once"
    # The resumed run is the run that was never interrupted: same samples, same outcomes, same updates.
    reference = run_search(config, tmp_path / "reference", progress=False)
    with RunStore(tmp_path / "reference", create=False) as store:
        _same_run(after, store.evaluations())
        assert updates == store.updates(), "the same updates, to the last bit"
    assert reference.best_reward == pytest.approx(summary.best_reward, abs=1e-9)


class _Crash(Exception):
    """Stands for the process dying at one chosen point."""


def test_a_search_that_dies_before_its_checkpoint_resumes_exactly(ray_session, tmp_path, monkeypatch,
                                                                 caplog) -> None:
    # The search dies right after recording update 2, before checkpointing it: the checkpoint is the one
    # of update 1 (2 updates), batch 2 was drawn before it and batch 3 after it (policy version 2).
    config = tiny_config(budget=40, batch_size=6)
    reference = run_search(config, tmp_path / "reference", progress=False)
    assert reference.updates > 4, "long enough to crash in the middle"
    saves = []
    save = PPOController.save

    def dying_save(self, path):
        saves.append(self.updates)
        if self.updates == 3:
            raise _Crash
        save(self, path)

    monkeypatch.setattr(PPOController, "save", dying_save)
    with pytest.raises(_Crash):
        run_search(config, tmp_path / "run", progress=False)
    monkeypatch.undo()
    with RunStore(tmp_path / "run", create=False) as store:
        assert [u["batch"] for u in store.updates()] == [0, 1, 2]
        assert [store.batch(b)[0].version for b in (2, 3)] == [1, 2] and store.last_batch() == 3
    controller = make_searcher(SearchConfig.from_mapping(config).controller)
    controller.load(tmp_path / "run" / CHECKPOINT)
    assert controller.updates == 2

    with caplog.at_level(logging.WARNING, logger="search.driver"):
        summary = run_search(None, tmp_path / "run", resume=True, progress=False)
    assert not [r for r in caplog.records if "drawn again differs" in r.message], "batch 3 redrawn exactly"
    with RunStore(tmp_path / "run", create=False) as run, RunStore(tmp_path / "reference",
                                                                    create=False) as ref:
        _same_run(run.evaluations(), ref.evaluations())
        # Update 2 was done again with the same samples and rewards, and every later one followed suit.
        assert run.updates() == ref.updates()
    assert (summary.updates, summary.trained, summary.best_rule) == (reference.updates, reference.trained,
                                                                     reference.best_rule)


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
    assert summary.counts["pending"] == summary.counts["failed"] == 0 and summary.trained >= 8


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
        config = {**tiny_config(budget=8, batch_size=4),
                  "confirm": {"top_k": 1, "seeds": 1, "budget_scale": 1.0, "baselines": ["sgd"]}}
        (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
        run = subprocess.run([*nos_command(), "search", "--address", f"127.0.0.1:{port}", "--config",
                              str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"),
                              "--records-dir", str(tmp_path / "records"), "--no-progress"],
                             env=env, capture_output=True, text=True, timeout=180)
        assert run.returncode == 0, run.stdout + run.stderr
        for line in ("trainings", "of a budget of 8", "duplicates skipped", "worker busy fraction",
                     "first submission to the last result", "stopped", "best rule"):
            assert line in " ".join(run.stdout.split()), line
        # The confirmation on the same cluster: the best rule exported where asked, and said so.
        exported = list((tmp_path / "records").glob("nos_*_1.json"))
        assert len(exported) == 1 and f"exported {exported[0].stem}: " in run.stdout
    finally:
        head.terminate()  # `ray start --block` stops the processes it started
        try:
            head.wait(timeout=60)
        finally:
            kill_session(head.pid)
            shutil.rmtree(temp_dir, ignore_errors=True)
    with RunStore(tmp_path / "run", create=False) as store:
        rows = store.evaluations()
        assert store.counts()["pending"] == 0 and len(store.updates()) == store.last_batch() + 1
        assert sum(r.attempts > 0 for r in rows) >= 8
    assert any(r.status == "ok" for r in rows)
