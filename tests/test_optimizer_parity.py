"""Parity: every known rule, on each execution path (multi-tensor, single-tensor, fused), equals its
reference optimizer (float64, 120 steps, relative tolerance 1e-6); the single-tensor path, the
multi-tensor path and the generated optimizer agree with each other to rounding."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

import dsl.optimizer
from dsl import RuleOptimizer, known_rules, optimizer_source
from tests.reference_optimizers import CASES, small_network, train

PATHS = {"foreach": dict(foreach=True), "single": dict(foreach=False), "fused": dict(fused=True)}


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


def _generated(name: str, tmp_path) -> type:
    path = tmp_path / f"gen_{name}.py"
    path.write_text(optimizer_source(known_rules()[name], "Generated"))
    spec = importlib.util.spec_from_file_location(f"gen_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Generated


@pytest.mark.parametrize("settings", [{}, {"weight_decay": 0.01, "maximize": True}])
@pytest.mark.parametrize("name", ["sgd", "momentum", "adam", "rmsprop", "powersign", "addsign", "adabound",
                                  "lion"])
def test_single_tensor_multi_tensor_and_generated_agree(name: str, settings: dict, tmp_path):
    """The three plain paths of one rule, with the reference case's settings: the same weights to
    rounding (the multi-tensor path keeps scalings aside and fuses the last product into the update)."""
    case = CASES[name]
    hyper = {k: v for k, v in case.hyper.items() if k in known_rules()[name].hypers_read}
    makers = {
        "multi-tensor": lambda p: RuleOptimizer(p, known_rules()[name], lr=case.lr, foreach=True, **hyper,
                                                **settings),
        "single-tensor": lambda p: RuleOptimizer(p, known_rules()[name], lr=case.lr, foreach=False, **hyper,
                                                 **settings),
        "generated": lambda p: _generated(name, tmp_path)(p, lr=case.lr, **hyper, **settings),
    }
    got = {}
    for path, make in makers.items():
        model = small_network()
        got[path] = train(model, make(model.parameters()), steps=40)
    for path in ("multi-tensor", "generated"):
        torch.testing.assert_close(got[path], got["single-tensor"], rtol=1e-9, atol=1e-12, msg=path)


def test_foreach_false_takes_the_single_tensor_path(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the multi-tensor path ran")

    monkeypatch.setattr(dsl.optimizer, "apply_rule", refuse)
    model = small_network()
    adam = RuleOptimizer(model.parameters(), "mhat / (sqrt(vhat) + eps)", lr=1e-3, foreach=False)
    train(model, adam, steps=2)
    with pytest.raises(AssertionError, match="multi-tensor path ran"):
        train(model, RuleOptimizer(model.parameters(), "g", lr=1e-3), steps=1)
