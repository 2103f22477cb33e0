"""Delivery strategies: on which thread, and in which order, handlers run.

A strategy receives events that the bus has already accepted and resolved
(the event, its handler tuple and an optional `Delivery` handle) and runs the
handlers through the bus's `Dispatcher`, which applies the error policy and
counts. The bus never looks inside a strategy, so new strategies plug in
without touching it: implement `DeliveryStrategy` and pass an instance as
``EventBus(strategy=...)``.

This module holds the protocol and `SyncDelivery`; the thread-pool strategies
live in ``_threaded``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, final, runtime_checkable

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._dispatch import Dispatcher, ThreadState
    from ._registry import Subscriber, Subscription

__all__ = ["DeliveryStrategy", "SyncDelivery"]


@runtime_checkable
class DeliveryStrategy(Protocol):
    """What the bus needs from a delivery strategy.

    The bus calls `start` once, from its constructor; then `submit` for every
    accepted event, from any thread; `forget` from ``unregister``; `join`,
    `shutdown` and `counts` from the methods of the same names. A strategy
    instance belongs to one bus.
    """

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus whose handlers this strategy will call."""

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Deliver *event* to *handlers* (in their order), settling *delivery* if given.

        Raises:
            QueueFullError: The strategy has a bounded queue and no room came
                within *timeout* seconds; the event was not accepted.
        """

    def forget(self, subscriber: Subscriber) -> None:
        """*subscriber* was unregistered: drop its queued work, wait for its running calls.

        Its `Subscription`s are already inactive when this is called. Must not wait
        for a call running on the calling thread (a handler that unregisters itself).
        """

    def join(self, timeout: float | None) -> bool:
        """Wait until every submitted event has been handled; `False` on timeout."""

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Finish the submitted events (if *wait*) and release threads; `True` if all were handled."""

    def counts(self) -> tuple[int, int]:
        """Return (events waiting to start, events started but not finished)."""


@final
class SyncDelivery:
    """Deliver on the posting thread, before ``post`` returns.

    A post made from inside a handler on the same thread is queued and delivered
    after the current event has reached all its handlers (Guava's per-thread
    queue, breadth-first). So each thread's events reach every handler in post
    order, and no handler is re-entered by its own event.

    ``thread_safe=False`` handlers of one subscriber never run at the same time on
    two posting threads: a per-subscriber lock serialises them. No lock is ever
    held while another is taken (nested posts are queued, not delivered inline),
    so this cannot deadlock.

    A `KeyboardInterrupt` or `SystemExit` from a handler propagates to the caller of
    ``post``; the rest of that event's handlers are skipped, and events that the
    thread had queued stay queued until its next post (or ``join``).
    """

    __slots__ = ("_dispatcher",)

    def __init__(self) -> None:
        self._dispatcher: Dispatcher | None = None

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher."""
        if self._dispatcher is not None:
            raise RuntimeError("this SyncDelivery already serves a bus; give each bus its own strategy")
        self._dispatcher = dispatcher

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Deliver now, or queue behind the event this thread is delivering."""
        dispatcher = self._dispatcher
        assert dispatcher is not None, "start() was not called"
        state = dispatcher.state()
        queue = state.queue
        if state.dispatching:
            queue.append((event, handlers, delivery))
            return
        state.dispatching = True
        try:
            if queue:  # left over from a KeyboardInterrupt: they were posted first
                queue.append((event, handlers, delivery))
                event, handlers, delivery = queue.popleft()
            while True:
                self._deliver(dispatcher, state, event, handlers, delivery)
                if not queue:
                    break
                event, handlers, delivery = queue.popleft()
        finally:
            state.dispatching = False

    @staticmethod
    def _deliver(
        dispatcher: Dispatcher,
        state: ThreadState,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
    ) -> None:
        call = dispatcher.call
        for index, sub in enumerate(handlers):
            try:
                if sub.thread_safe:
                    call(sub, event, delivery, index, state, reraise=True)
                else:
                    with sub.owner.lock:
                        call(sub, event, delivery, index, state, reraise=True)
            except BaseException:
                if delivery is not None:  # the interrupted event: settle what will not run
                    for skipped in range(index + 1, len(handlers)):
                        delivery._settle(skipped)
                raise

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no other thread is inside one of the subscriber's serialised handlers."""
        # The lock is re-entrant, so a handler that unregisters its own subscriber
        # passes straight through instead of waiting for itself.
        with subscriber.lock:
            pass

    def join(self, timeout: float | None) -> bool:
        """Deliver this thread's leftovers, then wait until no thread is mid-delivery."""
        dispatcher = self._dispatcher
        assert dispatcher is not None, "start() was not called"
        mine = dispatcher.state()
        if mine.queue and not mine.dispatching:
            event, handlers, delivery = mine.queue.popleft()
            self.submit(event, handlers, delivery, None)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.0001
        while any((s.dispatching or s.queue) and s is not mine for s in dispatcher.states()):
            # Other threads deliver on their own stacks; all we can do is watch them finish.
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)
        return not (mine.queue and not mine.dispatching)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Nothing to stop: handlers ran on their posters' threads. Optionally join."""
        return self.join(timeout) if wait else self.counts() == (0, 0)

    def counts(self) -> tuple[int, int]:
        """Return (events queued on any thread, threads in the middle of a delivery)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return 0, 0
        states = dispatcher.states()
        return sum(len(s.queue) for s in states), sum(1 for s in states if s.dispatching)
