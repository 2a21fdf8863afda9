"""Probes, fingerprints and the canonical key under which equivalent rules coincide."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dsl import Rule, canonical_key, fingerprint, known_rules, parse, rule_from_groups
from dsl.equivalence import BLOCK_SCALES, PROBE_SETTINGS, canonical_form, probes, quantise
from dsl.evaluate import evaluate
from dsl.groups import GroupVocabulary

KNOWN = known_rules()


def rule(text: str) -> Rule:
    return KNOWN[text] if text in KNOWN else parse(text)


# Pairs that must share a key. Most are identified by sympy; the last ones only by their numbers.
SAME = [
    ("g + g", "2 * g"),
    ("-(-g)", "g"),
    ("sign(g) * sign(g) * g", "g"),  # also at g = 0: both are 0
    ("mhat", "m / (1 - beta1^t)"),
    ("vhat", "v / (1 - beta2^t)"),
    ("m3hat", "m3 * (1 - beta3^t)^(-1)"),
    ("(1 + sign(g) * sign(m)) * g", "g + sign(m) * abs(g)"),
    ("adam", "m / (1 - beta1^t) / (sqrt(v / (1 - beta2^t)) + eps)"),
    ("powersign", "g * exp(sign(m) * sign(g))"),
    ("clip(g, 1e-4)", "clamp(g, -0.0001, 0.0001)"),
    ("clip(g, 1e-4)", "min(max(g, -1e-4), 1e-4)"),
    ("max(g, m)", "max(m, g)"),
    ("g - m", "g + (-m)"),
    ("g / 2", "0.5 * g"),
    ("g * 0.1 * 10", "g"),
    ("sqrt(v)^2", "v"),
    ("exp(log(v))", "v"),
    ("drop(g, 0.3) + drop(g, 0.3)", "2 * drop(g, 0.3)"),  # one draw per distinct sub-expression
    ("g / g", "1"),  # sympy cancels; they differ only where g / g is undefined
    ("abs(g) * sign(g)", "g"),  # sympy keeps both: equal numbers decide
    ("(g - g^2) / (1 - g)", "g"),  # equal up to rounding
]

# Pairs that must not share a key.
DIFFERENT = [
    ("sign(g) * sign(g)", "1"),  # differ at g = 0, which the probes hold
    ("g", "1.0000001 * g"),  # 1e-7 relative: about one rounding step of the key
    ("g", "1.00000001 * g"),  # 1e-8: some of the ~1000 values still round differently
    ("m", "mhat"),
    ("0.9 * m", "beta1 * m"),  # beta1 is 0.9 only on the first probe
    ("adam", "mhat / (sqrt(vhat) + 1e-8)"),
    ("clip(g, 1e-5)", "clip(g, 1e-4)"),
    ("powersign", "powersign_ld"),
    ("v", "vmax"),
    ("noise", "0.1 * noise"),
    ("drop(g, 0.1)", "drop(g, 0.3)"),
    ("drop(g, 0.1)", "g"),
    ("ld", "cd"),
    ("cd", "rd"),
    ("t", "T"),
    ("sign(g)", "sign(m)"),
    ("bound(m)", "m"),
    ("log(abs(g))", "log(abs(m))"),
]


@pytest.mark.parametrize(("a", "b"), SAME)
def test_equivalent_rules_share_a_key(a: str, b: str) -> None:
    assert canonical_key(rule(a)) == canonical_key(rule(b))


@pytest.mark.parametrize(("a", "b"), DIFFERENT)
def test_different_rules_have_different_keys(a: str, b: str) -> None:
    assert canonical_key(rule(a)) != canonical_key(rule(b))


def test_every_known_rule_has_its_own_key() -> None:
    keys = {name: canonical_key(r) for name, r in KNOWN.items()}
    for (a, ka), (b, kb) in itertools.combinations(keys.items(), 2):
        assert ka != kb, f"{a} and {b} share a key"
    assert all(len(k) == 16 and int(k, 16) >= 0 for k in keys.values())


def test_the_pinned_keys_are_the_computed_ones() -> None:
    # Stored runs and records hold these keys: a change to the probes or the hash that moved them is a
    # change of the key format (dsl/known.py), never a side effect.
    from dsl.known import KNOWN_RULE_KEYS, reference_key

    assert KNOWN_RULE_KEYS == {name: canonical_key(r) for name, r in KNOWN.items()}
    assert reference_key(parse("mhat / (sqrt(vhat) + eps)")) == KNOWN_RULE_KEYS["adam"]
    # Only a reference rule as written is pinned; an equivalent one is computed (same key).
    assert reference_key(parse("mhat / (eps + sqrt(vhat))")) is None
    assert reference_key(parse("g * 1")) is None


def test_keys_are_cached() -> None:
    r = parse("g * exp(sign(g) * m)")
    first = canonical_key(r)
    hits = canonical_key.cache_info().hits
    assert canonical_key(parse("g * exp(sign(g) * m)")) == first
    assert canonical_key.cache_info().hits == hits + 1


def test_canonical_key_wants_a_rule() -> None:
    with pytest.raises(TypeError):
        canonical_key("g")


def test_canonical_form_falls_back_to_the_rule_where_sympy_leaves_the_language() -> None:
    r = parse("sqrt(0 - v) + g")  # sympy writes i * sqrt(v)
    assert canonical_form(r) == r
    assert canonical_form(parse("g + g")) == parse("2 * g")


def test_keys_do_not_depend_on_the_process() -> None:
    texts = [str(r) for r in KNOWN.values()] + ["g / (sqrt(abs(m)) + 1e-08) - 0.01 * w",
                                                "max(g, m) + drop(g, 0.5)"]
    here = [canonical_key(parse(t)) for t in texts]
    code = ("import sys; from dsl import parse, canonical_key; "
            "print(' '.join(canonical_key(parse(t)) for t in sys.argv[1:]))")
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", code, *texts], capture_output=True, text=True, env=env,
                         cwd=root, check=True, timeout=120)
    assert out.stdout.split() == here


def test_key_time_per_two_group_rule() -> None:
    import random

    rng = random.Random(7)
    vocab = GroupVocabulary(groups=2)
    rules = [rule_from_groups([tuple(rng.choice(vocab.choices(i, p)) for p in range(5)) for i in range(2)],
                              vocab) for _ in range(60)]
    canonical_key(parse("g"))  # probes built
    canonical_key.cache_clear()
    started = time.perf_counter()
    for r in rules:
        canonical_key(r)
    per_rule = (time.perf_counter() - started) / len(rules)
    assert per_rule < 0.05  # about 3 ms measured; generous for a loaded machine


# --- probes -----------------------------------------------------------------------------------

def test_probes_are_built_once_and_have_every_name() -> None:
    env = probes()
    assert probes() is env
    P, N = env.shape
    assert P == len(PROBE_SETTINGS) and N == len(BLOCK_SCALES) * 32
    for name in ("g", "w", "m", "v", "m3", "vmax", "noise", "mhat", "vhat", "m3hat"):
        assert env.values[name].shape == (P, N) and env.values[name].dtype == torch.float64
    for name in ("t", "ld", "cd", "rd", "beta1", "eps", "T", "bound_low", "bound_high"):
        assert env.values[name].shape == (P, 1)
    assert env.values["t"].flatten().tolist() == [1.0, 10.0, 1000.0, 100.0]


def test_probes_look_like_training() -> None:
    env = probes()
    g, m, v, vmax = (env.values[k] for k in ("g", "m", "v", "vmax"))
    assert bool((g == 0).any(dim=1).all())  # exact zeros in every probe
    assert ((m == 0) & (g == 0)).sum() > 0  # dead elements: no history either
    scales = g.abs()[g != 0]
    assert scales.min() < 1e-6 and scales.max() > 10  # mixed scales
    assert bool((vmax >= v).all()) and bool((vmax > v).any())  # vmax is the running max of v
    assert bool((env.values["bound_low"] < env.values["bound_high"]).all())
    # m follows g: per probe and block, after more than one step, they point the same way
    for p in range(1, env.shape[0]):
        for b in range(len(BLOCK_SCALES)):
            cols = env.block == b
            assert torch.nn.functional.cosine_similarity(g[p, cols], m[p, cols], dim=0) > 0.3


def test_hyper_constants_vary_between_probes_around_their_defaults() -> None:
    env = probes()
    for name in ("beta1", "beta2", "beta3", "eps", "gamma", "final_lr", "T"):
        column = env.values[name].flatten()
        assert len(set(column.tolist())) > 1, name
    assert env.values["beta1"][0, 0] == 0.9 and env.values["eps"][0, 0] == 1e-8


def test_fingerprint_is_the_rule_evaluated_on_each_probe() -> None:
    env = probes()
    r = KNOWN["adam"]
    fp = fingerprint(r)
    assert fp.shape == env.shape and fp.dtype == torch.float64
    expected = env.values["mhat"] / (env.values["vhat"].sqrt() + env.values["eps"])
    torch.testing.assert_close(fp, expected, rtol=1e-12, atol=0)
    assert torch.equal(fingerprint(parse("2")), torch.full(env.shape, 2.0, dtype=torch.float64))
    assert torch.equal(fingerprint(r), fp)  # deterministic, drop included:
    d = parse("drop(g, 0.5)")
    assert torch.equal(fingerprint(d), fingerprint(d))
    kept = fingerprint(d) != 0
    torch.testing.assert_close(fingerprint(d)[kept], 2 * env.values["g"][kept])


def test_fingerprint_matches_the_evaluator_on_one_probe() -> None:
    env = probes()
    row = {k: (v[2] if v.shape[1] > 1 else v[2, 0]) for k, v in env.values.items()}
    r = parse("g * exp(cd * sign(g) * sign(m)) + bound(m)")
    assert torch.equal(fingerprint(r)[2], evaluate(r.expr, row, env.rand))


# --- quantisation ---------------------------------------------------------------------------

def tokens(*values: float) -> list[list[int]]:
    return quantise(torch.tensor(values, dtype=torch.float64)).T.tolist()


def test_quantise_special_values_are_their_own_tokens() -> None:
    zero, nan, inf, ninf, one = tokens(0.0, float("nan"), float("inf"), float("-inf"), 1.0)
    assert zero == [0, 0]
    assert len({tuple(x) for x in (zero, nan, inf, ninf, one)}) == 5
    assert tokens(-0.0) == [zero]


def test_quantise_keeps_24_bits() -> None:
    assert tokens(1.0)[0] == tokens(1.0 + 1e-9)[0]  # within a rounding step
    assert tokens(1.0)[0] != tokens(1.0 + 1e-7)[0]  # beyond one
    assert tokens(0.99999999)[0] == tokens(1.0)[0]  # rounding up into the next binade
    assert tokens(-2.5)[0] == [-tokens(2.5)[0][0], tokens(2.5)[0][1]]
    assert tokens(1e-300)[0] != tokens(0.0)[0] and tokens(5e-324)[0] != tokens(0.0)[0]
