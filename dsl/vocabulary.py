"""The names of the rule language: operands, hyper-constants and functions.

A rule computes the direction ``d`` of an update ``w <- w - lr * d``. Everything a rule may refer to is
declared once, with its meaning: operands and hyper-constants here, functions with all their forms in
`dsl.functions`, and how the state buffers and step quantities are computed in `dsl.quantities`; the
parser, the evaluators, the symbolic export, the optimizer and the code generator all read these
tables, so adding a name is a one-place change.

Three kinds of names appear as leaves of a rule:

* tensor operands, one value per weight element (``g``, ``m``, ``v``, ...);
* step quantities, one value per step (``t``, the decay schedules ``ld``, ``cd``, ``rd``);
* hyper-constants (``beta1``, ``eps``, ...), fixed per parameter group, set as optimizer arguments.

Functions are unary, binary (with infix spellings) or take literal parameters (``clip(x, 1e-4)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

from dsl.functions import FUNCTIONS


class Kind(Enum):
    TENSOR = "tensor"  # one value per element of the weight
    STEP = "step"  # one value per optimizer step, shared by all elements
    HYPER = "hyper"  # a constant of the parameter group


@dataclass(frozen=True)
class Operand:
    name: str
    kind: Kind
    doc: str
    nonnegative: bool = False  # known sign, used by the symbolic form and by the probes
    state: tuple[str, ...] = ()  # the optimizer state buffers this operand reads
    hypers: tuple[str, ...] = ()  # the hyper-constants its value depends on (m: beta1)


OPERANDS: dict[str, Operand] = {
    op.name: op
    for op in [
        Operand("g", Kind.TENSOR, "the gradient (plus weight_decay * w when weight_decay is set)"),
        Operand("w", Kind.TENSOR, "the weight itself (NOS's weight terms are 1e-4*w ... 1e-1*w)"),
        Operand("m", Kind.TENSOR, "running average of g: m <- beta1*m + (1-beta1)*g, no bias correction",
                state=("m",), hypers=("beta1",)),
        Operand("mb2", Kind.TENSOR, "running average of g with beta2: mb2 <- beta2*mb2 + (1-beta2)*g, no "
                "bias correction (Lion's momentum)", state=("mb2",), hypers=("beta2",)),
        Operand("v", Kind.TENSOR, "running average of g^2 with beta2, no bias correction",
                nonnegative=True, state=("v",), hypers=("beta2",)),
        Operand("m3", Kind.TENSOR, "running average of g^3 with beta3, no bias correction", state=("m3",),
                hypers=("beta3",)),
        Operand("vmax", Kind.TENSOR, "running maximum of v (AMSGrad, AMSBound)", nonnegative=True,
                state=("v", "vmax"), hypers=("beta2",)),
        Operand("mhat", Kind.TENSOR, "bias-corrected m: m / (1 - beta1^t)", state=("m",),
                hypers=("beta1",)),
        Operand("vhat", Kind.TENSOR, "bias-corrected v: v / (1 - beta2^t)", nonnegative=True, state=("v",),
                hypers=("beta2",)),
        Operand("m3hat", Kind.TENSOR, "bias-corrected m3: m3 / (1 - beta3^t)", state=("m3",),
                hypers=("beta3",)),
        Operand("noise", Kind.TENSOR, "fresh standard normal noise, one draw per element and step "
                "(NOS's noise operand N(0, 0.01) is 0.1*noise)"),
        Operand("t", Kind.STEP, "the step count, 1 at the first step", nonnegative=True),
        Operand("ld", Kind.STEP, "linear decay: max(1 - t/T, 0)", nonnegative=True, hypers=("T",)),
        Operand("cd", Kind.STEP, "cyclical cosine decay: 0.5*(1 + cos(2*pi*cd_periods*min(t, T)/T)), "
                "held after T as in TF's sign_decay", nonnegative=True,
                hypers=("T", "cd_periods")),
        Operand("rd", Kind.STEP, "restart decay: 0.5*(1 + cos(pi*((rd_periods*t) mod T)/T))",
                nonnegative=True, hypers=("T", "rd_periods")),
    ]
}


@dataclass(frozen=True)
class Hyper:
    name: str
    default: float
    doc: str
    # The values it may take: [low, high), or (low, high) when low is excluded. The bias corrections
    # divide by 1 - beta^t and AdaBound's upper bound by gamma * t, so 1 and 0 there are no edge cases
    # but a division by zero on the first step.
    low: float = 0.0
    high: float = math.inf
    low_included: bool = True

    def problem(self, value: object) -> str | None:
        """Why ``value`` cannot be this hyper-constant (None when it can)."""
        try:  # a float, int or 0-d tensor, as torch.optim accepts; not a bool or a string
            if isinstance(value, (bool, str, bytes)):
                raise TypeError
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return f"{self.name} must be a number, got {value!r}"
        if not math.isfinite(number):
            return f"{self.name} must be a finite number, got {value!r}"
        above = number >= self.low if self.low_included else number > self.low
        if above and number < self.high:
            return None
        interval = f"{'[' if self.low_included else '('}{self.low:g}, {self.high:g})"
        return f"{self.name} must be in {interval}, got {value!r}"


HYPERS: dict[str, Hyper] = {
    h.name: h
    for h in [
        Hyper("beta1", 0.9, "decay of the running average m of g (NOS, Adam)", high=1.0),
        Hyper("beta2", 0.999, "decay of the running averages v of g^2 (NOS, Adam) and mb2 of g (Lion)",
              high=1.0),
        Hyper("beta3", 0.999, "decay of the running average m3 of g^3 (NOS)", high=1.0),
        Hyper("eps", 1e-8, "the epsilon of Adam, RMSProp and AdaBound denominators"),
        Hyper("final_lr", 0.1, "AdaBound's final (SGD) learning rate eta*, at the initial learning rate"),
        Hyper("gamma", 1e-3, "AdaBound's convergence speed of the bounds", low_included=False),
        Hyper("T", 10000.0, "decay horizon in steps of ld, cd and rd (set it to the run's total steps)",
              low_included=False),
        Hyper("cd_periods", 0.5, "number of periods n of the cosine decay cd over T"),
        Hyper("rd_periods", 1.0, "number of restarts n of the restart decay rd over T"),
    ]
}

# Hyper-constants that the evaluators read but that are not names of the language: they shape
# how state is kept or how the update is applied, not the rule's formula.
OPTIMIZER_HYPERS: dict[str, Hyper] = {
    h.name: h
    for h in [
        Hyper("weight_decay", 0.0, "coupled L2: g <- g + weight_decay * w before the rule"),
    ]
}

# Not a name of the language either, but a record's or a generated class's defaults hold it beside the
# hyper-constants, checked the same way.
LEARNING_RATE = Hyper("lr", 1e-3, "the learning rate of w <- w - lr * d")


# Functions spelled as operators in text, by their operator; the rest are called by name.
BINARY_OPERATORS = {f.infix: f.name for f in FUNCTIONS.values() if f.arity == 2 and f.infix}


def known_names() -> list[str]:
    """Every name a rule's text may use: operands, hyper-constants and function names."""
    return [*OPERANDS, *HYPERS, *(f for f in FUNCTIONS if not FUNCTIONS[f].infix)]


def hyper_defaults() -> dict[str, float]:
    """The default value of every hyper-constant (language and optimizer ones)."""
    return {h.name: h.default for h in (*HYPERS.values(), *OPTIMIZER_HYPERS.values())}
