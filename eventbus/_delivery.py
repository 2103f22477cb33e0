"""`Delivery`: the handle that ``publish()`` returns to follow one event's delivery."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, Final, final

from ._context import EventContext, Pending, Slot, nested

if TYPE_CHECKING:
    from ._registry import Subscription

__all__ = ["Delivery", "SKIPPED", "carrier", "set_if_pending", "submit_traced"]

SKIPPED: Final[Any] = object()
"""The outcome of a handler that was not called (filtered out, unregistered, or cut short)."""
_PENDING: Final[Any] = object()  # a handler whose outcome is not known yet
_FAILED: Final[Any] = object()  # a handler that raised (its exception is in _errors)
_RECHECK: Final = 0.05  # seconds between two looks of a waiter (a thread or an awaiting coroutine)
_logger: Final = logging.getLogger("eventbus")


@final
class Delivery:
    """Follows one published event until every handler it was given has finished.

    ``result()`` returns the handlers' return values in call order (priority
    order), or raises an `ExceptionGroup` of the handlers' original exceptions,
    each carrying a note that names the handler and the topic. Handlers skipped by
    their ``when=`` filter, or unregistered before their turn, contribute nothing.

    A `Delivery` is awaitable: ``values = await bus.publish(event)`` waits without
    blocking the event loop.
    """

    __slots__ = (
        "_callbacks",
        "_carrier",
        "_done",
        "_errors",
        "_gate",
        "_lock",
        "_outcomes",
        "_pending",
        "_trace",
        "event",
    )

    def __init__(
        self, event: object, handler_count: int, trace: Pending | None = None, *, carrier: bool = False
    ) -> None:
        self.event: object = event
        """The event being delivered."""
        self._trace: Pending | None = trace
        # True for a handle made only to carry an event's trace through a strategy's queue
        # (see `carrier`): nobody waits on it, and its failures get no notes.
        self._carrier: bool = carrier
        self._outcomes: list[Any] = [_PENDING] * handler_count
        self._errors: list[tuple[int, BaseException]] = []
        self._pending = handler_count
        self._lock = threading.Lock()
        self._done = handler_count == 0
        self._gate: threading.Lock | None = None  # held until done, made by the first wait()
        self._callbacks: list[Callable[[Delivery], object]] = []

    # -- called by the strategies -------------------------------------------------------

    def _settle(self, index: int, value: Any = SKIPPED, error: BaseException | None = None) -> None:
        """Record the outcome of handler number *index*; the last one completes the delivery.

        Idempotent per handler: settling one that is already settled changes nothing,
        so a strategy cut short by an interrupt may settle what is left without
        knowing how far it got. Every done-callback runs, even if one raises; an
        `Exception` from a callback is logged, and the first other `BaseException`
        (a Ctrl-C, `SystemExit`) is re-raised once all of them have run.
        """
        with self._lock:
            if self._outcomes[index] is not _PENDING:
                return
            if error is not None:
                self._errors.append((index, error))
                self._outcomes[index] = _FAILED
            else:
                self._outcomes[index] = value
            self._pending -= 1
            if self._pending:
                return
            self._done = True
            gate, callbacks = self._gate, self._callbacks
            self._callbacks = []
        if gate is not None:
            gate.release()  # once: only the settle that completes the delivery gets here
        if callbacks:
            self._run_callbacks(callbacks)

    def _settle_rest(self) -> None:
        """Settle, as not called, every handler whose outcome is still unknown."""
        for index, outcome in enumerate(self._outcomes):
            if outcome is _PENDING:
                self._settle(index)

    def _run_callbacks(self, callbacks: list[Callable[[Delivery], object]]) -> None:
        # Each callback is taken off the list before it is called, so none runs twice;
        # an interrupt in one (or between two) does not keep the others from running.
        try:
            while True:
                if not callbacks:
                    break
                callback = callbacks[0]
                del callbacks[0]
                self._run_callback(callback)
        except BaseException:
            if callbacks:
                self._run_callbacks(callbacks)
            raise

    def _run_callback(self, callback: Callable[[Delivery], object]) -> None:
        # A broken callback must not break the strategy that settles the delivery, nor
        # the callbacks after it (concurrent.futures.Future does the same).
        try:
            callback(self)
        except Exception:
            _logger.exception("done-callback %r of %r raised", callback, self)

    def _resize(self, handler_count: int) -> None:
        """Follow a different number of handlers (used when the event turns into a DeadEvent)."""
        self._outcomes = [_PENDING] * handler_count
        self._pending = handler_count
        self._done = handler_count == 0

    # -- public ---------------------------------------------------------------------------

    @property
    def context(self) -> EventContext:
        """The `EventContext` of the published event (the one its handlers see).

        Added in version 0.2.
        """
        trace = self._trace
        if trace is None:  # a Delivery made by hand, outside a bus
            trace = self._trace = Pending(None, "eventbus", None)
        return trace.context()

    def done(self) -> bool:
        """Whether every handler has finished (or was skipped)."""
        return self._done

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the delivery is done; return `False` if *timeout* seconds passed first.

        Safe to interrupt (Ctrl-C on the main thread): it waits on a plain lock that the
        delivery's completion releases, never on a `threading.Condition` (whose wait an
        interrupt can leave with its lock in the wrong hands), and it looks at the
        outcome at least every 50 ms, so a release that an interrupt took away from
        another waiter costs that waiter latency, never a hang.
        """
        if self._done:
            return True
        with self._lock:
            if self.done():  # finished while we took the lock
                return True
            gate = self._gate
            if gate is None:
                fresh = threading.Lock()
                fresh.acquire()  # held until the delivery completes (see _settle)
                gate = self._gate = fresh
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            if self.done():
                return True
            remaining = _RECHECK if deadline is None else min(_RECHECK, deadline - time.monotonic())
            if remaining <= 0:
                return False
            if gate.acquire(timeout=remaining):
                gate.release()  # pass it on: every waiter goes through
                return True

    def result(self, timeout: float | None = None) -> list[Any]:
        """Wait for the delivery and return the handlers' return values in call order.

        Raises:
            TimeoutError: *timeout* seconds passed before every handler finished.
            ExceptionGroup: One or more handlers raised; the group holds the original
                exceptions in call order (a `BaseExceptionGroup` if one of them is not an
                `Exception`).
        """
        if not self.wait(timeout):
            raise TimeoutError(f"the delivery of {self.event!r} did not finish within {timeout} s")
        if self._errors:
            errors = [exc for _, exc in sorted(self._errors, key=lambda pair: pair[0])]
            raise BaseExceptionGroup(f"{len(errors)} handler(s) failed for {type(self.event).__qualname__}", errors)
        return [value for value in self._outcomes if value is not SKIPPED and value is not _FAILED]

    def add_done_callback(self, callback: Callable[[Delivery], object]) -> None:
        """Call *callback(delivery)* once it is done (at once, if it already is).

        The callback runs on the thread that finishes the delivery. If it raises an
        `Exception`, that is logged on the ``eventbus`` logger and the delivery goes on.
        """
        with self._lock:
            if not self._done:
                self._callbacks.append(callback)
                return
        self._run_callback(callback)

    def __await__(self) -> Generator[Any, None, list[Any]]:
        if not self._done:
            loop = asyncio.get_running_loop()
            waiting: list[asyncio.Future[None]] = [loop.create_future()]

            def wake(_: Delivery) -> None:
                # The awaiting coroutine may have given up and its loop closed since.
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(set_if_pending, waiting[0])

            self.add_done_callback(wake)
            while not self._done:
                # Look again every _RECHECK seconds: a wake-up lost to an interrupt
                # (Ctrl-C inside the loop's own code) costs latency, never a hang.
                timer = loop.call_later(_RECHECK, set_if_pending, waiting[0])
                try:
                    yield from waiting[0].__await__()
                finally:
                    timer.cancel()
                if not self._done:
                    waiting[0] = loop.create_future()
        return self.result(0)

    def __repr__(self) -> str:
        state = "done" if self._done else f"pending={self._pending}"
        return f"<Delivery of {type(self.event).__qualname__} {state}>"


