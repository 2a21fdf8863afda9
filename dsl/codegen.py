"""A rule as the source of a self-contained PyTorch optimizer: one module that imports only torch and math.

`optimizer_source(rule, class_name, defaults)` walks the rule's tree and writes each node as a torch
expression (each function's source form, its row of `dsl.functions`), inside a `torch.optim.Optimizer`
subclass that a user copies into any project. It lives in dsl because it is one more form of a rule,
read from the same table as the others. The module computes what `dsl.RuleOptimizer` computes (its
default, multi-tensor path) with a plain per-tensor loop:

* the gradient with ``maximize`` and coupled ``weight_decay`` applied, then the running averages by
  their source forms in `dsl.quantities` (lerp for m, mul/addcmul for v, g*g*g for m3, maximum for
  vmax), and only the buffers the rule reads;
* the step quantities (t, ld, cd, rd, the bias corrections, AdaBound's bounds with ``initial_lr``) in
  Python floats by their source forms in `dsl.quantities`; the rule's per-step sub-expressions
  (``sqrt(1 - beta2^t)``) once per step in float64, as dsl folds them, so inf and nan come out as IEEE
  gives them; sub-expressions of constants only are folded here, by dsl itself;
* ``clamp`` as dsl defines it, ``min(max(x, low), high)``, and ``max``/``min`` of a tensor and a number
  as ``clamp_min``/``clamp_max`` (dsl's choice, which matters for NaN).

The values agree with dsl to rounding (dsl keeps scalings aside and fuses the last product into the
update). Random draws come from torch's global generator, as in dsl: a rule with one source of
randomness (``noise`` or one ``drop``) on parameters of one dtype and device draws the same numbers as
dsl's default path; with several sources dsl draws source by source over all tensors while this loop
draws tensor by tensor, so the numbers differ while their distribution is the same.
"""

from __future__ import annotations

import keyword
import textwrap
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from dsl.evaluate import evaluate_lazy
from dsl.expr import Call, Const, Expr, Rule, format_expr, nodes, scalar_subtrees, use_counts
from dsl.functions import FUNCTIONS
from dsl.known import default_hypers
from dsl.quantities import BIAS_CORRECTED, STATE, STEP_QUANTITIES, StepQuantity, needed_quantities
from dsl.source import ATOM, Code, literal, unprintable
from dsl.symbolic import to_sympy
from dsl.text import parse
from dsl.vocabulary import HYPERS, LEARNING_RATE, OPERANDS, Kind

def _split_clamp(expr: Expr) -> Expr:
    """clamp(x, lo, hi) as dsl defines it, min(max(x, lo), hi): then max(x, lo) of two numbers is a
    per-step sub-expression like any other."""
    if not isinstance(expr, Call):
        return expr
    args = tuple(_split_clamp(a) for a in expr.args)
    if expr.fn == "clamp":
        return Call("min", (Call("max", args[:2]), args[2]))
    return Call(expr.fn, args, expr.params)


def _foldable(expr: Expr) -> bool:
    """Constants only: no name, no random call, no step quantity (bound's range)."""
    return all(isinstance(n, Const) or (isinstance(n, Call) and not FUNCTIONS[n.fn].reads
                                        and not FUNCTIONS[n.fn].random) for n in nodes(expr))


@dataclass
class _Emitter:
    """Writes expressions as Python source; a sub-expression read more than once becomes a local."""

    leaf: Mapping[str, Code]  # name -> code of a Var
    hoisted: Mapping[Expr, Code] = field(default_factory=dict)  # sub-expressions given by name
    uses: Counter = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)
    memo: dict[Expr, Code] = field(default_factory=dict)
    scalar: bool = False  # the float64 section: numbers there are literals, names 0-d tensors
    temps: int = 0

    def emit(self, node: Expr) -> Code:
        if node in self.hoisted:
            return self.hoisted[node]
        if node in self.memo:
            return self.memo[node]
        if isinstance(node, Const) or (isinstance(node, Call) and _foldable(node)):
            code = literal(evaluate_lazy(node, {}))  # dsl's own folding
        elif not isinstance(node, Call):
            code = self.leaf[node.name]
        else:
            code = self._call(node, [self.emit(a) for a in node.args])
            if self.uses[node] > 1:  # one value, one draw: computed once
                name = f"{'s' if self.scalar else 'x'}{self.temps}"
                self.temps += 1
                self.lines.append(f"{name} = {code.text}")
                code = Code(name, ATOM, code.number)
        self.memo[node] = code
        return code

    def _call(self, node: Call, args: list[Code]) -> Code:
        spec = FUNCTIONS[node.fn]
        if spec.random:  # of a number it draws per element: the number takes the weight's shape
            args = [Code(f"torch.full_like(w, {a.text})") if a.number else a for a in args]
        return spec.source(args, node.params, self.scalar)


