"""The thread-pool strategies: `ConcurrentDelivery` and `OrderedDelivery`.

Both run handlers on a pool of daemon worker threads fed by one run queue; they
differ only in which events must keep their order:

- `ConcurrentDelivery` keeps per-key order for events that carry an ordering key
  (``order_by=`` on typed events, ``ordered=`` on `Message`) and runs the others
  in parallel;
- `OrderedDelivery` also keys the events without one, by their topic (or class),
  so every topic is a stream handled one event at a time.

How the parts fit:

*Key lines.* While an event with key *k* is being handled, later events with key
*k* wait in *k*'s line, not in the run queue; when the event has reached every
handler, the worker that finished it runs the next one in the line itself (no
hand-over to another thread). So events with one key run one at a time in the
order they were accepted, and different keys run in parallel on up to
``workers`` threads.

*Subscriber lines.* ``thread_safe=False`` handlers of one subscriber object share
a line. A worker that finds the subscriber busy leaves the call in its line and
moves on to the event's other handlers and to other events; the worker that
frees the subscriber hands the line to the run queue. So a slow subscriber holds
at most one worker, never the pool (the ancestor parked workers on a lock). An
event whose only handler is such a handler goes straight into the line (a
mailbox). Lines take no lock: see `_Line`.

*Backpressure.* At most ``max_queued`` accepted events wait to start. ``post``
blocks while that many wait, or raises `QueueFullError` when its ``timeout=``
runs out. A post made from a worker thread of the same bus is never blocked (it
may exceed ``max_queued``): a handler that waited for room would wait for the
very workers it occupies, and a bus whose handlers all post could deadlock.

*Lifetime.* Workers are daemon threads, so a process that never calls
``shutdown()`` still exits. At interpreter exit, every bus with undelivered
events (never shut down, or shut down with ``wait=False``) is drained for as
long as its workers make progress; only when no event has finished for
`EXIT_STALL_SECONDS` (a handler that hangs) does the interpreter exit without
the rest. ``shutdown()`` stops intake, lets the workers deliver everything
accepted, then stops them.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Final, cast

from ._dispatch import logger
from ._errors import BusClosedError
from ._events import ordering_key_of, topic_of
from ._room import wait_for_room

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._dispatch import Dispatcher, ThreadState
    from ._registry import Subscriber, Subscription

__all__ = ["EXIT_STALL_SECONDS", "ConcurrentDelivery", "OrderedDelivery"]

EXIT_STALL_SECONDS: Final = 5.0
"""At interpreter exit, give up draining once no event has finished for this long."""

_STOP: Final = object()  # put on the run queue once per worker to end it


class _KeyedWork:
    """The progress of one event that has an ordering key: its key is released at zero."""

    __slots__ = ("key", "pending")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.pending = 1  # the worker's pass over the handlers, plus one per call parked in a line


# An accepted event on its way through the pool: (event, handlers, delivery, keyed work or None).
_Job = tuple[object, tuple["Subscription", ...], "Delivery | None", _KeyedWork | None]
# A thread_safe=False call parked in its subscriber's line: (handler, event, delivery, position, keyed work).
_Parked = tuple["Subscription", object, "Delivery | None", int, _KeyedWork | None]


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` handler calls.

    It takes no lock of the pool's. Whoever holds `claim` is the line's only
    runner: a worker running one of its calls, or the worker it was handed to
    through the run queue. A poster appends its call and then tries the claim
    without blocking: if it gets it, the line was idle and it puts the line on
    the run queue; if not, the holder will run the call. A runner that finds
    `calls` empty releases the claim and then looks once more, so a call appended
    just before the release is never left behind: either the runner sees it and
    takes the claim back, or the poster's own try succeeds.
    """

    __slots__ = ("calls", "claim")

    def __init__(self) -> None:
        self.calls: deque[_Parked] = deque()
        self.claim = threading.Lock()


def _check_positive_int(name: str, value: object) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


