"""`Delivery`: the handle that `publish()` returns: done, wait, result, callbacks, await."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from eventbus import Delivery, Event, EventBus, subscribe

from .helpers import WAIT, ErrorLog


class Ping(Event, topic="delivery.ping"):
    n: int = 0


def failed(message: str, note: str) -> ValueError:
    exc = ValueError(message)
    exc.add_note(note)
    return exc


def test_delivery_with_no_handlers_is_done_at_once() -> None:
    """A delivery of zero handlers is done and has no values."""
    delivery = Delivery(Ping(), 0)
    assert delivery.done()
    assert delivery.wait(timeout=0)
    assert delivery.result(timeout=0) == []
    assert delivery.event == Ping()


def test_result_lists_values_in_handler_order_whatever_the_settle_order() -> None:
    """Values come back in handler (call) order, even if handlers finish out of order; skipped ones add nothing."""
    delivery = Delivery(Ping(), 4)
    delivery._settle(2, "c")
    assert not delivery.done()
    delivery._settle(0, "a")
    delivery._settle(3)  # skipped: filtered out or unregistered
    assert not delivery.done()
    delivery._settle(1, None)
    assert delivery.done()
    assert delivery.result() == ["a", None, "c"]


def test_result_raises_an_exception_group_of_the_original_exceptions_in_handler_order() -> None:
    """Failures raise an ExceptionGroup holding the very exceptions, in handler order, notes intact."""
    first = failed("first", "raised by handler A.first")
    second = failed("second", "raised by handler B.second")
    delivery = Delivery(Ping(), 3)
    delivery._settle(2, error=second)
    delivery._settle(1, "ok")
    delivery._settle(0, error=first)
    with pytest.raises(ExceptionGroup) as caught:
        delivery.result(timeout=0)
    assert caught.value.exceptions == (first, second)
    assert "2 handler(s) failed for Ping" in str(caught.value)
    assert first.__notes__ == ["raised by handler A.first"]


def test_result_raises_a_base_exception_group_for_keyboard_interrupt() -> None:
    """A handler's BaseException that is not an Exception makes the group a BaseExceptionGroup."""
    interrupt = KeyboardInterrupt()
    delivery = Delivery(Ping(), 1)
    delivery._settle(0, error=interrupt)
    with pytest.raises(BaseExceptionGroup) as caught:
        delivery.result()
    assert not isinstance(caught.value, ExceptionGroup)
    assert caught.value.exceptions == (interrupt,)


def test_wait_and_result_time_out_on_an_unfinished_delivery() -> None:
    """`wait(timeout)` returns False and `result(timeout)` raises TimeoutError while handlers are pending."""
    delivery = Delivery(Ping(), 1)
    assert delivery.wait(timeout=0.01) is False
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.01 s"):
        delivery.result(timeout=0.01)
    assert "pending=1" in repr(delivery)
    delivery._settle(0, 1)
    assert delivery.result(timeout=0.01) == [1]
    assert "done" in repr(delivery)


def test_wait_wakes_when_another_thread_finishes_the_delivery() -> None:
    """A thread blocked in `wait()` wakes up when the last handler settles on another thread."""
    delivery = Delivery(Ping(), 2)
    waiting = threading.Event()
    results: list[bool] = []

    def wait_for_it() -> None:
        waiting.set()
        results.append(delivery.wait(timeout=WAIT))

    waiter = threading.Thread(target=wait_for_it)
    waiter.start()
    assert waiting.wait(timeout=WAIT)
    delivery._settle(0, "a")
    delivery._settle(1, "b")
    waiter.join(timeout=WAIT)
    assert results == [True]
    assert delivery.result(timeout=0) == ["a", "b"]


def test_done_callbacks_run_once_when_done_or_at_once_if_already_done() -> None:
    """`add_done_callback` calls back once on completion, or immediately for a finished delivery."""
    delivery = Delivery(Ping(), 1)
    calls: list[tuple[str, Delivery]] = []
    delivery.add_done_callback(lambda d: calls.append(("early", d)))
    assert calls == []
    delivery._settle(0, None)
    delivery.add_done_callback(lambda d: calls.append(("late", d)))
    assert calls == [("early", delivery), ("late", delivery)]


def test_a_failing_done_callback_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    """A done-callback that raises does not break the delivery or the callbacks after it; it is logged."""
    delivery = Delivery(Ping(), 1)
    calls: list[str] = []

    def broken(_: Delivery) -> None:
        raise RuntimeError("callback broke")

    delivery.add_done_callback(broken)
    delivery.add_done_callback(lambda _: calls.append("after"))
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        delivery._settle(0, "value")
    assert calls == ["after"]
    assert delivery.result(timeout=0) == ["value"]
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert record.exc_info is not None
    assert "callback broke" in str(record.exc_info[1])


def test_delivery_is_awaitable() -> None:
    """`await delivery` returns the values once another thread finishes it, without blocking the loop."""
    delivery = Delivery(Ping(), 1)

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.call_soon(threading.Thread(target=delivery._settle, args=(0, "v")).start)
        return await delivery

    assert asyncio.run(main()) == ["v"]


def test_awaiting_a_failed_delivery_raises_the_group() -> None:
    """`await delivery` raises the ExceptionGroup that `result()` would."""
    delivery = Delivery(Ping(), 1)
    boom = ValueError("boom")
    delivery._settle(0, error=boom)

    async def main() -> list[Any]:
        return await delivery

    with pytest.raises(ExceptionGroup) as caught:
        asyncio.run(main())
    assert caught.value.exceptions == (boom,)


def test_settling_after_the_awaiting_loop_closed_is_harmless() -> None:
    """If the awaiting coroutine gave up and its loop closed, finishing the delivery later raises nothing."""
    delivery = Delivery(Ping(), 1)

    async def give_up() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.ensure_future(_await(delivery)), timeout=0.01)

    asyncio.run(give_up())
    delivery._settle(0, "late")
    assert delivery.result(timeout=0) == ["late"]


async def _await(delivery: Delivery) -> list[Any]:
    return await delivery


def test_publish_returns_a_delivery_with_notes_naming_handler_and_topic(make_bus: Callable[..., EventBus]) -> None:
    """On a bus, a failing handler's exception carries a note with the handler's name and the topic."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    class Billing:
        @subscribe(Ping, priority=1)
        def charge(self, event: Ping) -> None:
            raise ValueError("declined")

        @subscribe(Ping)
        def audit(self, event: Ping) -> str:
            return "audited"

    bus.register(Billing())
    delivery = bus.publish(Ping())
    with pytest.raises(ExceptionGroup) as caught:
        delivery.result(timeout=WAIT)
    (exc,) = caught.value.exceptions
    assert isinstance(exc, ValueError)
    assert exc is errors.exceptions()[0]
    assert exc.__notes__ == [f"raised by handler {Billing.charge.__qualname__} for topic 'delivery.ping'"]
