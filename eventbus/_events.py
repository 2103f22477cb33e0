"""Typed events: the `Event` base model, the untyped `Message` and `DeadEvent`.

An event is an immutable pydantic model. Its *topic* is declared once, on the
class, with a class keyword; an optional *ordering key* names the field whose
value keeps related events in order on the asynchronous strategies::

    class Deposit(Event, topic="accounts.deposit", order_by="account_id"):
        account_id: int
        amount: float


    Deposit.topic  # "accounts.deposit"
    Deposit(account_id=7, amount=1.0).ordering_key  # 7

Any other Python object may be posted too; the helpers at the bottom of this
module (`topic_of`, `ordering_key_of`) say how the bus sees such objects.
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Hashable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = ["DeadEvent", "Event", "Message", "ordering_key_of", "topic_of"]


def _is_nonempty_str(value: object) -> bool:
    return isinstance(value, str) and bool(value)


class Event(BaseModel):
    """Base class of typed events: a frozen pydantic model with a topic.

    Declare the topic with the ``topic=`` class keyword; a subclass inherits its
    parent's topic unless it declares its own, and a class with no topic declared
    anywhere in its chain gets ``"<module>.<qualname>"``. ``order_by=`` names the
    field that `ordering_key` returns.

    ``sticky=True`` makes a bus keep the last event of the class it accepted
    (per exact class; subclasses inherit the flag unless they say
    ``sticky=False``): handlers declared ``@subscribe(Cls, sticky=True)``
    receive it when their subscriber registers, and ``bus.sticky(Cls)`` returns
    it. Added in version 0.2.

    Events are frozen because one event object is shared by every handler, often
    on several threads at once: nobody may change it under the others.

    Generic events route by their parameters: ``Page[int]`` and ``Page[str]`` are
    distinct event types, and a handler for one never receives the other.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True)

    topic: ClassVar[str] = "eventbus.Event"
    """The topic of every event of this class."""

    __eventbus_topic_declared__: ClassVar[bool] = False
    __eventbus_order_by__: ClassVar[str | None] = None
    __eventbus_sticky__: ClassVar[bool] = False

    def __init_subclass__(
        cls, *, topic: str | None = None, order_by: str | None = None, sticky: bool | None = None, **kwargs: Any
    ) -> None:
        super().__init_subclass__(**kwargs)
        if sticky is not None:
            if not isinstance(sticky, bool):
                raise TypeError(f"{cls.__qualname__}: sticky= must be True or False, not {sticky!r}")
            cls.__eventbus_sticky__ = sticky
        if topic is not None:
            if not _is_nonempty_str(topic):
                raise TypeError(f"{cls.__qualname__}: topic= must be a non-empty string, not {topic!r}")
            cls.topic = topic
            cls.__eventbus_topic_declared__ = True
        elif not cls.__eventbus_topic_declared__ and "topic" not in inspect.get_annotations(cls):
            cls.topic = f"{cls.__module__}.{cls.__qualname__}"
        if order_by is not None:
            if not isinstance(order_by, str):
                raise TypeError(f"{cls.__qualname__}: order_by= must be a field name, not {order_by!r}")
            cls.__eventbus_order_by__ = order_by

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        # Fields are known only now, after pydantic has built the class.
        super().__pydantic_init_subclass__(**kwargs)
        order_by = cls.__eventbus_order_by__
        if order_by is not None and order_by not in cls.model_fields:
            raise TypeError(
                f"{cls.__qualname__}: order_by={order_by!r} names no field of the event.\n"
                f"Fields: {sorted(cls.model_fields)}.\n"
                "Name one of them, or drop order_by= to leave the events unordered."
            )

    @property
    def ordering_key(self) -> Hashable | None:
        """The value of the ``order_by=`` field, or `None` if the class declares none."""
        order_by = self.__eventbus_order_by__
        if order_by is None:
            return None
        key: Hashable | None = getattr(self, order_by)
        return key


with warnings.catch_warnings():
    # Message turns the class-level topic into a per-instance field on purpose;
    # pydantic warns about the shadowing, which is exactly what is wanted here.
    warnings.filterwarnings("ignore", message='Field name "topic"', category=UserWarning)

    class Message(Event, order_by="ordered"):
        """An untyped event, as the ancestor geeteventbus posted: a topic and some data.

        Its topic is per instance, so one class carries every topic; *ordered* is its
        ordering key (events with equal keys keep their order on the asynchronous
        strategies). ``bus.post("topic", data)`` builds one for you.

        Args:
            topic: The topic that subscribers name in ``@subscribe("topic")``.
            data: Any payload. It is not copied, so do not change it after posting.
            ordered: An optional hashable ordering key.
        """

        model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, arbitrary_types_allowed=True)

        topic: str  # type: ignore[misc]  # a per-instance field here, a ClassVar on other events
        data: Any = None
        ordered: Hashable | None = None

        __eventbus_dynamic_topic__: ClassVar[bool] = True

        def __init__(self, topic: str, data: Any = None, ordered: Hashable | None = None) -> None:
            super().__init__(topic=topic, data=data, ordered=ordered)  # type: ignore[call-arg]  # fields of this class

        @property
        def ordering_key(self) -> Hashable | None:
            """The *ordered* value given at construction."""
            return self.ordered


class DeadEvent(Event, topic="eventbus.dead", sticky=False):
    """Wraps an event that reached no handler.

    The bus posts it in place of the lost event, so that a subscriber to
    `DeadEvent` can log or divert what nobody else wanted. Topic patterns
    (``"eventbus.*"``, ``">"``) never match it: only a handler of `DeadEvent`
    itself receives dead events. A `DeadEvent` that no
    one handles is dropped and counted in ``stats().dead``; it is never wrapped in
    another `DeadEvent`.
    """

    model_config: ClassVar[ConfigDict] = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    event: Any
    """The event that no handler received."""


def topic_of(event: object) -> str | None:
    """Return the topic of *event*: an `Event`'s topic, or `None` for other objects."""
    if isinstance(event, Event):
        return event.topic
    return None


def ordering_key_of(event: object) -> Hashable | None:
    """Return the ordering key of *event*, or `None` if it has none.

    Called for every event a thread-pool strategy accepts, so it reads the class's
    ``order_by`` directly instead of going through `Event.ordering_key`.
    """
    order_by: str | None = getattr(type(event), "__eventbus_order_by__", None)
    if order_by is None:
        return None
    key: Hashable | None = getattr(event, order_by)
    return key
