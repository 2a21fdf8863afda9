"""The functions of the rule language, each defined once, in every form it takes, side by side.

A row of `FUNCTIONS` is a function's whole definition: its name, arity, literal parameters and text
spelling, and its meaning in each form that the rest of the package reads:

* ``tensor(args, params, ctx)``: on tensors, Python floats (constants) and torch.fx proxies: the
  language's numeric meaning (`dsl.evaluate`, the fused path, the single-tensor path, the probes of
  `dsl.equivalence`); ``ctx`` holds the random source ``rand`` and the step quantities it ``reads``;
* ``number(args, params, steps)``: the same on Python floats, for folding per-step scalars cheaply
  (`dsl.evaluate.fold`, which falls back to ``tensor`` in float64 where Python raises or differs from
  IEEE); None where only ``tensor`` is used;
* ``foreach(args, params, steps)``: on the multi-tensor path's values (`dsl.lazy`), at least one of
  which is a tensor list (`dsl.foreach`);
* ``sympy(args, params, budget)``: the sympy expression (`dsl.symbolic`), and ``sympy_head``, which gives
  the sympy function that `from_sympy` reads back as this one;
* ``source(args, params, f64)``: the generated PyTorch source (`dsl.codegen`, `dsl.source`), and
  ``helper``, a definition the generated module then needs.

The forms use torch, sympy and `dsl.sympy_forms` only when called: those are bound by `dsl.deferred` and
imported on first use, so that the table's names and docs (``nos rules names``, the parser) load without
them.

So adding a function is adding a row here (the parser, printer, evaluators, symbolic export and code
generator all read it); tests/test_functions.py does that with a temporary row.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

from dsl import lazy
from dsl.deferred import deferred
from dsl.source import (POWER, PRODUCT, SUM, Code, SourceForm, as_tensor, call, extremum, infix, literal,
                        negation)

if TYPE_CHECKING:
    import sympy as sp
    import torch

    from dsl import sympy_forms

# Imported when a form first uses them, so that the table's names and docs load without them
# (`dsl.deferred`): a row refers to torch, sympy and `dsl.sympy_forms` only inside its forms.
torch = deferred("torch", globals())
sp = deferred("sympy", globals(), "sp")
sympy_forms = deferred("dsl.sympy_forms", globals(), "sympy_forms")


@dataclass(frozen=True)
class Function:
    name: str
    arity: int  # number of expression arguments
    doc: str
    _: KW_ONLY
    tensor: Callable[[list[Any], tuple[float, ...], Any], Any]
    sympy: Callable[[list[sp.Expr], list[sp.Expr], sympy_forms.Budget], sp.Expr]
    source: SourceForm
    foreach: Callable[[list[lazy.Value], tuple[float, ...], Any], lazy.Value]
    number: Callable[[list[float], tuple[float, ...], Any], float] | None = None
    # The sympy function read back as this one, given by a function of no arguments (lambda: sp.exp for
    # exp) so that building the table imports no sympy.
    sympy_head: Callable[[], Any] | None = None
    helper: str = ""  # source the generated module defines when a rule calls this function
    params: tuple[tuple[str, float, float], ...] = ()  # literal parameters: (name, low, high), open
    infix: str | None = None  # the operator spelling, for binary operators and negation
    random: bool = False  # draws random numbers: two uses are not the same value
    reads: tuple[str, ...] = ()  # step quantities it reads besides its arguments (bound's clip range)
    hypers: tuple[str, ...] = ()  # hyper-constants those step quantities depend on


def _drop(x: Any, p: float, rand: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return x * (rand(x) >= p).to(x.dtype) / (1.0 - p)


def _max(x: Any, y: Any) -> Any:
    if isinstance(x, float) and isinstance(y, float):  # two constants of clamp(1, 2, g)
        return lazy.number_extreme(x, y, "max")
    if isinstance(y, float):
        return torch.clamp_min(x, y)
    return torch.clamp_min(y, x) if isinstance(x, float) else torch.maximum(x, y)


def _min(x: Any, y: Any) -> Any:
    if isinstance(x, float) and isinstance(y, float):
        return lazy.number_extreme(x, y, "min")
    if isinstance(y, float):
        return torch.clamp_max(x, y)
    return torch.clamp_max(y, x) if isinstance(x, float) else torch.minimum(x, y)


_MAX, _MIN = extremum("max"), extremum("min")

_DROP_HELPER = '''def _drop(x: torch.Tensor, rate: float) -> torch.Tensor:
    """Dropout: each element zeroed with probability rate, the rest scaled by 1 / (1 - rate)."""
    return x * (torch.rand_like(x) >= rate).to(x.dtype) / (1.0 - rate)'''

def _elementwise(name: str, doc: str, number: Callable[[float], float],
                 sympy_fn: Callable[[sp.Expr], sp.Expr], sympy_head: Callable[[], Any] | None = None,
                 foreach: Callable[[lazy.Lazy], lazy.Value] | None = None) -> Function:
    """A unary function that torch spells torch.<name> (and, unless ``foreach`` says otherwise, whose
    multi-tensor form is torch._foreach_<name> on the materialised value)."""
    many = foreach or (lambda x: lazy.apply(x, name))
    return Function(name, 1, doc, tensor=lambda a, p, c: getattr(torch, name)(a[0]),
                    number=lambda a, p, s: number(a[0]), foreach=lambda a, p, s: many(a[0]),
                    sympy=lambda a, p, b: sympy_fn(a[0]), sympy_head=sympy_head, source=call(f"torch.{name}"))


def _clamp_source(args: list[Code], params: tuple[float, ...], f64: bool) -> Code:
    return _MIN([_MAX(args[:2], params, f64), args[2]], params, f64)


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("neg", 1, "-x", infix="-",
                 tensor=lambda a, p, c: -a[0], number=lambda a, p, s: -a[0],
                 foreach=lambda a, p, s: lazy.negate(a[0]),
                 sympy=lambda a, p, b: -a[0], source=negation),
        _elementwise("exp", "e^x", math.exp, lambda x: sympy_forms.exp(x), lambda: sp.exp),
        _elementwise("log", "natural logarithm (NOS's log|x| is log(abs(x)))", math.log, lambda x: sp.log(x),
                     lambda: sp.log),
        _elementwise("abs", "|x|", abs, lambda x: sp.Abs(x), lambda: sp.Abs, lazy.absolute),
        _elementwise("sqrt", "square root (NOS's sqrt|x| is sqrt(abs(x)))", math.sqrt, lambda x: sp.sqrt(x),
                     foreach=lazy.root),  # read back from sympy as a power of 1/2
        _elementwise("sign", "-1, 0 or 1; sign(0) = 0", lambda x: float((x > 0) - (x < 0)),
                     lambda x: sp.sign(x), lambda: sp.sign, lazy.signum),
        Function("clip", 1, "clip(x, c): x clipped to [-c, c]", params=(("c", 0.0, float("inf")),),
                 tensor=lambda a, p, c: torch.clamp(a[0], -p[0], p[0]),
                 number=lambda a, p, s: min(max(a[0], -p[0]), p[0]),
                 foreach=lambda a, p, s: lazy.clamp(a[0], -p[0], p[0]),
                 sympy=lambda a, p, b: b.clamp(a[0], -p[0], p[0]),
                 source=lambda a, p, f64: Code(f"torch.clamp({a[0].text}, -{literal(p[0]).text}, "
                                               f"{literal(p[0]).text})")),
        Function("drop", 1, "drop(x, p): dropout, each element zeroed with probability p, the rest "
                 "scaled by 1/(1-p)", params=(("p", 0.0, 1.0),), random=True,
                 tensor=lambda a, p, c: _drop(a[0], p[0], c["rand"]),
                 foreach=lambda a, p, s: lazy.drop(a[0], p[0]),
                 sympy=lambda a, p, b: sympy_forms.drop(a[0], p[0]),
                 source=lambda a, p, f64: Code(f"_drop({a[0].text}, {literal(p[0]).text})"),
                 helper=_DROP_HELPER),
        Function("bound", 1, "AdaBound's dynamic clip: the step lr*x is clipped per element between "
                 "eta*(1 - 1/(gamma*t + 1)) and eta*(1 + 1/(gamma*t)), eta = final_lr * lr / initial_lr, "
                 "as in the adabound package (eta = final_lr when the initial lr is 0)",
                 reads=("bound_low", "bound_high"), hypers=("final_lr", "gamma"),
                 tensor=lambda a, p, c: _min(_max(a[0], c["bound_low"]), c["bound_high"]),
                 number=lambda a, p, s: min(max(a[0], s["bound_low"]), s["bound_high"]),
                 foreach=lambda a, p, s: lazy.clamp(a[0], s["bound_low"], s["bound_high"]),
                 sympy=lambda a, p, b: sympy_forms.bound(a[0]), sympy_head=lambda: sympy_forms.bound,
                 source=lambda a, p, f64: Code(f"torch.clamp({as_tensor(a[0], f64)}, bound_low, "
                                               "bound_high)")),
        Function("add", 2, "x + y", infix="+",
                 tensor=lambda a, p, c: a[0] + a[1], number=lambda a, p, s: a[0] + a[1],
                 foreach=lambda a, p, s: lazy.add(a[0], a[1], 1.0),
                 sympy=lambda a, p, b: a[0] + a[1], source=infix("+", SUM)),
        Function("sub", 2, "x - y", infix="-",
                 tensor=lambda a, p, c: a[0] - a[1], number=lambda a, p, s: a[0] - a[1],
                 foreach=lambda a, p, s: lazy.add(a[0], a[1], -1.0),
                 sympy=lambda a, p, b: a[0] - a[1], source=infix("-", SUM)),
        Function("mul", 2, "x * y", infix="*",
                 tensor=lambda a, p, c: a[0] * a[1], number=lambda a, p, s: a[0] * a[1],
                 foreach=lambda a, p, s: lazy.mul(a[0], a[1]),
                 sympy=lambda a, p, b: a[0] * a[1], source=infix("*", PRODUCT)),
        Function("div", 2, "x / y (NOS's division is x / (y + 1e-8))", infix="/",
                 tensor=lambda a, p, c: a[0] / a[1], number=lambda a, p, s: a[0] / a[1],
                 foreach=lambda a, p, s: lazy.div(a[0], a[1]),
                 sympy=lambda a, p, b: a[0] * sympy_forms.power(a[1], sp.Integer(-1)),
                 source=infix("/", PRODUCT)),
        Function("pow", 2, "x ^ y", infix="^",
                 tensor=lambda a, p, c: a[0] ** a[1], number=lambda a, p, s: a[0] ** a[1],
                 foreach=lambda a, p, s: lazy.power(a[0], a[1]),
                 sympy=lambda a, p, b: sympy_forms.power(a[0], a[1]), source=infix("**", POWER)),
        Function("max", 2, "elementwise maximum",
                 tensor=lambda a, p, c: _max(a[0], a[1]), number=lambda a, p, s: max(a[0], a[1]),
                 foreach=lambda a, p, s: lazy.extreme(a[0], a[1], "max"),
                 sympy=lambda a, p, b: b.extremum(sp.Max, a), source=_MAX),
        Function("min", 2, "elementwise minimum",
                 tensor=lambda a, p, c: _min(a[0], a[1]), number=lambda a, p, s: min(a[0], a[1]),
                 foreach=lambda a, p, s: lazy.extreme(a[0], a[1], "min"),
                 sympy=lambda a, p, b: b.extremum(sp.Min, a), source=_MIN),
        Function("clamp", 3, "clamp(x, low, high): x clipped to [low, high]",
                 tensor=lambda a, p, c: _min(_max(a[0], a[1]), a[2]),
                 number=lambda a, p, s: min(max(a[0], a[1]), a[2]),
                 foreach=lambda a, p, s: lazy.extreme(lazy.extreme(a[0], a[1], "max"), a[2], "min"),
                 sympy=lambda a, p, b: b.clamp(*a), source=_clamp_source),
    ]
}
