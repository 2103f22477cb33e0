"""eventbus.testing: the event recorder, the strict test bus and the default-bus helper.

Every wait has a timeout; gates stand in for timing, never sleep().
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from unittest.mock import ANY

import pytest

import eventbus
from eventbus import DeadEvent, ErrorContext, Event, EventBus, Message, SyncDelivery, subscribe
from eventbus.testing import EventRecorder, StrictDelivery, capture_events, isolated_default_bus, make_test_bus

WAIT = 10.0


class Placed(Event, topic="orders.placed"):
    order_id: int


class Shipped(Event, topic="orders.shipped"):
    order_id: int


@pytest.fixture
def sync_bus() -> Iterator[EventBus]:
    bus = EventBus(strategy="sync", name="sync")
    yield bus
    bus.shutdown()


@pytest.fixture
def test_bus() -> Iterator[EventBus]:
    bus = make_test_bus()
    yield bus
    bus.shutdown()


@pytest.fixture(params=["sync", "ordered", "concurrent"])
def any_bus(request: pytest.FixtureRequest) -> Iterator[EventBus]:
    bus = EventBus(strategy=request.param, workers=4, name=request.param)
    yield bus
    bus.shutdown(timeout=WAIT)


# -- EventRecorder ------------------------------------------------------------------------


def test_recorder_records_every_event_in_post_order(sync_bus: EventBus) -> None:
    """A recorder on ``object`` records every posted event, typed or not, in post order."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    sync_bus.post("audit", {"who": "me"})
    sync_bus.post(Shipped(order_id=1))
    assert recorder.events == [Placed(order_id=1), Message("audit", {"who": "me"}), Shipped(order_id=1)]
    assert recorder.call_count == 3
    assert recorder.last_event == Shipped(order_id=1)


def test_recorder_events_is_a_copy(sync_bus: EventBus) -> None:
    """Changing the list that ``events`` returns does not change the recording."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    recorder.events.clear()
    assert recorder.call_count == 1


def test_recorder_records_exactly_once_on_every_strategy(any_bus: EventBus) -> None:
    """Each event is recorded exactly once, whatever the strategy, once the bus is joined."""
    recorder = EventRecorder(any_bus)
    for n in range(200):
        any_bus.post(Placed(order_id=n))
    assert any_bus.join(WAIT)
    assert sorted(e.order_id for e in recorder.events if isinstance(e, Placed)) == list(range(200))
    assert recorder.call_count == 200


def test_recorder_is_invisible_to_results_and_delivered_counts(sync_bus: EventBus) -> None:
    """The recorder adds no value to ``publish().result()`` and no call to ``stats().delivered``."""

    @subscribe(Placed)
    def handle(event: Placed) -> int:
        return event.order_id * 10

    sync_bus.register(handle)
    recorder = EventRecorder(sync_bus)
    assert sync_bus.publish(Placed(order_id=4)).result(WAIT) == [40]
    assert sync_bus.stats().delivered == 1
    recorder.assert_posted_once(Placed(order_id=4))


def test_recorder_sees_the_event_before_other_handlers(sync_bus: EventBus) -> None:
    """The recorder has the highest priority: it has recorded an event before any handler runs."""
    seen_by_handler: list[int] = []

    @subscribe(Placed, priority=1_000_000)
    def handle(event: Placed) -> None:
        seen_by_handler.append(recorder.call_count)

    sync_bus.register(handle)
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    assert seen_by_handler == [1]


def test_recorder_key_class_records_only_instances(sync_bus: EventBus) -> None:
    """``key=EventClass`` records that class and its subclasses only."""
    recorder = EventRecorder(sync_bus, Placed)
    sync_bus.post(Shipped(order_id=1))
    sync_bus.post(Placed(order_id=2))
    assert recorder.events == [Placed(order_id=2)]


def test_recorder_key_topic_records_only_that_topic(sync_bus: EventBus) -> None:
    """``key="topic"`` records the events with that topic, typed events and messages alike."""
    recorder = EventRecorder(sync_bus, "orders.shipped")
    sync_bus.post(Placed(order_id=1))
    sync_bus.post(Shipped(order_id=2))
    sync_bus.post("orders.shipped", 3)
    assert recorder.events == [Shipped(order_id=2), Message("orders.shipped", 3)]


def test_recorder_on_object_prevents_dead_events(sync_bus: EventBus) -> None:
    """A catch-all recorder is a subscriber, so no event is dead while it listens."""
    dead = EventRecorder(sync_bus, DeadEvent)
    everything = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    assert everything.events == [Placed(order_id=1)]
    dead.assert_not_posted()


def test_recorder_on_dead_event_records_unhandled_events(sync_bus: EventBus) -> None:
    """``key=DeadEvent`` records the events that no handler received."""
    recorder = EventRecorder(sync_bus, DeadEvent)
    sync_bus.post(Placed(order_id=1))
    recorder.assert_posted_once_with(DeadEvent(event=Placed(order_id=1)))
    recorder.assert_posted(where=lambda e: e.event == Placed(order_id=1))


def test_detach_stops_recording_and_keeps_what_was_recorded(sync_bus: EventBus) -> None:
    """After ``detach`` nothing more is recorded, and the recorder is no longer registered."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    before = recorder.attached
    assert recorder.detach() is True
    assert recorder.detach() is False
    assert (before, recorder.attached) == (True, False)
    sync_bus.post(Placed(order_id=2))
    assert recorder.events == [Placed(order_id=1)]
    assert sync_bus.stats().subscribers == 0


