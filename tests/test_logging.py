"""Structured logs: failure records carry ``event_id``, ``correlation_id``, ``topic`` and ``handler``."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pytest

from eventbus import Event, EventBus, EventContext, current_context, subscribe

from .helpers import WAIT


class Order(Event, topic="logs.order"):
    n: int


class Refund(Event, topic="logs.refund"):
    n: int


class Keeper(logging.Handler):
    """Keeps the records of the ``eventbus`` logger, from any thread."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    keeper = Keeper()
    logger = logging.getLogger("eventbus")
    logger.addHandler(keeper)
    try:
        yield keeper.records
    finally:
        logger.removeHandler(keeper)


def test_failure_records_carry_the_event_fields(
    make_bus: Callable[..., EventBus], records: list[logging.LogRecord]
) -> None:
    """The default on_error's record has the failing event's id and correlation id, its topic and the handler."""
    bus = make_bus()
    contexts: list[EventContext] = []

    class Billing:
        @subscribe(Order)
        def charge(self, event: Order) -> None:
            bus.post(Refund(n=event.n))

        @subscribe(Refund)
        def refund(self, event: Refund) -> None:
            context = current_context()
            assert context is not None
            contexts.append(context)
            raise RuntimeError("refund failed")

    bus.register(Billing())
    bus.post(Order(n=1))
    for _ in range(3):  # join() does not promise what handlers post meanwhile: join until the failure shows
        assert bus.join(timeout=WAIT)
        if records:
            break
    (record,) = [r for r in records if r.levelno == logging.ERROR]
    (context,) = contexts
    assert record.event_id == context.id  # type: ignore[attr-defined]
    assert record.correlation_id == context.correlation_id  # type: ignore[attr-defined]
    assert record.correlation_id != record.event_id  # type: ignore[attr-defined]  # a child of the Order
    assert record.topic == "logs.refund"  # type: ignore[attr-defined]
    assert record.handler.endswith("Billing.refund")  # type: ignore[attr-defined]
    assert record.exc_info is not None


def test_a_formatter_can_print_the_fields(records: list[logging.LogRecord]) -> None:
    """The fields work in a plain logging format string, as the docs show."""
    bus = EventBus(strategy="sync")

    class Failing:
        @subscribe(Order)
        def on(self, event: Order) -> None:
            raise ValueError("no")

    bus.register(Failing())
    bus.post(Order(n=2))
    bus.shutdown()
    formatter = logging.Formatter("%(levelname)s %(topic)s %(handler)s event=%(event_id)s chain=%(correlation_id)s")
    (record,) = records
    line = formatter.format(record).splitlines()[0]
    assert line.startswith("ERROR logs.order ")
    assert f"event={record.event_id} chain={record.event_id}" in line  # type: ignore[attr-defined]  # a root


def test_a_failing_on_error_is_logged_with_the_fields(records: list[logging.LogRecord]) -> None:
    """When on_error itself raises, that record carries the fields too."""

    def broken(exc: BaseException, context: object) -> None:
        raise KeyError("hook broke")

    bus = EventBus(strategy="sync", on_error=broken)

    class Failing:
        @subscribe(Order)
        def on(self, event: Order) -> None:
            raise ValueError("no")

    bus.register(Failing())
    bus.post(Order(n=3))
    bus.shutdown()
    (record,) = records
    assert "on_error raised KeyError" in record.getMessage()
    assert record.topic == "logs.order"  # type: ignore[attr-defined]
    assert isinstance(record.event_id, str)  # type: ignore[attr-defined]


def test_structlog_style_processors_see_the_fields(records: list[logging.LogRecord]) -> None:
    """What structlog's ``ExtraAdder`` reads: the record's ``__dict__`` holds the four fields."""
    bus = EventBus(strategy="sync")

    class Failing:
        @subscribe(Order)
        def on(self, event: Order) -> None:
            raise ValueError("no")

    bus.register(Failing())
    bus.post(Order(n=4))
    bus.shutdown()
    (record,) = records
    assert {"event_id", "correlation_id", "topic", "handler"} <= vars(record).keys()
