"""The values of the multi-tensor path: ``coef * tensors`` with a Python-float ``coef`` kept aside.

Memory traffic is the cost of an optimizer step, so these operations avoid passes over memory:

* a value is ``coef * tensors`` (`Lazy`), so scalings, negations and bias corrections cost nothing until
  a value must be materialised (``sqrt(c*x) = sqrt(c)*sqrt(x)``, ``c*x + s = c*(x + s/c)``,
  ``c1*x + c2*y = c1*(x + (c2/c1)*y)``);
* a temporary that nothing else reads is changed in place instead of copied.

A value (`Value`) is a `Lazy` or a Python float (what does not depend on a tensor operand). Each function
of the language says in `dsl.functions` which of these operations is its multi-tensor form;
`dsl.foreach` walks a rule with them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dsl.deferred import deferred

if TYPE_CHECKING:
    import torch

# Imported on first use (`dsl.deferred`): `dsl.functions` names these operations in its table, which
# loads without torch.
torch = deferred("torch", globals())

TensorList = list["torch.Tensor"]


@dataclass
class Lazy:
    """The value ``coef * tensors``; ``owned``: the tensors are temporaries this value alone holds."""

    tensors: TensorList
    coef: float = 1.0
    owned: bool = False


Value = Lazy | float


def ok(c: float) -> bool:
    """A coefficient safe to carry aside: finite and far from overflow and underflow. Outside that
    range the value is materialised, so the lazy algebra never creates an inf or a 0 the plain
    evaluation would not."""
    return math.isfinite(c) and (c == 0.0 or 1e-30 <= abs(c) <= 1e30)


def ratio(a: float, b: float) -> float | None:
    """a / b where that is a safe coefficient, else None."""
    if b == 0.0:
        return None
    r = a / b
    return r if ok(r) and (r != 0.0 or a == 0.0) else None


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


def apply(x: Lazy, name: str, *args) -> Lazy:
    """``name(x, *args)`` elementwise on a materialised x, as a new owned value."""
    x = materialize(x)
    inplace, outofplace = getattr(torch, f"_foreach_{name}_"), getattr(torch, f"_foreach_{name}")
    return Lazy(_fresh(x, inplace, outofplace, *args), 1.0, True)


def scaled(x: Lazy, name: str, coef: float) -> Lazy:
    """``name(x.tensors)`` with a new coefficient: for functions that commute with the scaling."""
    return Lazy(_fresh(x, getattr(torch, f"_foreach_{name}_"), getattr(torch, f"_foreach_{name}")),
                coef, True)


def add(x: Value, y: Value, sign: float) -> Value:
    """x + sign*y."""
    if isinstance(x, float) and isinstance(y, float):
        return x + sign * y
    if isinstance(y, float):  # c*x + s = c*(x + s/c)
        shift = ratio(sign * y, x.coef)
        if shift is None:
            x, shift = materialize(x), sign * y
        return Lazy(_fresh(x, torch._foreach_add_, torch._foreach_add, shift), x.coef, True)
    if isinstance(x, float):  # s + sign*c*y = sign*c*(y + s/(sign*c))
        return add(Lazy(y.tensors, sign * y.coef, y.owned), x, 1.0)
    if ratio(sign * y.coef, x.coef) is None or ratio(x.coef, sign * y.coef) is None:
        x, y = materialize(x), materialize(y)
    if y.owned and not x.owned:  # c1*x + s*c2*y = s*c2*(y + (c1/(s*c2))*x): reuse y's memory
        torch._foreach_add_(y.tensors, x.tensors, alpha=x.coef / (sign * y.coef))
        return Lazy(y.tensors, sign * y.coef, True)
    alpha = sign * y.coef / x.coef
    if x.owned:
        torch._foreach_add_(x.tensors, y.tensors, alpha=alpha)
        return Lazy(x.tensors, x.coef, True)
    return Lazy(torch._foreach_add(x.tensors, y.tensors, alpha=alpha), x.coef, True)


def mul(x: Value, y: Value) -> Value:
    if isinstance(x, float) and isinstance(y, float):
        return x * y
    if isinstance(y, float):
        x, y = y, x
    if isinstance(x, float):
        if not ok(x * y.coef):
            return apply(y, "mul", x)
        return Lazy(y.tensors, x * y.coef, y.owned)
    if not ok(x.coef * y.coef):
        x, y = materialize(x), materialize(y)
    return _binary(x, y, "mul", x.coef * y.coef)


def div(x: Value, y: Value) -> Value:
    if isinstance(x, float) and isinstance(y, float):  # IEEE division, as torch gives it
        return float(torch.tensor(x, dtype=torch.float64) / y)
    if isinstance(y, float):
        coef = ratio(x.coef, y)
        return apply(x, "div", y) if coef is None else Lazy(x.tensors, coef, x.owned)
    if isinstance(x, float):  # s / (c*y) = (s/c) * (1/y)
        coef = ratio(x, y.coef)
        if coef is None:
            return apply(apply(y, "reciprocal"), "mul", x)
        return scaled(y, "reciprocal", coef)
    coef = ratio(x.coef, y.coef)
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


def power(x: Value, y: Value) -> Value:
    if isinstance(y, float):
        if x.coef > 0 and ok(x.coef ** y):  # (c*x)^s = c^s * x^s
            return Lazy(_fresh(x, torch._foreach_pow_, torch._foreach_pow, y), x.coef ** y, True)
        return apply(x, "pow", y)
    y = materialize(y)
    if isinstance(x, float):
        return Lazy(torch._foreach_pow(x, y.tensors), 1.0, True)
    return _binary(materialize(x), y, "pow", 1.0)


def extreme(x: Value, y: Value, name: str) -> Value:
    """Elementwise maximum (name 'max') or minimum ('min')."""
    if isinstance(x, float) and isinstance(y, float):
        return number_extreme(x, y, name)
    if isinstance(x, float):
        x, y = y, x
    x = materialize(x)
    if isinstance(y, float):
        return apply(x, "clamp_min" if name == "max" else "clamp_max", y)
    return _binary(x, materialize(y), "maximum" if name == "max" else "minimum", 1.0)


def clamp(x: Lazy, low: float, high: float) -> Lazy:
    if x.coef > 0 and ratio(low, x.coef) is not None and ratio(high, x.coef) is not None:
        # clamp(c*x, lo, hi) = c * clamp(x, lo/c, hi/c)
        low, high, coef = low / x.coef, high / x.coef, x.coef
        x = Lazy(x.tensors, 1.0, x.owned)
    else:
        coef = 1.0
    x = apply(x, "clamp_min", low)
    return Lazy(_fresh(x, torch._foreach_clamp_max_, torch._foreach_clamp_max, high), coef, True)


def drop(x: Lazy, p: float) -> Lazy:
    masks = [(torch.rand_like(t) >= p).to(t.dtype) for t in x.tensors]
    return mul(Lazy(masks, 1.0 / (1.0 - p), True), x)


def number_extreme(x: float, y: float, name: str) -> float:
    """max (name 'max') or min of two numbers as torch gives it: NaN propagates."""
    if math.isnan(x) or math.isnan(y):
        return math.nan
    return max(x, y) if name == "max" else min(x, y)


def negate(x: Lazy) -> Lazy:
    return Lazy(x.tensors, -x.coef, x.owned)


def absolute(x: Lazy) -> Lazy:
    return scaled(x, "abs", abs(x.coef))


def signum(x: Lazy) -> Lazy:
    return scaled(x, "sign", math.copysign(1.0, x.coef)) if x.coef != 0 else apply(x, "sign")


def root(x: Lazy) -> Lazy:
    return scaled(x, "sqrt", math.sqrt(x.coef)) if x.coef >= 0 else apply(x, "sqrt")