def set_if_pending(future: asyncio.Future[None]) -> None:
    """Resolve *future* with `None` unless it is done already (a wake-up that may come twice)."""
    if not future.done():
        future.set_result(None)


def carrier(event: object, handler_count: int, trace: Pending | None, here: Slot, source: str) -> Delivery | None:
    """A `Delivery` that carries *event*'s trace through a strategy's queue, or `None` if it has none.

    For the strategies that keep no trace per queued event (the pools, the asyncio
    strategy): an event posted by a handler, or handed over with a trace, travels
    with a handle that nobody waits on; `Dispatcher.call` marks its trace while its
    handlers run. A root event needs none: its context is made if it is read.
    """
    if trace is None:
        trace = nested(here, source)
        if trace is None:
            return None
    return Delivery(event, handler_count, trace, carrier=True)


def submit_traced(
    submit: Callable[..., None],
    submit_with_trace: Callable[..., None] | None,
    event: object,
    handlers: tuple[Subscription, ...],
    delivery: Delivery | None,
    timeout: float | None,
    trace: Pending | None,
) -> None:
    """Hand *event* to a strategy with its trace: as ``submit``'s fifth argument, or in a carrier.

    *submit_with_trace* is the strategy's ``submit`` if it takes traces
    (``takes_traces``), else `None`: then a `Delivery` carries the trace.
    """
    if trace is None:
        submit(event, handlers, delivery, timeout)
    elif submit_with_trace is not None:
        submit_with_trace(event, handlers, delivery, timeout, trace)
    else:
        submit(
            event,
            handlers,
            delivery if delivery is not None else Delivery(event, len(handlers), trace, carrier=True),
            timeout,
        )
