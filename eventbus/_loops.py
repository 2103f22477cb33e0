"""``async def`` handlers on the thread-based strategies (sync, ordered, concurrent).

The registry wraps each such handler in a blocking callable (`HandlerLoops.blocking`);
the thread that calls it (the poster on the sync strategy, a worker on the pools)
runs the coroutine to completion on an event loop that the bus owns for that thread,
created on first need and closed at ``shutdown()`` (or when the thread ends). The
coroutine runs *on the calling thread*, so everything that the strategies decide by
thread identity holds for async handlers exactly as for plain ones: a handler's posts
into its own bus are breadth-first on the sync strategy and never blocked by
backpressure on the pools, a handler may unregister its own subscriber or call
``join()`` and get the usual answer, and ``thread_safe`` locks are re-entrant. One
loop per bus serving every thread would break each of these (the code would run on
the loop's thread while the calling thread waited for it) and deadlock some of them.

If the calling thread is already running an event loop (a coroutine posting on a sync
bus), that loop is blocked for the duration of the synchronous ``post`` anyway; the
handler's loop is run nested in its place and the outer loop is put back afterwards.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar, final

__all__ = ["HandlerLoops"]

logger: Final = logging.getLogger("eventbus")

_T = TypeVar("_T")

# Low-level asyncio functions (in ``asyncio.events.__all__``) that event loops use to
# say which loop runs on the current thread; used to nest a handler's loop.
_get_running_loop: Final = asyncio._get_running_loop
_set_running_loop: Final = asyncio._set_running_loop


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
        # ended) or the bus itself was dropped without shutdown(). In a forked
        # child the other threads' values go away too, with their loops still
        # marked running by a thread that does not exist there: leave those alone.
        if not self.closed:
            self.closed = True
            if not self.loop.is_running():
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
        if holder is None or holder.closed:
            fresh = _ThreadLoop()  # made before anything changes (an interrupt here leaves nothing)
            with self._lock:
                if self._closed:
                    fresh.closed = True
                    fresh.loop.close()
                    return None
                self._local.holder = holder = fresh
                self._holders.add(fresh)
        with self._lock:
            if self._closed:
                return None
            # `running` alone could be a flag that an interrupt left set (between _take
            # and run's try); on its own thread, the loop says whether it really runs.
            if holder.running and holder.loop.is_running():
                return None  # re-entered on this thread: a loop of its own
            holder.running = True
            return holder

    def after_fork_in_child(self) -> None:
        """Forget the parent's loops in a forked child (called on the forking thread, alone).

        A loop of the parent shares its selector and wake-up pipe with the parent,
        and those of other threads are marked as running by threads that do not
        exist here: none is reused. The forking thread's idle loop is closed (the
        child's copies of its descriptors only); one in use right now (a fork from
        inside an async handler) is left to finish that call, and not reused after.
        """
        self._lock = threading.Lock()
        mine: _ThreadLoop | None = getattr(self._local, "holder", None)
        for holder in list(self._holders):
            if holder is not mine:
                holder.closed = True  # another parent thread's: never touched here
        if mine is not None and not mine.closed:
            mine.closed = True
            if not mine.loop.is_running():
                mine.loop.close()
        self._local = threading.local()
        self._holders = weakref.WeakSet()

    def _claim_idle(self) -> list[_ThreadLoop]:
        # Called with the lock held. A function of its own: a comprehension directly under
        # `with self._lock:` would let an interrupt skip the release on CPython 3.13.
        idle = [h for h in self._holders if not h.running and not h.closed]
        for holder in idle:
            holder.closed = True
        return idle

    def close(self) -> None:
        """Close every loop not in use now; loops in use close when their call returns."""
        with self._lock:
            self._closed = True
            idle = self._claim_idle()
        for holder in idle:
            _close_loop(holder.loop)
