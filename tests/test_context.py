"""Event contexts: `current_context()` in handlers, causation and correlation, `Delivery.context`."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

import eventbus
from eventbus import Event, EventBus, EventContext, current_context, subscribe
from eventbus._context import LANES, Slot, slot
from eventbus.testing import InMemoryEngine, make_test_bus

from .conftest import STRATEGIES, new_bus
from .helpers import WAIT, wait_until

UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Placed(Event, topic="ctx.placed"):
    n: int


class Charged(Event, topic="ctx.charged"):
    n: int


class Shipped(Event, topic="ctx.shipped"):
    n: int


class Seen:
    """What handlers saw: (handler, event, context), from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[tuple[str, Event, EventContext | None]] = []

    def add(self, name: str, event: Event) -> None:
        context = current_context()
        with self._lock:
            self.items.append((name, event, context))

    def of(self, name: str) -> list[EventContext]:
        with self._lock:
            found = [context for handler, _, context in self.items if handler == name]
        assert None not in found, self.items
        return [context for context in found if context is not None]


def test_no_context_outside_handlers() -> None:
    """Outside every handler, `current_context()` is `None`."""
    assert current_context() is None
    assert eventbus.current_context is current_context


def test_a_root_event_has_a_complete_context(make_bus: Callable[..., EventBus]) -> None:
    """A handler sees a UUIDv7 id, an aware UTC time of acceptance, no cause, itself as correlation, the bus."""
    bus = make_bus(name="ctx-root")
    seen = Seen()

    class Handler:
        @subscribe(Placed)
        def on(self, event: Placed) -> None:
            seen.add("on", event)

    bus.register(Handler())
    before = datetime.now(UTC)
    bus.post(Placed(n=1))
    assert bus.join(timeout=WAIT)
    after = datetime.now(UTC)
    (context,) = seen.of("on")
    assert UUID7.match(context.id), context.id
    assert context.time.tzinfo is UTC
    assert before - timedelta(milliseconds=1) <= context.time <= after
    assert context.causation_id is None
    assert context.correlation_id == context.id
    assert context.source == "ctx-root"
    assert context.attempt == 1
    assert current_context() is None  # nothing left marked on the posting thread


def test_every_handler_of_an_event_sees_one_context(make_bus: Callable[..., EventBus]) -> None:
    """Handlers of one event, thread-safe or not, on one thread or several, see the same context."""
    bus = make_bus()
    seen = Seen()

    class A:
        @subscribe(Placed, priority=3)
        def first(self, event: Placed) -> None:
            seen.add("first", event)

    class B:
        @subscribe(Placed, priority=2, thread_safe=True)
        def second(self, event: Placed) -> None:
            seen.add("second", event)

    class C:
        @subscribe(Placed, priority=1)
        def third(self, event: Placed) -> None:
            seen.add("third", event)

    for subscriber in (A(), B(), C()):
        bus.register(subscriber)
    for n in range(20):
        bus.post(Placed(n=n))
    assert bus.join(timeout=WAIT)
    by_event: dict[int, set[str]] = {}
    for _, event, context in seen.items:
        assert context is not None
        by_event.setdefault(event.n, set()).add(context.id)  # type: ignore[attr-defined]
    assert len(by_event) == 20
    assert all(len(ids) == 1 for ids in by_event.values()), by_event
    assert len({next(iter(ids)) for ids in by_event.values()}) == 20  # and each event its own


