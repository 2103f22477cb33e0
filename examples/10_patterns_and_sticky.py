"""Topic patterns and sticky events: subscribe to a family of topics; learn the current state at once.

A monitor subscribes to every ``orders.*`` topic with one pattern (``*`` is one
segment, ``>`` one or more). The database connection's state is a sticky event:
the bus keeps the last one, so a dashboard started later shows at once whether
the database is up, instead of waiting for the next change.
"""

from __future__ import annotations

from eventbus import Event, EventBus, subscribe


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class Connection(Event, topic="db.connection", sticky=True):
    """The database connection's state; the bus keeps the latest."""

    up: bool
    url: str


class OrderMonitor:
    @subscribe("orders.*")  # orders.placed, orders.shipped, ...; not orders.eu.shipped
    def seen(self, event: Event) -> None:
        print(f"monitor: {event.topic}")

    @subscribe("orders.>", priority=-1)  # any depth, after the monitor
    def audit(self, event: Event) -> None:
        print(f"audit: {event.topic}")


class Dashboard:
    @subscribe(Connection, sticky=True)  # also the kept state, when registered
    def show(self, event: Connection) -> None:
        print(f"dashboard: database {'up' if event.up else 'down'} at {event.url}")


def main() -> None:
    with EventBus(strategy="sync") as bus:
        bus.register(OrderMonitor())
        bus.post(OrderPlaced(order_id=1))
        bus.post("orders.eu.shipped", {"order_id": 1})
        print(f"orders.placed reaches {[s.name for s in bus.subscribers('orders.placed')]}")

        bus.post(Connection(up=True, url="db:5432"))  # nobody listens yet: kept all the same
        bus.register(Dashboard())  # shows the kept state at once
        bus.post(Connection(up=False, url="db:5432"))
        kept = bus.sticky(Connection)
        print(f"kept: up={kept.up if kept else None}")
        print(f"posted={bus.stats().posted}")  # the replay is not a new post


if __name__ == "__main__":
    main()
