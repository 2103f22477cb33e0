"""The bus's awaitable calls on any strategy: ``apost``, ``ajoin`` and ``ashutdown``.

A strategy that can wait on the event loop itself offers optional capabilities,
which the bus asks for by name: ``wait_for_room(timeout)`` (awaitable room for
``apost``), ``ajoin(timeout)`` and ``ashutdown(timeout)``; the asyncio strategy
has all three. For any other strategy, ``apost`` looks for room again after short
naps and ``ajoin``/``ashutdown`` run the blocking call on a helper thread, so the
loop is never blocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Final, Protocol, TypeVar, cast

from ._delivery import set_if_pending
from ._errors import QueueFullError

__all__ = ["AwaitableRoom", "AwaitableWait", "ajoin", "apost", "ashutdown"]

_T = TypeVar("_T")
_WAIT_SLICE: Final = 0.05  # seconds between two looks of a waiting coroutine


class AwaitableRoom(Protocol):
    """``strategy.wait_for_room(timeout)``: wait on the loop until an event may fit; `False` on timeout."""

    async def __call__(self, timeout: float | None, /) -> bool: ...


class AwaitableWait(Protocol):
    """``strategy.ajoin(timeout)`` or ``strategy.ashutdown(timeout)``, awaited on the loop."""

    async def __call__(self, timeout: float | None, /) -> bool: ...


async def apost(post: Callable[..., None], strategy: object, event: object, data: Any, timeout: float | None) -> None:
    """Post with ``post(event, data, timeout=0)``, awaiting room (without blocking the loop) while it is full."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    delay = 0.0005
    while True:
        try:
            post(event, data, timeout=0)
            return
        except QueueFullError:
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                raise QueueFullError(
                    f"the queue stayed full for {timeout} s; this event was not accepted.\n"
                    "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
                ) from None
        wait_for_room: AwaitableRoom | None = getattr(strategy, "wait_for_room", None)
        if wait_for_room is not None:
            await wait_for_room(remaining)
        else:
            # The thread pools signal room to threads only; look again after a short nap.
            await asyncio.sleep(delay if remaining is None else min(delay, remaining))
            delay = min(delay * 2, 0.02)


async def _in_thread(function: Callable[[], _T], name: str) -> _T:
    """Run a blocking *function* on a daemon thread and await its result.

    If the awaiting task is cancelled, the thread still finishes (its result is
    dropped); being a daemon, it never holds up the interpreter's exit. The
    thread leaves its outcome in a box before it wakes the loop, and the wait
    looks at the box at least every `_WAIT_SLICE` s, so a wake-up lost to an
    interrupt on the loop's thread costs latency, never a hang.
    """
    loop = asyncio.get_running_loop()
    box: list[tuple[_T | None, BaseException | None]] = []
    waiters: list[asyncio.Future[None]] = []

    def wake() -> None:
        for waiter in waiters:
            set_if_pending(waiter)

    def target() -> None:
        result: _T | None = None
        error: BaseException | None = None
        try:
            result = function()
        except BaseException as exc:
            error = exc
        box.append((result, error))
        with contextlib.suppress(RuntimeError):  # the awaiting loop is gone
            loop.call_soon_threadsafe(wake)

    threading.Thread(target=target, name=name, daemon=True).start()
    while not box:
        waiter = loop.create_future()
        waiters.append(waiter)
        try:
            async with asyncio.timeout(_WAIT_SLICE):
                await waiter
        except TimeoutError:
            pass
        finally:
            waiters.remove(waiter)
    result, error = box[0]
    if error is not None:
        raise error
    return cast("_T", result)


async def ajoin(strategy: object, join: Callable[[float | None], bool], timeout: float | None, name: str) -> bool:
    """``await bus.ajoin()``: the strategy's own, or ``join`` on a helper thread."""
    own: AwaitableWait | None = getattr(strategy, "ajoin", None)
    if own is not None:
        return await own(timeout)
    if join(0):  # done already; and on a pool's worker this raises, as join() does
        return True
    return await _in_thread(lambda: join(timeout), f"{name}-ajoin")


async def ashutdown(
    strategy: object, shutdown: Callable[[bool, float | None], bool], timeout: float | None, name: str
) -> bool:
    """``await bus.ashutdown()``: the strategy's own, or ``shutdown`` on a helper thread."""
    own: AwaitableWait | None = getattr(strategy, "ashutdown", None)
    if own is not None:
        done = await own(timeout)
        return shutdown(False, None) and done  # the bus's own part: closed, loops and waiters released
    join = getattr(strategy, "join", None)
    if join is not None:
        try:
            join(0)
        except RuntimeError:  # on a worker of this bus: shutdown() does not wait there
            return shutdown(True, timeout)
    return await _in_thread(lambda: shutdown(True, timeout), f"{name}-ashutdown")
