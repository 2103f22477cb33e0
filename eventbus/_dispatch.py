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
takes a lock to count; `Dispatcher.totals` adds them up.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, final

from ._events import topic_of

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._registry import Subscription

__all__ = ["BusStats", "Dispatcher", "ErrorContext", "ThreadState", "log_error"]

logger: Final = logging.getLogger("eventbus")


@final
@dataclass(frozen=True, slots=True)
class ErrorContext:
    """Where a handler failure happened; the second argument of ``on_error``."""

    bus: Any
    """The `EventBus` that delivered the event."""
    event: object
    """The event being delivered."""
    subscriber: object
    """The registered object whose handler raised, or `None` for a plain function."""
    handler: str
    """The handler's qualified name, for example ``"Billing.charge"``."""
    topic: str | None
    """The event's topic (`None` for plain objects)."""


def log_error(exc: BaseException, context: ErrorContext) -> None:
    """The default ``on_error``: log the failure with its traceback on the ``eventbus`` logger."""
    logger.error(
        "handler %s raised %s while handling %r (topic %r, bus %r)",
        context.handler,
        type(exc).__name__,
        context.event,
        context.topic,
        getattr(context.bus, "name", context.bus),
        exc_info=(type(exc), exc, exc.__traceback__),
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
    """Events accepted but not yet started."""
    running: int
    """Events started whose handlers have not all finished."""
    subscribers: int
    """Registered subscribers (objects and plain functions)."""


@final
class ThreadState:
    """One thread's view of one bus: its counters and the sync strategy's queue."""

    __slots__ = (
        "bare",
        "dead",
        "delivered",
        "dispatching",
        "failed",
        "finished",
        "finished_odd",
        "posted",
        "queue",
        "signal_thread",
        "submitted",
        "submitted_odd",
    )

    def __init__(self) -> None:
        self.posted = 0
        self.submitted = 0
        """Units of work this thread handed to a thread-pool strategy (events, parked calls) in an even join phase."""
        self.finished = 0
        """Units of work this thread finished as a thread-pool worker, of an even join phase."""
        self.submitted_odd = 0
        """Like ``submitted``, for units of an odd join phase (see the thread-pool join)."""
        self.finished_odd = 0
        """Like ``finished``, for units of an odd join phase."""
        self.signal_thread = threading.get_ident() == threading.main_thread().ident
        """Whether this thread runs Python's signal handlers (the main thread), so that a
        ``KeyboardInterrupt`` can land in it between any two calls; no other thread gets one."""
        self.delivered = 0
        self.failed = 0
        self.dead = 0
        self.dispatching = False
        """True while this thread is inside the sync strategy's delivery loop."""
        self.bare: tuple[Subscription, ...] | None = None
        """The handlers this thread is calling without their subscribers' locks (sync strategy)."""
        self.queue: deque[tuple[object, tuple[Subscription, ...], Delivery | None]] = deque()
        """The sync strategy's per-thread queue (Guava's breadth-first dispatch)."""


@final
class Dispatcher:
    """Calls handlers for a bus: the one place where the error policy lives."""

    __slots__ = ("_states", "_states_lock", "bus", "local", "on_error")

    def __init__(self, bus: object, on_error: Callable[[BaseException, ErrorContext], object]) -> None:
        self.bus = bus
        self.on_error = on_error
        self.local = threading.local()
        """Holds each thread's `ThreadState` as ``local.state`` (read it directly on hot paths)."""
        self._states: list[ThreadState] = []
        self._states_lock = threading.Lock()

    def state(self) -> ThreadState:
        """Return the calling thread's `ThreadState` for this bus."""
        try:
            state: ThreadState = self.local.state
        except AttributeError:
            state = self.local.state = ThreadState()
            with self._states_lock:
                self._states.append(state)
        return state

    def states(self) -> list[ThreadState]:
        """Every thread's state (threads that have ended included, so no count is lost)."""
        with self._states_lock:
            return list(self._states)

    def totals(self) -> tuple[int, int, int, int]:
        """(posted, delivered, failed, dead) summed over every thread."""
        posted = delivered = failed = dead = 0
        for state in self.states():
            posted += state.posted
            delivered += state.delivered
            failed += state.failed
            dead += state.dead
        return posted, delivered, failed, dead

    def call(
        self,
        sub: Subscription,
        event: object,
        delivery: Delivery | None,
        index: int,
        state: ThreadState,
        *,
        reraise: bool,
    ) -> None:
        """Call one handler with *event* under the error policy and record the outcome.

        Args:
            sub: The handler.
            event: The event.
            delivery: The handle to settle, if the event was published.
            index: The handler's position in the event's handler tuple.
            state: The calling thread's counters.
            reraise: Re-raise `BaseException`s that are not `Exception`s after
                reporting them (the sync strategy); otherwise swallow them (workers).
        """
        try:
            when = sub.when  # a property: read it once
            if not sub.active or (when is not None and not when(event)):
                if delivery is not None:
                    delivery._settle(index)
                return
            value = sub.func(sub.target, event)
        except BaseException as exc:
            state.failed += 1
            # on_error sees the failure before the Delivery settles, so that whoever
            # waits on result() finds the failure already reported.
            self.report(exc, sub, event)
            if delivery is not None:
                exc.add_note(f"raised by handler {sub.name} for topic {topic_of(event)!r}")
                delivery._settle(index, error=exc)
            if reraise and not isinstance(exc, Exception):
                raise
            return
        state.delivered += 1
        if delivery is not None:
            delivery._settle(index, value)

    def report(self, exc: BaseException, sub: Subscription, event: object) -> None:
        """Pass *exc* to ``on_error``; if that raises, log both and carry on."""
        context = ErrorContext(self.bus, event, sub.subscriber, sub.name, topic_of(event))
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
            )
