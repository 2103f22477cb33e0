"""The process-wide default bus and the module-level functions, resolved at call time."""

from __future__ import annotations

import threading

import pytest

import eventbus
from eventbus import Event, EventBus, Message, get_default_bus, reset_default_bus, set_default_bus, subscribe
from eventbus import post as module_post  # bound at import time on purpose: must still resolve per call

from .helpers import WAIT, Recorder


class Ping(Event, topic="default.ping"):
    n: int = 0


def make_subscriber(recorder: Recorder, name: str) -> object:
    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> str:
            recorder(name, event)
            return name

    return Sub()


def test_default_bus_is_created_once_on_first_use() -> None:
    """`get_default_bus()` creates the bus on first use and then returns the same one."""
    first = get_default_bus()
    assert isinstance(first, EventBus)
    assert first.name == "default"
    assert get_default_bus() is first
    assert not first.closed


def test_default_bus_is_created_once_under_concurrent_first_use() -> None:
    """Threads racing to the first `get_default_bus()` all get the same bus."""
    barrier = threading.Barrier(8, timeout=WAIT)
    seen: list[EventBus] = []

    def grab() -> None:
        barrier.wait()
        seen.append(get_default_bus())

    threads = [threading.Thread(target=grab) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert len(seen) == 8
    assert all(bus is seen[0] for bus in seen)


def test_module_functions_act_on_the_default_bus(recorder: Recorder) -> None:
    """`register`, `post`, `publish` and `unregister` at module level use the default bus."""
    sub = make_subscriber(recorder, "sub")
    eventbus.register(sub)
    assert get_default_bus().is_registered(sub)
    eventbus.post(Ping(n=1))
    assert eventbus.publish(Ping(n=2)).result(timeout=WAIT) == ["sub"]
    assert get_default_bus().join(timeout=WAIT)
    assert sorted(event.n for event in recorder.events() if isinstance(event, Ping)) == [1, 2]
    assert eventbus.unregister(sub) is True
    assert eventbus.unregister(sub) is False


def test_module_post_accepts_a_topic_and_data(recorder: Recorder) -> None:
    """`eventbus.post("topic", data)` posts a Message, like `EventBus.post`."""

    @subscribe("default.topic")
    def on_topic(event: Message) -> None:
        recorder("on_topic", event)

    eventbus.register(on_topic)
    eventbus.post("default.topic", 5)
    assert eventbus.publish("default.topic").result(timeout=WAIT) == [None]
    assert get_default_bus().join(timeout=WAIT)
    assert recorder.events() == [Message("default.topic", 5), Message("default.topic")]


def test_module_functions_resolve_the_default_at_call_time(recorder: Recorder) -> None:
    """After `set_default_bus`, even functions imported earlier act on the new bus."""
    first = EventBus(strategy="sync", name="first")
    second = EventBus(strategy="sync", name="second")
    first.register(make_subscriber(recorder, "first"))
    second.register(make_subscriber(recorder, "second"))

    set_default_bus(first)
    module_post(Ping(n=1))
    eventbus.post(Ping(n=2))
    set_default_bus(second)
    module_post(Ping(n=3))
    assert eventbus.publish(Ping(n=4)).result(timeout=WAIT) == ["second"]
    assert recorder.calls == [("first", Ping(n=1)), ("first", Ping(n=2)), ("second", Ping(n=3)), ("second", Ping(n=4))]


def test_set_default_bus_returns_the_previous_bus_without_closing_it() -> None:
    """`set_default_bus` hands back the bus it replaced, still open."""
    assert set_default_bus(EventBus(strategy="sync")) is None
    installed = EventBus(strategy="sync")
    previous = set_default_bus(installed)
    assert previous is not None
    assert not previous.closed
    assert get_default_bus() is installed
    previous.shutdown()


def test_set_default_bus_refuses_other_objects() -> None:
    """Only an EventBus can become the default."""
    with pytest.raises(TypeError, match="EventBus"):
        set_default_bus(object())  # type: ignore[arg-type]  # the point of the test


def test_reset_default_bus_shuts_it_down_and_forgets_it(recorder: Recorder) -> None:
    """`reset_default_bus()` shuts the default bus down; the next use creates a fresh one."""
    old = get_default_bus()
    old.register(make_subscriber(recorder, "old"))
    old.post(Ping())
    reset_default_bus()
    assert old.closed
    assert recorder.names() == ["old"]  # what it accepted was delivered before it closed
    new = get_default_bus()
    assert new is not old
    assert not new.closed
    assert not new.has_subscribers(Ping)


def test_reset_without_a_default_bus_is_harmless() -> None:
    """`reset_default_bus()` with no default bus does nothing, however often it is called."""
    reset_default_bus()
    reset_default_bus()
    assert not get_default_bus().closed


def test_injected_buses_never_touch_the_default(recorder: Recorder) -> None:
    """Creating and using `EventBus(...)` leaves the default bus alone, and vice versa."""
    default = EventBus(strategy="sync", name="default-under-test")
    set_default_bus(default)
    injected = EventBus(strategy="sync", name="injected")
    injected.register(make_subscriber(recorder, "injected"))
    injected.post(Ping(n=1))
    eventbus.post(Ping(n=2))
    assert get_default_bus() is default
    assert recorder.calls == [("injected", Ping(n=1))]
    assert default.stats().posted == 1
    assert injected.stats().posted == 1
    injected.shutdown()
    assert not default.closed
