"""The controller's groups of tokens: the rules they mean, and errors naming group and position."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from dsl import GroupVocabulary, Rule, RuleError, known_rules, nos_vocabulary, parse, rule_from_groups
from dsl.groups import ALL_BINARY, ALL_OPERANDS, ALL_UNARY, NOS_OPERANDS
from tests.strategies import group_rules

# groups -> the rule text they mean
MEANINGS = [
    ([("g", "sign(m)", "identity", "exp", "mul")], "g * exp(sign(m))"),
    ([("g", "g", "identity", "identity", "keep_left")], "g"),
    ([("g", "g", "identity", "identity", "div")], "g / (g + 1e-8)"),  # NOS's division adds 1e-8
    ([("g", "1e-4*w", "neg", "identity", "sub")], "-g - 0.0001 * w"),
    ([("noise", "g", "identity", "identity", "add")], "0.1 * noise + g"),
    ([("g", "g", "log_abs", "sqrt_abs", "mul")], "log(abs(g)) * sqrt(abs(g))"),
    ([("g", "g", "clip_1e-5", "drop_0.3", "max")], "max(clip(g, 1e-5), drop(g, 0.3))"),
    ([("adam", "rmsprop", "identity", "identity", "min")],
     "min(mhat / (sqrt(vhat) + eps), g / (sqrt(v) + eps))"),
    ([("annealed_noise", "ld", "identity", "bound", "pow")], "(noise * (1 + t)^(-0.275))^bound(ld)"),
    # @i is the result of group i
    ([("sign(g)", "sign(m)", "identity", "identity", "mul"), ("@0", "g", "exp", "identity", "mul")],
     "exp(sign(g) * sign(m)) * g"),
    ([("g", "g^2", "identity", "identity", "add"), ("@0", "@0", "identity", "neg", "sub"),
      ("2", "@1", "identity", "identity", "pow")], "2^((g + g^2) - (-(g + g^2)))"),
]


@pytest.mark.parametrize(("groups", "text"), MEANINGS)
def test_groups_mean_the_expected_rule(groups, text: str) -> None:
    assert rule_from_groups(groups) == parse(text)


def test_powersign_from_groups_is_the_known_rule() -> None:
    groups = [("sign(g)", "sign(m)", "identity", "identity", "mul"), ("@0", "g", "exp", "identity", "mul")]
    assert rule_from_groups(groups, nos_vocabulary(2)) == known_rules()["powersign"]


def test_every_operand_token_parses() -> None:
    for token, text in ALL_OPERANDS.items():
        assert rule_from_groups([(token, "g", "identity", "identity", "keep_left")]) == parse(text)


# groups, vocabulary, words the error must contain
ILLEGAL = [
    ([("g", "x", "identity", "exp", "mul")], None, ["group 0", "op2", "'x'"]),
    ([("g", "g", "identity", "identity", "mul"), ("@1", "g", "identity", "identity", "mul")], None,
     ["group 1", "op1", "'@1'", "did you mean"]),
    ([("@0", "g", "identity", "identity", "mul")], None, ["group 0", "op1", "'@0'"]),
    ([("g", "g", "bound", "identity", "mul")], nos_vocabulary(), ["group 0", "unary1", "'bound'"]),
    ([("g", "g", "identity", "sign", "max")], nos_vocabulary(), ["group 0", "binary", "'max'"]),
    ([("g", "g", "identity", "identity", "exp")], None, ["group 0", "binary", "'exp'"]),
    ([("g", "g", "identity")], None, ["group 0 has 3 tokens"]),
    ([], None, ["at least one group"]),
]


@pytest.mark.parametrize(("groups", "vocabulary", "words"), ILLEGAL)
def test_illegal_tokens_name_group_and_position(groups, vocabulary, words: list[str]) -> None:
    with pytest.raises(RuleError) as caught:
        rule_from_groups(groups, vocabulary)
    for word in words:
        assert word in str(caught.value)


def test_nos_vocabulary_sizes() -> None:
    vocab = nos_vocabulary()
    assert (len(vocab.operands), len(vocab.unary), len(vocab.binary)) == (17, 12, 6)
    assert vocab.groups == 2
    assert vocab.operands == tuple(NOS_OPERANDS)
    # later groups may also pick earlier results
    assert len(vocab.choices(0, 0)) == 17 and vocab.choices(1, 1)[-1] == "@0"
    assert vocab.choices(1, 2) == vocab.unary and vocab.choices(1, 4) == vocab.binary


def test_vocabulary_subsets_validate_names() -> None:
    small = GroupVocabulary(operands=("g", "sign(m)"), unary=("identity", "exp"), binary=("mul",), groups=1)
    assert rule_from_groups([("g", "sign(m)", "identity", "exp", "mul")], small) == parse("g * exp(sign(m))")
    with pytest.raises(RuleError, match="did you mean g"):
        GroupVocabulary(operands=("g", "gg"))
    with pytest.raises(RuleError, match="unknown unary function 'expp'"):
        GroupVocabulary(unary=("expp",))
    with pytest.raises(RuleError, match="unknown binary function"):
        GroupVocabulary(binary=("div", "xor"))
    with pytest.raises(RuleError, match="without repeats"):
        GroupVocabulary(unary=("exp", "exp"))
    with pytest.raises(RuleError, match="non-empty"):
        GroupVocabulary(operands=())
    with pytest.raises(RuleError, match="from 1 to 8"):
        GroupVocabulary(groups=0)


def test_the_full_vocabulary_is_the_default() -> None:
    vocab = GroupVocabulary()
    assert (vocab.operands, vocab.unary, vocab.binary) == (tuple(ALL_OPERANDS), tuple(ALL_UNARY),
                                                           tuple(ALL_BINARY))


@settings(max_examples=100, derandomize=True, deadline=None)
@given(group_rules(max_groups=4))
def test_random_legal_groups_give_well_formed_rules(rule: Rule) -> None:
    assert isinstance(rule, Rule) and rule.size() >= 1
    assert parse(str(rule)) == rule
