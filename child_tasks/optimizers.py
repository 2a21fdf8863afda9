"""Names to optimizers: torch's baselines, the rule language's known rules, and rule text.

`resolve_optimizer("adam")` gives an `OptimizerSpec`, which builds the optimizer for a model once the lr
is known. Torch's own optimizers are the baselines rules are compared with, and Lion (Chen et al. 2023),
which torch lacks, is the rule language's lion with its authors' betas (0.9, 0.99), on the multi-tensor
path; its weight decay is coupled as the language's is (`dsl.optimizer`). A bare name that is both a
baseline and a known rule (sgd, momentum, nesterov, adam, amsgrad, rmsprop, lion) means the baseline,
``rule:adam`` asks for the rule-language version and ``torch:adam`` names the baseline explicitly
(``torch:lion`` too, though it is not torch's). Baselines keep torch's defaults (RMSprop's alpha is 0.99;
momentum and Nesterov use 0.9).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dsl import Rule, known_rules, parse
from dsl.optimizer import RuleOptimizer

Factory = Callable[[list[nn.Parameter], float, float], torch.optim.Optimizer]
BASELINES: dict[str, Factory] = {
    "sgd": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, weight_decay=wd),
    "momentum": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=wd),
    "nesterov": lambda p, lr, wd: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True, weight_decay=wd),
    "adam": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, weight_decay=wd),
    "adamw": lambda p, lr, wd: torch.optim.AdamW(p, lr=lr, weight_decay=wd),
    "amsgrad": lambda p, lr, wd: torch.optim.Adam(p, lr=lr, amsgrad=True, weight_decay=wd),
    "rmsprop": lambda p, lr, wd: torch.optim.RMSprop(p, lr=lr, weight_decay=wd),
    "adagrad": lambda p, lr, wd: torch.optim.Adagrad(p, lr=lr, weight_decay=wd),
    "adadelta": lambda p, lr, wd: torch.optim.Adadelta(p, lr=lr, weight_decay=wd),
    "adamax": lambda p, lr, wd: torch.optim.Adamax(p, lr=lr, weight_decay=wd),
    "nadam": lambda p, lr, wd: torch.optim.NAdam(p, lr=lr, weight_decay=wd),
    "radam": lambda p, lr, wd: torch.optim.RAdam(p, lr=lr, weight_decay=wd),
    "lion": lambda p, lr, wd: RuleOptimizer(p, "lion", lr=lr, weight_decay=wd, foreach=True),
}


@dataclass(frozen=True)
class OptimizerSpec:
    """A resolved optimizer: its label in tables, and a rule or a baseline name."""
    label: str
    rule: Rule | None = None
    baseline: str | None = None
    hyper: tuple[tuple[str, float], ...] = ()

    def make(self, params: list[nn.Parameter], lr: float, weight_decay: float,
             total_steps: int) -> torch.optim.Optimizer:
        if self.baseline is not None:
            return BASELINES[self.baseline](params, lr, weight_decay)
        # T is the horizon of the decays ld, cd, rd: the full run, so short runs see the same schedule.
        hyper = {"T": float(total_steps), **dict(self.hyper)}
        return RuleOptimizer(params, self.rule, lr=lr, weight_decay=weight_decay, foreach=True, **hyper)


def resolve_optimizer(rule_or_baseline: Rule | str | OptimizerSpec,
                      hyper: Mapping[str, float] | None = None) -> OptimizerSpec:
    """A Rule, a baseline name, a known rule's name, ``torch:NAME`` / ``rule:NAME``, or rule text."""
    hyper_items = tuple(sorted((hyper or {}).items()))
    if isinstance(rule_or_baseline, OptimizerSpec):
        return rule_or_baseline
    rules = known_rules()
    if isinstance(rule_or_baseline, Rule):
        names = [n for n, r in rules.items() if r == rule_or_baseline]
        label = names[0] if names else str(rule_or_baseline)
        return OptimizerSpec(label, rule=rule_or_baseline, hyper=hyper_items)
    if not isinstance(rule_or_baseline, str):
        raise TypeError(f"expected a Rule, a name or rule text, got {type(rule_or_baseline).__name__}")
    text = rule_or_baseline.strip()
    prefix, _, name = text.partition(":")
    if prefix == "torch" and name or text in BASELINES:
        name = name if prefix == "torch" else text
        if name not in BASELINES:
            raise ValueError(f"unknown torch baseline {name!r}{_suggest(name, BASELINES)}; "
                             f"baselines: {', '.join(BASELINES)}")
        if hyper_items:
            raise ValueError(f"hyper-constants {dict(hyper_items)} apply to rules, not to the torch baseline "
                             f"{name!r}" + (f" (for the rule, say 'rule:{name}')" if name in rules else ""))
        return OptimizerSpec(text, baseline=name)
    if prefix == "rule" and name:
        if name not in rules:
            raise ValueError(f"unknown rule {name!r}{_suggest(name, rules)}; known rules: {', '.join(rules)}")
        return OptimizerSpec(text, rule=rules[name], hyper=hyper_items)
    if text in rules:
        return OptimizerSpec(text, rule=rules[text], hyper=hyper_items)
    try:
        rule = parse(text)
    except ValueError as err:
        if re.fullmatch(r"[A-Za-z_]\w*", text):  # a name, not a formula: say which names exist
            names = list(dict.fromkeys([*BASELINES, *rules]))
            raise ValueError(f"unknown optimizer {text!r}{_suggest(text, names)}; baselines: "
                             f"{', '.join(BASELINES)}; known rules: {', '.join(rules)}") from None
        raise ValueError(f"{text!r} is neither an optimizer name nor valid rule text:\n{err}") from err
    return OptimizerSpec(text, rule=rule, hyper=hyper_items)


def _suggest(name: str, choices: Any) -> str:
    close = difflib.get_close_matches(name, list(choices), n=3, cutoff=0.6)
    return f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
