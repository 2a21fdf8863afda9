"""The names of the rule language: operands, hyper-constants and functions.

A rule computes the direction ``d`` of an update ``w <- w - lr * d``. Everything a rule may refer to is
declared here once, with its meaning; the parser, the evaluators, the symbolic export and the
optimizer all read these tables, so adding a name is a one-place change.

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


OPERANDS: dict[str, Operand] = {
    op.name: op
    for op in [
        Operand("g", Kind.TENSOR, "the gradient (plus weight_decay * w when weight_decay is set)"),
        Operand("w", Kind.TENSOR, "the weight itself (NOS's weight terms are 1e-4*w ... 1e-1*w)"),
        Operand("m", Kind.TENSOR, "running average of g: m <- beta1*m + (1-beta1)*g, no bias correction",
                state=("m",)),
        Operand("v", Kind.TENSOR, "running average of g^2 with beta2, no bias correction",
                nonnegative=True, state=("v",)),
        Operand("m3", Kind.TENSOR, "running average of g^3 with beta3, no bias correction", state=("m3",)),
        Operand("vmax", Kind.TENSOR, "running maximum of v (AMSGrad, AMSBound)", nonnegative=True,
                state=("v", "vmax")),
        Operand("mhat", Kind.TENSOR, "bias-corrected m: m / (1 - beta1^t)", state=("m",)),
        Operand("vhat", Kind.TENSOR, "bias-corrected v: v / (1 - beta2^t)", nonnegative=True, state=("v",)),
        Operand("m3hat", Kind.TENSOR, "bias-corrected m3: m3 / (1 - beta3^t)", state=("m3",)),
        Operand("noise", Kind.TENSOR, "fresh standard normal noise, one draw per element and step "
                "(NOS's noise operand N(0, 0.01) is 0.1*noise)"),
        Operand("t", Kind.STEP, "the step count, 1 at the first step", nonnegative=True),
        Operand("ld", Kind.STEP, "linear decay: max(1 - t/T, 0)", nonnegative=True),
        Operand("cd", Kind.STEP, "cyclical cosine decay: 0.5*(1 + cos(2*pi*cd_periods*min(t, T)/T)), "
                "held after T as in TF's sign_decay", nonnegative=True),
        Operand("rd", Kind.STEP, "restart decay: 0.5*(1 + cos(pi*((rd_periods*t) mod T)/T))",
                nonnegative=True),
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
        Hyper("beta2", 0.999, "decay of the running average v of g^2 (NOS, Adam)", high=1.0),
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


@dataclass(frozen=True)
class Function:
    name: str
    arity: int  # number of expression arguments
    doc: str
    params: tuple[tuple[str, float, float], ...] = ()  # literal parameters: (name, low, high), open
    infix: str | None = None  # the operator spelling, for binary operators and negation
    random: bool = False  # draws random numbers: two uses are not the same value


FUNCTIONS: dict[str, Function] = {
    f.name: f
    for f in [
        Function("neg", 1, "-x", infix="-"),
        Function("exp", 1, "e^x"),
        Function("log", 1, "natural logarithm (NOS's log|x| is log(abs(x)))"),
        Function("abs", 1, "|x|"),
        Function("sqrt", 1, "square root (NOS's sqrt|x| is sqrt(abs(x)))"),
        Function("sign", 1, "-1, 0 or 1; sign(0) = 0"),
        Function("clip", 1, "clip(x, c): x clipped to [-c, c]", params=(("c", 0.0, float("inf")),)),
        Function("drop", 1, "drop(x, p): dropout, each element zeroed with probability p, the rest "
                 "scaled by 1/(1-p)", params=(("p", 0.0, 1.0),), random=True),
        Function("bound", 1, "AdaBound's dynamic clip: the step lr*x is clipped per element between "
                 "eta*(1 - 1/(gamma*t + 1)) and eta*(1 + 1/(gamma*t)), eta = final_lr * lr / initial_lr, "
                 "as in the adabound package (eta = final_lr when the initial lr is 0)"),
        Function("add", 2, "x + y", infix="+"),
        Function("sub", 2, "x - y", infix="-"),
        Function("mul", 2, "x * y", infix="*"),
        Function("div", 2, "x / y (NOS's division is x / (y + 1e-8))", infix="/"),
        Function("pow", 2, "x ^ y", infix="^"),
        Function("max", 2, "elementwise maximum"),
        Function("min", 2, "elementwise minimum"),
        Function("clamp", 3, "clamp(x, low, high): x clipped to [low, high]"),
    ]
}

# Functions spelled as operators in text, by their operator; the rest are called by name.
BINARY_OPERATORS = {f.infix: f.name for f in FUNCTIONS.values() if f.arity == 2 and f.infix}


def known_names() -> list[str]:
    """Every name a rule's text may use: operands, hyper-constants and function names."""
    return [*OPERANDS, *HYPERS, *(f for f in FUNCTIONS if not FUNCTIONS[f].infix)]


def hyper_defaults() -> dict[str, float]:
    """The default value of every hyper-constant (language and optimizer ones)."""
    return {h.name: h.default for h in (*HYPERS.values(), *OPTIMIZER_HYPERS.values())}
