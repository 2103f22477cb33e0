"""The eventbus pytest plugin: fixtures built on `eventbus.testing`.

Installed with eventbus and loaded by pytest through the ``pytest11`` entry
point, so its fixtures are available in every test without an import:

- ``event_bus``: a fresh `eventbus.testing.make_test_bus` bus (synchronous;
  handler exceptions are raised from ``post``), shut down after the test;
- ``event_recorder``: an `eventbus.testing.EventRecorder` on ``event_bus`` that
  records every event posted on it;
- ``default_event_bus``: a fresh test bus installed as the process-wide default
  bus for the test, with the previous default put back afterwards.

The plugin's one autouse fixture calls ``eventbus.reset_default_bus()`` after
every test, so each test starts without a default bus and nothing one test
posted or registered there leaks into the next (structlog resets its global
configuration the same way). An application that registers subscribers on the
default bus when a module is imported would lose them after the first test: it
sets the ini option ``eventbus_reset_default_bus = false`` and uses the
``default_event_bus`` fixture in the tests that post. Disable the whole plugin
with ``-p no:eventbus``.

Added in version 0.1.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from eventbus import EventBus, reset_default_bus
from eventbus.testing import EventRecorder, isolated_default_bus, make_test_bus

__all__ = ["default_event_bus", "event_bus", "event_recorder", "pytest_addoption"]

_RESET_OPTION = "eventbus_reset_default_bus"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Register the ``eventbus_reset_default_bus`` ini option."""
    parser.addini(
        _RESET_OPTION,
        type="bool",
        default=True,
        help="eventbus: shut down and forget the default bus after every test (default: true).",
    )


@pytest.fixture
def event_bus() -> Iterator[EventBus]:
    """A synchronous test bus that raises handler exceptions from ``post``; shut down after the test."""
    bus = make_test_bus(name="event_bus")
    try:
        yield bus
    finally:
        bus.shutdown()


@pytest.fixture
def event_recorder(event_bus: EventBus) -> Iterator[EventRecorder]:
    """An `EventRecorder` of every event posted on the ``event_bus`` fixture."""
    recorder = EventRecorder(event_bus)
    try:
        yield recorder
    finally:
        recorder.detach()


@pytest.fixture
def default_event_bus() -> Iterator[EventBus]:
    """A fresh test bus installed as the default bus for the test; the previous default is restored after."""
    with isolated_default_bus(make_test_bus(name="default_event_bus")) as bus:
        yield bus


@pytest.fixture(autouse=True)
def _eventbus_reset_default_bus(request: pytest.FixtureRequest) -> Iterator[None]:
    """Reset the default bus after each test, unless the ini option turns it off."""
    yield
    if request.config.getini(_RESET_OPTION):
        reset_default_bus()
