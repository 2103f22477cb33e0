"""EventBus behaviours that hold on every strategy: routing, order, registration, dead events, stats.

Every test uses the ``bus`` fixture (one run per strategy in ``conftest.STRATEGIES``) and
joins the bus before it asserts, so the same assertions hold on asynchronous strategies.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import FrozenInstanceError
from typing import Any, Generic, TypeVar

import pytest

from eventbus import (
    BusClosedError,
    BusStats,
    DeadEvent,
    Event,
    EventBus,
    Message,
    SubscriptionError,
    subscribe,
)

from .helpers import WAIT, ErrorLog, Recorder

T = TypeVar("T")


class Ping(Event, topic="bus.ping"):
    n: int = 0


class Pong(Event, topic="bus.pong"):
    n: int = 0


class Base(Event, topic="bus.base"):
    n: int = 0


class Exact(Base):
    pass


class Left(Base):
    pass


class Right(Base):
    pass


class Diamond(Left, Right):
    pass


class SameTopicA(Event, topic="bus.shared"):
    pass


class SameTopicB(Event, topic="bus.shared"):
    pass


class Page(Event, Generic[T]):
    item: T


class Plain:
    """Not an Event: routed by its class only."""


class PlainChild(Plain):
    pass


def joined(bus: EventBus) -> None:
    assert bus.join(timeout=WAIT), "the bus did not finish its events in time"


# -- routing -------------------------------------------------------------------------------------


def test_handler_receives_the_very_object_posted(bus: EventBus, recorder: Recorder) -> None:
    """A handler receives the posted event itself, not a copy."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    bus.register(Sub())
    event = Ping(n=1)
    bus.post(event)
    joined(bus)
    assert recorder.calls == [("on_ping", event)]
    assert recorder.events()[0] is event


def test_two_handlers_in_one_class_both_receive(bus: EventBus, recorder: Recorder) -> None:
    """Every handler of a class for the event's type is called, in definition order."""

    class Sub:
        @subscribe(Ping)
        def first(self, event: Ping) -> None:
            recorder("first", event)

        @subscribe(Ping)
        def second(self, event: Ping) -> None:
            recorder("second", event)

    bus.register(Sub())
    event = Ping()
    bus.post(event)
    joined(bus)
    assert recorder.calls == [("first", event), ("second", event)]


def test_one_object_with_two_event_types_gets_each_at_its_handler(bus: EventBus, recorder: Recorder) -> None:
    """An object subscribed to two types receives each event only at the matching handler."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            recorder("on_pong", event)

    bus.register(Sub())
    ping, pong = Ping(), Pong()
    bus.post(ping)
    joined(bus)
    bus.post(pong)
    joined(bus)
    assert recorder.calls == [("on_ping", ping), ("on_pong", pong)]


def test_subclass_events_reach_base_class_handlers(bus: EventBus, recorder: Recorder) -> None:
    """A handler for a class receives its subclasses' events; a subclass handler not the base's."""

    class Sub:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            recorder("on_base", event)

        @subscribe(Exact)
        def on_exact(self, event: Exact) -> None:
            recorder("on_exact", event)

    bus.register(Sub())
    exact, base = Exact(), Base()
    bus.post(exact)
    joined(bus)
    bus.post(base)
    joined(bus)
    assert recorder.calls == [("on_base", exact), ("on_exact", exact), ("on_base", base)]


def test_diamond_hierarchy_delivers_once(bus: EventBus, recorder: Recorder) -> None:
    """An event whose class reaches a handler's class along two paths is delivered once."""

    class Sub:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            recorder("on_base", event)

        @subscribe(Left)
        @subscribe(Right)
        def on_side(self, event: Base) -> None:
            recorder("on_side", event)

    bus.register(Sub())
    event = Diamond()
    bus.post(event)
    joined(bus)
    assert recorder.calls == [("on_base", event), ("on_side", event)]