def _names_in(exprs: list[Expr]) -> set[str]:
    return {n.name for e in exprs for n in nodes(e) if not isinstance(n, (Const, Call))}


def _quantities_read(exprs: list[Expr]) -> list[str]:
    """The step quantities that the calls in ``exprs`` read besides their arguments (bound's range), in
    the order of `STEP_QUANTITIES`."""
    read = {r for e in exprs for n in nodes(e) if isinstance(n, Call) for r in FUNCTIONS[n.fn].reads}
    return [q for q in STEP_QUANTITIES if q in read]


def _unpack(names: list[str]) -> list[str]:
    """``a, b = q["a"], q["b"]``: the step quantities as locals (no line for none)."""
    return [f"    {', '.join(names)} = " + ", ".join(f'q["{n}"]' for n in names)] if names else []


def _step_quantities(rule: Rule) -> list[StepQuantity]:
    """The step quantities `_per_step` computes: those the rule reads, by name or through a call."""
    return needed_quantities(rule.names | set(_quantities_read([rule.expr])))


def _per_step_function(rule: Rule, hoisted: list[Expr], uses: Counter) -> list[str]:
    """The source of `_per_step(group, t)`: the step quantities and the rule's per-step sub-expressions."""
    names = rule.names
    lines = ["def _per_step(group: dict, t: float) -> dict:",
             '    """The per-step numbers the rule reads (Python floats), computed once per step count."""',
             '    q = {"t": t}']
    lines += [f'    q["{h}"] = group["{h}"]' for h in HYPERS if h in names]
    for quantity in _step_quantities(rule):
        target = quantity.name if quantity.local else f'q["{quantity.name}"]'
        comment = f"  # {quantity.comment}" if quantity.comment else ""
        lines.append(f"    {target} = {quantity.source}{comment}")
    if hoisted:
        lines.append("    # The rule's per-step sub-expressions, in float64 as dsl folds them (inf and nan "
                     "as IEEE gives them).")
        read = sorted(_names_in(hoisted))
        if read:
            lines.append(f"    f64 = {{k: torch.tensor(q[k], dtype=torch.float64) for k in {tuple(read)!r}}}")
        lines += _unpack(_quantities_read(hoisted))
        emitter = _Emitter({n: Code(f'f64["{n}"]') for n in read}, uses=uses, scalar=True)
        for i, expr in enumerate(hoisted):
            code = emitter.emit(expr)
            lines += [f"    {line}" for line in emitter.lines]
            emitter.lines.clear()
            lines.append(f"    # c{i} = {format_expr(expr)}")
            lines.append(f'    q["c{i}"] = float({code.text})')
    lines.append("    return q")
    return lines


def _direction_function(rule: Rule, expr: Expr, live: list[Expr], folded: list[Expr],
                        uses: Counter) -> tuple[list[str], bool]:
    """The source of `_direction(w, g, state, q)`, and whether the direction is a number (not a tensor).

    ``live`` are the per-step sub-expressions `_per_step` computes (as c0, c1, ...), ``folded`` those of
    constants only."""
    lines = ["def _direction(w: torch.Tensor, g: torch.Tensor, state: dict, q: dict):",
             '    """The rule\'s value d (RULE) for one tensor w with gradient g."""']
    given = {h: Code(f"c{i}", ATOM, True) for i, h in enumerate(live)}
    given.update({h: literal(evaluate_lazy(h, {})) for h in folded})
    read: set[str] = set()  # names read outside the per-step sub-expressions
    calls: set[str] = set()

    def visit(node: Expr) -> None:
        if node in given or isinstance(node, Const):
            return
        if isinstance(node, Call):
            calls.add(node.fn)
            for a in node.args:
                visit(a)
        else:
            read.add(node.name)

    visit(expr)
    leaf: dict[str, Code] = {}
    for name in [n for n in OPERANDS if n in read and OPERANDS[n].kind is Kind.TENSOR]:
        if name in BIAS_CORRECTED:
            base, scale = BIAS_CORRECTED[name]
            lines.append(f'    {name} = state["{base}"] * q["{scale}"]')
        elif name == "noise":
            lines.append("    noise = torch.randn_like(w)")
        elif name not in ("g", "w"):
            lines.append(f'    {name} = state["{name}"]')
        leaf[name] = Code(name)
    numbers = [n for n in (*HYPERS, *OPERANDS) if n in read and n not in leaf]
    lines += [f'    {n} = q["{n}"]' for n in numbers]
    leaf.update({n: Code(n, ATOM, True) for n in numbers})
    lines += _unpack([q for q in STEP_QUANTITIES if any(q in FUNCTIONS[fn].reads for fn in calls)])
    reached = _reached(expr, given)
    lines += [f'    c{i} = q["c{i}"]  # {format_expr(h)}' for i, h in enumerate(live) if h in reached]
    emitter = _Emitter(leaf, given, uses)
    code = emitter.emit(expr)
    lines += [f"    {line}" for line in emitter.lines]
    lines.append(f"    return {code.text}")
    return lines, code.number


