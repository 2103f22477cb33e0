"""Static checks of the public API's types: read by mypy, never run (no ``test_`` prefix).

Each `assert_type` line fails the mypy run if the API's types drift.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_type

import eventbus
from eventbus import BusStats, Delivery, Event, EventBus, Message, Subscription, subscribe


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class OrderShipped(Event, topic="orders.shipped"):
    order_id: int


class Billing:
    @subscribe(OrderPlaced)
    def charge(self, event: OrderPlaced) -> int:
        return event.order_id

    @subscribe("orders.placed", thread_safe=True, priority=10)
    def audit(self, event: Event) -> None: ...

    @subscribe
    def ship(self, event: OrderShipped, /) -> None: ...

    @subscribe()
    def ship_again(self, event: OrderShipped) -> None: ...

    @subscribe(OrderPlaced | OrderShipped, when=lambda event: True)
    def either(self, event: OrderPlaced | OrderShipped) -> str:
        return "either"


@subscribe(OrderPlaced)
def on_order(event: OrderPlaced, /) -> bool:
    return True


def check_decorator_is_identity_typed() -> None:
    # The decorator returns the function unchanged, so its type is the function's own.
    assert_type(on_order, Callable[[OrderPlaced], bool])
    assert_type(Billing().charge(OrderPlaced(order_id=1)), int)
    assert_type(Billing().either(OrderShipped(order_id=1)), str)
    assert_type(Billing.ship, Callable[[Billing, OrderShipped], None])

    # Positional-only, so that the function's type is exactly Callable[[OrderPlaced], None].
    def handler(event: OrderPlaced, /) -> None: ...

    assert_type(subscribe(handler), Callable[[OrderPlaced], None])
    assert_type(subscribe(OrderPlaced)(handler), Callable[[OrderPlaced], None])
    assert_type(subscribe("orders.placed")(handler), Callable[[OrderPlaced], None])
    assert_type(subscribe(priority=1)(handler), Callable[[OrderPlaced], None])


def check_bus(bus: EventBus) -> None:
    assert_type(bus.post(OrderPlaced(order_id=1)), None)
    assert_type(bus.post("orders.placed", {"id": 1}, timeout=1.0), None)
    delivery = bus.publish(OrderPlaced(order_id=1))
    assert_type(delivery, Delivery)
    assert_type(delivery.result(timeout=1.0), list[Any])
    assert_type(delivery.done(), bool)
    assert_type(delivery.wait(0.5), bool)
    assert_type(bus.unregister(Billing()), bool)
    assert_type(bus.is_registered(Billing()), bool)
    assert_type(bus.join(timeout=1.0), bool)
    assert_type(bus.shutdown(wait=True, timeout=None), bool)
    assert_type(bus.stats(), BusStats)
    assert_type(bus.stats().posted, int)
    assert_type(bus.subscribers(OrderPlaced), tuple[Subscription, ...])
    assert_type(bus.has_subscribers("orders.placed"), bool)
    with EventBus(strategy="sync") as entered:
        assert_type(entered, EventBus)


async def check_await(bus: EventBus) -> None:
    assert_type(await bus.publish(OrderPlaced(order_id=1)), list[Any])


def check_default_bus() -> None:
    assert_type(eventbus.get_default_bus(), EventBus)
    assert_type(eventbus.set_default_bus(EventBus()), EventBus | None)
    assert_type(eventbus.reset_default_bus(), None)
    assert_type(eventbus.publish(Message("topic")), Delivery)
    assert_type(eventbus.post("topic"), None)
    assert_type(eventbus.unregister(Billing()), bool)


def check_events() -> None:
    assert_type(OrderPlaced.topic, str)
    assert_type(OrderPlaced(order_id=1).topic, str)
    assert_type(Message("t", 1).data, Any)
