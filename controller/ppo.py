"""PPO on the LSTM policy: sample a batch of rules, get their rewards, improve the policy.

One update, for samples with rewards r (drawn by this policy now or a few updates ago):

1. advantages A = r - b, with b the exponential moving average of past batches' mean rewards (the first
   batch's own mean stands in while there is no history); only then is b updated with this batch,
   b <- decay * b + (1 - decay) * mean(r), so a batch never serves as its own baseline's evidence;
2. optionally A <- A / std(r): the step size stops depending on the reward's scale, while the sign and
   the EMA's centring are kept (subtracting the batch mean as well would make the EMA baseline inert);
3. ``epochs`` passes over the batch (each split into ``minibatches`` Adam steps), minimising per token
   -min(ratio * A, clip(ratio, 1 - clip, 1 + clip) * A) - entropy_coef * entropy, averaged over tokens,
   with ratio = pi_new(token) / pi_drawing(token) from the log-probabilities stored with the sample;
   gradients clipped to ``max_grad_norm``.

Because the ratio's denominator is the stored log-probability, rewards for samples drawn by an older
policy (asynchronous workers) are used correctly: the clip bounds how far such samples can pull.

Two options for search spaces where good rules are rare (risk seeking on by default, eps = 0.1; elite
replay off; set ``risk_seeking: null`` for plain PPO):

* ``risk_seeking`` = eps (risk-seeking policy gradient, Petersen et al. 2021, Deep Symbolic Regression):
  a search wants the best rule, not a good average, so only the samples at or above the batch's (1 - eps)
  reward quantile are learned from, with that quantile as their baseline;
* ``elite_replay`` = K (priority queue training, Abolafia et al. 2018): the K best distinct rules seen so
  far join every update, with this policy's log-probabilities as their drawing policy's. PPO's clip
  lets one batch raise a rule's probability only a little, so a rule drawn once would otherwise be lost.

The defaults (`controller.config.PPOConfig`, `PolicyConfig`) were chosen with
benchmarks/controller_synthetic.py; that script's docstring records the runs behind them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

from controller.checkpoint import Checkpointed, generator_state
from controller.config import ControllerConfig
from controller.policy import LSTMPolicy
from controller.samples import Sample, SampleBatch, UpdateStats, check_rewards, make_samples

log = logging.getLogger(__name__)


def ppo_loss(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor, advantages: torch.Tensor,
             entropy: torch.Tensor, clip: float, entropy_coef: float
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped per-token objective as a loss to minimise, and the pass's clip fraction.

    ``new_log_probs``, ``old_log_probs`` and ``entropy`` are (B, steps); ``advantages`` is (B,), shared
    by all tokens of a sample.
    """
    ratio = torch.exp(new_log_probs - old_log_probs)
    adv = advantages.to(ratio.dtype)[:, None]
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1.0 - clip, 1.0 + clip) * adv)
    loss = -surrogate.mean() - entropy_coef * entropy.mean()
    clipped = ((ratio - 1.0).abs() > clip).float().mean()
    return loss, {"clip_fraction": float(clipped)}


def approx_kl(new_log_probs: torch.Tensor, old_log_probs: torch.Tensor) -> float:
    """Mean per-token KL(old || new) estimated from samples of old: E[(r - 1) - log r], r = new / old."""
    log_ratio = new_log_probs - old_log_probs
    return float((log_ratio.exp() - 1.0 - log_ratio).mean())


