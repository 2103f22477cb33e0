"""Bridged `Message` topics and topic patterns (SPEC sections 11 and 13), on every engine in ENGINES.

Plus the routing rules that need no engine: which topic patterns overlap (against a
brute-force reference), and the bounded per-topic route cache.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventbus import Event, EventBus, Message, SubscriptionError, current_context, subscribe
from eventbus._patterns import pattern_of
from eventbus._routes import Routes, overlap, within
from eventbus.testing import InMemoryEngine

from .conftest import Harness  # noqa: TC001 - a fixture type, used at run time by nothing else
from .test_contract import wait_until

TOPICS = ["tests.orders.*", "tests.audit.>"]


class Recorder:
    """Records ``(handler, topic, data)`` of the Messages its handlers receive, under a lock."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: list[tuple[str, str, Any]] = []

    @subscribe("tests.orders.*", thread_safe=True)
    def orders(self, message: Message) -> None:
        self._record("orders", message)

    @subscribe("tests.orders.placed", thread_safe=True)
    def placed(self, message: Message) -> None:
        self._record("placed", message)

    @subscribe("tests.audit.>", thread_safe=True)
    def audit(self, message: Message) -> None:
        self._record("audit", message)

    def _record(self, name: str, message: Message) -> None:
        with self.lock:
            self.seen.append((name, message.topic, message.data))

    def sorted(self) -> list[tuple[str, str, Any]]:
        with self.lock:
            return sorted(self.seen)


class Setting(Event, topic="tests.bridges.setting", sticky=True):
    value: int


def test_pattern_bridged_messages_reach_pattern_and_plain_handlers(
    harness: Harness, buses: Callable[..., EventBus]
) -> None:
    """Messages whose topic a bridged pattern matches cross; the receiver's pattern and plain handlers get them."""
    worker = buses("concurrent")
    remote = Recorder()
    worker.register(remote)
    bridge = worker.bridge(harness.engine(), events=TOPICS, group="g", namespace=harness.namespace, partitions=2)
    sender = buses("sync")
    local: list[str] = []

    @subscribe("tests.misc.>")
    def misc(message: Message) -> None:
        local.append(message.topic)

    sender.register(misc)
    sender.bridge(harness.engine(), events=TOPICS, namespace=harness.namespace, partitions=2)
    assert sender.publish("tests.orders.placed", 1).result(10) == []
    sender.post("tests.orders.shipped", 2)
    sender.post(Message("tests.audit.eu.login", 3, ordered="k"))
    sender.post("tests.misc.stays", 4)  # matches no bridged topic: stays local
    sender.post("tests.orders.eu.placed", 5)  # '*' is one segment: stays local (a dead event)
    wait_until(lambda: bridge.stats().acked == 3, what="3 acks")
    assert remote.sorted() == [
        ("audit", "tests.audit.eu.login", 3),
        ("orders", "tests.orders.placed", 1),
        ("orders", "tests.orders.shipped", 2),
        ("placed", "tests.orders.placed", 1),
    ]
    assert local == ["tests.misc.stays"]
    assert sender.stats().dead == 1
    assert harness.stored() == 3
    assert bridge.stats().skipped == 0
    wait_until(lambda: harness.pending("g") == 0, what="no pending")


def test_a_receiver_acknowledges_and_skips_topics_it_does_not_list(
    harness: Harness, buses: Callable[..., EventBus]
) -> None:
    """In a shared namespace, Messages of topics no listed pattern matches are acknowledged, skipped and counted."""
    worker = buses("sync")
    remote = Recorder()
    worker.register(remote)
    bridge = worker.bridge(
        harness.engine(), events=["tests.orders.*"], group="g", namespace=harness.namespace, partitions=2
    )
    sender = buses("sync")
    sender.bridge(harness.engine(), events=[Message], namespace=harness.namespace, partitions=2)  # every topic
    for topic in ["tests.orders.a", "tests.other.b", "tests.orders.eu.c", "tests.audit.d", "tests.orders.e"]:
        sender.post(topic, topic[-1])
    wait_until(lambda: bridge.stats().acked == 5, what="5 acks")
    assert remote.sorted() == [("orders", "tests.orders.a", "a"), ("orders", "tests.orders.e", "e")]
    stats = bridge.stats()
    assert (stats.received, stats.skipped, stats.dead_lettered) == (5, 3, 0)
    assert worker.stats().posted == 2
    wait_until(lambda: harness.pending("g") == 0, what="no pending")