def test_generic_events_route_by_their_parameters(bus: EventBus, recorder: Recorder) -> None:
    """`Page[int]` never reaches a `Page[str]` handler; a `Page` handler receives both."""

    class Sub:
        @subscribe(Page[str])
        def on_str(self, event: Page[str]) -> None:
            recorder("on_str", event)

        @subscribe(Page[int])
        def on_int(self, event: Page[int]) -> None:
            recorder("on_int", event)

        @subscribe(Page)
        def on_any(self, event: Page[Any]) -> None:
            recorder("on_any", event)

    bus.register(Sub())
    ints, strs = Page[int](item=1), Page[str](item="a")
    bus.post(ints)
    joined(bus)
    bus.post(strs)
    joined(bus)
    assert recorder.calls == [("on_int", ints), ("on_any", ints), ("on_str", strs), ("on_any", strs)]


def test_bare_subscribe_takes_the_class_from_the_annotation(bus: EventBus, recorder: Recorder) -> None:
    """`@subscribe` and `@subscribe()` subscribe to the annotated class (each member of a union)."""

    class Sub:
        @subscribe
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

        @subscribe(priority=-1)
        def on_either(self, event: Ping | Pong) -> None:
            recorder("on_either", event)

    bus.register(Sub())
    ping, pong, base = Ping(), Pong(), Base()
    for event in (ping, pong, base):
        bus.post(event)
        joined(bus)
    assert recorder.calls == [("on_ping", ping), ("on_either", ping), ("on_either", pong)]


def test_topic_subscription_receives_every_event_with_that_topic(bus: EventBus, recorder: Recorder) -> None:
    """A topic handler receives events of any class whose topic matches, and Messages of that topic."""

    class Sub:
        @subscribe("bus.shared")
        def on_shared(self, event: Event) -> None:
            recorder("on_shared", event)

    bus.register(Sub())
    events: list[object] = [SameTopicA(), SameTopicB(), Message("bus.shared", 1), Message("bus.elsewhere"), Ping()]
    for event in events:
        bus.post(event)
        joined(bus)
    assert recorder.events() == events[:3]


def test_topic_and_type_subscriptions_on_one_method_deliver_once(bus: EventBus, recorder: Recorder) -> None:
    """A method subscribed both to a class and to its topic is called once per event."""

    class Sub:
        @subscribe(Ping)
        @subscribe("bus.ping")
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    bus.register(Sub())
    event = Ping()
    bus.post(event)
    joined(bus)
    assert recorder.calls == [("on_ping", event)]


def test_stacked_decorators_call_the_handler_once(bus: EventBus, recorder: Recorder) -> None:
    """A handler stacked on several keys that all match is still called once."""

    class Sub:
        @subscribe(Base, priority=1)
        @subscribe(Exact)
        @subscribe("bus.base")
        @subscribe(Event)
        def on_it(self, event: Event) -> None:
            recorder("on_it", event)

    bus.register(Sub())
    event = Exact()
    bus.post(event)
    joined(bus)
    assert recorder.calls == [("on_it", event)]


def test_plain_objects_are_routed_by_their_class(bus: EventBus, recorder: Recorder) -> None:
    """Any object may be posted; it reaches the handlers of its class and of its bases."""

    class Sub:
        @subscribe(Plain)
        def on_plain(self, event: Plain) -> None:
            recorder("on_plain", event)

        @subscribe(int)
        def on_int(self, event: int) -> None:
            recorder("on_int", event)

    bus.register(Sub())
    child = PlainChild()
    bus.post(child)
    joined(bus)
    bus.post(42)
    joined(bus)
    assert recorder.calls == [("on_plain", child), ("on_int", 42)]


def test_posting_a_topic_string_posts_a_message(bus: EventBus, recorder: Recorder) -> None:
    """`post("x")` posts `Message("x", None)`; `post("x", data)` carries the data."""

    class Sub:
        @subscribe("bus.x")
        def on_x(self, event: Message) -> None:
            recorder("on_x", event)

    bus.register(Sub())
    bus.post("bus.x")
    joined(bus)
    bus.post("bus.x", {"k": 1})
    joined(bus)
    bus.publish("bus.x", 2).result(timeout=WAIT)
    assert recorder.events() == [Message("bus.x", None), Message("bus.x", {"k": 1}), Message("bus.x", 2)]
    assert all(type(event) is Message for event in recorder.events())


