"""The reference rules, each written once as rule text, and their canonical keys.

Each is the direction d of ``w <- w - lr * d`` with the optimizer's hyper-constants; the comment on a
rule says which torch or reference optimizer it equals and with which settings. A reference rule whose
authors chose other defaults than the language's (lion's beta2 = 0.99) says so in `KNOWN_RULE_DEFAULTS`,
and the optimizers built on it start from them (`reference_defaults`).

`KNOWN_RULE_KEYS` pins each reference rule's `dsl.canonical_key`. Keys are stored in every run's
evaluations and every record, so a change to the probes or the hash that moved them would orphan what
users have: tests/test_equivalence.py recomputes every key and fails on any difference. Being pinned, a
reference rule's key can be read without computing it (`reference_key`), which takes torch and the probes
(about 1.5 s of imports): `nos rules show adam` reads it from here.
"""

from __future__ import annotations

from functools import cache

from dsl.expr import Rule
from dsl.text import parse
from dsl.vocabulary import HYPERS

_BOUND = "bound(sqrt(1 - beta2^t) / (1 - beta1^t) / (sqrt({v}) + eps)) * m"

KNOWN_RULE_TEXT: dict[str, str] = {
    "sgd": "g",  # torch.optim.SGD
    "momentum": "m / (1 - beta1)",  # SGD(momentum=beta1): its buffer is the running sum m / (1 - beta1)
    "nesterov": "g + beta1 * m / (1 - beta1)",  # SGD(momentum=beta1, nesterov=True)
    "adam": "mhat / (sqrt(vhat) + eps)",  # torch.optim.Adam
    "amsgrad": "mhat / (sqrt(vmax / (1 - beta2^t)) + eps)",  # Adam(amsgrad=True)
    "rmsprop": "g / (sqrt(v) + eps)",  # RMSprop(alpha=beta2)
    "powersign": "exp(sign(g) * sign(m)) * g",  # NOS PowerSign, alpha = e
    "addsign": "(1 + sign(g) * sign(m)) * g",  # NOS AddSign, alpha = 1
    "adabound": _BOUND.format(v="v"),  # adabound.AdaBound
    "amsbound": _BOUND.format(v="vmax"),  # adabound.AdaBound(amsbound=True)
    # Lion (Chen et al. 2023) with betas=(beta1, beta2): the sign of c = beta1*m' + (1-beta1)*g, m' its
    # momentum before this step. The buffer mb2 = beta2*m' + (1-beta2)*g is updated before a rule reads
    # it, so beta2*c = beta1*mb2 + (beta2-beta1)*g, of the same sign (beta2 > 0; at beta2 = 0, m' is lost
    # and this is 0 where c is not). Lion's decoupled decay w <- w - lr*wd*w is `... + wd * w` (a number
    # for wd); weight_decay is coupled here as for every rule (g + weight_decay*w, inside the sign).
    "lion": "sign(beta1 * mb2 + (beta2 - beta1) * g)",
}
for _decay in ("ld", "cd", "rd"):
    KNOWN_RULE_TEXT[f"powersign_{_decay}"] = f"exp({_decay} * sign(g) * sign(m)) * g"
    KNOWN_RULE_TEXT[f"addsign_{_decay}"] = f"(1 + {_decay} * sign(g) * sign(m)) * g"


# dsl.canonical_key of each reference rule (module docstring). Regenerate only for a deliberate change of
# the key format, which also makes every stored key stale: {n: canonical_key(r) for n, r in known_rules()}.
KNOWN_RULE_KEYS: dict[str, str] = {
    "sgd": "f2c798d0216f0ca8", "momentum": "df015f1a029b3afa", "nesterov": "51b24d68db9591e5",
    "adam": "4a77842bdadfe71e", "amsgrad": "9221567983e4e6a1", "rmsprop": "7b1b341c4ccd1586",
    "powersign": "2127e15ec1ff17bd", "addsign": "5017088cfd783316", "adabound": "916d66991227e824",
    "amsbound": "ba7446a7be98c28c", "powersign_ld": "63e43012c921115d", "addsign_ld": "845e95a2b8451cd3",
    "powersign_cd": "43d7a43a6861aa17", "addsign_cd": "6394a577265b709b", "powersign_rd": "45e5476055e22497",
    "addsign_rd": "142660e74cf95024", "lion": "50243485f648993e",
}


# Hyper-constants whose default for a reference rule is its authors' rather than the language's
# (`dsl.vocabulary.HYPERS`): lion's betas are (0.9, 0.99), Adam's (0.9, 0.999).
KNOWN_RULE_DEFAULTS: dict[str, dict[str, float]] = {
    "lion": {"beta2": 0.99},
}


@cache
def _parsed() -> dict[str, Rule]:
    return {name: parse(text) for name, text in KNOWN_RULE_TEXT.items()}


def known_rules() -> dict[str, Rule]:
    """Name -> Rule for every reference rule (a fresh dict; the rules themselves are immutable)."""
    return dict(_parsed())


@cache
def _keys_by_rule() -> dict[Rule, str]:
    return {rule: KNOWN_RULE_KEYS[name] for name, rule in _parsed().items()}


def reference_key(rule: Rule) -> str | None:
    """The pinned canonical key of ``rule`` when it is a reference rule as written (not merely an
    equivalent one: that takes the key's computation), else None."""
    return _keys_by_rule().get(rule)


@cache
def _defaults_by_rule() -> dict[Rule, dict[str, float]]:
    return {_parsed()[name]: values for name, values in KNOWN_RULE_DEFAULTS.items()}


def reference_defaults(rule: Rule) -> dict[str, float]:
    """The defaults ``rule`` sets apart from the language's when it is a reference rule as written
    (`KNOWN_RULE_DEFAULTS`: lion's beta2 = 0.99), else {}. `dsl.RuleOptimizer` and the generated
    optimizer (`dsl.codegen`) start from them; an argument given still wins."""
    return dict(_defaults_by_rule().get(rule, {}))


def default_hypers(rule: Rule) -> dict[str, float]:
    """The default of each hyper-constant ``rule`` reads (`Rule.hypers_read`), in their order: the
    language's (`dsl.vocabulary.HYPERS`), or the reference rule's own (`reference_defaults`)."""
    own = _defaults_by_rule().get(rule, {})
    return {h: own.get(h, HYPERS[h].default) for h in rule.hypers_read}
