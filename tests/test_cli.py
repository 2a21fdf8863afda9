"""The `nos` command line: help, rule listing, inspection and checks, with exit codes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from dsl import known_rules
from search.cli import app

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args), terminal_width=200)


def test_help_explains_the_commands():
    result = run("--help")
    assert result.exit_code == 0 and "rules" in result.output
    result = run("rules", "--help")
    for command in ("list", "show", "check", "names"):
        assert command in result.output


def test_rules_list_shows_every_reference_rule():
    result = run("rules", "list")
    assert result.exit_code == 0
    for name in known_rules():
        assert name in result.output


@pytest.mark.parametrize("argument, expected", [
    ("powersign", ["exp(sign(g) * sign(m)) * g", "canonical key", "pass", r"\operatorname{sign}"]),
    ("(g + g) * 1 - g * 0", ["simplified", "2 * g", "pass"]),
    ("exp(g)", ["rejected", "one sign only"]),
])
def test_rules_show(argument: str, expected: list[str]):
    result = run("rules", "show", argument)
    assert result.exit_code == 0, result.output
    for text in expected:
        assert text in result.output


@pytest.mark.parametrize("argument, code, expected", [
    ("adam", 0, "ok"),
    ("exp(sign(g) * sign(m)) * g", 0, "ok"),
    ("1 + m * 0", 1, "rejected"),
    ("sgin(g)", 2, "did you mean sign"),
    ("exp(g", 2, "expected ')'"),
])
def test_rules_check_exit_codes(argument: str, code: int, expected: str):
    result = run("rules", "check", argument)
    assert result.exit_code == code, result.output
    assert expected in result.output


def test_rules_names_lists_the_vocabulary():
    result = run("rules", "names")
    assert result.exit_code == 0
    for name in ("mhat", "vmax", "beta1", "bound", "clamp", "x ^ y"):
        assert name in result.output
