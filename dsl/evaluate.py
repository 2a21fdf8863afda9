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
from dsl.functions import FUNCTIONS
from dsl.quantities import BIAS_CORRECTED, STEP_QUANTITIES, MathOps, TorchOps
from dsl.vocabulary import HYPERS


def fold(fn: str, args: list[float], params: tuple[float, ...],
         steps: Mapping[str, float] | None = None) -> float:
    """A deterministic call whose arguments are all floats, computed once in float64 (inf and nan as
    torch gives them). ``steps`` holds the step quantities the function reads (bound's bound_low and
    bound_high) as floats.

    The function's Python-float form is ~100x cheaper than 0-d tensors, which matters because the
    per-step scalars of a rule (bias corrections, bounds) are folded at every step; where Python would
    raise or differ from IEEE/torch (domain errors, overflow, division by zero, NaN in min/max, complex
    powers), its tensor form decides."""
    spec = FUNCTIONS[fn]
    if spec.random:
        raise ValueError(f"{fn} draws random numbers: it has no single value to fold")
    if spec.number is not None and not any(math.isnan(a) for a in args) \
            and (steps is not None or not spec.reads):
        try:
            out = spec.number(args, params, steps)
            if isinstance(out, float) and math.isfinite(out):
                return out
        except (ArithmeticError, ValueError):
            pass
    tensors = [torch.tensor(a, dtype=torch.float64) for a in args]
    ctx = {} if steps is None else {k: torch.tensor(steps[k], dtype=torch.float64) for k in spec.reads}
    return float(spec.tensor(tensors, params, ctx))


def evaluate_lazy(expr: Expr, values: Mapping[str, Any],
                  rand: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  known: Mapping[Expr, Any] | None = None) -> Any:
    """Like `evaluate`, but a constant rule gives a Python float and constants are folded.

    Works on anything with tensor semantics, torch.fx proxies included; ``values`` may hold floats.
    ``known`` gives values of sub-expressions computed elsewhere (the fused path's hoisted scalars).
    """
    ctx: dict[str, Any] = {"rand": rand or torch.rand_like, **values}
    shaped = values.get("g", values.get("w"))  # a tensor shaped like the update, where one is given

    def call(node: Call, args: list[Any]) -> Any:
        spec = FUNCTIONS[node.fn]
        if all(isinstance(a, float) for a in args):
            if spec.random and shaped is not None and not isinstance(shaped, float):
                # A random function of a constant draws per element: the constant takes the update's shape.
                args = [torch.full_like(shaped, a) for a in args]
            elif spec.random:
                return args[0]  # no shape to draw over: its expectation (drop's)
            elif all(isinstance(values.get(k), float) for k in spec.reads):
                # A step quantity it reads (bound's range) may be a tensor: then it folds no further.
                return fold(node.fn, args, node.params, values)
        return spec.tensor(args, node.params, ctx)

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


def step_quantities(t: Any, hyper: Mapping[str, Any], eta_ratio: Any) -> dict[str, Any]:
    """Per-step scalars (`dsl.quantities.STEP_QUANTITIES`), for a Python float t (the optimizer's paths)
    or a tensor t (the probes, a column of step counts).

    ``eta_ratio`` is AdaBound's final step size in units of the current lr (final_lr / initial_lr).
    Bias corrections are given as their reciprocals, the form the evaluators multiply by.
    """
    ops = TorchOps if isinstance(t, torch.Tensor) else MathOps
    q = {"t": t, "eta": eta_ratio}
    for quantity in STEP_QUANTITIES.values():
        if quantity.value is not None:
            q[quantity.name] = quantity.value(t, hyper, q, ops)
    return q


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
