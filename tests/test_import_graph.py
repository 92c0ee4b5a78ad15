"""Point 7 of issue 21: :mod:`galileo.propagation` stays a leaf.

The import graph of the ``galileo`` package, built from its source with :mod:`ast`: every import statement,
at module level and inside functions, but those under ``if TYPE_CHECKING:`` (they never run). Importing
``galileo.a.b`` runs the packages on the way (``galileo.a``) but the root package, whose ``__init__`` is the
public façade every submodule import runs first anyway.
"""

from __future__ import annotations

import ast
from pathlib import Path

import galileo

_PACKAGE = Path(galileo.__file__).parent


def _module_file(name: str) -> Path | None:
    path = _PACKAGE.parent.joinpath(*name.split("."))
    for candidate in (path.with_suffix(".py"), path / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str) -> set[str]:
    """The galileo modules ``name`` imports (at module level and in functions; not for type checking)."""
    path = _module_file(name)
    assert path is not None, name
    tree = ast.parse(path.read_text(), str(path))
    skipped = {
        id(n)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and _is_type_checking(node)
        for n in ast.walk(node)
    }
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            targets = [
                f"{base}.{alias.name}" if _module_file(f"{base}.{alias.name}") else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            if not target.startswith("galileo"):
                continue
            parts = target.split(".")
            # the modules the import runs: each package on the way (galileo itself aside), then the module
            found.update(
                ".".join(parts[:i]) for i in range(2, len(parts) + 1) if _module_file(".".join(parts[:i]))
            )
            if target == "galileo":
                found.add("galileo")
    return found


def _closure(start: str) -> dict[str, str]:
    """Every galileo module ``start`` imports, directly or not, each with the module that imports it."""
    seen = {start: ""}
    todo = [start]
    while todo:
        module = todo.pop()
        for imported in _imports(module):
            if imported not in seen:
                seen[imported] = module
                todo.append(imported)
    return seen


def test_propagation_imports_no_logger_and_no_middleware() -> None:
    reached = _closure("galileo.propagation")
    assert "galileo._w3c" in reached and "galileo._context" in reached, "the graph is built"
    for forbidden in (
        "galileo.logger",
        "galileo.middleware",
        "galileo.decorator",
        "galileo._galileo_context",
    ):
        chain = [forbidden]
        while chain[-1] in reached and reached[chain[-1]]:
            chain.append(reached[chain[-1]])
        assert forbidden not in reached, " <- ".join(chain)


def test_the_import_graph_sees_imports_in_functions() -> None:
    """The check above is not vacuous: the middleware's request module imports the logger, and _current
    imports the middleware inside a function."""
    assert "galileo.logger" in _closure("galileo.middleware._request")
    assert "galileo.middleware._request" in _imports("galileo._current")