def test_posting_none_is_a_type_error(bus: EventBus) -> None:
    """`post(None)` and `publish(None)` raise TypeError and accept nothing."""
    with pytest.raises(TypeError, match="None"):
        bus.post(None)
    with pytest.raises(TypeError, match="None"):
        bus.publish(None)
    joined(bus)
    assert bus.stats().posted == 0


def test_data_with_a_non_string_event_is_a_type_error(bus: EventBus) -> None:
    """`data` only goes with a topic string."""
    with pytest.raises(TypeError, match="data"):
        bus.post(Ping(), 1)
    joined(bus)
    assert bus.stats().posted == 0


def test_catch_all_object_handler_receives_everything(bus: EventBus, recorder: Recorder) -> None:
    """`@subscribe(object)` receives every event, of any kind."""

    class Sub:
        @subscribe(object)
        def on_any(self, event: object) -> None:
            recorder("on_any", event)

    bus.register(Sub())
    events: list[object] = [Ping(), Message("m"), 3, "text-is-a-topic"]
    for event in events:
        bus.post(event)
        joined(bus)
    assert recorder.events() == [*events[:3], Message("text-is-a-topic")]


# -- order -----------------------------------------------------------------------------------------


def test_priorities_order_handlers_across_base_and_exact_class_handlers(bus: EventBus, recorder: Recorder) -> None:
    """Handlers run by priority, highest first (10, 1, 0, -1, -100), whatever class they subscribed to."""

    class First:
        @subscribe(Base)
        def base_0(self, event: Base) -> None:
            recorder("base_0", event)

        @subscribe(Exact, priority=-100)
        def exact_minus_100(self, event: Exact) -> None:
            recorder("exact_minus_100", event)

        @subscribe(Base, priority=10)
        def base_10(self, event: Base) -> None:
            recorder("base_10", event)

    class Second:
        @subscribe(Exact, priority=1)
        def exact_1(self, event: Exact) -> None:
            recorder("exact_1", event)

        @subscribe("bus.base", priority=-1)
        def topic_minus_1(self, event: Base) -> None:
            recorder("topic_minus_1", event)

    bus.register(Second())
    bus.register(First())
    for _ in range(3):
        bus.post(Exact())
        joined(bus)
    expected = ["base_10", "exact_1", "base_0", "topic_minus_1", "exact_minus_100"]
    assert recorder.names() == expected * 3


def test_equal_priorities_run_in_registration_order_every_time(bus: EventBus, recorder: Recorder) -> None:
    """Ties run in registration order (then definition order), on every post, for type and topic alike."""

    class ByType:
        def __init__(self, name: str) -> None:
            self.name = name

        @subscribe(Ping)
        def first(self, event: Ping) -> None:
            recorder(f"{self.name}.first", event)

        @subscribe("bus.ping")
        def second(self, event: Ping) -> None:
            recorder(f"{self.name}.second", event)

    names = [f"s{i}" for i in range(8)]
    random.Random(2).shuffle(names)
    for name in names:
        bus.register(ByType(name))
    for n in range(20):
        bus.post(Ping(n=n))
        joined(bus)
    expected = [f"{name}.{method}" for name in names for method in ("first", "second")]
    calls = recorder.names()
    for n in range(20):
        assert calls[n * 16 : (n + 1) * 16] == expected


def test_reregistering_moves_a_subscriber_to_the_end_of_its_ties(bus: EventBus, recorder: Recorder) -> None:
    """Registration order is the order of the latest registration."""

    class Sub:
        def __init__(self, name: str) -> None:
            self.name = name

        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder(self.name, event)

    a, b, c = Sub("a"), Sub("b"), Sub("c")
    for sub in (a, b, c):
        bus.register(sub)
    bus.register(a)  # already registered: no change
    bus.post(Ping())
    joined(bus)
    assert bus.unregister(a)
    bus.register(a)
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["a", "b", "c", "b", "c", "a"]


# -- registration ------------------------------------------------------------------------------------


