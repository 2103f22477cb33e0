"""Calling handlers under the error policy, and counting what happened.

Every strategy hands each handler call to a `Dispatcher`, so that the error
policy (SPEC section 4) and the statistics are the same whatever thread runs the
handler:

- an `Exception` from a handler goes to the bus's ``on_error(exc, context)`` and
  delivery goes on; if ``on_error`` itself raises, that is logged on the
  ``eventbus`` logger and delivery still goes on;
- a `BaseException` that is not an `Exception` (`KeyboardInterrupt`,
  `SystemExit`) is reported the same way and then re-raised when the strategy
  asks for it (the sync strategy does, so it reaches the poster), or swallowed on
  a worker thread, which must never die.

Counters live in one small record per thread (`ThreadState`), so a post never
takes a lock to count; `Dispatcher.sums` adds them up. A thread's record is folded
into `Dispatcher.retired` once the thread ends, so the cost of adding up follows
the number of live threads, not of every thread that ever posted.

The dispatcher holds its bus weakly: nothing below the bus keeps it alive, so a bus
that its program drops can be collected (and then stops its workers).
"""

from __future__ import annotations

import logging
import operator
import sys
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Final, final

from ._context import LANES, EventContext, Pending, Slot, slot, trace_of
from ._delivery import SKIPPED
from ._events import topic_of

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._registry import Subscription

__all__ = ["GIL_DISABLED", "BusStats", "Dispatcher", "ErrorContext", "ThreadState", "log_error", "log_extra"]

logger: Final = logging.getLogger("eventbus")

GIL_DISABLED: Final[bool] = not getattr(sys, "_is_gil_enabled", lambda: True)()
"""True on a free-threaded CPython running without its GIL: the lock-free fast paths
that rely on the GIL's ordering are switched off (see the design notes)."""


@final
@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where a handler failure happened; the second argument of ``on_error``."""

    bus: Any
    """The `EventBus` that delivered the event."""
    event: Any  # not `object`: a mypyc-compiled dataclass cannot resolve that annotation at import
    """The event being delivered."""
    subscriber: Any
    """The registered object whose handler raised, or `None` for a plain function."""
    handler: str
    """The handler's qualified name, for example ``"Billing.charge"``."""
    topic: str | None
    """The event's topic (`None` for plain objects)."""
    event_context: EventContext | None = field(default=None, compare=False)
    """The event's `EventContext` (its id, cause and chain), left out of comparisons. Added in version 0.2."""


def log_extra(context: ErrorContext) -> dict[str, object]:
    """The ``extra`` fields of a failure's log record: ``event_id``, ``correlation_id``, ``topic``, ``handler``.

    A formatter or a structured-logging processor reads them as attributes of the
    record (``record.event_id``); they are `None` where unknown.
    """
    traced = context.event_context
    return {
        "event_id": None if traced is None else traced.id,
        "correlation_id": None if traced is None else traced.correlation_id,
        "topic": context.topic,
        "handler": context.handler,
    }


def log_error(exc: BaseException, context: ErrorContext) -> None:
    """The default ``on_error``: log the failure with its traceback on the ``eventbus`` logger.

    The record carries ``event_id``, ``correlation_id``, ``topic`` and ``handler``
    as ``extra`` fields (see the tracing guide for stdlib logging and structlog).
    """
    logger.error(
        "handler %s raised %s while handling %r (topic %r, bus %r)",
        context.handler,
        type(exc).__name__,
        context.event,
        context.topic,
        getattr(context.bus, "name", context.bus),
        exc_info=(type(exc), exc, exc.__traceback__),
        extra=log_extra(context),
    )


@final
@dataclass(frozen=True, slots=True)
class BusStats:
    """A snapshot of a bus's counters. Exact after ``join()``."""

    posted: int
    """Events accepted by ``post``/``publish`` (the bus's own DeadEvents not included)."""
    delivered: int
    """Handler calls that returned normally."""
    failed: int
    """Handler calls (or ``when=`` filters) that raised."""
    dead: int
    """Events that matched no handler."""
    queued: int
    """Events accepted but not yet started (and, on the thread pools, handler calls
    waiting for a busy ``thread_safe=False`` subscriber)."""
    running: int
    """Events started whose handlers have not all finished (on the thread pools, work
    units: an event's pass over its handlers, or one parked handler call)."""
    subscribers: int
    """Registered subscribers (objects and plain functions)."""