def test_causation_and_correlation_through_a_chain(make_bus: Callable[..., EventBus]) -> None:
    """An event posted by a handler has the handler's event as cause and the chain's root as correlation."""
    bus = make_bus()
    seen = Seen()

    class Chain:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)
            bus.post(Charged(n=event.n))

        @subscribe(Charged)
        def charged(self, event: Charged) -> None:
            seen.add("charged", event)
            bus.post(Shipped(n=event.n))

        @subscribe(Shipped)
        def shipped(self, event: Shipped) -> None:
            seen.add("shipped", event)

    bus.register(Chain())
    bus.post(Placed(n=1))
    bus.post(Placed(n=2))
    deadline = time.monotonic() + WAIT
    while len(seen.items) < 6:  # join() does not promise the events handlers post meanwhile
        assert bus.join(timeout=WAIT)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    for n in (1, 2):
        placed, charged, shipped = (
            next(c for name, e, c in seen.items if name == handler and e.n == n)  # type: ignore[attr-defined]
            for handler in ("placed", "charged", "shipped")
        )
        assert placed is not None
        assert charged is not None
        assert shipped is not None
        assert placed.causation_id is None
        assert charged.causation_id == placed.id
        assert shipped.causation_id == charged.id
        assert placed.correlation_id == charged.correlation_id == shipped.correlation_id == placed.id
        assert len({placed.id, charged.id, shipped.id}) == 3
        assert placed.time <= charged.time <= shipped.time


@pytest.mark.parametrize("inner", ["sync", "concurrent", "asyncio"])
def test_causation_crosses_from_one_bus_and_strategy_to_another(make_bus: Callable[..., EventBus], inner: str) -> None:
    """A handler on one bus posting to a bus of another strategy passes its event on as the cause."""
    outer = make_bus(name="outer")
    other = new_bus(inner, name="inner")
    seen = Seen()
    try:

        class Outer:
            @subscribe(Placed)
            def placed(self, event: Placed) -> None:
                seen.add("placed", event)
                other.post(Charged(n=event.n))
                seen.add("placed-after", event)  # still this event's context, with this bus as source

        class Inner:
            @subscribe(Charged)
            def charged(self, event: Charged) -> None:
                seen.add("charged", event)

        outer.register(Outer())
        other.register(Inner())
        outer.post(Placed(n=1))
        assert outer.join(timeout=WAIT)
        assert other.join(timeout=WAIT)
    finally:
        other.shutdown(timeout=WAIT)
    (placed,) = seen.of("placed")
    (charged,) = seen.of("charged")
    assert seen.of("placed-after") == [placed]
    assert charged.causation_id == placed.id
    assert charged.correlation_id == placed.id
    assert (placed.source, charged.source) == ("outer", "inner")


def test_async_handlers_see_their_context_across_awaits(make_bus: Callable[..., EventBus]) -> None:
    """An ``async def`` handler sees its event's context before and after an await; its posts carry it."""
    bus = make_bus()
    seen = Seen()

    class Async:
        @subscribe(Placed)
        async def placed(self, event: Placed) -> None:
            seen.add("placed-before", event)
            await asyncio.sleep(0.001)
            seen.add("placed-after", event)
            bus.post(Charged(n=event.n))

        @subscribe(Charged)
        def charged(self, event: Charged) -> None:
            seen.add("charged", event)

    bus.register(Async())
    for n in range(4):
        bus.post(Placed(n=n))
    deadline = time.monotonic() + WAIT
    while len(seen.of("charged")) < 4:
        assert bus.join(timeout=WAIT)
        assert time.monotonic() < deadline
        time.sleep(0.001)
    before = {e.n: c for name, e, c in seen.items if name == "placed-before"}  # type: ignore[attr-defined]
    after = {e.n: c for name, e, c in seen.items if name == "placed-after"}  # type: ignore[attr-defined]
    charged = {e.n: c for name, e, c in seen.items if name == "charged"}  # type: ignore[attr-defined]
    for n in range(4):
        assert before[n] == after[n]
        assert charged[n] is not None
        assert before[n] is not None
        assert charged[n].causation_id == before[n].id  # type: ignore[union-attr]


def test_published_delivery_has_the_handlers_context(make_bus: Callable[..., EventBus]) -> None:
    """`Delivery.context` is the context the handlers saw; a publish from a handler is a child."""
    bus = make_bus()
    seen = Seen()
    inner: list[eventbus.Delivery] = []

    class Handler:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)
            inner.append(bus.publish(Charged(n=event.n)))

        @subscribe(Charged)
        def charged(self, event: Charged) -> None:
            seen.add("charged", event)

    bus.register(Handler())
    delivery = bus.publish(Placed(n=1))
    assert delivery.wait(WAIT)
    assert inner[0].wait(WAIT)
    (placed,) = seen.of("placed")
    (charged,) = seen.of("charged")
    assert delivery.context == placed
    assert inner[0].context == charged
    assert charged.causation_id == placed.id


