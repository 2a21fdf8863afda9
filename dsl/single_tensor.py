"""The single-tensor path: a rule stepped one parameter at a time with plain torch ops, as torch.optim's
``_single_tensor_adam`` beside ``_multi_tensor_adam``.

It is the plainest reading of a rule, the reference the other paths are checked against: for each
tensor, the gradient (negated with ``maximize``, plus coupled weight decay), the running averages, the
rule's value by `dsl.evaluate` (each function's tensor form; per-step scalars folded in float64, as
every path folds them), and ``w <- w - lr * d``. No scaling is kept aside and no product fused into the
update, so it is slower than the multi-tensor path (`dsl.foreach`) and it reads as the generated
optimizer (`dsl.codegen`) does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from dsl.evaluate import evaluate_lazy, leaf_values
from dsl.expr import Rule
from dsl.quantities import STATE


def update_state(g: torch.Tensor, state: Mapping[str, torch.Tensor], group: Mapping[str, Any]) -> None:
    """The running averages of one tensor, in place, by each buffer's tensor form (`dsl.quantities`)."""
    for name, buffer in STATE.items():
        if name in state:
            buffer.tensor(state[name], g, group, state)


def single_tensor_step(rule: Rule, params: list[torch.Tensor], grads: list[torch.Tensor],
                       state: Mapping[str, list[torch.Tensor]], group: Mapping[str, Any],
                       scalars: Mapping[str, float]) -> None:
    """One step of ``rule`` on each tensor in turn; ``scalars`` are the step's quantities (t, decays,
    bias corrections, bounds) and hyper-constants as floats. Weights and state change in place."""
    for i, (p, grad) in enumerate(zip(params, grads, strict=True)):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"] != 0:
            g = g.add(p, alpha=group["weight_decay"])
        buffers = {name: tensors[i] for name, tensors in state.items()}
        update_state(g, buffers, group)
        if group["lr"] == 0:  # the state advances and the weights stay, as with torch's optimizers
            continue
        tensors = {**buffers, "g": g, "w": p}
        if "noise" in rule.names:
            tensors["noise"] = torch.randn_like(p)
        # The step quantities stay beside the leaves: a function may read them (bound its range).
        d = evaluate_lazy(rule.expr, {**scalars, **leaf_values(tensors, scalars, group, rule.names)})
        if isinstance(d, torch.Tensor):
            p.add_(d, alpha=-group["lr"])
        else:  # a rule that reads no tensor operand
            p.add_(-group["lr"] * d)