def test_registering_twice_delivers_once(bus: EventBus, recorder: Recorder) -> None:
    """`register` is idempotent: a second call adds nothing."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    sub = Sub()
    bus.register(sub)
    bus.register(sub)
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["on_ping"]
    assert bus.stats().subscribers == 1
    assert bus.unregister(sub)
    assert not bus.is_registered(sub)


def test_equal_but_distinct_subscribers_both_receive(bus: EventBus, recorder: Recorder) -> None:
    """Subscribers are kept by identity: two objects that compare equal are two subscribers."""

    class Sub:
        def __init__(self, name: str) -> None:
            self.name = name

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Sub)

        def __hash__(self) -> int:
            return 1

        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder(self.name, event)

    one, two = Sub("one"), Sub("two")
    assert one == two
    bus.register(one)
    bus.register(two)
    assert bus.is_registered(one)
    assert bus.is_registered(two)
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["one", "two"]
    assert bus.unregister(one)
    assert bus.is_registered(two)
    assert not bus.is_registered(one)


def test_unhashable_subscriber_works(bus: EventBus, recorder: Recorder) -> None:
    """A subscriber that cannot be hashed registers, receives and unregisters normally."""

    class Sub(list[int]):
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            self.append(event.n)
            recorder("on_ping", event)

    sub = Sub()
    with pytest.raises(TypeError):
        hash(sub)
    bus.register(sub)
    assert bus.is_registered(sub)
    bus.post(Ping(n=5))
    joined(bus)
    assert sub == [5]
    assert bus.unregister(sub)
    bus.post(Ping(n=6))
    joined(bus)
    assert sub == [5]


def test_unregister_of_an_unknown_object_returns_false_and_changes_nothing(bus: EventBus, recorder: Recorder) -> None:
    """`unregister` of an object never registered returns False; other instances of its class stay."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    registered = Sub()
    bus.register(registered)
    assert bus.unregister(Sub()) is False
    assert bus.unregister(object()) is False
    assert bus.is_registered(registered)
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["on_ping"]


def test_unregistered_subscriber_receives_nothing_more(bus: EventBus, recorder: Recorder) -> None:
    """After `unregister` returns True the object gets no further events; a second call returns False."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    sub = Sub()
    bus.register(sub)
    bus.post(Ping(n=1))
    joined(bus)
    assert bus.unregister(sub) is True
    assert bus.unregister(sub) is False
    bus.post(Ping(n=2))
    joined(bus)
    assert recorder.events() == [Ping(n=1)]


def test_object_without_handlers_registers_nothing(bus: EventBus) -> None:
    """Registering an object with no handlers is no error and leaves it unregistered."""

    class NoHandlers:
        def on_ping(self, event: Ping) -> None:
            pass

    nothing = NoHandlers()
    bus.register(nothing)
    bus.register(object())
    assert not bus.is_registered(nothing)
    assert bus.unregister(nothing) is False
    assert bus.stats().subscribers == 0


def test_plain_decorated_function_registers_and_unregisters(bus: EventBus, recorder: Recorder) -> None:
    """`bus.register(fn)` registers a decorated function; `unregister(fn)` removes it."""

    @subscribe(Ping)
    def on_ping(event: Ping) -> str:
        recorder("on_ping", event)
        return "done"

    bus.register(on_ping)
    assert bus.is_registered(on_ping)
    assert bus.publish(Ping()).result(timeout=WAIT) == ["done"]
    assert bus.unregister(on_ping)
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["on_ping"]


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("def bad(self) -> None: ...", "exactly one event argument"),
        ("def bad(self, event: Ping, extra: int) -> None: ...", "exactly one event argument"),
        ("def bad(self, *, event: Ping) -> None: ...", "exactly one event argument"),
        ("def bad(self, event) -> None: ...", "has no annotation"),
        ("def bad(self, event: int) -> None: ...", "cannot receive it"),
    ],
)
def test_malformed_handler_registers_nothing_of_the_object(
    bus: EventBus, recorder: Recorder, source: str, problem: str
) -> None:
    """A bad handler raises SubscriptionError naming class and method, and no handler of the object is added."""
    namespace: dict[str, Any] = {"Ping": Ping}
    exec(source, namespace)
    bad = namespace["bad"]
    if "no annotation" in problem:
        subscribe(bad)  # bare: the annotation is needed, and missing
    else:
        subscribe(Ping)(bad)

    class Mixed:
        @subscribe(Ping)
        def good(self, event: Ping) -> None:
            recorder("good", event)

    Mixed.bad = bad  # type: ignore[attr-defined]  # built from source above
    mixed = Mixed()
    with pytest.raises(SubscriptionError, match=problem) as caught:
        bus.register(mixed)
    assert "Mixed.bad" in str(caught.value)
    assert not bus.is_registered(mixed)
    assert not bus.has_subscribers(Ping)
    bus.post(Ping())
    joined(bus)
    assert recorder.calls == []


def test_malformed_plain_function_is_refused(bus: EventBus) -> None:
    """A decorated function with two parameters cannot be registered."""

    @subscribe(Ping)
    def two(event: Ping, other: Ping) -> None:
        pass

    with pytest.raises(SubscriptionError, match="two"):
        bus.register(two)
    assert not bus.is_registered(two)


def test_extra_parameters_with_defaults_are_allowed(bus: EventBus, recorder: Recorder) -> None:
    """A handler may have more parameters if only the event one is required."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping, suffix: str = "!") -> None:
            recorder("on_ping" + suffix, event)

    bus.register(Sub())
    bus.post(Ping())
    joined(bus)
    assert recorder.names() == ["on_ping!"]


