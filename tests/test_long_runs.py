"""What a long search keeps is bounded (issue 22's soak, benchmarks/soak.py, found both):

- the per-rule caches of the static checks and the canonical key, through which the driver screens every
  sample (~6 KB per distinct rule, 65,536 rules each before);
- Ray's record of each evaluation: its task events, which the GCS kept for every call (~4 KB each, up to
  Ray's cap of 100,000 tasks), are off for the evaluation workers (nothing of ours reads them).
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc

import sympy

from controller import ControllerConfig, make_searcher
from dsl import canonical_key, why_invalid
from dsl.equivalence import RULE_CACHE_SIZE, canonical_form_noted
from search.workers import WorkerPool

CACHES = (why_invalid, canonical_key, canonical_form_noted)
LIMIT_BYTES = 64 * 2**20  # what the caches may hold when full


def _screen(rule) -> None:  # as search.driver.screen does
    if why_invalid(rule) is None:
        canonical_key(rule)


def _held_bytes() -> int:
    sympy.core.cache.clear_cache()  # sympy's own caches (bounded) are not ours to count
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def test_the_rule_caches_hold_a_bounded_memory():
    samples = make_searcher(ControllerConfig.from_mapping({"kind": "random", "seed": 0, "batch_size": 120})
                            ).sample()
    rules = list({str(s.rule): s.rule for s in samples if s.rule is not None}.values())
    for rule in rules[:10]:  # imports, the probes and sympy's symbols: once per process
        _screen(rule)
    rules = rules[10:70]
    for cache in CACHES:
        cache.cache_clear()
    tracemalloc.start()
    try:
        before = _held_bytes()
        for rule in rules:
            _screen(rule)
        per_rule = (_held_bytes() - before) / len(rules)
        print(f"{per_rule:.0f} bytes per cached rule")
    finally:
        tracemalloc.stop()
    assert len(rules) == 60 and all(c.cache_info().maxsize == RULE_CACHE_SIZE for c in CACHES)
    assert per_rule > 0  # the caches do hold something per rule: the bound below is measured, not assumed
    assert per_rule * RULE_CACHE_SIZE < LIMIT_BYTES, (
        f"{per_rule:.0f} bytes per cached rule x {RULE_CACHE_SIZE} rules is over {LIMIT_BYTES} bytes")


class _Echo:
    """A worker that answers at once: what Ray keeps per evaluation is measured, not training."""

    def __init__(self, *args) -> None:
        pass

    def info(self) -> dict:
        return {"worker": f"echo:{os.getpid()}", "node": None}

    def evaluate(self, text: str, seed: int) -> dict:
        return {"status": "ok", "reward": 1.0, "worker": "echo", "duration": 0.0}


def _task_names() -> set[str]:
    import ray

    return {event.task_info.name for event in ray._private.state.state._get_all_task_events()}


def test_the_evaluations_leave_no_task_events_in_ray(ray_session):
    import ray

    pool = WorkerPool(1, {"num_cpus": 1}, {}, None, 1, None, _Echo)
    try:
        done = 0
        while done < 20:
            if pool.idle_worker() is not None:
                pool.submit(done, "g", 0)
            done += len(pool.wait(timeout=30))
    finally:
        pool.shutdown()
    seen = ray.remote(lambda: None).options(name="soak_seen", num_cpus=0)
    ray.get(seen.remote())  # a task with Ray's default: its events show that the query sees them
    deadline = time.monotonic() + 10  # task events reach the GCS every second
    while "soak_seen" not in (names := _task_names()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert "soak_seen" in names
    assert not any(name.startswith("_Echo.") for name in names), sorted(names)