def test_failure_reports_carry_the_context(make_bus: Callable[..., EventBus]) -> None:
    """`on_error`'s context has the failing event's `EventContext`."""
    reports: list[eventbus.ErrorContext] = []
    bus = make_bus(on_error=lambda exc, context: reports.append(context))
    seen = Seen()

    class Failing:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)
            raise ValueError("no")

    bus.register(Failing())
    bus.post(Placed(n=1))
    assert bus.join(timeout=WAIT)
    (placed,) = seen.of("placed")
    (report,) = reports
    assert report.event_context == placed


def test_ids_are_ordered_by_time() -> None:
    """Contexts made later have larger ids (UUIDv7: milliseconds first)."""
    bus = EventBus(strategy="sync")
    ids: list[str] = []

    class Handler:
        @subscribe(Placed)
        def on(self, event: Placed) -> None:
            context = current_context()
            assert context is not None
            ids.append(context.id)

    bus.register(Handler())
    for n in range(3):
        bus.post(Placed(n=n))
        time.sleep(0.002)
    bus.shutdown()
    assert ids == sorted(ids)
    assert len(set(ids)) == 3


def test_strict_test_bus_carries_contexts() -> None:
    """The testing module's strict bus (a strategy of its own) keeps causation too."""
    bus = make_test_bus()
    seen = Seen()

    class Chain:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)
            bus.post(Charged(n=event.n))

        @subscribe(Charged)
        def charged(self, event: Charged) -> None:
            seen.add("charged", event)

    bus.register(Chain())
    bus.post(Placed(n=1))
    (placed,) = seen.of("placed")
    (charged,) = seen.of("charged")
    assert charged.causation_id == placed.id


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_contexts_cross_a_bridge(strategy: str) -> None:
    """A bridged event keeps its id, cause and chain; its source names the sending host, process and bus."""
    engine = InMemoryEngine()
    sender = EventBus(strategy="sync", name="sender")
    receiver_errors: list[BaseException] = []
    receiver = new_bus(strategy, name="receiver", on_error=lambda exc, context: receiver_errors.append(exc))
    seen = Seen()
    attempts: list[int] = []
    try:

        class Origin:
            @subscribe(Placed)
            def placed(self, event: Placed) -> None:
                seen.add("placed", event)
                sender.post(Shipped(n=event.n))

        class Far:
            @subscribe(Shipped)
            def shipped(self, event: Shipped) -> None:
                seen.add("shipped", event)
                context = current_context()
                assert context is not None
                attempts.append(context.attempt)
                if context.attempt == 1:
                    raise RuntimeError("first attempt fails")

        sender.register(Origin())
        sender.bridge(engine, events=[Shipped], namespace="ctx")
        receiver.register(Far())
        receiver.bridge(engine, events=[Shipped], group="far", namespace="ctx", retry_delay=(0.01, 0.01))
        sender.post(Placed(n=1))
        wait_until(lambda: len(attempts) >= 2, "the receiver's second attempt")
    finally:
        sender.shutdown(timeout=WAIT)
        receiver.shutdown(timeout=WAIT)
    (placed,) = seen.of("placed")
    first, second = seen.of("shipped")
    assert first.causation_id == placed.id
    assert first.correlation_id == placed.id
    assert first.source.startswith("//")
    assert first.source.endswith("/sender")
    assert (first.attempt, second.attempt) == (1, 2)
    assert (second.id, second.causation_id, second.correlation_id) == (first.id, placed.id, placed.id)


