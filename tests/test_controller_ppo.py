"""PPO: the clipped objective on hand-made numbers, the baseline's timing, stale samples, statistics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from controller import ControllerConfig, PPOController, approx_kl, ppo_loss

torch.set_num_threads(1)


def small(**ppo) -> ControllerConfig:
    # Plain PPO unless a test asks for risk seeking (the default learns from the batch's top only).
    return ControllerConfig.from_mapping({"vocabulary": {"groups": 1}, "policy": {"hidden_size": 16},
                                          "batch_size": 8, "ppo": {"risk_seeking": None, **ppo}})


def test_clipped_objective_by_hand() -> None:
    # Three tokens of one sample each: ratios 1.5, 0.5 and 1.0.
    old = torch.zeros(3, 1)
    new = torch.log(torch.tensor([[1.5], [0.5], [1.0]]))
    entropy = torch.zeros(3, 1)
    # Positive advantage: 1.5 is cut to 1.2; 0.5 is kept (the pessimistic side is never clipped).
    loss, info = ppo_loss(new, old, torch.tensor([2.0, 2.0, 2.0]), entropy, 0.2, 0.0)
    assert loss.item() == pytest.approx(-(1.2 * 2 + 0.5 * 2 + 1.0 * 2) / 3)
    assert info["clip_fraction"] == pytest.approx(2 / 3)
    # Negative advantage: 1.5 is kept (pessimistic), 0.5 is raised to 0.8.
    loss, _ = ppo_loss(new, old, torch.tensor([-1.0, -1.0, -1.0]), entropy, 0.2, 0.0)
    assert loss.item() == pytest.approx(-(-1.5 - 0.8 - 1.0) / 3)
    # The entropy bonus lowers the loss by coef * mean entropy.
    loss2, _ = ppo_loss(new, old, torch.tensor([-1.0, -1.0, -1.0]), torch.full((3, 1), 2.0), 0.2, 0.1)
    assert (loss - loss2).item() == pytest.approx(0.2)


def test_no_gradient_through_a_clipped_token() -> None:
    old = torch.zeros(2, 1)
    new = torch.log(torch.tensor([[1.5], [1.1]])).requires_grad_()
    loss, _ = ppo_loss(new, old, torch.tensor([1.0, 1.0]), torch.zeros(2, 1), 0.2, 0.0)
    loss.backward()
    assert new.grad[0, 0] == 0.0  # past 1 + clip with A > 0: nothing more to gain
    assert new.grad[1, 0] == pytest.approx(-1.1 / 2)  # d(-mean(r * A))/d log r = -r * A / n


def test_approx_kl_is_zero_for_the_same_policy_and_positive_otherwise() -> None:
    logp = torch.log(torch.tensor([[0.2, 0.5]]))
    assert approx_kl(logp, logp) == 0.0
    assert approx_kl(logp + 0.1, logp) > 0 and approx_kl(logp - 0.1, logp) > 0


def test_baseline_is_updated_after_the_advantages() -> None:
    controller = PPOController(small(epochs=1, entropy_coef=0.0, normalize_advantages=False,
                                     baseline_decay=0.9))
    samples = controller.sample(4)
    # First batch: no history, so the batch's own mean is the baseline and the advantages sum to 0.
    stats = controller.update(samples, [1.0, 0.0, 0.0, 0.0])
    assert stats.baseline == 0.25 and stats.loss == pytest.approx(0.0, abs=1e-7)
    assert controller.baseline == pytest.approx(0.25)
    # Second batch, mean 0.75: the advantages use the old baseline 0.25 (mean advantage 0.5, and with
    # fresh samples every ratio is 1, so the loss is -0.5); only then does it move to 0.9*0.25+0.1*0.75.
    stats = controller.update(controller.sample(4), [1.0, 1.0, 1.0, 0.0])
    assert stats.baseline == 0.25
    assert stats.loss == pytest.approx(-0.5, abs=1e-6)
    assert controller.baseline == pytest.approx(0.3)


def test_clip_fraction_counts_tokens_outside_the_range() -> None:
    controller = PPOController(small(epochs=1))
    samples = controller.sample(8)
    # Pretend half the samples were drawn by a policy that gave their tokens 1.5x less probability.
    shifted = [dataclasses.replace(s, log_probs=s.log_probs - math.log(1.5)) if i % 2 else s
               for i, s in enumerate(samples)]
    stats = controller.update(shifted, [float(i) for i in range(8)])
    assert stats.clip_fraction == pytest.approx(0.5)
    fresh = PPOController(small(epochs=1))
    assert fresh.update(fresh.sample(8), [float(i) for i in range(8)]).clip_fraction == 0.0


def test_update_statistics_and_checks() -> None:
    controller = PPOController(small())
    samples = controller.sample()
    stats = controller.update(samples, [0.1 * i for i in range(8)])
    assert stats.samples == 8 and stats.update == 0 and controller.updates == 1
    assert stats.mean_reward == pytest.approx(0.35) and stats.max_reward == pytest.approx(0.7)
    assert 0 < stats.entropy <= math.log(18)  # at most the widest step's uniform entropy
    assert stats.approx_kl > 0 and stats.staleness == 0
    assert set(stats.as_dict()) >= {"mean_reward", "max_reward", "entropy", "approx_kl", "clip_fraction"}
    with pytest.raises(ValueError, match="8 samples but 7 rewards"):
        controller.update(samples, [0.0] * 7)
    with pytest.raises(ValueError, match="finite"):
        controller.update(samples, [float("nan")] + [0.0] * 7)


def test_rewards_for_samples_of_an_older_policy() -> None:
    controller = PPOController(small(epochs=1, normalize_advantages=False, entropy_coef=0.01))
    old = controller.sample(8)  # drawn at version 0, rewarded late
    for _ in range(3):
        controller.update(controller.sample(8), [float(i % 3) for i in range(8)])
    tokens = torch.stack([s.tokens for s in old])
    masks = torch.stack([s.masks for s in old])
    stored = torch.stack([s.log_probs for s in old])
    with torch.no_grad():
        before, entropy = controller.policy.evaluate(tokens, masks)
    assert not torch.equal(before, stored)  # the policy has moved since they were drawn
    rewards = [1.0 if i == 5 else 0.0 for i in range(8)]
    advantages = torch.tensor(rewards, dtype=torch.float64) - controller.baseline
    # The loss is PPO's with the ratio new policy / drawing policy (the stored log-probs) ...
    expected, _ = ppo_loss(before, stored, advantages, entropy, 0.2, 0.01)
    fresh_ratio, _ = ppo_loss(before, before, advantages, entropy, 0.2, 0.01)
    stats = controller.update(old, rewards)
    assert stats.staleness == 3
    assert stats.loss == pytest.approx(expected.item(), rel=1e-5)
    assert stats.loss != pytest.approx(fresh_ratio.item(), rel=1e-3)
    # ... and it moves the policy the right way: the rewarded sample became more likely.
    with torch.no_grad():
        after, _ = controller.policy.evaluate(tokens, masks)
    assert after[5].sum() > before[5].sum()


def test_risk_seeking_learns_only_from_the_top_of_the_batch() -> None:
    controller = PPOController(small(epochs=1, entropy_coef=0.0, normalize_advantages=False,
                                     risk_seeking=0.2))
    rewards = torch.tensor([0.1 * i for i in range(10)], dtype=torch.float64)
    advantages, keep = controller._advantages(rewards)
    threshold = float(torch.quantile(rewards, 0.8))  # 0.72: the batch's 80th percentile
    assert keep.tolist() == [8, 9]
    assert advantages.tolist() == pytest.approx([0.8 - threshold, 0.9 - threshold])
    # The EMA baseline still follows the whole batch's mean, for logging and for plain PPO.
    assert controller.baseline == pytest.approx(0.45)
    samples = controller.sample(10)
    stats = controller.update(samples, rewards.tolist())
    assert stats.samples == 10 and stats.mean_reward == pytest.approx(0.45)


def test_elite_replay_keeps_the_best_distinct_rules_and_replays_them() -> None:
    controller = PPOController(small(epochs=1, elite_replay=3))
    samples = controller.sample(8)
    rewards = [0.1 * i for i in range(8)]
    controller.update(samples, rewards)
    by_rule: dict[str, float] = {}
    for s, r in zip(samples, rewards):
        if s.rule is not None:
            by_rule[str(s.rule)] = max(r, by_rule.get(str(s.rule), r))
    expected = sorted(by_rule.values(), reverse=True)[:3]
    assert [r for r, _, _ in controller.elites] == pytest.approx(expected)
    assert len({rule for _, _, rule in controller.elites}) == len(controller.elites)
    # A replayed elite rises even in a batch where every fresh sample scored 0 ...
    best_tokens = torch.tensor([controller.elites[0][1]])
    masks = controller.space.masks.expand(1, -1, -1)
    with torch.no_grad():
        before = controller.policy.evaluate(best_tokens, masks)[0].sum()
    controller.update(controller.sample(8), [0.0] * 8)
    with torch.no_grad():
        after = controller.policy.evaluate(best_tokens, masks)[0].sum()
    assert after > before
    # ... and the queue travels with the checkpoint.
    clone = PPOController(small(epochs=1, elite_replay=3))
    clone.load_state_dict(controller.state_dict())
    assert clone.elites == controller.elites
