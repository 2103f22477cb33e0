"""Helpers for testing code that uses eventbus.

Two tools, usable with any test runner (the pytest plugin wraps them as fixtures):

- `EventRecorder` / `capture_events`: record the events posted on a bus and
  assert on them in the vocabulary of `unittest.mock` ("called" becomes
  "posted");
- `make_test_bus` / `StrictDelivery`: a synchronous bus on which a handler's
  exception is raised in the test, from the ``post`` that caused it, instead of
  only being logged.

Example::

    from eventbus.testing import capture_events, make_test_bus


    def test_checkout_places_an_order() -> None:
        bus = make_test_bus()
        with capture_events(bus, OrderPlaced) as posted:
            Checkout(bus).submit(cart)
        posted.assert_posted_once_with(OrderPlaced(order_id=1, amount=9.5))

`isolated_default_bus` installs a bus as the process-wide default bus for the
length of a ``with`` block, for code that posts through ``eventbus.post``.

Added in version 0.1.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, final
from unittest.mock import ANY

from . import SyncDelivery
from ._bus import EventBus
from ._decorators import subscribe
from ._default import get_default_bus, reset_default_bus, set_default_bus
from ._delivery import Delivery
from ._events import topic_of
from ._memory import InMemoryEngine

if TYPE_CHECKING:
    from . import Dispatcher, ErrorContext, Subscriber, Subscription
    from ._context import Pending

__all__ = [
    "EventRecorder",
    "InMemoryEngine",
    "StrictDelivery",
    "capture_events",
    "isolated_default_bus",
    "make_test_bus",
]

_SHOWN: Final = 20  # events listed in an assertion message before "... and N more"
_REPR_WIDTH: Final = 160  # characters of one event's repr in an assertion message


def _describe(expected: object, where: Callable[[Any], object] | None) -> str:
    parts: list[str] = []
    if expected is not ANY:
        if isinstance(expected, type):
            parts.append(f"an event of type {expected.__qualname__}")
        elif isinstance(expected, str):
            parts.append(f"an event with topic {expected!r}")
        else:
            parts.append(_short_repr(expected))
    else:
        parts.append("an event")
    if where is not None:
        parts.append(f"matching where={getattr(where, '__qualname__', repr(where))}")
    return " ".join(parts)


def _short_repr(obj: object) -> str:
    text = repr(obj)
    return text if len(text) <= _REPR_WIDTH else text[: _REPR_WIDTH - 3] + "..."


def _times(count: int) -> str:
    return {0: "never", 1: "once", 2: "twice"}.get(count, f"{count} times")


def _matches(event: object, expected: object, where: Callable[[Any], object] | None) -> bool:
    if expected is not ANY:
        if isinstance(expected, type):
            if not isinstance(event, expected):
                return False
        elif isinstance(expected, str):
            if topic_of(event) != expected:
                return False
        elif expected != event:  # expected's __ne__ first, so mock.ANY-like objects work
            return False
    return where is None or bool(where(event))


@final
class EventRecorder:
    """Records the events that reach *key* on a bus, and asserts on them.

    Creating a recorder registers a catch-all subscriber on *bus* (the default
    bus if none is given); `detach` removes it. Every event that reaches *key* is
    appended to `events` before the bus's other handlers of that event run (the
    recorder has the highest priority). The recorder's handler always declines
    the event through its ``when=`` filter, so it adds nothing to
    ``publish(...).result()`` nor to ``stats().delivered``.

    Because it is a subscriber, an event that it records is never a dead event:
    while a recorder listens to ``object`` (the default key), the bus posts no
    `DeadEvent`. To assert on dead events, record with ``key=DeadEvent`` instead.

    On the asynchronous strategies events are recorded as the workers handle
    them: call ``bus.join()`` (or `wait`) before asserting. `capture_events`
    joins for you when its block ends.

    The assertions follow `unittest.mock`: `assert_posted` is ``assert_called``,
    `assert_posted_with` is ``assert_called_with`` (the *last* event),
    `assert_posted_once_with`, `assert_not_posted`, plus `assert_posted_times`.
    Each takes an optional filter:

    - *expected*: an event (compared with ``==``), an event class (matches its
      instances), or a topic string (matches events with that topic);
      `unittest.mock.ANY` (the default) matches everything;
    - *where*: a predicate called with each event.

    Failures raise `AssertionError` with a message that lists what was recorded.

    Args:
        bus: The bus to record on; the default bus if `None`.
        key: What to record: an event class or a topic string, as in
            ``@subscribe(key)``. ``object`` records every event.
    """

    __slots__ = ("_attached", "_cond", "_events", "_handler", "bus", "key")

    def __init__(self, bus: EventBus | None = None, key: type | str = object) -> None:
        self.bus: Final[EventBus] = bus if bus is not None else get_default_bus()
        """The bus the recorder listens to."""
        self.key: Final[type | str] = key
        """The event class or topic the recorder listens to."""
        self._events: list[object] = []
        self._cond = threading.Condition()

        def record(event: object) -> None:  # never called: recording happens in the filter
            pass

        record.__qualname__ = "EventRecorder.record"
        # Record in when= and decline, so that the recorder never counts as a handler call.
        self._handler = subscribe(key, thread_safe=True, priority=sys.maxsize, when=self._record)(record)
        self.bus.register(self._handler)
        self._attached = True

    def _record(self, event: object) -> bool:
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()
        return False

    # -- lifetime -------------------------------------------------------------------

    def detach(self) -> bool:
        """Stop recording (the events recorded so far stay); `False` if already detached."""
        if not self._attached:
            return False
        self._attached = False
        return self.bus.unregister(self._handler)

    @property
    def attached(self) -> bool:
        """Whether the recorder is still listening."""
        return self._attached

    def wait(self, count: int = 1, timeout: float | None = None) -> bool:
        """Wait until at least *count* events have been recorded; `False` if *timeout* passed first."""
        with self._cond:
            return self._cond.wait_for(lambda: len(self._events) >= count, timeout)

    def clear(self) -> None:
        """Forget the events recorded so far (like ``Mock.reset_mock``)."""
        with self._cond:
            self._events.clear()

    # -- what was recorded ----------------------------------------------------------

    @property
    def events(self) -> list[object]:
        """A copy of the recorded events, in the order they were recorded."""
        with self._cond:
            return list(self._events)

    @property
    def call_count(self) -> int:
        """How many events have been recorded (``Mock.call_count``)."""
        with self._cond:
            return len(self._events)

    @property
    def last_event(self) -> object | None:
        """The last recorded event, or `None` if there is none (``Mock.call_args``)."""
        with self._cond:
            return self._events[-1] if self._events else None

    def matching(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> list[object]:
        """Return the recorded events that match *expected* and *where*, in order."""
        return [event for event in self.events if _matches(event, expected, where)]

    # -- assertions -----------------------------------------------------------------

    def assert_posted(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> None:
        """Assert that at least one matching event was recorded (``assert_called``/``assert_any_call``)."""
        __tracebackhide__ = True
        if not self.matching(expected, where=where):
            self._fail(f"Expected {_describe(expected, where)} to have been posted.")

    def assert_posted_once(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> None:
        """Assert that exactly one matching event was recorded (``assert_called_once``)."""
        __tracebackhide__ = True
        self.assert_posted_times(1, expected, where=where)

    def assert_posted_times(
        self, count: int, expected: object = ANY, *, where: Callable[[Any], object] | None = None
    ) -> None:
        """Assert that exactly *count* matching events were recorded."""
        __tracebackhide__ = True
        found = len(self.matching(expected, where=where))
        if found != count:
            self._fail(
                f"Expected {_describe(expected, where)} to have been posted {_times(count)}; "
                f"it was posted {_times(found)}."
            )

    def assert_not_posted(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> None:
        """Assert that no matching event was recorded (``assert_not_called``)."""
        __tracebackhide__ = True
        self.assert_posted_times(0, expected, where=where)

    def assert_posted_with(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> None:
        """Assert that the *last* recorded event matches (``assert_called_with``)."""
        __tracebackhide__ = True
        last = self.last_event
        if last is None:
            self._fail(f"Expected {_describe(expected, where)} to have been posted last; nothing was posted.")
        elif not _matches(last, expected, where):
            self._fail(f"Expected {_describe(expected, where)} to have been posted last.\nActual: {_short_repr(last)}")

    def assert_posted_once_with(self, expected: object = ANY, *, where: Callable[[Any], object] | None = None) -> None:
        """Assert that exactly one event was recorded, and that it matches (``assert_called_once_with``)."""
        __tracebackhide__ = True
        events = self.events
        if len(events) != 1:
            self._fail(f"Expected exactly one event, {_describe(expected, where)}; {len(events)} were posted.")
        elif not _matches(events[0], expected, where):
            self._fail(f"Expected the one event posted to be {_describe(expected, where)}.")

    def _fail(self, headline: str) -> None:
        __tracebackhide__ = True
        events = self.events
        key = self.key.__qualname__ if isinstance(self.key, type) else repr(self.key)
        if not events:
            listing = f"No events were recorded on bus {self.bus.name!r} (key={key})."
        else:
            lines = [f"Recorded on bus {self.bus.name!r} (key={key}), {len(events)} event(s):"]
            lines.extend(f"  [{index}] {_short_repr(event)}" for index, event in enumerate(events[:_SHOWN]))
            if len(events) > _SHOWN:
                lines.append(f"  ... and {len(events) - _SHOWN} more")
            listing = "\n".join(lines)
        raise AssertionError(f"{headline}\n{listing}")

    def __repr__(self) -> str:
        key = self.key.__qualname__ if isinstance(self.key, type) else repr(self.key)
        state = "" if self._attached else " detached"
        return f"<EventRecorder on {self.bus.name!r} key={key}{state}: {self.call_count} event(s)>"


@contextmanager
def capture_events(bus: EventBus | None = None, key: type | str = object) -> Iterator[EventRecorder]:
    """Record the events that reach *key* on *bus* for the length of a ``with`` block.

    When the block ends, waits for the bus to handle what it accepted
    (``bus.join()``, so that asynchronous deliveries are recorded too) and then
    detaches the recorder; its events stay available for assertions::

        with capture_events(bus) as posted:
            bus.post(OrderPlaced(order_id=1, amount=9.5))
        posted.assert_posted_once(OrderPlaced)

    Args:
        bus: The bus to record on; the default bus if `None`.
        key: What to record: an event class or a topic string; ``object`` records everything.

    Yields:
        The attached `EventRecorder`.
    """
    recorder = EventRecorder(bus, key)
    try:
        yield recorder
    finally:
        try:
            recorder.bus.join()
        finally:
            recorder.detach()


@final
class StrictDelivery:
    """The sync strategy for tests: a handler's exception is raised from ``post``.

    Handlers run on the posting thread exactly as with `SyncDelivery` (which this
    strategy wraps): every handler of the event still runs, ``on_error`` still
    sees every failure, and events posted by handlers are delivered breadth-first
    before ``post`` returns. Then, when the outermost ``post`` on that thread
    returns, the handler exceptions it caused are raised from it: the original
    exception if there was one (with a note naming the handler and topic), or an
    `ExceptionGroup` of them, in call order, if several handlers failed.

    Published events are left alone: ``publish(event).result()`` raises their
    errors, as on any bus.
    """

    __slots__ = ("_inner", "_local")

    takes_traces: Final = True
    """The bus hands `submit` each event's trace (#14): the private handle below carries it."""

    def __init__(self) -> None:
        self._inner = SyncDelivery()
        self._local = threading.local()

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher."""
        self._inner.start(dispatcher)

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None = None,
    ) -> None:
        """Deliver like `SyncDelivery`; when the outermost post returns, raise what its handlers raised."""
        local = self._local
        watched: list[Delivery] | None = getattr(local, "watched", None)
        if watched is None:
            watched = local.watched = []
            local.depth = 0
        if delivery is None:
            # A private handle collects the handlers' exceptions of a posted event.
            delivery = Delivery(event, len(handlers), trace)
            watched.append(delivery)
        local.depth += 1
        try:
            self._inner.submit(event, handlers, delivery, timeout)
        finally:
            local.depth -= 1
        if local.depth == 0:
            self._raise_errors(watched)

    @staticmethod
    def _raise_errors(watched: list[Delivery]) -> None:
        errors: list[BaseException] = []
        pending = []
        for delivery in watched:
            if not delivery.done():  # left queued by a KeyboardInterrupt: checked after a later post
                pending.append(delivery)
                continue
            try:
                delivery.result(0)
            except BaseExceptionGroup as group:
                errors.extend(group.exceptions)
        watched[:] = pending
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup(f"{len(errors)} handlers failed during this post", errors)

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no other thread is inside one of the subscriber's serialised handlers."""
        self._inner.forget(subscriber)

    def join(self, timeout: float | None) -> bool:
        """Deliver this thread's leftovers, then wait until no thread is mid-delivery."""
        return self._inner.join(timeout)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Nothing to stop: handlers ran on their posters' threads. Optionally join."""
        return self._inner.shutdown(wait, timeout)

    def counts(self) -> tuple[int, int]:
        """Return (events queued on any thread, threads in the middle of a delivery)."""
        return self._inner.counts()