def test_a_received_events_context_is_read_from_its_envelope_only_when_asked() -> None:
    """Reading a bridged event's context costs more than the rest of receiving it: it waits for a reader."""
    from eventbus._wire import trace_of_envelope

    envelope = {
        "id": "0190a3b2-0000-7000-8000-000000000001",
        "time": "2026-12-01T10:00:00.5Z",
        "source": "//host/1/sender",
        "causationid": "0190a3b2-0000-7000-8000-000000000000",
        "correlationid": "0190a3b2-0000-7000-8000-00000000000f",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    trace = trace_of_envelope(envelope, 1, "billing")
    assert not trace.built
    assert (trace.source, trace.attempt, trace.group) == ("//host/1/sender", 1, "billing")
    assert trace.headers == {"traceparent": envelope["traceparent"]}
    assert trace.again(1) is trace  # the first delivery: nothing to make
    retried = trace.again(3)
    assert not trace.built
    assert not retried.built
    assert (retried.headers, retried.group, retried.attempt) == (trace.headers, "billing", 3)
    context = retried.context()
    assert retried.context() is context  # made once, then kept
    assert (context.id, context.causation_id, context.correlation_id, context.attempt) == (
        envelope["id"],
        envelope["causationid"],
        envelope["correlationid"],
        3,
    )
    assert context.time == datetime(2026, 12, 1, 10, 0, 0, 500_000, tzinfo=UTC)
    assert trace.context().attempt == 1
    assert trace.context().id == context.id
    assert trace_of_envelope({"id": "x"}, 1).headers is None  # an untraced sender


def test_a_post_from_plain_code_on_a_loop_with_lanes_is_a_root() -> None:
    """On a thread where asyncio lanes run, a post from code that is no handler has no cause."""
    seen = Seen()

    class Handler:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)

    async def scenario() -> None:
        lanes = EventBus(strategy="asyncio", name="lanes")  # its lanes run on this loop's thread
        sync = EventBus(strategy="sync", name="plain")
        sync.register(Handler())
        lanes.register(Handler())
        lanes.post(Placed(n=1))  # starts a lane
        assert await lanes.ajoin(timeout=WAIT)
        sync.post(Placed(n=2))  # plain code on the loop's thread, not a handler
        await lanes.ashutdown()
        sync.shutdown()

    asyncio.run(scenario())
    first, second = seen.of("placed")
    assert (first.source, first.causation_id) == ("lanes", None)
    assert (second.source, second.causation_id) == ("plain", None)
    assert current_context() is None


def marks(here: Slot) -> tuple[object, int]:
    """What *here* holds (read through a function: mypy keeps attribute types narrowed)."""
    return here.current, here.lanes


def test_a_lane_mark_left_behind_is_cleared_outside_a_loop() -> None:
    """A thread marked by asyncio lanes that never ended gets its single-frame sync post back."""
    here = slot()
    here.current, here.lanes = LANES, 1  # what lanes cut short by their loop's end leave behind
    seen = Seen()

    class Handler:
        @subscribe(Placed)
        def placed(self, event: Placed) -> None:
            seen.add("placed", event)

    bus = EventBus(strategy="sync", name="after")
    try:
        bus.register(Handler())
        bus.post(Placed(n=1))  # the checking path: no loop runs here, so the mark is cleared
        assert marks(here) == (None, 0)
        bus.post(Placed(n=2))
    finally:
        here.current, here.lanes = None, 0
        bus.shutdown()
    assert [context.causation_id for context in seen.of("placed")] == [None, None]


class Settings(Event, topic="ctx.settings", sticky=True):
    level: int


def test_a_kept_sticky_event_is_replayed_with_its_original_context(make_bus: Callable[..., EventBus]) -> None:
    """A sticky handler registered later receives the kept event with the context it was posted with."""
    bus = make_bus()
    seen = Seen()

    class Early:
        @subscribe(Settings)
        def on(self, event: Settings) -> None:
            seen.add("early", event)

    class Late:
        @subscribe(Settings, sticky=True)
        def on(self, event: Settings) -> None:
            seen.add("late", event)

    bus.register(Early())
    bus.post(Settings(level=3))
    assert bus.join(timeout=WAIT)
    bus.register(Late())
    assert bus.join(timeout=WAIT)
    (early,) = seen.of("early")
    (late,) = seen.of("late")
    assert late == early
