"""sympy's side of the language's functions: what `dsl.functions` builds each function's sympy form from.

* `drop`, `bound` and `bigpow`: functions sympy only knows by their arguments (random, reading a step
  quantity sympy cannot see, or a power too large for exact arithmetic), with their LaTeX;
* `power` and `exp`: ``x ** e`` and ``e ** x`` that never start an exact computation that would not
  finish (``(2*g)**10**16``, ``exp(exp(9e15))``);
* `Budget`: what one conversion may spend on merging Max and Min, which sympy does by comparing
  arguments pairwise; past it a Max or Min is built as written and `EXTREMA_UNEVALUATED` says so.
"""

from __future__ import annotations

import math

import sympy as sp


class _Opaque(sp.Function):
    """A function sympy only knows by its arguments; subclasses give their LaTeX as ``_tex``."""

    def _latex(self, printer, exp=None) -> str:
        tex = self._tex(printer)
        return tex if exp is None else rf"\left({tex}\right)^{{{exp}}}"


class drop(_Opaque):  # noqa: N801 - printed under the language's name
    """Dropout ``drop(x, p)``: random, so sympy only knows it as a function of x and p."""

    nargs = 2

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _tex(self, printer) -> str:
        x, p = (printer._print(a) for a in self.args)
        return rf"\operatorname{{drop}}_{{{p}}}\left({x}\right)"


class bound(_Opaque):  # noqa: N801
    """AdaBound's clip of x between eta_l(t) >= 0 and eta_u(t): a step quantity sympy cannot see."""

    nargs = 1

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    def _eval_is_nonnegative(self) -> bool | None:
        return True if self.args[0].is_real else None

    def _tex(self, printer) -> str:
        x = printer._print(self.args[0])
        return rf"\operatorname{{clip}}_{{[\eta_l(t),\,\eta_u(t)]}}\left({x}\right)"


class bigpow(_Opaque):  # noqa: N801
    """``x ** e`` for a numeric exponent so large that sympy's exact arithmetic would not finish
    (``(2*g)**10**16`` expands ``2**10**16``); kept opaque, it means exactly ``pow(x, e)``."""

    nargs = 2

    def _tex(self, printer) -> str:
        x, e = (printer._print(a) for a in self.args)
        return rf"\left({x}\right)^{{{e}}}"


# Beyond these, a power with numbers in its base stays a bigpow: bits of the exact result, and the
# largest root sympy is asked to take of a number (0.5^1e-300 would not finish).
_EXACT_POWER_BITS = 4096
_EXACT_ROOT = 64

def power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    if exponent.is_Rational and exponent.p != 0:
        bits = max((max(abs(r.p), r.q).bit_length() for r in base.atoms(sp.Rational)), default=1)
        # The exact result grows with p; a numeric base also gets factored for the q-th root.
        if abs(exponent.p) * bits > _EXACT_POWER_BITS or (bits > 1 and exponent.q > _EXACT_ROOT):
            return bigpow(base, exponent)
    return sp.Pow(base, exponent)


# exp of a number beyond these is inf or 0 in float64, as the evaluator computes it; sympy's exact
# value would have to be computed for comparisons (exp(exp(9e15)) exhausts memory).
_EXP_OVERFLOW, _EXP_UNDERFLOW = 709.782712893384, -745.1332191019412


def exp(x: sp.Expr) -> sp.Expr:
    if not x.free_symbols:
        try:
            value = float(x)
        except OverflowError:
            value = math.inf if x.is_extended_positive else -math.inf if x.is_extended_negative else 0.0
        except (TypeError, ValueError):  # complex, or an opaque function (drop(1, 0.3))
            value = 0.0
        if value > _EXP_OVERFLOW:
            return sp.oo
        if value < _EXP_UNDERFLOW:
            return sp.S.Zero
    return sp.exp(x)


# sympy's Max and Min compare their (flattened) arguments pairwise when built, each comparison a query
# of the assumptions system: a balanced tree of 64 max() took 13 s. A conversion may spend this many
# pairwise comparisons, one Max or Min at most _EXTREMUM_ARGS arguments; past either, a Max or Min is
# built unevaluated (exactly the rule, only not merged with its neighbours). The limit is on the
# structure, not on wall time, so that a rule's canonical key is the same on a busy machine.
_EXTREMUM_ARGS = 8
_EXTREMUM_PAIRS = 40
EXTREMA_UNEVALUATED = "max/min left as written (over the symbolic comparison budget)"


class Budget:
    """What one conversion may still spend on comparisons in Max and Min, and whether it ran out."""

    def __init__(self) -> None:
        self.pairs = _EXTREMUM_PAIRS
        self.exhausted = False

    def extremum(self, cls: type, args: list[sp.Expr]) -> sp.Expr:
        if any(a is sp.nan for a in args):
            return sp.nan  # torch.maximum and torch.minimum propagate NaN
        flat = sum(len(a.args) if isinstance(a, cls) else 1 for a in args)
        pairs = flat * (flat - 1) // 2
        if flat > _EXTREMUM_ARGS or pairs > self.pairs:
            self.exhausted = True
            return cls(*args, evaluate=False)
        self.pairs -= pairs
        try:
            return cls(*args)
        except ValueError:  # an argument sympy cannot compare (zoo, I): keep the call as written
            return cls(*args, evaluate=False)

    def clamp(self, x: sp.Expr, low: sp.Expr, high: sp.Expr) -> sp.Expr:
        return self.extremum(sp.Min, [self.extremum(sp.Max, [x, low]), high])
