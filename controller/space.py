"""The token space: the rule language's group grammar as token indices and per-step masks.

A rule of G groups is a sequence of 5·G tokens (op1, op2, unary1, unary2, binary per group). All tokens
share one flat index space, laid out as operands, then group results ``@0 .. @(G-2)``, then unary, then
binary functions, so one output layer and one embedding table serve every step. ``masks[step]`` marks the
tokens legal at a step: exactly `dsl.GroupVocabulary.choices` for its group and position (a group may
read only earlier groups' results). The masks depend on the step alone, never on earlier tokens, so a
sample's masks are known before it is drawn; they are still stored with each sample so that the update
provably uses the masks the sample was drawn under.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import torch

from dsl import GroupVocabulary, Rule, RuleError, rule_from_groups
from dsl.groups import POSITIONS

Groups = tuple[tuple[str, ...], ...]


class TokenSpace:
    """Token indices, masks and decoding to rules for one `GroupVocabulary`."""

    def __init__(self, vocabulary: GroupVocabulary) -> None:
        self.vocabulary = vocabulary
        self.groups = vocabulary.groups
        refs = tuple(f"@{i}" for i in range(self.groups - 1))
        self.tokens: tuple[str, ...] = vocabulary.operands + refs + vocabulary.unary + vocabulary.binary
        # A unary and a binary function may share a name in principle; each position looks a name up in
        # its own section, so keep one index table per kind of position.
        self._index = {
            "operand": {t: i for i, t in enumerate(vocabulary.operands + refs)},
            "unary": {t: len(vocabulary.operands) + len(refs) + i for i, t in enumerate(vocabulary.unary)},
            "binary": {t: len(self.tokens) - len(vocabulary.binary) + i for i, t in enumerate(vocabulary.binary)},
        }

    @property
    def steps(self) -> int:
        """Tokens per rule: 5 per group."""
        return 5 * self.groups

    @property
    def size(self) -> int:
        """Number of distinct tokens (the width of the policy's output layer)."""
        return len(self.tokens)

    @staticmethod
    def _kind(position: int) -> str:
        return "operand" if position < 2 else "unary" if position < 4 else "binary"

    @cached_property
    def masks(self) -> torch.Tensor:
        """(steps, size) bool: the legal tokens at each step. Read-only by convention, shared by samples."""
        masks = torch.zeros(self.steps, self.size, dtype=torch.bool)
        for step in range(self.steps):
            group, position = divmod(step, 5)
            index = self._index[self._kind(position)]
            for token in self.vocabulary.choices(group, position):
                masks[step, index[token]] = True
        return masks

    def encode(self, groups: Sequence[Sequence[str]]) -> torch.Tensor:
        """Token names, group by group, as a (steps,) int64 tensor; RuleError for an illegal token."""
        if len(groups) != self.groups or any(len(g) != 5 for g in groups):
            raise RuleError(f"expected {self.groups} group(s) of 5 tokens, got {[len(g) for g in groups]}")
        out = []
        for step, token in enumerate(t for g in groups for t in g):
            group, position = divmod(step, 5)
            if token not in self.vocabulary.choices(group, position):
                raise RuleError(f"group {group}, {POSITIONS[position]}: {token!r} is not legal there")
            out.append(self._index[self._kind(position)][token])
        return torch.tensor(out, dtype=torch.int64)

    def decode(self, tokens: Sequence[int] | torch.Tensor) -> Groups:
        """Token indices as names, one tuple of 5 per group."""
        names = [self.tokens[int(t)] for t in tokens]
        return tuple(tuple(names[i:i + 5]) for i in range(0, len(names), 5))

    def to_rule(self, tokens: Sequence[int] | torch.Tensor) -> tuple[Groups, Rule | None, str | None]:
        """The groups, and the rule they mean through `dsl.rule_from_groups`, or None and the reason
        (a legal sequence can still exceed the language's size limits when groups reuse results)."""
        groups = self.decode(tokens)
        try:
            return groups, rule_from_groups(groups, self.vocabulary), None
        except RuleError as err:
            return groups, None, str(err)
