"""The multi-tensor path: a rule evaluated over lists of tensors with `torch._foreach_*` kernels.

Memory traffic is the cost of an optimizer step, so the evaluator avoids passes over memory:

* a value is ``coef * tensors`` with a Python-float ``coef`` kept aside, so scalings, negations and
  bias corrections cost nothing until a value must be materialised (``sqrt(c*x) = sqrt(c)*sqrt(x)``,
  ``c*x + s = c*(x + s/c)``, ``c1*x + c2*y = c1*(x + (c2/c1)*y)``);
* a temporary that nothing else reads is changed in place instead of copied;
* the root product or quotient is fused into the weight update (``addcmul_`` / ``addcdiv_``), as
  torch's Adam does.

For Adam this is the same number of passes as torch.optim.Adam(foreach=True). Everything that does not
depend on a tensor operand (step quantities, hyper-constants, constants) is a Python float.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from dsl.evaluate import BIAS_CORRECTED, fold
from dsl.expr import Call, Const, Expr, reduce_tree, use_counts

TensorList = list[torch.Tensor]


@dataclass
class Lazy:
    """The value ``coef * tensors``; ``owned``: the tensors are temporaries this value alone holds."""

    tensors: TensorList
    coef: float = 1.0
    owned: bool = False


Value = Lazy | float


def _ok(c: float) -> bool:
    """A coefficient safe to carry aside: finite and far from overflow and underflow. Outside that
    range the value is materialised, so the lazy algebra never creates an inf or a 0 the plain
    evaluation would not."""
    return math.isfinite(c) and (c == 0.0 or 1e-30 <= abs(c) <= 1e30)


def _ratio(a: float, b: float) -> float | None:
    """a / b where that is a safe coefficient, else None."""
    if b == 0.0:
        return None
    r = a / b
    return r if _ok(r) and (r != 0.0 or a == 0.0) else None


def _fresh(x: Lazy, inplace, outofplace, *args) -> TensorList:
    """Apply a foreach op to x's tensors, in place when x owns them."""
    if x.owned:
        inplace(x.tensors, *args)
        return x.tensors
    return outofplace(x.tensors, *args)


def materialize(x: Lazy) -> Lazy:
    """The same value with coef 1."""
    if x.coef == 1.0:
        return x
    return Lazy(_fresh(x, torch._foreach_mul_, torch._foreach_mul, x.coef), 1.0, True)


def _apply(x: Lazy, name: str, *args) -> Lazy:
    """``name(x, *args)`` elementwise on a materialised x, as a new owned value."""
    x = materialize(x)
    inplace, outofplace = getattr(torch, f"_foreach_{name}_"), getattr(torch, f"_foreach_{name}")
    return Lazy(_fresh(x, inplace, outofplace, *args), 1.0, True)


def _scaled(x: Lazy, name: str, coef: float) -> Lazy:
    """``name(x.tensors)`` with a new coefficient: for functions that commute with the scaling."""
    return Lazy(_fresh(x, getattr(torch, f"_foreach_{name}_"), getattr(torch, f"_foreach_{name}")),
                coef, True)


def _add(x: Value, y: Value, sign: float) -> Value:
    """x + sign*y."""
    if isinstance(x, float) and isinstance(y, float):
        return x + sign * y
    if isinstance(y, float):  # c*x + s = c*(x + s/c)
        shift = _ratio(sign * y, x.coef)
        if shift is None:
            x, shift = materialize(x), sign * y
        return Lazy(_fresh(x, torch._foreach_add_, torch._foreach_add, shift), x.coef, True)
    if isinstance(x, float):  # s + sign*c*y = sign*c*(y + s/(sign*c))
        return _add(Lazy(y.tensors, sign * y.coef, y.owned), x, 1.0)
    if _ratio(sign * y.coef, x.coef) is None or _ratio(x.coef, sign * y.coef) is None:
        x, y = materialize(x), materialize(y)
    if y.owned and not x.owned:  # c1*x + s*c2*y = s*c2*(y + (c1/(s*c2))*x): reuse y's memory
        torch._foreach_add_(y.tensors, x.tensors, alpha=x.coef / (sign * y.coef))
        return Lazy(y.tensors, sign * y.coef, True)
    alpha = sign * y.coef / x.coef
    if x.owned:
        torch._foreach_add_(x.tensors, y.tensors, alpha=alpha)
        return Lazy(x.tensors, x.coef, True)
    return Lazy(torch._foreach_add(x.tensors, y.tensors, alpha=alpha), x.coef, True)