class _RunQueue:
    """The pool's FIFO of work, which wakes a sleeping worker only if one sleeps.

    `queue.SimpleQueue` hands every put to a waiting getter, so with fast handlers
    all the workers cycle through sleep and wake-up for each event and fight over
    the GIL. Here a put wakes one sleeper only when there is one, and workers that
    are awake keep taking what accumulates, so the number of busy workers follows
    the load. ``deque.append``/``popleft`` and ``list.append``/``pop`` are atomic
    under the GIL; each worker sleeps on its own lock (its *gate*).
    """

    __slots__ = ("_items", "_sleepers")

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._sleepers: list[threading.Lock] = []

    def put(self, item: object) -> None:
        """Append *item*; wake one sleeping worker, if any."""
        self._items.append(item)
        if self._sleepers:
            try:
                gate = self._sleepers.pop()
            except IndexError:  # another put woke the last sleeper first
                return
            gate.release()

    def get(self, gate: threading.Lock) -> object:
        """Take the next item, sleeping on *gate* (held by the caller) while there is none."""
        items, sleepers = self._items, self._sleepers
        while True:
            try:
                return items.popleft()
            except IndexError:
                pass
            sleepers.append(gate)
            if items:  # an item arrived between the look and the announcement
                try:
                    sleepers.remove(gate)
                except ValueError:  # a put() already took us off the list and will release us
                    gate.acquire()
                continue
            gate.acquire()  # sleep until a put() releases the gate

    def __len__(self) -> int:
        return len(self._items)


