"""Rule text: `parse` reads infix text into a `Rule`; `dsl.expr.format_expr` (a rule's str) writes it back.

Grammar (usual precedence; ``^`` binds tighter than unary minus and is right-associative)::

    expr  := term (('+' | '-') term)*
    term  := unary (('*' | '/') unary)*
    unary := '-' unary | power
    power := atom (('^' | '**') unary)?
    atom  := NUMBER | NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Text is only ever parsed by this module; nothing is evaluated. The writer, beside the tree it writes,
puts the fewest parentheses this grammar needs (and a few for readability), and numbers as Python's
shortest round-tripping repr, so ``parse(str(rule)) == rule`` for every rule.
"""

from __future__ import annotations

import difflib
import re

from dsl.errors import RuleError, RuleSyntaxError
from dsl.expr import MAX_DEPTH, Call, Const, Expr, Rule, Var, format_expr
from dsl.functions import FUNCTIONS
from dsl.vocabulary import BINARY_OPERATORS, HYPERS, OPERANDS, known_names

SYNTAX_DEPTH = 3 * MAX_DEPTH  # brackets, calls and unary minus in a row: about 5 stack frames each

MAX_TEXT = 10_000

# ASCII only: \d would also match other scripts' digits (١٢), which float() reads as numbers.
_TOKEN = re.compile(
    r"\s*(?:(?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)|(?P<name>[A-Za-z_][A-Za-z_0-9]*)"
    r"|(?P<op>\*\*|[-+*/^(),]))",
    re.ASCII,
)


def _tokens(text: str) -> list[tuple[str, str, int]]:
    """(kind, text, position) for each token, ending with ('end', '', len(text))."""
    out, pos = [], 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos == len(text):
            return out + [("end", "", pos)]
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            hint = "numbers are written with the ASCII digits 0-9" if text[pos].isdigit() else ""
            raise RuleSyntaxError(text, pos, repr(text[pos]), "a number, a name, an operator or a "
                                  "parenthesis", hint)
        kind = match.lastgroup
        out.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()


def _describe(token: tuple[str, str, int]) -> str:
    kind, value, _ = token
    return "the end of the text" if kind == "end" else f"{kind} {value!r}"


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.i = 0
        self.nesting = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def fail(self, expected: str, hint: str = "", token: tuple[str, str, int] | None = None):
        token = token or self.peek()
        raise RuleSyntaxError(self.text, token[2], _describe(token), expected, hint)

    def expect(self, op: str) -> None:
        if self.peek()[1] != op or self.peek()[0] != "op":
            self.fail(repr(op))
        self.take()

    def nest(self) -> None:
        # A guard on the parser's own recursion, looser than the rule's depth limit (MAX_DEPTH, checked
        # on the tree by Rule): writing a rule back adds brackets (a^-b is printed a^(-b), two levels of
        # nesting more), so every rule the limit admits must read back.
        self.nesting += 1
        if self.nesting > SYNTAX_DEPTH:
            self.fail("a shallower expression", f"nesting deeper than the limit of {SYNTAX_DEPTH}")

    def expr(self) -> Expr:
        self.nest()
        left = self.term()
        while self.peek()[0] == "op" and self.peek()[1] in "+-":
            op = self.take()[1]
            left = Call(BINARY_OPERATORS[op], (left, self.term()))
        self.nesting -= 1
        return left

    def term(self) -> Expr:
        left = self.unary()
        while self.peek()[0] == "op" and self.peek()[1] in "*/":
            op = self.take()[1]
            left = Call(BINARY_OPERATORS[op], (left, self.unary()))
        return left

    def unary(self) -> Expr:
        if self.peek() == ("op", "-", self.peek()[2]):
            self.take()
            self.nest()
            operand = self.unary()
            self.nesting -= 1
            return Call("neg", (operand,))
        return self.power()

    def power(self) -> Expr:
        base = self.atom()
        if self.peek()[0] == "op" and self.peek()[1] in ("^", "**"):
            self.take()
            self.nest()
            exponent = self.unary()
            self.nesting -= 1
            return Call("pow", (base, exponent))
        return base

    def atom(self) -> Expr:
        kind, value, pos = token = self.take()
        if kind == "number":
            number = float(value)
            if number == float("inf"):  # Const would refuse it without saying where
                raise RuleSyntaxError(self.text, pos, f"number {value!r}", "a finite number (at most "
                                      "1.7976931348623157e+308)")
            if number == 0 and any(c in "123456789" for c in value.split("e")[0].split("E")[0]):
                # 1e-400 would silently become 0, while 1e309 is refused: refuse both.
                raise RuleSyntaxError(self.text, pos, f"number {value!r}", "a number float64 can hold "
                                      "(it underflows to 0; the smallest is 5e-324)")
            return Const(number)
        if kind == "op" and value == "(":
            inner = self.expr()
            self.expect(")")
            return inner
        if kind == "name":
            is_call = self.peek()[:2] == ("op", "(")
            if value in FUNCTIONS and not FUNCTIONS[value].infix:
                if not is_call:
                    self.fail(f"'(' after the function {value!r}")
                return self.call(value, token)
            if value in OPERANDS or value in HYPERS:
                if is_call:
                    self.fail("an operator or the end", f"{value!r} is an operand, not a function")
                return Var(value)
            close = difflib.get_close_matches(value, known_names(), n=3, cutoff=0.6)
            hint = f"did you mean {', '.join(close)}?" if close else "see `nos rules names`"
            raise RuleSyntaxError(self.text, pos, f"unknown name {value!r}",
                                  "an operand, a hyper-constant or a function", hint)
        self.i -= 1
        self.fail("a number, a name, '-' or '('")

    def call(self, name: str, token: tuple[str, str, int]) -> Expr:
        spec = FUNCTIONS[name]
        self.expect("(")
        self.nest()
        args = [self.expr()]
        while self.peek()[:2] == ("op", ","):
            self.take()
            args.append(self.expr())
        self.expect(")")
        self.nesting -= 1
        want = spec.arity + len(spec.params)
        if len(args) != want:
            names = ["x", "y", "z"][: spec.arity] + [p[0] for p in spec.params]
            raise RuleSyntaxError(self.text, token[2], f"{name} with {len(args)} argument(s)",
                                  f"{name}({', '.join(names)})", spec.doc)
        params = []
        for arg, (pname, _, _) in zip(args[spec.arity:], spec.params):
            if not isinstance(arg, Const):
                raise RuleSyntaxError(self.text, token[2], f"{pname} = {format_expr(arg)}",
                                      f"a number for the parameter {pname} of {name}")
            params.append(arg.value)
        try:
            return Call(name, tuple(args[: spec.arity]), tuple(params))
        except RuleError as err:
            raise RuleSyntaxError(self.text, token[2], f"{name}(...)", "valid parameters", str(err))


def parse(text: str) -> Rule:
    """Read rule text such as ``exp(sign(g) * sign(m)) * g`` into a `Rule`."""
    if not isinstance(text, str):
        raise TypeError(f"rule text must be a str, got {type(text).__name__}")
    if len(text) > MAX_TEXT:
        raise RuleSyntaxError(text, MAX_TEXT, "more text", "at most "
                              f"{MAX_TEXT} characters")
    parser = _Parser(text)
    if parser.peek()[0] == "end":
        parser.fail("a rule", "the text is empty")
    expr = parser.expr()
    if parser.peek()[0] != "end":
        parser.fail("an operator or the end of the text")
    try:
        return Rule(expr)
    except RuleError as err:  # size limit
        raise RuleSyntaxError(text, 0, "a rule too large", "a smaller rule", str(err)) from None
