"""asyncio: ``async def`` handlers on every strategy, and the asyncio strategy.

Two independent parts live here.

*`HandlerLoops`* runs ``async def`` handlers for the thread-based strategies
(sync, ordered, concurrent). The registry wraps each such handler in a blocking
callable; the thread that calls it (the poster on the sync strategy, a worker on
the pools) runs the coroutine to completion on an event loop that the bus owns
for that thread, created on first need and closed at ``shutdown()`` (or when the
thread ends). The coroutine runs *on the calling thread*, so everything that the
strategies decide by thread identity holds for async handlers exactly as for
plain ones: a handler's posts into its own bus are breadth-first on the sync
strategy and never blocked by backpressure on the pools, a handler may
unregister its own subscriber or call ``join()`` and get the usual answer, and
``thread_safe`` locks are re-entrant. One loop per bus serving every thread
would break each of these (the code would run on the loop's thread while the
calling thread waited for it) and deadlock some of them.

If the calling thread is already running an event loop (a coroutine posting on
a sync bus), that loop is blocked for the duration of the synchronous ``post``
anyway; the handler's loop is run nested in its place and the outer loop is put
back afterwards.

*`AsyncioDelivery`* is ``EventBus(strategy="asyncio")``: it delivers on one event
loop, the one running where the bus was created or the one given as ``loop=``.
``workers`` long-lived *lane* tasks take events from a run queue. A lane calls an
event's handlers in priority order: a plain handler is called on the loop, an
``async def`` handler is awaited inside the lane task, so at most ``workers``
handler calls are in progress at once and no task is created per event. Key
lines (ordering keys) and subscriber lines (``thread_safe=False``) work as in
``_threaded``: a lane that finds a subscriber busy leaves the call in the
subscriber's line and goes on, and an event's next in its key's line starts
when the event has reached every handler.

Posts from the loop are accepted (or refused with `QueueFullError` when
``max_queued`` events wait) without ever blocking it; posts from other threads
wait for room like posts on the pools and reach the loop through an inbox
drained by one ``call_soon_threadsafe`` per batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

from ._dispatch import logger
from ._errors import BusClosedError, QueueFullError
from ._events import Event, topic_of
from ._room import wait_for_room

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._dispatch import Dispatcher, ThreadState
    from ._registry import Subscriber, Subscription

__all__ = ["AsyncioDelivery", "HandlerLoops", "ajoin", "apost", "ashutdown"]

_T = TypeVar("_T")

# Low-level asyncio functions (in ``asyncio.events.__all__``) that event loops use to
# say which loop runs on the current thread; used to nest a handler's loop.
_get_running_loop: Final = asyncio._get_running_loop
_set_running_loop: Final = asyncio._set_running_loop

# ---------------------------------------------------------------------------------------------
# async def handlers on the thread-based strategies
# ---------------------------------------------------------------------------------------------


def _run_nested(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T] | asyncio.Future[_T]) -> _T:
    """Run *coro* to completion on *loop*, on this thread, even inside a running loop."""
    outer = _get_running_loop()
    if outer is not None:
        # The outer loop is blocked in the synchronous call that got us here; let
        # ours run in its place and put it back afterwards.
        _set_running_loop(None)
    try:
        return loop.run_until_complete(coro)
    except BaseException:
        if inspect.iscoroutine(coro) and inspect.getcoroutinestate(coro) == inspect.CORO_CREATED:
            coro.close()  # it never started (the loop refused it): close it, never leave it un-awaited
        raise
    finally:
        if outer is not None:
            _set_running_loop(outer)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what a handler left running on *loop*, then close it (as ``asyncio.run`` does)."""
    if loop.is_closed():
        return
    try:
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        if pending:
            _run_nested(loop, asyncio.gather(*pending, return_exceptions=True))
        _run_nested(loop, loop.shutdown_asyncgens())
        _run_nested(loop, loop.shutdown_default_executor())
    except Exception:  # pragma: no cover - a handler left something that will not stop
        logger.exception("eventbus: could not finish the tasks left on a handler loop")
    finally:
        loop.close()


def _run_alone(coro: Coroutine[Any, Any, _T]) -> _T:
    loop = asyncio.new_event_loop()
    try:
        return _run_nested(loop, coro)
    finally:
        _close_loop(loop)


