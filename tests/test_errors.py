"""Errors: the exception hierarchy and the error policy (nothing dropped, nothing stops delivery)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import FrozenInstanceError

import pytest

from eventbus import (
    BusClosedError,
    ErrorContext,
    Event,
    EventBus,
    EventBusError,
    EventBusWarning,
    QueueFullError,
    SubscriptionError,
    subscribe,
)

from .helpers import WAIT, ErrorLog, Recorder


class OrderPlaced(Event, topic="errors.orders"):
    order_id: int = 0


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (SubscriptionError, (EventBusError, TypeError)),
        (BusClosedError, (EventBusError, RuntimeError)),
        (QueueFullError, (EventBusError,)),
        (EventBusError, (Exception,)),
        (EventBusWarning, (Warning,)),
    ],
)
def test_exception_hierarchy(error: type[BaseException], bases: tuple[type[BaseException], ...]) -> None:
    """Every eventbus error derives from EventBusError and from the builtin category it belongs to."""
    assert issubclass(error, bases)
    assert error.__module__ == "eventbus"


def test_subscription_error_carries_subscriber_and_handler() -> None:
    """SubscriptionError keeps the offending object and handler name for programs that inspect it."""
    error = SubscriptionError("message", subscriber=42, handler="A.b")
    assert (str(error), error.subscriber, error.handler) == ("message", 42, "A.b")
    assert SubscriptionError("bare").subscriber is None


def test_registration_error_message_names_class_method_and_fix(make_bus: Callable[..., EventBus]) -> None:
    """A registration error names the class and method, shows the parameters and says what to write instead."""

    class Billing:
        @subscribe(OrderPlaced)
        def charge(self, event: OrderPlaced, amount: int) -> None:
            pass

    with pytest.raises(SubscriptionError) as caught:
        make_bus().register(Billing())
    lines = str(caught.value).splitlines()
    assert lines[0].startswith(f"{Billing.__qualname__}.charge: must take exactly one event argument")
    assert re.search(r"\(event: '?OrderPlaced'?, amount: '?int'?\)", lines[0])  # quoted under postponed annotations
    assert lines[1].startswith("Write it as `def handler(self, event: SomeEvent) -> None`")


def test_handler_that_raises_does_not_stop_the_others(make_bus: Callable[..., EventBus], recorder: Recorder) -> None:
    """If a handler raises, the other handlers still receive the event, and later events still flow."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    class Sub:
        @subscribe(OrderPlaced, priority=1)
        def before(self, event: OrderPlaced) -> None:
            recorder("before", event)

        @subscribe(OrderPlaced)
        def boom(self, event: OrderPlaced) -> None:
            raise ValueError(event.order_id)

        @subscribe(OrderPlaced, priority=-1)
        def after(self, event: OrderPlaced) -> None:
            recorder("after", event)

    bus.register(Sub())
    bus.post(OrderPlaced(order_id=1))
    bus.post(OrderPlaced(order_id=2))
    assert bus.join(timeout=WAIT)
    assert recorder.calls == [
        ("before", OrderPlaced(order_id=1)),
        ("after", OrderPlaced(order_id=1)),
        ("before", OrderPlaced(order_id=2)),
        ("after", OrderPlaced(order_id=2)),
    ]
    assert [exc.args for exc in errors.exceptions()] == [(1,), (2,)]


def test_on_error_gets_the_original_exception_and_its_context(make_bus: Callable[..., EventBus]) -> None:
    """`on_error(exc, context)` receives the very exception and bus, event, subscriber, handler and topic."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)
    raised: list[BaseException] = []

    class Billing:
        @subscribe(OrderPlaced)
        def charge(self, event: OrderPlaced) -> None:
            exc = LookupError("no such card")
            raised.append(exc)
            raise exc

    billing = Billing()
    bus.register(billing)
    event = OrderPlaced(order_id=7)
    bus.post(event)
    assert bus.join(timeout=WAIT)
    ((exc, context),) = errors.reports
    assert exc is raised[0]
    assert context == ErrorContext(
        bus=bus, event=event, subscriber=billing, handler=Billing.charge.__qualname__, topic="errors.orders"
    )
    assert context.handler.endswith("Billing.charge")
    assert context.event is event
    assert context.bus is bus
    assert context.subscriber is billing


def test_error_context_of_a_plain_function_has_no_subscriber(make_bus: Callable[..., EventBus]) -> None:
    """For a plain function handler, `context.subscriber` is None; a plain object event has no topic."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    @subscribe(int)
    def on_int(event: int) -> None:
        raise ValueError(event)

    bus.register(on_int)
    bus.post(3)
    assert bus.join(timeout=WAIT)
    ((_, context),) = errors.reports
    assert (context.subscriber, context.handler, context.event, context.topic) == (None, on_int.__qualname__, 3, None)


def test_error_context_is_frozen() -> None:
    """The context handed to `on_error` cannot be changed."""
    context = ErrorContext(bus=None, event=1, subscriber=None, handler="h", topic=None)
    with pytest.raises(FrozenInstanceError):
        context.handler = "other"  # type: ignore[misc]  # the point of the test


