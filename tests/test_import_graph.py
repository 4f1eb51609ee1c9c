"""The import graph of the ``dgm_lab`` package has no cycle, and every module imports on its own.

A cycle works only while every module in it happens to be imported in one order; the first new
importer that starts elsewhere gets a half-initialised module. The graph is read from the source
with ``ast`` (module-level and function-level imports; ``from pkg import submodule`` is an edge
to the submodule, not to the package); imports under ``if TYPE_CHECKING:`` never run and are not
edges.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "dgm_lab"
ENTRY_POINTS = ("dgm_lab.__main__", "dgm_lab.compare.__main__", "dgm_lab.reproduce.__main__")  # importing them runs a command


def module_names() -> dict[str, Path]:
    """{dotted module name: file} for every module of the package (packages by their __init__)."""
    names = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _runs(node: ast.AST) -> list[ast.AST]:
    """The import statements under ``node`` that can run (``if TYPE_CHECKING:`` bodies left out)."""
    found = []
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            found.extend(n for branch in child.orelse for n in [branch, *_runs(branch)] if _is_import(n))
            continue
        if _is_import(child):
            found.append(child)
        found.extend(_runs(child))
    return found


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _is_import(node: ast.AST) -> bool:
    return isinstance(node, ast.Import | ast.ImportFrom)


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package modules that module ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in _runs(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names if alias.name in known)
            continue
        base = node.module or ""
        if node.level:  # relative: from . import x, from ..data import y
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in known:
                targets.add(submodule)
            elif base in known:
                targets.add(base)
    targets.discard(name)
    return targets


def import_graph() -> dict[str, set[str]]:
    names = module_names()
    return {name: imports_of(name, path, set(names)) for name, path in names.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; depth-first, in sorted order so the report is stable."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_graph_reader_sees_function_level_and_submodule_imports(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text("from dgm_lab.metrics import specs\nfrom typing import TYPE_CHECKING\n"
                      "if TYPE_CHECKING:\n    import dgm_lab.run\n"
                      "def f():\n    from dgm_lab.metrics.lenet import LeNet\n    import dgm_lab.errors\n")
    known = {"dgm_lab.metrics", "dgm_lab.metrics.specs", "dgm_lab.metrics.lenet", "dgm_lab.errors", "dgm_lab.run"}
    assert imports_of("dgm_lab.x", source, known) == {"dgm_lab.metrics.specs", "dgm_lab.metrics.lenet", "dgm_lab.errors"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_dgm_lab_has_no_import_cycle():
    graph = import_graph()
    assert "dgm_lab.metrics.sample_quality" in graph["dgm_lab.callbacks.sample_quality"]  # the reader works
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """One interpreter, each module imported after every dgm_lab module is dropped from sys.modules:
    third-party imports stay loaded (seconds, not minutes), dgm_lab's own order is fresh each time."""
    modules = [name for name in module_names() if name not in ENTRY_POINTS]
    script = (
        "import importlib, sys, traceback\n"
        "failed = []\n"
        f"for name in {modules!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'dgm_lab' or m.startswith('dgm_lab.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception:\n"
        "        failed.append(name + ': ' + traceback.format_exc(limit=-3))\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
