"""Errors of the rule language: every one says what was wrong and where."""

from __future__ import annotations


class RuleError(ValueError):
    """A rule that is not well formed: an unknown name, a wrong number of arguments, a bad constant."""


class RuleSyntaxError(RuleError):
    """Rule text that does not parse; carries the position, what was found and what was expected."""

    def __init__(self, text: str, position: int, found: str, expected: str, hint: str = "") -> None:
        self.text, self.position, self.found, self.expected = text, position, found, expected
        lines = [f"at position {position}: expected {expected}, found {found}"]
        if hint:
            lines[0] += f" ({hint})"
        if len(text) <= 200:
            lines += [f"  {text}", "  " + " " * position + "^"]
        super().__init__("\n".join(lines))