# -- introspection -------------------------------------------------------------------------------------


def test_subscribers_lists_type_and_topic_handlers_in_call_order(bus: EventBus) -> None:
    """`subscribers(Class)` includes handlers of the class's topic string, in call order."""

    class Audit:
        @subscribe("bus.ping", priority=5)
        def audit(self, event: Event) -> None:
            pass

    class Billing:
        @subscribe(Ping)
        def charge(self, event: Ping) -> None:
            pass

    assert not bus.has_subscribers(Ping)
    assert bus.subscribers(Ping) == ()
    audit = Audit()
    bus.register(audit)
    assert bus.has_subscribers(Ping)
    assert bus.has_subscribers("bus.ping")
    bus.register(Billing())
    expected = [Audit.audit.__qualname__, Billing.charge.__qualname__]
    assert expected[0].endswith("Audit.audit")
    assert [s.name for s in bus.subscribers(Ping)] == expected
    assert [s.name for s in bus.subscribers("bus.ping")] == expected
    assert bus.subscribers(Ping)[0].subscriber is audit
    assert not bus.has_subscribers(Pong)
    assert not bus.has_subscribers("bus.pong")


def test_subscribers_of_a_class_include_base_class_handlers(bus: EventBus) -> None:
    """`subscribers(Sub)` includes handlers of its bases, not of its subclasses."""

    class OnBase:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            pass

    class OnExact:
        @subscribe(Exact)
        def on_exact(self, event: Exact) -> None:
            pass

    bus.register(OnBase())
    bus.register(OnExact())
    assert [s.name for s in bus.subscribers(Exact)] == [OnBase.on_base.__qualname__, OnExact.on_exact.__qualname__]
    assert [s.name for s in bus.subscribers(Base)] == [OnBase.on_base.__qualname__]


# -- dead events -------------------------------------------------------------------------------------


def test_unhandled_event_is_reposted_once_as_a_dead_event(bus: EventBus, recorder: Recorder) -> None:
    """An event that reached no handler arrives once, wrapped in DeadEvent, at the DeadEvent handlers."""

    class Sub:
        @subscribe(DeadEvent)
        def on_dead(self, event: DeadEvent) -> None:
            recorder("on_dead", event)

    bus.register(Sub())
    lost = Pong(n=1)
    bus.post(lost)
    joined(bus)
    assert recorder.calls == [("on_dead", DeadEvent(event=lost))]
    dead = recorder.events()[0]
    assert isinstance(dead, DeadEvent)
    assert dead.event is lost
    stats = bus.stats()
    assert (stats.posted, stats.dead, stats.delivered) == (1, 1, 1)


def test_dead_event_is_never_wrapped_again(bus: EventBus) -> None:
    """A DeadEvent that nobody handles is dropped and counted once, never wrapped in another DeadEvent."""
    bus.post(Pong())
    bus.post(DeadEvent(event=Pong()))
    bus.post(DeadEvent(event=DeadEvent(event=Pong())))
    joined(bus)
    stats = bus.stats()
    assert (stats.posted, stats.dead, stats.delivered, stats.failed) == (3, 3, 0, 0)


