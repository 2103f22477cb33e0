"""No loop in the package can let an interrupt skip its ``except``, ``finally`` or ``__exit__``.

CPython 3.13.0 checks for a pending signal at a loop's back-edge (``JUMP_BACKWARD``) *before*
jumping, and the compiler leaves a back-edge that ends a ``try`` or ``with`` body out of that
block's exception-table range (python/cpython#130279). A ``KeyboardInterrupt`` raised there
leaves the function as if no handler were there: ``with lock:`` keeps the lock forever, an
``except BaseException:`` that strands queued events never runs. Seen in CI: a sync bus's orphan
lock leaked under an interrupt storm and ``join()`` hung.

The shapes that do it: ``while cond:`` as the last statement of a ``try``/``with`` body, a ``for``
loop whose last statement is an ``if`` without ``else``, and list/set/dict comprehensions inside
a ``try``/``with``. This test reads every function of the package as the running interpreter
compiled it and fails on any back-edge that is outside every handler although the loop it
closes is inside one (a user handler: one that starts with ``PUSH_EXC_INFO``). Python 3.11 and
3.12 jump first and check after, at a covered instruction, so the shape is harmless there and
the package scan runs on 3.13 and later only (the CI runs 3.13.0); the detector's own test runs
everywhere.
"""

from __future__ import annotations

import dis
import importlib
import importlib.util
import pkgutil
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventbus

PACKAGE_ROOT = Path(eventbus.__file__).parent


def _module_sources() -> Iterator[tuple[str, Path]]:
    yield "eventbus", PACKAGE_ROOT / "__init__.py"
    for info in pkgutil.walk_packages([str(PACKAGE_ROOT)], "eventbus."):
        spec = importlib.util.find_spec(info.name)
        origin = None if spec is None else spec.origin
        if origin is None:
            continue
        # The compiled build installs .so files; their .py sources sit next to them in a
        # checkout only. Read the source wherever it is: the shape is a property of the code.
        source = Path(origin).with_suffix(".py") if not origin.endswith(".py") else Path(origin)
        if not source.exists():
            source = PACKAGE_ROOT.joinpath(*info.name.split(".")[1:]).with_suffix(".py")
            if not source.exists():
                source = PACKAGE_ROOT.joinpath(*info.name.split(".")[1:], "__init__.py")
        if source.exists():
            yield info.name, source


def _code_objects(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _code_objects(const)


def _reaches_user_handler(target: int, by_offset: dict[int, dis.Instruction], table: list[Any]) -> bool:
    """Whether the handler at *target*, or a handler around it, is the program's own."""
    seen: set[int] = set()
    while target not in seen:
        seen.add(target)
        if by_offset[target].opname == "PUSH_EXC_INFO":  # except, finally and with handlers
            return True
        # An implicit handler (a comprehension restoring its variable, a generator turning
        # StopIteration into RuntimeError) passes the exception on to what covers it.
        around = [entry for entry in table if entry.start <= target < entry.end]
        if not around:
            return False
        target = around[0].target
    return False


def escaping_back_edges(code: types.CodeType) -> list[int]:
    """Line numbers of back-edges in *code* where an interrupt would skip a handler."""
    table: list[Any] = dis.Bytecode(code).exception_entries  # type: ignore[attr-defined]  # not in typeshed
    instructions = list(dis.get_instructions(code))
    by_offset = {ins.offset: ins for ins in instructions}
    lines = []
    for ins in instructions:
        if ins.opname != "JUMP_BACKWARD":  # JUMP_BACKWARD_NO_INTERRUPT does not check
            continue
        if any(entry.start <= ins.offset < entry.end for entry in table):
            continue
        loop = [entry for entry in table if entry.start <= ins.argval < entry.end]
        if loop and _reaches_user_handler(loop[0].target, by_offset, table):
            lines.append(ins.positions.lineno if ins.positions and ins.positions.lineno else -1)
    return lines


def test_the_scan_finds_the_shapes_that_escape() -> None:
    """The detector itself: it flags the known bad shapes and passes their safe rewrites."""
    source = """
import threading
lock = threading.Lock()
def bad_while(items, out):
    with lock:
        while items:
            out.append(items.pop())
def bad_for_if(items, out):
    try:
        for item in items:
            if item:
                out.append(item)
    except BaseException:
        out.clear()
        raise
def bad_comprehension(items):
    with lock:
        return [item for item in items if item]
def good_while(items, out):
    with lock:
        while True:
            if not items:
                break
            out.append(items.pop())
def good_helper(items, out):
    with lock:
        out.extend(_copy(items))
def _copy(items):
    return [item for item in items if item]
"""
    namespace: dict[str, object] = {}
    exec(compile(source, "<shapes>", "exec"), namespace)
    found = {
        name: bool(escaping_back_edges(func.__code__))
        for name, func in namespace.items()
        if isinstance(func, types.FunctionType)
    }
    if sys.version_info >= (3, 12):
        assert found == {
            "bad_while": True,
            "bad_for_if": True,
            "bad_comprehension": True,
            "good_while": False,
            "good_helper": False,
            "_copy": False,
        }
    else:  # 3.11 lays the loops out differently: nothing to find, nothing to fear
        assert not any(found.values())


@pytest.mark.skipif(sys.version_info < (3, 13), reason="3.11 and 3.12 check interrupts after the jump")
@pytest.mark.parametrize(("module", "source"), sorted(_module_sources()), ids=lambda value: str(value))
def test_no_back_edge_escapes_a_handler(module: str, source: Path) -> None:
    code = compile(source.read_text(), str(source), "exec")
    bad = [
        f"{source.name}:{line} in {inner.co_qualname}"
        for inner in _code_objects(code)
        for line in escaping_back_edges(inner)
    ]
    assert not bad, (
        "an interrupt at these loop back-edges would skip the enclosing try/with handler on "
        "CPython 3.13 (see this module's docstring for the safe shapes): " + ", ".join(bad)
    )
