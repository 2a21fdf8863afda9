"""Lion (Chen et al. 2023) as the reference rule ``lion`` and as the ``lion`` baseline: the paper's algorithm
(tests/reference_optimizers.py) with other betas than the defaults, Lion's users' spelling of them, its
decoupled weight decay as rule text, on each execution path; its own defaults in every optimizer built
on it; the baseline's resolution."""

from __future__ import annotations

import importlib.util
import sys

import pytest
import torch

from child_tasks.optimizers import resolve_optimizer
from dsl import RuleOptimizer, known_rules, optimizer_class, optimizer_source
from dsl.known import KNOWN_RULE_TEXT, default_hypers, reference_defaults
from search.config import check_baselines
from tests.reference_optimizers import LionReference, small_network, train

LION = KNOWN_RULE_TEXT["lion"]
PATHS = {"foreach": dict(foreach=True), "single": dict(foreach=False), "fused": dict(fused=True)}

# name: (our rule text, our settings, the reference's settings); lr 0.003, float64, 60 steps.
SETTINGS = {
    "betas spelled as Lion's users do": (LION, dict(betas=(0.8, 0.95)), dict(betas=(0.8, 0.95))),
    "beta1 > beta2, named": (LION, dict(beta1=0.97, beta2=0.9), dict(betas=(0.97, 0.9))),
    "decoupled weight decay as rule text": (f"{LION} + 0.1 * w", dict(betas=(0.9, 0.98)),
                                            dict(betas=(0.9, 0.98), wd=0.1)),
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", SETTINGS)
def test_lion_matches_the_papers_algorithm(name: str, path: str):
    text, ours, theirs = SETTINGS[name]
    model = small_network()
    expected = train(model, LionReference(list(model.parameters()), 0.003, **theirs), steps=60)
    model = small_network()
    got = train(model, RuleOptimizer(model.parameters(), text, lr=0.003, **ours, **PATHS[path]), steps=60)
    start = torch.cat([p.detach().flatten() for p in small_network().parameters()])
    assert (expected - start).abs().max() > 0.05  # sign steps of 0.003 moved the weights
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_lion_in_float32_matches_the_papers_algorithm():
    # The rule's interpolation beta2 * c is rounded differently from c: the signs must still agree.
    model = small_network(dtype=torch.float32)
    expected = train(model, LionReference(list(model.parameters()), 0.003), steps=40, dtype=torch.float32)
    model = small_network(dtype=torch.float32)
    got = train(model, RuleOptimizer(model.parameters(), "lion", lr=0.003), steps=40, dtype=torch.float32)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _generated_lion(tmp_path) -> type:
    path = tmp_path / "gen_lion.py"
    path.write_text(optimizer_source(known_rules()["lion"], "Lion"))
    spec = importlib.util.spec_from_file_location("gen_lion", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.Lion


# Every optimizer built on the rule, with nothing said about betas: Lion's (0.9, 0.99), not Adam's 0.999.
BUILT = {
    "by name": lambda p, tmp: RuleOptimizer(p, "lion", lr=1e-4),
    "by text": lambda p, tmp: RuleOptimizer(p, LION, lr=1e-4),
    "optimizer_class": lambda p, tmp: optimizer_class("lion", "Lion")(p, lr=1e-4),
    "generated": lambda p, tmp: _generated_lion(tmp)(p, lr=1e-4),
    "baseline": lambda p, tmp: resolve_optimizer("lion").make(p, 1e-4, 0.0, 100),
}


@pytest.mark.parametrize("how", BUILT)
def test_lion_defaults_to_its_authors_betas(how: str, tmp_path):
    opt = BUILT[how]([torch.nn.Parameter(torch.zeros(3))], tmp_path)
    assert (opt.defaults["beta1"], opt.defaults["beta2"]) == (0.9, 0.99)


def test_given_betas_win_and_other_rules_keep_the_languages_defaults():
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert RuleOptimizer(p, "lion", betas=(0.95, 0.98)).defaults["beta2"] == 0.98
    assert RuleOptimizer(p, "lion", beta2=0.9).defaults["beta2"] == 0.9
    assert optimizer_class("lion", "Lion2", beta2=0.95)(p).defaults["beta2"] == 0.95
    assert RuleOptimizer(p, "adam").defaults["beta2"] == 0.999
    assert reference_defaults(known_rules()["adam"]) == {}
    assert default_hypers(known_rules()["lion"]) == {"beta1": 0.9, "beta2": 0.99}


@pytest.mark.parametrize("name", ["lion", "torch:lion"])
def test_lion_is_a_baseline_and_rule_lion_the_rule(name: str):
    assert resolve_optimizer(name).baseline == "lion"
    assert check_baselines([name.removeprefix("torch:")]) == ["lion"]
    assert resolve_optimizer("rule:lion").rule == known_rules()["lion"]
    opt = resolve_optimizer(name).make([torch.nn.Parameter(torch.zeros(3))], 1e-4, 0.0, 100)
    assert opt.rule == known_rules()["lion"] and opt.defaults["foreach"] is True
