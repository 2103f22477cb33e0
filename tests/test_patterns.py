"""Topic patterns: ``@subscribe("orders.*")`` and ``@subscribe("orders.>")`` (SPEC section 13)."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import DeadEvent, Event, EventBus, Message, SubscriptionError, subscribe
from eventbus._patterns import Pattern, is_pattern, pattern_of, topic_problem

from .helpers import WAIT, Recorder


class Placed(Event, topic="orders.placed"):
    order_id: int


class EuPlaced(Event, topic="orders.eu.placed"):
    order_id: int


class Unrelated(Event, topic="billing.charged"):
    pass


# -- the syntax ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "fix"),
    [
        ("a..b", "'a.b'"),
        (".orders", "'orders'"),
        ("orders.", "'orders'"),
        ("orders.*x", "'orders.*'"),
        ("orders.x*", "'orders.*'"),
        ("a>b", "'*'"),
        ("orders.>.eu", "'orders.>'"),
        (">.orders", "'>'"),
    ],
)
def test_a_malformed_topic_is_refused_at_decoration_with_what_to_write(topic: str, fix: str) -> None:
    """Empty segments, wildcards mixed into a segment and a '>' before the end raise SubscriptionError, naming a fix."""
    with pytest.raises(SubscriptionError) as caught:
        subscribe(topic)
    message = str(caught.value)
    assert repr(topic) in message
    assert f"write {fix}" in message.lower()


@pytest.mark.parametrize("topic", ["orders", "orders.placed", "*", ">", "orders.*", "orders.>", "*.placed", "a.*.*.>"])
def test_well_formed_topics_and_patterns_are_accepted(topic: str) -> None:
    """Plain topics and patterns whose wildcards are whole segments, '>' last, are fine."""
    assert topic_problem(topic) is None

    @subscribe(topic)
    def handler(event: Event) -> None:
        pass


@pytest.mark.parametrize(
    ("pattern", "topic", "expected"),
    [
        ("orders.*", "orders.placed", True),
        ("orders.*", "orders", False),
        ("orders.*", "orders.eu.placed", False),
        ("orders.>", "orders.placed", True),
        ("orders.>", "orders.eu.placed", True),
        ("orders.>", "orders", False),
        ("*.placed", "orders.placed", True),
        ("*.placed", "orders.shipped", False),
        ("orders.*.placed", "orders.eu.placed", True),
        ("orders.*.placed", "orders.placed", False),
        ("*", "orders", True),
        ("*", "orders.placed", False),
        (">", "orders", True),
        (">", "orders.eu.placed", True),
        ("orders.*", "ordersx.placed", False),
        ("orders.>", "billing.orders.placed", False),
    ],
)
def test_pattern_semantics(pattern: str, topic: str, expected: bool) -> None:
    """'*' is exactly one segment, '>' one or more trailing segments, literals match exactly (NATS subjects)."""
    assert is_pattern(pattern)
    assert pattern_of(pattern).matches(topic.split(".")) is expected


def test_compiled_patterns_are_cached() -> None:
    """A pattern is compiled once."""
    assert pattern_of("x.*") is pattern_of("x.*")
    assert repr(pattern_of("x.*")) == "Pattern('x.*')"
    assert isinstance(pattern_of("x.>"), Pattern)


# -- delivery on every strategy ---------------------------------------------------------------


class Watcher:
    def __init__(self, recorder: Recorder) -> None:
        self.record = recorder

    @subscribe("orders.*")
    def one(self, event: Event) -> None:
        self.record("one", event)

    @subscribe("orders.>")
    def rest(self, event: Event) -> None:
        self.record("rest", event)


def test_patterns_match_typed_events_and_messages_on_every_strategy(bus: EventBus, recorder: Recorder) -> None:
    """A pattern receives every event whose topic it matches, typed or Message, and nothing else."""
    bus.register(Watcher(recorder))
    placed, eu = Placed(order_id=1), EuPlaced(order_id=2)
    bus.post(placed)
    bus.post(eu)
    bus.post("orders.shipped", 3)
    bus.post(Unrelated())
    bus.post("orders")
    assert bus.join(WAIT)
    calls = sorted((name, getattr(event, "topic", None)) for name, event in recorder.calls)
    assert calls == [
        ("one", "orders.placed"),
        ("one", "orders.shipped"),
        ("rest", "orders.eu.placed"),
        ("rest", "orders.placed"),
        ("rest", "orders.shipped"),
    ]


def test_async_pattern_handlers_on_every_strategy(bus: EventBus) -> None:
    """An ``async def`` handler subscribed by pattern receives the matching events."""
    got: list[str] = []
    lock = threading.Lock()

    class AsyncWatcher:
        @subscribe("orders.>")
        async def on_order(self, event: Event) -> None:
            with lock:
                got.append(event.topic)

    bus.register(AsyncWatcher())
    bus.post(Placed(order_id=1))
    bus.post("orders.eu.shipped")
    bus.post("billing.x")
    assert bus.join(WAIT)
    assert sorted(got) == ["orders.eu.shipped", "orders.placed"]


def test_a_handler_matched_several_ways_is_called_once_per_event(bus: EventBus, recorder: Recorder) -> None:
    """Class, exact topic and two patterns all matching one event still make one call."""

    class Many:
        @subscribe(Placed)
        @subscribe("orders.placed")
        @subscribe("orders.*")
        @subscribe("orders.>")
        @subscribe(">")
        def on_any(self, event: Event) -> None:
            recorder("many", event)

    bus.register(Many())
    bus.post(Placed(order_id=1))
    bus.post("orders.x.y")
    assert bus.join(WAIT)
    assert [getattr(e, "topic", None) for e in recorder.events()] in (
        ["orders.placed", "orders.x.y"],
        ["orders.x.y", "orders.placed"],
    )


def test_a_pattern_registered_after_its_topic_was_posted_takes_effect(bus: EventBus, recorder: Recorder) -> None:
    """A topic's cached handler tuple is rebuilt when a matching pattern registers, and when it unregisters."""
    bus.post("orders.placed", 1)
    bus.post(Placed(order_id=1))
    assert bus.join(WAIT)
    assert bus.stats().dead == 2
    watcher = Watcher(recorder)
    bus.register(watcher)
    bus.post("orders.placed", 2)
    bus.post(Placed(order_id=2))
    assert bus.join(WAIT)
    assert sorted(recorder.names()) == ["one", "one", "rest", "rest"]
    bus.unregister(watcher)
    bus.post("orders.placed", 3)
    bus.post(Placed(order_id=3))
    assert bus.join(WAIT)
    assert len(recorder.calls) == 4
    assert bus.stats().dead == 4


