"""The multi-tensor path: a rule evaluated over lists of tensors with `torch._foreach_*` kernels.

Memory traffic is the cost of an optimizer step, so the evaluator avoids passes over memory:

* each function runs its multi-tensor form (`dsl.functions`) on values ``coef * tensors`` with a
  Python-float ``coef`` kept aside (`dsl.lazy`), so scalings, negations and bias corrections cost
  nothing until a value must be materialised, and a temporary that nothing else reads is changed in
  place instead of copied;
* the root product or quotient is fused into the weight update (``addcmul_`` / ``addcdiv_``), as
  torch's Adam does.

For Adam this is the same number of passes as torch.optim.Adam(foreach=True). Everything that does not
depend on a tensor operand (step quantities, hyper-constants, constants) is a Python float.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from dsl.evaluate import BIAS_CORRECTED, fold
from dsl.expr import Call, Const, Expr, reduce_tree, use_counts
from dsl.functions import FUNCTIONS
from dsl.lazy import Lazy, TensorList, Value, ok, ratio


def _call(node: Call, args: list[Value], scalars: Mapping[str, float], like: TensorList) -> Value:
    spec = FUNCTIONS[node.fn]
    if spec.random and all(isinstance(a, float) for a in args):
        # A random function of a constant draws per element: the constant takes the weights' shapes.
        args = [Lazy([torch.full_like(p, a) for p in like], 1.0, True) for a in args]
    elif all(isinstance(a, float) for a in args):
        return fold(node.fn, args, node.params, scalars)
    return spec.foreach(args, node.params, scalars)


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
        coef = (x.coef * y.coef if root.fn == "mul" else ratio(x.coef, y.coef)) \
            if isinstance(x, Lazy) and isinstance(y, Lazy) else None
        if coef is not None and ok(coef):  # fused into the update, as Adam's addcdiv_
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