def test_clear_forgets_the_recorded_events(sync_bus: EventBus) -> None:
    """``clear`` empties the recording; recording goes on."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    recorder.clear()
    recorder.assert_not_posted()
    assert recorder.last_event is None
    sync_bus.post(Placed(order_id=2))
    assert recorder.events == [Placed(order_id=2)]


def test_recorder_defaults_to_the_default_bus() -> None:
    """Without a bus, the recorder listens to the default bus."""
    with isolated_default_bus() as bus:
        recorder = EventRecorder()
        assert recorder.bus is bus
        eventbus.post(Placed(order_id=1))
        recorder.assert_posted_once(Placed)


def test_wait_returns_once_enough_events_arrived_from_other_threads() -> None:
    """``wait(count)`` blocks until *count* events are recorded, and times out otherwise."""
    with EventBus(strategy="concurrent", workers=4) as bus:
        recorder = EventRecorder(bus)
        gate = threading.Event()

        @subscribe(Placed)
        def hold(event: Placed) -> None:
            gate.wait(WAIT)

        bus.register(hold)
        assert recorder.wait(0, timeout=0)
        assert not recorder.wait(1, timeout=0)
        for n in range(3):
            bus.post(Placed(order_id=n))
        assert recorder.wait(3, timeout=WAIT)
        gate.set()


def test_repr_names_bus_key_and_count(sync_bus: EventBus) -> None:
    """The repr says where the recorder listens and how much it holds."""
    recorder = EventRecorder(sync_bus, Placed)
    sync_bus.post(Placed(order_id=1))
    assert repr(recorder) == "<EventRecorder on 'sync' key=Placed: 1 event(s)>"
    recorder.detach()
    assert repr(recorder) == "<EventRecorder on 'sync' key=Placed detached: 1 event(s)>"


def test_recorder_shows_in_subscribers_under_its_name(sync_bus: EventBus) -> None:
    """The recorder's subscription is listed as ``EventRecorder.record``."""
    EventRecorder(sync_bus)
    assert [s.name for s in sync_bus.subscribers(Placed)] == ["EventRecorder.record"]


# -- assertions ----------------------------------------------------------------------------


