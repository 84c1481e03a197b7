"""The package's import graph: ``campaign.spec`` imports nothing of ``campaign`` but a
leaf value module, and
``campaign/`` has no import circle (function-level imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "campaign"


def _imports() -> dict[str, set[str]]:
    """Module name -> the ``campaign`` modules it imports, anywhere in its body."""
    modules = {path.stem: path for path in PACKAGE.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
                if node.module == "campaign":
                    names = [f"campaign.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for full in names:
                parts = full.split(".")
                if parts[0] == "campaign" and len(parts) > 1 and parts[1] in modules:
                    found.add(parts[1])
        graph[name] = found - {name}
    return graph


def test_spec_imports_nothing_of_the_package_but_leaves() -> None:
    """The spec sits at the bottom of the graph: it may import only modules that import
    nothing of ``campaign`` themselves (``campaign.resources``, the Resources value;
    ``campaign.spec_errors``, how an invalid spec reads)."""
    graph = _imports()
    assert all(graph[name] == set() for name in graph["spec"]), graph["spec"]
    assert graph["spec"] <= {"resources", "spec_errors"}


def test_no_import_circle() -> None:
    graph = _imports()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import circle: " + " -> ".join(path[path.index(name):]
                                                                 + [name]))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