def test_posted_dead_event_reaches_its_handlers_unwrapped(bus: EventBus, recorder: Recorder) -> None:
    """A DeadEvent posted by a user goes to the DeadEvent handlers as it is."""

    class Sub:
        @subscribe(DeadEvent)
        def on_dead(self, event: DeadEvent) -> None:
            recorder("on_dead", event)

    bus.register(Sub())
    dead = DeadEvent(event=1)
    bus.post(dead)
    joined(bus)
    assert recorder.events() == [dead]
    assert recorder.events()[0] is dead
    assert bus.stats().dead == 0


def test_catch_all_handler_means_no_dead_events(bus: EventBus, recorder: Recorder) -> None:
    """With an `@subscribe(object)` handler every event is handled, so none is dead."""

    class Sub:
        @subscribe(object)
        def on_any(self, event: object) -> None:
            recorder("on_any", event)

    bus.register(Sub())
    for event in (Ping(), Pong(), 1, Plain()):
        bus.post(event)
    joined(bus)
    assert bus.stats().dead == 0
    assert not any(isinstance(event, DeadEvent) for event in recorder.events())
    assert len(recorder.calls) == 4


def test_event_declined_by_every_filter_is_not_dead(bus: EventBus, recorder: Recorder) -> None:
    """Handlers that decline an event through `when=` still count as its handlers: no DeadEvent."""

    class Sub:
        @subscribe(Ping, when=lambda event: event.n > 0)
        def on_positive(self, event: Ping) -> None:
            recorder("on_positive", event)

        @subscribe(DeadEvent)
        def on_dead(self, event: DeadEvent) -> None:
            recorder("on_dead", event)

    bus.register(Sub())
    bus.post(Ping(n=0))
    bus.post(Ping(n=3))
    joined(bus)
    assert recorder.calls == [("on_positive", Ping(n=3))]
    stats = bus.stats()
    assert (stats.posted, stats.delivered, stats.dead) == (2, 1, 0)


def test_when_filter_selects_events_per_handler(bus: EventBus, recorder: Recorder) -> None:
    """Each handler's `when=` filter is applied to it alone."""

    class Sub:
        @subscribe(Ping, when=lambda event: event.n % 2 == 0)
        def even(self, event: Ping) -> None:
            recorder("even", event)

        @subscribe(Ping)
        def every(self, event: Ping) -> None:
            recorder("every", event)

    bus.register(Sub())
    for n in range(4):
        bus.post(Ping(n=n))
        joined(bus)
    assert recorder.calls == [
        ("even", Ping(n=0)),
        ("every", Ping(n=0)),
        ("every", Ping(n=1)),
        ("even", Ping(n=2)),
        ("every", Ping(n=2)),
        ("every", Ping(n=3)),
    ]


# -- publish ---------------------------------------------------------------------------------------------


def test_publish_result_is_the_return_values_in_call_order(bus: EventBus) -> None:
    """`publish(e).result()` returns the handlers' values in priority order; declined handlers add nothing."""

    class Sub:
        @subscribe(Ping)
        def middle(self, event: Ping) -> str:
            return "middle"

        @subscribe(Ping, priority=5)
        def first(self, event: Ping) -> str:
            return "first"

        @subscribe(Ping, priority=-5)
        def last(self, event: Ping) -> None:
            return None

        @subscribe(Ping, when=lambda event: False)
        def declined(self, event: Ping) -> str:
            return "declined"

    bus.register(Sub())
    delivery = bus.publish(Ping())
    assert delivery.result(timeout=WAIT) == ["first", "middle", None]
    assert delivery.done()
    assert delivery.wait(timeout=WAIT)


def test_publish_of_an_unhandled_event_completes_empty(bus: EventBus) -> None:
    """Publishing an event nobody handles gives a finished delivery with no values."""
    delivery = bus.publish(Pong())
    assert delivery.result(timeout=WAIT) == []
    assert delivery.done()


def test_publish_is_awaitable(bus: EventBus) -> None:
    """`await bus.publish(e)` gives the same values as `result()`."""
    import asyncio

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> int:
            return event.n

    bus.register(Sub())

    async def main() -> list[Any]:
        return await bus.publish(Ping(n=7))

    assert asyncio.run(main()) == [7]


