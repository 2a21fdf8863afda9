"""Equivalent rules: fixed probe environments, numeric fingerprints and the canonical key.

Probes. `probes()` builds, once per process, a few environments that look like the inside of a
training run: for each element, gradients are a persistent mean plus noise, at the scale of its block
(blocks from 1e-6 to 1e2, like the layers of a network), with exact zeros (dead units that never get a
gradient and, in the others, zeros at random steps as behind a ReLU). The gradients are run through
the optimizer's running averages (m with beta1, mb2 with beta2, v with beta2, m3 with beta3, vmax the
running max of v; computed from the same draws, so adding one changes no other value), so m correlates
with g as it does in training. Each probe has its own step count t (1, 10, 1000, 100) and its own
hyper-constants around the defaults (the first probe has the defaults), so a rule that writes 0.9
differs from one that writes beta1; `bound` gets its bounds from `step_quantities`.
`noise` is one fixed draw and `drop` a fixed deterministic mask. A second gradient history
(``perturbed``) serves `dsl.checks` to see whether a rule depends on the gradient.

Canonical key. THE NUMERIC FINGERPRINT DECIDES. ``canonical_key(rule)`` is a hash (64-bit blake2b, 16
hex digits) of the values of the rule on the probes, each rounded to 24 significant bits (about 7
decimal digits: the rounding step is between 6e-8 and 1.2e-7 of the value), with NaN, +inf, -inf and 0
as their own tokens. The values are computed on the rule after sympy's canonicalisation,
``from_sympy(to_sympy(rule))``, so rules that sympy can show to be algebraically equal (``g + g`` and
``2 * g``, ``mhat`` and ``m / (1 - beta1^t)``) evaluate to bit-identical numbers and rounding can never
separate them; rules sympy does not identify still coincide when their values agree to about 7 digits
everywhere, which rules equal up to float64 rounding almost always do (a value within 1e-15 of a
rounding boundary would split them). Resolution: any two rules whose values differ by more than a few
1e-8 relative on the probes get different keys (``g`` and ``1.0000001 * g`` do), and since the ~1000
values are rounded independently, a relative difference of 1e-9 already splits them with near certainty.
sympy identifies rules that are equal as real functions wherever both are defined, so it merges rules
that differ only where one of them is undefined (``g / g`` and ``1``), and degenerate values
(``log(0)``, ``1 / 0``) become sympy's complex infinity. A rule sympy cannot convert back (complex
numbers, as in ``sqrt(-v)``) is fingerprinted as written. The work is bounded by the rule's structure
alone (see `dsl.symbolic`): where merging Max and Min would cost too many comparisons they are kept as
written, so such rules coincide only up to their values, as above; `key_note` says when. A limit on wall
time instead would make a rule's key depend on how busy the machine was.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache, cached_property, lru_cache

import torch

from dsl.errors import RuleError
from dsl.evaluate import evaluate, leaf_values, step_quantities
from dsl.expr import Expr, Rule
from dsl.symbolic import from_sympy, to_sympy_noted
from dsl.vocabulary import HYPERS, OPERANDS

# One probe per row: the step count, the learning rate AdaBound's bounds are relative to, and
# hyper-constants around the defaults (the first row is the defaults).
PROBE_SETTINGS: tuple[dict[str, float], ...] = (
    dict(t=1, lr=1e-3, beta1=0.9, beta2=0.999, beta3=0.999, eps=1e-8, final_lr=0.1, gamma=1e-3,
         T=10000, cd_periods=0.5, rd_periods=1.0),
    dict(t=10, lr=1e-3, beta1=0.8, beta2=0.99, beta3=0.995, eps=1e-7, final_lr=0.05, gamma=3e-3,
         T=25, cd_periods=0.75, rd_periods=2.0),
    dict(t=1000, lr=3e-3, beta1=0.95, beta2=0.9995, beta3=0.99, eps=3e-9, final_lr=0.3, gamma=3e-4,
         T=4000, cd_periods=1.5, rd_periods=3.0),
    dict(t=100, lr=1e-2, beta1=0.85, beta2=0.98, beta3=0.9999, eps=3e-8, final_lr=0.1, gamma=1e-2,
         T=150, cd_periods=0.25, rd_periods=1.5),
)
BLOCK_SCALES = tuple(10.0**k for k in range(-6, 3))  # gradient scale of each block of elements
PER_BLOCK = 32
DEAD_PER_BLOCK = 4  # elements whose gradient is always exactly zero
ZERO_RATE = 0.1  # chance that a live element's gradient is exactly zero at a step
ORDINARY_SCALES = (1e-3, 1e1)  # blocks whose elements count as ordinary inputs (see `Probes`)
SEED = 20170907


@dataclass(frozen=True)
class Probes:
    """Probe environments: ``values[name]`` is (P, N) for tensor operands, (P, 1) for the rest.

    ``ordinary`` marks the elements a sound rule must handle: a gradient that is nonzero now, a
    live history, and a block scale from 1e-3 to 10 (moderate magnitudes). ``block`` is each
    element's block index; ``perturbed`` holds the values after another gradient history.
    """

    values: dict[str, torch.Tensor]
    perturbed: dict[str, torch.Tensor]
    ordinary: torch.Tensor
    block: torch.Tensor
    shape: tuple[int, int]
    _masks: dict[tuple[int, ...], torch.Tensor] = field(default_factory=dict, repr=False)

    def rand(self, like: torch.Tensor) -> torch.Tensor:
        """A fixed uniform [0, 1) draw shaped like ``like``: `drop` is a deterministic mask here."""
        if like.shape not in self._masks:
            gen = torch.Generator().manual_seed(SEED + 1)
            self._masks[like.shape] = torch.rand(like.shape, generator=gen, dtype=torch.float64)
        return self._masks[like.shape]

    @cached_property
    def _rows(self) -> tuple[tuple[dict[str, torch.Tensor], ...], tuple[dict[str, torch.Tensor], ...]]:
        # One environment per probe, as an optimizer step sees it: (N,) tensors and 0-d scalars.
        def split(values: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], ...]:
            return tuple({k: v[p] if v.shape[1] > 1 else v[p, 0] for k, v in values.items()}
                         for p in range(self.shape[0]))

        return split(self.values), split(self.perturbed)

    def run(self, rule: Rule | Expr, *, perturbed: bool = False) -> torch.Tensor:
        """The rule's values on every probe element, shape (P, N), float64."""
        expr = rule.expr if isinstance(rule, Rule) else rule
        rows = self._rows[1 if perturbed else 0]
        return torch.stack([torch.broadcast_to(evaluate(expr, row, self.rand), self.shape[1:])
                            for row in rows])


