"""The exit drain: what open thread pools accepted is delivered before the interpreter ends.

A pool registers itself in `open_pools` while it may hold undelivered events (from its
first accepted event until it has stopped); `drain_at_exit`, an ``atexit`` hook, shuts each
of them down without waiting and then waits as long as events keep finishing.
"""

from __future__ import annotations

import atexit
import time
from typing import Final, Protocol

__all__ = ["EXIT_STALL_SECONDS", "DrainablePool", "open_pools"]

EXIT_STALL_SECONDS: Final = 5.0
"""At interpreter exit, give up draining once no event has finished for this long."""


class DrainablePool(Protocol):
    """What the drain needs of a pool (`threaded._ThreadPoolDelivery`)."""

    def shutdown(self, wait: bool, timeout: float | None) -> bool: ...
    def _unfinished(self) -> int: ...
    def _finished_total(self) -> int: ...
    def _wait_settled(self, deadline: float | None) -> bool: ...


# The pools that may still hold undelivered events, for the exit drain. A plain set,
# not a WeakSet: a pool's worker threads keep it alive until it stops (when
# _stop_if_idle discards it) anyway, and a mypyc-compiled class takes no weak
# references. It holds strategies only, never a bus.
open_pools: set[DrainablePool] = set()


def drain_at_exit() -> None:
    # Deliver what open buses accepted before the interpreter goes away: wait as
    # long as events keep finishing, but never hang on a handler that does not return.
    pools = list(open_pools)
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
        pending[0]._wait_settled(time.monotonic() + 0.05)


atexit.register(drain_at_exit)
