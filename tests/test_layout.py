"""The package's shape: one idea per module, dependencies running one way, modules one person can hold.

These tests read the source (they import nothing of eventbus), so they hold for the
compiled build too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "eventbus"
MAX_LINES = 800


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``eventbus._bus``, ``eventbus._strategies.sync``)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that *name* imports, at run time or for type checking only."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            submodules = [f"{target}.{alias.name}" for alias in node.names]
            # `from . import _waiting` names a submodule, not the package itself.
            candidates = [name for name in submodules if name in known] or [target]
        elif isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        else:
            continue
        found.update(candidate for candidate in candidates if candidate in known and candidate != name)
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    known = set(found)
    return {name: imports_of(name, path, known) for name, path in found.items()}


def test_no_module_is_imported_in_a_cycle_type_only_imports_included() -> None:
    edges = graph()
    edges.pop("eventbus")  # the public package imports everything it re-exports; nothing imports it back
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise AssertionError("import cycle: " + " -> ".join(cycle))
        visiting.append(name)
        for target in sorted(edges.get(name, ())):
            if target != "eventbus":
                visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(edges):
        visit(name)


ADD_ONS = {"eventbus.testing", "eventbus.compat", "eventbus._pytest_plugin"}
"""Built on the public API, as a user's code would be: they may import ``eventbus`` itself."""


def test_only_the_add_ons_import_the_public_package() -> None:
    """The core never depends on ``eventbus/__init__`` (which depends on all of it)."""
    importers = {name for name, targets in graph().items() if name != "eventbus" and "eventbus" in targets}
    assert importers <= ADD_ONS, sorted(importers - ADD_ONS)


def test_strategies_are_imported_only_by_the_bus() -> None:
    """Below the bus nothing knows which strategy runs (the public package re-exports them)."""
    importers = {
        name
        for name, targets in graph().items()
        if any(target.startswith("eventbus._strategies") for target in targets)
        and not name.startswith("eventbus._strategies")
    }
    assert importers <= {"eventbus", "eventbus._bus"}, sorted(importers)


OVERSIZE: dict[str, int] = {}
"""Modules still over `MAX_LINES`, with the size they may not grow past, until each is split
along its ideas (issue 11). A ratchet: a module may leave this list, never join it."""


def test_no_module_is_longer_than_one_person_can_hold() -> None:
    lengths = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in modules().items()}
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES and n > OVERSIZE.get(name, 0)}
    assert too_long == {}
    assert {name for name in OVERSIZE if lengths.get(name, 0) <= MAX_LINES} == set(), "split: drop it from OVERSIZE"