@pytest.fixture
def recorded(sync_bus: EventBus) -> EventRecorder:
    """A recorder that holds Placed(1), Shipped(1), Placed(2)."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    sync_bus.post(Shipped(order_id=1))
    sync_bus.post(Placed(order_id=2))
    return recorder


def test_assertions_that_hold_pass(recorded: EventRecorder) -> None:
    """Each assertion passes when its condition holds."""
    recorded.assert_posted()
    recorded.assert_posted(Placed)
    recorded.assert_posted("orders.shipped")
    recorded.assert_posted(Placed(order_id=2))
    recorded.assert_posted(where=lambda e: getattr(e, "order_id", None) == 2)
    recorded.assert_posted(Placed, where=lambda e: e.order_id == 1)
    recorded.assert_posted_once(Shipped)
    recorded.assert_posted_once("orders.placed", where=lambda e: e.order_id == 2)
    recorded.assert_posted_times(3)
    recorded.assert_posted_times(2, Placed)
    recorded.assert_posted_times(0, DeadEvent)
    recorded.assert_not_posted(DeadEvent)
    recorded.assert_not_posted("orders.cancelled")
    recorded.assert_posted_with(Placed(order_id=2))
    recorded.assert_posted_with(Placed)
    recorded.assert_posted_with(ANY)


def test_assert_posted_fails_when_nothing_matches(recorded: EventRecorder) -> None:
    """The failure names what was expected and lists every recorded event with its index."""
    expected = (
        "Expected an event with topic 'orders.cancelled' to have been posted.\n"
        "Recorded on bus 'sync' (key=object), 3 event(s):\n"
        "  [0] Placed(order_id=1)\n"
        "  [1] Shipped(order_id=1)\n"
        "  [2] Placed(order_id=2)"
    )
    with pytest.raises(AssertionError) as info:
        recorded.assert_posted("orders.cancelled")
    assert str(info.value) == expected


def test_assert_posted_on_an_empty_recorder_says_so(sync_bus: EventBus) -> None:
    """With nothing recorded, the message says so and names the bus."""
    recorder = EventRecorder(sync_bus, Placed)
    with pytest.raises(
        AssertionError,
        match=r"^Expected an event to have been posted\.\nNo events were recorded on bus 'sync' \(key=Placed\)\.$",
    ):
        recorder.assert_posted()


def test_assert_posted_once_reports_the_count(recorded: EventRecorder) -> None:
    """``assert_posted_once`` fails with how often the event was posted."""
    with pytest.raises(
        AssertionError, match=r"^Expected an event of type Placed to have been posted once; it was posted twice\."
    ):
        recorded.assert_posted_once(Placed)
    with pytest.raises(AssertionError, match=r"posted once; it was posted never\."):
        recorded.assert_posted_once(DeadEvent)


def test_assert_posted_times_reports_the_count(recorded: EventRecorder) -> None:
    """``assert_posted_times`` fails with the expected and the actual count."""
    with pytest.raises(
        AssertionError, match=r"^Expected an event to have been posted 4 times; it was posted 3 times\."
    ):
        recorded.assert_posted_times(4)


def test_assert_not_posted_fails_and_lists_events(recorded: EventRecorder) -> None:
    """``assert_not_posted`` fails when a matching event was recorded, listing the events."""
    with pytest.raises(
        AssertionError,
        match=r"(?s)^Expected Shipped\(order_id=1\) to have been posted never; it was posted once\..*\[1\] Shipped",
    ):
        recorded.assert_not_posted(Shipped(order_id=1))


def test_assert_posted_with_checks_only_the_last_event(recorded: EventRecorder) -> None:
    """``assert_posted_with`` compares the last event, as ``assert_called_with`` does."""
    with pytest.raises(
        AssertionError,
        match=r"^Expected Placed\(order_id=1\) to have been posted last\.\nActual: Placed\(order_id=2\)\n",
    ):
        recorded.assert_posted_with(Placed(order_id=1))


def test_assert_posted_with_on_an_empty_recorder(sync_bus: EventBus) -> None:
    """``assert_posted_with`` with nothing recorded says that nothing was posted."""
    recorder = EventRecorder(sync_bus)
    with pytest.raises(AssertionError, match="nothing was posted"):
        recorder.assert_posted_with(Placed)


def test_assert_posted_once_with(sync_bus: EventBus) -> None:
    """``assert_posted_once_with`` needs exactly one event in all, and a matching one."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post(Placed(order_id=1))
    recorder.assert_posted_once_with(Placed(order_id=1))
    with pytest.raises(AssertionError, match=r"^Expected the one event posted to be Placed\(order_id=2\)\."):
        recorder.assert_posted_once_with(Placed(order_id=2))
    sync_bus.post(Placed(order_id=1))
    with pytest.raises(AssertionError, match=r"^Expected exactly one event, Placed\(order_id=1\); 2 were posted\."):
        recorder.assert_posted_once_with(Placed(order_id=1))


def test_where_is_named_in_the_message(recorded: EventRecorder) -> None:
    """A ``where=`` predicate is named in the failure message."""

    def is_big(event: object) -> bool:
        return getattr(event, "order_id", 0) > 100

    with pytest.raises(
        AssertionError, match=r"^Expected an event of type Placed matching where=.*is_big to have been posted\."
    ):
        recorded.assert_posted(Placed, where=is_big)


def test_long_recordings_are_cut_in_the_message(sync_bus: EventBus) -> None:
    """At most 20 events are listed; the rest are counted."""
    recorder = EventRecorder(sync_bus)
    for n in range(25):
        sync_bus.post(Placed(order_id=n))
    with pytest.raises(AssertionError) as info:
        recorder.assert_not_posted()
    message = str(info.value)
    assert "  [19] Placed(order_id=19)\n  ... and 5 more" in message
    assert "[20]" not in message