def test_patterns_never_match_dead_events(bus: EventBus, recorder: Recorder) -> None:
    """'>' and 'eventbus.*' do not catch dead events (topic 'eventbus.dead'); only a handler of DeadEvent does."""

    class Catchall:
        @subscribe(">")
        def everything(self, event: Event) -> None:
            recorder("everything", event)

        @subscribe("eventbus.*")
        def ours(self, event: Event) -> None:
            recorder("ours", event)

    class Mortician:
        @subscribe(DeadEvent)
        def bury(self, event: DeadEvent) -> None:
            recorder("bury", event.event)

    bus.register(Catchall())
    lost = object()
    bus.post(lost)  # no topic, no handler: a dead event, which nobody receives
    assert bus.join(WAIT)
    assert recorder.calls == []
    assert bus.stats().dead == 1
    bus.register(Mortician())
    bus.post(lost)
    message = Message("eventbus")
    bus.post(message)  # one segment: '>' matches it, 'eventbus.*' does not
    assert bus.join(WAIT)
    assert sorted(recorder.names()) == ["bury", "everything"]
    assert ("bury", lost) in recorder.calls
    assert ("everything", message) in recorder.calls
    assert bus.stats().dead == 2


def test_subscribers_of_a_topic_include_matching_patterns() -> None:
    """subscribers() and has_subscribers() of a topic or class list the handlers of matching patterns, in call order."""
    with EventBus(strategy="sync") as bus:
        bus.register(Watcher(Recorder()))
        assert [s.name for s in bus.subscribers("orders.placed")] == ["Watcher.one", "Watcher.rest"]
        assert [s.name for s in bus.subscribers(Placed)] == ["Watcher.one", "Watcher.rest"]
        assert [s.name for s in bus.subscribers(EuPlaced)] == ["Watcher.rest"]
        assert [s.key for s in bus.subscribers("orders.eu.placed")] == ["orders.>"]
        assert bus.has_subscribers("orders.x")
        assert not bus.has_subscribers("orders")
        assert not bus.has_subscribers(Unrelated)
        assert bus.subscribers(DeadEvent) == ()


def test_posting_does_not_match_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patterns are matched once, when an event type's handler tuple is built; a post is one dictionary lookup."""
    matched: list[str] = []
    real = Pattern.matches

    def counting(self: Pattern, segments: list[str]) -> bool:
        matched.append(self.text)
        return real(self, segments)

    monkeypatch.setattr(Pattern, "matches", counting)
    with EventBus(strategy="sync") as bus:
        bus.register(Watcher(Recorder()))
        for n in range(50):
            bus.post(Placed(order_id=n))
            bus.post("orders.shipped", n)
        assert sorted(matched) == ["orders.*", "orders.*", "orders.>", "orders.>"]  # one build per event type
        assert bus.stats().delivered == 200


