"""The project's structure: imports point one way and no module imports itself back.

Every import of the packages is read from the source (function-level imports included, since a cycle
hidden inside a function is still a cycle), so this needs no package to be importable. The rule: `dsl`
imports nothing of ours; `controller`, `child_tasks` and `discovered_rules` import only `dsl`; `search`
brings them together; `configuration` (shared config handling) is open to all and imports none.
Within `search` the layers import downwards only (`SEARCH_LAYERS`): the engine (search.*), what follows a
search (search.results), the driver that runs a search and then confirms its winners (search.driver),
and the command line (search.cli); so the engine imports neither the results nor the CLI.
``python tests/test_structure.py`` prints the graph's cycles, package edges and upward imports.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ALLOWED: dict[str, set[str]] = {
    "dsl": set(),
    "controller": {"dsl"},
    "child_tasks": {"dsl"},
    "discovered_rules": {"dsl"},
    "search": {"dsl", "controller", "child_tasks", "discovered_rules"},
}
# Shared config handling, where the tree has it: every package may import it, and it imports none of them.
if (ROOT / "configuration" / "__init__.py").is_file():
    ALLOWED = {package: {*allowed, "configuration"} for package, allowed in ALLOWED.items()}
    ALLOWED["configuration"] = set()
PACKAGES = tuple(ALLOWED)
# search's layers, lowest first; a module of search not named here belongs to the engine (layer 0).
SEARCH_LAYERS = {"search.results": 1, "search.driver": 2, "search.cli": 3}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages (a package is its __init__)."""
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """The modules of ours that the file imports, anywhere in it."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's package upwards
                package = name.split(".") if is_package else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            # `from pkg import sub` imports the submodule pkg.sub; `from pkg import name` the package.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for target in targets:
            while target and target not in known:  # `import a.b.c` of ours: the longest known prefix
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(path, name, set(mods)) for name, path in mods.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def package_edges(edges: dict[str, set[str]]) -> set[tuple[str, str, str, str]]:
    """(package, imported package, module, imported module) for every edge between packages."""
    return {(a.split(".")[0], b.split(".")[0], a, b) for a, targets in edges.items() for b in targets
            if a.split(".")[0] != b.split(".")[0]}


def layer(module: str) -> int:
    """The layer of a module of search (SEARCH_LAYERS; 0: the engine)."""
    return max((level for prefix, level in SEARCH_LAYERS.items()
                if module == prefix or module.startswith(prefix + ".")), default=0)


def upward_edges(edges: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, imported module) for every import within search from a lower layer to a higher one."""
    return sorted((a, b) for a, targets in edges.items() for b in targets
                  if a.split(".")[0] == b.split(".")[0] == "search" and layer(b) > layer(a))


def test_no_import_cycles():
    assert cycles(graph()) == []


def test_packages_import_one_way():
    forbidden = sorted((a, b) for pa, pb, a, b in package_edges(graph()) if pb not in ALLOWED[pa])
    assert forbidden == []


def test_search_layers_import_downwards():
    edges = graph()
    assert all(prefix in edges for prefix in SEARCH_LAYERS), "a layer of search is missing: update the test"
    assert upward_edges(edges) == []


def test_the_check_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from dsl.text import parse\n    import dsl.expr\n")
    assert imports(module, "x.m", {"dsl", "dsl.text", "dsl.expr"}) == {"dsl.text", "dsl.expr"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert upward_edges({"search.store": {"search.cli.show"}, "search.cli": {"search.store"}}) == [
        ("search.store", "search.cli.show")]


if __name__ == "__main__":
    g = graph()
    print(f"{len(g)} modules, {sum(map(len, g.values()))} imports of ours")
    for component in cycles(g):
        print("cycle:", " <-> ".join(component))
    print("package edges:", sorted({(pa, pb) for pa, pb, _, _ in package_edges(g)}))
    bad = sorted((a, b) for pa, pb, a, b in package_edges(g) if pb not in ALLOWED[pa])
    print("forbidden:", bad)
    print("upward in search:", upward_edges(g))
