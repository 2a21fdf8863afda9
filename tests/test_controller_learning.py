"""The controller learns: a small, fast version of benchmarks/controller_synthetic.py.

A synthetic reward (similarity of a rule's updates to a hidden target's, no training), a one-group space,
a budget of a few hundred samples: PPO must draw a rule equivalent to the target, random search with the
same budget and seed must not, and PPO's batches must end up scoring far above random search's.
"""

from __future__ import annotations

import statistics

import pytest
import torch

from controller import ControllerConfig, PPOController, RandomSearch, Searcher, SyntheticReward
from controller.synthetic import heldout_difference
from dsl import parse

torch.set_num_threads(1)

TARGET = "exp(sign(g)) * g"
SPACE = {"operands": ["g", "g^2", "mhat", "vhat", "sign(g)", "sign(m)", "1", "2", "adam"],
         "unary": ["identity", "neg", "exp", "log_abs", "sqrt_abs", "sign"],
         "binary": ["add", "sub", "mul", "div", "keep_left"], "groups": 1}
BUDGET = 800
BATCH = 50


def search(searcher: Searcher, reward: SyntheticReward) -> tuple[int | None, list[float]]:
    """Samples drawn until the first rule equivalent to the target (None: not within BUDGET), and each
    batch's mean reward."""
    found, means = None, []
    for start in range(0, BUDGET, BATCH):
        samples = searcher.sample(BATCH)
        rewards = [reward(s.rule) for s in samples]
        if found is None:
            hits = [i for i, s in enumerate(samples) if reward.is_target(s.rule)]
            found = start + hits[0] + 1 if hits else None
        means.append(statistics.fmean(rewards))
        searcher.update(samples, rewards)
    return found, means


def test_ppo_finds_the_target_and_random_search_does_not() -> None:
    reward = SyntheticReward(TARGET)
    config = ControllerConfig.from_mapping({"seed": 0, "batch_size": BATCH, "vocabulary": SPACE,
                                            "ppo": {"risk_seeking": 0.1}})
    ppo_found, ppo_means = search(PPOController(config), reward)
    random_found, random_means = search(RandomSearch(config.model_copy(update={"kind": "random"})), reward)
    assert ppo_found is not None, "PPO did not draw the target within the budget"
    assert random_found is None or random_found > ppo_found
    # Learning, not luck: the policy's late batches score far above uniform sampling's.
    assert statistics.fmean(ppo_means[-4:]) > statistics.fmean(random_means) + 0.15


def test_an_unknown_probe_kind_is_named() -> None:
    with pytest.raises(ValueError, match="probes must be one of training, independent, got 'random'"):
        SyntheticReward(TARGET, probes="random")


def test_held_out_probes_count_functionally_equal_rules_and_nothing_else() -> None:
    # NOS's div adds 1e-8 to the divisor: another canonical key, the same function to 1e-6
    target = parse("exp(sign(g) * sign(m)) * g")
    assert heldout_difference(parse("g / (exp(sign(g) * (-sign(m))) + 1e-08)"), target) <= 1e-6
    assert heldout_difference(parse("exp(sign(m) * sign(g)) * g"), target) == 0.0
    assert heldout_difference(parse("exp(sign(g)) * g"), target) > 0.1
    assert heldout_difference(parse("exp(sign(g) * sign(m)) * g * (1 + 1e-5)"), target) > 1e-6
