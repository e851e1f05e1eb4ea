"""The package's structure: no import cycles, no private attributes read across modules.

Both checks read the source with ``ast`` (nothing is imported), so a function-local import
counts like one at the top of a module: it cannot hide a cycle.
"""
from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "bayeslmm"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules() -> dict[str, ast.Module]:
    return {module_name(path): ast.parse(path.read_text(), str(path)) for path in sorted(PACKAGE.rglob("*.py"))}


def imported_modules(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The bayeslmm modules ``name`` imports anywhere in its body (``from m import x`` is m.x
    where that is a module, else m)."""
    package = name if name in known and (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() \
        else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                out.add(target if target in known else base)
    return {module for module in out if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = package_modules()
    known = set(modules)
    return {name: imported_modules(name, tree, known) for name, tree in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in sorted(graph[node]):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles in bayeslmm: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


# --- private attributes ------------------------------------------------------------------------


def is_private(name: str) -> bool:
    """``_x`` but not a dunder, nor IPython's display protocol (``_repr_html_``)."""
    return name.startswith("_") and not name.endswith("_")


def own_private_names(tree: ast.Module) -> set[str]:
    """Private names a module defines: its functions and classes, their methods and class
    attributes, and attributes its methods set on ``self``/``cls``."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) \
                and isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if is_private(name)}


def private_accesses(name: str, tree: ast.Module) -> list[str]:
    """``expr._x`` where expr is not self/cls and ``_x`` is not the module's own, and
    ``from m import _x`` from another module."""
    own = own_private_names(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and is_private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr not in own:
                found.append(f"{name}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bayeslmm"):
            found += [f"{name}:{node.lineno} import {alias.name}" for alias in node.names if is_private(alias.name)]
    return found


def test_no_private_access_across_modules():
    found = [hit for name, tree in package_modules().items() for hit in private_accesses(name, tree)]
    assert not found, "private attributes read across modules: " + ", ".join(found)


def test_the_private_access_finder_tells_own_from_foreign():
    tree = ast.parse("class A:\n    def __init__(self):\n        self._x = 1\n"
                     "def f(a, b):\n    return a._x, b._y, a.__dict__, a._repr_html_()\n"
                     "from bayeslmm.m import _z\n")
    assert sorted(private_accesses("m", tree)) == ["m:5 ._y", "m:6 import _z"]


# --- layers ------------------------------------------------------------------------------------

# docs/design.md's module map, bottom layer first: a module imports only from its own layer or
# the layers before it, so the pipeline reads in one direction
LAYERS = ["bayeslmm.errors", "bayeslmm.arrays", "bayeslmm.threads", "bayeslmm.checks", "bayeslmm.frames", "bayeslmm.datasets",
          "bayeslmm.model", "bayeslmm.formula", "bayeslmm.linalg", "bayeslmm.fit", "bayeslmm.bayes",
          "bayeslmm.inference", "bayeslmm.persist", "bayeslmm.results", "bayeslmm.scaleout", "bayeslmm.lmm",
          "bayeslmm.loading", "bayeslmm.cov", "bayeslmm.priors", "bayeslmm.plots", "bayeslmm.cli", "bayeslmm"]


def layer_of(module: str) -> int:
    """The index of the longest entry of LAYERS that ``module`` is or lies inside."""
    matches = [i for i, layer in enumerate(LAYERS) if module == layer or module.startswith(layer + ".")]
    return max(matches, key=lambda i: len(LAYERS[i]))


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return [f"{name} -> {target}" for name, targets in sorted(graph.items()) for target in sorted(targets)
            if layer_of(target) > layer_of(name)]


def test_imports_follow_the_layers_of_the_module_map():
    found = upward_imports(import_graph())
    assert not found, "imports against the module map's direction: " + ", ".join(found)


def test_the_layer_check_sees_an_upward_import():
    assert upward_imports({"bayeslmm.linalg.crossprod": {"bayeslmm.results.frequentist"},
                           "bayeslmm.results.frequentist": {"bayeslmm.linalg.crossprod"}}) \
        == ["bayeslmm.linalg.crossprod -> bayeslmm.results.frequentist"]


HEAVY_ON_FIRST_USE = ("pymc", "arviz", "pytensor", "dask", "distributed", "matplotlib", "nutpie")


def test_import_bayeslmm_leaves_the_heavy_libraries_for_first_use():
    """``import bayeslmm`` loads neither the PyMC stack nor ArviZ, Dask or matplotlib: they load
    when a posterior, a Dask frame or a plot asks for them (issue 13's light imports)."""
    import subprocess
    import sys

    code = f"import sys, bayeslmm; print(' '.join(m for m in {HEAVY_ON_FIRST_USE!r} if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []
