"""Events: frozen pydantic models with a class-level topic and an optional ordering key."""

from __future__ import annotations

from typing import Generic, TypeVar

import pytest
from pydantic import ValidationError

from eventbus import DeadEvent, Event, Message
from eventbus._events import ordering_key_of, topic_of

T = TypeVar("T")


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int
    amount: float


class BigOrderPlaced(OrderPlaced):
    pass


class OrderRefunded(OrderPlaced, topic="orders.refunded"):
    pass


class Untopical(Event):
    n: int = 0


class UntopicalChild(Untopical):
    pass


class Deposit(Event, topic="acct", order_by="account_id"):
    account_id: int
    amount: float


class BigDeposit(Deposit):
    pass


class Page(Event, Generic[T]):
    item: T


def test_topic_is_declared_with_the_class_keyword() -> None:
    """`topic=` sets the topic, readable on the class and on every instance."""
    assert OrderPlaced.topic == "orders.placed"
    assert OrderPlaced(order_id=1, amount=2.0).topic == "orders.placed"


def test_subclass_inherits_its_parents_topic() -> None:
    """A subclass that declares no topic inherits its parent's."""
    assert BigOrderPlaced.topic == "orders.placed"
    assert BigOrderPlaced(order_id=1, amount=2.0).topic == "orders.placed"


def test_subclass_may_declare_its_own_topic() -> None:
    """A subclass's own `topic=` wins over its parent's, and leaves the parent alone."""
    assert OrderRefunded.topic == "orders.refunded"
    assert OrderPlaced.topic == "orders.placed"


def test_class_without_a_declared_topic_is_named_by_module_and_qualname() -> None:
    """With no topic anywhere in the chain, the topic is `module.qualname`."""
    assert Untopical.topic == f"{__name__}.Untopical"
    assert Untopical().topic == f"{__name__}.Untopical"
    assert UntopicalChild.topic == f"{__name__}.UntopicalChild"


def test_local_class_topic_uses_the_full_qualname() -> None:
    """A class defined in a function is named by its full qualified name."""

    class Local(Event):
        pass

    assert Local.topic == f"{__name__}.{Local.__qualname__}"
    assert "<locals>" in Local.topic


@pytest.mark.parametrize("bad", ["", 42])
def test_topic_must_be_a_non_empty_string(bad: object) -> None:
    """`topic=` that is empty or not a string is refused with TypeError, naming the class."""
    with pytest.raises(TypeError, match="Bad"):

        class Bad(Event, topic=bad):
            pass


def test_events_are_frozen() -> None:
    """An event cannot be changed after construction (it is shared between threads)."""
    event = OrderPlaced(order_id=1, amount=2.0)
    with pytest.raises(ValidationError):
        event.order_id = 2
    assert event.order_id == 1


def test_construction_validates_fields() -> None:
    """A bad field value raises pydantic's ValidationError where the event is built."""
    with pytest.raises(ValidationError):
        OrderPlaced(order_id="not a number", amount=1.0)  # type: ignore[arg-type]  # the point of the test


def test_events_compare_by_value() -> None:
    """Two events with equal fields are equal (pydantic semantics), and hash alike."""
    assert OrderPlaced(order_id=1, amount=2.0) == OrderPlaced(order_id=1, amount=2.0)
    assert hash(OrderPlaced(order_id=1, amount=2.0)) == hash(OrderPlaced(order_id=1, amount=2.0))


def test_ordering_key_is_the_order_by_field() -> None:
    """`order_by=` names the field that `ordering_key` returns; subclasses keep it."""
    assert Deposit(account_id=7, amount=1.0).ordering_key == 7
    assert BigDeposit(account_id=8, amount=1.0).ordering_key == 8


def test_ordering_key_is_none_without_order_by() -> None:
    """An event class without `order_by=` has no ordering key."""
    assert OrderPlaced(order_id=1, amount=2.0).ordering_key is None


def test_order_by_must_name_a_field() -> None:
    """`order_by=` naming no field is refused when the class is defined, listing the fields."""
    with pytest.raises(TypeError, match=r"order_by='nope'[\s\S]*'n'"):

        class Bad(Event, order_by="nope"):
            n: int


def test_order_by_must_be_a_string() -> None:
    """`order_by=` that is not a string is refused with TypeError."""
    with pytest.raises(TypeError, match="order_by"):

        class Bad(Event, order_by=3):
            n: int


def test_generic_events_are_distinct_types_per_parameter() -> None:
    """`Page[int]` and `Page[str]` are distinct classes, both subclasses of `Page`."""
    assert isinstance(Page[int](item=1), Page)
    ints: type[Event] = Page[int]
    strs: type[Event] = Page[str]
    assert ints is Page[int]
    assert ints is not strs
    assert not issubclass(ints, strs)
    assert not issubclass(strs, ints)
    assert all(issubclass(cls, Page) for cls in (ints, strs))


def test_generic_events_validate_by_their_parameter() -> None:
    """`Page[int]` refuses an item that is not an int."""
    with pytest.raises(ValidationError):
        Page[int](item="not a number")  # type: ignore[arg-type]  # the point of the test


def test_message_has_a_per_instance_topic() -> None:
    """`Message(topic, data, ordered)` carries its own topic, data and ordering key."""
    first = Message("a", {"x": 1}, ordered="k")
    second = Message("b")
    assert (first.topic, first.data, first.ordered, first.ordering_key) == ("a", {"x": 1}, "k", "k")
    assert (second.topic, second.data, second.ordered, second.ordering_key) == ("b", None, None, None)
    assert isinstance(first, Event)


def test_message_accepts_keywords_too() -> None:
    """`Message` can be built with keywords as well as positionally."""
    assert Message(topic="a", data=1) == Message("a", 1)


def test_message_is_frozen() -> None:
    """A Message cannot be changed after construction either."""
    message = Message("a", 1)
    with pytest.raises(ValidationError):
        message.data = 2


def test_message_data_is_not_copied() -> None:
    """The data object is carried as is (arbitrary, unvalidated, uncopied)."""
    payload = object()
    assert Message("a", payload).data is payload


def test_dead_event_wraps_any_object() -> None:
    """`DeadEvent(event=...)` holds the lost event itself, whatever its type."""
    lost = object()
    dead = DeadEvent(event=lost)
    assert dead.event is lost
    assert dead.topic == DeadEvent.topic == "eventbus.dead"


def test_topic_of_and_ordering_key_of_plain_objects() -> None:
    """Objects that are not Events have no topic and no ordering key."""
    assert topic_of(object()) is None
    assert ordering_key_of("text") is None
    assert topic_of(Message("m")) == "m"
    assert ordering_key_of(Deposit(account_id=3, amount=0.0)) == 3
