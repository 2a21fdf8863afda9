"""Spelling a rule in the controller's token grammar: the groups a known rule is written as, if any.

Evolution's warm start (`controller.evolution`) puts known rules (`dsl.known`, e.g. sgd, adam,
powersign) into its first population, so it needs their token sequences. `spell` finds one by reading the
rule's tree from the top against the space's own tables (`dsl.groups`): a sub-tree that is exactly an
operand's expression becomes that operand (``adam``, ``sign(g)``), a call that matches a unary
function's template applied to something becomes that function, a call that matches a binary function's
template becomes a group whose result later groups read. Templates are built from the tables themselves,
so NOS's ``div`` (x / (y + 1e-8)) matches only that expression, never a plain x / y.

A rule needing fewer groups than the space has is padded with ``(@k, @k, identity, identity,
keep_left)`` groups, each reading the one before (which keeps ``last_group_reads_previous``). The result
is checked against the rule's canonical key, so a spelling is never claimed that means another rule. When
the vocabulary lacks a name the rule needs, or the rule needs more groups than there are, `spell` raises
`RuleError` naming the rule: the warm start's error (``evolution.warm_start``).
"""

from __future__ import annotations

from functools import cache

import torch

from controller.space import TokenSpace
from dsl import KNOWN_RULE_TEXT, Expr, Rule, RuleError, canonical_key, parse
from dsl.expr import Call
from dsl.groups import ALL_BINARY, ALL_OPERANDS, ALL_UNARY


class _Hole:
    """A template's placeholder: matches any sub-tree (Call does not check its arguments' types)."""

    def __init__(self, index: int) -> None:
        self.index = index


_HOLES = (_Hole(0), _Hole(1))


@cache
def _templates() -> tuple[dict[str, Expr], dict[str, Expr], dict[str, Expr]]:
    """Operand expressions, and unary and binary functions applied to holes, from dsl.groups' tables."""
    operands = {name: parse(text).expr for name, text in ALL_OPERANDS.items()}
    unary = {name: fn(_HOLES[0]) for name, fn in ALL_UNARY.items() if name != "identity"}
    binary = {name: fn(*_HOLES) for name, fn in ALL_BINARY.items() if name != "keep_left"}
    return operands, unary, binary


def _match(template: object, expr: object, bound: dict[int, object]) -> bool:
    if isinstance(template, _Hole):
        if template.index in bound:
            return bound[template.index] == expr
        bound[template.index] = expr
        return True
    if isinstance(template, Call):
        return (isinstance(expr, Call) and expr.fn == template.fn and expr.params == template.params
                and len(expr.args) == len(template.args)
                and all(_match(t, e, bound) for t, e in zip(template.args, expr.args)))
    return template == expr


class _Speller:
    """Builds the groups of one rule in one vocabulary (see the module docstring)."""

    def __init__(self, space: TokenSpace) -> None:
        vocab = space.vocabulary
        operands, unary, binary = _templates()
        self.operands = {name: operands[name] for name in vocab.operands}
        self.unary = {name: unary[name] for name in vocab.unary if name in unary}
        self.binary = {name: binary[name] for name in vocab.binary if name in binary}
        self.identity = "identity" in vocab.unary
        self.groups: list[tuple[str, str, str, str, str]] = []

    def operand(self, expr: Expr) -> str:
        """An operand name, or the result of a new group (@i)."""
        for name, template in self.operands.items():
            if template == expr:
                return name
        return f"@{self.group(expr)}"

    def value(self, expr: Expr) -> tuple[str, str]:
        """(operand, unary function) with unary(operand) == expr."""
        for name, template in self.operands.items():
            if template == expr and self.identity:
                return name, "identity"
        for name, template in self.unary.items():
            bound: dict[int, object] = {}
            if _match(template, expr, bound):
                try:
                    return self.operand(bound[0]), name
                except RuleError:
                    continue
        if not self.identity:
            raise RuleError(f"no unary function of the vocabulary spells {Rule(expr)} (and no identity)")
        return f"@{self.group(expr)}", "identity"

    def group(self, expr: Expr) -> int:
        """A new group computing ``expr`` (a binary function at its top); its index."""
        for name, template in self.binary.items():
            bound: dict[int, object] = {}
            if _match(template, expr, bound):
                (op1, u1), (op2, u2) = self.value(bound[0]), self.value(bound[1])
                self.groups.append((op1, op2, u1, u2, name))
                return len(self.groups) - 1
        raise RuleError(f"no binary function of the vocabulary spells {Rule(expr)}")

    def top(self, expr: Expr) -> None:
        """Groups whose last one computes ``expr``."""
        try:
            self.group(expr)
            return
        except RuleError:
            self.groups.clear()
        op, u = self.value(expr)
        if not op.startswith("@") or u != "identity":
            self.groups.append((op, op, u, "identity", "keep_left"))


def spell(rule: Rule | str, space: TokenSpace, name: str | None = None) -> torch.Tensor:
    """The tokens (steps,) of a spelling of ``rule`` in ``space``; RuleError naming the rule if none is
    found (module docstring)."""
    rule = parse(rule) if isinstance(rule, str) else rule
    label = f"{name!r} ({rule})" if name else repr(str(rule))
    vocab = space.vocabulary
    where = (f"the vocabulary ({space.groups} group(s), {len(vocab.operands)} operands, "
             f"{len(vocab.unary)} unary, {len(vocab.binary)} binary functions)")
    speller = _Speller(space)
    try:
        speller.top(rule.expr)
    except RuleError as err:
        raise RuleError(f"{where} cannot express {label}: {err}") from None
    groups = speller.groups
    if len(groups) > space.groups:
        raise RuleError(f"{where} cannot express {label}: it needs {len(groups)} groups")
    if len(groups) < space.groups and not ({"identity"} <= set(vocab.unary) and "keep_left" in vocab.binary):
        raise RuleError(f"{where} cannot express {label} in {space.groups} groups: padding a shorter "
                        "spelling needs identity and keep_left")
    while len(groups) < space.groups:
        last = f"@{len(groups) - 1}"
        groups.append((last, last, "identity", "identity", "keep_left"))
    try:
        tokens = space.encode(groups)
    except RuleError as err:
        raise RuleError(f"{where} cannot express {label}: {err}") from None
    groups_, spelt, error = space.to_rule(tokens)
    if spelt is None or canonical_key(spelt) != canonical_key(rule):
        raise RuleError(f"{where} cannot express {label}: its spelling {groups_} means {spelt or error}")
    return tokens


def spell_known(name: str, space: TokenSpace) -> torch.Tensor:
    """`spell` for a rule of `dsl.known` by its name."""
    if name not in KNOWN_RULE_TEXT:
        raise RuleError(f"{name!r} is not a known rule (dsl.known): {', '.join(KNOWN_RULE_TEXT)}")
    return spell(KNOWN_RULE_TEXT[name], space, name)
