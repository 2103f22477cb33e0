"""Property tests: the bus against plain models of who should receive what, in which order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from eventbus import DeadEvent, Event, EventBus, Message, subscribe
from eventbus._decorators import specs_of
from eventbus._registry import Registry

from .conftest import STRATEGIES, new_bus
from .helpers import WAIT, ErrorLog
from .strategies import breadth_first, handler_specs, priorities, topics, trees

# -- a small event world ---------------------------------------------------------------------------


class PBase(Event, topic="prop.base"):
    n: int = 0


class PChild(PBase):  # inherits the topic "prop.base"
    pass


class PLeft(PBase, topic="prop.left"):
    pass


class PLeaf(PLeft):  # inherits the topic "prop.left"
    pass


class POther(Event, topic="prop.other"):
    n: int = 0


KEYS: dict[str, type | str] = {"base": PBase, "child": PChild, "topic": "prop.base", "other": POther}
EVENT_CLASSES: list[type[Event]] = [PBase, PChild, PLeft, PLeaf, POther]


def matches(key: type | str, event: object) -> bool:
    """The routing rule of SPEC section 3, written out plainly."""
    if isinstance(key, str):
        return isinstance(event, Event) and event.topic == key
    return isinstance(event, key)


def make_subscriber_class(specs: list[tuple[str, int]]) -> type:
    """A class with one handler per spec, in order; handler ``h{i}`` returns ``i``."""
    namespace: dict[str, Any] = {}
    for index, (key, priority) in enumerate(specs):

        def handler(self: Any, event: object, index: int = index) -> int:
            return index

        handler.__name__ = f"h{index}"
        handler.__qualname__ = f"Generated.h{index}"
        namespace[handler.__name__] = subscribe(KEYS[key], priority=priority)(handler)
    return type("Generated", (), namespace)


def expected_order(specs: list[tuple[str, int]], event: object) -> list[int]:
    """Matching handlers by priority (highest first), ties in definition order."""
    hits = [(-priority, index) for index, (key, priority) in enumerate(specs) if matches(KEYS[key], event)]
    return [index for _, index in sorted(hits)]


# -- simple properties ---------------------------------------------------------------------------------


@given(specs=handler_specs)
def test_dispatch_table_equals_the_decorated_methods(specs: list[tuple[str, int]]) -> None:
    """`subscribers(K)` lists exactly the decorated methods that an event of class K reaches, in call order."""
    registry = Registry()
    registry.add(make_subscriber_class(specs)())
    for event_class in EVENT_CLASSES:
        event = event_class()
        expected = [f"Generated.h{index}" for index in expected_order(specs, event)]
        assert [s.name for s in registry.subscribers(event_class)] == expected
        assert [s.name for s in registry.handlers_for(event)] == expected


@given(specs=handler_specs, instances=st.integers(min_value=1, max_value=4), twice=st.booleans())
def test_register_then_unregister_leaves_the_registry_empty(
    specs: list[tuple[str, int]], instances: int, twice: bool
) -> None:
    """Registering any objects and unregistering them again leaves no trace in the registry."""
    cls = make_subscriber_class(specs)
    objects = [cls() for _ in range(instances)]
    registry = Registry()
    for obj in objects * (2 if twice else 1):
        registry.add(obj)
    assert len(registry.records()) == instances
    for obj in objects:
        assert registry.remove(obj) is not None
        assert registry.remove(obj) is None
    assert registry.records() == []
    for event_class in EVENT_CLASSES:
        assert registry.subscribers(event_class) == ()
        assert registry.handlers_for(event_class()) == ()
    assert registry.subscribers("prop.base") == ()


@pytest.mark.parametrize("strategy_name", STRATEGIES)
@settings(max_examples=50)
@given(specs=handler_specs, event_class=st.sampled_from(EVENT_CLASSES))
def test_publish_returns_values_in_priority_then_definition_order(
    strategy_name: str, specs: list[tuple[str, int]], event_class: type[Event]
) -> None:
    """`publish(e).result()` is the matching handlers' values, sorted by priority with ties in definition order."""
    with new_bus(strategy_name, workers=2) as bus:
        bus.register(make_subscriber_class(specs)())
        event = event_class()
        assert bus.publish(event).result(timeout=WAIT) == expected_order(specs, event)


