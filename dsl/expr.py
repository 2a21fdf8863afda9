"""The tree of a rule: constants, names and function calls, the `Rule` that wraps one, and its text.

Nodes are frozen dataclasses, so two rules written the same way are equal and hashable (the evaluators
use that to compute a repeated sub-expression once). Literal function parameters (``clip(x, 1e-4)``)
are kept on the call node, apart from its expression arguments. `format_expr` writes a tree as the text
that `dsl.text.parse` reads back to the same tree (a rule's ``str``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from dsl.errors import RuleError
from dsl.functions import FUNCTIONS
from dsl.quantities import STATE
from dsl.vocabulary import HYPERS, OPERANDS, Kind

T = TypeVar("T")
MAX_NODES = 256
MAX_DEPTH = 32


@dataclass(frozen=True)
class Const:
    value: float

    def __post_init__(self) -> None:
        value = float(self.value)
        if not math.isfinite(value) or value < 0:
            # Negative numbers are written neg(Const): one tree per text, so parse(str(r)) == r.
            raise RuleError(f"a constant must be finite and non-negative, got {self.value!r}")
        object.__setattr__(self, "value", value + 0.0)  # -0.0 -> 0.0


@dataclass(frozen=True)
class Var:
    name: str

    def __post_init__(self) -> None:
        if self.name not in OPERANDS and self.name not in HYPERS:
            raise RuleError(f"unknown name {self.name!r}")


@dataclass(frozen=True)
class Call:
    fn: str
    args: tuple[Expr, ...]
    params: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        spec = FUNCTIONS.get(self.fn)
        if spec is None:
            raise RuleError(f"unknown function {self.fn!r}")
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "params", tuple(float(p) for p in self.params))
        if len(self.args) != spec.arity or len(self.params) != len(spec.params):
            raise RuleError(f"{self.fn} takes {spec.arity} argument(s) and {len(spec.params)} "
                            f"parameter(s), got {len(self.args)} and {len(self.params)}")
        for value, (pname, low, high) in zip(self.params, spec.params):
            if not (low < value < high and math.isfinite(value)):
                raise RuleError(f"{self.fn}: parameter {pname} must be in ({low:g}, {high:g}), "
                                f"got {value!r}")


Expr = Const | Var | Call


def nodes(expr: Expr) -> Iterator[Expr]:
    """All nodes of the tree, parents before children (a shared sub-tree is visited at each use)."""
    stack = [expr]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, Call):
            stack.extend(reversed(node.args))


def reduce_tree(expr: Expr, leaf: Callable[[Const | Var], T], call: Callable[[Call, list[T]], T],
                memo: dict[Expr, T] | None = None) -> T:
    """Bottom-up evaluation: ``leaf`` on constants and names, ``call`` on a call with its arguments'
    results. Each distinct sub-expression is computed once; pass ``memo`` to share results (or give
    known ones) across calls."""
    memo = {} if memo is None else memo

    def walk(node: Expr) -> T:
        if node not in memo:
            memo[node] = call(node, [walk(a) for a in node.args]) if isinstance(node, Call) else leaf(node)
        return memo[node]

    return walk(expr)


def scalar_subtrees(expr: Expr) -> list[Expr]:
    """The largest sub-expressions that read names but no tensor operand: one value per step.

    (``1 - beta1^t`` in Adam's bias correction.) Distinct, in first-visit order.
    """
    found: dict[Expr, None] = {}

    def visit(node: Expr) -> bool:  # True: node reads no tensor operand
        if isinstance(node, Const):
            return True
        if isinstance(node, Var):
            return node.name in HYPERS or OPERANDS[node.name].kind is not Kind.TENSOR
        flags = [visit(a) for a in node.args]
        if all(flags) and not FUNCTIONS[node.fn].random:  # a random call draws per element
            return True
        for arg, flag in zip(node.args, flags):
            if flag and not isinstance(arg, Const):
                found.setdefault(arg, None)
        return False

    if visit(expr) and not isinstance(expr, Const):
        found.setdefault(expr, None)
    return [e for e in found if not isinstance(e, Var)]


def depth(expr: Expr) -> int:
    if isinstance(expr, Call):
        return 1 + max(depth(a) for a in expr.args)
    return 1


def use_counts(expr: Expr) -> Counter:
    """How many times each distinct subtree occurs in ``expr`` (a shared subtree's inside counted once):
    what an evaluator needs to know to compute a repeated subtree once and keep it."""
    counts: Counter = Counter()

    def visit(node: Expr) -> None:
        counts[node] += 1
        if counts[node] == 1 and isinstance(node, Call):
            for a in node.args:
                visit(a)

    visit(expr)
    return counts


@dataclass(frozen=True)
class Rule:
    """An update rule: the direction d of ``w <- w - lr * d``, as an expression tree."""

    expr: Expr
    _names: frozenset[str] = field(init=False, repr=False, compare=False)
    _state: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        size = sum(1 for _ in nodes(self.expr))
        if size > MAX_NODES:
            raise RuleError(f"rule has {size} nodes, more than the limit of {MAX_NODES}")
        if depth(self.expr) > MAX_DEPTH:
            raise RuleError(f"rule is nested deeper than the limit of {MAX_DEPTH}")
        names = frozenset(n.name for n in nodes(self.expr) if isinstance(n, Var))
        object.__setattr__(self, "_names", names)
        # Read on every optimizer step, for every tensor: computed once.
        needed = {s for n in names if n in OPERANDS for s in OPERANDS[n].state}
        object.__setattr__(self, "_state", tuple(s for s in STATE if s in needed))

    @property
    def names(self) -> frozenset[str]:
        """Operands and hyper-constants the rule reads."""
        return self._names

    @property
    def state(self) -> tuple[str, ...]:
        """Optimizer state buffers the rule needs, in the order of `dsl.quantities.STATE` (m, v, m3,
        vmax)."""
        return self._state

    @property
    def hypers_read(self) -> tuple[str, ...]:
        """The hyper-constants the rule's update depends on, named or implied (m reads beta1, bound
        final_lr and gamma), in the order of `dsl.vocabulary.HYPERS`."""
        needed = {h for n in self._names for h in ((n,) if n in HYPERS else OPERANDS[n].hypers)}
        needed.update(h for n in nodes(self.expr) if isinstance(n, Call) for h in FUNCTIONS[n.fn].hypers)
        return tuple(h for h in HYPERS if h in needed)

    def size(self) -> int:
        return sum(1 for _ in nodes(self.expr))

    def __str__(self) -> str:
        return format_expr(self.expr)


# --- the text of a tree ------------------------------------------------------------------------

# Precedence levels of the writer, matching the grammar of `dsl.text`.
_SUM, _PRODUCT, _NEG, _POWER, _ATOM = range(5)
_LEVEL = {"add": _SUM, "sub": _SUM, "mul": _PRODUCT, "div": _PRODUCT, "neg": _NEG, "pow": _POWER}


def _level(expr: Expr) -> int:
    return _LEVEL.get(expr.fn, _ATOM) if isinstance(expr, Call) else _ATOM


def format_number(value: float) -> str:
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def format_expr(expr: Expr) -> str:
    """The text of an expression, parsed back by `parse` to the same tree."""
    if isinstance(expr, Const):
        return format_number(expr.value)
    if isinstance(expr, Var):
        return expr.name
    spec = FUNCTIONS[expr.fn]
    if expr.fn == "neg":
        (x,) = expr.args
        inner = format_expr(x)
        return f"-{inner}" if _level(x) >= _POWER else f"-({inner})"
    if spec.infix:
        x, y = expr.args
        level = _LEVEL[expr.fn]
        left, right = format_expr(x), format_expr(y)
        # Left-associative + - * /: a right operand of the same level needs parentheses; ^ is
        # right-associative: its left operand does. Negations as operands get them for readability.
        if _level(x) < level or (level == _POWER and _level(x) == _POWER) or _level(x) == _NEG:
            left = f"({left})"
        if _level(y) < level or (level != _POWER and _level(y) == level) or _level(y) == _NEG:
            right = f"({right})"
        return f"{left} {spec.infix} {right}" if level < _POWER else f"{left}^{right}"
    args = [format_expr(a) for a in expr.args] + [format_number(p) for p in expr.params]
    return f"{expr.fn}({', '.join(args)})"