# -- lifetime and stats -------------------------------------------------------------------------------


def test_post_and_publish_after_shutdown_raise_bus_closed(bus: EventBus) -> None:
    """After `shutdown()` the bus refuses events with BusClosedError; shutdown is idempotent."""
    assert bus.shutdown(timeout=WAIT) is True
    assert bus.closed
    assert bus.shutdown(timeout=WAIT) is True
    with pytest.raises(BusClosedError):
        bus.post(Ping())
    with pytest.raises(BusClosedError):
        bus.publish(Ping())
    with pytest.raises(BusClosedError):
        bus.post("topic")
    with pytest.raises(RuntimeError):  # BusClosedError is a RuntimeError too
        bus.post(Ping())
    assert bus.stats().posted == 0


def test_context_manager_shuts_the_bus_down(make_bus: Callable[..., EventBus], recorder: Recorder) -> None:
    """Leaving `with EventBus(...)` shuts the bus down after delivering what it accepted."""

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)

    with make_bus() as bus:
        bus.register(Sub())
        bus.post(Ping())
    assert bus.closed
    assert recorder.names() == ["on_ping"]
    with pytest.raises(BusClosedError):
        bus.post(Ping())


def test_context_manager_shuts_down_on_error_too(make_bus: Callable[..., EventBus]) -> None:
    """The bus is shut down even when the `with` block raises, and the error propagates."""
    bus = make_bus()
    with pytest.raises(ZeroDivisionError), bus:
        _ = 1 / 0
    assert bus.closed


def test_stats_fields_are_exact_after_join(make_bus: Callable[..., EventBus]) -> None:
    """`stats()` counts accepted events, returned and raising handler calls, dead events and subscribers."""
    errors = ErrorLog()
    bus = make_bus(on_error=errors)

    class Unhandled(Event, topic="bus.unhandled"):
        pass

    class Sub:
        @subscribe(Ping)
        def ok(self, event: Ping) -> None:
            pass

        @subscribe(Ping)
        def boom(self, event: Ping) -> None:
            raise ValueError(event.n)

        @subscribe(Pong, when=lambda event: False)
        def never(self, event: Pong) -> None:
            pass

    bus.register(Sub())
    bus.register(object())
    for n in range(3):
        bus.post(Ping(n=n))
    bus.post(Pong())
    bus.post(Unhandled())
    bus.publish(Unhandled())
    assert bus.join(timeout=WAIT)
    assert bus.stats() == BusStats(posted=6, delivered=3, failed=3, dead=2, queued=0, running=0, subscribers=1)
    assert len(errors.reports) == 3


def test_dead_event_redeliveries_are_not_counted_as_posted(bus: EventBus) -> None:
    """The bus's own DeadEvent re-posts are not `posted`; their handler calls are `delivered`."""

    class Sub:
        @subscribe(DeadEvent)
        def on_dead(self, event: DeadEvent) -> None:
            pass

    bus.register(Sub())
    for n in range(4):
        bus.post(Pong(n=n))
    joined(bus)
    stats = bus.stats()
    assert (stats.posted, stats.dead, stats.delivered, stats.failed) == (4, 4, 4, 0)


def test_stats_is_a_frozen_snapshot(bus: EventBus) -> None:
    """`stats()` returns an immutable snapshot that later posts do not change."""
    before = bus.stats()
    bus.post(Ping())
    joined(bus)
    assert before.posted == 0
    assert bus.stats().posted == 1
    with pytest.raises(FrozenInstanceError):
        before.posted = 5  # type: ignore[misc]  # the point of the test


def test_bus_name_and_repr(make_bus: Callable[..., EventBus]) -> None:
    """A bus has the name it was given, or a numbered one, shown in its repr."""
    named = make_bus(name="orders")
    assert named.name == "orders"
    assert "orders" in repr(named)
    first, second = make_bus(), make_bus()
    assert first.name != second.name
    assert first.name.startswith("eventbus-")


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"workers": 0}, ValueError),
        ({"workers": -1}, ValueError),
        ({"max_queued": 0}, ValueError),
        ({"on_error": 42}, TypeError),
        ({"strategy": "bogus"}, ValueError),
        ({"strategy": 42}, TypeError),
    ],
)
def test_bad_bus_arguments_are_refused(options: dict[str, Any], error: type[Exception]) -> None:
    """Misused constructor arguments raise the builtin TypeError or ValueError."""
    options.setdefault("strategy", "sync")
    with pytest.raises(error):
        EventBus(**options)


