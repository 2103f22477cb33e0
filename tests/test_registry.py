"""The registry: class scans cached per class, identity-keyed subscribers, cached dispatch tuples."""

from __future__ import annotations

import types
from typing import Any, Generic, TypeVar

import pytest

from eventbus import DeadEvent, Event, EventBus, Message, Subscription, SubscriptionError, subscribe
from eventbus._registry import _MAX_CACHED_KEYS, Registry, key_of
from eventbus._scan import scan_class

from . import future_subscribers as future

T = TypeVar("T")


class Base(Event, topic="reg.base"):
    pass


class Child(Base):
    pass


class Other(Event, topic="reg.other"):
    pass


class Subscriber:
    @subscribe(Base)
    def first(self, event: Base) -> None:
        pass

    @subscribe("reg.other", priority=3)
    def second(self, event: Event) -> None:
        pass

    def not_a_handler(self, event: Base) -> None:
        pass


def names(subs: tuple[Subscription, ...]) -> list[str]:
    return [s.name for s in subs]


def test_class_scan_is_cached_per_class() -> None:
    """Scanning a class twice returns the very same result."""
    assert scan_class(Subscriber) is scan_class(Subscriber)
    assert [h.name for h in scan_class(Subscriber)] == ["Subscriber.first", "Subscriber.second"]


def test_scan_lists_handlers_bases_first_in_definition_order() -> None:
    """Inherited handlers come first, each class's in definition order; an override keeps its slot."""

    class Parent:
        @subscribe(Base)
        def b(self, event: Base) -> None:
            pass

        @subscribe(Base)
        def a(self, event: Base) -> None:
            pass

    class Kid(Parent):
        @subscribe(Base)
        def c(self, event: Base) -> None:
            pass

        @subscribe(Base)
        def b(self, event: Base) -> None:
            pass

    assert [h.attr for h in scan_class(Kid)] == ["b", "a", "c"]
    assert scan_class(Kid)[0].name == f"{Kid.__qualname__}.b"


def test_diamond_subscriber_hierarchy_scans_an_inherited_handler_once() -> None:
    """A handler inherited along two paths of a diamond is one handler."""

    class Top:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            pass

    class Left(Top):
        pass

    class Right(Top):
        pass

    class Bottom(Left, Right):
        pass

    assert [h.attr for h in scan_class(Bottom)] == ["on_base"]
    registry = Registry()
    registry.add(Bottom())
    assert len(registry.handlers_for(Base())) == 1


def test_add_is_idempotent_and_keyed_by_identity() -> None:
    """Adding an object twice returns the same record; an equal object gets its own."""

    class AlwaysEqual(Subscriber):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = None  # type: ignore[assignment]  # unhashable on purpose

    registry = Registry()
    one, two = AlwaysEqual(), AlwaysEqual()
    registry.add(one)
    first = registry.record(one)
    assert first is not None
    registry.add(one)
    assert registry.record(one) is first
    registry.add(two)
    second = registry.record(two)
    assert second is not None
    assert second is not first
    assert registry.contains(one)
    assert registry.contains(two)
    assert len(registry.records()) == 2


def test_object_without_handlers_adds_nothing() -> None:
    """An object with no handlers is not recorded."""
    registry = Registry()
    plain = object()
    registry.add(plain)
    assert registry.record(plain) is None
    assert registry.records() == []


def test_remove_returns_the_record_or_none() -> None:
    """Removing returns the record once, then None; its subscriptions turn inactive."""
    registry = Registry()
    sub = Subscriber()
    registry.add(sub)
    record = registry.record(sub)
    assert record is not None
    assert all(s.active for s in record.subscriptions)
    assert registry.remove(sub) is record
    assert not any(s.active for s in record.subscriptions)
    assert registry.remove(sub) is None
    assert not registry.contains(sub)
    assert registry.handlers_for(Base()) == ()


def test_handler_tuple_is_resolved_once_and_cached() -> None:
    """Posting the same event type twice reuses the cached handler tuple."""
    registry = Registry()
    registry.add(Subscriber())
    first = registry.handlers_for(Base())
    assert registry.handlers_for(Base()) is first
    assert names(first) == ["Subscriber.first"]


def test_registry_changes_replace_the_dispatch_cache() -> None:
    """A change swaps in a new dispatch cache and leaves the old one (and its tuples) untouched."""
    registry = Registry()
    registry.add(Subscriber())
    old_cache = registry.dispatch
    old_tuple = registry.handlers_for(Base())
    assert old_cache is registry.dispatch
    snapshot = dict(old_cache)
    registry.add(Subscriber())
    assert registry.dispatch is not old_cache
    assert old_cache == snapshot
    assert len(old_tuple) == 1
    assert len(registry.handlers_for(Base())) == 2