def _mul(x: Value, y: Value) -> Value:
    if isinstance(x, float) and isinstance(y, float):
        return x * y
    if isinstance(y, float):
        x, y = y, x
    if isinstance(x, float):
        if not _ok(x * y.coef):
            return _apply(y, "mul", x)
        return Lazy(y.tensors, x * y.coef, y.owned)
    if not _ok(x.coef * y.coef):
        x, y = materialize(x), materialize(y)
    return _binary(x, y, "mul", x.coef * y.coef)


def _div(x: Value, y: Value) -> Value:
    if isinstance(x, float) and isinstance(y, float):
        return fold("div", [x, y], ())
    if isinstance(y, float):
        coef = _ratio(x.coef, y)
        return _apply(x, "div", y) if coef is None else Lazy(x.tensors, coef, x.owned)
    if isinstance(x, float):  # s / (c*y) = (s/c) * (1/y)
        coef = _ratio(x, y.coef)
        if coef is None:
            return _apply(_apply(y, "reciprocal"), "mul", x)
        return _scaled(y, "reciprocal", coef)
    coef = _ratio(x.coef, y.coef)
    if coef is None:
        x, y, coef = materialize(x), materialize(y), 1.0
    return _binary(x, y, "div", coef)


def _binary(x: Lazy, y: Lazy, name: str, coef: float) -> Lazy:
    """x.tensors (op) y.tensors, into whichever operand's memory is free, with the given coef."""
    if x.owned:
        getattr(torch, f"_foreach_{name}_")(x.tensors, y.tensors)
        return Lazy(x.tensors, coef, True)
    if y.owned and name == "mul":
        torch._foreach_mul_(y.tensors, x.tensors)
        return Lazy(y.tensors, coef, True)
    return Lazy(getattr(torch, f"_foreach_{name}")(x.tensors, y.tensors), coef, True)


def _pow(x: Value, y: Value) -> Value:
    if isinstance(y, float):
        if x.coef > 0 and _ok(x.coef ** y):  # (c*x)^s = c^s * x^s
            return Lazy(_fresh(x, torch._foreach_pow_, torch._foreach_pow, y), x.coef ** y, True)
        return _apply(x, "pow", y)
    y = materialize(y)
    if isinstance(x, float):
        return Lazy(torch._foreach_pow(x, y.tensors), 1.0, True)
    return _binary(materialize(x), y, "pow", 1.0)


def _extreme(x: Value, y: Value, name: str) -> Value:
    """Elementwise maximum (name 'max') or minimum ('min')."""
    if isinstance(x, float) and isinstance(y, float):
        return fold(name, [x, y], ())
    if isinstance(x, float):
        x, y = y, x
    x = materialize(x)
    if isinstance(y, float):
        return _apply(x, "clamp_min" if name == "max" else "clamp_max", y)
    return _binary(x, materialize(y), "maximum" if name == "max" else "minimum", 1.0)


def _clamp(x: Lazy, low: float, high: float) -> Lazy:
    if x.coef > 0 and _ratio(low, x.coef) is not None and _ratio(high, x.coef) is not None:
        # clamp(c*x, lo, hi) = c * clamp(x, lo/c, hi/c)
        low, high, coef = low / x.coef, high / x.coef, x.coef
        x = Lazy(x.tensors, 1.0, x.owned)
    else:
        coef = 1.0
    x = _apply(x, "clamp_min", low)
    return Lazy(_fresh(x, torch._foreach_clamp_max_, torch._foreach_clamp_max, high), coef, True)


def _drop(x: Lazy, p: float) -> Lazy:
    masks = [(torch.rand_like(t) >= p).to(t.dtype) for t in x.tensors]
    return _mul(Lazy(masks, 1.0 / (1.0 - p), True), x)


