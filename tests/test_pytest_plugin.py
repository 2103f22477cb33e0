"""The eventbus pytest plugin, tested with pytest's own ``pytester``.

Most runs are in-process (``runpytest``): the plugin is loaded there through its
``pytest11`` entry point, as in any project that installs eventbus. One run uses
a subprocess to prove that a fresh interpreter finds the entry point.
"""

from __future__ import annotations

import re

import pytest

pytest_plugins = ["pytester"]

EVENTS = """
from eventbus import Event, subscribe

class Placed(Event, topic="orders.placed"):
    order_id: int
"""


@pytest.fixture
def events_module(pytester: pytest.Pytester) -> None:
    """An ``events.py`` beside the generated tests, importable from them."""
    pytester.makepyfile(events=EVENTS)
    pytester.syspathinsert()


def test_the_entry_point_loads_the_plugin_in_a_fresh_interpreter(pytester: pytest.Pytester) -> None:
    """A subprocess pytest run offers the fixtures without any import or ``-p`` option."""
    pytester.makepyfile(
        """
        def test_fixtures(event_bus, event_recorder, default_event_bus):
            event_bus.post("hello", 1)
            event_recorder.assert_posted_once("hello")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


def test_the_plugin_can_be_disabled(pytester: pytest.Pytester) -> None:
    """``-p no:eventbus`` removes the fixtures."""
    pytester.makepyfile(
        """
        def test_uses_it(event_bus):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:eventbus")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'event_bus' not found*"])


def test_fixtures_are_listed_with_their_docs(pytester: pytest.Pytester) -> None:
    """``pytest --fixtures`` shows the three fixtures with their one-line docs."""
    result = pytester.runpytest("--fixtures")
    result.stdout.fnmatch_lines(
        [
            "*event_bus*",
            "*A synchronous test bus that raises handler exceptions from ``post``*",
            "*event_recorder*",
            "*An `EventRecorder` of every event posted on the ``event_bus`` fixture.*",
            "*default_event_bus*",
            "*A fresh test bus installed as the default bus for the test*",
        ],
        consecutive=False,
    )


@pytest.mark.usefixtures("events_module")
def test_event_bus_raises_handler_errors_in_the_test(pytester: pytest.Pytester) -> None:
    """A handler's exception fails the test that posted, with the handler's traceback and note."""
    pytester.makepyfile(
        """
        from events import Placed, subscribe

        @subscribe(Placed)
        def broken_handler(event):
            raise ValueError(f"cannot place {event.order_id}")

        def test_post(event_bus):
            event_bus.register(broken_handler)
            event_bus.post(Placed(order_id=3))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*def broken_handler(event):",
            "*ValueError: cannot place 3",
            "*raised by handler broken_handler for topic 'orders.placed'",
        ],
        consecutive=False,
    )


@pytest.mark.usefixtures("events_module")
def test_event_bus_is_synchronous_and_fresh_per_test(pytester: pytest.Pytester) -> None:
    """Each test gets its own bus, delivers before ``post`` returns, and the bus is shut down after."""
    pytester.makepyfile(
        """
        from events import Placed, subscribe

        seen = []
        buses = []

        @subscribe(Placed)
        def handle(event):
            seen.append(event.order_id)

        def test_one(event_bus):
            buses.append(event_bus)
            event_bus.register(handle)
            event_bus.post(Placed(order_id=1))
            assert seen == [1]

        def test_two(event_bus):
            assert buses[0].closed
            assert event_bus is not buses[0]
            assert not event_bus.is_registered(handle)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


@pytest.mark.usefixtures("events_module")
def test_event_recorder_records_the_event_bus(pytester: pytest.Pytester) -> None:
    """``event_recorder`` listens to ``event_bus``; its failures list what was posted."""
    pytester.makepyfile(
        """
        from events import Placed

        def test_passes(event_bus, event_recorder):
            event_bus.post(Placed(order_id=1))
            event_recorder.assert_posted_once_with(Placed(order_id=1))
            assert event_recorder.bus is event_bus

        def test_fails(event_bus, event_recorder):
            event_bus.post(Placed(order_id=1))
            event_bus.post("audit", "x")
            event_recorder.assert_posted(Placed(order_id=2))
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.re_match_lines(
        [
            r"E +" + re.escape(line)
            for line in [
                "AssertionError: Expected Placed(order_id=2) to have been posted.",
                "Recorded on bus 'event_bus' (key=object), 2 event(s):",
                "  [0] Placed(order_id=1)",
                "  [1] Message(topic='audit', data='x', ordered=None)",
            ]
        ],
        consecutive=True,
    )
    # __tracebackhide__ keeps eventbus's own frames out of the failure report.
    result.stdout.no_fnmatch_line("*eventbus/testing.py*")


@pytest.mark.usefixtures("events_module")
def test_default_event_bus_is_installed_for_one_test(pytester: pytest.Pytester) -> None:
    """``default_event_bus`` is the default bus during the test; the previous default comes back after."""
    # An application bus installed at import time: the documented setup turns the reset off.
    pytester.makeini(
        """
        [pytest]
        eventbus_reset_default_bus = false
        """
    )
    pytester.makepyfile(
        """
        import eventbus
        from events import Placed, subscribe

        app_bus = eventbus.EventBus(strategy="sync", name="app")
        eventbus.set_default_bus(app_bus)

        @subscribe(Placed)
        def broken(event):
            raise RuntimeError("strict default")

        def test_uses_it(default_event_bus):
            assert eventbus.get_default_bus() is default_event_bus
            eventbus.register(broken)
            try:
                eventbus.post(Placed(order_id=1))
            except RuntimeError as exc:
                assert str(exc) == "strict default"
            else:
                raise AssertionError("the default test bus did not raise")

        def test_after():
            assert eventbus.get_default_bus() is app_bus
            assert not app_bus.closed
            assert not app_bus.is_registered(broken)
        """
    )
    result = pytester.runpytest()
    result.assert_outcomes(passed=2)


RESET_TESTS = """
import eventbus

buses = []

def test_first():
    buses.append(eventbus.get_default_bus())

def test_second():
    buses.append(eventbus.get_default_bus())

def test_check():
    assert len(buses) == 2
    print("SAME" if buses[0] is buses[1] else "DIFFERENT", "CLOSED" if buses[0].closed else "OPEN")
"""


def test_default_bus_is_reset_after_each_test(pytester: pytest.Pytester) -> None:
    """By default, each test's default bus is shut down and forgotten after it."""
    pytester.makepyfile(RESET_TESTS)
    result = pytester.runpytest("-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*DIFFERENT CLOSED*"])


def test_reset_option_false_leaves_the_default_bus_alone(pytester: pytest.Pytester) -> None:
    """With ``eventbus_reset_default_bus = false``, the default bus lives across tests."""
    pytester.makeini(
        """
        [pytest]
        eventbus_reset_default_bus = false
        """
    )
    pytester.makepyfile(RESET_TESTS)
    result = pytester.runpytest("-s", "--strict-config")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*SAME OPEN*"])