def test_priorities_order_pattern_and_plain_handlers_together(recorder: Recorder) -> None:
    """Pattern handlers take their place among the others by priority, then registration order."""

    class Mixed:
        @subscribe("orders.placed", priority=1)
        def plain(self, event: Event) -> None:
            recorder("plain", event)

        @subscribe("orders.*", priority=5)
        def first(self, event: Event) -> None:
            recorder("first", event)

        @subscribe("orders.>")
        def last(self, event: Event) -> None:
            recorder("last", event)

    with EventBus(strategy="sync") as bus:
        bus.register(Mixed())
        bus.post(Placed(order_id=1))
    assert recorder.names() == ["first", "plain", "last"]


# -- properties against a reference matcher ------------------------------------------------------

_SEGMENTS = st.sampled_from(["a", "b", "cc"])
_topics = st.lists(_SEGMENTS, min_size=1, max_size=4).map(".".join)


@st.composite
def _patterns(draw: st.DrawFn) -> str:
    segments = draw(st.lists(st.one_of(_SEGMENTS, st.just("*")), min_size=1, max_size=4))
    if draw(st.booleans()):
        segments = [*segments[: draw(st.integers(0, len(segments) - 1))], ">"]
    return ".".join(segments)


def reference_match(pattern: str, topic: str) -> bool:
    """A regular-expression reading of the NATS subject rules, independent of eventbus._patterns."""
    parts = []
    for segment in pattern.split("."):
        if segment == "*":
            parts.append(r"[^.]+")
        elif segment == ">":
            parts.append(r"[^.]+(?:\.[^.]+)*")
        else:
            parts.append(re.escape(segment))
    return re.fullmatch(r"\.".join(parts), topic) is not None


def _handler(index: int, calls: list[tuple[int, str]], keys: list[str]) -> Callable[[Any], None]:
    def handler(event: Any) -> None:
        calls.append((index, event.topic))

    for key in keys:
        handler = subscribe(key)(handler)
    return handler


@settings(max_examples=150)
@given(
    subscriptions=st.lists(st.lists(_patterns(), min_size=1, max_size=3), min_size=1, max_size=6),
    posted=st.lists(_topics, min_size=1, max_size=8),
    late=st.integers(min_value=0, max_value=8),
)
def test_each_handler_is_called_once_per_matching_event_and_never_otherwise(
    subscriptions: list[list[str]], posted: list[str], late: int
) -> None:
    """Random patterns (a handler may hold several) and topics: calls equal the reference matcher's, exactly.

    Half the topics are posted before a second handler set registers, so cached tuples must be rebuilt.
    """
    calls: list[tuple[int, str]] = []
    with EventBus(strategy="sync") as bus:
        split = len(subscriptions) // 2
        for index, keys in enumerate(subscriptions[:split]):
            bus.register(_handler(index, calls, keys))
        for topic in posted[:late]:
            bus.post(topic)
        for index, keys in enumerate(subscriptions[split:], split):
            bus.register(_handler(index, calls, keys))
        for topic in posted[late:]:
            bus.post(topic)
    expected = [
        (index, topic)
        for position, topic in enumerate(posted)
        for index, keys in enumerate(subscriptions)
        if (index < split or position >= late) and any(reference_match(k, topic) for k in keys)
    ]
    assert sorted(calls) == sorted(expected)


@settings(max_examples=60)
@given(pattern=_patterns(), topic=_topics)
def test_pattern_matching_equals_the_reference(pattern: str, topic: str) -> None:
    """`Pattern.matches` agrees with the regular-expression reference on every draw."""
    assert topic_problem(pattern) is None
    assert pattern_of(pattern).matches(topic.split(".")) is reference_match(pattern, topic)


def test_fixed_patterns_on_every_strategy(strategy: str, make_bus: Callable[..., EventBus]) -> None:
    """One fixed mix of patterns on every strategy: the same calls as the reference, once each."""
    patterns = [["a.*"], ["a.>"], ["*.b", "a.b"], [">"], ["*.*.cc"], ["cc.>", "*"]]
    topics = ["a", "a.b", "a.b.cc", "cc", "b.b", "cc.a.cc", "a.cc"] * 3
    calls: list[tuple[int, str]] = []
    lock = threading.Lock()

    def make(index: int, keys: list[str]) -> Callable[[Any], None]:
        def handler(event: Message) -> None:
            with lock:
                calls.append((index, event.topic))

        for key in keys:
            handler = subscribe(key, thread_safe=True)(handler)
        return handler

    bus = make_bus()
    for index, keys in enumerate(patterns):
        bus.register(make(index, keys))
    for topic in topics:
        bus.post(topic)
    assert bus.join(WAIT)
    expected = [
        (index, topic)
        for topic in topics
        for index, keys in enumerate(patterns)
        if any(reference_match(k, topic) for k in keys)
    ]
    assert sorted(calls) == sorted(expected)
