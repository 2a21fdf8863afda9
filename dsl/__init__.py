"""The rule language of neural optimizer search.

A rule is the direction d of an update ``w <- w - lr * d``, written as text such as
``exp(sign(g) * sign(m)) * g`` (PowerSign) or built from the controller's groups of tokens. This package
parses, prints, checks and compares rules, exports them as sympy/LaTeX formulas, runs them as
PyTorch optimizers (`RuleOptimizer`, `optimizer_class`) and writes them as the source of self-contained
ones (`optimizer_source`). It imports no other package of this project.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dsl.checks import why_invalid
    from dsl.codegen import optimizer_source
    from dsl.equivalence import canonical_key, fingerprint
    from dsl.errors import RuleError, RuleSyntaxError
    from dsl.expr import Call, Const, Expr, Rule, Var
    from dsl.groups import GroupVocabulary, nos_vocabulary, rule_from_groups
    from dsl.known import KNOWN_RULE_TEXT, known_rules
    from dsl.optimizer import RuleOptimizer, optimizer_class
    from dsl.simplification import simplify
    from dsl.symbolic import from_sympy, to_latex, to_sympy
    from dsl.text import parse

# Each public name and the submodule that defines it. They are imported when first read (PEP 562), so
# that importing one submodule (`dsl.vocabulary` for `nos rules names`) does not import them all, with
# torch and sympy.
_SOURCES = {
    "why_invalid": "checks",
    "optimizer_source": "codegen",
    "canonical_key": "equivalence", "fingerprint": "equivalence",
    "RuleError": "errors", "RuleSyntaxError": "errors",
    "Call": "expr", "Const": "expr", "Expr": "expr", "Rule": "expr", "Var": "expr",
    "GroupVocabulary": "groups", "nos_vocabulary": "groups", "rule_from_groups": "groups",
    "KNOWN_RULE_TEXT": "known", "known_rules": "known",
    "RuleOptimizer": "optimizer", "optimizer_class": "optimizer",
    "simplify": "simplification",
    "from_sympy": "symbolic", "to_latex": "symbolic", "to_sympy": "symbolic",
    "parse": "text",
}

__all__ = [
    "Call", "Const", "Expr", "GroupVocabulary", "KNOWN_RULE_TEXT", "Rule", "RuleError", "RuleOptimizer",
    "RuleSyntaxError", "Var", "canonical_key", "fingerprint", "from_sympy", "known_rules", "nos_vocabulary",
    "optimizer_class", "optimizer_source", "parse", "rule_from_groups", "simplify", "to_latex", "to_sympy",
    "why_invalid",
]


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{source}"), name)
    globals()[name] = value  # read once; later reads find it here
    return value


def __dir__() -> list[str]:
    """The public names, the module's own attributes (__doc__, ...) and the submodules imported so far."""
    submodule = f"{__name__}."
    return sorted({*__all__, *(n for n, v in globals().items()
                               if n.startswith("__") or getattr(v, "__name__", "").startswith(submodule))})
