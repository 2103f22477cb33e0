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
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Final, TypeVar, final

from .._checks import check_positive_int
from .._context import LANES, in_handler, task_trace
from .._delivery import carrier, set_if_pending
from .._dispatch import GIL_DISABLED
from .._errors import BusClosedError, QueueFullError
from .._events import Event

if TYPE_CHECKING:
    from .._context import Pending
    from .._delivery import Delivery
    from .._dispatch import Dispatcher, ThreadState
    from .._registry import Subscriber, Subscription

from ._asyncio_lanes import _Lanes
from ._asyncio_recovery import _Recovery
from ._asyncio_state import (
    _LANE,
    _WAIT_SLICE,
    _closed_error,
    _Gen,
    _get_running_loop,
    _Keyed,
    _LaneState,
    _unfinished,
)

__all__ = ["AsyncioDelivery"]

_T = TypeVar("_T")


@final
class AsyncioDelivery(_Lanes, _Recovery):
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

    __slots__ = ()

    takes_traces: Final = True
    """`submit` takes each event's trace (#14); a traced event rides in a carrier `Delivery`."""

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

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None = None,
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
            here = state.trace  # lanes run on this thread: a lane's handler is found through task_trace
            marked = here.current
            if delivery is None and (
                trace is not None or (marked is not None and marked is not LANES) or task_trace.get() is not None
            ):
                delivery = carrier(event, len(handlers), trace, here, self._name)  # it travels with its trace (#14)
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
        self._submit_from_thread(event, handlers, delivery, timeout, trace)

    def _submit_from_thread(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None,
    ) -> None:
        loop = self._loop
        assert loop is not None, "start() was not called"
        assert self._dispatcher is not None, "start() was not called"
        state = self._dispatcher.state()
        if delivery is None and (trace is not None or in_handler(state.trace)):  # it travels with its trace (#14)
            delivery = carrier(event, len(handlers), trace, state.trace, self._name)
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
            return await asyncio.to_thread(self._room_from_thread, timeout)  # see _room_from_thread
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

    def _room_from_thread(self, timeout: float | None) -> bool:
        # ``wait_for_room`` awaited on another loop: wait as a posting thread does, in a
        # worker thread of that loop, so that its timeout holds even if the bus's loop
        # has stopped (a coroutine handed to a stopped loop would never start).
        with self._lock:
            try:
                self._wait_for_room(timeout)
            except QueueFullError:
                return False
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
            return await asyncio.to_thread(self.join, timeout)  # bounded even if the bus's loop stops
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
            return await asyncio.to_thread(self.shutdown, True, timeout)
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
