"""What passes between a controller and the search: samples, the update's statistics, the interface.

A `Sample` is one proposed rule together with everything its update needs: the token indices, the
log-probability of each token under the policy that drew it, and the masks it was drawn under. Keeping
the log-probabilities with the sample is what lets PPO accept rewards that arrive late (asynchronous
workers), after the policy has moved on: the update's ratio is always new policy / drawing policy.

PPO (`controller.ppo.PPOController`), evolution (`controller.evolution.Evolution`) and random search
(`controller.random_search.RandomSearch`) share the `Searcher` interface, so a search loop runs any of
them without knowing which (evolution has no policy: its samples carry log-probabilities of 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from controller.space import TokenSpace
from dsl import Rule


@dataclass(frozen=True, eq=False)
class Sample:
    """One proposed rule and how it was drawn.

    ``tokens`` (steps,) int64 indices into the token space; ``log_probs`` (steps,) float32 log-probability
    of each token when drawn; ``masks`` (steps, tokens) bool legal tokens at each step; ``groups`` the
    token names; ``rule`` the `dsl.Rule` they mean, or None with ``error`` saying why; ``version`` the
    number of updates the drawing policy had received.
    """

    tokens: torch.Tensor
    log_probs: torch.Tensor
    masks: torch.Tensor
    groups: tuple[tuple[str, ...], ...]
    rule: Rule | None
    error: str | None
    version: int


@dataclass(frozen=True)
class SampleBatch:
    """Samples stacked for an update: tokens (B, L), log_probs (B, L), masks (B, L, V), versions (B,)."""

    tokens: torch.Tensor
    log_probs: torch.Tensor
    masks: torch.Tensor
    versions: torch.Tensor

    def select(self, index: torch.Tensor) -> SampleBatch:
        """The samples at ``index`` (a 1-D index tensor)."""
        return SampleBatch(self.tokens[index], self.log_probs[index], self.masks[index], self.versions[index])

    @classmethod
    def concat(cls, *batches: SampleBatch) -> SampleBatch:
        return cls(*(torch.cat([getattr(b, f) for b in batches]) for f in ("tokens", "log_probs", "masks",
                                                                         "versions")))

    @classmethod
    def stack(cls, samples: Sequence[Sample]) -> SampleBatch:
        if not samples:
            raise ValueError("an update needs at least one sample")
        return cls(torch.stack([s.tokens for s in samples]), torch.stack([s.log_probs for s in samples]),
                   torch.stack([s.masks for s in samples]),
                   torch.tensor([s.version for s in samples], dtype=torch.int64))


@dataclass(frozen=True)
class UpdateStats:
    """What one update did, logged each update.

    ``entropy`` is the mean per-token entropy of the policy on the batch (nats) before the update;
    ``approx_kl`` the mean per-token KL(drawing policy || updated policy), estimated from the samples as
    E[(r - 1) - log r] (always >= 0); ``clip_fraction`` the share of tokens whose ratio was outside
    [1 - clip, 1 + clip], averaged over PPO's passes; ``staleness`` how many updates old the oldest sample
    was. Random search reports its constant entropy and zeros for the rest.
    """

    update: int
    samples: int
    mean_reward: float
    max_reward: float
    baseline: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    loss: float
    grad_norm: float
    staleness: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Searcher(Protocol):
    """The interface of PPO, evolution and random search: draw rules, learn from their rewards, save and
    resume."""

    updates: int

    def sample(self, n: int | None = None) -> list[Sample]: ...

    def update(self, samples: Sequence[Sample], rewards: Sequence[float]) -> UpdateStats: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    def save(self, path: str | Path) -> None: ...

    def load(self, path: str | Path) -> None: ...


def check_rewards(samples: Sequence[Sample], rewards: Sequence[float]) -> torch.Tensor:
    """Rewards as a float64 tensor, with a clear error for a length mismatch or a non-finite value."""
    if len(samples) != len(rewards):
        raise ValueError(f"{len(samples)} samples but {len(rewards)} rewards")
    if not samples:
        raise ValueError("an update needs at least one sample")
    values = torch.tensor([float(r) for r in rewards], dtype=torch.float64)
    bad = (~torch.isfinite(values)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"rewards must be finite numbers (give failed rules a penalty reward); "
                         f"sample(s) {bad[:5]} got {[float(values[i]) for i in bad[:5]]}")
    return values


def make_samples(space: TokenSpace, tokens: torch.Tensor, log_probs: torch.Tensor, version: int,
                 masks: torch.Tensor | None = None) -> list[Sample]:
    """One `Sample` per row of ``tokens`` (n, steps), decoded to a rule through ``space``; ``masks`` (n,
    steps, V) those they were drawn under, by default `TokenSpace.masks_for` the tokens."""
    masks = space.masks_for(tokens) if masks is None else masks
    samples = []
    for row, logp, mask in zip(tokens, log_probs, masks):
        groups, rule, error = space.to_rule(row)
        samples.append(Sample(row, logp, mask, groups, rule, error, version))
    return samples
