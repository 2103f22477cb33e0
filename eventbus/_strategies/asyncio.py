"""The asyncio strategy: ``EventBus(strategy="asyncio")``.

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

The loop often runs on the main thread, where Ctrl-C lands: every step of the
strategy is written so that a `KeyboardInterrupt` raised anywhere on the loop
leaves each accepted event delivered exactly once, when the loop runs again
(see "Interrupts" below, and issue 10).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Final, TypeVar, cast, final

from .._checks import check_positive_int
from .._delivery import SKIPPED, set_if_pending
from .._dispatch import GIL_DISABLED, logger
from .._errors import BusClosedError, QueueFullError
from .._events import Event, topic_of

if TYPE_CHECKING:
    from .._delivery import Delivery
    from .._dispatch import Dispatcher, ThreadState
    from .._registry import Subscriber, Subscription

__all__ = ["AsyncioDelivery"]

_T = TypeVar("_T")

# asyncio's own low-level "which loop runs on this thread" (in asyncio.events.__all__).
_get_running_loop: Final = asyncio._get_running_loop

# ---------------------------------------------------------------------------------------------
# The asyncio strategy
# ---------------------------------------------------------------------------------------------
#
# Interrupts (issue 10). The loop often runs on the main thread, so a signal handler (Ctrl-C's
# KeyboardInterrupt) may raise at any "eval-breaker" point of the code that runs on it: when a
# call returns, at the start of a Python function, at a loop's back edge; never between plain
# attribute loads and stores, ``+= 1`` on ints, comparisons or subscript stores. Every state
# change below is therefore written as an *atomic pair*: plain stores (markers, counters)
# followed directly by ONE C-level call that commits (``deque.append``, ``popleft``...). An
# interrupt raised after that call returns finds both done; one raised before it finds neither.
#
# A lane records what it holds in its `_LaneState` (the event it delivers and how far it got,
# the subscriber line it holds, a key it is handing on). A lane that an exception kills (an
# interrupt landing in its code, a KeyboardInterrupt or SystemExit from a handler, ``on_error``
# or a done-callback, which propagate out of the loop like any callback's) is *retired*: its
# state is put back (the event resumes at the next handler on another lane, the line and the key
# are passed on) by `_recover`, which is idempotent and retried until it completes. Asyncio's own
# scheduling code can lose a callback to such an interrupt (a task's wake-up, our inbox drain),
# so nothing waits for one without a bound: a watchdog looks every `_WATCH_PERIOD` s while work
# is pending (drains the inbox, replaces lanes that died or whose wake-up was lost, wakes lanes
# for queued work, tells waiters), and every waiter looks again at least every `_WAIT_SLICE` s.

_LANE: Final[contextvars.ContextVar[object]] = contextvars.ContextVar("eventbus_lane", default=None)
"""Set, inside a lane task, to the `AsyncioDelivery` it serves."""

_FAIRNESS: Final = 64
"""Handler calls a lane makes in a row before it lets the rest of the loop run."""

_WATCH_PERIOD: Final = 0.05
"""Seconds between two looks of the watchdog while work is pending."""

_WAIT_SLICE: Final = 0.05
"""The longest a wait that relies on a wake-up sleeps before it looks again."""

_NO_KEY: Final[Any] = object()  # _LaneState.release when no key is being handed on


def _unfinished(sealed: list[_Gen], newest: _Gen) -> list[_Gen]:
    # A function of its own: a comprehension directly under `with self._lock:` would let an
    # interrupt skip the lock's release on CPython 3.13 (see tests/test_interrupt_shapes.py).
    return [g for g in sealed if not g.done() or g is newest]


class _Gen:
    """The events accepted between two ``join()`` calls: a join waits for the older ones only.

    Each counter has one writer: ``local`` and ``finished`` the loop, ``remote`` the
    posting threads under the strategy's lock; a reader sees each grow monotonically.
    """

    __slots__ = ("finished", "local", "remote", "sealed")

    def __init__(self) -> None:
        self.local = 0  # accepted on the loop
        self.remote = 0  # accepted on other threads
        self.finished = 0  # finished (either kind)
        self.sealed = False  # a join waits for it: no event is added any more

    def done(self) -> bool:
        return self.finished >= self.local + self.remote  # read `finished` first: it only grows


_Work = tuple[object, "tuple[Subscription, ...]", "Delivery | None", "Hashable | None", _Gen]
"""An accepted event on its way through the lanes: (event, handlers, delivery, ordering key, generation)."""


class _Job:
    """An event with calls parked in subscriber lines: counts its unfinished parts."""

    __slots__ = ("delivery", "event", "gen", "handlers", "key", "parked", "pending")

    def __init__(self, work: _Work) -> None:
        self.event, self.handlers, self.delivery, self.key, self.gen = work
        self.pending = 1  # the lane's pass over the handlers, plus one per call parked in a subscriber line
        self.parked = 0  # calls waiting in subscriber lines, not yet started


class _Keyed:
    """An accepted event with an ordering key, on the run queue (a lane claims the key first)."""

    __slots__ = ("work",)

    def __init__(self, work: _Work) -> None:
        self.work = work


class _Resume:
    """An event to continue from handler *position* (it owns its ordering key already)."""

    __slots__ = ("job", "position", "started", "work")

    def __init__(self, work: _Work, position: int, job: _Job | None, started: bool) -> None:
        self.work = work
        self.position = position
        self.job = job
        self.started = started  # counted as running (no longer waiting)


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` calls."""

    __slots__ = ("__weakref__", "busy", "calls")

    def __init__(self) -> None:
        self.busy = False
        self.calls: deque[tuple[Subscription, _Job, int]] = deque()