class _ThreadPoolDelivery:
    """The machinery shared by `ConcurrentDelivery` and `OrderedDelivery`.

    The hot path takes no lock of ours: a post appends to a `_RunQueue` and a
    worker takes from it, both atomic under the GIL, and the counters that
    `join` and ``stats()`` need are per thread (`ThreadState.submitted` and
    ``finished``), each written only by its own thread. Work is counted in
    *units*: an accepted event is one unit until a worker's pass over its
    handlers ends, and a call parked in a subscriber's line is one more unit
    until it returns. Subscriber lines take no lock either (see `_Line`);
    ``_lock`` guards the rarer structures: key lines, the creation of a line,
    and the conditions that blocked callers wait on.

    ``max_queued`` bounds the units waiting to start: the events in the run
    queue (not the subscriber lines there), ``_held`` (events waiting in key
    lines) and the calls parked in subscriber lines, counted by ``_parked``.
    ``_parked`` and ``_queued_lines`` are deques used as counters: ``append``,
    ``pop`` and ``len`` are atomic under the GIL, so the lines need no lock. A
    poster appends a ``_parked`` token before it appends its call, and a worker
    pops one just before the call starts, so the count never runs low. With one
    posting thread the bound is exact; posts racing on several threads may each
    pass the check at once, so it can be exceeded by at most one event per
    concurrent poster.
    """

    _key_of: Callable[[object], Hashable | None]

    def __init__(self, *, workers: int = 8, max_queued: int = 10_000) -> None:
        _check_positive_int("workers", workers)
        _check_positive_int("max_queued", max_queued)
        self.workers = workers
        """The number of worker threads."""
        self.max_queued = max_queued
        """How many accepted events may wait to start before ``post`` blocks."""
        self._dispatcher: Dispatcher | None = None
        self._runq = _RunQueue()
        self._items = self._runq._items  # its deque, for len() on the hot path
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # posts waiting for max_queued to let them in
        self._settled = threading.Condition(self._lock)  # join()/shutdown() waiting for every unit to finish
        self._forgotten = threading.Condition(self._lock)  # unregister() waiting for running calls to end
        self._held = 0  # events waiting in key lines (under _lock)
        self._parked: deque[None] = deque()  # one token per call parked in a subscriber line
        self._queued_lines: deque[None] = deque()  # one token per subscriber line in the run queue
        self._room_waiters = 0  # posts blocked for room (workers notify only when someone waits)
        self._joiners = 0  # join()/shutdown() calls waiting for every unit to finish
        self._keys: dict[Hashable, deque[_Job]] = {}  # key -> jobs waiting behind the active one
        self._closed = False
        self._stopped = False  # _STOP has been sent to the workers
        self._threads: list[threading.Thread] = []
        self._worker_ids: dict[int, int] = {}  # thread ident -> worker index
        self._calling: list[Subscriber | None] = []  # worker index -> subscriber whose handler it is calling
        self._forgetting = 0  # unregister() calls in progress

    # -- protocol ----------------------------------------------------------------------

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher and start the worker threads."""
        if self._dispatcher is not None:
            raise RuntimeError(f"this {type(self).__name__} already serves a bus; give each bus its own strategy")
        self._dispatcher = dispatcher
        self._local = dispatcher.local
        self._calling = [None] * self.workers
        name = getattr(dispatcher.bus, "name", "eventbus")
        for index in range(self.workers):
            thread = threading.Thread(target=self._work, args=(index,), name=f"{name}-worker-{index}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()
        _open_pools.add(self)

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Queue *event* for the workers, waiting for room if ``max_queued`` units wait."""
        key = self._key_of(event)
        try:
            state: ThreadState = self._local.state
        except AttributeError:
            assert self._dispatcher is not None, "start() was not called"
            state = self._dispatcher.state()
        # Count the unit *before* looking at _closed: a shutdown() that starts now
        # then waits for it, and if we find the bus closed we take it back.
        state.submitted += 1
        try:
            if self._closed:
                raise BusClosedError("the bus was shut down before this event was accepted; it was not delivered")
            if key is None:
                # No lock: the room check (_waiting(), inlined) reads counters that only
                # posts raise, so with one posting thread what it sees can only grow
                # roomier, and subscriber lines are lock-free (see _Line).
                if len(self._items) - len(self._queued_lines) + self._held + len(self._parked) >= self.max_queued:
                    self._wait_for_room(timeout)
                state.posted += 1
                if len(handlers) == 1 and not handlers[0].binding.thread_safe:
                    # One thread_safe=False handler: the event goes straight into its
                    # subscriber's line (a mailbox), and only the worker serving that line
                    # touches it, instead of one worker parking it for another.
                    sub = handlers[0]
                    line = sub.owner.lane
                    if line is None:
                        line = self._new_line(sub.owner)
                    assert isinstance(line, _Line)
                    self._parked.append(None)
                    line.calls.append((sub, event, delivery, 0, None))
                    if line.claim.acquire(False):
                        self._queue_line(line)
                else:
                    self._runq.put((event, handlers, delivery, None))
                return
            job: _Job = (event, handlers, delivery, _KeyedWork(key))
            with self._lock:
                if self._waiting() >= self.max_queued:
                    self._wait_for_room(timeout, locked=True)
                state.posted += 1
                line = self._keys.get(key)
                if line is not None:
                    line.append(job)
                    self._held += 1
                    return
                self._keys[key] = deque()
            self._runq.put(job)
        except BaseException:
            state.submitted -= 1
            if self._joiners:
                with self._lock:
                    self._settled.notify_all()
            raise

    def _queue_line(self, line: _Line) -> None:
        # The caller holds line.claim, which passes to the worker that takes the line.
        self._queued_lines.append(None)
        self._runq.put(line)

    def _release_line(self, line: _Line) -> None:
        # The caller holds line.claim and is done running: hand the line on if calls
        # wait in it, else let it go and look once more (see _Line).
        claim = line.claim
        while True:
            if line.calls:
                self._queue_line(line)
                return
            claim.release()
            if not (line.calls and claim.acquire(False)):
                return

    def _new_line(self, owner: Subscriber) -> _Line:
        with self._lock:  # two posts may meet the subscriber's first call at once
            line = owner.lane
            if line is None:
                line = owner.lane = _Line()
        assert isinstance(line, _Line)
        return line

    def _wait_for_room(self, timeout: float | None, *, locked: bool = False) -> None:
        if threading.get_ident() in self._worker_ids:
            return  # a handler posting into a full bus is let in: waiting could deadlock the pool
        if not locked:
            with self._lock:
                self._wait_for_room(timeout, locked=True)
            return
        self._room_waiters += 1
        try:
            wait_for_room(
                self._room, lambda: self._waiting() >= self.max_queued, lambda: self._closed, timeout, self.max_queued
            )
        finally:
            self._room_waiters -= 1

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no worker is inside one of *subscriber*'s handlers.

        Called from a handler (on a worker) it does not wait: two handlers
        unregistering each other's subscribers would otherwise wait for each other.
        """
        if threading.get_ident() in self._worker_ids:
            return
        with self._lock:
            self._forgetting += 1
            try:
                while any(owner is subscriber for owner in self._calling):
                    self._forgotten.wait()
            finally:
                self._forgetting -= 1

    def join(self, timeout: float | None) -> bool:
        """Wait until every accepted event has reached all its handlers; `False` on timeout.

        Raises:
            RuntimeError: Called from a handler running on this bus, which would wait for itself.
        """
        if threading.get_ident() in self._worker_ids:
            raise RuntimeError(
                "join() was called from a handler running on the same bus; it would wait for itself.\n"
                "Use publish() and a done-callback, or join from outside the bus."
            )
        with self._lock:
            return self._wait_settled(timeout)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Stop intake, let the workers deliver everything accepted, then stop them.

        Called from one of this bus's handlers it cannot wait for the event being
        handled: it stops intake and returns `False` at once, and the workers
        finish the rest.
        """
        with self._lock:
            self._closed = True
            self._room.notify_all()  # posts waiting for room now fail with BusClosedError
            self._stop_if_idle()
        if not wait or threading.get_ident() in self._worker_ids:
            return self._unfinished() == 0
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            done = self._wait_settled(timeout)
        if done:
            for thread in self._threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        return done

    def _unfinished(self) -> int:
        # Read the finished counts *before* the submitted ones: both only grow and a
        # unit is submitted before it finishes, so a zero means that at the moment
        # the finished counts were read, every unit submitted had finished.
        assert self._dispatcher is not None
        finished, submitted = self._dispatcher.sums("finished", "submitted")
        return submitted - finished

    def _waiting(self) -> int:
        # Units not yet started: events in the run queue (not the lines there), events in
        # key lines and calls parked in subscriber lines.
        waiting = len(self._items) - len(self._queued_lines) + self._held + len(self._parked)
        return waiting if waiting > 0 else 0

    def _finished_total(self) -> int:
        assert self._dispatcher is not None
        return self._dispatcher.sums("finished")[0]

    def _wait_settled(self, timeout: float | None) -> bool:
        # Called with the lock held; workers notify after finishing a unit while
        # _joiners is set (they bump their count first, then look at _joiners).
        self._joiners += 1
        try:
            ok = self._settled.wait_for(lambda: self._unfinished() == 0, timeout)
            self._stop_if_idle()
            return ok
        finally:
            self._joiners -= 1

    def counts(self) -> tuple[int, int]:
        """Return (units waiting to start, units started and not finished)."""
        waiting = self._waiting()
        unfinished = self._unfinished()
        waiting = min(waiting, unfinished)
        return waiting, unfinished - waiting

    # -- the workers --------------------------------------------------------------------

    def _work(self, index: int) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        self._worker_ids[threading.get_ident()] = index
        state = dispatcher.state()
        get = self._runq.get
        calling = self._calling
        gate = threading.Lock()
        gate.acquire()  # held while this worker runs; released by a put() to wake it
        while True:
            item = get(gate)
            try:
                if self._room_waiters:
                    with self._lock:
                        self._room.notify()
                if type(item) is tuple:
                    event, handlers, delivery, keyed = item
                    if delivery is None and keyed is None and all(sub.fast for sub in handlers):
                        # The hot path, inline: thread-safe, unfiltered handlers of an
                        # unkeyed, unpublished event (see _call and _finish for the rest).
                        for sub in handlers:
                            calling[index] = sub.owner  # before the check: see _call
                            if not sub.fast:  # unregistered since the look above
                                continue
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                state.failed += 1
                                dispatcher.report(exc, sub, event)
                            else:
                                state.delivered += 1
                        calling[index] = None
                        state.finished += 1
                        if self._forgetting or self._joiners or self._closed:
                            with self._lock:
                                self._forgotten.notify_all()
                                self._settled.notify_all()
                                self._stop_if_idle()
                        continue
                    job: _Job | None = item
                    while job is not None:  # a keyed event's successor follows on this worker
                        job = self._run_job(job, index, state)
                elif item is _STOP:
                    return
                else:
                    assert isinstance(item, _Line)
                    self._run_line(item, index, state)
            except BaseException as exc:  # never let a worker die; this is a bug in eventbus itself
                logger.critical("eventbus worker %d hit an internal error", index, exc_info=exc)

    def _run_job(self, job: _Job, index: int, state: ThreadState) -> _Job | None:
        event, handlers, delivery, keyed = job
        for position, sub in enumerate(handlers):
            if sub.binding.thread_safe:
                self._call(sub, event, delivery, position, index, state)
                continue
            line = sub.owner.lane
            if line is None:
                line = self._new_line(sub.owner)
            assert isinstance(line, _Line)
            if not line.calls and line.claim.acquire(False):
                # The subscriber is idle: run the call here, then hand on what arrived meanwhile.
                self._call(sub, event, delivery, position, index, state)
                self._release_line(line)
                continue
            # Park the call (one more unit) for the line's runner, or take the line to
            # the run queue if it was let go meanwhile.
            state.submitted += 1
            if keyed is not None:
                with self._lock:
                    keyed.pending += 1
            self._parked.append(None)
            line.calls.append((sub, event, delivery, position, keyed))
            if line.claim.acquire(False):
                self._queue_line(line)
        return self._finish(keyed, state, keep=True)

    def _run_line(self, line: _Line, index: int, state: ThreadState) -> None:
        # This worker took the line from the run queue, and its claim with it: run the
        # parked calls until none is left, then let the line go (see _Line).
        self._queued_lines.pop()
        calls, parked, claim = line.calls, self._parked, line.claim
        while True:
            try:
                sub, event, delivery, position, keyed = calls.popleft()
            except IndexError:
                claim.release()
                if calls and claim.acquire(False):
                    continue  # a call arrived just before the release, and its poster missed the claim
                return
            parked.pop()  # the call starts: it no longer waits
            if self._room_waiters:
                with self._lock:
                    self._room.notify()
            self._call(sub, event, delivery, position, index, state)
            self._finish(keyed, state)

    def _call(
        self, sub: Subscription, event: object, delivery: Delivery | None, position: int, index: int, state: ThreadState
    ) -> None:
        # Publish which subscriber this worker is in *before* checking sub.active,
        # so that unregister() either sees us here or we see the handler inactive.
        calling = self._calling
        calling[index] = sub.owner
        if delivery is None and sub.plain:
            try:
                sub.func(sub.target, event)
            except BaseException as exc:
                state.failed += 1
                assert self._dispatcher is not None
                self._dispatcher.report(exc, sub, event)
            else:
                state.delivered += 1
        else:
            assert self._dispatcher is not None
            self._dispatcher.call(sub, event, delivery, position, state, reraise=False)
        calling[index] = None
        if self._forgetting:
            with self._lock:
                self._forgotten.notify_all()

    def _finish(self, keyed: _KeyedWork | None, state: ThreadState, *, keep: bool = False) -> _Job | None:
        # One unit is done: release its key when its event is complete, then count it.
        # The key's next event goes to the run queue, or with *keep* back to the caller,
        # a worker that then runs it at once instead of handing it to another thread.
        following: _Job | None = None
        if keyed is not None:
            with self._lock:
                keyed.pending -= 1
                if not keyed.pending:
                    line = self._keys[keyed.key]
                    if line:
                        following = line.popleft()
                        self._held -= 1
                        if not keep:
                            self._runq.put(following)
                            following = None
                        elif self._room_waiters:  # it starts now: one waiting unit fewer
                            self._room.notify()
                    else:
                        del self._keys[keyed.key]
        state.finished += 1  # after the key is released: join() must not see the unit done before
        if self._joiners or self._closed:
            with self._lock:
                self._settled.notify_all()
                self._stop_if_idle()
        return following

    def _stop_if_idle(self) -> None:
        # Called with the lock held: once closed and idle, end the workers.
        if self._closed and not self._stopped and self._unfinished() == 0:
            self._stopped = True
            _open_pools.discard(self)  # nothing left for the exit drain
            for _ in self._threads:
                self._runq.put(_STOP)