@given(parents=trees())
def test_sync_delivery_is_breadth_first(parents: list[int]) -> None:
    """On the sync strategy, events posted from handlers are delivered breadth-first (Guava's per-thread queue)."""
    bus = EventBus(strategy="sync")
    seen: list[tuple[str, int]] = []
    children = {node: [child for child, parent in enumerate(parents) if parent == node] for node in range(len(parents))}

    class Walker:
        @subscribe(PBase, priority=1)
        def visit(self, event: PBase) -> None:
            seen.append(("visit", event.n))
            for child in children[event.n]:
                bus.post(PBase(n=child))

        @subscribe(PBase)
        def watch(self, event: PBase) -> None:
            seen.append(("watch", event.n))

    bus.register(Walker())
    bus.post(PBase(n=0))
    assert seen == [(name, node) for node in breadth_first(parents) for name in ("visit", "watch")]


@given(subscribed=topics, posted=topics, data=st.integers())
def test_messages_reach_exactly_the_handlers_of_their_topic(subscribed: str, posted: str, data: int) -> None:
    """`post(topic, data)` reaches a topic handler iff the topics are equal, carrying the data."""
    bus = EventBus(strategy="sync")
    received: list[Message] = []

    @subscribe(subscribed)
    def on_topic(event: Message) -> None:
        received.append(event)

    bus.register(on_topic)
    bus.post(posted, data)
    assert received == ([Message(posted, data)] if subscribed == posted else [])
    assert bus.stats().dead == (0 if subscribed == posted else 1)


@given(priority=priorities)
def test_decorator_keeps_any_priority(priority: int) -> None:
    """Any int priority is recorded as given."""

    @subscribe(PBase, priority=priority)
    def handler(event: PBase) -> None:
        pass

    assert [spec.priority for spec in specs_of(handler)] == [priority]


# -- the state machine -------------------------------------------------------------------------------------


class Log:
    """The calls every subscriber of the machine records, in order, safely from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[tuple[int, str, object]] = []

    def add(self, owner: int, handler: str, event: object) -> None:
        with self.lock:
            self.calls.append((owner, handler, event))


class Member:
    """Base of the machine's subscriber classes: each instance knows its number and the shared log."""

    # (handler name, [(key, priority)], filter) in definition order; the model reads this.
    HANDLERS: ClassVar[list[tuple[str, list[tuple[type | str, int]], Callable[[Any], bool] | None]]] = []

    def __init__(self, number: int, log: Log) -> None:
        self.number = number
        self.log = log


def _is_even(event: Any) -> bool:
    return bool(event.n % 2 == 0)


class RootWatcher(Member):
    HANDLERS: ClassVar = [("on_base", [(PBase, 0)], None)]

    @subscribe(PBase)
    def on_base(self, event: PBase) -> None:
        self.log.add(self.number, "on_base", event)


class LeftAndTopic(Member):
    HANDLERS: ClassVar = [("on_left", [(PLeft, 2)], None), ("on_base_topic", [("prop.base", 0)], None)]

    @subscribe(PLeft, priority=2)
    def on_left(self, event: PLeft) -> None:
        self.log.add(self.number, "on_left", event)

    @subscribe("prop.base")
    def on_base_topic(self, event: PBase) -> None:
        self.log.add(self.number, "on_base_topic", event)


class Stacked(Member):
    HANDLERS: ClassVar = [("on_some", [(PChild, 0), (PLeaf, 0), ("prop.left", -1)], None)]

    @subscribe("prop.left", priority=-1)
    @subscribe(PLeaf)
    @subscribe(PChild)
    def on_some(self, event: PBase) -> None:
        self.log.add(self.number, "on_some", event)


class Filtered(Member):
    HANDLERS: ClassVar = [("on_even", [(PBase, 1)], _is_even)]

    @subscribe(PBase, when=_is_even, priority=1)
    def on_even(self, event: PBase) -> None:
        self.log.add(self.number, "on_even", event)


class Fan(Member):
    HANDLERS: ClassVar = [
        ("on_m1", [("prop.m1", 0)], None),
        ("on_message", [(Message, -5)], None),
        ("on_int", [(int, 3)], None),
    ]

    @subscribe("prop.m1")
    def on_m1(self, event: Message) -> None:
        self.log.add(self.number, "on_m1", event)

    @subscribe(Message, priority=-5)
    def on_message(self, event: Message) -> None:
        self.log.add(self.number, "on_message", event)

    @subscribe(int, priority=3)
    def on_int(self, event: int) -> None:
        self.log.add(self.number, "on_int", event)


