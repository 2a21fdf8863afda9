"""Modules imported on first use: `deferred`, so that the language's tables load without torch or sympy.

`dsl.functions` and `dsl.lazy` hold each function's tensor, multi-tensor and sympy forms next to its name
and doc, but only the forms need torch and sympy, and only when called. Reading the names (``nos rules
names``, the parser's vocabulary) should not pay for importing them (about 1.5 s together), so those
modules bind ``torch`` and ``sp`` to a `Deferred` stand-in instead of the module::

    torch = deferred("torch", globals())

The first attribute read (``torch.clamp``) imports the module and rebinds the global name to it, so that
every later use in that module is the module itself, with no stand-in in the way (the optimizer's hot
path pays nothing). Only attribute reads at call time may go through the stand-in: a module-level
``torch.float32`` would import torch when the module is imported, which is what this avoids
(tests/test_cli_startup.py checks that the tables import neither).
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any


class Deferred:
    """A stand-in for the module ``name``, bound to ``binding`` in ``namespace`` (a module's globals):
    the first attribute read imports the module and puts it in the stand-in's place."""

    __slots__ = ("_binding", "_name", "_namespace")

    def __init__(self, name: str, namespace: dict[str, Any], binding: str) -> None:
        self._name, self._namespace, self._binding = name, namespace, binding

    def _load(self) -> ModuleType:
        module = importlib.import_module(self._name)
        if self._namespace.get(self._binding) is self:
            self._namespace[self._binding] = module
        return module

    def __getattr__(self, attribute: str) -> Any:
        return getattr(self._load(), attribute)

    def __dir__(self) -> list[str]:
        return dir(self._load())

    def __reduce__(self) -> tuple[Any, tuple[str]]:  # pickled (a closure sent by cloudpickle) as the module
        return importlib.import_module, (self._name,)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def deferred(name: str, namespace: dict[str, Any], binding: str | None = None) -> ModuleType | Deferred:
    """The module ``name`` if it is imported already, else a `Deferred` stand-in that imports it on first
    use and rebinds ``namespace[binding]`` (default: ``name``) to it."""
    module = sys.modules.get(name)
    if module is not None:
        return module
    return Deferred(name, namespace, binding or name)
