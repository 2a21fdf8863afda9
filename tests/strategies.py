"""Hypothesis strategies for rules: any well-formed tree over the whole vocabulary, and the
controller's groups of legal tokens."""

from __future__ import annotations

from hypothesis import strategies as st

from dsl.expr import MAX_DEPTH, MAX_NODES, Call, Const, Expr, Rule, Var, depth, nodes
from dsl.functions import FUNCTIONS
from dsl.groups import GroupVocabulary, rule_from_groups
from dsl.vocabulary import HYPERS, OPERANDS

# Numbers people write and numbers that stress printing and exact arithmetic.
AWKWARD = [0.0, 1.0, 2.0, 0.5, 0.1, 0.3, 1e-05, 1e-08, 1e+16, 1e16 + 2, 0.30000000000000004, 123456789.0,
           1e-300, 5e-324, 1.7976931348623157e308, 3.141592653589793]


def constants() -> st.SearchStrategy[Const]:
    return st.one_of(
        st.sampled_from(AWKWARD),
        st.integers(min_value=0, max_value=10).map(float),
        st.floats(min_value=0.0, max_value=1e20, allow_nan=False, allow_infinity=False),
    ).map(Const)


def leaves() -> st.SearchStrategy[Expr]:
    return st.one_of(st.sampled_from(sorted(OPERANDS)).map(Var), st.sampled_from(sorted(HYPERS)).map(Var),
                     constants())


def _param(low: float, high: float) -> st.SearchStrategy[float]:
    """A literal parameter strictly inside (low, high)."""
    if high == 1.0:  # drop's probability
        return st.one_of(st.sampled_from([0.1, 0.3, 0.5]), st.floats(min_value=0.001, max_value=0.999))
    return st.one_of(st.sampled_from([1e-05, 1e-04, 1e-03, 0.5, 3.0]),
                     st.floats(min_value=1e-12, max_value=1e12))


def _calls(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    # One composite rather than a one_of over every function: the repr of a strategy nests those of
    # its parts, and st.recursive would make it grow exponentially with the depth.
    @st.composite
    def call(draw: st.DrawFn) -> Expr:
        spec = draw(st.sampled_from(list(FUNCTIONS.values())))
        args = tuple(draw(children) for _ in range(spec.arity))
        params = tuple(draw(_param(low, high)) for _, low, high in spec.params)
        return Call(spec.name, args, params)

    return call()


def _fits(expr: Expr) -> bool:
    return sum(1 for _ in nodes(expr)) <= MAX_NODES and depth(expr) <= MAX_DEPTH


def rules(max_leaves: int = 12) -> st.SearchStrategy[Rule]:
    """Random well-formed rules: every operand, hyper-constant and function, nested."""
    return st.recursive(leaves(), _calls, max_leaves=max_leaves).filter(_fits).map(Rule)


@st.composite
def group_rules(draw: st.DrawFn, vocabulary: GroupVocabulary | None = None, max_groups: int = 3) -> Rule:
    """Rules the controller can emit: 1 to ``max_groups`` groups of tokens legal at their position."""
    count = draw(st.integers(min_value=1, max_value=max_groups))
    vocab = vocabulary or GroupVocabulary(groups=count)
    if vocab.groups < count:
        vocab = GroupVocabulary(vocab.operands, vocab.unary, vocab.binary, count)
    groups = [tuple(draw(st.sampled_from(vocab.choices(i, position))) for position in range(5))
              for i in range(count)]
    return rule_from_groups(groups, vocab)