class _ThreadLoop:
    """One thread's event loop for one bus; closes the loop when the thread ends."""

    __slots__ = ("__weakref__", "closed", "loop", "running")

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.running = False
        self.closed = False

    def __del__(self) -> None:
        # Reached when the thread's threading.local value goes away (the thread
        # ended) or the bus itself was dropped without shutdown().
        if not self.closed:
            self.closed = True
            _close_loop(self.loop)


@final
class HandlerLoops:
    """The event loops on which a bus's ``async def`` handlers run on the thread-based strategies.

    Each thread that calls an async handler gets its own loop, created on first
    need and reused; `close` (called by ``EventBus.shutdown``) closes them. A call
    made after `close`, or re-entering a loop that is already running on this
    thread, runs on a fresh loop of its own.
    """

    __slots__ = ("_closed", "_holders", "_local", "_lock")

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._holders: weakref.WeakSet[_ThreadLoop] = weakref.WeakSet()
        self._closed = False

    def blocking(self, coroutine_function: Callable[[Any], Awaitable[object]]) -> Callable[[Any], object]:
        """Return a plain callable that runs ``coroutine_function(event)`` to completion."""
        run = self.run

        def call(event: Any) -> object:
            return run(coroutine_function(event))  # type: ignore[arg-type]  # an async def returns a coroutine

        call.__qualname__ = getattr(coroutine_function, "__qualname__", call.__qualname__)
        call.__wrapped__ = coroutine_function  # type: ignore[attr-defined]  # read by Subscription.coroutine
        return call

    def run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run *coro* to completion on this thread's loop and return its result (or raise)."""
        holder = self._take()
        if holder is None:
            return _run_alone(coro)
        try:
            return _run_nested(holder.loop, coro)
        finally:
            with self._lock:
                holder.running = False
                close = self._closed and not holder.closed
                if close:
                    holder.closed = True
            if close:
                _close_loop(holder.loop)

    def _take(self) -> _ThreadLoop | None:
        holder: _ThreadLoop | None = getattr(self._local, "holder", None)
        with self._lock:
            if self._closed:
                return None
            if holder is None or holder.closed:
                holder = _ThreadLoop()
                self._local.holder = holder
                self._holders.add(holder)
            elif holder.running:
                return None  # re-entered on this thread: a loop of its own
            holder.running = True
            return holder

    def close(self) -> None:
        """Close every loop not in use now; loops in use close when their call returns."""
        with self._lock:
            self._closed = True
            idle = [h for h in self._holders if not h.running and not h.closed]
            for holder in idle:
                holder.closed = True
        for holder in idle:
            _close_loop(holder.loop)


# ---------------------------------------------------------------------------------------------
# The asyncio strategy
# ---------------------------------------------------------------------------------------------

_LANE: Final[contextvars.ContextVar[object]] = contextvars.ContextVar("eventbus_lane", default=None)
"""Set, inside a lane task, to the `AsyncioDelivery` it serves."""

_FAIRNESS: Final = 64
"""Handler calls a lane makes in a row before it lets the rest of the loop run."""

_PARTS_LEFT: Final[Any] = object()  # an event whose parked calls are still to run


_Work = tuple["object", "tuple[Subscription, ...]", "Delivery | None", "Hashable | None"]
"""An accepted event on its way through the lanes: (event, handlers, delivery, ordering key)."""


