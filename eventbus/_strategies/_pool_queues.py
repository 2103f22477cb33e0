"""The thread pools' queues: the run queue that feeds the workers, and the lines.

Lines hold work back until it may run: an ordering key's events, a busy subscriber's calls.

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
event whose only handler is such a handler becomes a mailbox entry in the line
(put there by the poster itself, or, from the main thread, by the worker that
takes the event). Lines take no lock: see `_Line`.

Used by `threaded` only. Nothing here takes a lock of the pool's: the run queue relies on
atomic ``deque``/``list`` operations and per-worker gates, a subscriber line on its claim
lock (see each class).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Final

from .._dispatch import logger

if TYPE_CHECKING:
    from .._delivery import Delivery
    from .._registry import Subscription

__all__: list[str] = []  # private to the thread pools

IDLE_WAKE_SECONDS: Final = 0.5
"""How long an idle worker sleeps before it looks at the run queue again on its own.

Workers are woken by the post that gives them work; this bound only matters when
that wake-up was lost: a ``KeyboardInterrupt`` that lands between a post taking a
sleeper off the list and releasing it, or (free-threaded CPython) a post and a
worker that miss each other. Then the event waits at most this long instead of
forever. Half a second costs an idle worker two wake-ups a second (a few
microseconds each: well under 0.01 % of a core for a default 8-worker bus).
"""

_STOP: Final = object()  # what the run queue hands a worker once the pool has stopped
_IDLE: Final = object()  # what it hands a worker that slept IDLE_WAKE_SECONDS for nothing


class _KeyedWork:
    """The progress of one event that has an ordering key: its key is released at zero."""

    __slots__ = ("key", "pending")

    def __init__(self, key: Hashable) -> None:
        self.key = key
        self.pending = 1  # the worker's pass over the handlers, plus one per call parked in a line


# An accepted event on its way through the pool:
# (event, handlers, delivery, keyed work or None, join phase 0 or 1).
_Unit = tuple[object, tuple["Subscription", ...], "Delivery | None", _KeyedWork | None, int]
# A thread_safe=False call parked in its subscriber's line:
# (handler, event, delivery, position, keyed work, join phase of its event).
_Parked = tuple["Subscription", object, "Delivery | None", int, _KeyedWork | None, int]


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` handler calls.

    Only threads that receive no signals touch a line: workers, and posts made on
    threads other than the main one (a ``KeyboardInterrupt`` could leave a line
    claimed and never queued; the main thread's posts go through the run queue).
    A line takes no lock of the pool's. Whoever holds `claim` is the line's only
    runner: a worker running one of its calls, or the worker it was handed to
    through the run queue. A thread that parks a call appends it and then tries
    the claim without blocking: if it gets it, the line was idle and it puts the
    line on the run queue; if not, the holder will run the call. A runner that
    finds `calls` empty releases the claim and then looks once more, so a call
    appended just before the release is never left behind: either the runner sees
    it and takes the claim back, or the parker's own try succeeds.
    """

    __slots__ = ("calls", "claim", "pool")

    def __init__(self, pool: object) -> None:
        self.calls: deque[_Parked] = deque()
        self.claim = threading.Lock()
        self.pool = pool
        """The pool generation that made it (`_ThreadPoolDelivery._lines`); a line from before a fork is stale."""


class _RunQueue:
    """The pool's FIFO of work, which wakes a sleeping worker only if one sleeps.

    `queue.SimpleQueue` hands every put to a waiting getter, so with fast handlers
    all the workers cycle through sleep and wake-up for each event and fight over
    the GIL. Here a put wakes one sleeper only when there is one, and workers that
    are awake keep taking what accumulates, so the number of busy workers follows
    the load. ``deque.append``/``popleft`` and ``list.append``/``pop`` are atomic;
    each worker sleeps on its own lock (its *gate*), for at most
    `IDLE_WAKE_SECONDS`, so a wake-up that was lost costs latency, never a hang.

    A gate is released by whoever took it off `_sleepers`. A release may come
    late (after the worker woke by itself) or twice in a row; the worker makes
    sure it holds its gate before it announces itself again, and a release of an
    open gate is ignored: either way the worst outcome is a spurious wake-up.
    """

    __slots__ = ("_items", "_sleepers", "stopped")

    def __init__(self) -> None:
        self._items: deque[object] = deque()
        self._sleepers: list[threading.Lock] = []
        self.stopped = False
        """Set once the pool has stopped: an idle worker then ends."""

    def put(self, item: object) -> None:
        """Append *item*; wake one sleeping worker, if any (workers only: posts inline this)."""
        self._items.append(item)
        if self._sleepers:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                self._sleepers.pop().release()
            except (IndexError, RuntimeError):  # no sleeper left / its gate was open already
                pass

    def wake_all(self) -> None:
        """Wake every sleeping worker."""
        sleepers = self._sleepers
        while sleepers:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                sleepers.pop().release()
            except (IndexError, RuntimeError):
                pass

    def get(self, gate: threading.Lock) -> object:
        """Take the next item, sleeping on *gate* while there is none.

        Returns `_STOP` once the pool has stopped, and `_IDLE` after a sleep that
        no put() ended (so the worker can look after the pool, then call again).
        """
        items, sleepers = self._items, self._sleepers
        while True:
            try:
                return items.popleft()
            except IndexError:
                pass
            if self.stopped:
                return _STOP
            gate.acquire(False)  # hold the gate: a late release may have left it open
            sleepers.append(gate)
            woken = True
            if not items and not self.stopped:  # nothing arrived between the look and the announcement
                woken = gate.acquire(timeout=IDLE_WAKE_SECONDS)  # until a put() releases it, or look again
            try:
                sleepers.remove(gate)
            except ValueError:  # a put() took us off the list
                pass
            else:
                if not woken and not items:
                    return _IDLE

    def __len__(self) -> int:
        return len(self._items)


# What a worker does with an exception that must not end it (see threaded._ThreadPoolDelivery._work).


def _internal_error(index: int, exc: BaseException) -> None:
    try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
        logger.critical("eventbus worker %d hit an internal error", index, exc_info=exc)
    except BaseException:  # even a broken logging setup must not end a worker
        pass


def _escaped(sub: Subscription, exc: BaseException) -> None:
    # A BaseException that the error policy did not absorb (a done-callback's, or
    # on_error's): log it and go on, a worker must never lose its bookkeeping.
    try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
        logger.error(
            "%s escaped while delivering to handler %s; delivery goes on",
            type(exc).__name__,
            sub.name,
            exc_info=(type(exc), exc, exc.__traceback__),
        )
    except BaseException:  # even a broken logging setup must not end a worker
        pass