def make_test_bus(
    *, name: str = "test", on_error: Callable[[BaseException, ErrorContext], object] | None = None
) -> EventBus:
    """Return a synchronous bus for tests, on which handler exceptions are raised from ``post``.

    It is ``EventBus(strategy=StrictDelivery(), ...)``: handlers run on the
    posting thread before ``post`` returns, and if any of them raised, ``post``
    raises too (see `StrictDelivery`), so a broken handler fails the test that
    triggered it. Failures also go to *on_error*, which logs them by default.

    Args:
        name: The bus's name, shown in logs and assertion messages.
        on_error: As for `EventBus`.
    """
    return EventBus(strategy=StrictDelivery(), name=name, on_error=on_error)


@contextmanager
def isolated_default_bus(bus: EventBus | None = None) -> Iterator[EventBus]:
    """Install *bus* as the default bus for a ``with`` block, then put the previous one back.

    Code that posts through ``eventbus.post`` or registers through
    ``eventbus.register`` uses *bus* inside the block. On exit *bus* is shut
    down, and the default bus that was installed before the block (if any) is
    installed again, untouched; if there was none, the default is forgotten.

    Args:
        bus: The bus to install; a new `make_test_bus` bus if `None`.

    Yields:
        The installed bus.
    """
    installed = bus if bus is not None else make_test_bus(name="default-test")
    previous = set_default_bus(installed)
    try:
        yield installed
    finally:
        if previous is None:
            reset_default_bus()
        else:
            set_default_bus(previous)
        installed.shutdown()