class _Job:
    """An event with calls parked in subscriber lines: counts its unfinished parts."""

    __slots__ = ("delivery", "event", "handlers", "key", "parked", "pending")

    def __init__(
        self, event: object, handlers: tuple[Subscription, ...], delivery: Delivery | None, key: Hashable | None
    ) -> None:
        self.event = event
        self.handlers = handlers
        self.delivery = delivery
        self.key = key
        self.pending = 1  # the lane's pass over the handlers, plus one per call parked in a subscriber line
        self.parked = 0  # calls waiting in subscriber lines, not yet started


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` calls."""

    __slots__ = ("__weakref__", "busy", "calls")

    def __init__(self) -> None:
        self.busy = False
        self.calls: deque[tuple[Subscription, _Job, int]] = deque()


class _LaneState:
    """What one lane is doing, for ``unregister()`` from another thread."""

    __slots__ = ("owner",)

    def __init__(self) -> None:
        self.owner: Subscriber | None = None


def _set_if_pending(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _closed_error(name: str) -> BusClosedError:
    return BusClosedError(
        f"{name} has been shut down and accepts no more events.\nPost before shutdown(), or create a new EventBus."
    )


@final
class AsyncioDelivery:
    """Deliver on an asyncio event loop: ``EventBus(strategy="asyncio")``.

    Guarantees:

    - plain handlers run on the loop; ``async def`` handlers are awaited on the
      loop, at most ``workers`` handler calls in progress at once;
    - the handlers of one event are started in priority order, each after the
      previous one has finished (as on the thread pools);
    - events with the same ordering key are handled one at a time, in the order
      they were accepted; others run concurrently (as `ConcurrentDelivery`);
    - a ``thread_safe=False`` handler never runs twice at once for one subscriber
      object, and waiting for it never holds up the loop or a lane;
    - ``post()`` never blocks the loop: on the loop, a full queue raises
      `QueueFullError` at once (``await bus.apost(event)`` waits for room
      instead); from other threads it waits for room like the pools;
    - ``await bus.ashutdown(timeout)`` delivers everything accepted; handler
      calls still running when the timeout is up are cancelled and awaited.

    Posts made by the bus's own handlers are never refused for lack of room (they
    may exceed ``max_queued``), since a handler waiting for room would wait for
    the lanes it occupies.

    Args:
        loop: The loop to deliver on; by default the loop running when the bus is
            created.
        workers: How many handler calls may be in progress at once (lanes).
        max_queued: How many accepted events may wait to start.
    """

    __slots__ = (
        "_abandoned",
        "_cancelling",
        "_closed",
        "_dispatcher",
        "_forgetting",
        "_forgotten",
        "_idle",
        "_inbox",
        "_inbox_scheduled",
        "_join_futures",
        "_joiners",
        "_keyless",
        "_keys",
        "_lane_states",
        "_lanes",
        "_lines",
        "_lock",
        "_loop",
        "_loop_state",
        "_name",
        "_room",
        "_room_futures",
        "_room_threads",
        "_running",
        "_runq",
        "_settled",
        "_stopping",
        "_unfinished",
        "_waiting",
        "max_queued",
        "workers",
    )

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop | None = None, workers: int = 8, max_queued: int = 10_000
    ) -> None:
        from ._threaded import _check_positive_int

        _check_positive_int("workers", workers)
        _check_positive_int("max_queued", max_queued)
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, not {loop!r}")
        self.workers: int = workers
        """How many handler calls may be in progress at once."""
        self.max_queued: int = max_queued
        """How many accepted events may wait to start before posts are refused (or wait)."""
        self._loop = loop
        self._dispatcher: Dispatcher | None = None
        self._loop_state: ThreadState | None = None  # the loop thread's counters
        self._keyless: set[type] = set()  # classes whose events never have an ordering key
        self._name = "eventbus"
        # Shared with other threads, under the lock: the inbox of their posts, and
        # the counts of threads waiting on the conditions.
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # other threads waiting for room
        self._settled = threading.Condition(self._lock)  # other threads in join()/shutdown()
        self._forgotten = threading.Condition(self._lock)  # other threads in unregister()
        self._inbox: list[_Work] = []  # accepted on other threads, not yet on the loop's side
        self._inbox_scheduled = False
        self._room_threads = 0
        self._joiners = 0
        self._forgetting = 0
        self._closed = False
        # Written on the loop only (other threads read them; each waiter counts itself
        # under the lock before it looks, and the loop notifies after it writes, so no
        # wake-up is lost):
        self._waiting = 0  # events on the loop's side not started (or waiting for a parked call)
        self._running = 0  # events started and not finished
        self._unfinished = 0  # events on the loop's side not finished
        self._runq: deque[_Work | _Line] = deque()
        self._keys: dict[Hashable, deque[_Work]] = {}
        self._lines: weakref.WeakSet[_Line] = weakref.WeakSet()
        self._idle: list[asyncio.Future[None]] = []
        self._lanes: set[asyncio.Task[None]] = set()
        self._lane_states: list[_LaneState] = []
        self._room_futures: deque[asyncio.Future[None]] = deque()
        self._join_futures: list[asyncio.Future[None]] = []
        self._stopping = False  # closed and idle: lanes end
        self._cancelling = False  # a shutdown timed out: lanes are being cancelled
        self._abandoned = False

    # -- protocol ----------------------------------------------------------------------

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher and to the event loop.

        Raises:
            RuntimeError: No loop was given and none is running on this thread.
        """
        if self._dispatcher is not None:
            raise RuntimeError("this AsyncioDelivery already serves a bus; give each bus its own strategy")
        if self._loop is None:
            try:
                self._loop = asyncio.get_running_loop()
            except RuntimeError:
                raise RuntimeError(
                    "EventBus(strategy='asyncio') delivers on an event loop, and none is running here.\n"
                    "Create the bus inside a coroutine (under asyncio.run()), or pass loop=your_loop."
                ) from None
        self._dispatcher = dispatcher
        self._name = str(getattr(dispatcher.bus, "name", "eventbus"))

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop that the handlers run on."""
        assert self._loop is not None, "start() was not called"
        return self._loop

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Accept *event*: on the loop at once (or `QueueFullError`); elsewhere after waiting for room."""
        loop = self._loop
        if _get_running_loop() is loop:
            if self._closed:
                raise _closed_error(self._name)
            if self._waiting >= self.max_queued and _LANE.get() is not self:
                raise QueueFullError(
                    f"{self.max_queued} events are already waiting; this event was not accepted.\n"
                    "A post on the event loop never waits for room: use `await bus.apost(event)` to wait, "
                    "or raise max_queued."
                )
            self._waiting += 1
            self._unfinished += 1
            state = self._loop_state
            if state is None:
                assert self._dispatcher is not None, "start() was not called"
                state = self._loop_state = self._dispatcher.state()
            state.posted += 1
            key = None if type(event) in self._keyless else self._key_of(event)
            if key is None:  # the hot path: _push() written out
                self._runq.append((event, handlers, delivery, None))
                if self._idle or len(self._lanes) < self.workers:
                    self._wake_one()
            else:
                self._push((event, handlers, delivery, key))
            return
        assert loop is not None, "start() was not called"
        assert self._dispatcher is not None, "start() was not called"
        job = (event, handlers, delivery, None if type(event) in self._keyless else self._key_of(event))
        with self._lock:
            if self._closed:
                raise _closed_error(self._name)
            if loop.is_closed():
                raise BusClosedError(
                    f"the event loop of {self._name} is closed, so it can deliver nothing more; "
                    "this event was not accepted.\n"
                    "Shut the bus down (await bus.ashutdown()) before its loop ends."
                )
            if self._waiting + len(self._inbox) >= self.max_queued:
                self._wait_for_room(timeout)
            self._inbox.append(job)
            if not self._inbox_scheduled:
                self._inbox_scheduled = True
                loop.call_soon_threadsafe(self._drain_inbox)
        self._dispatcher.state().posted += 1

    def _key_of(self, event: object) -> Hashable | None:
        """The ordering key of *event*; remember classes whose events never have one."""
        if not isinstance(event, Event):
            self._keyless.add(type(event))
            return None
        cls = type(event)
        if cls.__eventbus_order_by__ is None and cls.ordering_key is Event.ordering_key:
            self._keyless.add(cls)  # no order_by= and no ordering_key of its own (as Message has)
            return None
        return event.ordering_key

    def _wait_for_room(self, timeout: float | None) -> None:
        # Called on another thread with the lock held.
        self._room_threads += 1
        try:
            wait_for_room(
                self._room,
                lambda: self._waiting + len(self._inbox) >= self.max_queued,
                lambda: self._closed,
                timeout,
                self.max_queued,
            )
        finally:
            self._room_threads -= 1

    def forget(self, subscriber: Subscriber) -> None:
        """Wait, from another thread, until no lane is inside one of *subscriber*'s handlers.

        On the loop it does not wait (that would block the loop): a call already
        in progress finishes; queued calls are skipped all the same.
        """
        if _get_running_loop() is self._loop:
            return
        with self._lock:
            self._forgetting += 1
            try:
                while any(lane.owner is subscriber for lane in list(self._lane_states)):
                    self._forgotten.wait()
            finally:
                self._forgetting -= 1

    def join(self, timeout: float | None) -> bool:
        """Wait, on another thread, until every accepted event has been handled; `False` on timeout.

        Raises:
            RuntimeError: Called on the loop, which it would block (use ``await bus.ajoin()``).
        """
        if _get_running_loop() is self._loop:
            raise RuntimeError(
                "join() was called on the event loop of an asyncio bus; it would block the loop that delivers.\n"
                "Use `await bus.ajoin()` instead."
            )
        return self._wait_settled(timeout)

    def _wait_settled(self, timeout: float | None) -> bool:
        with self._lock:
            if not self._loop_can_run():
                return not (self._unfinished or self._inbox)
            self._joiners += 1
            try:
                self._settled.wait_for(lambda: not (self._unfinished or self._inbox) or self._abandoned, timeout)
            finally:
                self._joiners -= 1
            return not (self._unfinished or self._inbox)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Stop intake; on another thread (and if *wait*), wait for the accepted events.

        On the loop it cannot wait: it stops intake and returns at once, and the
        lanes deliver the rest and end (``await bus.ashutdown()`` waits). After a
        timeout the running handler calls are cancelled.
        """
        self._close_intake()
        loop = self._loop
        assert loop is not None
        if not wait or _get_running_loop() is loop:
            return not (self._unfinished or self._inbox)
        done = self._wait_settled(timeout)
        if not done and self._loop_can_run():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._start_force_stop)
        return done

    def counts(self) -> tuple[int, int]:
        """Return (events waiting to start, events started and not finished)."""
        return self._waiting + len(self._inbox), self._running

    # -- awaitable counterparts (used by EventBus.apost/ajoin/ashutdown) ---------------

    async def wait_for_room(self, timeout: float | None) -> bool:
        """Wait until fewer than ``max_queued`` events wait; `False` if *timeout* passed first.

        Raises:
            BusClosedError: The bus was shut down meanwhile.
        """
        loop = self.loop
        if _get_running_loop() is not loop:
            return await _on_loop(loop, self.wait_for_room(timeout))
        try:
            async with asyncio.timeout(timeout):
                while self._waiting + len(self._inbox) >= self.max_queued and not self._closed:
                    future = loop.create_future()
                    self._room_futures.append(future)
                    try:
                        await future
                    except asyncio.CancelledError:
                        if future.done() and not future.cancelled():
                            self._wake_room()  # we were woken, but will not use the room: pass it on
                        raise
        except TimeoutError:
            return False
        if self._closed:
            raise _closed_error(self._name)
        return True

    async def ajoin(self, timeout: float | None) -> bool:
        """Wait until every accepted event has been handled, without blocking the loop.

        Raises:
            RuntimeError: Awaited from one of this bus's handlers, which would wait for itself.
        """
        loop = self.loop
        if _get_running_loop() is not loop:
            return await _on_loop(loop, self.ajoin(timeout))
        if _LANE.get() is self:
            raise RuntimeError(
                "ajoin() was awaited in a handler running on the same bus; it would wait for itself.\n"
                "Await the delivery of the events you posted (await bus.publish(event)) instead."
            )
        return await self._settle(timeout)

    async def ashutdown(self, timeout: float | None) -> bool:
        """Stop intake, deliver everything accepted, and end the lanes; `True` if all was delivered.

        Handler calls still running after *timeout* seconds are cancelled and
        awaited; events not started by then are not delivered (their `Delivery`
        handles fail with `BusClosedError`), and that is logged.
        """
        loop = self.loop
        if _get_running_loop() is not loop:
            return await _on_loop(loop, self.ashutdown(timeout))
        self._close_intake()
        if _LANE.get() is self:
            return not (self._unfinished or self._inbox)  # from a handler: cannot wait for itself
        if not await self._settle(timeout):
            await self._force_stop()
            return False
        lanes = list(self._lanes)
        if lanes:
            await asyncio.gather(*lanes, return_exceptions=True)
        return True

    async def _settle(self, timeout: float | None) -> bool:
        if self._inbox:
            self._drain_inbox()
        if not self._unfinished:
            return True
        future = self.loop.create_future()
        self._join_futures.append(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            return False
        return not (self._unfinished or self._inbox)

    # -- intake and the run queue (on the loop) -------------------------------------------

    def _loop_can_run(self) -> bool:
        loop = self._loop
        return loop is not None and not loop.is_closed() and loop.is_running()

    def _drain_inbox(self) -> None:
        with self._lock:
            jobs, self._inbox = self._inbox, []
            self._inbox_scheduled = False
            self._waiting += len(jobs)
            self._unfinished += len(jobs)
        for job in jobs:
            self._push(job)

    def _push(self, item: _Work | _Line) -> None:
        if type(item) is tuple:
            key = item[3]
            if key is not None:
                line = self._keys.get(key)
                if line is not None:
                    line.append(item)
                    return
                self._keys[key] = deque()
        self._runq.append(item)
        self._wake_one()

    def _add_lane(self) -> None:
        state = _LaneState()
        self._lane_states.append(state)
        # A context of its own: a lane must not carry the contextvars of the post that started it.
        task = self.loop.create_task(
            self._lane(state), name=f"{self._name}-lane-{len(self._lane_states)}", context=contextvars.Context()
        )
        self._lanes.add(task)
        task.add_done_callback(self._lane_done)

    def _wake_room(self) -> None:
        futures = self._room_futures
        while futures:
            future = futures.popleft()
            if not future.done():
                future.set_result(None)
                return

    def _room_made(self) -> None:
        # Fewer events wait now: wake one thread or coroutine waiting for room.
        if self._room_threads:
            with self._lock:
                self._room.notify()
        if self._room_futures:
            self._wake_room()

    def _close_intake(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._room.notify_all()
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _get_running_loop() is loop:
            self._after_close()
        else:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self._after_close)

    def _after_close(self) -> None:
        for future in self._room_futures:
            _set_if_pending(future)
        self._room_futures.clear()
        if not (self._unfinished or self._inbox):
            self._stop_lanes()

    def _stop_lanes(self) -> None:
        self._stopping = True
        for future in self._idle:
            _set_if_pending(future)
        self._idle.clear()

    # -- the lanes -------------------------------------------------------------------------

    async def _lane(self, me: _LaneState) -> None:
        _LANE.set(self)
        dispatcher = self._dispatcher
        assert dispatcher is not None
        state = dispatcher.state()
        call = dispatcher.call
        runq = self._runq
        streak = 0
        while not self._cancelling:
            if not runq:
                if self._stopping:
                    return
                streak = 0
                future = self.loop.create_future()
                self._idle.append(future)
                await future
                continue
            item = runq.popleft()
            if type(item) is not tuple:
                assert isinstance(item, _Line)
                await self._run_line(item, me, state)
                continue
            # One event: its handlers in order. This is the hot path, written out
            # in one piece (no coroutine per event or per call but the handler's).
            self._waiting -= 1
            self._running += 1
            if self._room_threads or self._room_futures:
                self._room_made()
            event, handlers, delivery, key = item
            job: _Job | None = None  # made when a call is parked
            position = 0
            try:
                for position, sub in enumerate(handlers):
                    line: _Line | None = None
                    if not sub.binding.thread_safe:
                        line = cast("_Line | None", sub.owner.lane)
                        if line is None:
                            line = self._new_line(sub.owner)
                        if line.busy:
                            if job is None:
                                job = _Job(event, handlers, delivery, key)
                            self._park(line, sub, job, position)
                            continue
                        line.busy = True
                    # Say which subscriber this lane is in *before* the active check, so that
                    # unregister() on another thread either sees us here or we see it inactive.
                    me.owner = sub.owner
                    if not sub.binding.is_async:
                        call(sub, event, delivery, position, state, reraise=False)
                    else:
                        coroutine = sub.target.__wrapped__  # Subscription.coroutine, inlined
                        if sub.plain and delivery is None:
                            try:
                                await coroutine(event)
                            except BaseException as exc:
                                self._failed(exc, sub, event, None, position, state)
                            else:
                                state.delivered += 1
                        else:
                            await self._call_async(sub, coroutine, event, delivery, position, state)
                    me.owner = None
                    if self._forgetting:
                        self._notify_forgotten()
                    if line is not None:
                        if line.calls:
                            self._push(line)  # stays busy: the lane that takes it drains it
                        else:
                            line.busy = False
            except asyncio.CancelledError:
                if delivery is not None:  # the handler being awaited settled; the later ones will not run
                    for skipped in range(position + 1, len(handlers)):
                        delivery._settle(skipped, error=self._not_run(handlers[skipped]))
                raise
            if job is not None:
                job.pending -= 1
                if job.pending:
                    key = _PARTS_LEFT  # its parked calls finish it
            if key is None:  # the hot path: _finish() written out
                self._running -= 1
                self._unfinished -= 1
                if not self._unfinished:
                    self._settled_now()
            elif key is not _PARTS_LEFT:
                self._finish(key)
            streak += 1
            if streak >= _FAIRNESS:
                streak = 0
                await asyncio.sleep(0)

    def _new_line(self, owner: Subscriber) -> _Line:
        line = _Line()
        owner.lane = line
        self._lines.add(line)
        return line

    def _park(self, line: _Line, sub: Subscription, job: _Job, position: int) -> None:
        line.calls.append((sub, job, position))
        job.pending += 1
        job.parked += 1
        if job.parked == 1:  # the event waits again, now for its parked call(s)
            self._waiting += 1

    async def _run_line(self, line: _Line, me: _LaneState, state: ThreadState) -> None:
        streak = 0
        while line.calls:
            sub, job, position = line.calls.popleft()
            job.parked -= 1
            if not job.parked:
                self._waiting -= 1
                if self._room_threads or self._room_futures:
                    self._room_made()
            me.owner = sub.owner
            coroutine = sub.coroutine
            if coroutine is None:
                assert self._dispatcher is not None
                self._dispatcher.call(sub, job.event, job.delivery, position, state, reraise=False)
            else:
                await self._call_async(sub, coroutine, job.event, job.delivery, position, state)
            me.owner = None
            if self._forgetting:
                self._notify_forgotten()
            job.pending -= 1
            if not job.pending:
                self._finish(job.key)
            streak += 1
            if streak >= _FAIRNESS and line.calls:
                streak = 0
                await asyncio.sleep(0)
        line.busy = False

    async def _call_async(
        self,
        sub: Subscription,
        coroutine: Callable[[Any], Awaitable[object]],
        event: object,
        delivery: Delivery | None,
        position: int,
        state: ThreadState,
    ) -> None:
        # Dispatcher.call's error policy, for a handler that is awaited.
        try:
            if not sub.active or (sub.when is not None and not sub.when(event)):
                if delivery is not None:
                    delivery._settle(position)
                return
            value = await coroutine(event)
        except BaseException as exc:
            self._failed(exc, sub, event, delivery, position, state)
            return
        state.delivered += 1
        if delivery is not None:
            delivery._settle(position, value)

    def _failed(
        self,
        exc: BaseException,
        sub: Subscription,
        event: object,
        delivery: Delivery | None,
        position: int,
        state: ThreadState,
    ) -> None:
        state.failed += 1
        assert self._dispatcher is not None
        self._dispatcher.report(exc, sub, event)
        if delivery is not None:
            exc.add_note(f"raised by handler {sub.name} for topic {topic_of(event)!r}")
            delivery._settle(position, error=exc)
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if self._cancelling or (task is not None and task.cancelling()):
                raise exc  # the lane itself is being cancelled (shutdown timeout, loop teardown)

    def _notify_forgotten(self) -> None:
        with self._lock:
            self._forgotten.notify_all()

    def _finish(self, key: Hashable | None) -> None:
        # An event (with ordering key *key*) has reached every handler.
        self._running -= 1
        self._unfinished -= 1
        if key is not None:
            line = self._keys[key]
            if line:
                self._runq.append(line.popleft())
                if self._idle or len(self._lanes) < self.workers:
                    self._wake_one()
            else:
                del self._keys[key]
        if not self._unfinished:
            self._settled_now()

    def _settled_now(self) -> None:
        # Every accepted event has been handled.
        if self._inbox:
            return  # more are on their way from other threads
        if self._joiners:
            with self._lock:
                self._settled.notify_all()
        for future in self._join_futures:
            _set_if_pending(future)
        self._join_futures.clear()
        if self._closed:
            self._stop_lanes()

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            future = idle.pop()
            if not future.done():
                future.set_result(None)
                return
        if len(self._lanes) < self.workers and not self._stopping and not self._cancelling:
            self._add_lane()

    def _lane_done(self, task: asyncio.Task[None]) -> None:
        self._lanes.discard(task)
        if task.cancelled():
            if not self._cancelling and self._unfinished and not self._abandoned:
                self._abandoned = True  # say it once, not once per lane
                logger.error(
                    "%s: the event loop cancelled a delivery task with %d event(s) not yet handled; "
                    "await bus.ashutdown() (or use `async with bus:`) before the loop ends",
                    self._name,
                    self._unfinished,
                )
            return
        exc = task.exception()
        if exc is not None:  # pragma: no cover - a bug in eventbus itself
            logger.critical("%s: a delivery task hit an internal error", self._name, exc_info=exc)

    # -- shutdown after a timeout ------------------------------------------------------------

    def _start_force_stop(self) -> None:
        self.loop.create_task(self._force_stop())

    async def _force_stop(self) -> None:
        self._cancelling = True
        lanes = list(self._lanes)
        for task in lanes:
            task.cancel()
        if lanes:
            await asyncio.gather(*lanes, return_exceptions=True)
        self._abandon()

    def _not_run(self, sub: Subscription) -> BusClosedError:
        return BusClosedError(f"{self._name} was shut down (its timeout ran out) before handler {sub.name} ran")

    def _abandon(self) -> None:
        """Settle what will never run after a shutdown timeout, and say so."""
        with self._lock:
            jobs: list[_Work] = list(self._inbox)
            self._inbox.clear()
            self._abandoned = True
            self._settled.notify_all()
        jobs.extend(item for item in self._runq if type(item) is tuple)
        self._runq.clear()
        for waiting in self._keys.values():
            jobs.extend(waiting)
        self._keys.clear()
        calls = 0
        for _event, handlers, delivery, _key in jobs:
            if delivery is not None:
                for index, sub in enumerate(handlers):
                    delivery._settle(index, error=self._not_run(sub))
        for line in list(self._lines):
            for sub, job, position in line.calls:
                calls += 1
                if job.delivery is not None:
                    job.delivery._settle(position, error=self._not_run(sub))
            line.calls.clear()
            line.busy = False
        for future in self._join_futures:
            _set_if_pending(future)
        self._join_futures.clear()
        if jobs or calls or self._unfinished:
            logger.error(
                "%s: shut down before everything was delivered: %d event(s) not started, "
                "%d handler call(s) not made; the handler calls in progress were cancelled",
                self._name,
                len(jobs),
                calls,
            )


async def _on_loop(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, _T]) -> _T:
    """Await *coro* on *loop* (another thread's) from the running loop."""
    return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))


# ---------------------------------------------------------------------------------------------
# EventBus.apost / ajoin / ashutdown on any strategy
# ---------------------------------------------------------------------------------------------


async def apost(post: Callable[..., None], strategy: object, event: object, data: Any, timeout: float | None) -> None:
    """Post with ``post(event, data, timeout=0)``, awaiting room (without blocking the loop) while it is full."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.0005
    while True:
        try:
            post(event, data, timeout=0)
            return
        except QueueFullError:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(
                    f"the queue stayed full for {timeout} s; this event was not accepted.\n"
                    "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
                ) from None
        if isinstance(strategy, AsyncioDelivery):
            await strategy.wait_for_room(remaining)
        else:
            # The thread pools signal room to threads only; look again after a short nap.
            await asyncio.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, 0.02)


async def _in_thread(function: Callable[[], _T], name: str) -> _T:
    """Run a blocking *function* on a daemon thread and await its result.

    If the awaiting task is cancelled, the thread still finishes (its result is
    dropped); being a daemon, it never holds up the interpreter's exit.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[_T] = loop.create_future()

    def resolve(result: _T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast("_T", result))

    def target() -> None:
        result: _T | None = None
        error: BaseException | None = None
        try:
            result = function()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the awaiting loop is gone
            loop.call_soon_threadsafe(resolve, result, error)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future


async def ajoin(strategy: object, join: Callable[[float | None], bool], timeout: float | None, name: str) -> bool:
    """``await bus.ajoin()``: the strategy's own, or ``join`` on a helper thread."""
    if isinstance(strategy, AsyncioDelivery):
        return await strategy.ajoin(timeout)
    if join(0):  # done already; and on a pool's worker this raises, as join() does
        return True
    return await _in_thread(lambda: join(timeout), f"{name}-ajoin")


async def ashutdown(
    strategy: object, shutdown: Callable[[bool, float | None], bool], timeout: float | None, name: str
) -> bool:
    """``await bus.ashutdown()``: the strategy's own, or ``shutdown`` on a helper thread."""
    if isinstance(strategy, AsyncioDelivery):
        done = await strategy.ashutdown(timeout)
        return shutdown(False, None) and done  # the bus's own part: closed, loops and waiters released
    join = getattr(strategy, "join", None)
    if join is not None:
        try:
            join(0)
        except RuntimeError:  # on a worker of this bus: shutdown() does not wait there
            return shutdown(True, timeout)
    return await _in_thread(lambda: shutdown(True, timeout), f"{name}-ashutdown")