def test_default_on_error_logs_the_traceback_and_context(
    make_bus: Callable[..., EventBus], caplog: pytest.LogCaptureFixture
) -> None:
    """Without `on_error`, a failure is logged at ERROR on the `eventbus` logger with its traceback."""
    bus = make_bus(name="billing-bus")

    class Billing:
        @subscribe(OrderPlaced)
        def charge(self, event: OrderPlaced) -> None:
            raise ValueError("card declined")

    bus.register(Billing())
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        bus.post(OrderPlaced(order_id=9))
        assert bus.join(timeout=WAIT)
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)
    assert record.exc_info[2] is not None  # the traceback itself
    message = record.getMessage()
    for fact in (Billing.charge.__qualname__, "ValueError", "errors.orders", "billing-bus", "order_id=9"):
        assert fact in message
    assert "card declined" in caplog.text
    assert "Traceback" in caplog.text


def test_on_error_that_raises_is_logged_and_delivery_goes_on(
    make_bus: Callable[..., EventBus], recorder: Recorder, caplog: pytest.LogCaptureFixture
) -> None:
    """If `on_error` itself raises, that is logged with the original error, post returns and delivery continues."""

    def broken_hook(exc: BaseException, context: ErrorContext) -> None:
        raise RuntimeError("hook broke")

    bus = make_bus(on_error=broken_hook)

    class Sub:
        @subscribe(OrderPlaced, priority=1)
        def boom(self, event: OrderPlaced) -> None:
            raise ValueError("original")

        @subscribe(OrderPlaced)
        def after(self, event: OrderPlaced) -> None:
            recorder("after", event)

    bus.register(Sub())
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        assert bus.post(OrderPlaced()) is None  # type: ignore[func-returns-value]  # post returns nothing
        assert bus.join(timeout=WAIT)
    assert recorder.names() == ["after"]
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)
    assert "original" in record.getMessage()
    assert Sub.boom.__qualname__ in record.getMessage()
    assert bus.stats().failed == 1


def test_when_filter_that_raises_is_a_handler_failure(make_bus: Callable[..., EventBus], recorder: Recorder) -> None:
    """A `when=` filter that raises goes to `on_error` like a handler error; the others still run."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    def broken_filter(event: OrderPlaced) -> bool:
        raise KeyError("filter")

    class Sub:
        @subscribe(OrderPlaced, when=broken_filter, priority=1)
        def filtered(self, event: OrderPlaced) -> None:
            recorder("filtered", event)

        @subscribe(OrderPlaced)
        def plain(self, event: OrderPlaced) -> None:
            recorder("plain", event)

    bus.register(Sub())
    bus.post(OrderPlaced())
    assert bus.join(timeout=WAIT)
    assert recorder.names() == ["plain"]
    assert [type(exc) for exc in errors.exceptions()] == [KeyError]
    assert errors.reports[0][1].handler == Sub.filtered.__qualname__
    stats = bus.stats()
    assert (stats.delivered, stats.failed) == (1, 1)


def test_publish_result_raises_every_failure_with_a_note_naming_its_handler(
    make_bus: Callable[..., EventBus],
) -> None:
    """`publish().result()` raises an ExceptionGroup of the original errors in call order, each noting its handler."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    class Billing:
        @subscribe(OrderPlaced, priority=2)
        def charge(self, event: OrderPlaced) -> None:
            raise ValueError("charge")

        @subscribe(OrderPlaced, priority=1)
        def ok(self, event: OrderPlaced) -> str:
            return "ok"

        @subscribe(OrderPlaced)
        def refund(self, event: OrderPlaced) -> None:
            raise TypeError("refund")

    bus.register(Billing())
    with pytest.raises(ExceptionGroup) as caught:
        bus.publish(OrderPlaced()).result(timeout=WAIT)
    charge, refund = caught.value.exceptions
    assert [str(charge), str(refund)] == ["charge", "refund"]
    assert charge.__notes__ == [f"raised by handler {Billing.charge.__qualname__} for topic 'errors.orders'"]
    assert refund.__notes__ == [f"raised by handler {Billing.refund.__qualname__} for topic 'errors.orders'"]
    assert errors.exceptions() == [charge, refund]  # on_error got the same objects


def test_failing_handler_calls_are_counted(make_bus: Callable[..., EventBus]) -> None:
    """Raising handler calls count as `failed`, the others as `delivered`."""
    bus = make_bus(on_error=ErrorLog())

    class Sub:
        @subscribe(OrderPlaced)
        def boom(self, event: OrderPlaced) -> None:
            if event.order_id % 2:
                raise ValueError(event.order_id)

    bus.register(Sub())
    for order_id in range(10):
        bus.post(OrderPlaced(order_id=order_id))
    assert bus.join(timeout=WAIT)
    stats = bus.stats()
    assert (stats.posted, stats.delivered, stats.failed) == (10, 5, 5)
