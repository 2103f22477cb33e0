"""The process-wide default bus and the module-level functions that use it.

The module-level `register`, `unregister`, `post` and `publish` look the default
bus up each time they are called, never at import time, so tests and
applications can install another bus with `set_default_bus` or start afresh with
`reset_default_bus`. Buses created with ``EventBus(...)`` never touch it.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ._bus import _MISSING, EventBus

if TYPE_CHECKING:
    from ._delivery import Delivery

__all__ = ["get_default_bus", "post", "publish", "register", "reset_default_bus", "set_default_bus", "unregister"]

_lock = threading.Lock()
_default: EventBus | None = None


def get_default_bus() -> EventBus:
    """Return the process-wide bus, creating it with the default settings on first use."""
    global _default
    bus = _default
    if bus is not None:
        return bus
    with _lock:
        if _default is None:
            _default = EventBus(name="default")
        return _default


def set_default_bus(bus: EventBus) -> EventBus | None:
    """Install *bus* as the default bus and return the previous one (not shut down).

    Raises:
        TypeError: *bus* is not an `EventBus`.
    """
    global _default
    if not isinstance(bus, EventBus):
        raise TypeError(f"set_default_bus() takes an EventBus, not {bus!r}")
    with _lock:
        previous, _default = _default, bus
    return previous


def reset_default_bus() -> None:
    """Shut the default bus down (delivering what it accepted) and forget it.

    The next use creates a fresh one.
    """
    global _default
    with _lock:
        bus, _default = _default, None
    if bus is not None:
        bus.shutdown()


def register(subscriber: object) -> None:
    """Register *subscriber* on the default bus (see `EventBus.register`)."""
    get_default_bus().register(subscriber)


def unregister(subscriber: object) -> bool:
    """Unregister *subscriber* from the default bus (see `EventBus.unregister`)."""
    return get_default_bus().unregister(subscriber)


def post(event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> None:
    """Post *event* on the default bus (see `EventBus.post`)."""
    get_default_bus().post(event, data, timeout=timeout)


def publish(event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> Delivery:
    """Publish *event* on the default bus (see `EventBus.publish`)."""
    return get_default_bus().publish(event, data, timeout=timeout)
