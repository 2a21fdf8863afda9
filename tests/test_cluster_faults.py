"""The search on a multi-node Ray cluster under faults, as Ray's own tests do it: several raylets on this
machine (`ray.cluster_utils.Cluster`), `nos search --address` in a subprocess, and nodes killed or added
while it trains. Each test checks what the user sees (one line per fault, none of Ray's) and what the store
holds (every distinct rule trained once)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from search.store import RunStore
from tests.search_helpers import TINY_TASK, kill_session, nos_command, tiny_config
from tests.test_search_faults import _finished, _same_run, _updated

pytestmark = pytest.mark.slow
SLOW_TASK = {**TINY_TASK, "epochs": 6}  # ~0.3 s a training: a node can be lost while it trains
RAY_LINES = ("(raylet", "[state-dump]", "Raylet is terminated", "gcs_client.cc", "rpc_client.h")


@pytest.fixture
def cluster(monkeypatch):
    """A Ray cluster of a head (1 CPU) on this machine, more nodes added by the test; torn down after."""
    from ray.cluster_utils import Cluster

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # loopback only: no token to hand to the driver
    # A lost node is marked dead within about a second (Ray's default health checks take ~15 s).
    checks = {"health_check_period_ms": 300, "health_check_failure_threshold": 3}
    made = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False,
                                                         "_system_config": checks})
    yield made
    try:
        made.shutdown()
    except Exception:  # a head the test killed: its processes are gone already
        pass


def _search(address: str, tmp_path: Path, config: dict, *extra: str) -> subprocess.Popen:
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    return subprocess.Popen([*nos_command(), "search", "--address", address, "--config",
                             str(tmp_path / "run.yaml"), "--run-dir", str(tmp_path / "run"), "--no-progress",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _following(budget: int) -> dict:
    """Random search over the default space (thousands of rules) with no worker count of its own: the
    pool follows the cluster."""
    config = tiny_config(budget=budget, batch_size=4, kind="random", task=SLOW_TASK)
    del config["search"]["workers"], config["controller"]["vocabulary"]
    return config


def _wait(condition, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, process.stdout.read()
        assert time.monotonic() < deadline, "the search did not get there in time"
        time.sleep(0.1)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (a raylet's workers)."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
        except (OSError, ValueError):
            continue
    return found


def _training_on(node, run_dir: Path) -> bool:
    """Whether a training is under way on a worker of ``node`` (a row submitted there, not finished)."""
    raylet = node.all_processes["raylet"][0].process.pid
    pids = {str(pid) for pid in _children(raylet)}
    rows = _finished(run_dir, statuses=("pending",))
    return any(r.worker and r.worker.rsplit(":", 1)[-1] in pids for r in rows)


def _finish(process: subprocess.Popen, seconds: float = 240) -> tuple[int, str]:
    try:
        out, _ = process.communicate(timeout=seconds)
    finally:
        kill_session(process.pid)
    return process.returncode, out


def _flat(out: str) -> str:
    """The output with the summary table's borders gone and its wrapped cells joined."""
    return " ".join(out.replace("│", " ").split())


def _trained(run_dir: Path) -> list:
    with RunStore(run_dir, create=False) as store:
        return [r for r in store.evaluations() if r.attempts > 0]


def test_a_lost_node_is_one_line_and_its_trainings_are_retried(cluster, tmp_path) -> None:
    node = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    start = time.monotonic()
    search = _search(cluster.address, tmp_path, _following(40))
    run_dir = tmp_path / "run"
    _wait(lambda: len(_finished(run_dir)) >= 6 and _training_on(node, run_dir), search)
    cluster.remove_node(node, allow_graceful=False)  # its raylet and workers killed mid-training
    status, out = _finish(search)
    assert status == 0, out
    lost = [line for line in out.splitlines() if re.fullmatch(r"node \S+ \(\w{8}\) lost: \d+ trainings? "
                                                              r"requeued", line)]
    assert len(lost) == 1, out
    assert "workers: 2 -> 1, following the cluster's resources" in out
    assert not [line for line in out.splitlines() if any(mark in line for mark in RAY_LINES)], out
    assert (run_dir / "ray.log").stat().st_size > 0
    rows = _trained(run_dir)
    keys = [r.canonical_key for r in rows]
    assert len(keys) == len(set(keys)) == 40, "each distinct rule trained and recorded once"
    retried = sum(r.attempts - 1 for r in rows)
    assert retried >= 1 and f"trainings retried after their worker died: {retried}" in _flat(out)
    print(f"lost node: {retried} retried, {len(rows)} recorded, {time.monotonic() - start:.1f} s; "
          f"terminal:\n{out}")


