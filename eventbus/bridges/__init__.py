"""Engines for `EventBus.bridge`: one bus across processes and machines.

``RedisStreams`` needs the extra ``eventbus[redis]`` and ``NatsJetStream`` the
extra ``eventbus[nats]``; each is imported when first named, so ``import
eventbus.bridges`` works without either client library installed::

    from eventbus.bridges import NatsJetStream, RedisStreams

    bridge = bus.bridge(RedisStreams("redis://localhost:6379/0"), events=[OrderPlaced], group="billing")
    bridge = bus.bridge(NatsJetStream("nats://localhost:4222"), events=[OrderPlaced], group="billing")

Added in version 0.2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._engine import BridgeConfig, DeadLetter, Engine, EngineSession, EngineUnavailable, Incoming

if TYPE_CHECKING:
    from ._nats import NatsJetStream
    from ._redis import RedisStreams

__all__ = [
    "BridgeConfig",
    "DeadLetter",
    "Engine",
    "EngineSession",
    "EngineUnavailable",
    "Incoming",
    "NatsJetStream",
    "RedisStreams",
]


def __getattr__(name: str) -> Any:
    if name == "RedisStreams":
        try:
            from ._redis import RedisStreams
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"RedisStreams needs redis-py: pip install 'eventbus[redis]' ({exc})") from exc
        return RedisStreams
    if name == "NatsJetStream":
        try:
            from ._nats import NatsJetStream
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(f"NatsJetStream needs nats-py: pip install 'eventbus[nats]' ({exc})") from exc
        return NatsJetStream
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
