"""eventbus: a typed, thread-safe in-process event bus.

Subscribers are plain classes whose methods carry ``@subscribe``; events are
frozen pydantic models; a pluggable strategy runs the handlers.
"""

from ._asyncio import AsyncioDelivery
from ._bridge import Bridge, BridgeStats
from ._bus import EventBus
from ._decorators import subscribe
from ._default import get_default_bus, post, publish, register, reset_default_bus, set_default_bus, unregister
from ._delivery import Delivery
from ._dispatch import BusStats, ErrorContext
from ._errors import BusClosedError, EventBusError, EventBusWarning, QueueFullError, SubscriptionError
from ._events import DeadEvent, Event, Message
from ._registry import Subscription
from ._strategies import DeliveryStrategy, SyncDelivery
from ._threaded import ConcurrentDelivery, OrderedDelivery
from ._waiting import EventStream

__all__ = [
    "AsyncioDelivery",
    "Bridge",
    "BridgeStats",
    "BusClosedError",
    "BusStats",
    "ConcurrentDelivery",
    "DeadEvent",
    "Delivery",
    "DeliveryStrategy",
    "ErrorContext",
    "Event",
    "EventBus",
    "EventBusError",
    "EventBusWarning",
    "EventStream",
    "Message",
    "OrderedDelivery",
    "QueueFullError",
    "Subscription",
    "SubscriptionError",
    "SyncDelivery",
    "get_default_bus",
    "post",
    "publish",
    "register",
    "reset_default_bus",
    "set_default_bus",
    "subscribe",
    "unregister",
]
