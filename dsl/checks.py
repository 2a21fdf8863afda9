"""Static rejection of rules that cannot train, without training them (as in ENOS, Wang et al. 2022).

`why_invalid(rule)` evaluates the rule as written on the probe environments of `dsl.equivalence` and
returns a short reason, or None for a rule worth training. Each reason starts with a stable phrase,
so a search can count rejections by kind:

* ``constant``: the same value for every ordinary element of a probe (``1``, ``beta1 * ld``,
  ``sign(g)^2``), so no per-weight information reaches the update;
* ``does not depend on the gradient``: a second, independent gradient history (different g, m, mb2,
  v, m3, vmax; the same w, noise, t and hyper-constants) leaves every value unchanged (``0.1 * w``);
* ``not finite on ordinary inputs``: NaN or an infinity on an ordinary element (``exp(g^3)^2``);
* ``one sign only``: the finite values are all >= 0 or all <= 0 (``g^2``, ``exp(g)``);
* ``points away from the gradient``: the mean cosine between the update and g is below
  `MIN_COSINE` (``-g``, ``log(abs(g))``).

Ordinary inputs are the probe elements a sound rule must handle: the current gradient is nonzero,
the element is not dead (it has a gradient history), and its scale is moderate (blocks 1e-3 to 10,
see `dsl.equivalence.ORDINARY_SCALES`). Exact zeros, tiny and large scales are still in the probes,
and count for the cosine, the sign and the gradient dependence, but a rule may be undefined there
(``1 / g``) without being rejected. The cosine is taken per probe and per block of elements sharing
one gradient scale, then averaged, so that a scale-free rule (Adam, sign) is not judged by the
largest block alone, as one cosine over all of a network's parameters would.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from dsl.equivalence import RULE_CACHE_SIZE, probes
from dsl.expr import Rule

MIN_COSINE = 0.15  # ENOS's threshold on the mean cosine between the update and the gradient


def _same(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a == b) | (torch.isnan(a) & torch.isnan(b))


def _is_constant(values: torch.Tensor, ordinary: torch.Tensor) -> bool:
    for row, mask in zip(values, ordinary):
        picked = row[mask] if mask.any() else row
        if not bool(_same(picked, picked[:1]).all()):
            return False
    return True


def mean_cosine(update: torch.Tensor, g: torch.Tensor, block: torch.Tensor) -> float:
    """Mean over probes and blocks of cos(update, g), on the elements where the update is finite.

    A (probe, block) pair where either side is all zero has no direction and is left out; 0.0 when
    no pair is left.
    """
    finite = torch.isfinite(update)
    u, gg = torch.where(finite, update, 0.0), torch.where(finite, g, 0.0)
    cosines = []
    for b in torch.unique(block):
        ub, gb = u[:, block == b], gg[:, block == b]
        # Scaled to a largest magnitude of 1 first: squares of values at 1e-6 (or 1e200) would
        # underflow (overflow) in the norms.
        ub = ub / ub.abs().amax(dim=1, keepdim=True)
        gb = gb / gb.abs().amax(dim=1, keepdim=True)
        cos = (ub * gb).sum(dim=1) / (ub.norm(dim=1) * gb.norm(dim=1))
        cosines.append(cos[torch.isfinite(cos)])  # an all-zero row gave 0/0
    everything = torch.cat(cosines)
    return float(everything.mean()) if everything.numel() else 0.0


@lru_cache(maxsize=RULE_CACHE_SIZE)
def why_invalid(rule: Rule) -> str | None:
    """A short reason why the rule cannot train (see the module docstring), or None."""
    if not isinstance(rule, Rule):
        raise TypeError(f"why_invalid takes a Rule, got {type(rule).__name__}")
    env = probes()
    values = env.run(rule)
    ordinary = env.ordinary
    if _is_constant(values, ordinary):
        first = values[ordinary][0] if ordinary.any() else values.flatten()[0]
        return f"constant ({float(first):.6g})"
    if bool(_same(values, env.run(rule, perturbed=True)).all()):
        return "does not depend on the gradient"
    bad = ~torch.isfinite(values[ordinary])
    if bool(bad.any()):
        share = float(bad.double().mean())
        return f"not finite on ordinary inputs ({share:.0%} of ordinary values)"
    finite = values[torch.isfinite(values)]
    if not bool((finite > 0).any()) or not bool((finite < 0).any()):
        return "one sign only (" + ("never negative)" if bool((finite > 0).any()) else "never positive)")
    cosine = mean_cosine(values, env.values["g"], env.block)
    if cosine < MIN_COSINE:
        return f"points away from the gradient (mean cosine {cosine:.2f} < {MIN_COSINE})"
    return None