def test_subclass_events_reach_base_class_handlers() -> None:
    """Handlers of a class receive its subclasses' events; not the other way round."""

    class OnChild:
        @subscribe(Child)
        def on_child(self, event: Child) -> None:
            pass

    registry = Registry()
    registry.add(Subscriber())
    registry.add(OnChild())
    assert names(registry.handlers_for(Child())) == ["Subscriber.first", f"{OnChild.__qualname__}.on_child"]
    assert names(registry.handlers_for(Base())) == ["Subscriber.first"]


def test_message_dispatch_key_includes_its_topic() -> None:
    """Messages are cached per topic, other events per class."""
    assert key_of(Message("a")) != key_of(Message("b"))
    assert key_of(Message("a")) == key_of(Message("a", 1))
    assert key_of(Base()) is Base
    assert key_of(3) is int


def test_message_topics_route_to_topic_handlers() -> None:
    """A Message reaches the handlers of its own topic only."""
    registry = Registry()
    registry.add(Subscriber())
    assert names(registry.handlers_for(Message("reg.other"))) == ["Subscriber.second"]
    assert registry.handlers_for(Message("reg.elsewhere")) == ()


def test_dispatch_cache_is_bounded() -> None:
    """Open-ended Message topics never grow the dispatch cache past its bound."""
    registry = Registry()
    registry.add(Subscriber())
    for n in range(_MAX_CACHED_KEYS + 10):
        registry.handlers_for(Message(f"t{n}"))
        assert len(registry.dispatch) <= _MAX_CACHED_KEYS
    assert names(registry.handlers_for(Message("reg.other"))) == ["Subscriber.second"]


def test_subscription_describes_its_handler() -> None:
    """A Subscription names its handler, key, options and subscriber."""
    registry = Registry()
    sub = Subscriber()
    registry.add(sub)
    (second,) = registry.subscribers("reg.other")
    assert (second.name, second.key, second.priority, second.thread_safe) == (
        "Subscriber.second",
        "reg.other",
        3,
        False,
    )
    assert second.subscriber is sub
    assert repr(second) == "<Subscription Subscriber.second to 'reg.other' priority=3 thread_safe=False>"
    (first,) = registry.subscribers(Base)
    assert repr(first) == "<Subscription Subscriber.first to 'Base' priority=0 thread_safe=False>"


def test_plain_function_subscription_has_no_subscriber() -> None:
    """For a plain function, `subscriber` is None and the name is its qualname."""

    @subscribe(Base)
    def on_base(event: Base) -> None:
        pass

    registry = Registry()
    registry.add(on_base)
    (sub,) = registry.subscribers(Base)
    assert sub.subscriber is None
    assert sub.name == on_base.__qualname__
    assert sub.callback is on_base


def test_subscribers_rejects_other_keys() -> None:
    """`subscribers()` takes a class or a topic string, nothing else."""
    with pytest.raises(TypeError, match="subscribers"):
        Registry().subscribers(42)  # type: ignore[arg-type]  # the point of the test


def test_postponed_annotations_and_forward_references_resolve() -> None:
    """Bare `@subscribe` reads string annotations, forward references, unions and nested classes."""
    registry = Registry()
    registry.add(future.ForwardSubscriber())
    assert names(registry.handlers_for(future.LaterEvent(n=1))) == ["ForwardSubscriber.on_later"]
    assert names(registry.handlers_for(future.OtherLaterEvent(n=1))) == ["ForwardSubscriber.on_either"]
    assert names(registry.handlers_for(future.ThirdLaterEvent(n=1))) == ["ForwardSubscriber.on_either"]
    assert names(registry.handlers_for(future.ForwardSubscriber.Nested())) == ["ForwardSubscriber.on_nested"]


def test_postponed_annotation_on_a_plain_function_resolves() -> None:
    """A plain function's forward-referenced annotation resolves at registration."""
    registry = Registry()
    registry.add(future.on_later_function)
    assert names(registry.handlers_for(future.LaterEvent(n=1))) == ["on_later_function"]


def test_unresolvable_annotation_is_fine_with_an_explicit_key() -> None:
    """With an explicit key the annotation is not needed, so an unresolvable one does not matter."""
    registry = Registry()
    registry.add(future.ExplicitKeyUnresolvableAnnotation())
    assert names(registry.handlers_for(DeadEvent(event=1))) == ["ExplicitKeyUnresolvableAnnotation.on_dead"]


def test_unresolvable_annotation_with_bare_subscribe_fails_naming_it() -> None:
    """A bare `@subscribe` whose annotation cannot be resolved fails, naming the annotation and the fix."""
    with pytest.raises(SubscriptionError) as caught:
        Registry().add(future.BareUnresolvableAnnotation())
    message = str(caught.value)
    assert "BareUnresolvableAnnotation.on_missing" in message
    assert "TypeCheckingOnlyEvent" in message
    assert "@subscribe(EventClass)" in message


