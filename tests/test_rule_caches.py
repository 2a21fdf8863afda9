"""The per-rule caches of the static checks and the canonical key are bounded: a search's driver screens
every sample through them, so over a long search they would otherwise hold its memory (issue 22's soak,
benchmarks/soak.py: ~6 KB per distinct rule, 65,536 rules each before)."""

from __future__ import annotations

import gc
import tracemalloc

import sympy

from controller import ControllerConfig, make_searcher
from dsl import canonical_key, why_invalid
from dsl.equivalence import RULE_CACHE_SIZE, canonical_form_noted

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
