"""The node package's modules import one another in one direction: no circle, not even through a function-level
or ``TYPE_CHECKING`` import, and the boundary (``hsm.py`` and its parts) never imports the calls above it."""

from __future__ import annotations

import ast
from pathlib import Path

import strongroom.node

NODE = Path(strongroom.node.__file__).parent
BOUNDARY = {"hsm", "state", "commit", "repository", "users", "cluster_identity", "public_objects"}


def _imports() -> dict[str, set[str]]:
    """Each module of the package and the package modules it imports, anywhere in its body."""
    modules = {path.stem: path for path in NODE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                found.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("strongroom.node."):
                found.add((node.module or "").split(".")[2])
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name])
    return seen


def test_no_module_of_the_node_package_imports_itself_back():
    graph = _imports()
    assert [name for name in graph if name in _reach(graph, name)] == []


def test_the_boundary_does_not_know_its_applications():
    graph = _imports()
    boundary = BOUNDARY & graph.keys()
    assert {name: sorted(_reach(graph, name) - boundary) for name in boundary} == {name: [] for name in boundary}