@final
class ThreadState:
    """One thread's view of one bus: its counters and the sync strategy's queue.

    Only its own thread writes a state's counters, so counting takes no lock; other
    threads read them through `Dispatcher.sums`. When the thread ends, the
    dispatcher folds the counters into `Dispatcher.retired` and forgets the state.
    """

    __slots__ = (
        "calling",
        "dead",
        "delivered",
        "dispatching",
        "done",
        "end_ref",
        "failed",
        "finished",
        "finished_odd",
        "posted",
        "queue",
        "signal_thread",
        "submitted",
        "submitted_odd",
        "trace",
    )

    COUNTERS: ClassVar[tuple[str, ...]] = (
        "posted",
        "submitted",
        "finished",
        "submitted_odd",
        "finished_odd",
        "delivered",
        "failed",
        "dead",
    )
    """The counters that a retired thread's state adds to `Dispatcher.retired`."""

    def __init__(self) -> None:
        self.posted: int = 0
        self.submitted: int = 0
        """Units of work this thread handed to a thread-pool strategy (events, parked calls) in an even join phase."""
        self.finished: int = 0
        """Units of work this thread finished as a thread-pool worker, of an even join phase."""
        self.submitted_odd: int = 0
        """Like ``submitted``, for units of an odd join phase (see the thread-pool join)."""
        self.finished_odd: int = 0
        """Like ``finished``, for units of an odd join phase."""
        self.signal_thread: bool = threading.get_ident() == threading.main_thread().ident
        """Whether this thread runs Python's signal handlers (the main thread), so that a
        ``KeyboardInterrupt`` can land in it between any two calls; no other thread gets one."""
        self.delivered: int = 0
        self.failed: int = 0
        self.dead: int = 0
        self.dispatching: bool = False
        """True while this thread is inside the sync strategy's delivery loop."""
        self.done: int = 0
        """Sync strategy: events this thread has finished delivering (for ``join``)."""
        self.calling: Subscription | None = None
        """Sync strategy: the handler this thread is calling (or last called in its current event)."""
        self.queue: deque[tuple[object, tuple[Subscription, ...], Delivery | None, Pending | None]] = deque()
        """The sync strategy's per-thread queue (Guava's breadth-first dispatch)."""
        self.end_ref: weakref.ref[object] | None = None
        """Fires when the thread's local storage goes away, that is when the thread ends."""
        self.trace: Slot = slot()
        """What this thread is handling now, for every bus (see ``_context``): strategies mark the
        event they deliver here, so that ``current_context()`` and posts from handlers find it."""