def test_static_and_class_method_handlers_are_registered() -> None:
    """Handlers may be static or class methods."""
    calls: list[str] = []

    class Holder:
        @subscribe(Base)
        @staticmethod
        def static(event: Base) -> None:
            calls.append("static")

        @subscribe(Base)
        @classmethod
        def klass(cls, event: Base) -> None:
            calls.append("klass")

    registry = Registry()
    registry.add(Holder())
    for sub in registry.handlers_for(Base()):
        sub.callback(Base())
    assert calls == ["static", "klass"]


def test_registering_a_class_instead_of_an_instance_fails() -> None:
    """`register(SomeClass)` with handlers is refused: register an instance."""
    with pytest.raises(SubscriptionError, match=r"given the class, not an instance[\s\S]*Subscriber\(\.\.\.\)"):
        Registry().add(Subscriber)


def test_registering_a_class_without_handlers_adds_nothing() -> None:
    """A class object with no handlers is just an object with no handlers."""
    registry = Registry()
    registry.add(int)
    assert registry.record(int) is None
    assert registry.records() == []


def test_registering_a_bound_method_fails() -> None:
    """`register(obj.method)` is refused: register the object."""
    with pytest.raises(SubscriptionError, match="bound method"):
        Registry().add(Subscriber().first)


def test_scan_failure_names_the_subscriber_object() -> None:
    """A SubscriptionError from registering an object carries the object and the handler name."""

    class Broken:
        @subscribe(Base)
        def bad(self) -> None:
            pass

    broken = Broken()
    with pytest.raises(SubscriptionError) as caught:
        Registry().add(broken)
    assert caught.value.subscriber is broken
    assert caught.value.handler == f"{Broken.__qualname__}.bad"


@pytest.mark.parametrize(
    ("annotation", "accepted"),
    [(Base, True), (Event, True), (object, True), (Any, True), (Child, False), (Other, False), (Base | Other, True)],
)
def test_annotation_must_be_able_to_receive_the_key(annotation: Any, accepted: bool) -> None:
    """`@subscribe(K)` needs an annotation that accepts K (K, a base of K, a union with one, or Any)."""

    def handler(event: Any) -> None:
        pass

    handler.__annotations__["event"] = annotation
    subscribe(Base)(handler)
    registry = Registry()
    if accepted:
        registry.add(handler)
        assert registry.handlers_for(Base()) != ()
    else:
        with pytest.raises(SubscriptionError, match="cannot receive it"):
            registry.add(handler)
        assert registry.records() == []


class Page(Event, Generic[T]):
    item: T


def test_generic_annotated_with_any_stands_for_every_parametrization() -> None:
    """`event: Page[Any]` accepts `@subscribe(Page)`, and a bare `@subscribe` with it receives every Page."""

    class Pages:
        @subscribe(Page)
        def explicit(self, event: Page[Any]) -> None:
            pass

        @subscribe
        def bare(self, event: Page[Any]) -> None:
            pass

        @subscribe
        def ints_only(self, event: Page[int]) -> None:
            pass

    registry = Registry()
    registry.add(Pages())
    assert [s.key for s in registry.subscribers(Page)] == [Page, Page]
    assert names(registry.handlers_for(Page[str](item="a"))) == [Pages.explicit.__qualname__, Pages.bare.__qualname__]
    assert names(registry.handlers_for(Page[int](item=1))) == [
        Pages.explicit.__qualname__,
        Pages.bare.__qualname__,
        Pages.ints_only.__qualname__,
    ]


def test_generic_annotation_with_a_parameter_cannot_receive_the_origin() -> None:
    """`@subscribe(Page)` annotated `Page[int]` is refused: it would also receive `Page[str]`."""

    class Pages:
        @subscribe(Page)
        def handler(self, event: Page[int]) -> None:
            pass

    with pytest.raises(SubscriptionError, match="cannot receive it"):
        Registry().add(Pages())


class Renamed(Base, topic="reg.renamed"):
    """A subclass with a topic of its own: its events still reach Base's handlers."""


def test_subscribers_of_a_topic_include_what_a_message_or_event_of_it_reaches() -> None:
    """`subscribers("t")` lists handlers of Message/Event/object and of classes whose topic is t, with bases."""

    class CatchAll:
        @subscribe(Message)
        def on_message(self, event: Message) -> None:
            pass

    class OnBase:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            pass

    registry = Registry()
    registry.add(CatchAll())
    registry.add(OnBase())
    assert names(registry.subscribers("reg.unknown")) == [
        "test_subscribers_of_a_topic_include_what_a_message_or_event_of_it_reaches.<locals>.CatchAll.on_message"
    ]
    renamed = names(registry.subscribers("reg.renamed"))
    assert renamed == names(registry.handlers_for(Message("reg.renamed"))) + names(registry.handlers_for(Renamed()))
    assert any(name.endswith("OnBase.on_base") for name in renamed)


