"""Text from users, stores and records as the command line prints it with rich: its hidden characters
written out (`dsl.printable.visible`: control characters, escape sequences, bidirectional overrides) and
its square brackets not read as rich markup (``[bold]`` in a rule's text stays text).

    console.print(f"[red]error[/red]: {shown(err)}")      # our markup, their text
    table.add_row(shown(name), shown(rule_text))         # a cell (rich reads a str cell as markup)
    table.add_row(name, cell(value, style="red"))        # the same as a rich Text, with a style
"""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text

from dsl.printable import visible


def shown(text: object, *, limit: int | None = None) -> str:
    """``text`` for a rich string with markup: visible (newlines kept) and escaped for rich."""
    return escape(visible(text, newlines=True, limit=limit))


def cell(text: object, style: str = "") -> Text:
    """``text`` as a rich Text (never markup), visible, newlines kept."""
    return Text(visible(text, newlines=True), style=style)