@final
class Dispatcher:
    """What a bus hands its delivery strategy: who to call, how to report, where to count.

    The bus makes one and passes it to ``strategy.start(dispatcher)``. A strategy
    written with public names only needs three of its methods:

    - `call` runs one handler under the bus's error policy: it skips an
      unregistered or filtered-out handler, counts the call as delivered or
      failed, passes a failure to ``on_error``, and settles the event's
      `Delivery` (if it was published);
    - `count_accepted` counts an event the strategy has accepted (what
      ``stats().posted`` adds up);
    - `bus` and `name` say which bus this is (the bus is held weakly: a strategy
      must not keep its bus alive).

    The built-in strategies also use its lower-level parts (`state`, `fail`,
    `settle`, `report`, `sums`) to inline the success path of a plain call.
    """

    __slots__ = ("_bus", "_ended", "_states", "_states_lock", "local", "on_error", "retired")

    def __init__(self, bus: object, on_error: Callable[[BaseException, ErrorContext], object]) -> None:
        self._bus = weakref.ref(bus)
        self.on_error: Callable[[BaseException, ErrorContext], object] = on_error
        self.local: threading.local = threading.local()
        """Holds each thread's `ThreadState` as ``local.state`` (read it directly on hot paths)."""
        self._states: dict[ThreadState, None] = {}  # live threads' states, in creation order
        self._states_lock = threading.Lock()
        self._ended: deque[ThreadState] = deque()  # states of threads that ended, not yet folded
        self.retired: ThreadState = ThreadState()
        """The counters of every thread that has ended, added up; its ``queue`` holds the
        events that such threads, or interrupted deliveries, left for others to deliver."""

    @property
    def bus(self) -> Any:
        """The bus, or `None` once it has been garbage-collected (held weakly: see `EventBus`)."""
        return self._bus()

    @property
    def name(self) -> str:
        """The bus's name, for thread names and messages."""
        return str(getattr(self._bus(), "name", "eventbus"))

    def count_accepted(self) -> None:
        """Count one event as accepted by the strategy, on the calling thread.

        Call it from `DeliveryStrategy.submit` once the event is queued (or
        delivered), on the thread that called ``submit``. Only the events the
        strategy accepts are counted here; the bus counts the dead events it
        drops itself.
        """
        try:
            state: ThreadState = self.local.state
        except AttributeError:
            state = self.state()
        state.posted += 1

    # -- per-thread state -------------------------------------------------------------------

    def state(self) -> ThreadState:
        """Return the calling thread's `ThreadState` for this bus, creating it on first use."""
        try:
            state: ThreadState = self.local.state
        except AttributeError:
            pass
        else:
            return state
        # The token lives only in this thread's local storage; when the thread ends it
        # dies and its weakref callback hands the state over to be folded into `retired`.
        # The callback only appends to a deque: it may run on any thread, even in a
        # forked child, and must never take a lock.
        state = ThreadState()
        token: set[object] = set()  # any object that takes weak references (a compiled class does not)
        ended = self._ended
        state.end_ref = weakref.ref(token, lambda _: ended.append(state))
        with self._states_lock:
            self._states[state] = None
        # Interrupted before the next line, the token dies with this frame and the
        # (empty) state is folded at once: nothing is counted twice or lost.
        self.local.token = token
        self.local.state = state
        return state

    def _fold_ended(self) -> None:
        # Called with _states_lock held: fold the counters of ended threads into retired.
        ended, retired = self._ended, self.retired
        while ended:
            gone = ended.popleft()
            gone.end_ref = None
            if self._states.pop(gone, False) is None:
                for name in ThreadState.COUNTERS:
                    setattr(retired, name, getattr(retired, name) + getattr(gone, name))
                if gone.queue:  # sync strategy: events an interrupted thread left queued
                    retired.queue.extend(gone.queue)
                    gone.queue.clear()

    def states(self) -> list[ThreadState]:
        """The states of the threads that are alive (ended threads are in `retired`)."""
        with self._states_lock:
            if self._ended:
                self._fold_ended()
            return list(self._states)

    def sums(self, *names: str) -> tuple[int, ...]:
        """Each named counter summed over every live thread and `retired`, name by name.

        Read under one lock, so a thread that ends meanwhile is counted exactly once.
        Every thread's first counter is read before any thread's second: a strategy
        that reads ``sums("finished", "submitted")`` of counters that only grow sees
        no unit finished that it does not also see submitted.
        """
        with self._states_lock:
            if self._ended:
                self._fold_ended()
            states = (*self._states, self.retired)
            return tuple(sum(map(operator.attrgetter(name), states)) for name in names)

    def totals(self) -> tuple[int, int, int, int]:
        """(posted, delivered, failed, dead) summed over every thread, ended ones included."""
        posted, delivered, failed, dead = self.sums("posted", "delivered", "failed", "dead")
        return posted, delivered, failed, dead

    # -- fork ---------------------------------------------------------------------------------

    def before_fork(self) -> None:
        """Take the lock that `after_fork_in_child` will replace, so no half update is forked."""
        self._states_lock.acquire()

    def after_fork_in_parent(self) -> None:
        """Release what `before_fork` took."""
        self._states_lock.release()

    def after_fork_in_child(self) -> None:
        """In a forked child: keep the forking thread's state and retire every other one.

        The other threads do not exist in the child; their counts stay counted, and
        their flags (a delivery in progress, a handler being called) are gone with them.
        """
        self._states_lock = threading.Lock()
        mine: ThreadState | None = getattr(self.local, "state", None)
        self._ended.extend(state for state in self._states if state is not mine)
        self._fold_ended()

    # -- calling handlers ---------------------------------------------------------------------

    def call(
        self,
        sub: Subscription,
        event: object,
        delivery: Delivery | None = None,
        index: int = 0,
        state: ThreadState | None = None,
        *,
        reraise: bool = False,
    ) -> None:
        """Call one handler with *event* under the error policy and record the outcome.

        While the handler runs, the event is the one ``current_context()`` reports
        on this thread (its trace, if *delivery* carries one): a custom strategy
        that calls every handler through here gets contexts for free.

        Args:
            sub: The handler.
            event: The event.
            delivery: The handle to settle, if the event was published.
            index: The handler's position in the event's handler tuple (which
                outcome of *delivery* this call settles).
            state: The calling thread's counters, if the caller has them at hand.
            reraise: After all the bookkeeping, re-raise a `BaseException` that is
                not an `Exception` (from the handler, ``on_error`` or a
                done-callback): the sync strategy's poster wants it. Otherwise (a
                worker thread, which must never die) it is reported and swallowed,
                and this method never raises.
        """
        if state is None:
            state = self.state()
        here = state.trace
        before = here.current
        trace = None if delivery is None else delivery._trace
        if trace is not None:
            if before is trace:  # marked already by the strategy
                self._call(sub, event, delivery, index, state, reraise)
                return
            try:
                here.current = trace
                self._call(sub, event, delivery, index, state, reraise)
            finally:
                here.current = before
        elif before is None or before is LANES:
            # A strategy that marks nothing (a custom one): mark this bus (an untraced
            # event of it); a later handler of the same event (index > 0) gets the trace
            # that a reader made meanwhile, so every handler sees one context.
            if not index or here.raw is not event:
                here.raw, here.raw_trace = event, None
            try:
                here.current = self if here.raw_trace is None else here.raw_trace
                self._call(sub, event, delivery, index, state, reraise)
            finally:
                made = here.current
                here.current = before
                if type(made) is Pending:
                    here.raw_trace = made
        else:  # the strategy marked the event (and a reader may replace the mark): leave it
            self._call(sub, event, delivery, index, state, reraise)

    def _call(
        self, sub: Subscription, event: object, delivery: Delivery | None, index: int, state: ThreadState, reraise: bool
    ) -> None:
        try:
            when = sub.when  # a property: read it once
            if not sub.active or (when is not None and not when(event)):
                if delivery is not None:
                    self.settle(delivery, index, reraise=reraise)
                return
            value = sub.func(sub.target, event)
        except BaseException as exc:
            self.fail(state, exc, sub, event, delivery, index, reraise=reraise)
            return
        state.delivered += 1
        if delivery is not None:
            self.settle(delivery, index, value, reraise=reraise)

    def fail(
        self,
        state: ThreadState,
        exc: BaseException,
        sub: Subscription,
        event: object,
        delivery: Delivery | None = None,
        index: int = 0,
        *,
        reraise: bool,
    ) -> None:
        """The failure path of every strategy: count, report, settle, then maybe re-raise.

        Counted first and settled last, whatever ``on_error`` does, so that whoever
        waits on the delivery finds the failure reported. With *reraise*, a
        `BaseException` that is not an `Exception` leaves once all that is done.
        """
        state.failed += 1
        try:
            self.report(exc, sub, event, reraise=reraise)
        finally:
            if delivery is not None and not delivery._carrier:
                exc.add_note(f"raised by handler {sub.name} for topic {topic_of(event)!r}")
                self.settle(delivery, index, error=exc, reraise=reraise)
        if reraise and not isinstance(exc, Exception):
            raise exc

    def settle(
        self, delivery: Delivery, index: int, value: Any = SKIPPED, error: BaseException | None = None, *, reraise: bool
    ) -> None:
        """Settle handler *index* of *delivery*; a done-callback's `BaseException` leaves only with *reraise*."""
        try:
            delivery._settle(index, value, error)
        except BaseException as exc:  # Delivery logs Exceptions itself; this is e.g. SystemExit
            if reraise:
                raise
            logger.error(
                "a done-callback of %r raised %s; delivery goes on",
                delivery,
                type(exc).__name__,
                exc_info=(type(exc), exc, exc.__traceback__),
            )

    def report(self, exc: BaseException, sub: Subscription, event: object, *, reraise: bool = False) -> None:
        """Pass *exc* to ``on_error``; if that raises, log it and carry on.

        A `BaseException` that is not an `Exception` raised by ``on_error`` itself
        (a Ctrl-C while it runs) is logged too and re-raised when *reraise* is set,
        so that it reaches the poster on the sync strategy.
        """
        trace = trace_of(slot())  # the failing event is the one being handled on this thread or task
        context = ErrorContext(
            self.bus, event, sub.subscriber, sub.name, topic_of(event), None if trace is None else trace.context()
        )
        try:
            self.on_error(exc, context)
        except BaseException as hook_exc:
            # on_error must not stop delivery; log what it raised, with the original.
            logger.error(
                "on_error raised %s while reporting %r from handler %s",
                type(hook_exc).__name__,
                exc,
                sub.name,
                exc_info=(type(hook_exc), hook_exc, hook_exc.__traceback__),
                extra=log_extra(context),
            )
            if reraise and not isinstance(hook_exc, Exception):
                raise
