"""The API of geeteventbus, eventbus's ancestor, running on an `EventBus`.

Code written for geeteventbus runs unchanged once its imports point here::

    from eventbus.compat import event, eventbus, subscriber  # was: geeteventbus.*


    class Printer(subscriber):
        def process(self, eventobj):
            print(eventobj.get_topic(), eventobj.get_data())


    eb = eventbus()  # concurrent: 8 workers, 10,000 queued events
    eb.register_consumer(Printer(), "greetings")
    eb.post(event("greetings", "hello"))
    eb.shutdown()  # delivers everything posted, then stops the workers

How it maps onto eventbus:

- ``eventbus(...)`` wraps an `EventBus` (its `bus` attribute):
  ``synchronus=True`` is the ``"sync"`` strategy, otherwise ``"concurrent"`` with
  ``workers=executor_count`` and ``max_queued=max_queued_event``.
- ``event`` is a `Message` subclass, so ``ordered=`` is its ordering key (events
  with the same key are handled in order, the others in parallel, as before)
  and native handlers subscribed with ``@subscribe("topic")`` receive it too.
- Each consumer is registered as one handler of `Message` whose ``when=``
  filter accepts the consumer's current topics; ``register_consumer`` and
  ``unregister_consumer`` change that set at run time. With
  ``subscribers_thread_safe=False`` the handler is ``thread_safe=False``, so one
  consumer's ``process`` never runs twice at once, across all its topics, and
  its waiting events queue up instead of parking worker threads.

The ancestor's defects are fixed: ``shutdown()`` delivers every queued event
before it returns; the workers are daemon threads, so a program that never
calls ``shutdown()`` still exits (open buses get up to a few seconds to drain at
exit); and a ``process`` that raises is logged on the ``eventbus`` logger with
its traceback, its consumer's class and the event.

Differences a migrating program may notice: events are immutable (pydantic
models; put extra values in ``data``, or declare them as fields of a subclass);
``ordered`` may be any hashable value, not only a string; ``post`` blocks while
``max_queued_event`` events wait (the ancestor's queue blocked too, but only
for unordered events); native `Message` objects posted on `bus` reach consumers
as equal ``event`` objects; and ``unregister_consumer(consumer, topic)`` also
accepts a topic, to drop just that one.

Added in version 0.1.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Hashable
from typing import Any, Final

from ._bus import EventBus
from ._decorators import subscribe
from ._errors import BusClosedError
from ._events import Message

__all__ = ["event", "eventbus", "subscriber"]

_logger: Final = logging.getLogger("eventbus")


class event(Message):
    """An event with a topic, some data and an optional ordering key (geeteventbus's ``event``).

    A `Message` with the ancestor's getters. Events with the same *ordered*
    value are handled one at a time, in the order they were posted.

    Args:
        topic: The topic that consumers register for.
        data: Any payload. It is not copied, so do not change it after posting.
        ordered: An optional hashable ordering key.
    """

    def __init__(self, topic: str, data: Any, ordered: Hashable | None = None) -> None:
        super().__init__(topic, data, ordered)

    def get_topic(self) -> str:
        """Return the event's topic."""
        return self.topic

    def get_data(self) -> Any:
        """Return the event's data."""
        return self.data

    def get_ordered(self) -> Hashable | None:
        """Return the event's ordering key, or `None`."""
        return self.ordered


class subscriber:
    """Base class of consumers (geeteventbus's ``subscriber``): override `process`.

    It keeps no state and needs no ``__init__`` call, so it mixes in freely
    (the ancestor's examples combine it with `threading.Thread`).
    """

    def process(self, eventobj: event) -> None:
        """Handle one event of a topic this consumer registered for.

        Raises:
            NotImplementedError: The subclass did not override it.
        """
        raise NotImplementedError(f"{type(self).__qualname__} must override process(eventobj)")


class _Consumer:
    """One consumer as registered on the bus: a `Message` handler filtered by a topic set."""

    __slots__ = ("consumer", "handler", "topics")

    def __init__(self, consumer: subscriber, thread_safe: bool) -> None:
        self.consumer = consumer
        self.topics: frozenset[str] = frozenset()
        """Replaced, never mutated, so the filter reads it without a lock."""

        def wants(message: Message) -> bool:
            return message.topic in self.topics

        def process(message: Message) -> None:
            eventobj = message if isinstance(message, event) else event(message.topic, message.data, message.ordered)
            consumer.process(eventobj)

        # Logs and bus.subscribers() name the consumer's method, e.g. "counter_aggregator.process".
        process.__qualname__ = f"{type(consumer).__qualname__}.process"
        self.handler = subscribe(Message, thread_safe=thread_safe, when=wants)(process)


def _not_a_subscriber(consumer: object) -> bool:
    # Typed callers cannot get here, but untyped ancestor code can: refuse as the ancestor did.
    if isinstance(consumer, subscriber):
        return False
    _logger.error("eventbus.compat: %r is not a subscriber; it was not registered", consumer)
    return True


def _check_topic(topic: object) -> None:
    if not isinstance(topic, str):
        raise TypeError(f"a topic is a string, not {topic!r}")


class eventbus:
    """An event bus with geeteventbus's API, built on `EventBus`.

    Args:
        max_queued_event: How many posted events may wait before ``post`` blocks.
        executor_count: Worker threads (ignored when *synchronus*).
        synchronus: Deliver on the posting thread, before ``post`` returns.
        subscribers_thread_safe: Whether one consumer's ``process`` may run on
            several threads at once. When `False`, each consumer handles one
            event at a time.
    """

    def __init__(
        self,
        max_queued_event: int = 10000,
        executor_count: int = 8,
        synchronus: bool = False,
        subscribers_thread_safe: bool = True,
    ) -> None:
        self.synchronus: Final = synchronus
        """Whether events are delivered on the posting thread."""
        self.subscribers_thread_safe: Final = subscribers_thread_safe
        """Whether a consumer's ``process`` may run on several threads at once."""
        self.bus: Final = EventBus(
            strategy="sync" if synchronus else "concurrent",
            workers=executor_count,
            max_queued=max_queued_event,
        )
        """The `EventBus` underneath, for code that moves to the native API step by step."""
        self._lock = threading.Lock()
        self._consumers: dict[int, _Consumer] = {}  # by id(consumer): consumers need not be hashable

    def post(self, eventobj: object) -> bool:
        """Post *eventobj* to the consumers of its topic.

        Returns:
            `True` if the event was accepted; `False` if it is not an event (the
            mistake is logged) or the bus has been shut down.
        """
        if not isinstance(eventobj, Message):
            _logger.error("eventbus.compat: post() takes an event, not %r; nothing was posted", eventobj)
            return False
        try:
            self.bus.post(eventobj)
        except BusClosedError:
            return False
        return True

    def register_consumer(self, consumer: subscriber, topic: str) -> bool:
        """Subscribe *consumer* to *topic*; registering it again changes nothing.

        Returns:
            `True` once it is subscribed; `False` if *consumer* is not a
            `subscriber` (the mistake is logged).
        """
        if _not_a_subscriber(consumer):
            return False
        _check_topic(topic)
        with self._lock:
            record = self._consumers.get(id(consumer))
            if record is None:
                record = self._consumers[id(consumer)] = _Consumer(consumer, self.subscribers_thread_safe)
                record.topics = frozenset((topic,))
                self.bus.register(record.handler)
            else:
                record.topics = record.topics | {topic}
        return True

    def register_consumer_topics(self, consumer: subscriber, topic_list: list[str]) -> bool:
        """Subscribe *consumer* to every topic in *topic_list*.

        Returns:
            `False` if *consumer* is not a `subscriber`, else `True`.
        """
        if _not_a_subscriber(consumer):
            return False
        for topic in topic_list:
            self.register_consumer(consumer, topic)
        return True

    def unregister_consumer(self, consumer: subscriber, topic: str | None = None) -> bool:
        """Unsubscribe *consumer* from *topic*, or from every topic if *topic* is `None`.

        A consumer left with no topic is removed from the bus: once this returns
        it receives nothing more, not even events that were already queued.

        Returns:
            `False` if *consumer* was not subscribed (to *topic*).
        """
        with self._lock:
            record = self._consumers.get(id(consumer))
            if record is None or (topic is not None and topic not in record.topics):
                return False
            record.topics = frozenset() if topic is None else record.topics - {topic}
            if record.topics:
                return True
            del self._consumers[id(consumer)]
        # Outside our lock: unregister waits for a running process(), which may call us.
        self.bus.unregister(record.handler)
        return True

    def is_subscribed(self, consumer: subscriber, topic: str) -> bool:
        """Whether *consumer* is subscribed to *topic*."""
        record = self._consumers.get(id(consumer))
        return record is not None and topic in record.topics

    def get_subscribers(self, topic: str) -> list[subscriber] | None:
        """Return the consumers of *topic* in registration order, or `None` if there are none."""
        with self._lock:  # a snapshot under the lock, filtered outside it (see tests/test_interrupt_shapes.py)
            records = list(self._consumers.values())
        found = [record.consumer for record in records if topic in record.topics]
        return found or None

    def shutdown(self) -> bool:
        """Stop accepting events, deliver every event already posted, and stop the workers.

        Idempotent. After it, `post` returns `False`.

        Returns:
            `True` if every posted event was delivered.
        """
        return self.bus.shutdown()

    def __repr__(self) -> str:
        return f"<eventbus.compat.eventbus on {self.bus!r}>"