def test_long_event_reprs_are_cut_in_the_message(sync_bus: EventBus) -> None:
    """A very long event repr is shortened in the listing."""
    recorder = EventRecorder(sync_bus)
    sync_bus.post("big", "x" * 1000)
    with pytest.raises(AssertionError) as info:
        recorder.assert_not_posted()
    (line,) = (line for line in str(info.value).splitlines() if line.startswith("  [0]"))
    assert line.endswith("...")
    assert len(line) < 200


# -- capture_events ------------------------------------------------------------------------


def test_capture_events_records_during_the_block_only(sync_bus: EventBus) -> None:
    """Events posted before or after the block are not recorded."""
    sync_bus.post(Placed(order_id=0))
    with capture_events(sync_bus) as posted:
        sync_bus.post(Placed(order_id=1))
    sync_bus.post(Placed(order_id=2))
    assert posted.events == [Placed(order_id=1)]
    assert not posted.attached


def test_capture_events_joins_an_asynchronous_bus_on_exit() -> None:
    """On a thread-pool bus, every event posted in the block is recorded when the block ends."""
    with EventBus(strategy="concurrent", workers=4) as bus:
        with capture_events(bus, Placed) as posted:
            for n in range(500):
                bus.post(Placed(order_id=n))
        assert posted.call_count == 500


def test_capture_events_detaches_when_the_block_raises(sync_bus: EventBus) -> None:
    """An exception in the block still detaches the recorder."""
    with pytest.raises(RuntimeError), capture_events(sync_bus) as posted:
        raise RuntimeError
    assert not posted.attached
    assert not sync_bus.has_subscribers(Placed)


def test_capture_events_takes_a_topic(sync_bus: EventBus) -> None:
    """``capture_events(bus, "topic")`` records that topic only."""
    with capture_events(sync_bus, "orders.placed") as posted:
        sync_bus.post(Shipped(order_id=1))
        sync_bus.post(Placed(order_id=1))
    posted.assert_posted_once_with(Placed(order_id=1))


# -- StrictDelivery and make_test_bus ------------------------------------------------------


def test_make_test_bus_is_a_strict_synchronous_bus() -> None:
    """``make_test_bus()`` is an EventBus on StrictDelivery, named for the test."""
    bus = make_test_bus()
    assert isinstance(bus, EventBus)
    assert bus.name == "test"
    assert "StrictDelivery" in repr(bus)
    assert make_test_bus(name="mine").name == "mine"


def test_handler_error_is_raised_from_post(test_bus: EventBus) -> None:
    """The original exception reaches the test, with a note naming handler and topic."""

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError(f"cannot place {event.order_id}")

    test_bus.register(broken)
    with pytest.raises(ValueError, match="cannot place 7") as info:
        test_bus.post(Placed(order_id=7))
    assert info.value.__notes__ == [
        "raised by handler test_handler_error_is_raised_from_post.<locals>.broken for topic 'orders.placed'"
    ]


def test_other_handlers_still_run_before_the_error_is_raised(test_bus: EventBus) -> None:
    """A failing handler does not stop the others; the error comes after all have run."""
    calls: list[str] = []

    @subscribe(Placed, priority=1)
    def first(event: Placed) -> None:
        calls.append("first")
        raise KeyError("first")

    @subscribe(Placed)
    def second(event: Placed) -> None:
        calls.append("second")

    test_bus.register(first)
    test_bus.register(second)
    with pytest.raises(KeyError):
        test_bus.post(Placed(order_id=1))
    assert calls == ["first", "second"]


def test_several_errors_are_raised_as_a_group_in_call_order(test_bus: EventBus) -> None:
    """Two failing handlers give an ExceptionGroup of both originals, in call order."""

    @subscribe(Placed, priority=1)
    def first(event: Placed) -> None:
        raise KeyError("first")

    @subscribe(Placed)
    def second(event: Placed) -> None:
        raise ValueError("second")

    test_bus.register(first)
    test_bus.register(second)
    with pytest.raises(ExceptionGroup) as info:
        test_bus.post(Placed(order_id=1))
    assert [type(e) for e in info.value.exceptions] == [KeyError, ValueError]
    assert str(info.value) == "2 handlers failed during this post (2 sub-exceptions)"


