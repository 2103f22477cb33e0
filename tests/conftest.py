"""Shared fixtures: a fresh bus per strategy, a recorder, and a clean default bus per test."""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

import eventbus
from eventbus import EventBus

from .helpers import Recorder

STRATEGIES: list[str] = ["sync", "ordered", "concurrent", "asyncio", "custom"]
"""The strategies that every behavioural test runs under (the ``bus`` fixture's parameters).

The behavioural tests are written as a threaded program would use the bus (post, then
``join()``), so the asyncio strategy's bus gets an event loop running on a thread of
its own, as a program that hands work from threads to a loop would set it up.
``"custom"`` is ``OneBackgroundThread`` from ``examples/09_custom_strategy.py``, a
strategy written with eventbus's public names only."""


def _custom_strategy_class() -> Any:
    path = Path(__file__).resolve().parent.parent / "examples" / "09_custom_strategy.py"
    spec = importlib.util.spec_from_file_location("custom_strategy_example", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pydantic look their module up
    spec.loader.exec_module(module)
    return module.OneBackgroundThread


CustomStrategy: Any = _custom_strategy_class()

# Explicit deadlines, as attrs does: none on CI, where a loaded runner must not turn slow
# examples into flaky failures; a generous one locally to catch an accidental slowdown.
settings.register_profile("ci", deadline=None, print_blob=True)
settings.register_profile("dev", deadline=2000)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _reset_default_bus() -> Iterator[None]:
    """Leave no default bus behind: each test starts with none."""
    yield
    eventbus.reset_default_bus()


@pytest.fixture(autouse=True)
def _logging_lock_not_kept() -> Iterator[None]:
    """Fail a test that leaves the `logging` module's lock held by this thread, and free it.

    An interrupt storm that lands between ``logging._acquireLock()`` and its ``try``
    keeps the lock for ever (CPython's logging before 3.13); the next thread that logs
    would hang, far from the cause. The storms spare logging's frames
    (`helpers.in_logging`); this makes sure of it.
    """
    yield
    lock: Any = getattr(logging, "_lock", None)
    if lock is not None and lock._is_owned():
        while lock._is_owned():
            lock.release()
        pytest.fail("the test left the logging module's lock held (an interrupt landed inside logging)")


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    """The name of the strategy under test."""
    name: str = request.param
    return name


_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def background_loop() -> asyncio.AbstractEventLoop:
    """An event loop running on a daemon thread of its own, shared by the tests' asyncio buses."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="tests-asyncio-loop", daemon=True).start()
        return _loop


def new_bus(strategy: str, **options: Any) -> EventBus:
    """``EventBus(strategy=strategy, **options)``, on `background_loop` for the asyncio strategy.

    ``"custom"`` makes a `CustomStrategy` (with the ``max_queued`` given, if any).
    """
    if strategy == "asyncio":
        options.setdefault("loop", background_loop())
    if strategy == "custom":
        return EventBus(strategy=CustomStrategy(max_queued=options.pop("max_queued", 10_000)), **options)
    return EventBus(strategy=strategy, **options)  # type: ignore[arg-type]  # a parametrized Literal


@pytest.fixture
def make_bus(strategy: str) -> Iterator[Callable[..., EventBus]]:
    """A factory of buses on the strategy under test; every bus it made is shut down afterwards."""
    made: list[EventBus] = []

    def make(**options: Any) -> EventBus:
        bus = new_bus(strategy, **options)
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.shutdown(timeout=10)


@pytest.fixture
def bus(make_bus: Callable[..., EventBus], strategy: str) -> EventBus:
    """A fresh bus on the strategy under test."""
    return make_bus(name=f"test-{strategy}")


@pytest.fixture
def recorder() -> Recorder:
    """A thread-safe list of ``(handler_name, event)`` calls."""
    return Recorder()