def test_a_staticmethod_handler_on_two_instances_is_called_for_each() -> None:
    """Two registered instances sharing a staticmethod handler each get their call."""
    calls: list[Base] = []

    class Static:
        @staticmethod
        @subscribe(Base)
        def on_base(event: Base) -> None:
            calls.append(event)

    registry = Registry()
    registry.add(Static())
    registry.add(Static())
    handlers = registry.handlers_for(Base())
    assert len(handlers) == 2
    for sub in handlers:
        sub.callback(Base())
    assert len(calls) == 2


def test_objects_comparing_by_identity_are_their_own_keys_and_others_are_keyed_by_id() -> None:
    """Both kinds of key live in one table without mixing up two subscribers."""

    class EqualToAll(Subscriber):
        def __eq__(self, other: object) -> bool:
            return True

        def __hash__(self) -> int:
            return hash(id(self))  # the same hash as its id() key, on purpose

    registry = Registry()
    plain, odd = Subscriber(), EqualToAll()
    registry.add(plain)
    registry.add(odd)
    assert registry.record(plain) is not registry.record(odd)
    assert registry.record(plain) is not None
    assert registry.record(odd) is not None
    assert registry.record(EqualToAll()) is None
    assert registry.remove(odd) is not None
    assert registry.contains(plain)
    assert not registry.contains(odd)


def test_a_registration_plan_is_dropped_with_its_class() -> None:
    """The per-class fast path does not keep classes defined at run time alive."""
    import gc
    import weakref

    from eventbus import _scan

    def make() -> tuple[weakref.ref[type], int]:
        class Temporary:
            @subscribe(Base)
            def on_base(self, event: Base) -> None:
                pass

        registry = Registry()
        registry.add(Temporary())
        assert id(Temporary) in _scan.instance_plans
        return weakref.ref(Temporary), id(Temporary)

    ref, key = make()
    gc.collect()
    assert ref() is None
    assert key not in _scan.instance_plans


def test_a_plan_left_behind_by_a_dead_class_is_not_used_for_a_class_with_its_id() -> None:
    """A plan is checked against its class: a stale entry under a reused id is ignored."""
    from eventbus import _scan

    class First:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            pass

    class Second:
        @subscribe("reg.second")
        def on_second(self, event: Message) -> None:
            pass

    registry = Registry()
    registry.add(First())
    # As if First had died and its entry had not been dropped, and Second took its id.
    _scan.instance_plans[id(Second)] = _scan.instance_plans[id(First)]
    second = Second()
    registry.add(second)
    assert [sub.name for sub in registry.subscribers("reg.second")] == [
        "test_a_plan_left_behind_by_a_dead_class_is_not_used_for_a_class_with_its_id.<locals>.Second.on_second"
    ]
    del _scan.instance_plans[id(Second)]


def test_a_decorated_bound_method_is_refused_even_after_an_undecorated_one() -> None:
    """The plan cache never learns a bound method's class: both kinds keep their answer."""

    class Holder:
        def plain(self, event: Base) -> None:
            pass

        @subscribe(Base)
        def handler(self, event: Base) -> None:
            pass

    registry = Registry()
    holder = Holder()
    registry.add(holder.plain)  # no handlers: nothing happens
    assert registry.records() == []
    with pytest.raises(SubscriptionError, match="bound method"):
        registry.add(holder.handler)


def test_a_class_method_handler_receives_the_class_of_the_registered_instance() -> None:
    """A classmethod handler inherited by a subclass is called with the subclass, as getattr would bind it."""
    seen: list[type] = []

    class Holder:
        @subscribe(Base)
        @classmethod
        def klass(cls, event: Base) -> None:
            seen.append(cls)

    class Child(Holder):
        pass

    bus = EventBus(strategy="sync")
    bus.register(Holder())
    bus.register(Child())
    bus.post(Base())
    assert seen == [Holder, Child]


def test_the_bus_calls_the_method_the_class_defines_not_an_instance_attribute() -> None:
    """Shadowing a handler on the instance changes nothing: handlers are declared by the class."""
    calls: list[str] = []

    class Holder:
        @subscribe(Base)
        def on_base(self, event: Base) -> None:
            calls.append("class")

    holder = Holder()
    holder.on_base = lambda event: calls.append("instance")  # type: ignore[method-assign]
    bus = EventBus(strategy="sync")
    bus.register(holder)
    bus.post(Base())
    assert calls == ["class"]
    (sub,) = bus.subscribers(Base)
    assert sub.target is holder
    assert sub.callback == types.MethodType(Holder.on_base, holder)
