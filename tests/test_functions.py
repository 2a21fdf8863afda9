"""A function of the rule language is one row of dsl.functions.FUNCTIONS: a row added there (and nowhere
else) is known to every path, the parser and printer, the tensor and float evaluators, the multi-tensor
and single-tensor optimizer paths, sympy and LaTeX, the canonical key and the generated PyTorch source."""

from __future__ import annotations

import ast
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import sympy as sp
import torch

from dsl import canonical_key, from_sympy, parse, to_latex, to_sympy
from dsl import lazy
from dsl.codegen import optimizer_source
from dsl.evaluate import evaluate, evaluate_lazy
from dsl.expr import Call, Const
from dsl.functions import FUNCTIONS, Function
from dsl.optimizer import RuleOptimizer
from dsl.source import call
from dsl.vocabulary import known_names

TANH = Function("tanh", 1, "hyperbolic tangent",
                tensor=lambda a, p, c: torch.tanh(a[0]), number=lambda a, p, s: math.tanh(a[0]),
                foreach=lambda a, p, s: lazy.apply(a[0], "tanh"),
                sympy=lambda a, p, b: sp.tanh(a[0]), sympy_head=lambda: sp.tanh, source=call("torch.tanh"))


@pytest.fixture
def tanh(monkeypatch):
    """tanh, registered for one test in the one place a function is defined."""
    monkeypatch.setitem(FUNCTIONS, "tanh", TANH)
    return TANH


def test_every_builtin_function_has_every_form():
    for f in FUNCTIONS.values():
        assert callable(f.tensor) and callable(f.sympy) and callable(f.source) and callable(f.foreach), f.name
        assert f.number is not None or f.random, f.name  # only a random function has no single value


def test_text_round_trip_and_names(tanh):
    rule = parse("tanh(g) * m - tanh(2 * v)")
    assert parse(str(rule)) == rule and "tanh" in str(rule)
    assert "tanh" in known_names()


def test_tensor_and_float_evaluation(tanh):
    g = torch.randn(50, dtype=torch.float64)
    assert torch.equal(evaluate(parse("tanh(g)").expr, {"g": g}), torch.tanh(g))
    assert evaluate_lazy(Call("tanh", (Const(0.5),)), {}) == math.tanh(0.5)  # folded by the float form


def test_sympy_latex_and_canonical_key(tanh):
    rule = parse("tanh(g) * 2")
    assert to_sympy(rule) == 2 * sp.tanh(sp.Symbol("g", real=True))
    assert from_sympy(to_sympy(rule)) == parse("2 * tanh(g)")
    assert r"\tanh" in to_latex(rule)
    assert canonical_key(rule) == canonical_key(parse("tanh(g) + tanh(g)"))
    assert canonical_key(rule) != canonical_key(parse("2 * g"))


def _import(source: str, tmp_path: Path):
    path = tmp_path / "generated_tanh.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("generated_tanh", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["generated_tanh"] = module
    spec.loader.exec_module(module)
    return module


def test_optimizer_paths_and_generated_source_agree(tanh, tmp_path):
    text = "tanh(m) * sqrt(v) + tanh(t / 3) * g"
    source = optimizer_source(text, "Tanh")
    assert "torch.tanh(" in source
    generated = _import(source, tmp_path).Tanh
    makers = {"foreach": lambda p: RuleOptimizer(p, text, lr=0.1, foreach=True),
              "single": lambda p: RuleOptimizer(p, text, lr=0.1, foreach=False),
              "generated": lambda p: generated(p, lr=0.1)}
    results = {}
    for name, make in makers.items():
        gen = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(7, 3, generator=gen, dtype=torch.float64)) for _ in range(2)]
        opt = make(params)
        for _ in range(3):
            for p in params:
                p.grad = torch.randn(p.shape, generator=gen, dtype=torch.float64)
            opt.step()
        results[name] = [p.detach().clone() for p in params]
    for name in ("single", "generated"):
        for a, b in zip(results["foreach"], results[name]):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_the_row_is_gone_after_the_test():
    assert "tanh" not in FUNCTIONS


def test_functions_has_one_import_path():
    """FUNCTIONS is imported from dsl.functions, where it is defined, and from nowhere else."""
    root = Path(__file__).resolve().parent.parent
    elsewhere = []
    for path in root.glob("[a-z]*/**/*.py"):
        if ".venv" in path.parts or "FUNCTIONS" not in (text := path.read_text()):
            continue
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ImportFrom) and node.module != "dsl.functions" \
                    and any(alias.name == "FUNCTIONS" for alias in node.names):
                elsewhere.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not elsewhere
