"""A reward without training: how closely a rule's updates match a hidden target rule's.

Used to check that the controller learns (benchmarks/controller_synthetic.py, and a small version in the
tests) in seconds instead of the hours real child networks would take.

Probes. Both rules are evaluated on fixed probes of one of two kinds (``probes=``):

* ``training`` (the default): dsl's training-like histories (`dsl.equivalence.probes`, the probes that
  also decide equivalence), where m mostly has g's sign;
* ``independent``: per element, g, m, v, m3, vmax, w, noise and mb2 drawn independently (v, vmax positive;
  scales over 5 orders of magnitude; the step count and hyper-constants of `dsl.equivalence`'s four
  probe settings), so every quadrant of (sign(g), sign(m)) counts alike.

Neither kind makes PowerSign's ingredients a stepping stone towards it. On training-like probes
sign(g) * sign(m) is nearly always 1, so ``e * g`` (0.886) outscores ``exp(sign(g)) * g`` (0.667). On
independent probes, which are symmetric under a sign flip of m, a rule that reads one of the two signs
matches exp(sign(g) * sign(m)) * g on the elements where that sign equals the product, which is half of
them, and so does the constant multiple ``e * g``: all three score 0.58-0.59. This holds for any
per-element score on probes with that symmetry, because the product of two signs is independent of
each sign alone.

Similarity. Each element scores

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

from functools import cache

import torch

from dsl import Rule, canonical_key, parse
from dsl.equivalence import PROBE_SETTINGS, Probes
from dsl.equivalence import probes as dsl_probes
from dsl.evaluate import leaf_values, step_quantities
from dsl.vocabulary import HYPERS, OPERANDS

BELOW_ONE = 1.0 - 1e-6  # the most a rule without the target's canonical key can score
ELEMENTS = 256  # per probe setting
SEED = 4242


@cache
def independent_probes(seed: int = SEED) -> Probes:
    """The fixed probes: independent random operands under each of dsl's probe settings (seeded; another
    seed gives held-out probes, as `heldout_difference` uses)."""
    gen = torch.Generator().manual_seed(seed)
    shape = (len(PROBE_SETTINGS), ELEMENTS)

    def normal(scale: torch.Tensor | float = 1.0) -> torch.Tensor:
        return torch.randn(shape, generator=gen, dtype=torch.float64) * scale

    scale = 10.0 ** (torch.rand(shape, generator=gen, dtype=torch.float64) * 5.0 - 4.0)  # 1e-4 .. 10
    v = (normal() ** 2 + normal() ** 2) / 2 * scale**2
    tensors = {"g": normal(scale), "m": normal(scale), "v": v, "m3": normal(scale**3),
               "vmax": v * (1.0 + torch.rand(shape, generator=gen, dtype=torch.float64)),
               "w": normal(10.0 ** (-3.0 * torch.rand(shape, generator=gen, dtype=torch.float64))),
               "noise": normal()}
    tensors["mb2"] = normal(scale)  # Lion's average of g with beta2, drawn last: the others stay as they were
    column = {k: torch.tensor([[float(row[k])] for row in PROBE_SETTINGS], dtype=torch.float64)
              for k in PROBE_SETTINGS[0]}
    hyper = {k: column[k] for k in HYPERS}
    steps = step_quantities(column["t"], hyper, column["final_lr"] / column["lr"])
    values = leaf_values(tensors, steps, hyper, set(OPERANDS) | set(HYPERS))
    values |= {"bound_low": steps["bound_low"], "bound_high": steps["bound_high"]}
    every = torch.ones(shape, dtype=torch.bool)
    return Probes(values, values, every, torch.zeros(ELEMENTS, dtype=torch.int64), shape)


PROBES = {"training": dsl_probes, "independent": independent_probes}


def elementwise_similarity(values: torch.Tensor, target: torch.Tensor) -> float:
    """Mean per-element score of ``values`` against ``target`` (same shape); see the module docstring."""
    a, b = values.abs(), target.abs()
    finite = torch.isfinite(values) & torch.isfinite(target)
    same_sign = torch.sign(values) == torch.sign(target)
    ratio = torch.minimum(a, b) / torch.maximum(a, b)
    score = torch.where(finite & same_sign & (a > 0), ratio, 0.0)
    equal_special = (values == target) & ((a == 0) | ~finite) | (values.isnan() & target.isnan())
    return float(torch.where(equal_special, 1.0, score).mean())


def largest_relative_difference(values: torch.Tensor, target: torch.Tensor) -> float:
    """max |u - t| / max(|u|, |t|) over the elements; 0 where both are equal (both 0, or the same
    non-finite value), 1 where only one is finite."""
    equal = (values == target) | (values.isnan() & target.isnan())
    finite = torch.isfinite(values) & torch.isfinite(target)
    scale = torch.maximum(values.abs(), target.abs())
    diff = torch.where(finite, (values - target).abs() / scale.clamp_min(torch.finfo(scale.dtype).tiny), 1.0)
    return float(torch.where(equal, 0.0, diff).max())


def heldout_difference(rule: Rule, target: Rule, seed: int = SEED + 1) -> float:
    """`largest_relative_difference` of the two rules' updates on fresh independent probes (another seed
    than the reward's): a rule at most 1e-6 from the target there computes the same function, whether or
    not its canonical key is the target's (e.g. NOS's div adds 1e-8 to a divisor)."""
    probes = independent_probes(seed)
    return largest_relative_difference(probes.run(rule), probes.run(target))


class SyntheticReward:
    """Reward of a rule: similarity of its updates to the target's on the probes (module docstring)."""

    def __init__(self, target: Rule | str, probes: str = "training") -> None:
        if probes not in PROBES:
            raise ValueError(f"probes must be one of {', '.join(PROBES)}, got {probes!r}")
        self.probes = PROBES[probes]
        self.target = parse(target) if isinstance(target, str) else target
        self.target_key = canonical_key(self.target)
        self._target_values = self.probes().run(self.target)
        self._by_key: dict[str, float] = {}
        self.evaluations = 0  # similarities computed (cache misses)

    def is_target(self, rule: Rule | None) -> bool:
        """Whether ``rule`` is equivalent to the target (same canonical key)."""
        return rule is not None and canonical_key(rule) == self.target_key

    def similarity(self, rule: Rule) -> float:
        return elementwise_similarity(self.probes().run(rule), self._target_values)

    def __call__(self, rule: Rule | None) -> float:
        """The reward; 0.0 for a sample that is no rule (``Sample.rule`` is None)."""
        if rule is None:
            return 0.0
        key = canonical_key(rule)
        if key not in self._by_key:
            self.evaluations += 1
            self._by_key[key] = 1.0 if key == self.target_key else min(self.similarity(rule), BELOW_ONE)
        return self._by_key[key]
