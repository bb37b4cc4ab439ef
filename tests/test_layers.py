"""Each module sits above what it uses: no import circles among the engine's modules.

The graph is read from the source with :mod:`ast`, so imports inside functions and under
``TYPE_CHECKING`` count as well (a circle hidden there is still a circle for a reader).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pql

ROOT = Path(pql.__file__).parent


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = ["pql", *path.relative_to(ROOT).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [
                    f"{node.module}.{alias.name}"
                    if f"{node.module}.{alias.name}" in modules
                    else node.module
                    for alias in node.names
                ]
            else:
                continue
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    """A chain of imports from ``start`` to ``goal``, if there is one."""
    seen = {start}
    stack = [[start]]
    while stack:
        chain = stack.pop()
        for nxt in sorted(graph[chain[-1]]):
            if nxt == goal:
                return [*chain, nxt]
            if nxt not in seen:
                seen.add(nxt)
                stack.append([*chain, nxt])
    return None


def test_the_graph_sees_imports() -> None:
    graph = _graph()
    assert "pql.cache" in graph["pql.engine"]
    assert "pql.plan.rollups" in graph["pql.plan.optimize"]


@pytest.mark.parametrize(
    "module",
    ["pql.cache", "pql.warm", "pql.engine", "pql.plan.optimize", "pql.plan.rollups"],
)
def test_no_import_circle_through(module: str) -> None:
    circle = _reaches(_graph(), module, module)
    assert circle is None, " -> ".join(circle or [])
