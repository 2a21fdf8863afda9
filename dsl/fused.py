"""The fused path: a whole optimizer step of a rule as one elementwise pass per tensor.

The step (gradient, state updates, the rule, the weight update) is traced once per rule with torch.fx
into a graph of elementwise ops and compiled with torch.compile (Inductor), which fuses it into a single
loop over memory: each element is read and written once. Tensors go in flattened, with torch's automatic
dynamic shapes: the first size seen gets a kernel specialised to it (the fastest: in a network of equal
layers, all of them), every other size shares one dynamic-shape kernel, so a rule compiles at most twice
per dtype and device however many shapes a network has. Per-step scalars travel in one
small tensor, so a changing lr or step count never recompiles. The tensors of a step go through the
compiled function in chunks of up to `CHUNK` (the graph holds one copy of the step per tensor), so a step
costs one call into the compiled code per chunk instead of one per tensor; the price is compile time,
which grows with the chunk (a Wide ResNet's 44 tensors: first step 39 s against 15 s one tensor at a
time, measured on a busy 2-core machine).

Where torch.compile is unavailable or fails, the same traced graph runs eagerly, tensor by tensor, with a
warning: slower, never wrong.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping, Sequence

import torch
import torch.fx

from dsl.evaluate import evaluate_lazy
from dsl.expr import Rule, scalar_subtrees
from dsl.quantities import BIAS_CORRECTED, STATE, STEP_QUANTITIES
from dsl.vocabulary import HYPERS

# The buffers, in the order of `_Step.forward`'s arguments.
STATE_NAMES = tuple(STATE)
# The step quantities a rule may read (bound's range among them).
STEP_NAMES = ("t", *(q.name for q in STEP_QUANTITIES.values() if not q.local))
# Per-step scalars, in the order of the `scalars` tensor the step function takes.
SCALAR_NAMES = ("lr", "weight_decay", *STEP_NAMES, *HYPERS)
_INDEX = {name: i for i, name in enumerate(SCALAR_NAMES)}


class _Step(torch.nn.Module):
    """One step of ``rule`` on one tensor; the argument of an absent state buffer is None."""

    def __init__(self, rule: Rule, maximize: bool, decay: bool) -> None:
        super().__init__()
        self.rule, self.maximize, self.decay = rule, maximize, decay
        self.hoisted = hoisted(rule)

    # One argument per buffer of STATE_NAMES: torch.fx traces named arguments, with None fixed for an
    # absent buffer, so that the graph has no branch on them.
    def forward(self, p, grad, m, mb2, v, m3, vmax, scalars):  # noqa: ANN001 (traced by torch.fx)
        s = {name: scalars[i] for name, i in _INDEX.items()}
        # Fixed when traced: a step that needs neither costs no extra arithmetic per element.
        g = -grad if self.maximize else grad
        if self.decay:
            g = g + s["weight_decay"] * p
        values = {"g": g, "w": p, **{name: s[name] for name in (*STEP_NAMES, *HYPERS)}}
        new = {}
        for name, old in zip(STATE_NAMES, (m, mb2, v, m3, vmax), strict=True):
            if old is not None:
                new[name] = STATE[name].traced(old, g, s, new)
        values.update(new)
        for hat, (base, scale) in BIAS_CORRECTED.items():
            if hat in self.rule.names:
                values[hat] = new[base] * s[scale]
        if "noise" in self.rule.names:
            values["noise"] = torch.randn_like(p)
        # Per-step scalar sub-expressions come computed, not recomputed for every element.
        known = {e: scalars[len(SCALAR_NAMES) + j] for j, e in enumerate(self.hoisted)}
        d = evaluate_lazy(self.rule.expr, values, rand=torch.rand_like, known=known)
        p.copy_(p - s["lr"] * d)
        for name, buffer in zip(STATE_NAMES, (m, mb2, v, m3, vmax), strict=True):
            if buffer is not None:
                buffer.copy_(new[name])


class _Steps(torch.nn.Module):
    """`_Step` over ``n`` tensors: its arguments are lists (None for an absent state buffer)."""

    def __init__(self, rule: Rule, maximize: bool, decay: bool, n: int) -> None:
        super().__init__()
        self.step, self.n = _Step(rule, maximize, decay), n

    def forward(self, params, grads, m, mb2, v, m3, vmax, scalars):  # noqa: ANN001 (traced by torch.fx)
        for i in range(self.n):  # unrolled when traced: one graph, one call per chunk of tensors
            buffers = (None if b is None else b[i] for b in (m, mb2, v, m3, vmax))
            self.step.forward(params[i], grads[i], *buffers, scalars)


class FusedStep:
    """The compiled step of one rule over a fixed number of tensors, falling back to running its traced
    graph eagerly."""

    def __init__(self, rule: Rule, maximize: bool = False, decay: bool = False, n: int = 1) -> None:
        present = {name: name in rule.state for name in STATE_NAMES}
        # Trace with the absent buffers fixed to None, so the graph has no branch on them.
        concrete = {name: None for name, here in present.items() if not here}
        self.graph = torch.fx.symbolic_trace(_Steps(rule, maximize, decay, n), concrete_args=concrete)
        self.present = present
        self.compiled = None
        self.failed: str | None = None

    def _compiled(self):
        if self.compiled is None and self.failed is None:
            try:
                # dynamic_threads: a dynamic kernel must use all cores on large tensors even when the
                # size it was compiled for was small.
                # The graph's forward, not the module: calls skip nn.Module's dispatch (tens of us each).
                self.compiled = torch.compile(self.graph.forward, dynamic=None, fullgraph=True,
                                              options={"cpp.dynamic_threads": True})
            except Exception as err:  # no compiler or an unsupported Python: run eagerly
                self._fail(err)
        return self.compiled

    def _fail(self, err: BaseException) -> None:
        self.failed = f"{type(err).__name__}: {err}".splitlines()[0]
        warnings.warn(f"torch.compile is unavailable for the fused optimizer path ({self.failed}); "
                      "running the same step eagerly", RuntimeWarning, stacklevel=4)

    def __call__(self, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
                 state: Mapping[str, Sequence[torch.Tensor]], scalars: torch.Tensor) -> None:
        # Flat views let one dynamic-shape compilation serve every other size; a weight in another memory
        # format (channels_last) goes as it is, with its state in the same format. detach(): a flat
        # alias that is not a view, so dynamo does not guard on the 2-D base.
        flat = [p.is_contiguous() for p in params]

        def arg(tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
            return [t.reshape(-1).detach() if f else t for t, f in zip(tensors, flat)]

        args = (arg(params), arg(grads),
                *(arg(state[n]) if self.present[n] else None for n in STATE_NAMES), scalars)
        fn = self._compiled()
        if fn is not None:
            try:
                fn(*args)
                return
            except Exception as err:  # raised while compiling, before any tensor was written
                self._fail(err)
                self.compiled = None
        self.graph(*args)


# Tensors per compiled call. One call per step instead of one per tensor saves dynamo's dispatch
# (~70 us a call); bounded, because compile time grows with the tensors a graph holds.
CHUNK = 16

_CACHE: dict[tuple[Rule, bool, bool, int], FusedStep] = {}


def fused_step(rule: Rule, maximize: bool = False, decay: bool = False, n: int = 1) -> FusedStep:
    """The fused step of ``rule`` (ascending or not, with weight decay or not) over ``n`` tensors,
    traced and compiled once per process."""
    key = (rule, maximize, decay, n)
    if key not in _CACHE:
        _CACHE[key] = FusedStep(*key)
    return _CACHE[key]


@functools.cache
def hoisted(rule: Rule) -> list:
    """The rule's per-step scalar sub-expressions, computed once per step outside the kernel."""
    return scalar_subtrees(rule.expr)


def scalar_vector(rule: Rule, values: Mapping[str, float], like: torch.Tensor) -> torch.Tensor:
    """The step's scalars, then the rule's hoisted scalar sub-expressions, as one tensor on ``like``'s
    device: float64 for float64 weights, else float32."""
    floats = [float(values[name]) for name in SCALAR_NAMES]
    floats += [float(evaluate_lazy(e, values)) for e in hoisted(rule)]
    dtype = torch.float64 if like.dtype == torch.float64 else torch.float32
    return torch.tensor(floats, dtype=dtype, device=like.device)


def run_fused(rule: Rule, params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor],
              state: Mapping[str, Sequence[torch.Tensor]], scalars: torch.Tensor, *, maximize: bool = False,
              decay: bool = False) -> None:
    """One fused step over tensors sharing a device, dtype and step count; ``state`` maps each buffer
    the rule needs to one tensor per parameter. Runs in chunks of at most `CHUNK` tensors."""
    for lo in range(0, len(params), CHUNK):
        hi = min(lo + CHUNK, len(params))
        fused_step(rule, maximize, decay, hi - lo)(params[lo:hi], grads[lo:hi],
                                                    {n: b[lo:hi] for n, b in state.items()}, scalars)