def _reached(expr: Expr, given: Mapping[Expr, Code]) -> set[Expr]:
    """The given sub-expressions the walk from ``expr`` meets (not those only inside others)."""
    found: set[Expr] = set()

    def visit(node: Expr) -> None:
        if node in given:
            found.add(node)
        elif isinstance(node, Call):
            for a in node.args:
                visit(a)

    visit(expr)
    return found


def _check(rule: Rule, class_name: str, defaults: Mapping[str, float],
           texts: Mapping[str, str]) -> dict[str, float]:
    if not class_name.isidentifier() or keyword.iskeyword(class_name):
        raise ValueError(f"an optimizer class name must be a Python identifier, got {class_name!r}")
    for what, text in texts.items():
        if (problem := unprintable(text)) is not None:
            raise ValueError(f"the generated module's {what} would hold {problem}: {text!r}")
    unknown = sorted(set(defaults) - {"lr", *HYPERS})
    if unknown:
        raise ValueError(f"unknown default(s) {', '.join(unknown)}; known: lr, {', '.join(HYPERS)}")
    for key, value in defaults.items():
        if (problem := (HYPERS.get(key) or LEARNING_RATE).problem(value)) is not None:
            raise ValueError(f"default {problem}")
    # Hyper-constants the rule does not read change nothing: they are left out of the signature.
    values = {"lr": 1e-3, **default_hypers(rule)}
    values.update({k: float(v) for k, v in defaults.items() if k in values})
    return values


def _docstring(rule: Rule, class_name: str, values: Mapping[str, float], module: str,
               about: str) -> list[str]:
    formula = str(to_sympy(rule, exact=False))
    settings = [f"{k}={v!r}" for k, v in values.items()]
    random = "noise" in rule.names or any(isinstance(n, Call) and FUNCTIONS[n.fn].random
                                          for n in nodes(rule.expr))
    text = [f"{class_name}: a PyTorch optimizer for the update rule", "",
            f"    w <- w - lr * d,    d = {rule}", "", f"(as sympy writes it, d = {formula}).", "",
            *([*textwrap.wrap(about, 100, break_on_hyphens=False), ""] if about else []),
            *textwrap.wrap(
                "Generated from the rule's tree by dsl.codegen of neural-optimizer-search: a "
                "self-contained module (torch and math only) to copy into any project. It computes what "
                "dsl.RuleOptimizer computes for the rule: g is the gradient (negated with maximize, plus "
                "weight_decay * w); m, v, m3 the running averages of g, g^2, g^3 with beta1, beta2, beta3 "
                "(mhat, vhat, m3hat bias-corrected); mb2 that of g with beta2 (Lion's); vmax the running "
                "maximum of v; t the step count; "
                "ld, cd, rd decays over T steps; bound AdaBound's clip, whose bounds follow the lr through "
                "the param group's initial_lr (as LR schedulers keep it).", 100, break_on_hyphens=False), "",
            f"    from {module} import {class_name}",
            f"    optimizer = {class_name}(model.parameters(), lr={values['lr']!r})", "",
            *_wrapped("Defaults (every param group may set its own): ", [*settings, "weight_decay=0.0",
                                                                        "maximize=False"], ".", indent=0)]
    if random:
        text += ["", "Random numbers come from torch's global generator (torch.manual_seed makes runs "
                 "repeat)."]
    body = "\n".join(text).replace("\\", "\\\\").replace('"""', r'\"\"\"')
    return ['"""' + body + '\n"""']


def _wrapped(head: str, items: list[str], tail: str, width: int = 100,
             indent: int | None = None) -> list[str]:
    """``head + ", ".join(items) + tail`` over lines of at most about ``width`` characters, continued
    under the head's end (or ``indent`` spaces in)."""
    lines, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else tail)
        if len(line) + len(piece.rstrip()) > width and line.strip() != head.strip():
            lines.append(line.rstrip())
            line = " " * (len(head) if indent is None else indent) + piece
        else:
            line += piece
    return lines + [line]


