"""The token space: the rule language's group grammar as token indices and per-step masks.

A rule of G groups is a sequence of 5·G tokens (op1, op2, unary1, unary2, binary per group). All tokens
share one flat index space, laid out as operands, then group results ``@0 .. @(G-2)``, then unary, then
binary functions, so one output layer and one embedding table serve every step. ``masks[step]`` marks the
tokens legal at a step: exactly `dsl.GroupVocabulary.choices` for its group and position (a group may
read only earlier groups' results).

Dead groups. In NOS's grammar a group's result may go unread: then the sequence spells a rule of fewer
groups, and the unread group's tokens change nothing. In NOS's 2-group space that is 89% of uniformly
drawn sequences, and a learning controller gets no signal for the first group's tokens from them, although
that is where a rule like PowerSign keeps sign(g) * sign(m). With ``last_group_reads_previous`` the last
group must read the result of the group before it (if its op1 does not, its op2 must). Every rule of
the space can still be spelt (a rule R of fewer groups as R followed by ``(@k, x, identity, y,
keep_left)``), so the set of rules is unchanged; only the spellings whose last group ignores the group
before it go.

The masks depend on the step alone, except at the last group's op2 under that option, which depends on
the token just before it; `step_masks` gives a step's masks from that token and `masks_for` a drawn
sequence's. Every sample stores the masks it was drawn under, so that the update provably uses them.
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

    def __init__(self, vocabulary: GroupVocabulary, last_group_reads_previous: bool = False) -> None:
        self.vocabulary = vocabulary
        self.groups = vocabulary.groups
        self.last_group_reads_previous = last_group_reads_previous and vocabulary.groups > 1
        refs = tuple(f"@{i}" for i in range(self.groups - 1))
        self.tokens: tuple[str, ...] = vocabulary.operands + refs + vocabulary.unary + vocabulary.binary
        # A unary and a binary function may share a name in principle; each position looks a name up in
        # its own section, so keep one index table per kind of position.
        self._index = {
            "operand": {t: i for i, t in enumerate(vocabulary.operands + refs)},
            "unary": {t: len(vocabulary.operands) + len(refs) + i for i, t in enumerate(vocabulary.unary)},
            "binary": {t: len(self.tokens) - len(vocabulary.binary) + i
                       for i, t in enumerate(vocabulary.binary)},
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

    @property
    def conditional_step(self) -> int | None:
        """The step whose legal tokens depend on the token before it (the last group's op2), or None."""
        return 5 * (self.groups - 1) + 1 if self.last_group_reads_previous else None

    def operand_token(self, name: str) -> int:
        """The token index of an operand or a group result (``@i``)."""
        return self._index["operand"][name]

    @cached_property
    def previous_result(self) -> int:
        """The token of the result of the group before the last (``@(G-2)``)."""
        return self._index["operand"][f"@{self.groups - 2}"]

    @cached_property
    def _only_previous(self) -> torch.Tensor:
        """(size,) bool: the conditional step's mask when op1 does not read the previous result."""
        mask = torch.zeros(self.size, dtype=torch.bool)
        mask[self.previous_result] = True
        return mask

    @cached_property
    def log_sequences(self) -> float:
        """log of the number of legal token sequences (at the conditional step's pair of operands: c1 - 1
        choices of op1 leave op2 one choice, op1 = the previous result leaves all c2)."""
        counts = self.masks.sum(1).double()
        step = self.conditional_step
        if step is None:
            return float(counts.log().sum())
        pairs = counts[step - 1] - 1 + counts[step]
        return float(counts.log().sum() - counts[step - 1:step + 1].log().sum() + pairs.log())

    def step_masks(self, step: int, before: torch.Tensor) -> torch.Tensor:
        """(n, size) legal tokens at ``step`` for n sequences whose token at ``step - 1`` is ``before``."""
        masks = self.masks[step].expand(before.shape[0], -1)
        if step != self.conditional_step:
            return masks
        return torch.where((before != self.previous_result)[:, None], self._only_previous, masks)

    def masks_for(self, tokens: torch.Tensor) -> torch.Tensor:
        """(n, steps, size): the masks each of the sequences ``tokens`` (n, steps) was legal under."""
        masks = self.masks.expand(tokens.shape[0], -1, -1)
        step = self.conditional_step
        if step is None:
            return masks
        masks = masks.clone()
        masks[:, step] = self.step_masks(step, tokens[:, step - 1])
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
        tokens = torch.tensor(out, dtype=torch.int64)
        step = self.conditional_step
        if step is not None and not self.step_masks(step, tokens[None, step - 1])[0, tokens[step]]:
            raise RuleError(f"group {self.groups - 1} reads neither operand from @{self.groups - 2}; "
                            "this space has last_group_reads_previous set")
        return tokens

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
