"""Shared fixtures: a fresh bus per strategy, a recorder, and a clean default bus per test."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import settings

import eventbus
from eventbus import EventBus

from .helpers import Recorder

STRATEGIES: list[str] = ["sync", "ordered", "concurrent"]
"""The strategies that every behavioural test runs under (the ``bus`` fixture's parameters)."""

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


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    """The name of the strategy under test."""
    name: str = request.param
    return name


@pytest.fixture
def make_bus(strategy: str) -> Iterator[Callable[..., EventBus]]:
    """A factory of buses on the strategy under test; every bus it made is shut down afterwards."""
    made: list[EventBus] = []

    def make(**options: Any) -> EventBus:
        bus = EventBus(strategy=strategy, **options)  # type: ignore[arg-type]  # a parametrized Literal
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
