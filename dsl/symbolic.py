"""The symbolic form of a rule: sympy expressions, LaTeX, and simplification.

`to_sympy` turns a rule into a sympy expression over real symbols with the assumptions the vocabulary
knows (v, vmax, the decays >= 0; hyper-constants > 0; t a positive integer). The bias-corrected
operands are expanded (``mhat`` becomes ``m / (1 - beta1**t)``), so a rule that writes the correction
out and one that uses the operand become the same expression. `from_sympy` writes a sympy expression
back as a `Rule`; together they are the canonicalisation that `dsl.equivalence` hashes. `to_latex`
prints a rule for people (hats kept); `dsl.simplify` looks for a smaller equivalent rule.

Building the expression is bounded by the rule's size (at most 256 nodes) except where sympy merges
Max and Min, which compares arguments pairwise: that is capped by a comparison budget (see `_Budget`),
beyond which a Max or Min is kept as written and `to_sympy_noted` says so.

sympy is only ever given objects built here: no text is parsed by sympy and nothing is evaluated.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from functools import cache

import sympy as sp

from dsl.errors import RuleError
from dsl.expr import Call, Const, Expr, Rule, Var
from dsl.vocabulary import HYPERS, OPERANDS


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

_HATS = {"mhat": ("m", "beta1"), "vhat": ("v", "beta2"), "m3hat": ("m3", "beta3")}

LATEX_NAMES: dict[str, str] = {
    "g": "g", "w": "w", "m": "m", "v": "v", "m3": "m_3", "vmax": r"v_{\max}", "mhat": r"\hat{m}",
    "vhat": r"\hat{v}", "m3hat": r"\hat{m}_3", "noise": r"\mathrm{noise}", "t": "t",
    "ld": r"\mathrm{ld}", "cd": r"\mathrm{cd}", "rd": r"\mathrm{rd}", "beta1": r"\beta_1",
    "beta2": r"\beta_2", "beta3": r"\beta_3", "eps": r"\epsilon", "final_lr": r"\eta_{\mathrm{final}}",
    "gamma": r"\gamma", "T": "T", "cd_periods": r"n_{\mathrm{cd}}", "rd_periods": r"n_{\mathrm{rd}}",
}


@cache
def symbol(name: str) -> sp.Symbol:
    """The sympy symbol of an operand or hyper-constant, with the sign the vocabulary knows."""
    if name in HYPERS:
        return sp.Symbol(name, positive=True)
    if name == "t":
        return sp.Symbol(name, positive=True, integer=True)
    if name not in OPERANDS:
        raise RuleError(f"unknown name {name!r}")
    # The hats stay symbols only in to_latex.
    return sp.Symbol(name, **({"nonnegative": True} if OPERANDS[name].nonnegative else {"real": True}))


def _number(value: float, exact: bool) -> sp.Expr:
    if exact:
        # The shortest decimal that round-trips is what the rule's author wrote: 0.1 is 1/10.
        frac = Fraction(repr(value))
        return sp.Rational(frac.numerator, frac.denominator)
    return sp.Integer(int(value)) if value.is_integer() and abs(value) < 2**53 else sp.Float(value)


def _power(base: sp.Expr, exponent: sp.Expr) -> sp.Expr:
    if exponent.is_Rational and exponent.p != 0:
        bits = max((max(abs(r.p), r.q).bit_length() for r in base.atoms(sp.Rational)), default=1)
        # The exact result grows with p; a numeric base also gets factored for the q-th root.
        if abs(exponent.p) * bits > _EXACT_POWER_BITS or (bits > 1 and exponent.q > _EXACT_ROOT):
            return bigpow(base, exponent)
    return sp.Pow(base, exponent)


# exp of a number beyond these is inf or 0 in float64, as the evaluator computes it; sympy's exact
# value would have to be computed for comparisons (exp(exp(9e15)) exhausts memory).
_EXP_OVERFLOW, _EXP_UNDERFLOW = 709.782712893384, -745.1332191019412


def _exp(x: sp.Expr) -> sp.Expr:
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


class _Budget:
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


# name -> f(arguments, literal parameters, budget)
_FUNCTIONS: dict[str, Callable[[list[sp.Expr], list[sp.Expr], _Budget], sp.Expr]] = {
    "neg": lambda a, p, b: -a[0], "exp": lambda a, p, b: _exp(a[0]), "log": lambda a, p, b: sp.log(a[0]),
    "abs": lambda a, p, b: sp.Abs(a[0]), "sqrt": lambda a, p, b: sp.sqrt(a[0]),
    "sign": lambda a, p, b: sp.sign(a[0]), "clip": lambda a, p, b: b.clamp(a[0], -p[0], p[0]),
    "drop": lambda a, p, b: drop(a[0], p[0]), "bound": lambda a, p, b: bound(a[0]),
    "add": lambda a, p, b: a[0] + a[1], "sub": lambda a, p, b: a[0] - a[1],
    "mul": lambda a, p, b: a[0] * a[1], "div": lambda a, p, b: a[0] * _power(a[1], sp.Integer(-1)),
    "pow": lambda a, p, b: _power(a[0], a[1]), "max": lambda a, p, b: b.extremum(sp.Max, a),
    "min": lambda a, p, b: b.extremum(sp.Min, a), "clamp": lambda a, p, b: b.clamp(*a),
}


def _convert(expr: Expr, exact: bool, hats: bool) -> tuple[sp.Expr, str | None]:
    """The sympy form, and None or why part of it was left as written (`EXTREMA_UNEVALUATED`)."""
    memo: dict[Expr, sp.Expr] = {}
    budget = _Budget()

    def walk(node: Expr) -> sp.Expr:
        if node in memo:
            return memo[node]
        if isinstance(node, Const):
            out = _number(node.value, exact)
        elif isinstance(node, Var) and node.name in _HATS and not hats:
            base, beta = _HATS[node.name]
            out = symbol(base) / (1 - symbol(beta) ** symbol("t"))
        elif isinstance(node, Var):
            out = symbol(node.name)
        else:
            params = [_number(p, exact) for p in node.params]
            out = _FUNCTIONS[node.fn]([walk(a) for a in node.args], params, budget)
        memo[node] = out
        return out

    out = walk(expr)
    return out, EXTREMA_UNEVALUATED if budget.exhausted else None


def to_sympy(rule_or_expr: Rule | Expr, *, exact: bool = True) -> sp.Expr:
    """The rule as a sympy expression, bias-corrected operands expanded.

    ``exact=True`` writes each constant as the exact rational of its shortest decimal (0.1 -> 1/10),
    so sympy's arithmetic on constants is exact; ``exact=False`` as Integer or Float, for reading.
    """
    return to_sympy_noted(rule_or_expr, exact=exact)[0]


def to_sympy_noted(rule_or_expr: Rule | Expr, *, exact: bool = True) -> tuple[sp.Expr, str | None]:
    """`to_sympy`'s expression, and None, or `EXTREMA_UNEVALUATED` when a Max or Min was built as
    written because merging it would have cost more comparisons than a conversion may spend."""
    expr = rule_or_expr.expr if isinstance(rule_or_expr, Rule) else rule_or_expr
    return _convert(expr, exact, hats=False)


def to_latex(rule: Rule | Expr) -> str:
    """LaTeX for the rule as people write it: \\hat{m} rather than the expanded bias correction."""
    expr = rule.expr if isinstance(rule, Rule) else rule
    tree, _ = _convert(expr, exact=False, hats=True)
    return sp.latex(tree, symbol_names={symbol(n): tex for n, tex in LATEX_NAMES.items()})


# --- back from sympy -------------------------------------------------------------------------

def _call(fn: str, *args: Expr, params: tuple[float, ...] = ()) -> Call:
    return Call(fn, tuple(args), params)


_INF = _call("div", Const(1.0), Const(0.0))  # zoo in sympy, inf in torch
_SPECIAL: dict[sp.Expr, Expr] = {
    sp.nan: _call("div", Const(0.0), Const(0.0)), sp.zoo: _INF, sp.oo: _call("abs", _INF),
    sp.S.NegativeInfinity: _call("neg", _call("abs", _INF)),
}


def _from_number(num: sp.Expr) -> Expr:
    if num in _SPECIAL:
        return _SPECIAL[num]
    if num.is_negative:
        return _call("neg", _from_number(-num))
    if num.is_Float:
        return Const(float(num))
    p, q = int(num.p), int(num.q)
    try:
        value = p / q  # correctly rounded
    except OverflowError:
        value = math.inf
    if not math.isfinite(value) or (value == 0.0 and p != 0):
        # Not inf or 0 as float64 would round it: sympy moves numbers around (log(5e-324) becomes
        # -log(2e323)), and the rule would change its value.
        raise RuleError(f"the number {num} is out of the range of float64")
    if Fraction(repr(value)) == Fraction(p, q) or max(p, q) >= 2**53:
        return Const(value)  # a decimal as written, or beyond exact floats: the nearest float
    return _call("div", Const(float(p)), Const(float(q)))  # 1/3 stays exact through a round trip


def _product(factors: list[Expr]) -> Expr:
    out = factors[0]
    for f in factors[1:]:
        out = _call("mul", out, f)
    return out


def _negative(term: sp.Expr) -> bool:
    coeff = term.as_coeff_Mul()[0]
    return bool(coeff.is_Number and coeff.is_extended_negative)


def _from_add(expr: sp.Expr) -> Expr:
    terms = list(expr.args)
    first = next((i for i, t in enumerate(terms) if not _negative(t)), None)
    if first is None:  # all terms negative: -(a + b)
        return _call("neg", _from(sp.Add(*[-t for t in terms])))
    out = _from(terms.pop(first))
    for term in terms:
        out = _call("sub", out, _from(-term)) if _negative(term) else _call("add", out, _from(term))
    return out


def _from_mul(expr: sp.Expr) -> Expr:
    coeff, factors = expr.as_coeff_mul()
    if coeff.is_extended_negative:
        return _call("neg", _from(-expr))
    numer: list[Expr] = []
    denom: list[Expr] = []
    if coeff != 1:
        written = _from_number(coeff)
        if coeff.is_Rational and isinstance(written, Call):  # p/q: p up, q down
            numer += [written.args[0]] if coeff.p != 1 else []
            denom.append(written.args[1])
        else:
            numer.append(written)
    for f in factors:
        if f.is_Pow and f.exp.is_Number and f.exp.is_extended_negative:
            denom.append(_from(sp.Pow(f.base, -f.exp)))
        else:
            numer.append(_from(f))
    top = _product(numer) if numer else Const(1.0)
    return _call("div", top, _product(denom)) if denom else top


def _from_pow(expr: sp.Expr) -> Expr:
    base, exponent = expr.args
    if exponent == sp.Rational(1, 2):
        return _call("sqrt", _from(base))
    if exponent.is_Number and exponent.is_extended_negative:
        return _call("div", Const(1.0), _from(sp.Pow(base, -exponent)))
    return _call("pow", _from(base), _from(exponent))


def _from_extremum(expr: sp.Expr) -> Expr:
    fn = "min" if isinstance(expr, sp.Min) else "max"
    args = list(expr.args)
    if fn == "min" and len(args) == 2:
        inner = next((a for a in args if isinstance(a, sp.Max) and len(a.args) == 2), None)
        if inner is not None:
            high = args[1] if args[0] is inner else args[0]
            lows = [a for a in inner.args if a.is_Number]
            low = lows[0] if lows else inner.args[1]
            x = inner.args[0] if inner.args[1] is low else inner.args[1]
            if high.is_Number and high.is_positive and low == -high and math.isfinite(float(high)):
                return _call("clip", _from(x), params=(float(high),))
            return _call("clamp", _from(x), _from(low), _from(high))
    out = _from(args[0])
    for a in args[1:]:
        out = _call(fn, out, _from(a))
    return out


_SIMPLE = {sp.exp: "exp", sp.log: "log", sp.Abs: "abs", sp.sign: "sign", bound: "bound"}


def _from(expr: sp.Expr) -> Expr:
    if expr.is_Number or expr in _SPECIAL:
        return _from_number(expr)
    if expr is sp.E:
        return _call("exp", Const(1.0))
    if expr.is_Symbol:
        name = expr.name
        if name in OPERANDS or name in HYPERS:
            return Var(name)
        raise RuleError(f"the symbol {name!r} is not a name of the rule language")
    if expr.is_Add:
        return _from_add(expr)
    if expr.is_Mul:
        return _from_mul(expr)
    if expr.is_Pow:
        return _from_pow(expr)
    if isinstance(expr, (sp.Min, sp.Max)):
        return _from_extremum(expr)
    if expr.func in _SIMPLE and len(expr.args) == 1:
        return _call(_SIMPLE[expr.func], _from(expr.args[0]))
    if isinstance(expr, drop):
        return _call("drop", _from(expr.args[0]), params=(float(expr.args[1]),))
    if isinstance(expr, bigpow):
        return _call("pow", _from(expr.args[0]), _from(expr.args[1]))
    raise RuleError(f"{expr} cannot be written in the rule language ({type(expr).__name__})")


def from_sympy(expr: sp.Expr) -> Rule:
    """The `Rule` of a sympy expression over the language's symbols and functions.

    Raises `RuleError` for what the language cannot write: complex numbers, pi, Piecewise, numbers
    beyond float64, unknown symbols or functions.
    """
    if not isinstance(expr, sp.Basic):
        raise TypeError(f"expected a sympy expression, got {type(expr).__name__}")
    return Rule(_from(expr))
