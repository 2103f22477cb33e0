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
handler, the next one in the line moves to the run queue. So events with one key
run one at a time in the order they were accepted, and different keys run in
parallel on up to ``workers`` threads.

*Subscriber lines.* ``thread_safe=False`` handlers of one subscriber object share
a line. A worker that finds the subscriber busy leaves the call in its line and
moves on to the event's other handlers and to other events; the worker that
frees the subscriber hands the line to the run queue. So a slow subscriber holds
at most one worker, never the pool (the ancestor parked workers on a lock).

*Backpressure.* At most ``max_queued`` accepted events wait to start. ``post``
blocks while that many wait, or raises `QueueFullError` when its ``timeout=``
runs out. A post made from a worker thread of the same bus is never blocked (it
may exceed ``max_queued``): a handler that waited for room would wait for the
very workers it occupies, and a bus whose handlers all post could deadlock.

*Lifetime.* Workers are daemon threads, so a process that never calls
``shutdown()`` still exits; at interpreter exit every bus that is still open is
drained for up to `EXIT_DRAIN_SECONDS`. ``shutdown()`` stops intake, lets the
workers deliver everything accepted, then stops them.
"""

from __future__ import annotations

import atexit
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Hashable
from queue import SimpleQueue
from typing import TYPE_CHECKING, Final, cast

from ._errors import BusClosedError, QueueFullError
from ._events import ordering_key_of, topic_of

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._dispatch import Dispatcher, ThreadState
    from ._registry import Subscriber, Subscription

__all__ = ["EXIT_DRAIN_SECONDS", "ConcurrentDelivery", "OrderedDelivery"]

EXIT_DRAIN_SECONDS: Final = 5.0
"""How long, in all, interpreter exit waits for open buses to deliver what they accepted."""

_STOP: Final = object()  # put on the run queue once per worker to end it


class _Job:
    """One accepted event on its way through the pool."""

    __slots__ = ("delivery", "event", "handlers", "key", "parked", "pending")

    def __init__(
        self, event: object, handlers: tuple[Subscription, ...], delivery: Delivery | None, key: Hashable | None
    ) -> None:
        self.event = event
        self.handlers = handlers
        self.delivery = delivery
        self.key = key
        self.pending = 1  # the worker's pass over the handlers, plus one per call left in a subscriber line
        self.parked = 0  # calls waiting in subscriber lines, not yet started


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` handler calls."""

    __slots__ = ("busy", "calls")

    def __init__(self) -> None:
        self.busy = False
        self.calls: deque[tuple[Subscription, _Job, int]] = deque()


def _check_positive_int(name: str, value: object) -> None:
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")


