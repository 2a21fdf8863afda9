"""The `nos` command line: browse and check rules (the search and transfer commands join it later).

    nos rules list            the reference rules, as text and formula
    nos rules show NAME|TEXT  one rule: formula, LaTeX, canonical key, state, hyper-constants, checks
    nos rules check TEXT      parse and statically check a rule; exit status 1 if it is rejected
    nos rules names           every operand, hyper-constant and function of the rule language
    nos data cifar10 DEST     download CIFAR-10 (md5-checked) for the child tasks, on a machine with a network
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from dsl import KNOWN_RULE_TEXT, Rule, RuleError, known_rules, parse
from dsl.vocabulary import FUNCTIONS, HYPERS, OPERANDS

app = typer.Typer(help="Neural optimizer search: discover optimizer update rules, and use them in PyTorch.",
                  no_args_is_help=True, rich_markup_mode="rich", add_completion=False)
rules_app = typer.Typer(help="Browse, inspect and check update rules.", no_args_is_help=True)
app.add_typer(rules_app, name="rules")
data_app = typer.Typer(help="Get the data sets the child tasks read (nothing is downloaded at run time).",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console()


def _version(value: bool) -> None:
    if value:
        try:
            console.print(f"neural-optimizer-search {version('neural-optimizer-search')}")
        except PackageNotFoundError:
            console.print("neural-optimizer-search (not installed)")
        raise typer.Exit()


@app.callback()
def main(_: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                help="Print the version and exit.")) -> None:
    """Neural optimizer search: discover optimizer update rules, and use them in PyTorch."""


def _rule(name_or_text: str) -> tuple[str | None, Rule]:
    """A known rule by name, else the text parsed as a rule; a parse error exits with its message."""
    if name_or_text in KNOWN_RULE_TEXT:
        return name_or_text, known_rules()[name_or_text]
    try:
        return None, parse(name_or_text)
    except RuleError as err:
        console.print(f"[red]not a known rule name nor valid rule text:[/red]\n{err}", highlight=False)
        raise typer.Exit(2) from None


@rules_app.command("list")
def list_rules() -> None:
    """The reference rules: name, rule text (the update is w <- w - lr * rule), state it keeps."""
    from dsl.symbolic import to_sympy

    table = Table(title="Reference rules (update: w <- w - lr * rule)")
    for column in ("name", "rule", "formula (sympy)", "state"):
        table.add_column(column, overflow="fold")
    for name, rule in known_rules().items():
        table.add_row(name, str(rule), str(to_sympy(rule, exact=False)), ", ".join(rule.state) or "-")
    console.print(table)


@rules_app.command("show")
def show(rule: str = typer.Argument(..., help="A reference rule's name (see `nos rules list`) or rule "
                                                "text, e.g. 'exp(sign(g) * sign(m)) * g'.")) -> None:
    """One rule in full: text, formula, LaTeX, canonical key, state, hyper-constants and static checks."""
    from dsl.checks import why_invalid
    from dsl.equivalence import canonical_key
    from dsl.symbolic import simplify, to_latex, to_sympy

    name, parsed = _rule(rule)
    import sympy

    table = Table(show_header=False, title=name or "rule")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    simpler = simplify(parsed)
    table.add_row("text", str(parsed))
    if simpler != parsed:
        table.add_row("simplified", str(simpler))
    table.add_row("formula", sympy.pretty(to_sympy(parsed, exact=False), use_unicode=True))
    table.add_row("LaTeX", to_latex(parsed))
    table.add_row("canonical key", canonical_key(parsed))
    table.add_row("state", ", ".join(parsed.state) or "none")
    used = sorted(n for n in parsed.names if n in HYPERS)
    table.add_row("hyper-constants", ", ".join(f"{n}={HYPERS[n].default:g}" for n in used) or "none")
    reason = why_invalid(parsed)
    table.add_row("static checks", "pass" if reason is None else f"[red]rejected: {reason}[/red]")
    console.print(table)


@rules_app.command("check")
def check(rule: str = typer.Argument(..., help="Rule text or a reference rule's name.")) -> None:
    """Parse and statically check a rule; exit status 0 if worth training, 1 if rejected, 2 if malformed."""
    from dsl.checks import why_invalid
    from dsl.equivalence import canonical_key

    _, parsed = _rule(rule)
    reason = why_invalid(parsed)
    key = canonical_key(parsed)
    if reason is not None:
        console.print(f"[red]rejected[/red]: {reason}  (rule: {parsed}, key {key})", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green]: {parsed}  (key {key})", highlight=False)


@rules_app.command("names")
def names() -> None:
    """Every name a rule may use: operands, hyper-constants (with defaults) and functions."""
    table = Table(title="The rule language")
    for column in ("name", "kind", "meaning"):
        table.add_column(column, overflow="fold")
    for op in OPERANDS.values():
        table.add_row(op.name, f"operand ({op.kind.value})", op.doc)
    for h in HYPERS.values():
        table.add_row(h.name, f"hyper-constant = {h.default:g}", h.doc)
    for f in FUNCTIONS.values():
        spelled = f"x {f.infix} y" if f.infix and f.arity == 2 else f.name
        table.add_row(spelled, "function", f.doc)
    console.print(table)
    console.print("Precedence: ^ (right-assoc, also **) > unary - > * / > + -. Example: "
                  "'exp(sign(g) * sign(m)) * g' (PowerSign).", highlight=False)


@data_app.command("cifar10")
def data_cifar10(
    dest: Path = typer.Argument(..., help="Directory to put cifar-10-python.tar.gz in (created if needed)."),
    url: str | None = typer.Option(None, help="Download from this URL (a mirror) instead of the official one."),
    md5: str | None = typer.Option(None, help="Expected md5 of the archive (default: the official one)."),
) -> None:
    """Download the CIFAR-10 archive, check its md5, and print the NOS_CIFAR10 setting that uses it."""
    from child_tasks.cifar10 import (CIFAR10_MD5, CIFAR10_URL, ENV_VAR, CIFAR10DownloadError,
                                     download_cifar10)

    try:
        archive = download_cifar10(dest, url=url or CIFAR10_URL, md5=md5 or CIFAR10_MD5)
    except CIFAR10DownloadError as err:
        console.print(f"[red]download failed[/red]: {err}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"CIFAR-10 is at {archive.resolve()}", highlight=False, soft_wrap=True)
    console.print(f"Use it with: export {ENV_VAR}={archive.resolve()}", highlight=False, soft_wrap=True)
