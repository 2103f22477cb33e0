"""The asyncio strategy under interrupts: the watchdog, retiring lanes, and the forced stop.

Part of `AsyncioDelivery` (see `_asyncio_state`).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from .._delivery import set_if_pending
from .._dispatch import logger
from .._errors import BusClosedError

if TYPE_CHECKING:
    from .._registry import Subscription

from ._asyncio_state import (
    _NO_KEY,
    _WATCH_PERIOD,
    _AsyncioState,
    _Keyed,
    _LaneState,
    _Resume,
    _Work,
)

__all__: list[str] = []  # private to the asyncio strategy

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


class _Recovery(_AsyncioState):
    """What keeps the lanes' promise when an interrupt or a stop cuts them short."""

    __slots__ = ()

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
