"""Errors of the rule language: every one says what was wrong and where."""

from __future__ import annotations

from dsl.printable import visible, window


class RuleError(ValueError):
    """A rule that is not well formed: an unknown name, a wrong number of arguments, a bad constant."""


class RuleSyntaxError(RuleError):
    """Rule text that does not parse; carries the position, what was found and what was expected."""

    def __init__(self, text: str, position: int, found: str, expected: str, hint: str = "") -> None:
        self.text, self.position, self.found, self.expected = text, position, found, expected
        first = f"at position {position}: expected {expected}, found {found}" + (f" ({hint})" if hint else "")
        # The text around the position, its hidden characters escaped (`dsl.printable`), so that the caret
        # stands under the character at fault however long the text and whatever it holds.
        shown, column = window(text, position)
        super().__init__("\n".join([visible(first, limit=500), f"  {shown}", "  " + " " * column + "^"]))