def _history(gen: torch.Generator, settings: dict[str, float], scale: torch.Tensor,
             dead: torch.Tensor) -> dict[str, torch.Tensor]:
    """The current g and the running averages after ``t`` steps of a noisy persistent gradient."""
    steps, n = int(settings["t"]), scale.numel()
    mean = torch.randn(n, generator=gen, dtype=torch.float64)
    noise = torch.randn(steps, n, generator=gen, dtype=torch.float64)
    live = (torch.rand(steps, n, generator=gen, dtype=torch.float64) >= ZERO_RATE) & ~dead
    grads = (mean + noise) * scale * live
    b1, b2, b3 = settings["beta1"], settings["beta2"], settings["beta3"]
    m, mb2, v, m3, vmax = (torch.zeros(n, dtype=torch.float64) for _ in range(5))
    for g in grads:
        m = b1 * m + (1 - b1) * g
        mb2 = b2 * mb2 + (1 - b2) * g
        v = b2 * v + (1 - b2) * g * g
        m3 = b3 * m3 + (1 - b3) * g * g * g
        vmax = torch.maximum(vmax, v)
    return {"g": grads[-1], "m": m, "mb2": mb2, "v": v, "m3": m3, "vmax": vmax}


def _values(histories: list[dict[str, torch.Tensor]], fixed: dict[str, torch.Tensor],
            hyper: dict[str, torch.Tensor], steps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    tensors = {k: torch.stack([h[k] for h in histories]) for k in histories[0]} | fixed
    names = set(OPERANDS) | set(HYPERS)
    out = leaf_values(tensors, steps, hyper, names)
    return out | {"bound_low": steps["bound_low"], "bound_high": steps["bound_high"]}


@cache
def probes() -> Probes:
    """The fixed probe environments (built once per process, seeded)."""
    gen = torch.Generator().manual_seed(SEED)
    column = {k: torch.tensor([[float(s[k])] for s in PROBE_SETTINGS], dtype=torch.float64)
              for k in PROBE_SETTINGS[0]}
    hyper = {k: column[k] for k in HYPERS}
    steps = step_quantities(column["t"], hyper, column["final_lr"] / column["lr"])
    block = torch.arange(len(BLOCK_SCALES)).repeat_interleave(PER_BLOCK)
    scale = torch.tensor(BLOCK_SCALES, dtype=torch.float64)[block]
    dead = (torch.arange(block.numel()) % PER_BLOCK) < DEAD_PER_BLOCK
    shape = (len(PROBE_SETTINGS), block.numel())
    # Weights at scales 1e-3..1 and one standard normal noise draw; the same in both histories.
    fixed = {"w": torch.randn(shape, generator=gen, dtype=torch.float64)
             * 10.0 ** (-3 * torch.rand(shape, generator=gen, dtype=torch.float64)),
             "noise": torch.randn(shape, generator=gen, dtype=torch.float64)}
    base = [_history(gen, s, scale, dead) for s in PROBE_SETTINGS]
    other = [_history(gen, s, scale, dead) for s in PROBE_SETTINGS]
    low, high = ORDINARY_SCALES
    ordinary = torch.stack([h["g"] != 0 for h in base]) & ((scale >= low) & (scale <= high))
    return Probes(_values(base, fixed, hyper, steps), _values(other, fixed, hyper, steps), ordinary,
                  block, shape)


def fingerprint(rule: Rule | Expr) -> torch.Tensor:
    """The rule's values on the probes as written, shape (P, N), float64."""
    return probes().run(rule)


def canonical_form(rule: Rule) -> Rule:
    """``from_sympy(to_sympy(rule))``, or the rule itself where sympy's form cannot be written back."""
    return canonical_form_noted(rule)[0]


# Rules remembered by each per-rule cache here and in `dsl.checks` (least recently used dropped): a
# search's driver screens every sample, and a rule with its results holds about 6 KB, so a long search
# would otherwise keep ~400 MB (65,536 rules) in them; its repeats are recent ones (a 5,000-training soak,
# benchmarks/soak.py: 22 more misses of 39,750 than an unbounded cache).
RULE_CACHE_SIZE = 1 << 12


@lru_cache(maxsize=RULE_CACHE_SIZE)
def canonical_form_noted(rule: Rule) -> tuple[Rule, str | None]:
    """`canonical_form`, and None or why it is less than sympy's full canonicalisation: the rule as
    written (no sympy form), or Max and Min kept as written (`dsl.symbolic.EXTREMA_UNEVALUATED`)."""
    try:
        expr, note = to_sympy_noted(rule)
        return from_sympy(expr), note
    except (RuleError, ValueError, TypeError, ArithmeticError, RecursionError) as err:
        return rule, f"values of the rule as written (sympy's form cannot be written back: {err})"


def key_note(rule: Rule) -> str | None:
    """None when `canonical_key` hashes sympy's canonical form, else what it hashes instead."""
    return canonical_form_noted(rule)[1]


_BITS = 24
_NAN, _POS_INF, _NEG_INF = 3 << _BITS, 2 << _BITS, -(2 << _BITS)  # outside the range of a mantissa


def quantise(values: torch.Tensor) -> torch.Tensor:
    """Each value as (signed 24-bit mantissa, exponent), int64, shape (2, ...); 0 is (0, 0)."""
    mantissa, exponent = torch.frexp(values)
    q = torch.round(mantissa * float(1 << _BITS))
    carry = q.abs() == float(1 << _BITS)  # rounded up to the next binade
    q, exponent = torch.where(carry, q / 2, q), exponent + carry.to(exponent.dtype)
    q = torch.where(torch.isnan(values), _NAN, q)
    q = torch.where(values == float("inf"), _POS_INF, q)
    q = torch.where(values == float("-inf"), _NEG_INF, q)
    special = ~torch.isfinite(values) | (values == 0)
    q = torch.where(values == 0, 0.0, q)
    exponent = torch.where(special, 0, exponent)
    return torch.stack([q.to(torch.int64), exponent.to(torch.int64)])


@lru_cache(maxsize=RULE_CACHE_SIZE)
def canonical_key(rule: Rule) -> str:
    """A 16-hex-digit key under which equivalent rules coincide (see the module docstring)."""
    if not isinstance(rule, Rule):
        raise TypeError(f"canonical_key takes a Rule, got {type(rule).__name__}")
    tokens = quantise(fingerprint(canonical_form(rule))).contiguous()
    return hashlib.blake2b(tokens.numpy().tobytes(), digest_size=8).hexdigest()