class PPOController(Checkpointed):
    """The LSTM controller trained with PPO; see the module docstring for the update."""

    KIND, NAME = "ppo", "PPO controller"

    def __init__(self, config: ControllerConfig | None = None) -> None:
        self.config = config or ControllerConfig()
        pc = self.config.policy
        self.space = self.config.vocabulary.token_space()
        # One generator for everything random here (initial weights, sampling, minibatch order), so
        # that its state alone, saved with the weights, makes a resumed run continue exactly.
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.policy = LSTMPolicy(self.space.size, pc.hidden_size, pc.embedding_size, pc.init_range,
                                 pc.temperature, pc.tanh_constant, generator=self.generator)
        ppo = self.config.ppo
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=ppo.lr, eps=ppo.adam_eps)
        self.baseline: float | None = None
        self.updates = 0
        # The best distinct rules seen so far (reward, tokens, text), best first (elite replay).
        self.elites: list[tuple[float, tuple[int, ...], str]] = []

    def sample(self, n: int | None = None) -> list[Sample]:
        """Draw ``n`` rules (the config's batch_size by default) from the current policy."""
        n = self.config.batch_size if n is None else n
        tokens, log_probs, masks = self.policy.sample(self.space, n, self.generator)
        return make_samples(self.space, tokens, log_probs, self.updates, masks)

    def _remember(self, samples: Sequence[Sample], rewards: torch.Tensor
                  ) -> tuple[SampleBatch, torch.Tensor] | None:
        """Replay of the best sequences found before this batch (priority queue training), then the queue
        updated with this batch. Replayed samples get this policy's log-probabilities as their drawing
        policy's, so each update can raise them by at most the clip range, like fresh samples."""
        k = self.config.ppo.elite_replay
        if not k:
            return None
        replay = None
        if self.elites:
            tokens_old = torch.tensor([t for _, t, _ in self.elites], dtype=torch.int64)
            masks = self.space.masks_for(tokens_old)
            with torch.no_grad():
                log_probs, _ = self.policy.evaluate(tokens_old, masks)
            replay = (SampleBatch(tokens_old, log_probs, masks,
                                  torch.full((len(self.elites),), self.updates, dtype=torch.int64)),
                      torch.tensor([rw for rw, _, _ in self.elites], dtype=rewards.dtype))
        # One entry per rule (the first token sequence that spelt it): sequences that differ only in
        # tokens the rule ignores would otherwise fill the queue with one rule.
        best = {rule: (rw, t) for rw, t, rule in self.elites}
        for sample, rw in zip(samples, rewards.tolist()):
            if sample.rule is None:
                continue
            rule = str(sample.rule)
            if rule not in best or rw > best[rule][0]:
                best[rule] = (rw, tuple(sample.tokens.tolist()))
        ranked = sorted(((rw, t, rule) for rule, (rw, t) in best.items()), key=lambda e: (-e[0], e[1]))
        self.elites = ranked[:k]
        return replay

    def _advantages(self, rewards: torch.Tensor,
                    fresh: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The advantages, and the indices of the samples they belong to (all, or the risk-seeking elite).
        The first ``fresh`` rewards are this batch's (the rest replayed); only they move the EMA."""
        ppo = self.config.ppo
        mean = float(rewards[:fresh].mean())
        keep = torch.arange(rewards.numel())
        if ppo.risk_seeking is None:
            baseline = mean if self.baseline is None else self.baseline
        else:  # the batch's (1 - eps) quantile is the baseline; only samples at or above it are learned from
            baseline = float(torch.quantile(rewards[:fresh].double(), 1.0 - ppo.risk_seeking))
            keep = (rewards >= baseline).nonzero().flatten()
        advantages = rewards[keep] - baseline
        # The EMA moves only now, after this batch's advantages are fixed.
        previous = mean if self.baseline is None else self.baseline
        self.baseline = ppo.baseline_decay * previous + (1.0 - ppo.baseline_decay) * mean
        if ppo.normalize_advantages and advantages.numel() > 1:
            std = float(advantages.std())
            if std > 1e-8:  # equal rewards: leave the advantages as they are rather than blow them up
                advantages = advantages / std
        return advantages, keep

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> UpdateStats:
        """One PPO update from ``samples`` (of this policy or an older one) and their ``rewards``."""
        ppo = self.config.ppo
        r = check_rewards(samples, rewards)
        batch = SampleBatch.stack(samples)
        if batch.tokens.shape[1] != self.space.steps:
            raise ValueError(f"samples have {batch.tokens.shape[1]} tokens, this space {self.space.steps}")
        baseline_before = r.mean().item() if self.baseline is None else self.baseline
        oldest = int(batch.versions.min())
        replayed = self._remember(samples, r)
        if replayed is not None:
            batch, r_learn = SampleBatch.concat(batch, replayed[0]), torch.cat([r, replayed[1]])
        else:
            r_learn = r
        advantages, keep = self._advantages(r_learn, fresh=len(samples))
        batch = batch.select(keep)
        n = len(keep)
        clip_fractions, losses, grad_norms, entropies = [], [], [], []
        for epoch in range(ppo.epochs):
            order = torch.randperm(n, generator=self.generator) if ppo.minibatches > 1 else torch.arange(n)
            for idx in order.tensor_split(min(ppo.minibatches, n)):
                new_logp, entropy = self.policy.evaluate(batch.tokens[idx], batch.masks[idx])
                if epoch == 0:
                    entropies.append(float(entropy.detach().mean()))
                loss, info = ppo_loss(new_logp, batch.log_probs[idx], advantages[idx], entropy, ppo.clip,
                                      ppo.entropy_coef)
                self.optimizer.zero_grad()
                loss.backward()
                norm = torch.nn.utils.clip_grad_norm_(self.policy.parameters(),
                                                      ppo.max_grad_norm or float("inf"))
                self.optimizer.step()
                clip_fractions.append(info["clip_fraction"])
                losses.append(float(loss.detach()))
                grad_norms.append(float(norm))
        with torch.no_grad():  # where the update ended up, against the policies that drew the samples
            new_logp, _ = self.policy.evaluate(batch.tokens, batch.masks)
        stats = UpdateStats(
            update=self.updates, samples=len(samples), mean_reward=float(r.mean()), max_reward=float(r.max()),
            baseline=baseline_before, entropy=sum(entropies) / len(entropies),
            approx_kl=approx_kl(new_logp, batch.log_probs),
            clip_fraction=sum(clip_fractions) / len(clip_fractions), loss=sum(losses) / len(losses),
            grad_norm=max(grad_norms), staleness=self.updates - oldest)
        self.updates += 1
        log.info("update %d: reward mean %.4f max %.4f, entropy %.3f, kl %.4f, clip %.3f", stats.update,
                 stats.mean_reward, stats.max_reward, stats.entropy, stats.approx_kl, stats.clip_fraction)
        return stats

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs, as tensors and plain data."""
        return {"kind": "ppo", "config": self.config.to_mapping(), "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "baseline": self.baseline,
                "generator": generator_state(self.generator), "updates": self.updates,
                "elites": [[reward, list(tokens), rule] for reward, tokens, rule in self.elites]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.restore_common(state)
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.baseline = None if state["baseline"] is None else float(state["baseline"])
        self.elites = [(float(reward), tuple(int(t) for t in tokens), str(rule))
                       for reward, tokens, rule in state.get("elites", [])]