def test_a_strategy_object_missing_a_protocol_method_is_refused() -> None:
    """A strategy object needs every `DeliveryStrategy` method; one without ``counts`` is refused."""

    class NoCounts:
        def start(self, dispatcher: object) -> None: ...
        def submit(self, event: object, handlers: object, delivery: object, timeout: object) -> None: ...
        def forget(self, subscriber: object) -> None: ...
        def join(self, timeout: float | None) -> bool:
            return True

        def shutdown(self, wait: bool, timeout: float | None) -> bool:
            return True

    with pytest.raises(TypeError, match="DeliveryStrategy"):
        EventBus(strategy=NoCounts())  # type: ignore[arg-type]  # the point of the test


# -- threads ------------------------------------------------------------------------------------------------


class Probe(Event, topic="bus.probe"):
    thread: int
    index: int


class Final(Event, topic="bus.final"):
    pass


def test_threads_registering_while_posting_lose_no_subscriber(bus: EventBus) -> None:
    """10 threads each register 1,000 subscribers while posting; every one gets each later event exactly once."""
    threads_count, per_thread, probe_every = 10, 1_000, 100

    class Counter:
        __slots__ = ("finals", "probes")

        def __init__(self) -> None:
            self.finals = 0
            self.probes: list[tuple[int, int]] = []

        @subscribe(Probe)
        def on_probe(self, event: Probe) -> None:
            self.probes.append((event.thread, event.index))

        @subscribe(Final)
        def on_final(self, event: Final) -> None:
            self.finals += 1

    subscribers = [[Counter() for _ in range(per_thread)] for _ in range(threads_count)]
    barrier = threading.Barrier(threads_count, timeout=WAIT)
    failures: list[BaseException] = []

    def work(thread: int) -> None:
        try:
            barrier.wait()
            for index, sub in enumerate(subscribers[thread]):
                bus.register(sub)
                if index % probe_every == probe_every - 1:
                    bus.post(Probe(thread=thread, index=index))
        except BaseException as exc:  # reported to the main thread below
            failures.append(exc)

    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads_count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert not any(worker.is_alive() for worker in workers), "a registering thread hung"
    assert failures == []
    joined(bus)
    bus.post(Final())
    joined(bus)

    assert bus.stats().subscribers == threads_count * per_thread
    for thread, subs in enumerate(subscribers):
        for index, sub in enumerate(subs):
            assert sub.finals == 1, (thread, index)
            assert len(sub.probes) == len(set(sub.probes)), (thread, index)
            # Its own thread registered it before posting these probes, so it must have them all.
            own = sorted(i for t, i in sub.probes if t == thread)
            assert own == [i for i in range(probe_every - 1, per_thread, probe_every) if i >= index], (thread, index)


@pytest.mark.parametrize("strategy", ["sync", "concurrent"])
def test_a_subclass_overriding_register_and_post_keeps_its_overrides(strategy: str) -> None:
    """The one-frame register()/post() that a bus installs never hide a subclass's own."""
    seen: list[str] = []

    class Audited(EventBus):  # type: ignore[misc]  # final for type checkers; Python lets it happen
        def register(self, subscriber: object) -> None:
            seen.append("register")
            super().register(subscriber)

        def post(self, event: object, data: Any = None, /, *, timeout: float | None = None) -> None:
            seen.append("post")
            super().post(event, data, timeout=timeout)

    class Sub:
        def __init__(self) -> None:
            self.got: list[object] = []

        @subscribe("audited")
        def on(self, message: Message) -> None:
            self.got.append(message.data)

    with Audited(strategy=strategy) as bus:  # type: ignore[arg-type]
        sub = Sub()
        bus.register(sub)
        bus.post("audited", 1)
        assert bus.join(WAIT)
    assert seen == ["register", "post"]
    assert sub.got == [1]