def test_a_node_that_joins_gets_workers(cluster, tmp_path) -> None:
    cluster.wait_for_nodes()
    search = _search(cluster.address, tmp_path, _following(40))
    run_dir = tmp_path / "run"
    _wait(lambda: len(_finished(run_dir)) >= 6, search)
    cluster.add_node(num_cpus=1)
    status, out = _finish(search)
    assert status == 0, out
    assert "workers: 1 -> 2, following the cluster's resources" in out
    workers = {r.worker for r in _trained(run_dir)}
    assert len(workers) == 2, workers  # the joining node's worker trained too


def test_a_driver_killed_on_a_cluster_resumes_with_address(cluster, tmp_path) -> None:
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    # PPO, whose batches depend on its updates: the resumed run must equal an uninterrupted one.
    config = tiny_config(budget=18, batch_size=6, task=SLOW_TASK)
    run_dir = tmp_path / "run"
    search = _search(cluster.address, tmp_path, config)
    _wait(lambda: len(_finished(run_dir)) >= 3 and _updated(run_dir), search)
    os.kill(search.pid, signal.SIGKILL)
    _finish(search)
    with RunStore(run_dir, create=False) as store:
        before = {r.id: r for r in store.evaluations() if r.status != "pending"}
    resumed = subprocess.run([*nos_command(), "search", "--resume", str(run_dir), "--address",
                              cluster.address, "--no-progress"], capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    with RunStore(run_dir, create=False) as store:
        after = store.evaluations()
    for row in after:
        if row.id in before:
            assert row == before[row.id], "a finished row was trained or changed again"
    keys = [r.canonical_key for r in after if r.attempts > 0]
    assert len(keys) == len(set(keys)), "nothing trained twice"
    reference = tmp_path / "reference"
    (reference / "run.yaml").parent.mkdir()
    done = _search(cluster.address, reference, config)
    status, out = _finish(done)
    assert status == 0, out
    with RunStore(reference / "run", create=False) as store:
        _same_run(after, store.evaluations())


def test_the_head_going_away_ends_the_search_with_one_line_and_loses_nothing(cluster, tmp_path) -> None:
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    address = cluster.address  # None once the head is gone
    search = _search(address, tmp_path, _following(400))
    run_dir = tmp_path / "run"
    _wait(lambda: len(_finished(run_dir)) >= 6, search)
    cluster.remove_node(cluster.head_node, allow_graceful=False)
    start = time.monotonic()
    with RunStore(run_dir, create=False) as store:
        recorded = {r.id: r for r in store.evaluations() if r.status in ("ok", "diverged")}
    status, out = _finish(search, seconds=120)
    assert status == 1, out
    assert time.monotonic() - start < 45  # our watch, not Ray's 60 s reconnect timeout
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "head" in errors[0], out
    assert errors[0].endswith(f"continue with: nos search --resume {run_dir} --address {address}")
    with RunStore(run_dir, create=False) as store:
        kept = {r.id: r for r in store.evaluations()}
    assert all(kept[i] == row for i, row in recorded.items()), "a recorded result was lost"


def test_a_cluster_that_wants_a_token_is_one_line_within_seconds(monkeypatch) -> None:
    # A gRPC server that refuses every call as a Ray GCS with token authentication does.
    from concurrent import futures

    import grpc

    from search.cluster import ClusterError, check_address

    class Refuse(grpc.GenericRpcHandler):
        def service(self, details):
            return grpc.unary_unary_rpc_method_handler(
                lambda request, context: context.abort(grpc.StatusCode.UNAUTHENTICATED, "InvalidAuthToken"))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((Refuse(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
        start = time.monotonic()
        with pytest.raises(ClusterError, match=r"wants a token .* RAY_AUTH_MODE=token and the cluster's"):
            check_address(f"127.0.0.1:{port}")
        assert time.monotonic() - start < 5
        monkeypatch.setenv("RAY_AUTH_MODE", "token")  # this process sends one: ray.init checks it
        check_address(f"127.0.0.1:{port}")
    finally:
        server.stop(None)
