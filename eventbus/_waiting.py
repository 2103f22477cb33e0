"""Waiting for events from asyncio code: ``await bus.wait_for(...)`` and ``bus.stream(...)``.

Both work on every strategy the same way: they register a temporary subscriber
(a plain ``thread_safe=True`` function, so it is never parked or locked) whose
handler hands each matching event to the awaiting loop, directly when it runs on
that loop and with ``call_soon_threadsafe`` otherwise. The temporary subscriber
is unregistered when the wait ends, however it ends: with an event, a timeout,
an error or the cancellation of the awaiting task.

When the bus shuts down, a pending `wait_for` raises `BusClosedError` and a
stream ends after the events it has buffered (``async for`` stops).

A stream's buffer is bounded (``maxsize``). When the consumer falls behind and
the buffer is full, the **oldest** buffered event is dropped to make room for
the new one, and ``stream.dropped`` counts the drops: the bus is never blocked
by a slow consumer, and the consumer always sees the most recent events.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Generic, Protocol, Self, TypeVar, final

from ._decorators import subscribe
from ._delivery import set_if_pending
from ._errors import BusClosedError

__all__ = ["EventStream", "Subscribable", "Watchers", "wait_for"]


class Subscribable(Protocol):
    """What waiting needs of a bus: its name, and registering a temporary handler."""

    @property
    def name(self) -> str:
        """The bus's name, for messages."""
        ...

    def register(self, subscriber: object) -> None:
        """Register *subscriber*."""
        ...

    def unregister(self, subscriber: object) -> bool:
        """Unregister *subscriber*."""
        ...


_E = TypeVar("_E")

_get_running_loop = asyncio._get_running_loop

_WAIT_SLICE: Final = 0.05
"""The longest a wait sleeps before it looks again (a wake-up may be lost to an interrupt)."""


class _Watcher(Protocol):
    def bus_closed(self) -> None: ...


@final
class Watchers:
    """The waits and streams open on one bus, so that ``shutdown()`` can end them."""

    __slots__ = ("_closed", "_lock", "_open")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: set[_Watcher] = set()
        self._closed = False

    def add(self, watcher: _Watcher, name: str) -> None:
        """Track *watcher*.

        Raises:
            BusClosedError: The bus has been shut down: no event will ever come.
        """
        with self._lock:
            if self._closed:
                raise BusClosedError(f"{name} has been shut down; no event will ever arrive to wait for")
            self._open.add(watcher)

    def discard(self, watcher: _Watcher) -> None:
        """Stop tracking *watcher*."""
        with self._lock:
            self._open.discard(watcher)

    def close(self) -> None:
        """End every open wait and stream (the bus was shut down)."""
        with self._lock:
            self._closed = True
            watchers, self._open = list(self._open), set()
        for watcher in watchers:
            with contextlib.suppress(RuntimeError):  # its loop is closed already: nobody is waiting any more
                watcher.bus_closed()


def _describe(key: object) -> str:
    return key if isinstance(key, str) else getattr(key, "__qualname__", repr(key))


def _temporary_handler(key: type | str, on_event: Callable[[Any], None], name: str) -> Callable[[Any], None]:
    on_event.__qualname__ = name
    return subscribe(key, thread_safe=True)(on_event)


def _hand_over(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: Any) -> None:
    """Run *callback(*args)* on *loop*: now if we are on it, else soon."""
    if _get_running_loop() is loop:
        callback(*args)
    else:
        loop.call_soon_threadsafe(callback, *args)


