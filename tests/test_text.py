"""Rule text: parse and print round-trip, precedence, and errors that say where and what."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from dsl import Call, Const, Rule, RuleError, RuleSyntaxError, Var, parse
from dsl.expr import MAX_DEPTH, MAX_NODES
from dsl.text import SYNTAX_DEPTH
from tests.strategies import group_rules, rules

g, m, v = Var("g"), Var("m"), Var("v")


def call(fn: str, *args, params: tuple[float, ...] = ()) -> Call:
    return Call(fn, args, params)


@settings(max_examples=300, derandomize=True, deadline=None)
@given(rules())
def test_print_then_parse_gives_the_same_tree(rule: Rule) -> None:
    assert parse(str(rule)) == rule


@settings(max_examples=200, derandomize=True, deadline=None)
@given(group_rules())
def test_print_then_parse_gives_the_same_tree_for_group_rules(rule: Rule) -> None:
    assert parse(str(rule)) == rule


TREES = [
    ("-g^2", call("neg", call("pow", g, Const(2)))),
    ("g^m^v", call("pow", g, call("pow", m, v))),
    ("(g^m)^v", call("pow", call("pow", g, m), v)),
    ("g - (m - v)", call("sub", g, call("sub", m, v))),
    ("g - m - v", call("sub", call("sub", g, m), v)),
    ("g / m / v", call("div", call("div", g, m), v)),
    ("g / (m * v)", call("div", g, call("mul", m, v))),
    ("2 ** g", call("pow", Const(2), g)),
    ("g ^ -m", call("pow", g, call("neg", m))),
    ("-(-g)", call("neg", call("neg", g))),
    ("g + m * v", call("add", g, call("mul", m, v))),
    ("(g + m) * v", call("mul", call("add", g, m), v)),
    ("1e-05", Const(1e-5)),
    (".5 * g", call("mul", Const(0.5), g)),
    ("clip(g, 1e-4)", call("clip", g, params=(1e-4,))),
    ("drop(g, 0.5)", call("drop", g, params=(0.5,))),
    ("clamp(g, m, v)", call("clamp", g, m, v)),
    ("max(g, -m)", call("max", g, call("neg", m))),
    ("  sign ( g )  ", call("sign", g)),
]


@pytest.mark.parametrize(("text", "tree"), TREES)
def test_text_parses_to_the_expected_tree(text: str, tree) -> None:
    assert parse(text).expr == tree
    assert parse(str(parse(text))).expr == tree


PRINTED = [
    ("-(g^2)", "-g^2"),
    ("(g - m) - v", "g - m - v"),
    ("g - (m - v)", "g - (m - v)"),
    ("g ** (m ** v)", "g^m^v"),
    ("(g ^ m) ^ v", "(g^m)^v"),
    ("g + -m", "g + (-m)"),
    ("2.0 * g", "2 * g"),
    ("1e16 * g", "1e+16 * g"),
]


@pytest.mark.parametrize(("text", "printed"), PRINTED)
def test_printing_uses_the_fewest_parentheses(text: str, printed: str) -> None:
    assert str(parse(text)) == printed


# text, position, what was found, what was expected
BAD = [
    ("g +", 3, "the end of the text", "a number, a name, '-' or '('"),
    ("g )", 2, "op ')'", "an operator or the end of the text"),
    ("(g", 2, "the end of the text", "')'"),
    ("g m", 2, "name 'm'", "an operator or the end of the text"),
    ("3 $ g", 2, "'$'", "a number, a name, an operator or a parenthesis"),
    ("sign g", 5, "name 'g'", "'(' after the function 'sign'"),
    ("g(1)", 1, "op '('", "an operator or the end"),
    ("", 0, "the end of the text", "a rule"),
    ("clip(g)", 0, "clip with 1 argument(s)", "clip(x, c)"),
    ("clip(g, m)", 0, "c = m", "a number for the parameter c of clip"),
    ("clip(g, 0)", 0, "clip(...)", "valid parameters"),
    ("drop(g, 1)", 0, "drop(...)", "valid parameters"),
    ("g * 1e400", 4, "number '1e400'", "a finite number (at most 1.7976931348623157e+308)"),
    ("g * 1e-400", 4, "number '1e-400'", "a number float64 can hold (it underflows to 0; the smallest is "
     "5e-324)"),
    ("\u0661\u0662 * g", 0, "'\u0661'", "a number, a name, an operator or a parenthesis"),  # Arabic-Indic 12
    ("g * \uff11", 4, "'\uff11'", "a number, a name, an operator or a parenthesis"),  # fullwidth 1
]


@pytest.mark.parametrize(("text", "position", "found", "expected"), BAD)
def test_bad_text_says_where_what_was_found_and_what_was_expected(text, position, found, expected) -> None:
    with pytest.raises(RuleSyntaxError) as caught:
        parse(text)
    err = caught.value
    assert (err.position, err.found, err.expected) == (position, found, expected)
    assert f"at position {position}" in str(err) and found in str(err) and expected in str(err)


def test_zero_written_small_is_still_zero_and_subnormals_parse() -> None:
    assert parse("0e-400 * g") == parse("0 * g")
    assert parse("5e-324 * g").expr.args[0].value == 5e-324
    assert "ASCII digits 0-9" in str(pytest.raises(RuleSyntaxError, parse, "\u0661 * g").value)


@pytest.mark.parametrize(("text", "suggestion"), [("sgin(g)", "sign"), ("mhta", "mhat"), ("beta_1", "beta1"),
                                                   ("epsilon", "eps")])
def test_unknown_names_list_close_matches(text: str, suggestion: str) -> None:
    with pytest.raises(RuleSyntaxError, match=f"did you mean .*{suggestion}"):
        parse(text)


def _balanced_sum(leaves: int) -> str:
    """``g + g + ...`` with ``leaves`` terms as a balanced tree, to reach the size but not the depth."""
    if leaves == 1:
        return "g"
    half = leaves // 2
    return f"({_balanced_sum(half)}) + ({_balanced_sum(leaves - half)})"


def test_size_limit() -> None:
    most = (MAX_NODES + 1) // 2  # n terms are 2n - 1 nodes
    assert parse(_balanced_sum(most)).size() == 2 * most - 1 <= MAX_NODES
    with pytest.raises(RuleError, match="more than the limit"):
        parse(_balanced_sum(most + 1))


def test_depth_limit() -> None:
    assert parse("(" * (MAX_DEPTH + 1) + "g" + ")" * (MAX_DEPTH + 1)) == parse("g"), "brackets add no depth"
    with pytest.raises(RuleError, match="limit"):
        parse("(" * (SYNTAX_DEPTH + 1) + "g" + ")" * (SYNTAX_DEPTH + 1))
    with pytest.raises(RuleError, match="limit"):
        parse("exp(" * (MAX_DEPTH + 1) + "g" + ")" * (MAX_DEPTH + 1))
    deep = g
    for _ in range(MAX_DEPTH):
        deep = call("exp", deep)
    with pytest.raises(RuleError, match="deeper"):
        Rule(deep)


@pytest.mark.parametrize("text", ["2^-" * 15 + "g", "-g^" * 15 + "g", "sign(-(" * 15 + "g" + "))" * 15])
def test_every_rule_the_depth_limit_admits_reads_back(text) -> None:
    rule = parse(text)  # written back with more brackets (a^-b is a^(-b)): still within the parser's guard
    assert parse(str(rule)) == rule


@pytest.mark.parametrize("value", [None, 3, b"g", ["g"]])
def test_non_text_is_a_type_error(value) -> None:
    with pytest.raises(TypeError):
        parse(value)
