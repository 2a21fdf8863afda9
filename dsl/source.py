"""Python source for a rule: `Code`, a piece of generated source with its precedence, and the builders
of the functions' source forms in `dsl.functions`, and `unprintable`, which finds the text that cannot go into
a generated module.

`dsl.codegen` writes a rule's tree as torch expressions; each function says how with a source form,
``source(args, params, f64) -> Code``: ``args`` are its arguments' code, ``params`` its literal
parameters, ``f64`` whether the code is in the float64 per-step section (where names are 0-d tensors
and numbers literals, so a torch call given a literal must make it a tensor).
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

# Python's precedence levels, as far as generated code needs them.
SUM, PRODUCT, UNARY, POWER, ATOM = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Code:
    text: str
    level: int = ATOM
    number: bool = False  # a Python float (or, in the float64 section, a literal) rather than a tensor


SourceForm = Callable[[list[Code], tuple[float, ...], bool], Code]


def literal(value: float) -> Code:
    """A number as Python source (nan and inf through math)."""
    if math.isnan(value):
        return Code("math.nan", ATOM, True)
    if math.isinf(value):
        return Code("math.inf", ATOM, True) if value > 0 else Code("-math.inf", UNARY, True)
    return Code(repr(float(value)), ATOM if value >= 0 else UNARY, True)


def as_tensor(x: Code, f64: bool) -> str:
    """x as a tensor argument: a literal in the float64 section becomes a 0-d tensor."""
    return f"torch.tensor({x.text}, dtype=torch.float64)" if x.number and f64 else x.text


def call(fn: str) -> SourceForm:
    """``fn(x, ...)``, e.g. ``torch.exp(x)``."""
    return lambda a, p, f64: Code(f"{fn}({', '.join(x.text for x in a)})")


def infix(op: str, level: int) -> SourceForm:
    """``x op y`` with Python's own precedence and no regrouping: a+(b+c) is not (a+b)+c in floating
    point."""

    def form(args: list[Code], params: tuple[float, ...], f64: bool) -> Code:
        left, right = args
        lt = left.text if left.level > level or (left.level == level and level != POWER) \
            else f"({left.text})"
        rt = right.text if right.level > level and right.level != UNARY \
            and (level != POWER or right.level == ATOM) else f"({right.text})"
        return Code(f"{lt} {op} {rt}", level)

    return form


def negation(args: list[Code], params: tuple[float, ...], f64: bool) -> Code:
    x = args[0]
    return Code("-" + (x.text if x.level == ATOM else f"({x.text})"), UNARY)


def extremum(name: str) -> SourceForm:
    """max or min: of a tensor and a number ``clamp_min``/``clamp_max`` (dsl's choice, which matters for
    NaN), of two tensors ``maximum``/``minimum``."""

    def form(args: list[Code], params: tuple[float, ...], f64: bool) -> Code:
        x, y = args
        if x.number:  # max(number, tensor) is clamp_min(tensor, number)
            x, y = y, x
        if y.number:
            return Code(f"torch.{'clamp_min' if name == 'max' else 'clamp_max'}({x.text}, {y.text})")
        return Code(f"torch.{'maximum' if name == 'max' else 'minimum'}({x.text}, {y.text})")

    return form


def unprintable(text: str) -> str | None:
    """The first control character (or lone surrogate) in ``text``, described, or None. Such a
    character in a generated module's docstring makes the module un-importable (a NUL) or unwritable
    as UTF-8 (a surrogate); a newline and a tab are allowed."""
    for i, char in enumerate(text):
        if unicodedata.category(char) in ("Cc", "Cs") and char not in "\n\t":
            return f"the control character U+{ord(char):04X} at position {i}"
    return None
