"""Evaluating a rule elementwise on tensors: the language's one numeric meaning.

`evaluate` walks the tree once per distinct sub-expression (a repeated sub-tree is computed once and
reused, so a random operand used twice is one draw). Every value is a tensor; step quantities and
hyper-constants are 0-d tensors, so the same code is traced by torch.compile for the fused optimizer
path and run eagerly for probes. `step_quantities` gives the per-step scalars (t, decays, bias
corrections, AdaBound's bounds) for either Python floats or 0-d tensors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from dsl.expr import Call, Const, Expr, reduce_tree
from dsl.vocabulary import FUNCTIONS, HYPERS


def _drop(x: Any, p: float, rand: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    return x * (rand(x) >= p).to(x.dtype) / (1.0 - p)


def _max(x: Any, y: Any) -> Any:
    if isinstance(x, float) and isinstance(y, float):  # two constants of clamp(1, 2, g)
        return fold("max", [x, y], ())
    if isinstance(y, float):
        return torch.clamp_min(x, y)
    return torch.clamp_min(y, x) if isinstance(x, float) else torch.maximum(x, y)


def _min(x: Any, y: Any) -> Any:
    if isinstance(x, float) and isinstance(y, float):  # two constants of clamp(1, 2, g)
        return fold("min", [x, y], ())
    if isinstance(y, float):
        return torch.clamp_max(x, y)
    return torch.clamp_max(y, x) if isinstance(x, float) else torch.minimum(x, y)


# name -> f(args, params, ctx); ctx holds the random source and AdaBound's bounds. Arguments are tensors
# or Python floats (constants), so arithmetic uses Python's operators, which accept both, and the same
# code runs on torch.fx proxies when the fused path traces it.
_TORCH_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "neg": lambda a, p, c: -a[0],
    "exp": lambda a, p, c: torch.exp(a[0]),
    "log": lambda a, p, c: torch.log(a[0]),
    "abs": lambda a, p, c: torch.abs(a[0]),
    "sqrt": lambda a, p, c: torch.sqrt(a[0]),
    "sign": lambda a, p, c: torch.sign(a[0]),
    "clip": lambda a, p, c: torch.clamp(a[0], -p[0], p[0]),
    "drop": lambda a, p, c: _drop(a[0], p[0], c["rand"]),
    "bound": lambda a, p, c: _min(_max(a[0], c["bound_low"]), c["bound_high"]),
    "add": lambda a, p, c: a[0] + a[1],
    "sub": lambda a, p, c: a[0] - a[1],
    "mul": lambda a, p, c: a[0] * a[1],
    "div": lambda a, p, c: a[0] / a[1],
    "pow": lambda a, p, c: a[0] ** a[1],
    "max": lambda a, p, c: _max(a[0], a[1]),
    "min": lambda a, p, c: _min(a[0], a[1]),
    "clamp": lambda a, p, c: _min(_max(a[0], a[1]), a[2]),
}


# Python's own float arithmetic for folding: ~100x cheaper than 0-d tensors, which matters because the
# per-step scalars of a rule (bias corrections, bounds) are folded at every step. Where Python would raise
# or differ from IEEE/torch (domain errors, overflow, division by zero, NaN in min/max, complex powers),
# `fold` falls back to torch.
_FLOAT_FUNCTIONS: dict[str, Callable[..., float]] = {
    "neg": lambda a, p, b: -a[0],
    "exp": lambda a, p, b: math.exp(a[0]),
    "log": lambda a, p, b: math.log(a[0]),
    "abs": lambda a, p, b: abs(a[0]),
    "sqrt": lambda a, p, b: math.sqrt(a[0]),
    "sign": lambda a, p, b: float((a[0] > 0) - (a[0] < 0)),
    "clip": lambda a, p, b: min(max(a[0], -p[0]), p[0]),
    "bound": lambda a, p, b: min(max(a[0], b[0]), b[1]),
    "add": lambda a, p, b: a[0] + a[1],
    "sub": lambda a, p, b: a[0] - a[1],
    "mul": lambda a, p, b: a[0] * a[1],
    "div": lambda a, p, b: a[0] / a[1],
    "pow": lambda a, p, b: a[0] ** a[1],
    "max": lambda a, p, b: max(a[0], a[1]),
    "min": lambda a, p, b: min(a[0], a[1]),
    "clamp": lambda a, p, b: min(max(a[0], a[1]), a[2]),
}


def fold(fn: str, args: list[float], params: tuple[float, ...],
         bounds: tuple[float, float] | None = None) -> float:
    """A deterministic call whose arguments are all floats, computed once in float64 (inf and nan as
    torch gives them). ``bounds`` are bound_low and bound_high, for ``bound``."""
    if FUNCTIONS[fn].random:
        raise ValueError(f"{fn} draws random numbers: it has no single value to fold")
    if not any(math.isnan(a) for a in args) and (fn != "bound" or bounds is not None):
        try:
            out = _FLOAT_FUNCTIONS[fn](args, params, bounds)
            if isinstance(out, float) and math.isfinite(out):
                return out
        except (ArithmeticError, ValueError):
            pass
    tensors = [torch.tensor(a, dtype=torch.float64) for a in args]
    ctx = {} if bounds is None else {"bound_low": torch.tensor(bounds[0], dtype=torch.float64),
                                     "bound_high": torch.tensor(bounds[1], dtype=torch.float64)}
    return float(_TORCH_FUNCTIONS[fn](tensors, params, ctx))


def evaluate_lazy(expr: Expr, values: Mapping[str, Any],
                  rand: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  known: Mapping[Expr, Any] | None = None) -> Any:
    """Like `evaluate`, but a constant rule gives a Python float and constants are folded.

    Works on anything with tensor semantics, torch.fx proxies included; ``values`` may hold floats.
    ``known`` gives values of sub-expressions computed elsewhere (the fused path's hoisted scalars).
    """
    ctx: dict[str, Any] = {"rand": rand or torch.rand_like, **values}
    low, high = values.get("bound_low"), values.get("bound_high")
    # bound's clip range is a step quantity: bound(constant) folds only where that is a float.
    bounds = (low, high) if isinstance(low, float) and isinstance(high, float) else None
    shaped = values.get("g", values.get("w"))  # a tensor shaped like the update, where one is given

    def call(node: Call, args: list[Any]) -> Any:
        if all(isinstance(a, float) for a in args):
            if node.fn == "drop" and shaped is not None and not isinstance(shaped, float):
                # Dropout of a constant draws per element: the constant takes the update's shape.
                args = [torch.full_like(shaped, args[0])]
            elif FUNCTIONS[node.fn].random:
                return args[0]  # no shape to draw over: its expectation
            elif node.fn != "bound" or bounds is not None:
                return fold(node.fn, args, node.params, bounds)
        return _TORCH_FUNCTIONS[node.fn](args, node.params, ctx)

    return reduce_tree(expr, lambda n: n.value if isinstance(n, Const) else values[n.name], call,
                       dict(known or {}))


def evaluate(expr: Expr, values: Mapping[str, torch.Tensor],
             rand: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """The value of ``expr`` given a tensor (or 0-d tensor) for every name it reads.

    ``values`` also holds ``bound_low`` and ``bound_high`` when the rule uses ``bound``; ``rand(x)``
    gives uniform [0, 1) numbers shaped like x for ``drop`` (default: torch.rand_like). The result has
    the broadcast shape of the tensor operands the rule reads (a constant rule: a 0-d tensor).
    """
    out = evaluate_lazy(expr, values, rand)
    if isinstance(out, torch.Tensor):
        return out
    ref = next((v for v in values.values() if isinstance(v, torch.Tensor)), None)
    return torch.tensor(out, dtype=ref.dtype if ref is not None else torch.float64,
                        device=ref.device if ref is not None else None)


class _MathOps:
    cos = staticmethod(math.cos)
    clamp_min = staticmethod(max)

    @staticmethod
    def min(x: float, y: float) -> float:
        return min(x, y)

    @staticmethod
    def fmod(x: float, y: float) -> float:
        return math.fmod(x, y)


class _TorchOps:
    cos = staticmethod(torch.cos)
    clamp_min = staticmethod(torch.clamp_min)
    min = staticmethod(torch.clamp_max)
    fmod = staticmethod(torch.fmod)


def step_quantities(t: Any, hyper: Mapping[str, Any], eta_ratio: Any) -> dict[str, Any]:
    """Per-step scalars, for a Python float t (foreach path) or a 0-d tensor t (compiled path).

    ``eta_ratio`` is AdaBound's final step size in units of the current lr (final_lr / initial_lr).
    Bias corrections are given as their reciprocals, the form the evaluators multiply by.
    """
    ops = _TorchOps if isinstance(t, torch.Tensor) else _MathOps
    T = hyper["T"]
    frac = ops.min(t / T, 1.0)  # the decays end at T, as TF's sign_decay schedules do
    return {
        "t": t,
        "ld": 1.0 - frac,
        "cd": 0.5 * (1.0 + ops.cos(2.0 * math.pi * hyper["cd_periods"] * frac)),
        "rd": 0.5 * (1.0 + ops.cos(math.pi * ops.fmod(hyper["rd_periods"] * t, T) / T)),
        "inv_bc1": 1.0 / (1.0 - hyper["beta1"] ** t),
        "inv_bc2": 1.0 / (1.0 - hyper["beta2"] ** t),
        "inv_bc3": 1.0 / (1.0 - hyper["beta3"] ** t),
        "bound_low": eta_ratio * (1.0 - 1.0 / (hyper["gamma"] * t + 1.0)),
        "bound_high": eta_ratio * (1.0 + 1.0 / (hyper["gamma"] * t)),
    }


# The bias-corrected operands: each is a state buffer times the reciprocal of its bias correction.
BIAS_CORRECTED: dict[str, tuple[str, str]] = {
    "mhat": ("m", "inv_bc1"), "vhat": ("v", "inv_bc2"), "m3hat": ("m3", "inv_bc3"),
}


def leaf_values(tensors: Mapping[str, torch.Tensor], steps: Mapping[str, Any],
                hyper: Mapping[str, Any], names: frozenset[str] | set[str]) -> dict[str, Any]:
    """The value of each name a rule reads, from state tensors, step quantities and hyper-constants.

    ``tensors`` holds g, w, m, v, m3, vmax, noise as needed; the bias-corrected operands are derived.
    """
    out: dict[str, Any] = {}
    for name in names:
        if name in BIAS_CORRECTED:
            base, scale = BIAS_CORRECTED[name]
            out[name] = tensors[base] * steps[scale]
        elif name in tensors:
            out[name] = tensors[name]
        elif name in steps:
            out[name] = steps[name]
        elif name in HYPERS:
            out[name] = hyper[name]
        else:
            raise KeyError(f"no value for {name!r}")
    return out
