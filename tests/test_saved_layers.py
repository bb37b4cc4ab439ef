"""The saved-query modules sit in layers: each imports only what sits below it, never above."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

import pytest

SAVED_LAYERS = ["errors", "params", "fields", "document", "store", "safelist"]
"""``pql.saved``'s modules, lowest first: a module may import only modules before it."""

ABOVE_SAVED = {"pql.engine", "pql.cli", "pql.saved_cli", "pql.cli_output"}


def imports_of(module: str) -> set[str]:
    """Every ``pql`` module ``module`` imports, at the top or inside a function."""
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name == "pql" or name.startswith("pql.")}


@pytest.mark.parametrize("index", range(len(SAVED_LAYERS)), ids=SAVED_LAYERS)
def test_each_saved_module_imports_only_the_layers_below(index: int) -> None:
    name = SAVED_LAYERS[index]
    imported = imports_of(f"pql.saved.{name}")
    above = {f"pql.saved.{later}" for later in SAVED_LAYERS[index:]}
    assert not imported & above, f"pql.saved.{name} imports {sorted(imported & above)}"
    assert "pql.saved" not in imported
    assert not imported & ABOVE_SAVED


def test_the_saved_package_is_split_into_small_modules() -> None:
    spec = importlib.util.find_spec("pql.saved")
    assert spec is not None and spec.submodule_search_locations is not None
    root = Path(next(iter(spec.submodule_search_locations)))
    sizes = {path.name: len(path.read_text().splitlines()) for path in root.glob("*.py")}
    assert {f"{name}.py" for name in SAVED_LAYERS} <= set(sizes)
    assert max(sizes.values()) <= 600, sizes


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        ("pql.saved_cli", {"pql.cli"}),
        ("pql.cli_output", {"pql.cli", "pql.saved_cli"}),
        ("pql.signing", {"pql.saved", "pql.engine", "pql.cli", "pql.saved_cli"}),
    ],
)
def test_the_command_line_modules_do_not_import_each_other(
    module: str, forbidden: set[str]
) -> None:
    imported = imports_of(module)
    clash = {name for name in imported for f in forbidden if name == f or name.startswith(f + ".")}
    assert not clash, f"{module} imports {sorted(clash)}"
