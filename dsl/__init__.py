"""The rule language of neural optimizer search.

A rule is the direction d of an update ``w <- w - lr * d``, written as text such as
``exp(sign(g) * sign(m)) * g`` (PowerSign) or built from the controller's groups of tokens. This package
parses, prints, checks and compares rules, exports them as sympy/LaTeX formulas, runs them as
PyTorch optimizers (`RuleOptimizer`, `optimizer_class`) and writes them as the source of self-contained
ones (`optimizer_source`). It imports no other package of this project.
"""

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

__all__ = [
    "Call", "Const", "Expr", "GroupVocabulary", "KNOWN_RULE_TEXT", "Rule", "RuleError", "RuleOptimizer",
    "RuleSyntaxError", "Var", "canonical_key", "fingerprint", "from_sympy", "known_rules", "nos_vocabulary",
    "optimizer_class", "optimizer_source", "parse", "rule_from_groups", "simplify", "to_latex", "to_sympy",
    "why_invalid",
]
