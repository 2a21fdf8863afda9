"""A smaller equivalent rule, found by sympy's passes within bounded time and memory.

`simplify(rule)` tries sympy's passes on the rule's sympy form (cheap ones first, sympy.simplify last)
and keeps the smallest candidate with the rule's canonical key, so the result is never a rule that
is not equivalent. `simplify_noted` also says why passes were skipped.

Every pass is bounded, not only the last:

* before a pass that expands (cancel, together, expand, sympy.simplify), the size of the expanded
  form is estimated from the tree (`expansion_size`: a multinomial count of terms and the degree);
  over `MAX_TERMS` or `MAX_DEGREE` the pass is skipped, since expanding ``(g + m + v + w)^40`` alone
  builds 12,341 terms in 4 s, and a larger power runs out of memory;
* the budget's deadline is checked between passes, and in the main thread each pass is interrupted by
  SIGALRM at the deadline (a sympy call cannot otherwise be stopped, and only the main thread may use
  signals); elsewhere sympy.simplify, the one pass the estimate does not bound, is skipped;
* a form with Max or Min left as written (`dsl.symbolic.EXTREMA_UNEVALUATED`) is not simplified at
  all: each pass rebuilds them, and rebuilding merges them at the cost the conversion avoided.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable

import sympy as sp

from dsl.equivalence import canonical_key
from dsl.errors import RuleError
from dsl.expr import Rule
from dsl.symbolic import from_sympy, to_sympy_noted

# An expanding pass is skipped on a form that would expand to more terms, or to a higher degree, than
# this: 300 terms expand in about 0.1 s; a degree-64 polynomial is small for cancel's gcd.
MAX_TERMS = 300
MAX_DEGREE = 64


def expansion_size(expr: sp.Expr) -> tuple[int, int]:
    """(terms, degree): an upper estimate of the largest number of terms and the highest total degree
    that fully expanding any part of ``expr`` gives; each saturates just above its limit."""
    worst = [0, 0]
    memo: dict[sp.Expr, tuple[int, int]] = {}

    def note(terms: int, degree: int) -> tuple[int, int]:
        out = (min(terms, MAX_TERMS + 1), min(degree, MAX_DEGREE + 1))
        worst[0], worst[1] = max(worst[0], out[0]), max(worst[1], out[1])
        return out

    def walk(e: sp.Expr) -> tuple[int, int]:
        if e in memo:
            return memo[e]
        parts = [walk(a) for a in e.args]
        if e.is_Add:
            out = note(sum(t for t, _ in parts), max(d for _, d in parts))
        elif e.is_Mul:
            out = note(math.prod(t for t, _ in parts), sum(d for _, d in parts))
        elif e.is_Pow and e.exp.is_Rational:
            # (x1 + ... + xk)^n has comb(n + k - 1, n) terms; a negative or fractional power is
            # expanded by its integer part, as cancel and expand do.
            (k, d), n = parts[0], abs(int(e.exp.p)) // int(e.exp.q)
            if n == 0:  # a root: a generator of its own
                out = note(1, 1)
            else:
                many = k > MAX_TERMS or n > MAX_TERMS
                out = note(MAX_TERMS + 1 if many and k > 1 else math.comb(n + k - 1, n) if k > 1 else 1,
                           d * n if n <= MAX_DEGREE else MAX_DEGREE + 1)
        else:  # a symbol, a number, or a function: one term, a generator of degree 1 (or 0)
            out = note(1, 0 if e.is_Number else 1)
        memo[e] = out
        return out

    walk(expr)
    return worst[0], worst[1]


class _OutOfTime(Exception):
    pass


def _bounded(fn: Callable[[sp.Expr], sp.Expr], expr: sp.Expr, seconds: float) -> sp.Expr | None:
    """fn(expr), or None when it takes longer than ``seconds`` (main thread only: see the docstring)."""

    def on_alarm(signum, frame):
        # Raised wherever the main thread is; inside a gc callback or a __del__ Python only prints
        # it, so the timer is armed again until an exception lands in fn.
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        raise _OutOfTime

    previous = signal.signal(signal.SIGALRM, on_alarm)
    started = time.monotonic()
    old_timer = signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn(expr)
    except _OutOfTime:
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if old_timer[0] > 0:  # give back an outer timer what it had left
            signal.setitimer(signal.ITIMER_REAL, max(old_timer[0] - (time.monotonic() - started), 1e-3))


# (name, pass, expands): cheap passes first; sympy.simplify last, with the time that is left.
_PASSES: list[tuple[str, Callable[[sp.Expr], sp.Expr], bool]] = [
    ("factor_terms", sp.factor_terms, False), ("cancel", sp.cancel, True), ("powsimp", sp.powsimp, False),
    ("together", sp.together, True), ("expand", sp.expand, True), ("simplify", sp.simplify, True),
]
_FAILED = (RuleError, ValueError, TypeError, ArithmeticError, RecursionError, AttributeError)


def simplify_noted(rule: Rule, *, budget_s: float = 1.0) -> tuple[Rule, str | None]:
    """`simplify`'s result, and None or why passes were skipped (too large to expand, max/min left
    as written, out of time)."""
    deadline = time.monotonic() + budget_s
    try:
        expr, note = to_sympy_noted(rule)
    except _FAILED:
        return rule, "no sympy form"
    if note is not None:
        return rule, f"not simplified: {note}"
    key, best = canonical_key(rule), rule
    signals = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    terms, degree = expansion_size(expr)
    too_big = terms > MAX_TERMS or degree > MAX_DEGREE
    skipped: list[str] = []
    for name, fn, expands in [("as converted", lambda e: e, False), *_PASSES]:
        left = deadline - time.monotonic()
        if left <= 0:
            skipped.append(f"out of time after {budget_s:g} s")
            break
        if (expands and too_big) or (name == "simplify" and not signals):
            skipped.append(name)
            continue
        try:
            found = _bounded(fn, expr, left) if signals else fn(expr)
            candidate = from_sympy(found) if found is not None else None
        except _FAILED:
            continue  # a form the language cannot write, or a pass that fails on this input
        if candidate is not None and candidate.size() < best.size() and canonical_key(candidate) == key:
            best = candidate
    if not skipped:
        return best, None
    why = f" (expanded it would have over {MAX_TERMS} terms or degree over {MAX_DEGREE})" if too_big else ""
    return best, f"skipped {', '.join(skipped)}{why}"


def simplify(rule: Rule, *, budget_s: float = 1.0) -> Rule:
    """The smallest (by node count) of the rule and the equivalent rules sympy's passes give, found
    within about ``budget_s`` seconds and bounded memory (see the module docstring)."""
    return simplify_noted(rule, budget_s=budget_s)[0]