class _ThreadPoolDelivery:
    """The machinery shared by `ConcurrentDelivery` and `OrderedDelivery`."""

    _key_of: Callable[[object], Hashable | None]

    def __init__(self, *, workers: int = 8, max_queued: int = 10_000) -> None:
        _check_positive_int("workers", workers)
        _check_positive_int("max_queued", max_queued)
        self.workers = workers
        """The number of worker threads."""
        self.max_queued = max_queued
        """How many accepted events may wait to start before ``post`` blocks."""
        self._dispatcher: Dispatcher | None = None
        self._runq: SimpleQueue[object] = SimpleQueue()
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)  # producers waiting for max_queued to allow them
        self._settled = threading.Condition(self._lock)  # join()/shutdown() waiting for unfinished == 0
        self._forgotten = threading.Condition(self._lock)  # unregister() waiting for running calls to end
        self._waiting = 0  # events with handler calls not yet started (counts against max_queued)
        self._running = 0  # events taken by a worker, not finished
        self._unfinished = 0  # events accepted, not finished
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
        self._posted_here = dispatcher.state
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
        """Queue *event* for the workers, waiting for room if ``max_queued`` events wait."""
        key = self._key_of(event)
        job = _Job(event, handlers, delivery, key)
        with self._lock:
            if self._closed:
                raise BusClosedError("the bus was shut down before this event was accepted; it was not delivered")
            if self._waiting >= self.max_queued and threading.get_ident() not in self._worker_ids:
                self._wait_for_room(timeout)
            self._waiting += 1
            self._unfinished += 1
            self._posted_here().posted += 1
            if key is not None:
                line = self._keys.get(key)
                if line is not None:
                    line.append(job)
                    return
                self._keys[key] = deque()
        self._runq.put(job)

    def _wait_for_room(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._waiting >= self.max_queued:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(
                    f"{self.max_queued} events are already waiting and no room came within {timeout} s; "
                    "this event was not accepted.\n"
                    "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
                )
            self._room.wait(remaining)
            if self._closed:
                raise BusClosedError("the bus was shut down while this post waited for room; it was not accepted")

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no other worker is inside one of *subscriber*'s handlers."""
        me = self._worker_ids.get(threading.get_ident())
        with self._lock:
            self._forgetting += 1
            try:
                while any(owner is subscriber and index != me for index, owner in enumerate(self._calling)):
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
            return self._settled.wait_for(lambda: not self._unfinished, timeout)

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
        _open_pools.discard(self)
        if not wait or threading.get_ident() in self._worker_ids:
            with self._lock:
                return not self._unfinished
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            done = self._settled.wait_for(lambda: not self._unfinished, timeout)
        if done:
            for thread in self._threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        return done

    def counts(self) -> tuple[int, int]:
        """Return (events waiting to start, events started and not finished)."""
        with self._lock:
            return self._waiting, self._running

    # -- the workers --------------------------------------------------------------------

    def _work(self, index: int) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        self._worker_ids[threading.get_ident()] = index
        state = dispatcher.state()
        get = self._runq.get
        while True:
            item = get()
            if item is _STOP:
                return
            try:
                if type(item) is _Job:
                    self._run_job(item, index, dispatcher, state)
                else:
                    assert isinstance(item, _Line)
                    self._run_line(item, index, dispatcher, state)
            except BaseException as exc:  # never let a worker die; this is a bug in eventbus itself
                from ._dispatch import logger

                logger.critical("eventbus worker %d hit an internal error", index, exc_info=exc)

    def _run_job(self, job: _Job, index: int, dispatcher: Dispatcher, state: ThreadState) -> None:
        with self._lock:
            self._waiting -= 1
            self._running += 1
            if self._waiting < self.max_queued:
                self._room.notify()
        event, delivery, calling = job.event, job.delivery, self._calling
        for position, sub in enumerate(job.handlers):
            if not sub.thread_safe:
                owner = sub.owner
                with self._lock:
                    line = owner.lane
                    if line is None:
                        line = owner.lane = _Line()
                    assert isinstance(line, _Line)
                    if line.busy:
                        line.calls.append((sub, job, position))
                        job.pending += 1
                        job.parked += 1
                        if job.parked == 1:  # the event waits again, now for its parked call(s)
                            self._waiting += 1
                        continue
                    line.busy = True
                self._call(sub, event, delivery, position, index, dispatcher, state, calling)
                with self._lock:
                    if line.calls:
                        self._runq.put(line)  # the line stays busy: the worker that takes it drains it
                    else:
                        line.busy = False
            else:
                self._call(sub, event, delivery, position, index, dispatcher, state, calling)
        self._finish_part(job)

    def _run_line(self, line: _Line, index: int, dispatcher: Dispatcher, state: ThreadState) -> None:
        calling = self._calling
        while True:
            with self._lock:
                if not line.calls:
                    line.busy = False
                    return
                sub, job, position = line.calls.popleft()
                job.parked -= 1
                if not job.parked:
                    self._waiting -= 1
                    self._room.notify()
            self._call(sub, job.event, job.delivery, position, index, dispatcher, state, calling)
            self._finish_part(job)

    def _call(
        self,
        sub: Subscription,
        event: object,
        delivery: Delivery | None,
        position: int,
        index: int,
        dispatcher: Dispatcher,
        state: ThreadState,
        calling: list[Subscriber | None],
    ) -> None:
        # Publish which subscriber this worker is in *before* the call checks
        # sub.active, so unregister() either sees us here or we see it inactive.
        calling[index] = sub.owner
        dispatcher.call(sub, event, delivery, position, state, reraise=False)
        calling[index] = None
        if self._forgetting:
            with self._lock:
                self._forgotten.notify_all()

    def _finish_part(self, job: _Job) -> None:
        with self._lock:
            job.pending -= 1
            if job.pending:
                return
            self._running -= 1
            self._unfinished -= 1
            if job.key is not None:
                line = self._keys[job.key]
                if line:
                    self._runq.put(line.popleft())
                else:
                    del self._keys[job.key]
            if not self._unfinished:
                self._settled.notify_all()
                self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        # Called with the lock held: once closed and idle, end the workers.
        if self._closed and not self._stopped and not self._unfinished:
            self._stopped = True
            for _ in self._threads:
                self._runq.put(_STOP)


class ConcurrentDelivery(_ThreadPoolDelivery):
    """Deliver on ``workers`` threads; keep order only among events with an ordering key.

    Guarantees:

    - events without an ordering key may be handled in parallel and in any order;
    - events with the same ordering key are handled one at a time, in the order
      they were accepted (each reaches all its handlers before the next starts);
    - the handlers of one event are started in priority order;
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


_open_pools: weakref.WeakSet[_ThreadPoolDelivery] = weakref.WeakSet()


def _drain_at_exit() -> None:
    # Deliver what open buses accepted before the interpreter goes away, but never hang.
    deadline = time.monotonic() + EXIT_DRAIN_SECONDS
    for pool in list(_open_pools):
        pool.shutdown(wait=True, timeout=max(0.0, deadline - time.monotonic()))


atexit.register(_drain_at_exit)
