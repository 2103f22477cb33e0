"""Testing with ``eventbus.testing``: record what was posted, and let handler errors fail the test.

Shows three test functions written with the helpers (they work in any test
runner; under pytest the plugin offers the same as the fixtures ``event_bus``,
``event_recorder`` and ``default_event_bus``): ``make_test_bus`` gives a
synchronous bus whose ``post`` raises what a handler raised; ``capture_events``
records the events and asserts on them in ``unittest.mock`` vocabulary; and
``isolated_default_bus`` swaps a test bus in as the default bus.
"""

from __future__ import annotations

import eventbus
from eventbus import Event, EventBus, subscribe
from eventbus.testing import capture_events, isolated_default_bus, make_test_bus


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int
    amount: float


class Checkout:  # the code under test posts events...
    def __init__(self, bus: EventBus) -> None:
        self.bus = bus

    def submit(self, order_id: int, amount: float) -> None:
        self.bus.post(OrderPlaced(order_id=order_id, amount=amount))


class Billing:  # ...and this subscriber handles them
    @subscribe
    def charge(self, event: OrderPlaced) -> None:
        if event.amount <= 0:
            raise ValueError(f"cannot charge {event.amount}")


def test_checkout_posts_one_order() -> None:
    bus = make_test_bus()
    with capture_events(bus, OrderPlaced) as posted:
        Checkout(bus).submit(1, 9.5)
    posted.assert_posted_once_with(OrderPlaced(order_id=1, amount=9.5))
    posted.assert_not_posted(where=lambda event: event.amount > 100)
    try:
        posted.assert_posted_times(2, OrderPlaced)
    except AssertionError as exc:
        print("  a failing assertion says:", str(exc).splitlines()[0])


def test_a_failing_handler_fails_the_test() -> None:
    bus = make_test_bus(on_error=lambda exc, context: None)  # raised below; no need to log it too
    bus.register(Billing())
    try:
        Checkout(bus).submit(2, 0.0)
    except ValueError as exc:
        print(f"  post() raised {exc!r}; note: {exc.__notes__[0]}")
    else:
        raise AssertionError("the handler's error did not reach the test")


def test_code_that_uses_the_default_bus() -> None:
    with isolated_default_bus() as bus, capture_events(bus) as posted:
        eventbus.post(OrderPlaced(order_id=3, amount=1.0))  # module-level post: the default bus
    posted.assert_posted(OrderPlaced, where=lambda event: event.order_id == 3)


def main() -> None:
    tests = [test_checkout_posts_one_order, test_a_failing_handler_fails_the_test, test_code_that_uses_the_default_bus]
    for test in tests:
        test()
        print(f"passed: {test.__name__}")


if __name__ == "__main__":
    main()
