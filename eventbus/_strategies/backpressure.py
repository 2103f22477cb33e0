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

from .._errors import BusClosedError, QueueFullError

__all__ = ["Gates", "queue_full_error", "wait_for_room"]


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
            raise queue_full_error(max_queued, timeout)
        room.wait(_WAIT_SLICE if remaining is None else min(remaining, _WAIT_SLICE))
        if closed():
            raise BusClosedError("the bus was shut down while this post waited for room; it was not accepted")


def queue_full_error(max_queued: int, timeout: float | None) -> QueueFullError:
    """The error of a post that found no room within *timeout*."""
    return QueueFullError(
        f"{max_queued} events are already waiting and no room came within {timeout} s; "
        "this event was not accepted.\n"
        "Retry later, raise max_queued, or add workers if the handlers cannot keep up."
    )


class Gates:
    """Threads waiting for a change that other threads announce: a `threading.Condition` safe from Ctrl-C.

    ``Condition.wait`` releases its lock and re-acquires it in a ``finally``; a
    ``KeyboardInterrupt`` that lands just after the release and before the
    ``try`` leaves the lock released inside the caller's ``with lock:``, whose
    exit then fails (or, with a plain lock, releases another thread's hold).
    Here a waiter never holds the caller's lock while it sleeps: it announces
    itself with `enter` (best under that lock, *before* it looks at the condition,
    so that any change made after the look wakes it), releases the lock, and then
    sleeps on its own gate with `sleep`. An interrupt anywhere just propagates;
    `sleep` always takes the gate off the list again.

    Notifications can still be missed (a waiter between two sleeps), so every
    sleep is bounded and the waiter looks at its condition again: a missed
    notification costs latency, never a hang. A non-empty `gates` list says that
    someone waits, so notifiers can skip the work otherwise.
    """

    __slots__ = ("gates",)

    def __init__(self) -> None:
        self.gates: list[threading.Lock] = []
        """The gates of the threads waiting now (a release wakes one)."""

    def enter(self) -> threading.Lock:
        """Announce a waiter; pass the gate returned to `sleep` (always, even when not sleeping)."""
        gate = threading.Lock()
        gate.acquire()
        self.gates.append(gate)
        return gate

    def sleep(self, gate: threading.Lock, seconds: float) -> None:
        """Sleep until notified or *seconds* have passed (0: just leave), and take *gate* off the list."""
        try:
            if seconds > 0:
                gate.acquire(True, min(seconds, _WAIT_SLICE))
        finally:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                self.gates.remove(gate)
            except ValueError:  # a notifier took it off
                pass

    def notify(self) -> None:
        """Wake one waiter, if any."""
        if self.gates:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                self.gates.pop().release()
            except (IndexError, RuntimeError):  # none left / it woke already
                pass

    def notify_all(self) -> None:
        """Wake every waiter."""
        gates = self.gates
        while gates:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                gates.pop().release()
            except (IndexError, RuntimeError):
                pass
