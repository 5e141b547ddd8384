"""No import circles inside squeezefmt: module-level and function-level imports, relative and absolute.

Every ``import`` / ``from ... import`` anywhere in a module's AST (inside functions too) is an edge
to the squeezefmt module it names: ``from pkg import name`` points at ``pkg.name`` when that is a
module, else at ``pkg``; ``import pkg.mod`` at ``pkg.mod``. (Python importing a parent package
before its submodule is not counted.) A cycle fails the test and names its modules.
"""
from __future__ import annotations

import ast
import pathlib

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "squeezefmt"


def module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: pathlib.Path = PACKAGE) -> dict[str, set[str]]:
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}

    def known(name: str) -> str | None:
        while name and name not in files:
            name = name.rpartition(".")[0]
        return name or None

    for mod, path in files.items():
        is_pkg = path.name == "__init__.py"
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):  # "import a.b" names module a.b (a compiled one is no edge)
                targets = [a.name for a in node.names if a.name in files]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = mod.split(".")
                    base = base[: len(base) - node.level + (1 if is_pkg else 0)]
                    pkg = ".".join(base + ([node.module] if node.module else []))
                else:
                    pkg = node.module or ""
                targets = [f"{pkg}.{a.name}" if f"{pkg}.{a.name}" in files else pkg for a in node.names]
            else:
                continue
            for t in targets:
                if t.split(".")[0] == "squeezefmt" and (dep := known(t)) and dep != mod:
                    deps.add(dep)
        graph[mod] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return stack[stack.index(d):] + [d]
            if d not in state and (found := visit(d)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_squeezefmt():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


@pytest.mark.parametrize("files, expect", [
    ({"__init__.py": "", "a.py": "from . import b", "b.py": "def f():\n    from .a import x"}, True),
    ({"__init__.py": "", "a.py": "import squeezefmt.b", "b.py": "from squeezefmt import a"}, True),
    ({"__init__.py": "from .a import x", "a.py": "from .. import squeezefmt", "b.py": ""}, False),
    ({"__init__.py": "", "a.py": "from .b import y", "b.py": "import numpy"}, False),
])
def test_the_cycle_finder_sees_function_level_relative_and_absolute_imports(tmp_path, files, expect):
    """The finder itself: circles through function-level, relative and absolute imports are found."""
    root = tmp_path / "squeezefmt"
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    assert (find_cycle(import_graph(root)) is not None) == expect
