"""Batched candidates in the search (search.models_per_worker): a worker trains several rules in one call
and the store holds the rewards one-at-a-time training gives; the scheduling of batches (same seed, a dead
worker's batch tried again one rule at a time) on a pool without Ray."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
import torch

from child_tasks.problems import load_data
from search import scheduling
from search.config import SearchConfig
from search.driver import run_search
from search.scheduling import Scheduler
from search.store import RunStore
from search.workers import EvaluationWorker, Finished
from tests.search_helpers import tiny_config

torch.set_num_threads(1)


def test_evaluate_many_gives_what_evaluate_gives_and_fails_one_rule_alone() -> None:
    config = SearchConfig.from_mapping(tiny_config())
    worker = EvaluationWorker(config.suite.to_mapping(), [load_data(t) for t in config.suite.tasks])
    rules = ["sign(m)", "g +", "g * mhat"]
    many = worker.evaluate_many(rules, seed=0)
    assert [out["status"] for out in many] == ["ok", "failed", "ok"]
    assert "RuleSyntaxError" in many[1]["error"]
    for text, out in zip(rules, many, strict=True):
        if out["status"] == "ok":
            assert out["reward"] == pytest.approx(worker.evaluate(text, seed=0)["reward"], abs=1e-4)
    # The durations are shares of one call: together, the time the worker was busy with it.
    assert len({out["duration"] for out in many}) == 1 and many[0]["duration"] > 0


def test_a_batch_that_raises_is_evaluated_one_rule_at_a_time(monkeypatch) -> None:
    config = SearchConfig.from_mapping(tiny_config())
    worker = EvaluationWorker(config.suite.to_mapping(), [load_data(t) for t in config.suite.tasks])

    def broken(rules, seed):
        raise RuntimeError("the batched trainer failed")

    monkeypatch.setattr(worker, "train_many", broken)
    out = worker.evaluate_many(["sign(m)", "g"], seed=0)
    assert [o["status"] for o in out] == ["ok", "ok"]


def test_a_search_with_models_per_worker_stores_the_rewards_of_one_at_a_time(ray_session, tmp_path) -> None:
    rewards = {}
    for k in (1, 4):
        raw = {**tiny_config(budget=8, batch_size=8, kind="random", max_batches_ahead=0, models_per_worker=k),
               "confirm": {"top_k": 0}}
        summary = run_search(raw, tmp_path / f"k{k}", progress=False)
        assert summary.trained >= 8
        with RunStore(tmp_path / f"k{k}", create=False) as store:
            rows = store.evaluations()
        trained = [r for r in rows if r.status in ("ok", "diverged", "failed")]
        assert all(r.attempts == 1 for r in trained)
        # The rules of one call share its worker and its time (each row its share): with k = 4 some do.
        calls = Counter((r.worker, r.duration) for r in trained)
        assert max(calls.values()) == 1 if k == 1 else max(calls.values()) > 1
        rewards[k] = {(r.batch, r.position): (r.rule, r.status, r.reward) for r in rows}
    assert rewards[1].keys() == rewards[4].keys()
    for key, (rule, status, reward) in rewards[1].items():
        assert rewards[4][key][:2] == (rule, status), key
        assert rewards[4][key][2] == pytest.approx(reward, abs=1e-3), (key, rule)


class FakePool:
    """A WorkerPool stand-in: `workers` idle workers; `wait` finishes every call, or kills those named."""

    ray_options: dict = {}

    def __init__(self, workers: int) -> None:
        self.idle = [f"w{i}" for i in range(workers)]
        self.calls: list[tuple[str, list, int]] = []  # (worker, payloads, seed)
        self.args: dict[str, tuple] = {}  # payload -> the extra arguments of its call
        self.running: list[tuple[str, list, bool]] = []
        self.kill: set[str] = set()  # payloads whose call dies

    started = property(lambda self: 2)
    busy = property(lambda self: len(self.running))
    lost: set[str] = set()  # the nodes the cluster no longer counts as alive

    def worker_seconds(self) -> float:
        return 0.0

    def node_of(self, worker: str) -> str:
        return f"node-{worker}"

    def dead_nodes(self, names: set[str]) -> set[str]:
        return names & self.lost

    def running_on(self, node: str) -> int:
        return sum(1 for worker, tags, _ in self.running if f"node-{worker}" == node for _ in tags)

    def idle_worker(self):
        return self.idle[-1] if self.idle else None

    def submit(self, tag, payload, seed, *args):
        self.args[payload] = args
        return self._run([tag], [payload], seed, False)

    def submit_many(self, tags, payloads, seed):
        return self._run(tags, payloads, seed, True)

    def _run(self, tags, payloads, seed, many):
        worker = self.idle.pop()
        self.calls.append((worker, list(payloads), seed))
        self.running.append((worker, tags, many))
        return worker

    def wait(self, timeout=None):
        out = []
        for worker, tags, many in self.running:
            dies = any(tag.payload in self.kill for tag in tags)
            out += [Finished(tag, None if dies else {"status": "ok", "reward": 1.0}, "died" if dies else None,
                             worker, many) for tag in tags]
            self.idle.append(worker)
        self.running = []
        return out


def test_batches_take_one_seed_and_a_dead_workers_batch_is_retried_one_rule_at_a_time() -> None:
    pool = FakePool(workers=1)
    scheduler = Scheduler(pool, max_retries=1, batch=3)
    for name, seed in [("a", 0), ("b", 0), ("c", 1), ("d", 0), ("e", 0)]:
        scheduler.add(name, name, seed)
    pool.kill = {"b"}
    done = []
    while scheduler.under_way:
        scheduler.feed()
        done += scheduler.collect(timeout=0)
    # Seed 0's a, b, d in one call (c, of seed 1, keeps its place); b killed it: each again alone, in
    # order and ahead of the rest; then c, and e (another seed than c's) in a call of its own.
    assert [payloads for _, payloads, _ in pool.calls] == [["a", "b", "d"], ["a"], ["b"], ["d"], ["c"], ["e"]]
    assert {o.tag: o.crashed for o in done} == {"a": None, "b": "died", "c": None, "d": None, "e": None}
    assert {o.tag: o.attempts for o in done}["b"] == 2


def test_first_jobs_go_ahead_of_the_queue_in_their_own_order_and_retries_ahead_of_them() -> None:
    pool = FakePool(workers=1)
    scheduler = Scheduler(pool, max_retries=1, batch=3)
    scheduler.add("a", "a", 0)
    scheduler.add("b", "b", 0)
    scheduler.add("x", "x", 5, args=(1,), first=True)  # a funnel's stage job: never batched
    scheduler.add("y", "y", 6, args=(2,), first=True)
    scheduler.add("c", "c", 0)
    pool.kill = {"x"}
    while scheduler.under_way:
        scheduler.feed()
        scheduler.collect(timeout=0)
    # x first; it died, so it goes again ahead of y; then the batch of the rest, queued in their order.
    assert [payloads for _, payloads, _ in pool.calls] == [["x"], ["x"], ["y"], ["a", "b", "c"]]
    assert pool.args == {"x": (1,), "y": (2,)}


@pytest.mark.parametrize("lost, line", [
    (True, "node node-w0 lost: 2 trainings requeued"),
    (False, "workers died on node node-w0, which is still in the cluster: 2 trainings requeued")])
def test_workers_lost_with_their_node_are_one_line_and_counted(caplog, monkeypatch, lost, line) -> None:
    # Ray marks a node dead seconds after its workers' calls fail: the deaths wait for the node's fate.
    monkeypatch.setattr(scheduling, "NODE_DEATH_WAIT_S", 0.0)
    pool = FakePool(workers=1)
    pool.lost = {"node-w0"} if lost else set()
    scheduler = Scheduler(pool, max_retries=1, batch=2)
    for name in "abcd":
        scheduler.add(name, name, 0)
    pool.kill = {"a"}  # the first call, a and b, dies; each is retried alone and the second a dies too
    with caplog.at_level(logging.WARNING, logger="search.scheduling"):
        while scheduler.under_way:
            scheduler.feed()
            scheduler.collect(timeout=0)
        scheduler.tell_faults()
    lines = [r.getMessage() for r in caplog.records]
    assert line in lines[0]
    assert scheduler.retried == 2 and scheduler.lost_nodes == ({"node-w0": 2} if lost else {})
    # a's second death is past its retries: said on its own line, at once
    assert any("not retried after 2 attempts" in m for m in lines)
