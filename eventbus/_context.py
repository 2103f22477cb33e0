"""Event contexts: which event this is, which event's handler posted it, and where it came from.

Every accepted event has an `EventContext`; `current_context()` returns the one
of the event whose handler is running::

    @subscribe
    def charge(self, event: OrderPlaced) -> None:
        context = eventbus.current_context()
        log.info("charging", event_id=context.id, correlation_id=context.correlation_id)
        bus.post(Charged(...))  # its causation_id is context.id

Contexts are built lazily (the design page explains the cost model). What a
strategy keeps per accepted event is at most one *trace*, which is one of:

- nothing (`None`): a root event that nobody has asked about yet. The thread that
  delivers it marks its bus's dispatcher as current (`Slot.current`: "an event of
  this bus, with no trace yet"), and the context is made if a handler asks for it;
- a `Pending`: the event's context as far as it is known at acceptance (its
  parent, its bus, when it was accepted), built into an `EventContext` on first
  read and then kept, so every reader on every thread sees the same id.

Each thread has one `Slot` (shared by all the buses it delivers for): what it is
handling now. The asyncio strategy's lanes, which interleave handlers on one
thread, keep the trace of an awaiting handler in a context variable instead.
"""

from __future__ import annotations

import random
import threading
import time
from asyncio import _get_running_loop
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final, Protocol, final

__all__ = [
    "LANES",
    "EventContext",
    "Pending",
    "Tracer",
    "Slot",
    "child_of",
    "current_context",
    "handling",
    "in_handler",
    "nested",
    "new_id",
    "slot",
    "task_trace",
    "trace_of",
]


@final
@dataclass(frozen=True, slots=True)
class EventContext:
    """Where an accepted event comes from: its id, its cause and the chain it belongs to.

    Returned by `eventbus.current_context()` inside a handler and by
    ``Delivery.context``; the same for every handler of the event, on every
    thread, and (but for `source` and `attempt`) in every process a bridge
    carries it to. Added in version 0.2.
    """

    id: str
    """Unique across processes and ordered by time to the millisecond (UUIDv7 text)."""
    time: datetime
    """When the event was accepted (aware, UTC); see the tracing guide for the fine print."""
    causation_id: str | None
    """The id of the event whose handler posted this one; `None` for an event posted from outside any handler."""
    correlation_id: str
    """The id of the root of the chain of events this one belongs to (a root event's own id)."""
    source: str
    """The name of the bus that accepted it; for an event that came through a bridge, the sender's
    ``//host/pid/bus``."""
    attempt: int = 1
    """1, or which delivery attempt of a bridged event this is."""


_random_bits: Final = random.getrandbits
_LOW62: Final = (1 << 62) - 1


def new_id(ms: int | None = None) -> str:
    """A UUIDv7 text: unique across processes and ordered by time to the millisecond.

    The random bits come from `random` (reseeded in a forked child), not from
    ``os.urandom``: an id needs to be unique, not unguessable, and a system call
    per event would cost more than the rest of encoding.

    Args:
        ms: The time in milliseconds since the epoch; now if not given.
    """
    if ms is None:
        ms = time.time_ns() // 1_000_000
    rand = _random_bits(74)
    value = (ms & 0xFFFF_FFFF_FFFF) << 80 | 0x7000 << 64 | (rand >> 62) << 64 | 0b10 << 62 | rand & _LOW62
    text = f"{value:032x}"
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


_building = threading.Lock()  # two threads reading one Pending at once must see one id