class _Waiter:
    """The shutdown hook of one `wait_for`."""

    __slots__ = ("_callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback

    def bus_closed(self) -> None:
        self._callback()


async def wait_for(
    bus: Subscribable,
    watchers: Watchers,
    key: type | str,
    where: Callable[[Any], object] | None,
    timeout: float | None,
) -> Any:
    """Return the next event that matches *key* and *where*; see `EventBus.wait_for`."""
    loop = asyncio.get_running_loop()
    # The outcome goes into `box` first (on whatever thread), then the loop is woken;
    # the wait looks at the box at least every _WAIT_SLICE s, so a wake-up lost to an
    # interrupt on the loop's thread costs latency, never a hang.
    box: list[tuple[object, BaseException | None]] = []
    waiters: list[asyncio.Future[None]] = []

    def wake() -> None:
        for waiter in waiters:
            set_if_pending(waiter)

    def settle(event: object, error: BaseException | None) -> None:
        if box:
            return
        box.append((event, error))
        _hand_over(loop, wake)

    def on_event(event: Any) -> None:
        if box:
            return
        if where is not None:
            try:
                if not where(event):
                    return
            except Exception as exc:  # the waiter's predicate: its error is the waiter's
                settle(None, exc)
                return
        settle(event, None)

    def closed() -> None:
        settle(None, BusClosedError(f"{bus.name} was shut down while wait_for() waited"))

    handler = _temporary_handler(key, on_event, f"wait_for({_describe(key)})")
    waiter = _Waiter(closed)
    watchers.add(waiter, bus.name)
    try:
        bus.register(handler)
        try:
            deadline = None if timeout is None else loop.time() + timeout
            while True:
                if box:
                    break
                remaining = _WAIT_SLICE if deadline is None else min(deadline - loop.time(), _WAIT_SLICE)
                if remaining <= 0:
                    raise TimeoutError(f"no {_describe(key)} event arrived within {timeout} s")
                future = loop.create_future()
                waiters.append(future)
                try:
                    async with asyncio.timeout(remaining):
                        await future
                except TimeoutError:
                    pass
                finally:
                    waiters.remove(future)
        finally:
            bus.unregister(handler)
    finally:
        watchers.discard(waiter)
    event, error = box[0]
    if error is not None:
        raise error
    return event


@final
class EventStream(Generic[_E]):
    """An async iterator of the events that match a key, from a bounded buffer.

    Made by ``bus.stream(key)``; use it as ``async with bus.stream(Key) as
    events: async for event in events: ...``. The subscription starts when the
    ``async with`` block is entered and ends when it is left.

    Overflow policy: when ``maxsize`` events are buffered and another arrives,
    the oldest buffered event is dropped and `dropped` goes up by one. The bus is
    never blocked or slowed by a slow consumer.

    When the bus shuts down, iteration ends after the buffered events.
    """

    __slots__ = (
        "_bus",
        "_ended",
        "_error",
        "_handler",
        "_key",
        "_lock",
        "_loop",
        "_waiter",
        "_watchers",
        "_where",
        "buffer",
        "dropped",
        "maxsize",
    )

    def __init__(
        self,
        bus: Subscribable,
        watchers: Watchers,
        key: type | str,
        maxsize: int,
        where: Callable[[Any], object] | None,
    ) -> None:
        if type(maxsize) is not int or maxsize < 1:
            raise ValueError(f"maxsize must be a positive int, not {maxsize!r}")
        if where is not None and not callable(where):
            raise TypeError(f"where must be a callable that takes the event, not {where!r}")
        self._bus = bus
        self._watchers = watchers
        self._key = key
        self._where = where
        self.maxsize: int = maxsize
        """How many events the buffer holds before the oldest is dropped."""
        self.dropped: int = 0
        """How many events were dropped because the buffer was full (or the stream had ended)."""
        self.buffer: deque[_E] = deque()
        """The events received and not yet consumed, oldest first."""
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._handler: Callable[[Any], None] | None = None
        self._error: BaseException | None = None
        self._ended = False

    async def __aenter__(self) -> Self:
        if self._loop is not None:
            raise RuntimeError("this stream was entered already; call bus.stream() again for another one")
        self._loop = asyncio.get_running_loop()
        receive = self._on_event

        def on_event(event: Any) -> None:
            receive(event)

        handler = _temporary_handler(self._key, on_event, f"stream({_describe(self._key)})")
        self._watchers.add(self, self._bus.name)
        try:
            self._bus.register(handler)
        except BaseException:
            self._watchers.discard(self)
            raise
        self._handler = handler
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Unsubscribe and end the iteration (after the buffered events). Idempotent."""
        handler, self._handler = self._handler, None
        if handler is not None:
            self._bus.unregister(handler)
            self._watchers.discard(self)
        self.bus_closed()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> _E:
        while True:
            with self._lock:
                if self._error is not None:
                    error, self._error = self._error, None
                    raise error
                if self.buffer:
                    return self.buffer.popleft()
                if self._ended:
                    raise StopAsyncIteration
                if self._loop is None:
                    raise RuntimeError("iterate a stream inside its block: `async with bus.stream(key) as events:`")
                waiter = self._waiter = self._loop.create_future()
            try:
                # Bounded: a wake-up lost to an interrupt on the loop's thread costs latency only.
                async with asyncio.timeout(_WAIT_SLICE):
                    await waiter
            except TimeoutError:
                pass
            finally:
                with self._lock:
                    if self._waiter is waiter:
                        self._waiter = None

    def _on_event(self, event: Any) -> None:
        # Runs on whatever thread delivers: never blocks, never waits for the consumer.
        where = self._where
        error: BaseException | None = None
        if where is not None:
            try:
                if not where(event):
                    return
            except Exception as exc:  # the consumer's predicate: its error is the consumer's
                error = exc
        with self._lock:
            if error is not None:
                self._error = error
            elif self._ended:
                self.dropped += 1
                return
            else:
                if len(self.buffer) >= self.maxsize:
                    self.buffer.popleft()
                    self.dropped += 1
                self.buffer.append(event)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            assert self._loop is not None
            _hand_over(self._loop, set_if_pending, waiter)

    def bus_closed(self) -> None:
        """End the iteration after the buffered events (the bus was shut down)."""
        with self._lock:
            self._ended = True
            waiter, self._waiter = self._waiter, None
        if waiter is not None and self._loop is not None:
            _hand_over(self._loop, set_if_pending, waiter)

    def __repr__(self) -> str:
        return (
            f"<EventStream of {_describe(self._key)!r} buffered={len(self.buffer)} "
            f"maxsize={self.maxsize} dropped={self.dropped}>"
        )
