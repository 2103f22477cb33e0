"""The contract between the bus and a delivery strategy.

`DeliveryStrategy` is what the bus calls; `is_strategy` is how it recognises one
(a compiled class cannot be a runtime-checkable protocol). What the bus hands a
strategy is the `Dispatcher` (see ``_dispatch``). Optional capabilities are asked
for by name: ``fast_post`` (`eventbus._bus.FastPost`), ``after_fork_in_child``,
and the awaitable ``wait_for_room``, ``ajoin`` and ``ashutdown`` (``_awaiting``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, Protocol, TypeGuard

if TYPE_CHECKING:
    from .._delivery import Delivery
    from .._dispatch import Dispatcher
    from .._registry import Subscriber, Subscription

__all__ = ["DeliveryStrategy", "is_strategy"]


class DeliveryStrategy(Protocol):
    """What the bus needs from a delivery strategy.

    The bus calls `start` once, from its constructor; then `submit` for every
    accepted event, from any thread; `forget` from ``unregister``; `join`,
    `shutdown` and `counts` from the methods of the same names. A strategy
    instance belongs to one bus.

    Robustness (SPEC section 5) is part of the contract: a `KeyboardInterrupt`
    landing anywhere in `submit` leaves the event accepted whole or not at all;
    after `shutdown`, `submit` raises `BusClosedError`; a strategy must not keep
    the bus alive (reach it through ``dispatcher.bus``, which is weak); when the
    bus is garbage-collected, ``shutdown(False, None)`` is called and the strategy
    should deliver what it accepted and let its threads end. A strategy may also
    define ``after_fork_in_child()``, which the bus calls in a forked child
    process (on the thread that forked, the only one there) to start afresh: new
    locks, empty queues, fresh workers.
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

        Once the event is accepted, count it: ``dispatcher.state().posted += 1``
        on the calling thread (the bus counts only the events it drops itself).

        Raises:
            QueueFullError: The strategy has a bounded queue and no room came
                within *timeout* seconds; the event was not accepted.
        """

    def forget(self, subscriber: Subscriber) -> None:
        """*subscriber* was unregistered: drop its queued work, wait for its running calls.

        Its `Subscription`s are already inactive when this is called. Waits for
        calls of any of its handlers running on other threads, ``thread_safe=True``
        ones included. Must not wait for a call running on the calling thread (a
        handler that unregisters itself).
        """

    def join(self, timeout: float | None) -> bool:
        """Wait until every event submitted before the call has been handled; `False` on timeout.

        Events submitted while it waits (a producer that keeps posting) are not
        waited for, so that a busy bus cannot starve it.
        """

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Finish the submitted events (if *wait*) and release threads; `True` if all were handled."""

    def counts(self) -> tuple[int, int]:
        """Return (units waiting to start, units started but not finished).

        A unit is an accepted event, or a handler call of it that a strategy set
        aside to run later (a thread pool parks a call to a busy
        ``thread_safe=False`` subscriber in that subscriber's line). Both numbers
        are 0 once everything accepted has been handled; ``stats()`` reports them
        as ``queued`` and ``running``.
        """


_STRATEGY_METHODS: Final = ("start", "submit", "forget", "join", "shutdown", "counts")


def is_strategy(obj: object) -> TypeGuard[DeliveryStrategy]:
    """Whether *obj* has every method of `DeliveryStrategy`.

    What ``@runtime_checkable`` would check, which the compiled build cannot offer:
    mypyc compiles this module, and a compiled class is not a runtime protocol.
    """
    return all(callable(getattr(obj, name, None)) for name in _STRATEGY_METHODS)
