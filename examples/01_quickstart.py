"""Quickstart: declare an event, subscribe a handler, post, and wait for the result.

Shows the three steps of every eventbus program: an event is a frozen pydantic
model with a topic; a subscriber is a plain class whose methods carry
``@subscribe``; a bus delivers what you post. ``EventBus()`` runs handlers on 8
worker threads, so the example waits with ``publish(...).result()`` and
``join()`` before it reads what the handlers did.
"""

from __future__ import annotations

from eventbus import Event, EventBus, subscribe


# --8<-- [start:essentials]
class OrderPlaced(Event, topic="orders.placed"):
    """A customer placed an order."""

    order_id: int
    amount: float


class Billing:
    """A subscriber: a plain class, usable without any bus."""

    def __init__(self) -> None:
        self.charged: list[int] = []

    @subscribe  # the event class comes from the annotation
    def charge(self, event: OrderPlaced) -> str:
        self.charged.append(event.order_id)
        return f"charged {event.amount:.2f} for order {event.order_id}"


# --8<-- [end:essentials]


def main() -> None:
    billing = Billing()
    with EventBus() as bus:  # concurrent strategy, 8 workers, 10,000 queued events
        bus.register(billing)
        bus.post(OrderPlaced(order_id=1, amount=9.5))  # fire and forget
        delivery = bus.publish(OrderPlaced(order_id=2, amount=20.0))  # ... or follow it
        print("publish().result():", delivery.result(timeout=5))
        bus.join()  # wait until every accepted event has been handled
        print("billing charged orders:", sorted(billing.charged))
    # Leaving the `with` block shut the bus down after delivering everything accepted.
    stats = bus.stats()
    print(f"stats: posted={stats.posted} delivered={stats.delivered} failed={stats.failed} dead={stats.dead}")
    print("bus closed:", bus.closed)


if __name__ == "__main__":
    main()
