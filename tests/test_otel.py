"""OpenTelemetry: spans and metrics of an instrumented bus, with the real SDK's in-memory exporter and reader."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from eventbus import Event, EventBus, current_context, subscribe
from eventbus.otel import instrument, is_instrumented, uninstrument
from eventbus.testing import InMemoryEngine

from .conftest import STRATEGIES, new_bus
from .helpers import WAIT, child_python_env, wait_until


class Placed(Event, topic="otel.placed"):
    n: int


class Charged(Event, topic="otel.charged"):
    n: int


class Telemetry:
    """A tracer provider and a meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, bus: EventBus) -> None:
        instrument(bus, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def spans(self, count: int) -> list[ReadableSpan]:
        """The finished spans, once there are at least *count* (a consumer span ends after its handler)."""
        wait_until(lambda: len(self.exporter.get_finished_spans()) >= count, f"{count} spans were exported")
        return list(self.exporter.get_finished_spans())

    def metrics(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        assert data is not None
        found: dict[str, list[Any]] = {}
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    found.setdefault(metric.name, []).extend(metric.data.data_points)
        return found


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    made = Telemetry()
    yield made
    made.tracer_provider.shutdown()
    made.meter_provider.shutdown()


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [span for span in spans if span.name == name]


def test_producer_and_consumer_spans(make_bus: Callable[..., EventBus], telemetry: Telemetry) -> None:
    """One PRODUCER span per event; one CONSUMER span per handler call, its child; a failure is an error."""
    bus = make_bus(name="shop", on_error=lambda exc, context: None)
    ids: list[str] = []

    class Billing:
        @subscribe(Placed, priority=1)
        def charge(self, event: Placed) -> None:
            context = current_context()
            assert context is not None
            ids.append(context.id)

        @subscribe(Placed)
        def audit(self, event: Placed) -> None:
            raise ValueError("audit failed")

    bus.register(Billing())
    telemetry.instrument(bus)
    assert is_instrumented(bus)
    bus.post(Placed(n=1))
    assert bus.join(timeout=WAIT)
    spans = telemetry.spans(3)
    (producer,) = by_name(spans, "publish otel.placed")
    consumers = by_name(spans, "process otel.placed")
    assert producer.kind is SpanKind.PRODUCER
    assert producer.attributes is not None
    assert dict(producer.attributes) == {
        "messaging.system": "eventbus",
        "messaging.destination.name": "otel.placed",
        "messaging.message.id": ids[0],
        "messaging.message.conversation_id": ids[0],
        "messaging.operation.type": "publish",
        "messaging.operation.name": "publish",
        "eventbus.bus": "shop",
    }
    assert len(consumers) == 2
    assert producer.context is not None
    for span in consumers:
        assert span.kind is SpanKind.CONSUMER
        assert span.parent is not None
        assert span.parent.span_id == producer.context.span_id
        assert span.context is not None
        assert span.context.trace_id == producer.context.trace_id
        assert span.attributes is not None
        assert span.attributes["messaging.message.id"] == ids[0]
    failed = next(s for s in consumers if s.attributes and str(s.attributes["eventbus.handler"]).endswith("audit"))
    ok = next(s for s in consumers if s is not failed)
    assert failed.status.status_code is StatusCode.ERROR
    assert [event.name for event in failed.events] == ["exception"]
    assert failed.attributes is not None
    assert failed.attributes["error.type"] == "ValueError"
    assert ok.status.status_code is StatusCode.UNSET


def test_a_chain_is_one_trace(make_bus: Callable[..., EventBus], telemetry: Telemetry) -> None:
    """An event posted by a handler: its producer span is a child of that handler's consumer span."""
    bus = make_bus()

    class Chain:
        @subscribe(Placed)
        async def placed(self, event: Placed) -> None:  # async on purpose: on every strategy
            bus.post(Charged(n=event.n))

        @subscribe(Charged)
        def charged(self, event: Charged) -> None:
            pass

    telemetry.instrument(bus)  # instrumented before registering: new handlers are wrapped too
    bus.register(Chain())
    bus.post(Placed(n=1))
    spans = telemetry.spans(4)
    assert bus.join(timeout=WAIT)
    (root,) = by_name(spans, "publish otel.placed")
    (placed,) = by_name(spans, "process otel.placed")
    (child,) = by_name(spans, "publish otel.charged")
    (charged,) = by_name(spans, "process otel.charged")
    assert root.parent is None
    assert root.context is not None
    assert placed.context is not None
    assert child.context is not None
    assert placed.parent is not None
    assert child.parent is not None
    assert charged.parent is not None
    assert (placed.parent.span_id, child.parent.span_id, charged.parent.span_id) == (
        root.context.span_id,
        placed.context.span_id,
        child.context.span_id,
    )
    assert len({span.context.trace_id for span in (root, placed, child, charged) if span.context}) == 1
    assert child.attributes is not None
    assert root.attributes is not None
    assert child.attributes["messaging.message.conversation_id"] == root.attributes["messaging.message.id"]


def test_metrics(make_bus: Callable[..., EventBus], telemetry: Telemetry) -> None:
    """Published, delivered, failed and dead counters, the queue gauge and the handler-duration histogram."""
    bus = make_bus(name="metered", on_error=lambda exc, context: None)

    class Handler:
        @subscribe(Placed)
        def on(self, event: Placed) -> None:
            if event.n == 2:
                raise RuntimeError("two")

    bus.register(Handler())
    telemetry.instrument(bus)
    for n in range(3):
        bus.post(Placed(n=n))
    bus.post(Charged(n=9))  # nobody handles it: dead
    assert bus.join(timeout=WAIT)
    found = telemetry.metrics()
    values = {name: points[0].value for name, points in found.items() if name.startswith("eventbus.")}
    assert values == {
        "eventbus.published": 4,
        "eventbus.delivered": 2,
        "eventbus.failed": 1,
        "eventbus.dead": 1,
        "eventbus.queued": 0,
    }
    assert found["eventbus.published"][0].attributes == {"messaging.system": "eventbus", "eventbus.bus": "metered"}
    histogram = found["messaging.process.duration"]
    assert sum(point.count for point in histogram) == 3
    assert {point.attributes.get("error.type") for point in histogram} == {None, "RuntimeError"}


def test_uninstrument_restores_the_bus(telemetry: Telemetry) -> None:
    """After uninstrument(), no span is made, the handlers are the original ones and the fast post is back."""
    bus = EventBus(strategy="sync")
    calls: list[int] = []
    checked: list[object] = []

    class Handler:
        @subscribe(Placed)
        def on(self, event: Placed) -> None:
            calls.append(event.n)

    bus.register(Handler())
    (sub,) = bus.subscribers(Placed)
    original = sub.func
    checking = bus._accept

    def spy(event: object, *args: Any, **kwargs: Any) -> Any:
        checked.append(event)
        return checking(event, *args, **kwargs)

    bus.post(Placed(n=0))  # the first post of a thread takes the checking path once
    vars(bus)["_accept"] = spy  # which posts take the checking path from now on
    bus.post(Placed(n=0))
    assert checked == []  # the one-frame post
    telemetry.instrument(bus)
    telemetry.instrument(bus)  # idempotent
    assert sub.func is not original
    bus.post(Placed(n=1))
    assert len(checked) == 1  # instrumented: every post is checked, and makes its producer span
    assert len(telemetry.spans(2)) == 2
    assert uninstrument(bus)
    assert not uninstrument(bus)
    assert not is_instrumented(bus)
    assert sub.func is original
    bus.post(Placed(n=2))  # resolves the handler tuples again (the wrappers are gone)
    before = len(checked)
    bus.post(Placed(n=3))
    assert len(checked) == before  # the one-frame post again
    bus.shutdown()
    assert calls == [0, 0, 1, 2, 3]
    assert len(telemetry.exporter.get_finished_spans()) == 2


def test_a_handler_under_two_keys_is_still_called_once(telemetry: Telemetry) -> None:
    """Wrapping keeps one call per event for a handler subscribed under its class and its topic."""
    bus = EventBus(strategy="sync")
    calls: list[int] = []

    class Handler:
        @subscribe(Placed)
        @subscribe("otel.placed")
        def on(self, event: Placed) -> None:
            calls.append(event.n)

    bus.register(Handler())
    telemetry.instrument(bus)
    bus.post(Placed(n=1))
    bus.shutdown()
    assert calls == [1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_traceparent_crosses_a_bridge(strategy: str, telemetry: Telemetry) -> None:
    """The receiver's consumer span is a child of the sender's send span, in the same trace."""
    engine = InMemoryEngine()
    sender = EventBus(strategy="sync", name="sender")
    receiver = new_bus(strategy, name="receiver")
    try:

        class Far:
            @subscribe(Charged)
            def charged(self, event: Charged) -> None:
                pass

        receiver.register(Far())
        telemetry.instrument(sender)
        telemetry.instrument(receiver)
        sender.bridge(engine, events=[Charged], namespace="otel")
        receiver.bridge(engine, events=[Charged], group="far", namespace="otel")
        sender.post(Charged(n=1))
        spans = telemetry.spans(2)
    finally:
        sender.shutdown(timeout=WAIT)
        receiver.shutdown(timeout=WAIT)
    (send,) = by_name(spans, "send otel.charged")
    (process,) = by_name(spans, "process otel.charged")
    assert send.context is not None
    assert process.context is not None
    assert process.parent is not None
    assert process.parent.span_id == send.context.span_id
    assert process.context.trace_id == send.context.trace_id
    assert process.attributes is not None
    assert process.attributes["messaging.consumer.group.name"] == "far"
    assert send.attributes is not None
    assert process.attributes["messaging.message.id"] == send.attributes["messaging.message.id"]


def test_import_eventbus_does_not_import_opentelemetry() -> None:
    """OpenTelemetry is imported by eventbus.otel only."""
    code = "import sys, eventbus, eventbus.testing; print(sorted(m for m in sys.modules if 'opentelemetry' in m))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=child_python_env(), capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