class DeadWatcher(Member):
    HANDLERS: ClassVar = [("on_dead", [(DeadEvent, 0)], None)]

    @subscribe(DeadEvent)
    def on_dead(self, event: DeadEvent) -> None:
        self.log.add(self.number, "on_dead", event)


MEMBER_CLASSES: list[type[Member]] = [RootWatcher, LeftAndTopic, Stacked, Filtered, Fan, DeadWatcher]
POOL_SIZE = 2 * len(MEMBER_CLASSES)

machine_events = st.one_of(
    st.builds(PBase, n=st.integers(0, 9)),
    st.builds(PChild, n=st.integers(0, 9)),
    st.builds(PLeft, n=st.integers(0, 9)),
    st.builds(PLeaf, n=st.integers(0, 9)),
    st.builds(POther, n=st.integers(0, 9)),
    st.builds(Message, st.sampled_from(["prop.m1", "prop.m2", "prop.base"]), st.integers(0, 9)),
    st.integers(0, 9),
)


class BusMachine(RuleBasedStateMachine):
    """Register, unregister and post at random; after every step the bus agrees with a plain model."""

    strategy: ClassVar[str] = "sync"

    def __init__(self) -> None:
        super().__init__()
        self.errors = ErrorLog()
        self.bus = new_bus(self.strategy, workers=3, on_error=self.errors)
        self.log = Log()
        self.pool: list[Member] = [MEMBER_CLASSES[i % len(MEMBER_CLASSES)](i, self.log) for i in range(POOL_SIZE)]
        # The model: registration number of each registered pool member, and what should have happened.
        self.registered: dict[int, int] = {}
        self.registrations = 0
        self.expected: list[tuple[int, str, object]] = []
        self.posted = self.delivered = self.dead = 0

    def calls_for(self, event: object) -> tuple[bool, list[tuple[int, str, object]]]:
        """(whether any handler matched, the calls expected) for *event*, in call order."""
        hits: list[tuple[int, int, int, tuple[int, str, object]]] = []
        matched = False
        for number, order in self.registered.items():
            member = self.pool[number]
            for position, (name, keys, when) in enumerate(member.HANDLERS):
                hit = [priority for key, priority in keys if matches(key, event)]
                if not hit:
                    continue
                matched = True
                if when is None or when(event):
                    hits.append((-max(hit), order, position, (number, name, event)))
        return matched, [call for *_, call in sorted(hits, key=lambda h: h[:3])]

    @rule(number=st.integers(0, POOL_SIZE - 1))
    def register(self, number: int) -> None:
        self.bus.register(self.pool[number])
        if number not in self.registered:
            self.registered[number] = self.registrations
            self.registrations += 1

    @rule(number=st.integers(0, POOL_SIZE - 1))
    def unregister(self, number: int) -> None:
        assert self.bus.unregister(self.pool[number]) is (number in self.registered)
        self.registered.pop(number, None)

    @rule(event=machine_events)
    def post(self, event: object) -> None:
        self.bus.post(event)
        assert self.bus.join(timeout=WAIT)
        self.posted += 1
        matched, calls = self.calls_for(event)
        if not matched:
            self.dead += 1
            _, calls = self.calls_for(DeadEvent(event=event))
        self.expected.extend(calls)
        self.delivered += len(calls)

    @invariant()
    def deliveries_match_the_model(self) -> None:
        with self.log.lock:
            assert self.log.calls == self.expected

    @invariant()
    def registrations_match_the_model(self) -> None:
        for number, member in enumerate(self.pool):
            assert self.bus.is_registered(member) is (number in self.registered)

    @invariant()
    def stats_match_the_model(self) -> None:
        stats = self.bus.stats()
        assert (stats.posted, stats.delivered, stats.failed, stats.dead) == (
            self.posted,
            self.delivered,
            0,
            self.dead,
        )
        assert stats.subscribers == len(self.registered)
        assert self.errors.reports == []

    def teardown(self) -> None:
        assert self.bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("strategy_name", STRATEGIES)
def test_bus_agrees_with_a_model_of_register_unregister_post(strategy_name: str) -> None:
    """Any sequence of register/unregister/post delivers exactly what the plain model says, in order."""
    machine = type(f"BusMachine_{strategy_name}", (BusMachine,), {"strategy": strategy_name})
    run_state_machine_as_test(machine, settings=settings(max_examples=60, stateful_step_count=40))
