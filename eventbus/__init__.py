"""eventbus: a typed, thread-safe in-process event bus.

Subscribers are plain classes whose methods carry ``@subscribe``; events are
frozen pydantic models; a pluggable strategy runs the handlers.
"""

from ._bridge import Bridge, BridgeStats
from ._bus import EventBus
from ._compiled import compiled
from ._context import EventContext, current_context
from ._decorators import subscribe
from ._default import get_default_bus, post, publish, register, reset_default_bus, set_default_bus, unregister
from ._delivery import Delivery
from ._dispatch import BusStats, Dispatcher, ErrorContext
from ._errors import BusClosedError, EventBusError, EventBusWarning, QueueFullError, SubscriptionError
from ._events import DeadEvent, Event, Message
from ._registry import Subscriber, Subscription
from ._strategies import AsyncioDelivery, ConcurrentDelivery, DeliveryStrategy, OrderedDelivery, SyncDelivery
from ._topology import BridgeInfo, HandlerInfo, Route, Topology
from ._waiting import EventStream

__all__ = [
    "AsyncioDelivery",
    "Bridge",
    "BridgeInfo",
    "BridgeStats",
    "BusClosedError",
    "BusStats",
    "ConcurrentDelivery",
    "DeadEvent",
    "Delivery",
    "DeliveryStrategy",
    "Dispatcher",
    "ErrorContext",
    "Event",
    "EventBus",
    "EventBusError",
    "EventBusWarning",
    "EventContext",
    "EventStream",
    "HandlerInfo",
    "Message",
    "OrderedDelivery",
    "QueueFullError",
    "Route",
    "Subscriber",
    "Subscription",
    "SubscriptionError",
    "SyncDelivery",
    "Topology",
    "compiled",
    "current_context",
    "get_default_bus",
    "post",
    "publish",
    "register",
    "reset_default_bus",
    "set_default_bus",
    "subscribe",
    "unregister",
]
