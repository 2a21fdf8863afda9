"""The reference rules, each written once as rule text, and their canonical keys.

Each is the direction d of ``w <- w - lr * d`` with the optimizer's hyper-constants; the comment on a
rule says which torch or reference optimizer it equals and with which settings.

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
    "addsign_rd": "142660e74cf95024",
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
