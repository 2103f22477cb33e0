"""The asyncio strategy's lanes: the long-lived tasks that call the handlers.

A lane takes an item off the run queue (an event, an event with an ordering key to claim, an
event to resume, or a subscriber line to serve) and calls the event's handlers in priority
order: a plain handler on the loop, an ``async def`` handler awaited inside the lane. A
``thread_safe=False`` handler whose subscriber is busy is parked in that subscriber's line,
and the lane goes on. What a lane holds is recorded in its `_LaneState` at every step, so that
`_asyncio_recovery` can hand it on if the lane dies. Part of `AsyncioDelivery` (see
`_asyncio_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, cast

from .._context import LANES, Slot, task_trace, trace_of
from .._delivery import SKIPPED
from .._dispatch import logger
from .._events import topic_of

if TYPE_CHECKING:
    from .._delivery import Delivery
    from .._dispatch import ThreadState
    from .._registry import Subscriber, Subscription

from ._asyncio_state import (
    _FAIRNESS,
    _LANE,
    _NO_KEY,
    _AsyncioState,
    _InFlight,
    _Keyed,
    _LaneState,
    _Line,
    _Resume,
    _Work,
)

__all__: list[str] = []  # private to the asyncio strategy


class _Lanes(_AsyncioState):
    """The lane tasks of `AsyncioDelivery`."""

    __slots__ = ()

    # -- the lanes -------------------------------------------------------------------------

    async def _lane(self, me: _LaneState) -> None:
        # While lanes run on a thread, a post made there looks for a handler's event in the
        # lane's own slot (task_trace), not only in the thread's (#14).
        assert self._dispatcher is not None
        here = self._dispatcher.state().trace
        here.lanes += 1
        if here.current is None:
            here.current = LANES
        try:
            await self._lane_loop(me)
        finally:
            here.lanes = max(here.lanes - 1, 0)
            if not here.lanes and here.current is LANES:
                here.current = None

    async def _lane_loop(self, me: _LaneState) -> None:
        if me.lost:
            return  # retired before it started (its start looked lost)
        me.parked = None
        me.task = asyncio.current_task()
        _LANE.set(self)
        dispatcher = self._dispatcher
        assert dispatcher is not None
        state = dispatcher.state()
        here = state.trace
        lane = Slot()  # what this lane handles now (#14): its handlers find it through task_trace
        task_trace.set(lane)
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
                lane.current = None  # an idle lane holds no event
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
            # The event's trace, or its bus until a handler reads its context (#14).
            mark = job.trace if job is not None else dispatcher if delivery is None else delivery._trace or dispatcher
            lane.current = mark
            if here.current is None:  # cleared while this loop was stopped (see _context.trace_of)
                here.current = LANES
            for position, sub in enumerate(handlers if not start else handlers[start:], start):
                line: _Line | None = None
                if not sub.binding.thread_safe:
                    line = cast("_Line | None", sub.owner.strategy_slot)
                    if line is None:
                        line = self._new_line(sub.owner)
                    if line.busy:
                        if job is None:
                            job = me.job = _InFlight(work)
                            job.trace = trace_of(lane)  # its parked calls run on other lanes: one context
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

    def _finish_pass(self, me: _LaneState, job: _InFlight) -> None:
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
        # A handler that is filtered (when=), was unregistered, or waited in its subscriber's
        # line: Dispatcher.call's policy. (The lane's hot path calls the others inline.)
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
        lane = task_trace.get()
        assert lane is not None, "run by a lane"
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
            lane.current = job.trace or self._dispatcher  # the parking lane's trace (#14)
            me.owner = sub.owner
            await self._call_filtered(me, sub, event, delivery, position, state)
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

    def _finish_call(self, me: _LaneState, job: _InFlight) -> None:
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
