"""Parity: every known rule, on both execution paths, equals its reference optimizer (float64, 120 steps,
relative tolerance 1e-6)."""

from __future__ import annotations

import pytest
import torch

from dsl import known_rules
from dsl.optimizer import RuleOptimizer
from tests.reference_optimizers import CASES, small_network, train

PATHS = {"foreach": dict(foreach=True), "fused": dict(fused=True)}


def test_every_known_rule_has_a_reference():
    assert set(CASES) == set(known_rules())


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", sorted(CASES))
def test_rule_matches_reference(name: str, path: str):
    case = CASES[name]
    model = small_network()
    expected = train(model, case.reference(list(model.parameters()), case.lr))
    model = small_network()
    opt = RuleOptimizer(model.parameters(), known_rules()[name], lr=case.lr, **case.hyper, **PATHS[path])
    got = train(model, opt)
    moved = (expected - torch.cat([p.detach().flatten() for p in small_network().parameters()])).abs()
    assert moved.max() > 1e-3  # the run did train: parity is not two unmoved networks
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)
