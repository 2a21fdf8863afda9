"""The symbolic form of a rule: sympy expressions and LaTeX.

`to_sympy` turns a rule into a sympy expression over real symbols with the assumptions the vocabulary
knows (v, vmax, the decays >= 0; hyper-constants > 0; t a positive integer). The bias-corrected
operands are expanded (``mhat`` becomes ``m / (1 - beta1**t)``), so a rule that writes the correction
out and one that uses the operand become the same expression. `from_sympy` writes a sympy expression
back as a `Rule`; together they are the canonicalisation that `dsl.equivalence` hashes. `to_latex`
prints a rule for people (hats kept); `dsl.simplify` looks for a smaller equivalent rule. Each
function's sympy form, and the sympy function read back as it, is its row of `dsl.functions`.

Building the expression is bounded by the rule's size (at most 256 nodes) except where sympy merges
Max and Min, which compares arguments pairwise: that is capped by a comparison budget (see
`dsl.sympy_forms.Budget`), beyond which a Max or Min is kept as written and `to_sympy_noted` says so.

sympy is only ever given objects built here: no text is parsed by sympy and nothing is evaluated.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import cache

import sympy as sp

from dsl.errors import RuleError
from dsl.expr import Call, Const, Expr, Rule, Var
from dsl.functions import FUNCTIONS
from dsl.sympy_forms import EXTREMA_UNEVALUATED, Budget, bigpow, drop
from dsl.vocabulary import HYPERS, OPERANDS


_HATS = {"mhat": ("m", "beta1"), "vhat": ("v", "beta2"), "m3hat": ("m3", "beta3")}

LATEX_NAMES: dict[str, str] = {
    "g": "g", "w": "w", "m": "m", "mb2": r"m_{\beta_2}", "v": "v", "m3": "m_3", "vmax": r"v_{\max}",
    "mhat": r"\hat{m}", "vhat": r"\hat{v}", "m3hat": r"\hat{m}_3", "noise": r"\mathrm{noise}", "t": "t",
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


def _convert(expr: Expr, exact: bool, hats: bool) -> tuple[sp.Expr, str | None]:
    """The sympy form, and None or why part of it was left as written (`EXTREMA_UNEVALUATED`)."""
    memo: dict[Expr, sp.Expr] = {}
    budget = Budget()

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
            out = FUNCTIONS[node.fn].sympy([walk(a) for a in node.args], params, budget)
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
    read_back = next((f for f in FUNCTIONS.values()
                      if f.sympy_head is not None and f.sympy_head() is expr.func), None)
    if read_back is not None and len(expr.args) == read_back.arity:  # exp, log, abs, sign, bound, ...
        return _call(read_back.name, *(_from(a) for a in expr.args))
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