def test_topic_bridges_are_checked_at_bridge_and_register(harness: Harness, buses: Callable[..., EventBus]) -> None:
    """Bad patterns, overlapping bridges, ambiguous topics and handlers that would never run are refused."""
    engine = harness.engine()
    ns = harness.namespace
    bus = buses("sync")
    with pytest.raises(ValueError, match=r"bad Message topic.*'\*x' mixes a wildcard"):
        bus.bridge(engine, events=["tests.orders.*x"], namespace=ns)
    with pytest.raises(ValueError, match="empty segment"):
        bus.bridge(engine, events=["tests..orders"], namespace=ns)
    with pytest.raises(ValueError, match="list Message alone"):
        bus.bridge(engine, events=[Message, "tests.orders.*"], namespace=ns)

    class Placed(Event, topic="tests.orders.placed"):
        pass

    with pytest.raises(ValueError, match=r"could not tell a Message of that topic from a .*Placed"):
        bus.bridge(engine, events=[Placed, "tests.orders.*"], namespace=ns)
    bus.bridge(engine, events=["tests.orders.*"], group="g", namespace=ns)
    for taken in (["tests.orders.placed"], ["tests.>"], ["tests.*.placed"], [Message]):
        with pytest.raises(ValueError, match="already bridged"):
            bus.bridge(engine, events=taken, namespace=ns)

    class Shipped(Event, topic="tests.shipping.done"):
        pass

    bus.bridge(engine, events=["tests.orders.eu.*", Shipped], namespace=ns)  # no overlap with 'tests.orders.*'
    bus.register(Recorder())  # the bridges that send only carry no topic of its handlers

    sender = buses("sync")
    sender.bridge(engine, events=["tests.audit.>"], namespace=ns)  # send only
    with pytest.raises(SubscriptionError, match=r"'Recorder\.audit'.*'tests\.audit\.>'.*never reach it"):
        sender.register(Recorder())

    @subscribe("tests.audit.login")
    def login(message: Message) -> None: ...

    with pytest.raises(SubscriptionError, match="login"):
        sender.register(login)
    registered = buses("sync")
    registered.register(login)
    with pytest.raises(SubscriptionError, match="login"):
        registered.bridge(engine, events=["tests.*.login"], namespace=ns)
    assert not registered._bridges  # refused whole

    @subscribe("tests.*.login")
    def logins(message: Message) -> None: ...

    sender.register(logins)  # it still runs for the other topics its pattern matches, 'tests.web.login'


def test_a_sticky_event_from_a_bridge_is_kept(harness: Harness, buses: Callable[..., EventBus]) -> None:
    """A received event of a sticky class is kept like a posted one: bus.sticky() and later sticky handlers see it."""
    worker = buses("sync")
    live: list[int] = []
    contexts: list[str | None] = []

    @subscribe(Setting)
    def on_setting(event: Setting) -> None:
        live.append(event.value)
        contexts.append(getattr(current_context(), "id", None))

    worker.register(on_setting)
    bridge = worker.bridge(harness.engine(), events=[Setting], group="g", namespace=harness.namespace)
    sender = buses("sync")
    sender.bridge(harness.engine(), events=[Setting], namespace=harness.namespace)
    sender.post(Setting(value=7))
    wait_until(lambda: bridge.stats().acked == 1, what="1 ack")
    assert live == [7]
    assert worker.sticky(Setting) == Setting(value=7)
    late: list[int] = []

    @subscribe(Setting, sticky=True)
    def on_late(event: Setting) -> None:
        late.append(event.value)
        contexts.append(getattr(current_context(), "id", None))

    worker.register(on_late)
    assert late == [7]
    assert contexts[0] is not None
    assert contexts == [contexts[0]] * 2  # the kept event is replayed with the context it came with


