"""The rule language's tables load without torch or sympy: `dsl` reads its public names from their
submodules when first used (PEP 562), and `dsl.functions` and `dsl.lazy` import torch and sympy when a
form first uses them (`dsl.deferred`), after which the module itself is bound, not a stand-in."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import types

import pytest

import dsl
from dsl.deferred import Deferred, deferred


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_tables_import_neither_torch_nor_sympy():
    code = ("import json, sys\n"
            "import dsl, dsl.vocabulary, dsl.functions, dsl.lazy\n"
            "from dsl.vocabulary import HYPERS, OPERANDS, known_names\n"
            "from dsl.functions import FUNCTIONS\n"
            "assert known_names() and all(f.doc for f in FUNCTIONS.values())\n"
            "print(json.dumps([m for m in ('torch', 'sympy', 'numpy') if m in sys.modules]))")
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []


def test_every_public_name_comes_from_the_package():
    assert sorted(dsl._SOURCES) == sorted(dsl.__all__)
    namespace: dict = {}
    exec("from dsl import *", namespace)
    for name in dsl.__all__:
        assert namespace[name] is getattr(dsl, name)
        assert namespace[name] is getattr(sys.modules[f"dsl.{dsl._SOURCES[name]}"], name)
    assert set(dsl.__all__) <= set(dir(dsl))
    assert "importlib" not in dir(dsl) and "TYPE_CHECKING" not in dir(dsl)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_name"):
        dsl.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec("from dsl import no_such_name", {})
    assert not hasattr(dsl, "no_such_name")


def test_a_deferred_module_is_imported_on_first_use_and_then_bound():
    namespace: dict = {}
    stand_in = Deferred("colorsys", namespace, "colorsys")
    namespace["colorsys"] = stand_in
    assert stand_in.rgb_to_hsv(1.0, 0.0, 0.0) == (0.0, 1.0, 1.0)
    assert isinstance(namespace["colorsys"], types.ModuleType)  # the stand-in is out of the way
    assert pickle.loads(pickle.dumps(stand_in)) is namespace["colorsys"]  # pickled as the module
    assert deferred("colorsys", {}) is namespace["colorsys"]  # imported already: the module itself


def test_after_a_step_the_hot_path_reads_torch_itself():
    # In a fresh process, where the tables were loaded before torch: the stand-ins are replaced by torch.
    code = ("import dsl.functions, dsl.lazy\n"
            "assert type(dsl.functions.torch).__name__ == type(dsl.lazy.torch).__name__ == 'Deferred'\n"
            "import torch\n"
            "from dsl import RuleOptimizer\n"
            "w = torch.nn.Parameter(torch.ones(4))\n"
            "for multi_tensor in (True, False):\n"
            "    optimizer = RuleOptimizer([w], 'clip(sqrt(abs(m)) * sign(g), 1) + exp(-v)', lr=0.1,\n"
            "                              foreach=multi_tensor)\n"
            "    w.grad = torch.ones(4)\n"
            "    optimizer.step()\n"
            "assert dsl.lazy.torch is torch and dsl.functions.torch is torch\n"
            "assert bool(torch.isfinite(w).all()) and not bool((w == 1).any())")
    done = _python(code)
    assert done.returncode == 0, done.stderr
