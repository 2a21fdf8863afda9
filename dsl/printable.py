"""Text made safe to show on a terminal: `visible` writes every character that a terminal would act on
rather than show (control characters, escape sequences, bidirectional overrides, zero-width and other
format characters, surrogates, unassigned code points) as a ``\\x..``/``\\u....`` escape, as `repr` does,
and cuts long text; `window` is the part of a long text around one position, for a caret under it.

    visible("g\\x1b[31m")          # 'g\\x1b[31m' with the escape written out: nothing reaches the terminal
    visible(text, limit=200)       # at most 200 characters of text, then '... (N more characters)'
    line, caret = window(text, 10_000)   # about 60 characters either side; the caret's column in line

Here in dsl, which imports nothing of ours, because a rule's own error (`dsl.errors.RuleSyntaxError`)
quotes its text, and every other package (discovered_rules, search's command line) shows text from users,
stores and records through the same function.
"""

from __future__ import annotations

import unicodedata

# Unicode categories a terminal does not simply draw: Cc control (ESC, CR, NUL, DEL, C1), Cf format
# (U+202A-U+202E and U+2066-U+2069 bidirectional overrides, zero-width spaces), Cs surrogates, Co private
# use, Cn unassigned, Zl/Zp line and paragraph separators.
HIDDEN = frozenset(("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))
WINDOW = 60  # characters shown either side of an error's position in a long text


def _escape(char: str) -> str:
    code = ord(char)
    if char in "\n\t\r":
        return {"\n": "\\n", "\t": "\\t", "\r": "\\r"}[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def hidden(char: str) -> bool:
    """Whether a terminal would act on ``char`` (or show nothing) rather than draw it."""
    return unicodedata.category(char) in HIDDEN


def visible(text: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """``text`` (str of anything) with every `hidden` character written as an escape (a newline kept
    when ``newlines``), cut after ``limit`` characters of the original with a note of how many more."""
    text = str(text)
    more = 0
    if limit is not None and len(text) > limit:
        text, more = text[:limit], len(text) - limit
    if any(hidden(c) for c in text):  # the common case, plain text, is returned as it is
        text = "".join(c if not hidden(c) or (newlines and c == "\n") else _escape(c) for c in text)
    return text + (f"... ({more} more characters)" if more else "")


def window(text: str, position: int, width: int = WINDOW) -> tuple[str, int]:
    """The `visible` part of ``text`` around ``position`` (``width`` characters either side, ``...``
    where cut) and the column of ``position``'s character in it, for a caret under it."""
    position = max(0, min(position, len(text)))
    start, end = max(0, position - width), min(len(text), position + width + 1)
    before = ("..." if start else "") + visible(text[start:position])
    return before + visible(text[position:end]) + ("..." if end < len(text) else ""), len(before)
