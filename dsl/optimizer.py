"""Rules as PyTorch optimizers: `RuleOptimizer`, `optimizer_class`, and the functional `rule_step`.

`RuleOptimizer(params, rule, lr=..., **hyper)` is a torch.optim.Optimizer that applies
``w <- w - lr * d`` with d the rule's value. As torch's own optimizers it keeps its hyper-constants in
the param groups (each group may override any), its state per parameter (``step`` and only the buffers
the rule reads: m, v, m3, vmax), and offers three execution paths, as torch's Adam does:

* the default (``foreach=None`` or ``True``): multi-tensor `torch._foreach_*` kernels (dsl/foreach.py);
* ``foreach=False``: a plain loop over the tensors (dsl/single_tensor.py), the reference the others are
  tested against;
* ``fused=True``: the whole step compiled by torch.compile into one elementwise pass per tensor
  (dsl/fused.py), falling back to running it eagerly where compile is unavailable.

``weight_decay`` is coupled for every rule: g <- g + weight_decay * w before the rule reads g (inside
lion's sign; Lion's paper decouples it, which is the rule ``... + wd * w``).

AdaBound's bounds need the lr the run started with: it lives in each param group as ``initial_lr``, the
key torch's LR schedulers use, so deepcopy, pickling and state_dict keep it and a scheduler that scales lr
scales the bounds too, as the adabound package intends (without its faults).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from dsl.errors import RuleSyntaxError
from dsl.evaluate import step_quantities
from dsl.expr import Rule
from dsl.foreach import apply_rule, lazy_leaves
from dsl.fused import SCALAR_NAMES, run_fused, scalar_vector
from dsl.known import KNOWN_RULE_TEXT, known_rules, reference_defaults
from dsl.quantities import STATE, eta_ratio
from dsl.single_tensor import single_tensor_step
from dsl.text import parse
from dsl.vocabulary import HYPERS, LEARNING_RATE, OPTIMIZER_HYPERS, hyper_defaults, known_names


_CHECKED = {**HYPERS, **OPTIMIZER_HYPERS, "lr": LEARNING_RATE}


def _check_hypers(values: Mapping[str, Any], where: str) -> None:
    """Raise ValueError naming each hyper-constant (and lr) in ``values`` outside its range
    (`dsl.vocabulary`), as torch.optim does for betas out of [0, 1): a bad value fails here, not as a
    division by zero or a nan weight steps later (lr = nan or inf made every weight nan)."""
    problems = [problem for name, value in values.items()
                if (hyper := _CHECKED.get(name)) is not None
                and (problem := hyper.problem(value)) is not None]
    if problems:
        raise ValueError(where + "; ".join(problems))


def _as_rule(rule: Rule | str) -> Rule:
    """A `Rule`, rule text, or the name of a known rule (`dsl.known`: "adam", "powersign"), as torch
    users name an optimizer."""
    if not isinstance(rule, str):
        return rule
    if rule in KNOWN_RULE_TEXT:
        return known_rules()[rule]
    try:
        return parse(rule)
    except RuleSyntaxError as err:
        if not rule.strip().isidentifier():
            raise
        # One unknown word: most likely a known rule's name misspelled ("Adam", "powersgn").
        word = rule.strip()
        close = difflib.get_close_matches(word.lower(), [*KNOWN_RULE_TEXT, *known_names()], n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else f"known rules: {', '.join(KNOWN_RULE_TEXT)}"
        raise RuleSyntaxError(rule, err.position, err.found, "rule text or the name of a known rule",
                              hint) from None


# torch.optim's spelling of the running averages' decays, betas=(beta1, beta2), in the language's order
# (mb2 and v share beta2). Lion's users spell its betas the same way: betas=(0.9, 0.99).
_BETAS = tuple(dict.fromkeys(buffer.decay for buffer in STATE.values() if buffer.decay))


def _spell_out_betas(values: dict[str, Any], where: str) -> None:
    """Replace torch's ``betas=(b1, b2)`` (or ``(b1, b2, b3)``) in ``values`` by the language's beta1,
    beta2 (beta3), in place. A beta given both ways is refused, naming both spellings."""
    if "betas" not in values:
        return
    given = values.pop("betas")
    try:
        betas = None if isinstance(given, (str, bytes)) else tuple(given)
    except TypeError:  # not a sequence
        betas = None
    if betas is None or not 2 <= len(betas) <= len(_BETAS):
        raise ValueError(f"{where}betas must be ({', '.join(_BETAS[:2])}) or ({', '.join(_BETAS)}) as in "
                         f"torch.optim.Adam, got {given!r}")
    for i, (name, value) in enumerate(zip(_BETAS, betas, strict=False)):
        if name in values:
            raise ValueError(f"{where}{name} is given twice, as {name}={values[name]!r} and as "
                             f"betas[{i}]={value!r}: give one of them")
        values[name] = value


def _scalars(group: Mapping[str, Any], t: float) -> dict[str, float]:
    values = dict(step_quantities(t, group, eta_ratio(group)))
    values.update({name: group[name] for name in SCALAR_NAMES if name in group})
    return values


def _update_state(grads: list[torch.Tensor], state: Mapping[str, list[torch.Tensor]],
                  group: Mapping[str, Any]) -> None:
    """The running averages, in place, by each buffer's multi-tensor form (`dsl.quantities`)."""
    for name, buffer in STATE.items():
        if name in state:
            buffer.foreach(state[name], grads, group, state)