class _LaneState:
    """What one lane holds, so that another can take over if it dies (and for ``unregister()``)."""

    __slots__ = (
        "error",
        "handoff",
        "item",
        "job",
        "line",
        "lost",
        "owner",
        "parked",
        "pcall",
        "position",
        "release",
        "started",
        "suspect",
        "task",
    )

    def __init__(self) -> None:
        self.owner: Subscriber | None = None  # whose handler runs now (read by forget())
        self.item: _Work | None = None  # the event being delivered
        self.position = 0  # its next handler: the ones before have been called (or parked)
        self.job: _Job | None = None
        self.started = True  # item counted as running (False only while its key is being claimed)
        self.line: _Line | None = None  # a subscriber line this lane holds busy
        self.pcall: tuple[Subscription, _Job, int] | None = None  # a parked call taken from `line`
        self.error: BaseException | None = None  # what the handler in progress raised
        self.release: Hashable | None = _NO_KEY  # an ordering key to hand on
        self.handoff: _Resume | None = None  # the next event of that key, on its way to the run queue
        self.parked: object = self  # what the lane awaits inside the bus (a future, or a yield marker)
        self.suspect: object = None  # `parked` as the watchdog saw it last time, when it could go on
        self.task: asyncio.Task[None] | None = None
        self.lost = False  # retired: if the task ever runs again, it ends


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
    - ``join()``/``await bus.ajoin()`` wait for the events accepted before the
      call, not for those posted meanwhile;
    - ``await bus.ashutdown(timeout)`` delivers everything accepted; handler
      calls still running when the timeout is up are cancelled and awaited.

    Posts made by the bus's own handlers are never refused for lack of room (they
    may exceed ``max_queued``), since a handler waiting for room would wait for
    the lanes it occupies.

    Interrupts: a `KeyboardInterrupt` or `SystemExit` raised on the loop inside a
    handler, ``on_error``, a done-callback, or the bus's own code propagates out
    of the loop (out of ``loop.run_until_complete()``), as any callback's does,
    after the bus has accounted for it: the handler call counts as failed, the
    event's other handlers still run, exactly once, when the loop runs again.
    An interrupt inside ``post()`` leaves the event accepted whole or not at all.

    ``unregister()`` from another thread waits for a handler call of that
    subscriber in progress only while the loop runs: a call suspended in a loop
    that has stopped (or closed) cannot progress, so it does not wait for it; the
    subscriber receives nothing more either way.

    After ``os.fork()`` the child cannot use the parent's loop (asyncio does not
    support that); in the child, the bus refuses posts with `BusClosedError`
    saying to create a new bus on a new loop, and ``join()``/``shutdown()``
    return at once.

    Args:
        loop: The loop to deliver on; by default the loop running when the bus is
            created.
        workers: How many handler calls may be in progress at once (lanes).
        max_queued: How many accepted events may wait to start.
    """

    __slots__ = (
        "__weakref__",
        "_abandoned",
        "_cancelling",
        "_closed",
        "_dispatcher",
        "_forgetting",
        "_forgotten",
        "_forked",
        "_gen",
        "_idle",
        "_inbox",
        "_inbox_scheduled",
        "_inbox_since",
        "_join_futures",
        "_joiners",
        "_keyless",
        "_keys",
        "_lane_states",
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
        "_sealed",
        "_settled",
        "_stopping",
        "_unfinished",
        "_waiting",
        "_watch_due",
        "_watch_token",
        "max_queued",
        "workers",
    )

    def __init__(
        self, *, loop: asyncio.AbstractEventLoop | None = None, workers: int = 8, max_queued: int = 10_000
    ) -> None:
        check_positive_int("workers", workers)
        check_positive_int("max_queued", max_queued)
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
        self._closed = False
        self._forked = False  # this is a forked child's copy: the loop is the parent's
        self._fresh_state()

    def _fresh_state(self) -> None:
        # Shared with other threads, under the lock: the inbox of their posts, and
        # the counts of threads waiting on the conditions.
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # other threads waiting for room
        self._settled = threading.Condition(self._lock)  # other threads in join()/shutdown()
        self._forgotten = threading.Condition(self._lock)  # other threads in unregister()
        self._inbox: list[_Work | _Keyed] = []  # accepted on other threads, not yet on the loop's side
        self._inbox_scheduled = False
        self._inbox_since = 0.0  # when the pending drain was scheduled (time.monotonic)
        self._room_threads = 0
        self._joiners = 0
        self._forgetting = 0
        self._gen = _Gen()  # the generation new events join
        self._sealed: list[_Gen] = []  # generations some join waits for
        # Written on the loop only (other threads read them; each waiter counts itself
        # under the lock before it looks, the loop notifies after it writes, and every
        # wait is bounded, so a lost wake-up costs latency only):
        self._waiting = 0  # events on the loop's side not started (or waiting for a parked call)
        self._running = 0  # events started and not finished
        self._unfinished = 0  # events on the loop's side not finished
        self._runq: deque[_Work | _Keyed | _Resume | _Line] = deque()
        self._keys: dict[Hashable, deque[_Work]] = {}  # ordering keys in use: the events waiting for each
        self._lines: weakref.WeakSet[_Line] = weakref.WeakSet()
        self._idle: list[asyncio.Future[None]] = []
        self._lane_states: list[_LaneState] = []
        self._room_futures: deque[asyncio.Future[None]] = deque()
        self._join_futures: list[asyncio.Future[None]] = []
        self._watch_due = 0.0  # loop time of the next watchdog look (0: not armed)
        self._watch_token: object = None
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
                raise self._forked_error() if self._forked else _closed_error(self._name)
            if self._waiting >= self.max_queued and _LANE.get() is not self:
                raise QueueFullError(
                    f"{self.max_queued} events are already waiting; this event was not accepted.\n"
                    "A post on the event loop never waits for room: use `await bus.apost(event)` to wait, "
                    "or raise max_queued."
                )
            state = self._loop_state
            if state is None:
                assert self._dispatcher is not None, "start() was not called"
                state = self._loop_state = self._dispatcher.state()
            gen = self._gen
            key = None if type(event) in self._keyless else self._key_of(event)
            work = (event, handlers, delivery, key, gen)
            item = work if key is None else _Keyed(work)
            # The accepted point: counters, then the one call that commits (an interrupt
            # can land only after it returns, and then finds the event accepted whole).
            gen.local += 1
            self._waiting += 1
            self._unfinished += 1
            state.posted += 1
            self._runq.append(item)
            # If an interrupt skips this wake-up, the watchdog (or the next post) wakes a lane.
            if self._idle or len(self._lane_states) < self.workers:
                self._wake_one()
            return
        self._submit_from_thread(event, handlers, delivery, timeout)

    def _submit_from_thread(
        self, event: object, handlers: tuple[Subscription, ...], delivery: Delivery | None, timeout: float | None
    ) -> None:
        loop = self._loop
        assert loop is not None, "start() was not called"
        assert self._dispatcher is not None, "start() was not called"
        state = self._dispatcher.state()
        key = None if type(event) in self._keyless else self._key_of(event)
        with self._lock:
            if self._closed:
                raise self._forked_error() if self._forked else _closed_error(self._name)
            if loop.is_closed():
                raise BusClosedError(
                    f"the event loop of {self._name} is closed, so it can deliver nothing more; "
                    "this event was not accepted.\n"
                    "Shut the bus down (await bus.ashutdown()) before its loop ends."
                )
            if self._waiting + len(self._inbox) >= self.max_queued:
                self._wait_for_room(timeout)
            schedule = not self._inbox_scheduled
            now = 0.0
            if not schedule:
                # A drain is pending; if it has been for long, its callback may have been lost
                # to an interrupt on the loop's thread: schedule another (a spare one is harmless).
                now = time.monotonic()
                schedule = now - self._inbox_since > _WAIT_SLICE
            if schedule:
                # Before the accepted point: an interrupt here leaves a spare drain, no event.
                loop.call_soon_threadsafe(self._drain_inbox)
                now = now or time.monotonic()
            gen = self._gen
            work = (event, handlers, delivery, key, gen)
            item = work if key is None else _Keyed(work)
            # The accepted point (under the lock, which the drain takes too).
            if schedule:
                self._inbox_scheduled = True
                self._inbox_since = now
            gen.remote += 1
            state.posted += 1
            self._inbox.append(item)

    def _forked_error(self) -> BusClosedError:
        return BusClosedError(
            f"{self._name} delivers on an event loop of the parent process, which cannot run after os.fork(); "
            "this event was not accepted.\n"
            "Create a new event loop and a new EventBus in the child."
        )

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
        # Called on another thread with the lock held. Bounded waits: the loop's
        # notify may be lost to an interrupt on its thread.
        deadline = None if timeout is None else time.monotonic() + timeout
        self._room_threads += 1
        try:
            while True:
                if self._waiting + len(self._inbox) < self.max_queued:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise QueueFullError(
                        f"{self.max_queued} events are already waiting and no room came within {timeout} s; "
                        "this event was not accepted.\n"
                        "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
                    )
                self._room.wait(_WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE))
                if self._closed:
                    raise BusClosedError("the bus was shut down while this post waited for room; it was not accepted")
        finally:
            self._room_threads -= 1

    def forget(self, subscriber: Subscriber) -> None:
        """Wait, from another thread, until no lane is inside one of *subscriber*'s handlers.

        It waits only while the loop runs: a call suspended in a loop that has
        stopped or closed cannot progress, so waiting for it could last forever
        (issue 10). The subscriber is inactive already, so it receives nothing
        more; a suspended call goes on if the loop runs again. On the loop it does
        not wait (that would block the loop): a call already in progress finishes.
        """
        if _get_running_loop() is self._loop:
            return
        if GIL_DISABLED and self._loop_can_run():
            # Without the GIL, the lane's "owner, then active" and our "inactive, then owner"
            # need a fence: one round trip through the loop orders them (a lane step that read
            # the subscriber as active has finished, and stored its owner, before the trip's
            # callback runs).
            passed = threading.Event()
            try:
                self.loop.call_soon_threadsafe(passed.set)
            except RuntimeError:  # closed meanwhile: nothing runs there any more
                pass
            else:
                while not passed.wait(_WAIT_SLICE) and self._loop_can_run():
                    pass
        with self._lock:
            self._forgetting += 1
            try:
                while True:
                    if not any(lane.owner is subscriber for lane in list(self._lane_states)):
                        break
                    if not self._loop_can_run():
                        return
                    self._forgotten.wait(_WAIT_SLICE)
            finally:
                self._forgetting -= 1

    def join(self, timeout: float | None) -> bool:
        """Wait, on another thread, until the events accepted so far have been handled; `False` on timeout.

        Events posted after the call are not waited for (a producer that keeps
        posting does not hold ``join`` up).

        Raises:
            RuntimeError: Called on the loop, which it would block (use ``await bus.ajoin()``).
        """
        if _get_running_loop() is self._loop:
            raise RuntimeError(
                "join() was called on the event loop of an asyncio bus; it would block the loop that delivers.\n"
                "Use `await bus.ajoin()` instead."
            )
        gens = self._seal()
        return self._wait_from_thread(lambda: all(gen.done() for gen in gens), timeout)

    def _seal(self) -> list[_Gen]:
        """Start a new generation; return the ones a join made now waits for."""
        fresh = _Gen()
        with self._lock:
            gen = self._gen
            gen.sealed = True
            self._gen = fresh
            self._sealed.append(gen)  # the commit: sealed and listed together
            self._sealed = _unfinished(self._sealed, gen)
            return list(self._sealed)

    def _all_done(self) -> bool:
        return not (self._unfinished or self._inbox)

    def _wait_from_thread(self, done: Callable[[], bool], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._joiners += 1
            try:
                while True:
                    if done() or self._abandoned or self._forked:
                        break
                    if not self._loop_can_run():
                        break  # nothing will progress until the loop runs again
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    if not self._settled.wait(_WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE)):
                        self._kick()  # no news: make the loop look (a wake-up may have been lost)
            finally:
                self._joiners -= 1
            return done() or self._forked

    def _kick(self) -> None:
        # From another thread: have the loop repair what an interrupt may have left.
        loop = self._loop
        if loop is not None:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self._repair)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Stop intake; on another thread (and if *wait*), wait for the accepted events.

        On the loop it cannot wait: it stops intake and returns at once, and the
        lanes deliver the rest and end (``await bus.ashutdown()`` waits). After a
        timeout the running handler calls are cancelled.
        """
        self._close_intake()
        loop = self._loop
        assert loop is not None
        if self._forked:
            return True
        if not wait or _get_running_loop() is loop:
            return self._all_done()
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self._wait_from_thread(self._all_done, timeout)
        if not done and self._loop_can_run():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._start_force_stop)
        if done:
            # And the lanes have ended, so that the caller may stop the loop right after.
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wait_from_thread(lambda: not self._lane_states, remaining)
        return done

    def counts(self) -> tuple[int, int]:
        """Return (events waiting to start, events started and not finished)."""
        return self._waiting + len(self._inbox), self._running

    def after_fork_in_child(self) -> None:
        """Make the strategy consistent in a forked child (called on the forking thread).

        The loop belongs to the parent: asyncio cannot run it in the child (3.12+
        even forget which loop was running). So the child's copy drops what the
        parent accepted, holds no lock or task of the parent's, and refuses posts
        with `BusClosedError` (create a new loop and bus in the child); ``join``
        and ``shutdown`` return at once.
        """
        for lane in self._lane_states:
            lane.lost = True
        for line in list(self._lines):  # subscribers keep their line object: free it
            line.calls.clear()
            line.busy = False
        self._forked = True
        self._closed = True  # the strategy's intake; the bus's own closed flag is unchanged
        self._loop_state = None
        self._fresh_state()

    # -- awaitable counterparts (used by EventBus.apost/ajoin/ashutdown) ---------------

    async def wait_for_room(self, timeout: float | None) -> bool:
        """Wait until fewer than ``max_queued`` events wait; `False` if *timeout* passed first.

        Raises:
            BusClosedError: The bus was shut down meanwhile.
        """
        loop = self.loop
        if _get_running_loop() is not loop:
            return await _on_loop(loop, self.wait_for_room(timeout))
        deadline = None if timeout is None else loop.time() + timeout
        while self._waiting + len(self._inbox) >= self.max_queued and not self._closed:
            remaining = _WAIT_SLICE if deadline is None else min(deadline - loop.time(), _WAIT_SLICE)
            if remaining <= 0:
                return False
            future = loop.create_future()
            self._room_futures.append(future)
            try:
                async with asyncio.timeout(remaining):
                    await future
            except TimeoutError:
                self._repair()
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._wake_room()  # we were woken, but will not use the room: pass it on
                raise
        if self._closed:
            raise _closed_error(self._name)
        return True

    async def ajoin(self, timeout: float | None) -> bool:
        """Wait until the events accepted so far have been handled, without blocking the loop.

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
        self._drain_inbox()  # what other threads posted before the call joins this generation
        gens = self._seal()
        return await self._wait_on_loop(lambda: all(gen.done() for gen in gens), timeout)

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
            return self._all_done()  # from a handler: cannot wait for itself
        if not await self._wait_on_loop(self._all_done, timeout):
            await self._force_stop()
            return False
        self._stop_lanes()
        while self._lane_states:  # the lanes end once idle; bounded looks, in case one is lost
            tasks = {lane.task for lane in self._lane_states if lane.task is not None and not lane.task.done()}
            if tasks:
                await asyncio.wait(tasks, timeout=_WAIT_SLICE)
            else:
                await asyncio.sleep(_WAIT_SLICE)
            self._repair()
        return True

    async def _wait_on_loop(self, done: Callable[[], bool], timeout: float | None) -> bool:
        loop = self.loop
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if self._inbox:
                self._drain_inbox()
            if done():
                return True
            if self._abandoned:
                return done()
            remaining = _WAIT_SLICE if deadline is None else min(deadline - loop.time(), _WAIT_SLICE)
            if remaining <= 0:
                return False
            future = loop.create_future()
            self._join_futures.append(future)
            try:
                async with asyncio.timeout(remaining):
                    await future
            except TimeoutError:
                self._repair()

    # -- intake and the run queue (on the loop) -------------------------------------------

    def _loop_can_run(self) -> bool:
        loop = self._loop
        return loop is not None and not loop.is_closed() and loop.is_running()

    def _drain_inbox(self) -> None:
        with self._lock:
            jobs = self._inbox
            count = len(jobs)
            # The commit: the batch moves to the run queue with its counts, in one piece.
            self._inbox = []
            self._inbox_scheduled = False
            self._waiting += count
            self._unfinished += count
            self._runq.extend(jobs)
        if count:
            self._wake_lanes(count)

    def _wake_lanes(self, count: int) -> None:
        for _ in range(min(count, self.workers)):
            if not (self._idle or len(self._lane_states) < self.workers):
                break
            self._wake_one()

    def _wake_one(self) -> None:
        idle = self._idle
        while idle:
            future = idle[-1]
            if not future.done():
                future.set_result(None)
                idle.pop()
                break
            idle.pop()
        else:
            if len(self._lane_states) < self.workers and not (self._stopping or self._cancelling or self._abandoned):
                self._add_lane()
        due = self._watch_due
        if not due or due < self.loop.time() - 1.0:  # not armed, or its callback was lost
            self._arm()

    def _add_lane(self) -> None:
        lane = _LaneState()
        self._lane_states.append(lane)  # counted at once, so that no more than `workers` are made
        # A context of its own: a lane must not carry the contextvars of the post that started it.
        coroutine = self._lane(lane)
        try:
            task = self.loop.create_task(
                coroutine, name=f"{self._name}-lane-{len(self._lane_states)}", context=contextvars.Context()
            )
        except BaseException:
            coroutine.close()  # never started: no "never awaited" warning (the watchdog retires the lane)
            raise
        lane.task = task  # (if an interrupt skips this, the lane sets it when it starts)
        task.add_done_callback(functools.partial(self._lane_done, lane))

    def _arm(self) -> None:
        token = object()
        loop = self.loop
        loop.call_later(_WATCH_PERIOD, self._watch, token)
        self._watch_token = token
        self._watch_due = loop.time() + _WATCH_PERIOD

    def _watch(self, token: object) -> None:
        if token is not self._watch_token:
            return  # a spare chain (armed twice after an interrupt): let it end
        self._watch_due = 0.0
        self._repair()

    def _repair(self) -> None:
        """Look for what an interrupt may have left undone on the loop, and do it."""
        if self._forked:
            return
        if self._inbox:
            self._drain_inbox()
        for lane in list(self._lane_states):
            task = lane.task
            if task is not None and task.done():
                if task.cancelled():
                    self._retire(lane, None, replace=False)
                else:
                    self._retire(lane, task.exception())
                continue
            parked = lane.parked
            if parked is None or (isinstance(parked, asyncio.Future) and not parked.done()):
                lane.suspect = None
            elif lane.suspect is parked:  # could go on since the last look, and has not
                self._lose(lane)
            else:
                lane.suspect = parked
        if self._runq:
            self._wake_lanes(len(self._runq))
        if self._all_done() and self._closed:
            self._stop_lanes()
        self._progress()
        # Keep looking while work is pending or a lane is not idle (it may be lost).
        if self._unfinished or self._inbox or len(self._idle) < len(self._lane_states):
            due = self._watch_due
            if not due or due < self.loop.time() - 1.0:
                self._arm()

    def _lose(self, lane: _LaneState) -> None:
        # The lane's wake-up was lost (asyncio dropped a callback to an interrupt): it
        # will never run again. Take it off the books; a new lane takes its place.
        lane.lost = True
        task = lane.task
        if task is not None:
            task._log_destroy_pending = False  # type: ignore[attr-defined]  # it never ends, by no fault of its own
        # Hold it no more: unreferenced, it is freed and leaves asyncio.all_tasks(), so that
        # asyncio.run()'s final cancel-and-gather does not wait for a task that cannot run.
        lane.task = None
        self._retire(lane, None)

    def _progress(self) -> None:
        # Something finished: let every waiter look again at what it waits for.
        if self._joiners:
            with self._lock:
                self._settled.notify_all()
        futures = self._join_futures
        if futures:
            self._join_futures = []
            for future in futures:
                set_if_pending(future)

    def _wake_room(self) -> None:
        futures = self._room_futures
        while futures:
            future = futures[0]
            if not future.done():
                future.set_result(None)
                futures.popleft()
                return
            futures.popleft()

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
        if loop is None or loop.is_closed() or self._forked:
            return
        if _get_running_loop() is loop:
            self._after_close()
        else:
            with contextlib.suppress(RuntimeError):  # closed meanwhile
                loop.call_soon_threadsafe(self._after_close)

    def _after_close(self) -> None:
        for future in self._room_futures:
            set_if_pending(future)
        self._room_futures.clear()
        if self._all_done():
            self._stop_lanes()
        else:
            self._wake_one()  # arms the watchdog, which ends the lanes once all is delivered

    def _stop_lanes(self) -> None:
        self._stopping = True
        idle = self._idle
        while idle:
            set_if_pending(idle[-1])
            idle.pop()

    # -- the lanes -------------------------------------------------------------------------

    async def _lane(self, me: _LaneState) -> None:
        if me.lost:
            return  # retired before it started (its start looked lost)
        me.parked = None
        me.task = asyncio.current_task()
        _LANE.set(self)
        dispatcher = self._dispatcher
        assert dispatcher is not None
        state = dispatcher.state()
        runq = self._runq
        loop = self.loop
        streak = 0
        while not self._cancelling:
            if not runq:
                if self._stopping:
                    with contextlib.suppress(ValueError):  # retired already
                        self._lane_states.remove(me)
                    return
                streak = 0
                future = loop.create_future()
                me.parked = future
                self._idle.append(future)
                await future
                me.parked = None
                if me.lost:
                    return  # type: ignore[unreachable]  # mypy keeps `lost` narrowed across the await
                continue
            # Take the next item: record it in `me`, then the one call that commits.
            # (me.job is None and me.started True between events: both are reset
            # where they change, so the hot path does not store them.)
            item = runq[0]
            if type(item) is tuple:  # the hot path: an event without an ordering key
                work = item
                start = 0
                job = None
                me.item = work
                me.position = 0
                self._waiting -= 1
                self._running += 1
                runq.popleft()
            elif type(item) is _Keyed:
                work = item.work
                start = 0
                job = None
                me.item = work
                me.position = 0
                me.started = False
                runq.popleft()
                if not self._claim(me, work):
                    continue  # it waits behind the running event of its key
            elif type(item) is _Resume:
                started = item.started
                work = item.work
                start = item.position
                job = item.job
                me.item = work
                me.position = start
                me.job = job
                if not started:
                    self._waiting -= 1
                    self._running += 1
                runq.popleft()
            else:
                assert type(item) is _Line
                me.line = item  # it stays busy: this lane drains it
                runq.popleft()
                await self._run_line(item, me, state)
                if me.lost:
                    return  # type: ignore[unreachable]  # mypy keeps `lost` narrowed across the await
                continue
            if self._room_threads or self._room_futures:
                self._room_made()
            # One event: its handlers in order, from `start`. This is the hot path, written
            # out in one piece (no coroutine per event or per call but the handler's).
            event, handlers, delivery, key, gen = work
            for position, sub in enumerate(handlers if not start else handlers[start:], start):
                line: _Line | None = None
                if not sub.binding.thread_safe:
                    line = cast("_Line | None", sub.owner.strategy_slot)
                    if line is None:
                        line = self._new_line(sub.owner)
                    if line.busy:
                        if job is None:
                            job = me.job = _Job(work)
                        parked = (sub, job, position)
                        job.pending += 1
                        job.parked += 1
                        if job.parked == 1:  # the event waits again, now for its parked call(s)
                            self._waiting += 1
                        me.position = position + 1
                        line.calls.append(parked)  # the commit
                        continue
                    line.busy = True
                    me.line = line
                # Say which subscriber this lane is in *before* the active check, so that
                # unregister() on another thread either sees us here or we see it inactive.
                me.owner = sub.owner
                me.position = position + 1  # claimed: from here on the call counts as made
                if not sub.direct:
                    await self._call_filtered(me, sub, event, delivery, position, state)
                elif not sub.binding.is_async:
                    try:
                        value = sub.func(sub.target, event)
                    except BaseException as exc:
                        me.error = exc
                        self._failed(exc, sub, event, delivery, position, state)
                        me.error = None
                    else:
                        state.delivered += 1
                        if delivery is not None:
                            self._settle(delivery, position, value)
                else:
                    try:
                        value = await sub.target.__wrapped__(event)  # Subscription.coroutine, inlined
                    except BaseException as exc:
                        me.error = exc
                        self._failed(exc, sub, event, delivery, position, state)
                        me.error = None
                    else:
                        state.delivered += 1
                        if delivery is not None:
                            self._settle(delivery, position, value)
                me.owner = None
                if self._forgetting:
                    self._notify_forgotten()
                if line is not None:
                    me.line = None
                    if line.calls:
                        runq.append(line)  # stays busy: the lane that takes it drains it
                        if self._idle or len(self._lane_states) < self.workers:
                            self._wake_one()
                    else:
                        line.busy = False
            # The event has reached every handler (or parked its calls): finish it, in one piece.
            if job is None:
                me.item = None
                self._running -= 1
                self._unfinished -= 1
                gen.finished += 1
                if key is not None:
                    me.release = key
                    self._release(me)
                if not self._unfinished:
                    self._settled_now()
                elif gen.sealed and gen.done():
                    self._progress()
            else:
                self._finish_pass(me, job)
            streak += 1
            if streak >= _FAIRNESS:
                streak = 0
                me.parked = object()  # a yield: the watchdog sees if its wake-up is lost
                await asyncio.sleep(0)
                me.parked = None
                if me.lost:
                    return  # type: ignore[unreachable]  # mypy keeps `lost` narrowed across the await

    def _finish_pass(self, me: _LaneState, job: _Job) -> None:
        # The lane's pass over an event with parked calls is done: count it off, in one piece.
        if job.pending == 1:  # its parked calls are done too: the event is finished
            me.item = None
            me.job = None
            job.pending = 0
            self._running -= 1
            self._unfinished -= 1
            job.gen.finished += 1
            if job.key is not None:
                me.release = job.key
        else:
            me.item = None
            me.job = None
            job.pending -= 1  # its parked calls finish it
            return
        if me.release is not _NO_KEY:
            self._release(me)
        if not self._unfinished:
            self._settled_now()
        elif job.gen.sealed and job.gen.done():
            self._progress()

    async def _call_filtered(
        self,
        me: _LaneState,
        sub: Subscription,
        event: object,
        delivery: Delivery | None,
        position: int,
        state: ThreadState,
    ) -> None:
        # A handler that is filtered (when=) or was unregistered: Dispatcher.call's policy.
        try:
            if sub.active and ((when := sub.binding.when) is None or when(event)):
                coroutine = sub.coroutine
                value = sub.func(sub.target, event) if coroutine is None else await coroutine(event)
            else:
                value = SKIPPED
        except BaseException as exc:
            me.error = exc
            self._failed(exc, sub, event, delivery, position, state)
            me.error = None
            return
        if value is not SKIPPED:
            state.delivered += 1
        if delivery is not None:
            self._settle(delivery, position, value)

    def _claim(self, me: _LaneState, work: _Work) -> bool:
        """Make *work* (in ``me.item``) the running event of its key, or put it in the key's line."""
        key = work[3]
        waiting = self._keys.get(key)
        if waiting is not None:
            me.item = None
            me.started = True  # (the lane's resting value)
            waiting.append(work)  # the commit: it waits for the events of its key before it
            return False
        fresh: deque[_Work] = deque()
        me.started = True
        self._waiting -= 1
        self._running += 1
        self._keys[key] = fresh  # the commit (a subscript store: no interrupt between these)
        return True

    def _release(self, me: _LaneState) -> None:
        """Hand the key in ``me.release`` to its next event, or free it."""
        key = me.release
        waiting = self._keys.get(key)
        if waiting:
            resume = _Resume(waiting[0], 0, None, started=False)
            me.handoff = resume
            me.release = _NO_KEY
            waiting.popleft()  # the commit: the next event is in me.handoff
            me.handoff = None
            self._runq.append(resume)  # the commit
            if self._idle or len(self._lane_states) < self.workers:
                self._wake_one()
        else:
            me.release = _NO_KEY
            if waiting is not None:
                del self._keys[key]

    def _new_line(self, owner: Subscriber) -> _Line:
        line = _Line()
        owner.strategy_slot = line
        self._lines.add(line)
        return line

    async def _run_line(self, line: _Line, me: _LaneState, state: ThreadState) -> None:
        # me.line is *line*, which stays busy while this lane drains it.
        streak = 0
        while line.calls:
            parked = line.calls[0]
            sub, job, position = parked
            me.pcall = parked
            job.parked -= 1
            if not job.parked:
                self._waiting -= 1
            line.calls.popleft()  # the commit: the call is in me.pcall
            if self._room_threads or self._room_futures:
                self._room_made()
            event, delivery = job.event, job.delivery
            me.owner = sub.owner
            try:
                if sub.active and ((when := sub.binding.when) is None or when(event)):
                    coroutine = sub.coroutine
                    value = sub.func(sub.target, event) if coroutine is None else await coroutine(event)
                else:
                    value = SKIPPED
            except BaseException as exc:
                me.error = exc
                self._failed(exc, sub, event, delivery, position, state)
                me.error = None
            else:
                if value is not SKIPPED:
                    state.delivered += 1
                if delivery is not None:
                    self._settle(delivery, position, value)
            me.owner = None
            if self._forgetting:
                self._notify_forgotten()
            self._finish_call(me, job)
            streak += 1
            if streak >= _FAIRNESS and line.calls:
                streak = 0
                me.parked = object()
                await asyncio.sleep(0)
                me.parked = None
                if me.lost:
                    return  # retired meanwhile: the line went back to the run queue
        me.line = None
        line.busy = False

    def _finish_call(self, me: _LaneState, job: _Job) -> None:
        # A parked call (me.pcall) is done: count it off its event, in one piece.
        if job.pending == 1:
            me.pcall = None
            job.pending = 0
            self._running -= 1
            self._unfinished -= 1
            job.gen.finished += 1
            if job.key is not None:
                me.release = job.key
        else:
            me.pcall = None
            job.pending -= 1
            return
        if me.release is not _NO_KEY:
            self._release(me)
        if not self._unfinished:
            self._settled_now()
        elif job.gen.sealed and job.gen.done():
            self._progress()

    def _failed(
        self,
        exc: BaseException,
        sub: Subscription,
        event: object,
        delivery: Delivery | None,
        position: int,
        state: ThreadState,
    ) -> None:
        # Dispatcher.call's error policy, for a handler called by a lane. me.error holds *exc*
        # until the call is accounted for, so that a lane retired half way settles it.
        state.failed += 1
        assert self._dispatcher is not None
        hook_exc: BaseException | None = None
        try:
            self._dispatcher.report(exc, sub, event, reraise=True)
        except BaseException as raised:  # on_error's KeyboardInterrupt/SystemExit: after the bookkeeping
            hook_exc = raised
        if delivery is not None:
            exc.add_note(f"raised by handler {sub.name} for topic {topic_of(event)!r}")
            self._settle(delivery, position, error=exc)
        if isinstance(exc, asyncio.CancelledError):
            task = asyncio.current_task()
            if self._cancelling or (task is not None and task.cancelling()):
                raise exc  # the lane itself is being cancelled (shutdown timeout, loop teardown)
        elif not isinstance(exc, Exception):
            raise exc  # KeyboardInterrupt, SystemExit: out of the loop, as any callback's
        if hook_exc is not None:
            raise hook_exc

    def _settle(self, delivery: Delivery, index: int, value: Any = SKIPPED, error: BaseException | None = None) -> None:
        """Settle *delivery*'s handler *index*; its done-callbacks are user code.

        `Delivery._settle` does all its bookkeeping, runs every callback, and then
        re-raises a callback's non-`Exception`: a KeyboardInterrupt or SystemExit goes
        on out of the loop (the lane is retired and replaced, nothing is lost); a
        CancelledError that is not the lane's own cancellation is logged, since a
        callback cannot cancel the lane that happens to run it.
        """
        try:
            delivery._settle(index, value, error)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._cancelling or (task is not None and task.cancelling()):
                raise
            logger.exception("%s: a done-callback of %r raised CancelledError", self._name, delivery)

    def _notify_forgotten(self) -> None:
        with self._lock:
            self._forgotten.notify_all()

    def _settled_now(self) -> None:
        # Every accepted event has been handled.
        self._progress()
        if self._closed and not self._inbox:
            self._stop_lanes()

    # -- lanes that end, die or get lost ---------------------------------------------------

    def _lane_done(self, me: _LaneState, task: asyncio.Task[None]) -> None:
        if self._stopping and not self._lane_states:
            self._progress()  # the last lane has ended: shutdown() may return
        if me.lost:
            return
        if task.cancelled():
            if not self._cancelling and self._unfinished and not self._abandoned:
                self._abandoned = True  # say it once, not once per lane
                logger.error(
                    "%s: the event loop cancelled a delivery task with %d event(s) not yet handled; "
                    "await bus.ashutdown() (or use `async with bus:`) before the loop ends",
                    self._name,
                    self._unfinished,
                )
            self._retire(me, None, replace=False)  # the loop is ending its tasks: start none
            return
        exc = task.exception()  # retrieved: what killed it went out of the loop already
        self._retire(me, exc)

    def _retire(self, me: _LaneState, exc: BaseException | None, *, replace: bool = True) -> None:
        """Put back what lane *me* held and take it off the books; idempotent."""
        again: BaseException | None = None
        while True:
            try:
                self._recover(me, exc)
                break
            except BaseException as raised:  # a second interrupt: the recovery is idempotent, go on
                again = again or raised
        with contextlib.suppress(ValueError):  # retired already
            self._lane_states.remove(me)
        if me.parked in self._idle:
            self._idle.remove(me.parked)
        if replace and self._runq and not self._cancelling:
            self._wake_lanes(len(self._runq))
        if again is not None:
            raise again

    def _recover(self, me: _LaneState, exc: BaseException | None) -> None:
        # Each step clears its marker and commits in one piece, so a rerun skips what is done.
        me.owner = None
        runq = self._runq
        handoff = me.handoff
        if handoff is not None:
            me.handoff = None
            runq.append(handoff)
        if me.release is not _NO_KEY:
            self._release(me)
        pcall = me.pcall
        if pcall is not None:
            sub, job, position = pcall
            delivery = job.delivery
            if delivery is not None:  # idempotent: nothing changes if the call settled it already
                self._settle(delivery, position, error=me.error or self._interrupted(sub, exc))
            me.error = None
            self._finish_call(me, job)
        line = me.line
        if line is not None:
            me.line = None
            if line.calls:
                runq.append(line)
            else:
                line.busy = False
        work = me.item
        if work is not None:
            if me.started:
                handle = work[2]
                position = me.position
                lane_job = me.job
                if handle is not None and position > 0:
                    # Handler position-1 was claimed: settled, unless the lane died before it
                    # could (Delivery._settle is idempotent per handler, so this is safe).
                    claimed = work[1][position - 1]
                    self._settle(handle, position - 1, error=me.error or self._interrupted(claimed, exc))
                me.error = None
                resume = _Resume(work, position, lane_job, started=True)
                me.item = None
                me.job = None
                runq.appendleft(resume)  # the commit
            else:
                keyed = _Keyed(work)
                me.item = None
                me.job = None
                me.started = True
                runq.appendleft(keyed)  # not started (its key not claimed): as it was
        me.error = None

    def _interrupted(self, sub: Subscription, exc: BaseException | None) -> BaseException:
        return RuntimeError(f"the delivery to handler {sub.name} on {self._name} was interrupted by {exc!r}")

    # -- shutdown after a timeout ------------------------------------------------------------

    def _start_force_stop(self) -> None:
        self.loop.create_task(self._force_stop())

    async def _force_stop(self) -> None:
        self._cancelling = True
        lanes = list(self._lane_states)
        tasks = [lane.task for lane in lanes if lane.task is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)
        for lane in lanes:
            self._retire(lane, None)
        self._abandon()

    def _not_run(self, sub: Subscription) -> BusClosedError:
        return BusClosedError(f"{self._name} was shut down (its timeout ran out) before handler {sub.name} ran")

    def _abandon(self) -> None:
        """Settle what will never run after a shutdown timeout, and say so."""
        with self._lock:
            jobs: list[tuple[_Work, int]] = [
                (item.work if isinstance(item, _Keyed) else item, 0) for item in self._inbox
            ]
            self._inbox.clear()
            self._abandoned = True
            self._settled.notify_all()
        for item in self._runq:
            if type(item) is tuple:
                jobs.append((item, 0))
            elif type(item) is _Keyed:
                jobs.append((item.work, 0))
            elif type(item) is _Resume:
                jobs.append((item.work, item.position))
        self._runq.clear()
        for waiting in self._keys.values():
            jobs.extend((work, 0) for work in waiting)
        self._keys.clear()
        calls = 0
        for (_event, handlers, delivery, _key, _gen), start in jobs:
            if delivery is not None:
                for index in range(start, len(handlers)):
                    self._settle(delivery, index, error=self._not_run(handlers[index]))
        for line in list(self._lines):
            for sub, job, position in line.calls:
                calls += 1
                if job.delivery is not None:
                    self._settle(job.delivery, position, error=self._not_run(sub))
            line.calls.clear()
            line.busy = False
        self._progress()
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
