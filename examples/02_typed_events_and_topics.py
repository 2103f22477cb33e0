"""Typed events and topics: how an event finds its handlers.

Shows that a class subscription receives the class and its subclasses, a topic
subscription receives every event with that topic (typed or ``Message``),
generic events route by their parameters, and events validate when built and
are frozen afterwards. The sync strategy keeps the printed lines in order.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import ValidationError

from eventbus import Event, EventBus, Message, subscribe

T = TypeVar("T")


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class RushOrderPlaced(OrderPlaced):  # inherits the topic "orders.placed"
    deadline: str


class Heartbeat(Event):  # no topic declared: "<module>.<qualname>"
    pass


class Page(Event, Generic[T], topic="pages"):
    items: list[T]


class Listener:
    @subscribe(OrderPlaced)
    def by_class(self, event: OrderPlaced) -> None:
        print(f"  by class: {type(event).__name__} {event.order_id}")

    @subscribe("orders.placed")
    def by_topic(self, event: Event) -> None:
        print(f"  by topic: {type(event).__name__} on {event.topic!r}")

    @subscribe
    def int_pages(self, event: Page[int]) -> None:
        print(f"  Page[int] handler: {event.items}")


def main() -> None:
    print("topics:", OrderPlaced.topic, RushOrderPlaced.topic, Heartbeat.topic, Page[int].topic)
    bus = EventBus(strategy="sync")
    bus.register(Listener())
    order = OrderPlaced(order_id=1)
    for event in [
        order,
        RushOrderPlaced(order_id=2, deadline="noon"),
        Message("orders.placed"),
        Page[int](items=[1, 2]),
        Page[str](items=["a"]),
    ]:
        print(f"post {type(event).__name__}:")
        bus.post(event)  # the Page[str] reaches nobody: it is not a Page[int]
    try:
        OrderPlaced(order_id="one")  # type: ignore[arg-type]  # invalid on purpose
    except ValidationError as exc:
        print("invalid:", exc.errors()[0]["msg"])
    try:
        order.order_id = 4  # events are frozen
    except ValidationError as exc:
        print("frozen:", exc.errors()[0]["msg"])
    print("dead events (reached no handler):", bus.stats().dead)


if __name__ == "__main__":
    main()