def rule_step(rule: Rule, params: list[torch.Tensor], grads: list[torch.Tensor],
              state: Mapping[str, list[torch.Tensor]], group: Mapping[str, Any], t: float,
              fused: bool = False, foreach: bool | None = None) -> None:
    """One step of ``rule`` on tensors that share a device, a dtype and the step count ``t``.

    ``state`` maps each buffer the rule needs (``rule.state``) to one tensor per parameter; ``group``
    holds lr and the hyper-constants. Weights and state are updated in place. The path: ``fused``, else
    one tensor at a time where ``foreach`` is False, else multi-tensor.
    """
    scalars = _scalars(group, t)
    if fused and group["lr"] != 0:
        run_fused(rule, params, grads, state, scalar_vector(rule, scalars, params[0]),
                  maximize=group["maximize"], decay=group["weight_decay"] != 0)
        return
    if foreach is False:
        single_tensor_step(rule, params, grads, state, group, scalars)
        return
    if group["maximize"]:
        grads = torch._foreach_neg(grads)
    if group["weight_decay"] != 0:
        grads = torch._foreach_add(grads, params, alpha=group["weight_decay"])
    _update_state(grads, state, group)
    if group["lr"] == 0:  # the state advances and the weights stay, as with torch's optimizers
        return
    tensors = {**state, "g": grads, "w": params}
    if "noise" in rule.names:
        tensors["noise"] = [torch.randn_like(p) for p in params]
    apply_rule(rule.expr, params, lazy_leaves(rule.names, tensors, scalars), scalars, group["lr"])


