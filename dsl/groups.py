"""The controller's form of a rule: a sequence of groups (op1, op2, unary1, unary2, binary).

A group computes ``binary(unary1(op1), unary2(op2))``; its result is the operand ``@i`` (i counting
groups from 0) for the groups after it, and the last group is the update, as in NOS. Each token is a
name from a `GroupVocabulary`; `rule_from_groups` turns tokens into a `Rule` of the language, spelling
each NOS choice as exactly the expression it means (NOS's division x / (y + 1e-8) included).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from dsl.errors import RuleError
from dsl.expr import Call, Const, Expr, Rule
from dsl.text import parse

POSITIONS = ("op1", "op2", "unary1", "unary2", "binary")

# The 17 operands of NOS, then the decay operands and annealed noise added for its found rules.
NOS_OPERANDS: dict[str, str] = {
    "g": "g", "g^2": "g^2", "g^3": "g^3", "mhat": "mhat", "vhat": "vhat", "m3hat": "m3hat",
    "sign(g)": "sign(g)", "sign(m)": "sign(m)", "1": "1", "2": "2", "noise": "0.1 * noise",
    "1e-4*w": "0.0001 * w", "1e-3*w": "0.001 * w", "1e-2*w": "0.01 * w", "1e-1*w": "0.1 * w",
    "adam": "mhat / (sqrt(vhat) + eps)", "rmsprop": "g / (sqrt(v) + eps)",
}
EXTRA_OPERANDS: dict[str, str] = {
    "ld": "ld", "cd": "cd", "rd": "rd", "annealed_noise": "noise * (1 + t)^(-0.275)",
}

_UnaryFn = Callable[[Expr], Expr]
_BinaryFn = Callable[[Expr, Expr], Expr]


def _call(fn: str, *params: float) -> _UnaryFn:
    return lambda x: Call(fn, (x,), params)


NOS_UNARY: dict[str, _UnaryFn] = {
    "identity": lambda x: x,
    "neg": _call("neg"),
    "exp": _call("exp"),
    "log_abs": lambda x: Call("log", (Call("abs", (x,)),)),
    "sqrt_abs": lambda x: Call("sqrt", (Call("abs", (x,)),)),
    "clip_1e-5": _call("clip", 1e-5),
    "clip_1e-4": _call("clip", 1e-4),
    "clip_1e-3": _call("clip", 1e-3),
    "drop_0.1": _call("drop", 0.1),
    "drop_0.3": _call("drop", 0.3),
    "drop_0.5": _call("drop", 0.5),
    "sign": _call("sign"),
}
EXTRA_UNARY: dict[str, _UnaryFn] = {"bound": _call("bound")}

NOS_BINARY: dict[str, _BinaryFn] = {
    "add": lambda x, y: Call("add", (x, y)),
    "sub": lambda x, y: Call("sub", (x, y)),
    "mul": lambda x, y: Call("mul", (x, y)),
    "div": lambda x, y: Call("div", (x, Call("add", (y, Const(1e-8))))),
    "pow": lambda x, y: Call("pow", (x, y)),
    "keep_left": lambda x, y: x,
}
EXTRA_BINARY: dict[str, _BinaryFn] = {
    "max": lambda x, y: Call("max", (x, y)),
    "min": lambda x, y: Call("min", (x, y)),
}

ALL_OPERANDS = {**NOS_OPERANDS, **EXTRA_OPERANDS}
ALL_UNARY = {**NOS_UNARY, **EXTRA_UNARY}
ALL_BINARY = {**NOS_BINARY, **EXTRA_BINARY}


def _check_names(kind: str, names: Sequence[str], known: dict) -> tuple[str, ...]:
    for name in names:
        if name not in known:
            close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
            raise RuleError(f"unknown {kind} {name!r}{hint}")
    if len(set(names)) != len(names) or not names:
        raise RuleError(f"the {kind} list must be non-empty and without repeats, got {list(names)}")
    return tuple(names)


@dataclass(frozen=True)
class GroupVocabulary:
    """Which operands, unary and binary functions the controller may choose, and how many groups."""

    operands: tuple[str, ...] = tuple(ALL_OPERANDS)
    unary: tuple[str, ...] = tuple(ALL_UNARY)
    binary: tuple[str, ...] = tuple(ALL_BINARY)
    groups: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "operands", _check_names("operand", self.operands, ALL_OPERANDS))
        object.__setattr__(self, "unary", _check_names("unary function", self.unary, ALL_UNARY))
        object.__setattr__(self, "binary", _check_names("binary function", self.binary, ALL_BINARY))
        if not isinstance(self.groups, int) or not 1 <= self.groups <= 8:
            raise RuleError(f"groups must be an integer from 1 to 8, got {self.groups!r}")

    def choices(self, group: int, position: int) -> tuple[str, ...]:
        """The tokens legal at ``position`` (0-4) of group ``group``: earlier results are operands."""
        if position < 2:
            return self.operands + tuple(f"@{i}" for i in range(group))
        return self.unary if position < 4 else self.binary


def nos_vocabulary(groups: int = 2) -> GroupVocabulary:
    """The search space of the NOS paper: 17 operands, 12 unary and 6 binary functions."""
    return GroupVocabulary(tuple(NOS_OPERANDS), tuple(NOS_UNARY), tuple(NOS_BINARY), groups)


_OPERAND_EXPRS: dict[str, Expr] = {}


def _operand(name: str) -> Expr:
    if name not in _OPERAND_EXPRS:
        _OPERAND_EXPRS[name] = parse(ALL_OPERANDS[name]).expr
    return _OPERAND_EXPRS[name]


def rule_from_groups(groups: Sequence[Sequence[str]], vocabulary: GroupVocabulary | None = None) -> Rule:
    """The `Rule` a sequence of groups means; the last group's result is the update.

    Raises `RuleError` naming the group and position of a token that is not legal there.
    """
    vocabulary = vocabulary or GroupVocabulary(groups=max(len(groups), 1))
    if not groups:
        raise RuleError("a rule needs at least one group")
    results: list[Expr] = []
    for i, group in enumerate(groups):
        if len(group) != 5:
            raise RuleError(f"group {i} has {len(group)} tokens; a group is (op1, op2, unary1, unary2, "
                            "binary)")
        for position, token in enumerate(group):
            legal = vocabulary.choices(i, position)
            if token not in legal:
                close = difflib.get_close_matches(str(token), legal, n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise RuleError(f"group {i}, {POSITIONS[position]}: {token!r} is not one of the "
                                f"{len(legal)} legal choices{hint}")
        op1, op2, u1, u2, b = group
        x, y = (results[int(op[1:])] if op.startswith("@") else _operand(op) for op in (op1, op2))
        results.append(ALL_BINARY[b](ALL_UNARY[u1](x), ALL_UNARY[u2](y)))
    return Rule(results[-1])