def test_errors_of_nested_posts_are_raised_from_the_outer_post(test_bus: EventBus) -> None:
    """An error in a handler of an event posted by a handler comes out of the outermost post."""
    calls: list[str] = []

    @subscribe(Placed)
    def place(event: Placed) -> None:
        calls.append("place")
        test_bus.post(Shipped(order_id=event.order_id))  # queued: raises nothing here
        calls.append("place done")

    @subscribe(Shipped)
    def ship(event: Shipped) -> None:
        calls.append("ship")
        raise LookupError("no carrier")

    test_bus.register(place)
    test_bus.register(ship)
    with pytest.raises(LookupError, match="no carrier"):
        test_bus.post(Placed(order_id=1))
    assert calls == ["place", "place done", "ship"]


def test_errors_still_reach_on_error() -> None:
    """``on_error`` sees each failure, and the failure is raised as well."""
    reports: list[tuple[BaseException, ErrorContext]] = []
    bus = make_test_bus(on_error=lambda exc, ctx: reports.append((exc, ctx)))

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError("x")

    bus.register(broken)
    with pytest.raises(ValueError, match="x") as info:
        bus.post(Placed(order_id=1))
    assert [exc for exc, _ in reports] == [info.value]
    assert reports[0][1].event == Placed(order_id=1)