class RuleOptimizer(Optimizer):
    """A torch.optim.Optimizer running a rule of the language: ``w <- w - lr * rule``.

    Args:
        params: parameters or param groups, as for any torch optimizer.
        rule: a `Rule`, rule text such as ``"exp(sign(g) * sign(m)) * g"``, or the name of a known rule
            (`dsl.known`: ``"adam"``, ``"powersign"``).
        lr: learning rate.
        weight_decay: coupled L2, ``g <- g + weight_decay * w`` before the rule.
        foreach / fused: the execution path: multi-tensor kernels (foreach None or True), one tensor at
            a time (foreach=False), or one compiled pass per tensor (fused=True).
        maximize: ascend instead of descend.
        **hyper: hyper-constants of the language (beta1, beta2, beta3, eps, final_lr, gamma, T,
            cd_periods, rd_periods); see dsl.vocabulary.HYPERS for their meaning and defaults, which a
            reference rule may set apart (dsl.known.KNOWN_RULE_DEFAULTS: lion's beta2 is 0.99).
            ``betas=(beta1, beta2)`` (or with beta3) is accepted as torch spells it, here and in param
            groups; a group then holds beta1 and beta2 (torch's betas key is not kept).
    """

    rule: Rule

    def __init__(self, params: Iterable[Any], rule: Rule | str | None = None, lr: float = 1e-3, *,
                 weight_decay: float | None = None, foreach: bool | None = None, fused: bool | None = None,
                 maximize: bool = False, **hyper: float) -> None:
        bound = getattr(type(self), "rule", None)
        if rule is None and bound is None:
            raise TypeError("RuleOptimizer needs a rule: RuleOptimizer(params, 'g', lr=0.1)")
        self.rule = _as_rule(rule) if rule is not None else bound
        defaults = {**hyper_defaults(), **reference_defaults(self.rule),
                    **getattr(type(self), "hyper_defaults", {})}
        if weight_decay is None:  # a class made by optimizer_class may set its own default
            weight_decay = defaults.pop("weight_decay", 0.0)
        defaults.pop("weight_decay", None)
        _spell_out_betas(hyper, "")
        unknown = sorted(set(hyper) - set(defaults))
        if unknown:
            raise TypeError(f"unknown hyper-constant(s) {', '.join(unknown)}; known: {', '.join(defaults)}")
        defaults.update(hyper, lr=lr, weight_decay=weight_decay, maximize=maximize,
                        foreach=foreach, fused=bool(fused))
        if foreach and fused:
            raise ValueError("foreach and fused are two execution paths: choose one")
        _check_hypers(defaults, "")
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        where = f"param group {len(self.param_groups)}: "
        _spell_out_betas(param_group, where)
        # The lr a group starts with, for AdaBound's bounds; the key torch's LR schedulers also use.
        param_group.setdefault("initial_lr", param_group.get("lr", self.defaults["lr"]))
        _check_hypers(param_group, where)
        super().add_param_group(param_group)

    def state_dict(self) -> dict[str, Any]:
        # The rule's text travels with its state, so that another rule's state is refused on load.
        return {**super().state_dict(), "rule": str(self.rule)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """torch's load_state_dict, after checking that the state is this rule's (the saved rule's
        text, and each parameter's buffers: a state dict of another optimizer lacks them) and that
        every group's lr and hyper-constants are in range."""
        saved = state_dict.get("rule")
        if saved is not None and saved != str(self.rule):
            raise ValueError(f"the state dict is of the rule {saved!r}, not of this optimizer's "
                             f"{str(self.rule)!r}")
        for key, state in state_dict.get("state", {}).items():
            missing = [name for name in ("step", *self.rule.state) if name not in state]
            if missing:
                raise ValueError(f"the state dict's parameter {key} has no {', '.join(missing)}, which the "
                                 f"rule {str(self.rule)!r} keeps: is it another optimizer's?")
        for i, group in enumerate(state_dict.get("param_groups", [])):
            _check_hypers(group, f"the state dict's param group {i}: ")
        super().load_state_dict(state_dict)

    def _init_state(self, p: torch.Tensor) -> dict[str, Any]:
        state = self.state[p]
        if not state:
            state["step"] = torch.tensor(0.0, dtype=torch.float32)
            for name in self.rule.state:
                state[name] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001, ANN201 (torch.optim's signature)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        state_names = self.rule.state
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if p.grad.is_sparse:
                    raise RuntimeError("RuleOptimizer does not support sparse gradients")
                if torch.is_complex(p):
                    raise RuntimeError("RuleOptimizer does not support complex parameters")
            states = [self._init_state(p) for p in params]
            if not states:
                continue
            steps = [st["step"] for st in states]
            torch._foreach_add_(steps, 1.0)
            # Tensors that share a device, dtype and step count go through one multi-tensor call.
            buckets: dict[tuple, tuple[list, list, dict[str, list]]] = {}
            for p, st, t in zip(params, states, torch.stack(steps).tolist()):
                bucket = buckets.setdefault((p.device, p.dtype, t), ([], [], {n: [] for n in state_names}))
                bucket[0].append(p)
                bucket[1].append(p.grad)
                for name in state_names:
                    bucket[2][name].append(st[name])
            for (_, _, t), (ps, grads, buffers) in buckets.items():
                rule_step(self.rule, ps, grads, buffers, group, t, fused=group["fused"],
                          foreach=group.get("foreach"))
        return loss

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rule={str(self.rule)!r}, " + super().__repr__().split(" (", 1)[1]

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "rule": self.rule}  # torch's keeps groups and state only

    def __reduce__(self):  # noqa: ANN204
        # A class made by optimizer_class is not importable by name: pickle the recipe instead.
        return (_restore, (getattr(type(self), "recipe", None),), self.__getstate__())


def _restore(recipe: tuple[Rule, str, tuple[tuple[str, float], ...]] | None) -> RuleOptimizer:
    cls = RuleOptimizer if recipe is None else _make_class(*recipe)
    return cls.__new__(cls)


@functools.cache
def _make_class(rule: Rule, name: str, defaults: tuple[tuple[str, float], ...]) -> type[RuleOptimizer]:
    hyper = dict(defaults)
    default_lr = hyper.pop("lr", 1e-3)

    def __init__(self, params: Iterable[Any], lr: float = default_lr, **kwargs: Any) -> None:
        RuleOptimizer.__init__(self, params, None, lr, **kwargs)

    doc = (f"The rule ``{rule}`` as a torch optimizer: {name}(params, lr={default_lr:g}, **hyper); see "
           "RuleOptimizer for the arguments.")
    return type(name, (RuleOptimizer,), {"rule": rule, "hyper_defaults": hyper, "__doc__": doc,
                                         "__init__": __init__, "__module__": __name__,
                                         "recipe": (rule, name, defaults)})


def optimizer_class(rule: Rule | str, name: str, **hyper_defaults: float) -> type[RuleOptimizer]:
    """A RuleOptimizer subclass with ``rule`` bound: ``PowerSign = optimizer_class(rule, "PowerSign")``.

    ``hyper_defaults`` change the defaults of lr and of the language's hyper-constants for this class.
    The same arguments give the same class.
    """
    if not name.isidentifier():
        raise ValueError(f"an optimizer class name must be a Python identifier, got {name!r}")
    _spell_out_betas(hyper_defaults, "")
    return _make_class(_as_rule(rule), name, tuple(sorted(hyper_defaults.items())))