def _unary(fn: str, x: Lazy, params: tuple[float, ...], scalars: Mapping[str, float]) -> Value:
    c = x.coef
    if fn == "neg":
        return Lazy(x.tensors, -c, x.owned)
    if fn == "abs":
        return _scaled(x, "abs", abs(c))
    if fn == "sign":
        return _scaled(x, "sign", math.copysign(1.0, c)) if c != 0 else _apply(x, "sign")
    if fn == "sqrt" and c >= 0:
        return _scaled(x, "sqrt", math.sqrt(c))
    if fn in ("exp", "log", "sqrt"):
        return _apply(x, fn)
    if fn == "clip":
        return _clamp(x, -params[0], params[0])
    if fn == "bound":
        return _clamp(x, scalars["bound_low"], scalars["bound_high"])
    if fn == "drop":
        return _drop(x, params[0])
    raise AssertionError(f"no foreach form for {fn}")


def _call(node: Call, args: list[Value], scalars: Mapping[str, float], like: TensorList) -> Value:
    if node.fn == "drop" and isinstance(args[0], float):
        # Dropout of a constant draws per element: the constant takes the weights' shapes.
        return _drop(Lazy([torch.full_like(p, args[0]) for p in like], 1.0, True), node.params[0])
    if all(isinstance(a, float) for a in args):
        return fold(node.fn, args, node.params, (scalars["bound_low"], scalars["bound_high"]))
    if node.fn in ("add", "sub"):
        return _add(args[0], args[1], 1.0 if node.fn == "add" else -1.0)
    if node.fn == "mul":
        return _mul(*args)
    if node.fn == "div":
        return _div(*args)
    if node.fn == "pow":
        return _pow(*args)
    if node.fn in ("max", "min"):
        return _extreme(args[0], args[1], node.fn)
    if node.fn == "clamp":
        return _extreme(_extreme(args[0], args[1], "max"), args[2], "min")
    return _unary(node.fn, args[0], node.params, scalars)


def lazy_leaves(names: Iterable[str], tensors: Mapping[str, TensorList],
                scalars: Mapping[str, float]) -> dict[str, Value]:
    """The value of each name a rule reads: the tensor lists in ``tensors`` (g, w, state buffers,
    noise), the bias-corrected operands as scaled state, everything else a float of ``scalars``."""
    leaves: dict[str, Value] = {}
    for name in names:
        if name in BIAS_CORRECTED:
            base, scale = BIAS_CORRECTED[name]
            leaves[name] = Lazy(tensors[base], scalars[scale])
        elif name in tensors:
            leaves[name] = Lazy(tensors[name])
        else:
            leaves[name] = float(scalars[name])
    return leaves


def apply_rule(expr: Expr, params: TensorList, leaves: Mapping[str, Value], scalars: Mapping[str, float],
               step_size: float) -> None:
    """``params -= step_size * rule``, with ``leaves`` giving a Lazy or a float for each name read."""
    uses = use_counts(expr)
    memo: dict[Expr, Value] = {}

    def call(node: Call, args: list[Value]) -> Value:
        out = _call(node, args, scalars, params)
        if isinstance(out, Lazy) and uses[node] > 1:  # read again later: nobody may change it in place
            out = Lazy(out.tensors, out.coef, False)
        return out

    def walk(node: Expr) -> Value:
        return reduce_tree(node, lambda n: n.value if isinstance(n, Const) else leaves[n.name], call, memo)

    root = expr
    if isinstance(root, Call) and root.fn in ("mul", "div"):
        x, y = (walk(a) for a in root.args)
        coef = (x.coef * y.coef if root.fn == "mul" else _ratio(x.coef, y.coef)) \
            if isinstance(x, Lazy) and isinstance(y, Lazy) else None
        if coef is not None and _ok(coef):  # fused into the update, as Adam's addcdiv_
            fused = torch._foreach_addcmul_ if root.fn == "mul" else torch._foreach_addcdiv_
            fused(params, x.tensors, y.tensors, value=-step_size * coef)
            return
        d = _call(root, [x, y], scalars, params)
    else:
        d = walk(root)
    if isinstance(d, float):
        torch._foreach_add_(params, -step_size * d)
    else:
        torch._foreach_add_(params, d.tensors, alpha=-step_size * d.coef)