def test_errors_are_logged_by_default(test_bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """With the default ``on_error``, a failure is logged with its traceback and raised."""

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError("logged too")

    test_bus.register(broken)
    with pytest.raises(ValueError, match="logged too"):
        test_bus.post(Placed(order_id=1))
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert record.exc_info is not None
    assert record.exc_info[1] is not None
    assert str(record.exc_info[1]) == "logged too"


def test_the_bus_stays_usable_after_an_error(test_bus: EventBus) -> None:
    """After a post raised, the next post delivers normally and raises only its own errors."""
    fail = [True]
    seen: list[int] = []

    @subscribe(Placed)
    def flaky(event: Placed) -> None:
        seen.append(event.order_id)
        if fail[0]:
            raise ValueError("once")

    test_bus.register(flaky)
    with pytest.raises(ValueError, match="once"):
        test_bus.post(Placed(order_id=1))
    fail[0] = False
    test_bus.post(Placed(order_id=2))
    assert seen == [1, 2]


def test_published_events_report_errors_through_the_delivery(test_bus: EventBus) -> None:
    """``publish`` does not raise: its errors come from ``result()``, as on any bus."""

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError("via result")

    test_bus.register(broken)
    delivery = test_bus.publish(Placed(order_id=1))
    with pytest.raises(ExceptionGroup) as info:
        delivery.result(WAIT)
    assert [str(e) for e in info.value.exceptions] == ["via result"]


def test_errors_are_raised_on_the_thread_that_posted(test_bus: EventBus) -> None:
    """A post from another thread raises there, not in the test's thread."""

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError(f"thread {event.order_id}")

    test_bus.register(broken)
    caught: list[BaseException] = []

    def poster() -> None:
        try:
            test_bus.post(Placed(order_id=2))
        except ValueError as exc:
            caught.append(exc)

    thread = threading.Thread(target=poster)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert [str(e) for e in caught] == ["thread 2"]
    with pytest.raises(ValueError, match="thread 1"):
        test_bus.post(Placed(order_id=1))


def test_keyboard_interrupt_propagates_at_once(test_bus: EventBus) -> None:
    """A KeyboardInterrupt from a handler reaches the poster directly, as on the sync strategy."""

    @subscribe(Placed)
    def interrupt(event: Placed) -> None:
        raise KeyboardInterrupt

    test_bus.register(interrupt)
    with pytest.raises(KeyboardInterrupt):
        test_bus.post(Placed(order_id=1))
    test_bus.unregister(interrupt)
    test_bus.post(Placed(order_id=2))  # still usable


def test_strict_delivery_serves_one_bus() -> None:
    """Like every strategy, a StrictDelivery instance belongs to one bus."""
    strategy = StrictDelivery()
    EventBus(strategy=strategy)
    with pytest.raises(RuntimeError, match="already serves a bus"):
        EventBus(strategy=strategy)


def test_strict_delivery_join_shutdown_and_counts(test_bus: EventBus) -> None:
    """join, shutdown and stats work as on the sync strategy."""
    recorder = EventRecorder(test_bus)
    test_bus.post(Placed(order_id=1))
    assert test_bus.join(WAIT)
    stats = test_bus.stats()
    assert (stats.posted, stats.queued, stats.running) == (1, 0, 0)
    assert test_bus.shutdown(timeout=WAIT)
    assert recorder.call_count == 1


def test_strict_delivery_serialises_thread_unsafe_handlers() -> None:
    """``thread_safe=False`` handlers of one subscriber never overlap across posting threads."""
    bus = make_test_bus()
    lock = threading.Lock()
    inside = [0, 0]  # now, most ever
    barrier = threading.Barrier(4)

    class Counter:
        @subscribe(Placed)
        def count(self, event: Placed) -> None:
            with lock:
                inside[0] += 1
                inside[1] = max(inside[1], inside[0])
            with lock:
                inside[0] -= 1

    bus.register(Counter())

    def poster() -> None:
        barrier.wait(WAIT)
        for n in range(200):
            bus.post(Placed(order_id=n))

    threads = [threading.Thread(target=poster) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert inside == [0, 1]
    assert bus.stats().delivered == 800


def test_sync_delivery_is_what_strict_delivery_wraps() -> None:
    """Without errors, a strict bus delivers exactly as a sync bus does (breadth-first)."""
    orders: dict[str, list[str]] = {}
    for name, bus in (("sync", EventBus(strategy=SyncDelivery())), ("strict", make_test_bus())):
        calls = orders.setdefault(name, [])

        @subscribe(Placed)
        def place(event: Placed, calls: list[str] = calls, bus: EventBus = bus) -> None:
            calls.append(f"placed {event.order_id}")
            if event.order_id < 3:
                bus.post(Placed(order_id=event.order_id + 1))
                bus.post(Shipped(order_id=event.order_id))

        @subscribe(Shipped)
        def ship(event: Shipped, calls: list[str] = calls) -> None:
            calls.append(f"shipped {event.order_id}")

        bus.register(place)
        bus.register(ship)
        bus.post(Placed(order_id=1))
    assert orders["sync"] == orders["strict"]
    assert orders["strict"] == ["placed 1", "placed 2", "shipped 1", "placed 3", "shipped 2"]


# -- isolated_default_bus ------------------------------------------------------------------


def test_isolated_default_bus_installs_and_forgets() -> None:
    """Inside the block the test bus is the default; after it, with no default before, none is left."""
    eventbus.reset_default_bus()
    with isolated_default_bus() as bus:
        assert eventbus.get_default_bus() is bus
        assert bus.name == "default-test"
        assert "StrictDelivery" in repr(bus)
    assert bus.closed
    after = eventbus.get_default_bus()
    assert after is not bus
    assert not after.closed


def test_isolated_default_bus_restores_the_previous_default() -> None:
    """A default installed before the block is put back untouched, still open."""
    previous = EventBus(strategy="sync", name="app")
    eventbus.set_default_bus(previous)
    mine = EventBus(strategy="sync", name="mine")
    with isolated_default_bus(mine) as bus:
        assert bus is mine
        assert eventbus.get_default_bus() is mine
    assert eventbus.get_default_bus() is previous
    assert not previous.closed
    assert mine.closed


def test_isolated_default_bus_restores_even_when_the_block_raises() -> None:
    """An exception in the block still restores the default."""
    previous = EventBus(strategy="sync", name="app")
    eventbus.set_default_bus(previous)
    with pytest.raises(RuntimeError), isolated_default_bus():
        raise RuntimeError
    assert eventbus.get_default_bus() is previous


def test_module_level_post_reaches_the_isolated_bus() -> None:
    """``eventbus.post`` inside the block reaches the installed bus, where errors are raised."""

    @subscribe(Placed)
    def broken(event: Placed) -> None:
        raise ValueError("from the default bus")

    with isolated_default_bus(), capture_events() as posted:
        eventbus.register(broken)
        with pytest.raises(ValueError, match="from the default bus"):
            eventbus.post(Placed(order_id=1))
    posted.assert_posted_once(Placed)


def test_public_names() -> None:
    """eventbus.testing exports exactly its documented helpers, in sorted order."""
    import eventbus.testing as testing

    assert testing.__all__ == sorted(testing.__all__)
    assert set(testing.__all__) == {
        "EventRecorder",
        "InMemoryEngine",
        "StrictDelivery",
        "capture_events",
        "isolated_default_bus",
        "make_test_bus",
    }
    assert all(re.match(r"[A-Za-z]", name) for name in testing.__all__)
