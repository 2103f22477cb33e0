"""What the asyncio strategy holds: the records of events in the lanes, and its shared fields.

`_AsyncioState` has the fields that the strategy's three parts share.

The strategy is one object, `AsyncioDelivery`, written in three parts, one idea each:

- `asyncio` (the public class): accepting events on the loop and from other threads,
  waiting for room, ``join``/``shutdown`` and their awaitable forms, ``unregister``, fork;
- `_asyncio_lanes`: the lane tasks that call the handlers (key lines, subscriber lines,
  failures, settling deliveries);
- `_asyncio_recovery`: what keeps that promise under interrupts: the watchdog, retiring a
  dead lane and handing its event, line and key on, and the forced stop of a timed-out
  shutdown.

Each part is a class over `_AsyncioState`; `AsyncioDelivery` joins them. The methods that
one part calls in another are declared here, so the seams are written down in one place.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import weakref
from collections import deque
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Final

from .._errors import BusClosedError

if TYPE_CHECKING:
    from .._context import Pending
    from .._delivery import Delivery
    from .._dispatch import Dispatcher, ThreadState
    from .._registry import Subscriber, Subscription

__all__: list[str] = []  # private to the asyncio strategy


# asyncio's own low-level "which loop runs on this thread" (in asyncio.events.__all__).
_get_running_loop: Final = asyncio._get_running_loop

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


class _InFlight:
    """An event with calls parked in subscriber lines: counts its unfinished parts."""

    __slots__ = ("delivery", "event", "gen", "handlers", "key", "parked", "pending", "trace")

    def __init__(self, work: _Work) -> None:
        self.event, self.handlers, self.delivery, self.key, self.gen = work
        self.trace: Pending | None = None  # the event's trace, for its calls run by other lanes (#14)
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

    def __init__(self, work: _Work, position: int, job: _InFlight | None, started: bool) -> None:
        self.work = work
        self.position = position
        self.job = job
        self.started = started  # counted as running (no longer waiting)


class _Line:
    """The waiting line of one subscriber's ``thread_safe=False`` calls."""

    __slots__ = ("__weakref__", "busy", "calls")

    def __init__(self) -> None:
        self.busy = False
        self.calls: deque[tuple[Subscription, _InFlight, int]] = deque()


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
        self.job: _InFlight | None = None
        self.started = True  # item counted as running (False only while its key is being claimed)
        self.line: _Line | None = None  # a subscriber line this lane holds busy
        self.pcall: tuple[Subscription, _InFlight, int] | None = None  # a parked call taken from `line`
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


class _AsyncioState:
    """The fields of `AsyncioDelivery`, shared by its parts (see the module docstring)."""

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

    workers: int
    max_queued: int
    _loop: asyncio.AbstractEventLoop | None
    _dispatcher: Dispatcher | None
    _loop_state: ThreadState | None
    _keyless: set[type]
    _name: str
    _closed: bool
    _forked: bool

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

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The event loop that the handlers run on."""
        assert self._loop is not None, "start() was not called"
        return self._loop

    if TYPE_CHECKING:  # the seams: what one part calls in another
        # in `asyncio` (intake and waiting), called by the lanes and the recovery
        def _drain_inbox(self) -> None: ...
        def _wake_lanes(self, count: int) -> None: ...
        def _wake_one(self) -> None: ...
        def _room_made(self) -> None: ...
        def _stop_lanes(self) -> None: ...
        def _all_done(self) -> bool: ...

        # in `_asyncio_lanes`, called by the recovery
        def _release(self, me: _LaneState) -> None: ...
        def _finish_call(self, me: _LaneState, job: _InFlight) -> None: ...
        def _settle(
            self, delivery: Delivery, index: int, value: Any = ..., error: BaseException | None = None
        ) -> None: ...

        # in `_asyncio_recovery`, called by the lanes
        def _progress(self) -> None: ...
