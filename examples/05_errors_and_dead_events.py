"""Errors and dead events: no failure and no lost event goes unnoticed.

Shows that a failing handler does not stop the others; that its exception
reaches ``on_error`` with its context (the default logs it with the traceback);
that ``publish(...).result()`` raises the original exceptions in an
ExceptionGroup, each with a note naming its handler; that an unhandled event
comes back as a ``DeadEvent``; and that a malformed subscriber is refused.
"""

from __future__ import annotations

from eventbus import DeadEvent, ErrorContext, Event, EventBus, SubscriptionError, subscribe


class Payment(Event, topic="payments"):
    amount: int


class Refund(Event, topic="refunds"):
    amount: int


class Fraud:
    @subscribe(priority=10)  # runs first
    def check(self, event: Payment) -> str:
        if event.amount > 1000:
            raise ValueError(f"amount {event.amount} needs a review")
        return "fraud check passed"


class Accounting:
    @subscribe
    def book(self, event: Payment) -> str:
        return f"booked {event.amount}"

    @subscribe
    def dead_letter(self, event: DeadEvent) -> None:
        print(f"dead letter: nobody handles {event.event!r}")


class Broken:
    @subscribe
    def wrong(self, event: Payment, extra: int) -> None: ...


def report(exc: BaseException, context: ErrorContext) -> None:
    print(f"on_error: {context.handler} raised {exc!r} (topic {context.topic!r})")


def main() -> None:
    with EventBus(on_error=report) as bus:  # the default concurrent strategy
        bus.register(Fraud())
        bus.register(Accounting())
        print("result:", bus.publish(Payment(amount=10)).result(timeout=5))
        try:
            bus.publish(Payment(amount=5000)).result(timeout=5)
        except ExceptionGroup as group:
            for exc in group.exceptions:
                print(f"result() raised {exc!r}; note: {exc.__notes__[0]}")
        bus.post(Refund(amount=3))
        bus.join()
        try:
            bus.register(Broken())
        except SubscriptionError as exc:
            print("SubscriptionError:", str(exc).splitlines()[0])
        stats = bus.stats()
    print(f"stats: delivered={stats.delivered} failed={stats.failed} dead={stats.dead}")


if __name__ == "__main__":
    main()
