"""Tracing: who posted what, and where it went (needs ``pip install 'eventbus[otel]' opentelemetry-sdk``).

A handler's `current_context()` says which event it handles, which event caused
it and which chain it belongs to; ``bus.describe()`` shows the wiring; with
``eventbus.otel.instrument(bus)`` every post and every handler call is a span.
"""

from __future__ import annotations

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from eventbus import Event, EventBus, current_context, subscribe
from eventbus.otel import instrument


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class PaymentTaken(Event, topic="payments.taken"):
    order_id: int


class Shop:
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.seen: dict[str, object] = {}

    @subscribe(OrderPlaced, priority=10)
    def charge(self, event: OrderPlaced) -> None:
        self.seen["order"] = current_context()
        self.bus.post(PaymentTaken(order_id=event.order_id))

    @subscribe(PaymentTaken)
    def ship(self, event: PaymentTaken) -> None:
        self.seen["payment"] = current_context()


def span_tree(spans: list[ReadableSpan]) -> list[str]:
    """Each span under its parent, indented, in start order."""
    children: dict[int | None, list[ReadableSpan]] = {}
    for span in sorted(spans, key=lambda s: s.start_time or 0):
        children.setdefault(span.parent.span_id if span.parent else None, []).append(span)

    def lines(parent: int | None, depth: int) -> list[str]:
        out = []
        for span in children.get(parent, []):
            handler = (span.attributes or {}).get("eventbus.handler")
            out.append("  " * depth + span.name + (f"  ({handler})" if handler else ""))
            out.extend(lines(span.context.span_id if span.context else None, depth + 1))
        return out

    return lines(None, 0)


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with EventBus(strategy="sync", name="shop") as bus:
        shop = Shop(bus)
        bus.register(shop)
        print(bus.describe())
        instrument(bus, tracer_provider=provider)
        bus.post(OrderPlaced(order_id=7))
    order, payment = shop.seen["order"], shop.seen["payment"]
    print("payment caused by the order:", payment.causation_id == order.id)  # type: ignore[attr-defined]
    print("one chain:", payment.correlation_id == order.id)  # type: ignore[attr-defined]
    print("spans:")
    for line in span_tree(list(exporter.get_finished_spans())):
        print("  " + line)


if __name__ == "__main__":
    main()