def test_subscribers_registering_while_a_bridge_keeps_sticky_events_see_each_state_once_and_in_order(
    harness: Harness, buses: Callable[..., EventBus]
) -> None:
    """SPEC 13's atomic replacement, for events that arrive through a bridge.

    The bridge keeps each received event on its I/O thread and its handlers run on
    the feeder thread, while this thread registers a new sticky subscriber after
    every post: each subscriber gets each state at most once (replayed or live,
    never both) and never an older one after a newer one, and ends at the last.
    One partition, so that the events arrive in the order they were sent.
    """
    count = 100
    worker = buses("sync")
    bridge = worker.bridge(harness.engine(), events=[Setting], group="g", namespace=harness.namespace, partitions=1)
    sender = buses("sync")
    sender.bridge(harness.engine(), events=[Setting], namespace=harness.namespace, partitions=1)
    lock = threading.Lock()
    seen: dict[int, list[int]] = {}

    class Recorder:
        @subscribe(Setting, sticky=True, thread_safe=True)
        def on(self, event: Setting) -> None:
            with lock:
                seen.setdefault(id(self), []).append(event.value)

    recorders: list[Recorder] = []  # kept alive: their ids stay unique
    for value in range(1, count + 1):
        sender.post(Setting(value=value))
        recorders.append(Recorder())
        worker.register(recorders[-1])  # races with the bridge keeping and delivering earlier values
    wait_until(lambda: bridge.stats().acked == count, what=f"{count} acks")
    assert worker.join(10)
    with lock:
        histories = [seen.get(id(recorder), []) for recorder in recorders]
    for history in histories:
        assert history == sorted(set(history)), history  # each state once, never an older after a newer
        assert history[-1] == count
    assert len(histories[0]) > 1  # the first subscriber got live states after its first
    kept = worker.sticky(Setting)
    assert kept is not None
    assert kept.value == count


# -- routing rules, without an engine ------------------------------------------------------------------

_SEGMENTS = st.sampled_from(["a", "b", "*"])
_PATTERNS = st.builds(
    lambda head, rest: ".".join([*head, ">"] if rest else head) or ">",
    st.lists(_SEGMENTS, min_size=0, max_size=3),
    st.booleans(),
)


def _reference_overlap(a: str, b: str) -> bool:
    """Some topic of up to 5 segments over {a, b, c} matches both (enough: patterns have at most 4 segments)."""
    pa, pb = pattern_of(a), pattern_of(b)
    for size in range(1, 6):
        for topic in itertools.product("abc", repeat=size):
            segments = list(topic)
            if pa.matches(segments) and pb.matches(segments):
                return True
    return False


@given(_PATTERNS, _PATTERNS)
def test_overlap_agrees_with_a_brute_force_search(a: str, b: str) -> None:
    """overlap(a, b) is true exactly when some topic matches both patterns."""
    assert overlap(pattern_of(a), pattern_of(b)) == _reference_overlap(a, b)


def _reference_within(a: str, b: str) -> bool:
    """Every topic of up to 5 segments over {a, b, c} that matches *a* matches *b*."""
    pa, pb = pattern_of(a), pattern_of(b)
    for size in range(1, 6):
        for topic in itertools.product("abc", repeat=size):
            segments = list(topic)
            if pa.matches(segments) and not pb.matches(segments):
                return False
    return True


@given(_PATTERNS, _PATTERNS)
def test_within_agrees_with_a_brute_force_search(a: str, b: str) -> None:
    """within(a, b) is true exactly when every topic that matches a matches b."""
    assert within(pattern_of(a), pattern_of(b)) == _reference_within(a, b)


class _Bridge:
    def __init__(self) -> None:
        self.closed = False


def test_the_route_cache_of_message_topics_is_bounded() -> None:
    """Routing a Message is cached per topic, and the cache never holds more than 10,000 topics."""
    routes: Routes[_Bridge] = Routes()
    bridge = _Bridge()
    routes.add(bridge, [], receives=True, topics=["t.*"])
    for i in range(10_050):
        assert routes.find(Message(f"t.{i}")) is bridge
        assert routes.find(Message(f"u.{i}")) is None
        assert len(routes._topic_cache) <= 10_000
    assert routes.find(Message("t.x.y")) is None


def test_a_closed_bridges_topics_pass_to_the_next_bridge_that_takes_them() -> None:
    """A closed bridge keeps its topics (posting them fails there) until another bridge takes them over."""
    routes: Routes[_Bridge] = Routes()
    first, second, third = _Bridge(), _Bridge(), _Bridge()
    routes.add(first, [], receives=False, topics=["t.*", "u.>"])
    with pytest.raises(ValueError, match="already bridged"):
        routes.add(second, [], receives=True, topics=["t.>"])
    first.closed = True
    assert routes.find(Message("t.a")) is first
    routes.add(second, [], receives=True, topics=["t.>"])
    assert (routes.find(Message("t.a")), routes.find(Message("u.a"))) == (second, first)
    routes.check_handler("on_t", "t.a", object())  # the send-only route of 't.*' went with it
    with pytest.raises(SubscriptionError, match="on_u"):
        routes.check_handler("on_u", "u.a", object())
    second.closed = True
    routes.add(third, [Message], receives=True)
    assert (routes.find(Message("t.a")), routes.find(Message("v"))) == (third, third)
    with EventBus(strategy="sync") as bus, pytest.raises(TypeError, match="events= takes a list"):
        bus.bridge(InMemoryEngine(), events="t.*")
