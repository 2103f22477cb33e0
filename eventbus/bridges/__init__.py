"""Engines for `EventBus.bridge`: one bus across processes and machines.

``RedisStreams`` needs the extra ``eventbus[redis]``; it is imported when first
named, so ``import eventbus.bridges`` works without redis-py installed::

    from eventbus.bridges import RedisStreams

    bridge = bus.bridge(RedisStreams("redis://localhost:6379/0"), events=[OrderPlaced], group="billing")

Added in version 0.2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._engine import BridgeConfig, DeadLetter, Engine, EngineSession, EngineUnavailable, Incoming

if TYPE_CHECKING:
    from ._redis import RedisStreams

__all__ = ["BridgeConfig", "DeadLetter", "Engine", "EngineSession", "EngineUnavailable", "Incoming", "RedisStreams"]


def __getattr__(name: str) -> Any:
    if name == "RedisStreams":
        try:
            from ._redis import RedisStreams
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"RedisStreams needs redis-py: pip install 'eventbus[redis]' ({exc})") from exc
        return RedisStreams
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
