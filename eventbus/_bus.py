"""`EventBus`: register subscribers, post events, and manage the bus's lifetime."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Literal, final

from ._delivery import Delivery
from ._dispatch import BusStats, Dispatcher, ErrorContext, log_error
from ._errors import BusClosedError
from ._events import DeadEvent, Message
from ._registry import Registry, Subscription
from ._strategies import DeliveryStrategy, SyncDelivery
from ._threaded import ConcurrentDelivery, OrderedDelivery, _check_positive_int

__all__ = ["EventBus"]

StrategyName = Literal["sync", "ordered", "concurrent"]

_MISSING: Final[Any] = object()
_bus_numbers = itertools.count(1)


def _make_strategy(strategy: object, workers: int, max_queued: int) -> DeliveryStrategy:
    if strategy == "sync":
        return SyncDelivery()
    if strategy == "concurrent":
        return ConcurrentDelivery(workers=workers, max_queued=max_queued)
    if strategy == "ordered":
        return OrderedDelivery(workers=workers, max_queued=max_queued)
    if isinstance(strategy, str):
        raise ValueError(f"unknown strategy {strategy!r}; use 'sync', 'ordered', 'concurrent' or a DeliveryStrategy")
    if not isinstance(strategy, DeliveryStrategy):
        raise TypeError(f"strategy must be a strategy name or a DeliveryStrategy, not {strategy!r}")
    return strategy


@final
class EventBus:
    """An in-process event bus: subscribers register, publishers post events.

    ``EventBus()`` has the ancestor's defaults: the concurrent strategy with 8
    worker threads and room for 10,000 waiting events.

    Args:
        strategy: How handlers run: ``"concurrent"`` (the default) or
            ``"ordered"`` on a pool of worker threads, ``"sync"`` on the posting
            thread, or any `DeliveryStrategy` instance.
        workers: Worker threads of the thread-pool strategies.
        max_queued: How many accepted events may wait to start on the thread-pool
            strategies before ``post`` blocks (backpressure).
        on_error: Called as ``on_error(exc, context)`` for every handler failure;
            the default logs it with its traceback on the ``eventbus`` logger.
        name: A name for logs and reprs.

    A bus is a context manager: leaving the ``with`` block calls `shutdown`.
    """

    __slots__ = ("_closed", "_dispatcher", "_registry", "_strategy", "_submit", "name")

    def __init__(
        self,
        *,
        strategy: StrategyName | DeliveryStrategy = "concurrent",
        workers: int = 8,
        max_queued: int = 10_000,
        on_error: Callable[[BaseException, ErrorContext], object] | None = None,
        name: str | None = None,
    ) -> None:
        _check_positive_int("workers", workers)
        _check_positive_int("max_queued", max_queued)
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable as on_error(exc, context), not {on_error!r}")
        self.name = name if name is not None else f"eventbus-{next(_bus_numbers)}"
        """The bus's name, as given or numbered."""
        self._registry = Registry()
        self._dispatcher = Dispatcher(self, on_error if on_error is not None else log_error)
        self._strategy = _make_strategy(strategy, workers, max_queued)
        self._strategy.start(self._dispatcher)
        self._submit = self._strategy.submit
        self._closed = False

    # -- subscribers -------------------------------------------------------------------------

    def register(self, subscriber: object) -> None:
        """Add every ``@subscribe`` handler of *subscriber* (an object or a decorated function).

        The class is scanned once and the result cached. Registering an object
        twice changes nothing; an object with no handlers registers nothing.

        Raises:
            SubscriptionError: A handler cannot receive what it subscribed to, or a
                class was given instead of an instance. Nothing was registered.
        """
        self._registry.add(subscriber)

    def unregister(self, subscriber: object) -> bool:
        """Remove every handler of *subscriber*; return `False` if it was not registered.

        Once this returns, *subscriber* receives nothing more, not even events that
        were already queued for it. Called from outside the bus's handlers, it first
        waits for a call of *subscriber* already running on another thread; called
        from a handler (one may unregister its own subscriber) it does not wait,
        since two handlers unregistering each other would wait forever.
        """
        record = self._registry.remove(subscriber)
        if record is None:
            return False
        self._strategy.forget(record)
        return True

    def is_registered(self, subscriber: object) -> bool:
        """Whether *subscriber* (by identity) is registered."""
        return self._registry.contains(subscriber)

    def subscribers(self, key: type | str) -> tuple[Subscription, ...]:
        """The handlers that an event of class *key*, or with topic *key*, would reach, in call order."""
        return self._registry.subscribers(key)

    def has_subscribers(self, key: type | str) -> bool:
        """Whether an event of class *key*, or with topic *key*, would reach any handler."""
        return bool(self._registry.subscribers(key))

    # -- posting -------------------------------------------------------------------------------

    def post(self, event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> None:
        """Post *event* to its subscribers and return (fire and forget).

        ``post("topic", data)`` posts ``Message("topic", data)``. Handlers run
        according to the bus's strategy; their failures go to ``on_error``. An
        event that matches no handler is posted again as ``DeadEvent(event=...)``.

        Args:
            event: An `Event`, any other object (routed by its class), or a topic string.
            data: The data of a `Message`, when *event* is a topic string.
            timeout: How long to wait for room in a full queue (thread-pool
                strategies); `None` waits as long as it takes.

        Raises:
            TypeError: *event* is `None`, or *data* was given with a non-string event.
            BusClosedError: The bus has been shut down.
            QueueFullError: No room in the queue within *timeout*; the event was not accepted.
        """
        # The hot path: a known event class with handlers. Everything else (topic
        # strings, None, Messages, dead events, a closed bus) takes _accept.
        handlers = self._registry.dispatch.get(type(event))  # type: ignore[call-overload]  # classes hash
        if handlers and data is _MISSING and not self._closed:
            self._submit(event, handlers, None, timeout)
        else:
            self._accept(event, data, timeout, publish=False)

    def publish(self, event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> Delivery:
        """Post *event* like `post`, and return a `Delivery` to follow it.

        ``publish(event).result()`` waits for every handler and returns their
        return values in call order, or raises an `ExceptionGroup` of their
        exceptions (each with a note naming the handler). Errors still go to
        ``on_error`` as well. Takes the same arguments and raises the same errors
        as `post`.
        """
        delivery = self._accept(event, data, timeout, publish=True)
        assert delivery is not None
        return delivery

    def _accept(self, event: object, data: Any, timeout: float | None, *, publish: bool) -> Delivery | None:
        if self._closed:
            raise BusClosedError(
                f"{self.name} has been shut down and accepts no more events.\n"
                "Post before shutdown(), or create a new EventBus."
            )
        if isinstance(event, str):
            event = Message(event, None if data is _MISSING else data)
        elif data is not _MISSING:
            raise TypeError(f"data= goes with a topic string, not with {type(event).__qualname__}; put it in the event")
        elif event is None:
            raise TypeError("cannot post None; post an Event, a topic string or another object")
        handlers = self._registry.handlers_for(event)
        state = self._dispatcher.state()
        if not handlers:
            state.dead += 1
            if type(event) is DeadEvent:
                handlers = ()
            else:
                event = DeadEvent(event=event)
                handlers = self._registry.handlers_for(event)
            if not handlers:  # nobody wants the dead event either: counted, dropped
                state.posted += 1
                return Delivery(event, 0) if publish else None
        delivery = Delivery(event, len(handlers)) if publish else None
        self._submit(event, handlers, delivery, timeout)  # counts the event as posted
        return delivery

    # -- lifetime --------------------------------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far has been handled; `False` on timeout."""
        return self._strategy.join(timeout)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting events, deliver those already accepted, and stop the workers.

        Idempotent. After it, `post` and `publish` raise `BusClosedError`.

        Args:
            wait: Wait for the accepted events to be delivered.
            timeout: The longest to wait, in seconds; `None` waits as long as it takes.

        Returns:
            `True` if every accepted event was delivered.
        """
        self._closed = True
        return self._strategy.shutdown(wait, timeout)

    @property
    def closed(self) -> bool:
        """Whether `shutdown` has been called."""
        return self._closed

    def __enter__(self) -> EventBus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # -- introspection -----------------------------------------------------------------------

    def stats(self) -> BusStats:
        """A snapshot of the bus's counters, exact after `join`."""
        posted, delivered, failed, dead = self._dispatcher.totals()
        queued, running = self._strategy.counts()
        return BusStats(
            posted=posted,
            delivered=delivered,
            failed=failed,
            dead=dead,
            queued=queued,
            running=running,
            subscribers=len(self._registry.records()),
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventBus {self.name!r} {type(self._strategy).__name__} {state}>"