def optimizer_source(rule: Rule | str, class_name: str, defaults: Mapping[str, float] | None = None, *,
                     module: str | None = None, about: str = "") -> str:
    """The source of a module defining ``class_name``, a torch.optim.Optimizer running ``rule``.

    ``defaults`` sets the defaults of lr and of the hyper-constants (beta1, eps, ...); those the rule
    does not read are left out. The module imports only torch and math; ``module`` is its name in the
    docstring's usage line (default: the class name in lower case), ``about`` a paragraph for its
    docstring (where the rule comes from).
    """
    rule = parse(rule) if isinstance(rule, str) else rule
    values = _check(rule, class_name, dict(defaults or {}), {"module name": module or "", "about": about})
    expr = _split_clamp(rule.expr)
    hoisted = scalar_subtrees(expr)
    uses = use_counts(expr)
    live = [h for h in hoisted if not _foldable(h)]  # computed once per step, as c0, c1, ...
    per_step = _per_step_function(rule, live, uses)
    folded = [h for h in hoisted if _foldable(h)]
    direction, is_number = _direction_function(rule, expr, live, folded, uses)
    called = {n.fn for n in nodes(expr) if isinstance(n, Call)}
    helpers = [f.helper for f in FUNCTIONS.values() if f.name in called and f.helper]
    helpers += [q.helper for q in _step_quantities(rule) if q.helper]
    module = module or class_name.lower()
    state = rule.state
    update = ('p.add_(-group["lr"] * d)' if is_number else 'p.add_(d, alpha=-group["lr"])')
    code = [
        f"RULE = {str(rule)!r}", f"__all__ = [{class_name!r}]", "", "",
        *sum(([h, "", ""] for h in helpers), []),
        *per_step, "", "",
        *direction, "", "",
        f"class {class_name}(torch.optim.Optimizer):",
        '    """``w <- w - lr * d`` for the rule d in RULE: see the module\'s docstring."""', "",
        *_wrapped("    def __init__(", [
            "self", "params", f"lr: float = {values['lr']!r}", "*",
            *(f"{k}: float = {v!r}" for k, v in values.items() if k != "lr"),
            "weight_decay: float = 0.0", "maximize: bool = False"], ") -> None:"),
        "        if not 0.0 <= lr < math.inf:  # nan and inf too",
        '            raise ValueError(f"invalid learning rate: {lr}")',
        *_wrapped("        defaults = dict(", [*(f"{k}={k}" for k in values), "weight_decay=weight_decay",
                                                 "maximize=maximize"], ")"),
        "        super().__init__(params, defaults)",
        "",
        "    def add_param_group(self, param_group: dict) -> None:",
        "        # The lr a group starts with (AdaBound's bounds scale with lr / initial_lr); the key",
        "        # torch's LR schedulers also use, so state_dict, deepcopy and schedulers keep it.",
        '        lr = param_group.get("lr", self.defaults["lr"])',
        "        if not 0.0 <= lr < math.inf:",
        '            raise ValueError(f"invalid learning rate: {lr}")',
        '        param_group.setdefault("initial_lr", lr)',
        "        super().add_param_group(param_group)", "",
        "    @torch.no_grad()",
        "    def step(self, closure=None):",
        "        loss = None",
        "        if closure is not None:",
        "            with torch.enable_grad():",
        "                loss = closure()",
        "        for group in self.param_groups:",
        "            per_step = {}  # step count -> its numbers (the group's tensors usually share one)",
        '            for p in group["params"]:',
        "                if p.grad is None:",
        "                    continue",
        "                if p.grad.is_sparse:",
        f'                    raise RuntimeError("{class_name} does not support sparse gradients")',
        "                if torch.is_complex(p):",
        f'                    raise RuntimeError("{class_name} does not support complex parameters")',
        "                state = self.state[p]",
        "                if not state:",
        '                    state["step"] = torch.tensor(0.0, dtype=torch.float32)',
        *[f'                    state["{s}"] = torch.zeros_like(p, memory_format=torch.preserve_format)'
          for s in state],
        '                state["step"] += 1',
        '                t = float(state["step"])',
        '                g = -p.grad if group["maximize"] else p.grad',
        '                if group["weight_decay"] != 0:',
        '                    g = g.add(p, alpha=group["weight_decay"])',
        *([f"                {', '.join(state)} = " + ", ".join(f'state["{s}"]' for s in state)]
          if state else []),
        *[f"                {STATE[s].source}" for s in state],
        '                if group["lr"] == 0:  # the state advances and the weights stay',
        "                    continue",
        "                if t not in per_step:",
        "                    per_step[t] = _per_step(group, t)",
        "                d = _direction(p, g, state, per_step[t])",
        f"                {update}",
        "        return loss", "",
    ]
    imports = ["import math", ""] if any("math." in line for line in code) else []
    return "\n".join([*_docstring(rule, class_name, values, module, about), "", *imports, "import torch", "",
                      *code])
