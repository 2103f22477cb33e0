"""`EventBus.describe()`: the topology as a table, as data and as a Mermaid diagram."""

from __future__ import annotations

import json

from eventbus import Event, EventBus, Topology, subscribe
from eventbus.testing import InMemoryEngine


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class BigOrderPlaced(OrderPlaced):
    pass


class Shipped(Event, topic="orders.shipped"):
    order_id: int


class Billing:
    @subscribe(OrderPlaced, priority=10)
    def charge(self, event: OrderPlaced) -> None: ...

    @subscribe("orders.placed", thread_safe=True, when=lambda e: True)
    def audit(self, event: Event) -> None: ...


class Shipping:
    @subscribe
    async def ship(self, event: BigOrderPlaced) -> None: ...


def make_bus() -> EventBus:
    bus = EventBus(strategy="sync", name="shop")
    bus.register(Billing())
    bus.register(Shipping())
    return bus


def test_routes_list_each_class_and_topic_with_handlers_in_call_order() -> None:
    """Every subscribed class and topic is a route; its handlers come in call order, with options."""
    with make_bus() as bus:
        topology = bus.describe()
    assert isinstance(topology, Topology)
    assert topology.bus == "shop"
    assert topology.strategy == "SyncDelivery()"
    routes = {(route.kind, route.key): route for route in topology.routes}
    assert list(routes) == [("class", "BigOrderPlaced"), ("class", "OrderPlaced"), ("topic", "orders.placed")]
    big = routes["class", "BigOrderPlaced"]
    assert [h.name for h in big.handlers] == ["Billing.charge", "Billing.audit", "Shipping.ship"]
    assert big.handlers[0].priority == 10
    assert big.handlers[1].thread_safe
    assert big.handlers[1].filtered
    assert big.handlers[1].subscribed_to == "orders.placed"
    assert big.handlers[2].is_async
    # A topic reaches the handlers of every class that carries it (BigOrderPlaced inherits it).
    assert [h.name for h in routes["topic", "orders.placed"].handlers] == [
        "Billing.charge",
        "Billing.audit",
        "Shipping.ship",
    ]
    assert routes["class", "OrderPlaced"].topic == "orders.placed"


def test_text_table_names_every_handler_and_option() -> None:
    """str() is a readable table with the strategy, the positions and the options."""
    text = str(make_bus().describe())
    assert text.splitlines()[0] == "bus 'shop': SyncDelivery()"
    assert "class OrderPlaced  (topic 'orders.placed')" in text
    assert "  1. Billing.charge  [priority=10]" in text
    assert "  2. Billing.audit  [thread_safe, when=]  via orders.placed" in text
    assert "  3. Shipping.ship  [async]" in text


def test_to_dict_is_json_able_and_complete() -> None:
    """to_dict() survives a JSON round trip and carries what str() shows."""
    bus = EventBus(strategy="concurrent", workers=3, max_queued=50, name="pool")
    try:
        bus.register(Billing())
        data = json.loads(json.dumps(bus.describe().to_dict()))
    finally:
        bus.shutdown()
    assert data["strategy"] == "ConcurrentDelivery(workers=3, max_queued=50)"
    assert data["closed"] is False
    first = data["routes"][0]
    assert first["key"] == "OrderPlaced"
    assert first["handlers"][0] == {
        "name": "Billing.charge",
        "subscribed_to": "OrderPlaced",
        "priority": 10,
        "thread_safe": False,
        "filtered": False,
        "async": False,
    }


def test_mermaid_links_routes_to_handlers_and_bridges() -> None:
    """to_mermaid() is a flowchart: each route points to its handlers, numbered; bridges are engines."""
    engine = InMemoryEngine()
    bus = EventBus(strategy="sync", name="shop")
    try:
        bus.register(Billing())
        bus.bridge(engine, events=[Shipped], group="billing", namespace="shop", partitions=2)
        topology = bus.describe()
        mermaid = topology.to_mermaid()
    finally:
        bus.shutdown()
    assert mermaid.splitlines()[0] == "flowchart LR"
    assert 'route0["OrderPlaced<br/><i>orders.placed</i>"]' in mermaid
    assert "route0 -->|1| handler0" in mermaid
    assert 'handler0(["Billing.charge<br/><small>priority=10</small>"])' in mermaid
    shipped = next(i for i, route in enumerate(topology.routes) if route.key == "Shipped")
    assert f"route{shipped} -.->|sent| bridge0" in mermaid
    assert f"bridge0 -.->|received| route{shipped}" in mermaid
    (bridge,) = topology.bridges
    assert (bridge.classes, bridge.namespace, bridge.group, bridge.partitions) == (("Shipped",), "shop", "billing", 2)
    assert "bridge 0:" in str(topology)
    assert "group=billing" in str(topology)


def test_a_bridge_of_message_topics_lists_them() -> None:
    """Bridged Message topics and patterns appear in the bridge's description, text and data."""
    engine = InMemoryEngine()
    bus = EventBus(strategy="sync", name="audit")
    try:
        bus.bridge(engine, events=[Shipped, "audit.>", "billing.*"], group="audit", namespace="shop")
        topology = bus.describe()
    finally:
        bus.shutdown()
    (bridge,) = topology.bridges
    assert bridge.topics == ("audit.>", "billing.*")
    assert bridge.to_dict()["topics"] == ["audit.>", "billing.*"]
    assert "  topics: audit.>, billing.*" in str(topology)


def test_an_empty_bus_says_so() -> None:
    """A bus with no subscriptions describes itself as such, and a closed one says it is closed."""
    bus = EventBus(strategy="sync", name="empty")
    bus.shutdown()
    topology = bus.describe()
    assert topology.routes == ()
    assert topology.closed
    assert str(topology) == "bus 'empty' (closed): SyncDelivery()\n  no subscriptions"
    assert topology.to_mermaid() == "flowchart LR"