@final
class Pending:
    """One accepted event's context, built on first read and then kept.

    ``time_ns`` is when the event was accepted, or `None` when that was not
    taken (a root event nobody asked about at acceptance): then the context's
    time is when it is first built. ``parent`` is the context of the event whose
    handler posted this one: built when the first child is posted, so that no
    chain of traces is ever kept alive (or walked) by its descendants.
    ``headers`` cross a bridge with the event. ``extra`` is free for an instrumentation (the
    OpenTelemetry span context of the event's producer span).
    """

    __slots__ = ("_build", "_built", "attempt", "extra", "group", "headers", "parent", "source", "time_ns")

    def __init__(
        self, parent: EventContext | None, source: str, time_ns: int | None, built: EventContext | None = None
    ) -> None:
        self.parent: EventContext | None = parent
        self.source: str = source
        self.time_ns: int | None = time_ns
        self.attempt: int = 1 if built is None else built.attempt
        """The attempt of the context, built or still to be built."""
        self.extra: Any = None
        self.headers: dict[str, str] | None = None
        """Extension attributes that cross a bridge with the event (``traceparent``, ``tracestate``)."""
        self.group: str | None = None
        """The consumer group of the bridge that received the event (`None` for a local event)."""
        self._built: EventContext | None = built
        self._build: Callable[[], EventContext] | None = None

    @classmethod
    def of(cls, context: EventContext) -> Pending:
        """A trace whose context is already known."""
        return cls(None, context.source, None, context)

    @classmethod
    def later(cls, source: str, attempt: int, build: Callable[[], EventContext]) -> Pending:
        """A trace whose context is fixed but made only when read: *build* makes it (an event from a bridge).

        An event received through a bridge carries its context in its envelope;
        reading it (dates, ids) costs more than the rest of the bridge's work per
        event, so it waits until a handler, a tracer or a child event asks.
        """
        made = cls(None, source, None)
        made.attempt = attempt
        made._build = build
        return made

    def again(self, attempt: int) -> Pending:
        """The trace of the same event delivered again, as its *attempt*-th attempt (a bridge's retry)."""
        if self.attempt == attempt:
            return self
        made = Pending.later(self.source, attempt, partial(_attempt_of, self, attempt))
        made.headers, made.group = self.headers, self.group
        return made

    @property
    def built(self) -> bool:
        """Whether the context exists already (its id is fixed)."""
        return self._built is not None

    def context(self) -> EventContext:
        """The event's context: made on the first call, the same object on every later one."""
        built = self._built
        if built is not None:
            return built
        build = self._build
        if build is not None:
            made = build()  # outside the lock: it may read another trace's context
            with _building:  # two readers at once: the first one's context is the one
                built = self._built
                if built is None:
                    built = self._built = made
                    self._build = None
            return built
        parent = self.parent
        with _building:
            built = self._built
            if built is None:
                ns = self.time_ns if self.time_ns is not None else time.time_ns()
                ident = new_id(ns // 1_000_000)
                built = EventContext(
                    id=ident,
                    time=datetime.fromtimestamp(ns / 1e9, UTC),
                    causation_id=None if parent is None else parent.id,
                    correlation_id=ident if parent is None else parent.correlation_id,
                    source=self.source,
                    attempt=self.attempt,
                )
                self._built = built
        return built

    def __repr__(self) -> str:
        return f"<Pending {self._built!r}>" if self._built is not None else f"<Pending from {self.source!r}>"


def _attempt_of(trace: Pending, attempt: int) -> EventContext:
    return replace(trace.context(), attempt=attempt)


@final
class Slot:
    """What one thread is handling now, for every bus it delivers for.

    ``current`` is `None` (no handler of any bus runs here), a `Pending` (the
    trace of the event being handled), or the `Dispatcher` of the bus whose event
    is being handled, when that event has no trace yet (a root event: its context
    needs only the bus's name). Strategies store into it directly on their hot
    paths. While asyncio lanes run on the thread (``lanes`` counts them),
    ``current`` rests at `LANES` instead of `None`: their handlers are found
    through `task_trace`, so a post made here must look there, and one test of
    ``current is not None`` on the hot paths covers both.
    """

    __slots__ = ("current", "lanes", "raw", "raw_trace")

    def __init__(self) -> None:
        self.current: object = None
        self.lanes: int = 0
        self.raw: object = None  # Dispatcher.call: the untraced event it calls handlers of, and the
        self.raw_trace: Pending | None = None  # trace a reader made of it (for its next handler)


@final
class _LanesHere:
    """The type of `LANES`."""

    __slots__ = ()
    name = "eventbus"

    def __repr__(self) -> str:
        return "LANES"


LANES: Final = _LanesHere()
"""`Slot.current` at rest on a thread where asyncio lanes run: look in `task_trace`."""

_threads = threading.local()


def slot() -> Slot:
    """The calling thread's `Slot`."""
    try:
        found: Slot = _threads.slot
    except AttributeError:
        found = _threads.slot = Slot()
    return found


task_trace: Final[ContextVar[Slot | None]] = ContextVar("eventbus_task_trace", default=None)
"""The `Slot` of the asyncio lane that runs in this task: lanes interleave their handlers on one
thread, so each keeps what it handles in a slot of its own, found through this variable."""


def trace_of(here: Slot) -> Pending | None:
    """The trace of the event being handled in this thread or task, made if it has none yet.

    A root event that nobody asked about is given its `Pending` now, kept in the
    slot, so that every later reader of this delivery sees the same context.
    """
    current = here.current
    if current is None or current is LANES:
        lane = task_trace.get()  # an asyncio lane's handler: the lane has its own slot
        if lane is not None and lane is not here:
            return trace_of(lane)
        if current is LANES and _get_running_loop() is None:
            # No loop runs on this thread, so no lane does: the mark of lanes that never
            # ended (their loop was closed under them, an interrupt cut their exit short).
            # Cleared, so that this thread's single-frame sync posts come back; a lane
            # that runs again marks the slot again (see the asyncio strategy's lanes).
            here.current = None
            here.lanes = 0
        return None
    if type(current) is Pending:
        return current
    made = Pending(None, str(getattr(current, "name", "eventbus")), None)  # current: a Dispatcher
    here.current = made
    return made


def handling() -> Pending | None:
    """The trace of the event being handled in this thread or task (see `trace_of`), or `None`."""
    return trace_of(slot())


def child_of(parent: Pending | None, source: str, time_ns: int) -> Pending:
    """The trace of an event accepted by bus *source* at *time_ns*, posted by a handler of *parent*."""
    return Pending(None if parent is None else parent.context(), source, time_ns)


def in_handler(here: Slot) -> bool:
    """Whether a handler of some bus runs in this thread or task (strategies inline this test)."""
    current = here.current
    if current is LANES:
        return task_trace.get() is not None
    return current is not None


def nested(here: Slot, source: str) -> Pending | None:
    """The trace of an event that bus *source* accepts now, if a handler posted it; else `None`."""
    parent = trace_of(here)
    return None if parent is None else Pending(parent.context(), source, time.time_ns())


def current_context() -> EventContext | None:
    """The context of the event whose handler is running in this thread or task, else `None`.

    Works on every strategy: on the posting thread (sync), on worker threads, in
    the asyncio strategy's handlers, and in ``async def`` handlers on the thread
    strategies. Added in version 0.2.
    """
    trace = trace_of(slot())
    return None if trace is None else trace.context()


class Tracer(Protocol):
    """What `eventbus.otel.instrument` installs on a bus: a hook around every accepted event.

    ``start_producer(bus, event, trace, bridge)`` runs before the event is handed
    over (it may give the trace the span's context and ``traceparent`` header);
    ``end_producer(span, exc)`` once it was accepted (``exc`` `None`) or refused;
    ``registered(record)`` after each registration (to wrap the new handlers).
    """

    def start_producer(self, bus: Any, event: object, trace: Pending, bridge: Any) -> object: ...

    def end_producer(self, span: object, exc: BaseException | None) -> None: ...

    def registered(self, record: Any) -> None: ...
