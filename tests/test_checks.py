"""Static rejection of rules that cannot train."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from dsl import known_rules, nos_vocabulary, parse, rule_from_groups, why_invalid
from dsl.checks import MIN_COSINE, mean_cosine
from dsl.equivalence import probes


@pytest.mark.parametrize("name", sorted(known_rules()))
def test_every_known_rule_passes(name: str) -> None:
    assert why_invalid(known_rules()[name]) is None


# rule text -> the reason it is rejected (exactly), or None
VERDICTS = [
    ("1", "constant (1)"),
    ("0", "constant (0)"),
    ("g - g", "constant (0)"),
    ("sign(g)^2", "constant (1)"),  # 1 wherever the gradient is nonzero
    ("g / g", "constant (1)"),
    ("0.1 * w", "does not depend on the gradient"),
    ("noise", "does not depend on the gradient"),
    ("w * exp(ld)", "does not depend on the gradient"),
    ("exp(g^3)^2", "not finite on ordinary inputs (7% of ordinary values)"),
    ("exp(exp(g)) * g", "not finite on ordinary inputs (8% of ordinary values)"),
    ("g^2", "one sign only (never negative)"),
    ("exp(g)", "one sign only (never negative)"),
    ("-abs(m)", "one sign only (never positive)"),
    ("-g", "points away from the gradient (mean cosine -1.00 < 0.15)"),
    ("m - g", "points away from the gradient (mean cosine -0.80 < 0.15)"),
    ("log(abs(g))", "points away from the gradient (mean cosine -0.01 < 0.15)"),
    ("g", None),
    ("sign(m)", None),  # Lion's direction
    ("1 / g", None),  # undefined at g = 0 only, which is not an ordinary input
    ("g + noise", None),
    ("drop(g, 0.5)", None),
    ("g^3", None),
    ("clip(g, 1e-5)", None),
    ("mhat / (sqrt(vhat) + eps) + 0.01 * w", None),
]


@pytest.mark.parametrize(("text", "reason"), VERDICTS)
def test_verdicts(text: str, reason: str | None) -> None:
    assert why_invalid(parse(text)) == reason


def test_reasons_start_with_stable_phrases() -> None:
    phrases = ("constant", "does not depend on the gradient", "not finite on ordinary inputs",
               "one sign only", "points away from the gradient")
    for _, reason in VERDICTS:
        assert reason is None or reason.startswith(phrases)


def test_nos_rules_get_a_mix_of_verdicts() -> None:
    rng = random.Random(3)
    vocab = nos_vocabulary(1)
    counts: Counter[str | None] = Counter()
    for _ in range(300):
        groups = [tuple(rng.choice(vocab.choices(0, p)) for p in range(5))]
        reason = why_invalid(rule_from_groups(groups, vocab))
        counts[reason.split(" (")[0] if reason else None] += 1
    assert set(counts) == {None, "constant", "does not depend on the gradient",
                           "not finite on ordinary inputs", "one sign only", "points away from the gradient"}
    # Random rules are mostly unusable, but a good share is worth training.
    assert 0.1 < counts[None] / 300 < 0.5
    assert all(count >= 10 for count in counts.values())


def test_mean_cosine_is_per_block() -> None:
    env = probes()
    g = env.values["g"]
    assert mean_cosine(g, g, env.block) == pytest.approx(1.0)
    assert mean_cosine(-g, g, env.block) == pytest.approx(-1.0)
    # sign(g) would score about 1/sqrt(N) against the largest block alone; per block it is high
    assert mean_cosine(g.sign(), g, env.block) > 0.7
    assert mean_cosine(g * 0, g, env.block) == 0.0  # no direction at all
    assert MIN_COSINE == 0.15


def test_why_invalid_wants_a_rule() -> None:
    with pytest.raises(TypeError):
        why_invalid("g")
