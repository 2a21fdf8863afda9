"""RuleOptimizer takes the arguments torch.optim users write: a known rule by name, torch's
``betas=(b1, b2)``, and an lr checked (finite, >= 0) wherever it comes in."""

from __future__ import annotations

import math

import pytest
import torch

from dsl import KNOWN_RULE_TEXT, RuleSyntaxError, known_rules
from dsl.optimizer import RuleOptimizer, optimizer_class
from tests.reference_optimizers import small_network, train


def params() -> list[torch.nn.Parameter]:
    return list(small_network().parameters())


@pytest.mark.parametrize("name", sorted(KNOWN_RULE_TEXT))
def test_a_known_rule_is_named_as_torch_users_name_optimizers(name: str):
    rule = known_rules()[name]
    assert RuleOptimizer(params(), name).rule == rule
    assert optimizer_class(name, "Named")(params()).rule == rule
    assert RuleOptimizer(params(), KNOWN_RULE_TEXT[name]).rule == rule  # its text still works too


@pytest.mark.parametrize(("text", "match"), [
    ("Adam", r"expected rule text or the name of a known rule, found unknown name 'Adam' \(did you "
              r"mean adam\?"),
    ("powersgn", r"did you mean powersign"),
    ("xyzzy", r"known rules: sgd, momentum, .*addsign_rd"),
    ("exp(g", r"expected"),  # text that is not one word: the parser's own message
])
def test_an_unknown_name_is_refused_with_the_known_names(text: str, match: str):
    with pytest.raises(RuleSyntaxError, match=match):
        RuleOptimizer(params(), text)


def test_betas_train_as_torch_adam_does():
    model = small_network()
    expected = train(model, torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.8, 0.99)), steps=30)
    model = small_network()
    got = train(model, RuleOptimizer(model.parameters(), "adam", lr=0.01, betas=(0.8, 0.99)), steps=30)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-12)


def _constructor(betas_kwargs: dict) -> dict:
    return RuleOptimizer(params(), "adam", **betas_kwargs).param_groups[0]


def _param_group(betas_kwargs: dict) -> dict:
    model = small_network()
    opt = RuleOptimizer([model[0].weight], "adam")
    opt.add_param_group({"params": [model[0].bias], **betas_kwargs})
    return opt.param_groups[1]


def _class_default(betas_kwargs: dict) -> dict:
    return optimizer_class("adam", "Betas", **betas_kwargs)(params()).param_groups[0]


WHERE = {"constructor": _constructor, "param group": _param_group, "class default": _class_default}


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("kwargs", "expected"), [
    (dict(betas=(0.8, 0.99)), dict(beta1=0.8, beta2=0.99, beta3=0.999)),
    (dict(betas=[0.5, 0.6, 0.7]), dict(beta1=0.5, beta2=0.6, beta3=0.7)),  # with NOS's beta3
    (dict(betas=(0.8, 0.99), beta3=0.5), dict(beta1=0.8, beta2=0.99, beta3=0.5)),
    (dict(beta1=0.7), dict(beta1=0.7, beta2=0.999, beta3=0.999)),  # the language's own spelling
])
def test_betas_set_the_language_s_decays(where: str, kwargs: dict, expected: dict):
    group = WHERE[where](dict(kwargs))
    assert {k: group[k] for k in expected} == expected and "betas" not in group


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize(("kwargs", "match"), [
    (dict(betas=(0.8, 0.99), beta2=0.9), r"beta2 is given twice, as beta2=0.9 and as betas\[1\]=0.99"),
    (dict(betas=(0.8, 0.99), beta1=0.8), r"beta1 is given twice"),  # even alike: say it once
    (dict(betas=0.9), r"betas must be \(beta1, beta2\) or \(beta1, beta2, beta3\) .*got 0.9"),
    (dict(betas=(0.9,)), r"betas must be .*got \(0.9,\)"),
    (dict(betas=(0.9, 0.99, 0.9, 0.9)), r"betas must be"),
    (dict(betas="0.9"), r"betas must be .*got '0.9'"),
    (dict(betas=(1.0, 0.99)), r"beta1 must be in \[0, 1\), got 1.0"),  # then checked as beta1 is
])
def test_bad_betas_are_refused_naming_them(where: str, kwargs: dict, match: str):
    with pytest.raises(ValueError, match=match):
        WHERE[where](dict(kwargs))


BAD_LR = [(-1.0, r"lr must be in \[0, inf\), got -1.0"), (math.nan, "lr must be a finite number, got nan"),
          (math.inf, "lr must be a finite number, got inf"), (-math.inf, "lr must be a finite number"),
          ("0.1", "lr must be a number, got '0.1'"), (None, "lr must be a number, got None")]


def _lr_in_constructor(lr: object) -> None:
    RuleOptimizer(params(), "adam", lr=lr)


def _lr_in_param_group(lr: object) -> None:
    model = small_network()
    opt = RuleOptimizer([model[0].weight], "adam", lr=0.01)
    try:
        opt.add_param_group({"params": [model[0].bias], "lr": lr})
    finally:
        assert len(opt.param_groups) == (1 if lr != 0.0 else 2)  # a refused group is not added


def _lr_in_state_dict(lr: object) -> None:
    model = small_network()
    saved = RuleOptimizer(model.parameters(), "adam", lr=0.01)
    train(model, saved, steps=1)
    state = saved.state_dict()
    state["param_groups"][0]["lr"] = lr
    RuleOptimizer(model.parameters(), "adam", lr=0.01).load_state_dict(state)


LR_WHERE = {"constructor": (_lr_in_constructor, ""), "param group": (_lr_in_param_group, "param group 1: "),
            "state dict": (_lr_in_state_dict, "the state dict's param group 0: ")}


@pytest.mark.parametrize("where", LR_WHERE)
@pytest.mark.parametrize(("lr", "match"), BAD_LR)
def test_an_lr_that_is_not_finite_and_nonnegative_is_refused_wherever_it_comes_in(where: str, lr: object,
                                                                                   match: str):
    check, prefix = LR_WHERE[where]
    with pytest.raises(ValueError, match="^" + prefix + match):
        check(lr)


@pytest.mark.parametrize("where", LR_WHERE)
def test_an_lr_of_zero_is_accepted_everywhere(where: str):
    LR_WHERE[where][0](0.0)
