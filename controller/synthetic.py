"""A reward without training: how closely a rule's updates match a hidden target rule's.

Used to check that the controller learns (benchmarks/controller_synthetic.py, and a small version in the
tests) in seconds instead of the hours real child networks would take.

Similarity. Both rules are evaluated on the fixed probe environments of `dsl.equivalence` (`dsl.fingerprint`:
4 probes × 288 elements, gradients and running averages over 9 orders of magnitude, exact zeros included).
Each element scores

    min(|u|, |t|) / max(|u|, |t|)   when u and t are finite, nonzero and of the same sign,
    1                               when both are 0 (or both the same non-finite value),
    0                               otherwise (opposite signs, one of them 0, or only one finite),

where u is the rule's value and t the target's; the similarity is the mean score. It is scale-free (a
block at 1e-6 counts as much as one at 1e2), gives partial credit for matching the target on part of the
elements (``e * g`` matches PowerSign wherever sign(g) = sign(m)), and reaches 1 only when every value
equals the target's. The reward is 1.0 exactly for a rule with the target's `dsl.canonical_key` and the
similarity, capped just below 1, for every other rule; equivalent rules share one reward (cached by key).
"""

from __future__ import annotations

import torch

from dsl import Rule, canonical_key, fingerprint, parse

BELOW_ONE = 1.0 - 1e-6  # the most a rule without the target's canonical key can score


def elementwise_similarity(values: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-element score of ``values`` against ``target`` (same shape); see the module docstring."""
    a, b = values.abs(), target.abs()
    finite = torch.isfinite(values) & torch.isfinite(target)
    same_sign = torch.sign(values) == torch.sign(target)
    ratio = torch.minimum(a, b) / torch.maximum(a, b)
    score = torch.where(finite & same_sign & (a > 0), ratio, 0.0)
    equal_special = (values == target) & ((a == 0) | ~finite) | (values.isnan() & target.isnan())
    return float(torch.where(equal_special, 1.0, score).mean())


class SyntheticReward:
    """Reward of a rule: similarity of its updates to the target's on the probes (module docstring)."""

    def __init__(self, target: Rule | str) -> None:
        self.target = parse(target) if isinstance(target, str) else target
        self.target_key = canonical_key(self.target)
        self._target_values = fingerprint(self.target)
        self._by_key: dict[str, float] = {}
        self.evaluations = 0  # similarities computed (cache misses)

    def is_target(self, rule: Rule | None) -> bool:
        """Whether ``rule`` is equivalent to the target (same canonical key)."""
        return rule is not None and canonical_key(rule) == self.target_key

    def similarity(self, rule: Rule) -> float:
        return elementwise_similarity(fingerprint(rule), self._target_values)

    def __call__(self, rule: Rule | None) -> float:
        """The reward; 0.0 for a sample that is no rule (``Sample.rule`` is None)."""
        if rule is None:
            return 0.0
        key = canonical_key(rule)
        if key not in self._by_key:
            self.evaluations += 1
            self._by_key[key] = 1.0 if key == self.target_key else min(self.similarity(rule), BELOW_ONE)
        return self._by_key[key]
