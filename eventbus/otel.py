"""OpenTelemetry traces and metrics for a bus: ``instrument(bus)`` and ``uninstrument(bus)``.

Needs the extra ``eventbus[otel]`` (``opentelemetry-api`` only; the application
chooses and configures the SDK)::

    from eventbus.otel import instrument

    instrument(bus)  # uses the global tracer and meter providers

What it records:

- a **PRODUCER** span ``publish {topic}`` for every accepted event, posted or
  published (``send {topic}`` when a bridge sends it to its engine), ended once
  the event is accepted; an event posted by a handler is a child of that
  handler's span;
- a **CONSUMER** span ``process {topic}`` for **every handler call** (one per
  handler, not one per event: handlers of one event may run on different
  threads, and each call has its own duration and outcome), a child of the
  event's producer span, in another process too: a bridge carries the W3C
  ``traceparent``/``tracestate`` in the CloudEvents envelope;
- the messaging semantic conventions' attributes (``messaging.system`` =
  ``"eventbus"``, ``messaging.destination.name`` = the topic,
  ``messaging.message.id`` = the event's context id,
  ``messaging.message.conversation_id`` = its correlation id,
  ``messaging.operation.type``, ``messaging.consumer.group.name`` for bridged
  events), plus ``eventbus.bus`` and ``eventbus.handler``;
- a failing handler's span gets status ERROR and an exception event; the error
  policy goes on as before (``on_error``, ``Delivery.result()``);
- metrics: the counters ``eventbus.published``, ``eventbus.delivered``,
  ``eventbus.failed``, ``eventbus.dead`` (observed from ``bus.stats()``), the
  gauge ``eventbus.queued`` and the histogram ``messaging.process.duration``
  (seconds per handler call).

Nothing of it costs anything on a bus that is not instrumented: the bus looks
at its instrumentation only on its checking post path, which an instrumented
bus takes for every post. ``import eventbus`` never imports OpenTelemetry.
Added in version 0.2.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, final

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import NonRecordingSpan, SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ._context import Pending, handling
from ._events import topic_of
from ._scan import call_target

if TYPE_CHECKING:
    from ._bridge import Bridge
    from ._bus import EventBus
    from ._registry import Subscriber, Subscription

__all__ = ["instrument", "is_instrumented", "uninstrument"]

_SYSTEM: Final = "eventbus"
_propagator: Final = TraceContextTextMapPropagator()
_instrumented: weakref.WeakKeyDictionary[EventBus, _Instrumentation] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("eventbus")
    except PackageNotFoundError:  # pragma: no cover - a source checkout that was never installed
        return "0"


def instrument(
    bus: EventBus,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> None:
    """Record spans and metrics of *bus* with OpenTelemetry (idempotent).

    Args:
        bus: The bus.
        tracer_provider: Where spans go; the global provider if not given.
        meter_provider: Where metrics go; the global provider if not given.
    """
    with _lock:
        if bus in _instrumented:
            return
        made = _Instrumentation(bus, tracer_provider, meter_provider)
        _instrumented[bus] = made
    made.start(bus)


def uninstrument(bus: EventBus) -> bool:
    """Stop recording *bus*; its handlers and its post are as before. `False` if it was not instrumented.

    Metrics instruments cannot be removed from a meter: once uninstrumented, their
    callbacks report nothing for this bus.
    """
    with _lock:
        made = _instrumented.pop(bus, None)
    if made is None:
        return False
    made.stop(bus)
    return True


def is_instrumented(bus: EventBus) -> bool:
    """Whether `instrument` was called on *bus* (and `uninstrument` not since)."""
    return bus in _instrumented


def _destination(event: object) -> str:
    topic = topic_of(event)
    return topic if topic is not None else type(event).__qualname__


def _parent_of(found: Pending | None) -> otel_context.Context | None:
    """The OpenTelemetry context that a consumer span of the event in *found* is a child of."""
    if found is None:
        return None
    producer = found.extra
    if isinstance(producer, trace.SpanContext):
        return trace.set_span_in_context(NonRecordingSpan(producer))
    if found.headers:  # it came through a bridge: the sender's producer span
        return _propagator.extract(found.headers)
    return None


@final
class _Instrumentation:
    """One instrumented bus: the bus's tracer hook, the handler wrappers, the metrics."""

    def __init__(
        self,
        bus: EventBus,
        tracer_provider: trace.TracerProvider | None,
        meter_provider: metrics.MeterProvider | None,
    ) -> None:
        self.bus_name = bus.name
        self.tracer = trace.get_tracer("eventbus", _version(), tracer_provider)
        meter = metrics.get_meter("eventbus", _version(), meter_provider)
        self.active = True
        self._funcs: dict[int, tuple[Callable[[Any, Any], object], Callable[[Any, Any], object]]] = {}
        self._wrapped: list[tuple[Subscription, Callable[[Any, Any], object]]] = []
        self._coroutines: list[tuple[Any, Any]] = []
        self._lock = threading.Lock()
        self.duration = meter.create_histogram(
            "messaging.process.duration", unit="s", description="How long eventbus handler calls took."
        )
        ref = weakref.ref(bus)
        attributes = {"messaging.system": _SYSTEM, "eventbus.bus": bus.name}

        def observe(field: str) -> Callable[[CallbackOptions], Iterable[Observation]]:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                found = ref()
                if found is None or not self.active:
                    return []
                return [Observation(getattr(found.stats(), field), attributes)]

            return callback

        for name, field, description, unit in (
            ("eventbus.published", "posted", "Events accepted (posted or published).", "{event}"),
            ("eventbus.delivered", "delivered", "Handler calls that returned.", "{call}"),
            ("eventbus.failed", "failed", "Handler calls that raised.", "{call}"),
            ("eventbus.dead", "dead", "Events that reached no handler.", "{event}"),
        ):
            meter.create_observable_counter(name, [observe(field)], unit=unit, description=description)
        meter.create_observable_gauge(
            "eventbus.queued", [observe("queued")], unit="{event}", description="Events waiting to start."
        )

    # -- installing ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        bus._set_tracer(self)
        for record in bus._registry.records():
            self.registered(record)
        # Handlers of one subscriber under several keys share one func, and so one wrapper
        # (see _wrap): resolve the handler tuples again with the wrappers.
        bus._registry.dispatch = {}

    def stop(self, bus: EventBus) -> None:
        self.active = False
        bus._set_tracer(None)
        with self._lock:
            for sub, func in self._wrapped:
                sub.func = func
            for target, coroutine in self._coroutines:
                target.__wrapped__ = coroutine
            self._wrapped.clear()
            self._coroutines.clear()
        bus._registry.dispatch = {}  # handler tuples were resolved with the wrappers

    def registered(self, record: Subscriber) -> None:
        """Wrap *record*'s handlers in consumer spans (the bus calls this for each registration)."""
        with self._lock:
            self._wrap_all(record.subscriptions)

    def _wrap_all(self, subs: tuple[Subscription, ...]) -> None:
        # A loop of its own, outside the `with` (CPython 3.13.0, see tests/test_interrupt_shapes.py).
        for sub in subs:
            self._wrap_one(sub)

    def _wrap_one(self, sub: Subscription) -> None:
        if not self.active or any(wrapped is sub for wrapped, _ in self._wrapped):
            return
        self._wrapped.append((sub, sub.func))
        sub.func = self._wrap(sub.func)
        coroutine = sub.coroutine
        if coroutine is not None and not getattr(coroutine, "__eventbus_traced__", False):
            self._coroutines.append((sub.target, coroutine))
            sub.target.__wrapped__ = self._wrap_coroutine(coroutine)

    def _wrap(self, func: Callable[[Any, Any], object]) -> Callable[[Any, Any], object]:
        # One wrapper per function, so that the subscriptions of one handler stay one call per event.
        found = self._funcs.get(id(func))
        if found is not None and found[0] is func:
            return found[1]
        consume = self.consume

        def traced(target: Any, event: Any) -> object:
            name = getattr(target if func is call_target else func, "__qualname__", "handler")
            return consume(name, event, func, target)

        traced.__qualname__ = getattr(func, "__qualname__", "traced")
        self._funcs[id(func)] = (func, traced)
        return traced

    def _wrap_coroutine(self, coroutine: Callable[[Any], Any]) -> Callable[[Any], Any]:
        tracer, duration = self.tracer, self.duration
        name = getattr(coroutine, "__qualname__", "handler")

        async def traced(event: Any) -> object:
            found = handling()
            span = self._consumer_span(tracer, name, event, found)
            started = time.perf_counter()
            error: BaseException | None = None
            try:
                with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    return await coroutine(event)
            except BaseException as exc:
                error = exc
                _record_failure(span, exc)
                raise
            finally:
                span.end()
                duration.record(time.perf_counter() - started, self._metric_attributes(name, event, error))

        traced.__eventbus_traced__ = True  # type: ignore[attr-defined]  # never wrapped twice
        traced.__qualname__ = name
        return traced

    # -- spans --------------------------------------------------------------------------------

    def start_producer(self, bus: EventBus, event: object, trace_: Pending, bridge: Bridge | None) -> object:
        """Start the PRODUCER span of an event being accepted; give its context to the event's trace."""
        context = trace_.context()
        destination = _destination(event)
        operation = "send" if bridge is not None else "publish"
        span = self.tracer.start_span(
            f"{operation} {destination}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": _SYSTEM,
                "messaging.destination.name": destination,
                "messaging.message.id": context.id,
                "messaging.message.conversation_id": context.correlation_id,
                "messaging.operation.type": operation,
                "messaging.operation.name": operation,
                "eventbus.bus": bus.name,
            },
        )
        trace_.extra = span.get_span_context()
        headers: dict[str, str] = {}
        _propagator.inject(headers, context=trace.set_span_in_context(span))
        if headers:
            trace_.headers = headers
        return span

    def end_producer(self, span: object, exc: BaseException | None) -> None:
        """End a PRODUCER span: an error if the event was refused (a full queue, a closed bus)."""
        assert isinstance(span, trace.Span)
        if exc is not None:
            _record_failure(span, exc)
        span.end()

    def _consumer_span(self, tracer: trace.Tracer, name: str, event: object, found: Pending | None) -> trace.Span:
        destination = _destination(event)
        attributes: dict[str, str | int] = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": destination,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "eventbus.bus": self.bus_name,
            "eventbus.handler": name,
        }
        if found is not None:
            context = found.context()
            attributes["messaging.message.id"] = context.id
            attributes["messaging.message.conversation_id"] = context.correlation_id
            if context.attempt != 1:
                attributes["messaging.message.delivery_attempt"] = context.attempt
            if found.group is not None:
                attributes["messaging.consumer.group.name"] = found.group
        return tracer.start_span(
            f"process {destination}", context=_parent_of(found), kind=SpanKind.CONSUMER, attributes=attributes
        )

    def consume(self, name: str, event: object, func: Callable[[Any, Any], object], target: Any) -> object:
        """Call one handler inside its CONSUMER span (the wrapped ``Subscription.func``)."""
        span = self._consumer_span(self.tracer, name, event, handling())
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                return func(target, event)
        except BaseException as exc:
            error = exc
            _record_failure(span, exc)
            raise
        finally:
            span.end()
            self.duration.record(time.perf_counter() - started, self._metric_attributes(name, event, error))

    def _metric_attributes(self, name: str, event: object, error: BaseException | None) -> dict[str, str]:
        attributes = {
            "messaging.system": _SYSTEM,
            "messaging.destination.name": _destination(event),
            "eventbus.bus": self.bus_name,
            "eventbus.handler": name,
        }
        if error is not None:
            attributes["error.type"] = type(error).__qualname__
        return attributes


def _record_failure(span: trace.Span, exc: BaseException) -> None:
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__qualname__}: {exc}"))
    span.set_attribute("error.type", type(exc).__qualname__)