class ConcurrentDelivery(_ThreadPoolDelivery):
    """Deliver on ``workers`` threads; keep order only among events with an ordering key.

    Guarantees:

    - events without an ordering key may be handled in parallel and in any order;
    - events with the same ordering key are handled one at a time, in the order
      they were accepted (each reaches all its handlers before the next starts);
    - the handlers of one event are started in priority order, except that a call
      to a ``thread_safe=False`` subscriber that is busy elsewhere waits in that
      subscriber's line while the worker goes on with the lower-priority handlers;
    - a ``thread_safe=False`` handler never runs twice at once for one subscriber
      object (all such handlers of the object share one waiting line), and waiting
      for it never parks a worker; ``thread_safe=True`` handlers run in parallel.

    Args:
        workers: The number of worker threads.
        max_queued: How many accepted events may wait to start before ``post`` blocks.
    """

    _key_of = staticmethod(ordering_key_of)


def _ordered_key(event: object) -> Hashable:
    key = ordering_key_of(event)
    if key is not None:
        return key
    topic = topic_of(event)
    cls: Hashable = cast("Hashable", type(event))
    return topic if topic is not None else cls


class OrderedDelivery(_ThreadPoolDelivery):
    """Deliver on ``workers`` threads, one event at a time per ordering key.

    An event's key is its ordering key, or else its topic (or, for plain
    objects, its class). Events with the same key are handled one at a time in
    the order they were accepted; different keys run in parallel on up to
    ``workers`` threads. No polling: an event posted on an idle bus starts at
    once. ``thread_safe`` means what it means for `ConcurrentDelivery`.

    Args:
        workers: The number of worker threads (parallel lanes).
        max_queued: How many accepted events may wait to start before ``post`` blocks.
    """

    _key_of = staticmethod(_ordered_key)


# A plain set, not a WeakSet: a pool's worker threads keep it alive until it stops
# (when _stop_if_idle discards it) anyway, and a mypyc-compiled class takes no weak references.
_open_pools: set[_ThreadPoolDelivery] = set()


def _drain_at_exit() -> None:
    # Deliver what open buses accepted before the interpreter goes away: wait as
    # long as events keep finishing, but never hang on a handler that does not return.
    pools = list(_open_pools)
    for pool in pools:
        pool.shutdown(wait=False, timeout=None)
    progress, last_progress = -1, time.monotonic()
    while True:
        pending = [pool for pool in pools if pool._unfinished()]
        if not pending:
            return
        finished = sum(pool._finished_total() for pool in pending)
        now = time.monotonic()
        if finished != progress:
            progress, last_progress = finished, now
        elif now - last_progress >= EXIT_STALL_SECONDS:
            return
        with pending[0]._lock:
            pending[0]._wait_settled(0.05)


atexit.register(_drain_at_exit)
