"""The optimizer's own quantities, each defined once in every form it takes, side by side: the state
buffers a rule may read (running averages and their maximum) and the per-step scalars (decays, bias
corrections, AdaBound's bounds).

As `dsl.functions` is for functions, a row here is a quantity's whole definition, and every execution
path reads it:

* `STATE`, one row per buffer, in the order a step updates them (vmax reads this step's v). Its forms
  take the buffer, the gradient g, ``group`` (the hyper-constants: floats, or 0-d tensors when traced)
  and ``new`` (the buffers this step has already updated):

  - ``tensor``: one tensor's buffer, in place (the single-tensor path, `dsl.single_tensor`);
  - ``foreach``: a list of them, in place, with `torch._foreach_*` kernels (the multi-tensor path,
    `dsl.optimizer`);
  - ``traced``: the new value, out of place (the fused path's traced graph, `dsl.fused`);
  - ``source``: the generated optimizer's statement (`dsl.codegen`), the tensor form as text.

* `STEP_QUANTITIES`, one row per scalar, in the order they are computed from the step count t:
  ``value(t, group, q, ops)`` on Python floats or 0-d tensors (`dsl.evaluate.step_quantities`), with
  ``q`` the quantities computed before it and ``ops`` the math of floats or of tensors; ``source``, the
  same as the right-hand side of a line of the generated ``_per_step(group, t)``. A ``local`` row is an
  intermediate (frac, eta) rather than a name a rule reads.

The bias corrections come from the buffers: a buffer with a decay and a bias-corrected operand (m with
beta1, mhat) gives the step quantity ``inv_bc1 = 1 / (1 - beta1^t)`` and `BIAS_CORRECTED`'s entry
``mhat = m * inv_bc1``. tests/test_quantities.py checks that each row's forms agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING, Any

from dsl.deferred import deferred

if TYPE_CHECKING:
    import torch

# Imported when a form first runs (`dsl.deferred`), so that the rule's tree and text (`dsl.expr`, which
# reads `STATE`) load without torch: `nos rules show adam` needs neither.
torch = deferred("torch", globals())


@dataclass(frozen=True)
class StateBuffer:
    name: str
    doc: str
    _: KW_ONLY
    tensor: Callable[[torch.Tensor, torch.Tensor, Mapping[str, Any], Mapping[str, Any]], Any]
    foreach: Callable[[list[torch.Tensor], list[torch.Tensor], Mapping[str, Any], Mapping[str, Any]], Any]
    traced: Callable[[Any, Any, Mapping[str, Any], Mapping[str, Any]], Any]
    source: str
    decay: str | None = None  # the hyper-constant of its running average
    corrected: str | None = None  # the bias-corrected operand (mhat for m)
    correction: str | None = None  # the step quantity that corrects it (inv_bc1 for m)


def _v_foreach(v: list[torch.Tensor], g: list[torch.Tensor], group: Mapping[str, Any],
               new: Mapping[str, Any]) -> None:
    torch._foreach_mul_(v, group["beta2"])
    torch._foreach_addcmul_(v, g, g, 1.0 - group["beta2"])


def _m3_foreach(m3: list[torch.Tensor], g: list[torch.Tensor], group: Mapping[str, Any],
                new: Mapping[str, Any]) -> None:
    cubes = torch._foreach_mul(g, g)
    torch._foreach_mul_(cubes, g)
    torch._foreach_mul_(m3, group["beta3"])
    torch._foreach_add_(m3, cubes, alpha=1.0 - group["beta3"])


# As torch's Adam computes them (lerp for m, mul and addcmul for v). Traced, m is not a lerp: the
# branch of lerp's kernel costs vector time in the fused loop.
STATE: dict[str, StateBuffer] = {
    b.name: b
    for b in [
        StateBuffer("m", "running average of g", decay="beta1", corrected="mhat", correction="inv_bc1",
                    tensor=lambda m, g, group, new: m.lerp_(g, 1.0 - group["beta1"]),
                    foreach=lambda m, g, group, new: torch._foreach_lerp_(m, g, 1.0 - group["beta1"]),
                    traced=lambda m, g, group, new: m * group["beta1"] + (1.0 - group["beta1"]) * g,
                    source='m.lerp_(g, 1.0 - group["beta1"])'),
        # Lion's momentum (Chen et al. 2023): its running average decays with its second beta, while the
        # step reads an interpolation with the first; see dsl.known's lion.
        StateBuffer("mb2", "running average of g with beta2", decay="beta2",
                    tensor=lambda mb2, g, group, new: mb2.lerp_(g, 1.0 - group["beta2"]),
                    foreach=lambda mb2, g, group, new: torch._foreach_lerp_(mb2, g, 1.0 - group["beta2"]),
                    traced=lambda mb2, g, group, new: mb2 * group["beta2"] + (1.0 - group["beta2"]) * g,
                    source='mb2.lerp_(g, 1.0 - group["beta2"])'),
        StateBuffer("v", "running average of g^2", decay="beta2", corrected="vhat", correction="inv_bc2",
                    tensor=lambda v, g, group, new: v.mul_(group["beta2"]).addcmul_(
                        g, g, value=1.0 - group["beta2"]),
                    foreach=_v_foreach,
                    traced=lambda v, g, group, new: v * group["beta2"] + (1.0 - group["beta2"]) * g * g,
                    source='v.mul_(group["beta2"]).addcmul_(g, g, value=1.0 - group["beta2"])'),
        StateBuffer("m3", "running average of g^3", decay="beta3", corrected="m3hat", correction="inv_bc3",
                    tensor=lambda m3, g, group, new: m3.mul_(group["beta3"]).add_(
                        g * g * g, alpha=1.0 - group["beta3"]),
                    foreach=_m3_foreach,
                    traced=lambda m3, g, group, new: m3 * group["beta3"] + (1.0 - group["beta3"]) * g * g * g,
                    source='m3.mul_(group["beta3"]).add_(g * g * g, alpha=1.0 - group["beta3"])'),
        StateBuffer("vmax", "running maximum of v (AMSGrad)",
                    tensor=lambda vmax, g, group, new: torch.maximum(vmax, new["v"], out=vmax),
                    foreach=lambda vmax, g, group, new: torch._foreach_maximum_(vmax, new["v"]),
                    traced=lambda vmax, g, group, new: torch.maximum(vmax, new["v"]),
                    source="torch.maximum(vmax, v, out=vmax)"),
    ]
}

# The bias-corrected operands: each is a state buffer times the reciprocal of its bias correction.
BIAS_CORRECTED: dict[str, tuple[str, str]] = {
    b.corrected: (b.name, b.correction) for b in STATE.values() if b.corrected and b.correction
}


class MathOps:
    """The math of step quantities on Python floats."""

    cos = staticmethod(math.cos)
    min = staticmethod(min)
    fmod = staticmethod(math.fmod)


class TorchOps:
    """The same on tensors (0-d, or a column of probe values)."""

    @staticmethod
    def cos(x: torch.Tensor) -> torch.Tensor:
        return torch.cos(x)

    @staticmethod
    def min(x: torch.Tensor, bound: float) -> torch.Tensor:
        return torch.clamp_max(x, bound)

    @staticmethod
    def fmod(x: torch.Tensor, divisor: float) -> torch.Tensor:
        return torch.fmod(x, divisor)


@dataclass(frozen=True)
class StepQuantity:
    name: str
    doc: str
    _: KW_ONLY
    # None: given by the caller (eta: eta_ratio(group) for an optimizer, final_lr / lr for the probes).
    value: Callable[[Any, Mapping[str, Any], Mapping[str, Any], type], Any] | None
    source: str
    reads: tuple[str, ...] = ()  # the quantities before it that it reads
    local: bool = False  # an intermediate: a local of the generated `_per_step`, not a name of rules
    comment: str = ""  # the generated line's comment
    helper: str = ""  # a definition the generated module then needs


def eta_ratio(group: Mapping[str, Any]) -> float:
    """AdaBound's final step size in units of the current lr: final_lr / initial_lr.

    With an initial lr of 0 (a warm-up from zero) there is no ratio to keep: eta* is final_lr itself.
    """
    if group["initial_lr"] > 0:
        return group["final_lr"] / group["initial_lr"]
    return group["final_lr"] / group["lr"] if group["lr"] > 0 else 0.0


_ETA_HELPER = '''def _eta_ratio(group: dict) -> float:
    """AdaBound's final step size in units of the current lr: final_lr / initial_lr (final_lr itself
    when the run started at lr 0, so that a warm-up from zero keeps bounds)."""
    if group["initial_lr"] > 0:
        return group["final_lr"] / group["initial_lr"]
    return group["final_lr"] / group["lr"] if group["lr"] > 0 else 0.0'''


def _bias_correction(buffer: StateBuffer) -> StepQuantity:
    beta = buffer.decay
    return StepQuantity(buffer.correction, f"the reciprocal of {buffer.name}'s bias correction 1 - {beta}^t",
                        value=lambda t, group, q, ops: 1.0 / (1.0 - group[beta] ** t),
                        source=f'1.0 / (1.0 - group["{beta}"] ** t)')


STEP_QUANTITIES: dict[str, StepQuantity] = {
    q.name: q
    for q in [
        StepQuantity("frac", "the fraction of the decay horizon T gone, held at 1 after T", local=True,
                     value=lambda t, group, q, ops: ops.min(t / group["T"], 1.0),
                     source='min(t / group["T"], 1.0)', comment="the decays end at T, as TF's sign_decay"),
        StepQuantity("ld", "linear decay", reads=("frac",),
                     value=lambda t, group, q, ops: 1.0 - q["frac"], source="1.0 - frac"),
        StepQuantity("cd", "cyclical cosine decay", reads=("frac",),
                     value=lambda t, group, q, ops: 0.5 * (1.0 + ops.cos(2.0 * math.pi * group["cd_periods"]
                                                                        * q["frac"])),
                     source='0.5 * (1.0 + math.cos(2.0 * math.pi * group["cd_periods"] * frac))'),
        StepQuantity("rd", "restart decay",
                     value=lambda t, group, q, ops: 0.5 * (1.0 + ops.cos(
                         math.pi * ops.fmod(group["rd_periods"] * t, group["T"]) / group["T"])),
                     source='0.5 * (1.0 + math.cos(math.pi * math.fmod(group["rd_periods"] * t, group["T"]) '
                            '/ group["T"]))'),
        *(_bias_correction(b) for b in STATE.values() if b.correction),
        StepQuantity("eta", "AdaBound's final step size in units of the current lr", local=True,
                     value=None, source="_eta_ratio(group)", helper=_ETA_HELPER),
        StepQuantity("bound_low", "AdaBound's lower bound", reads=("eta",),
                     value=lambda t, group, q, ops: q["eta"] * (1.0 - 1.0 / (group["gamma"] * t + 1.0)),
                     source='eta * (1.0 - 1.0 / (group["gamma"] * t + 1.0))'),
        StepQuantity("bound_high", "AdaBound's upper bound", reads=("eta",),
                     value=lambda t, group, q, ops: q["eta"] * (1.0 + 1.0 / (group["gamma"] * t)),
                     source='eta * (1.0 + 1.0 / (group["gamma"] * t))'),
    ]
}


def needed_quantities(names: set[str] | frozenset[str]) -> list[StepQuantity]:
    """The step quantities that computing ``names`` takes (those named, the bias corrections of the
    corrected operands named, and what they read), in the order they are computed."""
    wanted = {BIAS_CORRECTED[n][1] if n in BIAS_CORRECTED else n for n in names}
    for q in reversed(STEP_QUANTITIES.values()):  # a row reads only rows before it
        if q.name in wanted:
            wanted.update(q.reads)
    return [q for q in STEP_QUANTITIES.values() if q.name in wanted]
