"""The reference rules, each written once as rule text.

Each is the direction d of ``w <- w - lr * d`` with the optimizer's hyper-constants; the comment on a
rule says which torch or reference optimizer it equals and with which settings.
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


@cache
def _parsed() -> dict[str, Rule]:
    return {name: parse(text) for name, text in KNOWN_RULE_TEXT.items()}


def known_rules() -> dict[str, Rule]:
    """Name -> Rule for every reference rule (a fresh dict; the rules themselves are immutable)."""
    return dict(_parsed())
