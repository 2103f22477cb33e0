"""Backpressure: block a poster until a bounded queue has room, or give up in time.

Shared by the thread-pool and asyncio strategies, which differ in what "full"
means but not in how a poster waits for room, times out, or learns that the bus
was shut down while it waited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from ._errors import BusClosedError, QueueFullError

__all__ = ["wait_for_room"]


_WAIT_SLICE: Final = 0.1
# The longest one wait lasts before *full()* is looked at again: a notify that was
# missed (skipped by an interrupt, or lost to a race) then costs latency, never a hang.


def wait_for_room(
    room: threading.Condition,
    full: Callable[[], bool],
    closed: Callable[[], bool],
    timeout: float | None,
    max_queued: int,
) -> None:
    """Wait on *room* (whose lock the caller holds) while *full()* is true.

    Each wait is bounded, and the loop looks at *full()* and *closed()* again
    after it, so a notification that never comes costs a little latency.

    Raises:
        QueueFullError: *timeout* seconds passed and the queue is still full.
        BusClosedError: The bus was shut down while this poster waited.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while full():
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise QueueFullError(
                f"{max_queued} events are already waiting and no room came within {timeout} s; "
                "this event was not accepted.\n"
                "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
            )
        room.wait(_WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE))
        if closed():
            raise BusClosedError("the bus was shut down while this post waited for room; it was not accepted")
