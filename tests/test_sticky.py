"""Sticky events: the bus keeps the last event of a sticky class for handlers registered later (SPEC 13)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import assert_type

import pytest

from eventbus import (
    ErrorContext,
    Event,
    EventBus,
    QueueFullError,
    SubscriptionError,
    subscribe,
)

from .conftest import new_bus
from .helpers import WAIT, run_in_child, wait_until
from .test_hardening_sync import calm, in_thread, storm


class Settings(Event, topic="sticky.settings", sticky=True):
    version: int


class DbSettings(Settings, topic="sticky.settings.db"):
    pass


class Volatile(Settings, sticky=False):
    pass


class State(Event, topic="sticky.state", sticky=True, order_by="key"):
    version: int
    key: int = 0


class Plain(Event, topic="sticky.plain"):
    n: int = 0


class Holder:
    """A sticky handler and a plain one of the same class; records versions in call order."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sticky: list[Settings] = []
        self.plain: list[Settings] = []

    @subscribe(Settings, sticky=True)
    def on_settings(self, event: Settings) -> None:
        with self.lock:
            self.sticky.append(event)

    @subscribe(Settings)
    def on_settings_live(self, event: Settings) -> None:
        with self.lock:
            self.plain.append(event)


# -- declaring -------------------------------------------------------------------------------


def test_sticky_is_a_class_keyword_inherited_unless_switched_off() -> None:
    """``sticky=True`` marks the class and its subclasses; ``sticky=False`` takes it back; anything else is refused."""
    assert Settings.__eventbus_sticky__
    assert DbSettings.__eventbus_sticky__
    assert not Volatile.__eventbus_sticky__
    assert not Plain.__eventbus_sticky__
    with pytest.raises(TypeError, match="sticky= must be True or False"):

        class Bad(Event, sticky="yes"):  # the mistake under test
            pass


def test_sticky_handlers_subscribe_to_a_sticky_class() -> None:
    """sticky=True with a topic, or with a class that is not sticky, fails at decoration and says what to write."""
    with pytest.raises(SubscriptionError, match=r"sticky handlers subscribe to an event class, not a topic"):
        subscribe("sticky.settings", sticky=True)
    with pytest.raises(SubscriptionError, match=r"Declare it `class Plain\(Event, sticky=True\)`"):
        subscribe(Plain, sticky=True)
    with pytest.raises(SubscriptionError, match="sticky must be True or False"):
        subscribe(Settings, sticky=1)  # type: ignore[call-overload]  # the mistake under test


def test_a_bare_sticky_subscribe_checks_the_annotation_at_registration() -> None:
    """A bare ``@subscribe(sticky=True)`` takes its class from the annotation, which must be sticky."""

    class Good:
        @subscribe(sticky=True)
        def on(self, event: Settings) -> None:
            pass

    class Wrong:
        @subscribe(sticky=True)
        def on(self, event: Plain) -> None:
            pass

    with EventBus(strategy="sync") as bus:
        bus.post(Settings(version=1))
        bus.register(Good())
        with pytest.raises(SubscriptionError, match=r"Wrong\.on: uses a bare @subscribe\(sticky=True\).*Plain"):
            bus.register(Wrong())
        assert [s.sticky for s in bus.subscribers(Settings)] == [True]
        assert "sticky=True" in repr(bus.subscribers(Settings)[0])


def test_sticky_and_remove_sticky_keep_the_last_event_per_exact_class() -> None:
    """``bus.sticky(cls)`` is the last accepted event of exactly *cls*; ``remove_sticky`` forgets and returns it."""
    with EventBus(strategy="sync") as bus:
        assert_type(bus.sticky(Settings), Settings | None)
        assert bus.sticky(Settings) is None
        first, second, db = Settings(version=1), Settings(version=2), DbSettings(version=3)
        bus.post(first)
        bus.post(second)
        bus.publish(db)
        bus.post(Volatile(version=4))  # not sticky: not kept, and does not touch Settings's
        assert bus.sticky(Settings) is second
        assert bus.sticky(DbSettings) is db
        assert bus.remove_sticky(Settings) is second
        assert bus.sticky(Settings) is None
        assert bus.remove_sticky(Settings) is None
        with pytest.raises(TypeError, match=r"sticky\(Plain\): only the events of a class declared sticky"):
            bus.sticky(Plain)
        with pytest.raises(TypeError, match="remove_sticky"):
            bus.remove_sticky(Volatile)
        assert bus.stats().posted == 4
        assert bus.stats().dead == 4  # nobody subscribed: dead, and kept all the same


# -- delivery at registration ------------------------------------------------------------------


def test_a_sticky_handler_receives_the_kept_event_when_registered(bus: EventBus) -> None:
    """On every strategy: the kept event (the very object) reaches the sticky handler only, then live events follow."""
    bus.post(Settings(version=1))
    kept = Settings(version=2)
    bus.post(kept)
    assert bus.join(WAIT)
    holder = Holder()
    bus.register(holder)
    assert bus.join(WAIT)
    assert holder.sticky == [kept]
    assert holder.sticky[0] is kept
    assert holder.plain == []
    bus.post(Settings(version=3))
    assert bus.join(WAIT)
    assert [e.version for e in holder.sticky] == [2, 3]
    assert [e.version for e in holder.plain] == [3]
    stats = bus.stats()
    assert stats.posted == 3  # the replay is not posted again
    assert stats.delivered == 3
    assert stats.dead == 2


def test_async_sticky_handlers_on_every_strategy(bus: EventBus) -> None:
    """An ``async def`` sticky handler receives the kept event too."""
    got: list[int] = []

    class AsyncHolder:
        @subscribe(Settings, sticky=True)
        async def on(self, event: Settings) -> None:
            got.append(event.version)

    bus.post(Settings(version=7))
    bus.register(AsyncHolder())
    assert bus.join(WAIT)
    bus.post(Settings(version=8))
    assert bus.join(WAIT)
    assert got == [7, 8]


def test_nothing_is_delivered_when_nothing_is_kept(bus: EventBus) -> None:
    """No kept event (never posted, or removed): registration delivers nothing."""
    holder = Holder()
    bus.register(holder)
    assert bus.join(WAIT)
    assert holder.sticky == []
    bus.unregister(holder)
    bus.post(Settings(version=1))
    bus.remove_sticky(Settings)
    bus.register(holder)
    assert bus.join(WAIT)
    assert holder.sticky == []


def test_only_the_new_subscriber_receives_the_kept_event(bus: EventBus) -> None:
    """Registering a second subscriber replays to it alone; registering one twice replays once."""
    bus.post(Settings(version=1))
    first, second = Holder(), Holder()
    bus.register(first)
    bus.register(first)
    assert bus.join(WAIT)
    bus.register(second)
    assert bus.join(WAIT)
    assert [e.version for e in first.sticky] == [1]
    assert [e.version for e in second.sticky] == [1]


def test_sticky_handlers_honour_when_and_priority(bus: EventBus) -> None:
    """The replay goes through the handler's ``when=`` filter, and several sticky handlers run by priority."""
    calls: list[str] = []

    class Picky:
        @subscribe(Settings, sticky=True, when=lambda e: e.version > 5)
        def large(self, event: Settings) -> None:
            calls.append(f"large {event.version}")

        @subscribe(Settings, sticky=True, priority=10)
        def first(self, event: Settings) -> None:
            calls.append(f"first {event.version}")

    bus.post(Settings(version=1))
    bus.register(Picky())
    assert bus.join(WAIT)
    assert calls == ["first 1"]


def test_a_sticky_handler_of_a_base_class_receives_the_kept_events_of_its_sticky_subclasses(bus: EventBus) -> None:
    """Each exact class's kept event, in the order they were kept, once per handler however many keys match."""
    got: list[Settings] = []

    class Both:
        @subscribe(Settings, sticky=True)
        @subscribe(DbSettings, sticky=True)
        def on(self, event: Settings) -> None:
            got.append(event)

    db, base = DbSettings(version=1), Settings(version=2)
    bus.post(db)
    bus.post(base)
    bus.post(Volatile(version=3))
    bus.register(Both())
    assert bus.join(WAIT)
    assert got == [db, base]


def test_a_registration_from_a_handler_gets_the_kept_event_after_the_current_event() -> None:
    """On the sync strategy a replay queued by a handler is delivered breadth-first, like a nested post."""
    order: list[str] = []
    holder = Holder()

    class Registrar:
        @subscribe(Plain, priority=1)
        def register_holder(self, event: Plain) -> None:
            bus.register(holder)
            order.append(f"registered, holder has {len(holder.sticky)}")

        @subscribe(Plain)
        def after(self, event: Plain) -> None:
            order.append("second handler")

    with EventBus(strategy="sync") as bus:
        bus.post(Settings(version=1))
        bus.register(Registrar())
        bus.post(Plain())
        order.append(f"after post, holder has {len(holder.sticky)}")
    assert order == ["registered, holder has 0", "second handler", "after post, holder has 1"]


def test_an_unregistered_subscriber_does_not_receive_its_queued_replay() -> None:
    """A replay still queued when its subscriber unregisters is dropped, like any queued event of it."""
    release = threading.Event()
    started = threading.Event()

    class Blocker:
        @subscribe(Plain)
        def block(self, event: Plain) -> None:
            started.set()
            release.wait(WAIT)

    bus = EventBus(strategy="concurrent", workers=1)
    try:
        bus.post(Settings(version=1))
        bus.register(Blocker())
        bus.post(Plain())
        assert started.wait(WAIT)
        holder = Holder()
        bus.register(holder)  # the replay waits behind the blocked worker
        assert bus.unregister(holder)
        release.set()
        assert bus.join(WAIT)
        assert holder.sticky == []
    finally:
        release.set()
        bus.shutdown(timeout=WAIT)


def test_a_sticky_event_nobody_handles_is_kept_and_dead(bus: EventBus) -> None:
    """Without handlers a sticky event is still kept for later subscribers, and counted as dead once."""
    bus.post(Settings(version=1))
    assert bus.join(WAIT)
    assert bus.stats().dead == 1
    assert bus.stats().posted == 1
    assert bus.sticky(Settings) == Settings(version=1)


def test_registering_on_a_closed_bus_delivers_nothing_and_raises_nothing() -> None:
    """After shutdown a sticky subscriber still registers (as any does); the kept event is not delivered."""
    bus = EventBus(strategy="concurrent")
    bus.post(Settings(version=1))
    assert bus.shutdown(timeout=WAIT)
    holder = Holder()
    bus.register(holder)
    assert bus.is_registered(holder)
    assert holder.sticky == []


# -- refusals and interrupts -----------------------------------------------------------------


def test_a_refused_post_is_not_kept() -> None:
    """A post that the strategy refuses (a full queue) leaves the previous kept event in place."""
    release = threading.Event()
    started = threading.Event()

    class Blocker:
        @subscribe(Plain)
        def block(self, event: Plain) -> None:
            started.set()
            release.wait(WAIT)

    bus = EventBus(strategy="concurrent", workers=1, max_queued=1)
    try:
        first = Settings(version=1)
        bus.register(Holder())
        bus.post(first)
        assert bus.join(WAIT)
        bus.register(Blocker())
        bus.post(Plain())
        assert started.wait(WAIT)
        bus.post(Plain())  # waits in the queue: the queue is full
        with pytest.raises(QueueFullError):
            bus.post(Settings(version=2), timeout=0.01)
        assert bus.sticky(Settings) is first
    finally:
        release.set()
        bus.shutdown(timeout=WAIT)
    assert bus.stats().posted == 3


def test_a_keyboard_interrupt_from_a_replay_undoes_the_registration() -> None:
    """On the sync strategy a replayed handler's KeyboardInterrupt reaches ``register``, which is then undone."""

    def quiet(exc: BaseException, context: ErrorContext) -> None:
        pass

    class Interrupting:
        @subscribe(Settings, sticky=True)
        def on(self, event: Settings) -> None:
            raise KeyboardInterrupt

    with EventBus(strategy="sync", on_error=quiet) as bus:
        bus.post(Settings(version=1))
        subscriber = Interrupting()
        with pytest.raises(KeyboardInterrupt):
            bus.register(subscriber)
        assert not bus.is_registered(subscriber)
        holder = Holder()
        bus.register(holder)
        bus.post(Settings(version=2))
        assert [e.version for e in holder.sticky] == [1, 2]
        assert bus.stats().posted == 2


@pytest.mark.parametrize("strategy", ["sync", "concurrent", "asyncio"])
def test_interrupt_storm_while_posting_sticky_events_and_registering(strategy: str) -> None:
    """Interrupts anywhere in posts and registrations: no lock stays held, and each subscriber's states only grow.

    One ordering key for all events, so that live events arrive in order on the asynchronous strategies too.
    """
    bus = new_bus(strategy, on_error=lambda exc, context: None)
    lock = threading.Lock()
    seen: dict[int, list[int]] = {}

    class Recorder:
        @subscribe(State, sticky=True, thread_safe=True)
        def on(self, event: State) -> None:
            with lock:
                seen.setdefault(id(self), []).append(event.version)

    made: list[Recorder] = []  # each registered at most once, and kept alive (ids stay unique)

    def step(i: int) -> None:
        if i % 3 == 0:
            bus.post(State(version=i))
        elif i % 3 == 1:
            made.append(Recorder())
            bus.register(made[-1])
        elif len(made) > 20:
            bus.unregister(made[-20])  # at most 20 registered: posts stay short enough to complete

    bus.register(Recorder())  # the class scan, cached from then on (under a storm it might never finish)
    storm(0.0001, step, steps=20_000)
    assert in_thread(lambda: bus.register(Recorder()))
    assert in_thread(lambda: bus.post(State(version=10**9)))
    assert calm(lambda: bus.join(WAIT))
    with lock:
        assert sum(len(versions) > 1 for versions in seen.values()) > 10  # replays and live events, many times
        for versions in seen.values():
            assert versions == sorted(set(versions)), versions  # each state once, never an older after a newer
    kept = bus.sticky(State)
    assert kept is not None
    assert kept.version == 10**9
    assert calm(lambda: bus.shutdown(timeout=WAIT))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_fork_while_a_replay_runs_on_another_thread() -> None:
    """In a forked child, a sticky handler whose replay a parent thread was running takes live events."""
    in_replay, release = threading.Event(), threading.Event()
    seen: list[int] = []

    class Slow:
        @subscribe(Settings, sticky=True, thread_safe=True)
        def on(self, event: Settings) -> None:
            seen.append(event.version)
            if event.version == 1:
                in_replay.set()
                release.wait(WAIT)

    bus = EventBus(strategy="sync")
    bus.post(Settings(version=1))
    registering = threading.Thread(target=bus.register, args=(Slow(),), daemon=True)
    registering.start()
    assert in_replay.wait(WAIT)

    def child() -> str:
        seen.clear()
        bus.post(Settings(version=2))  # the gate's lock was held by a thread that does not exist here
        late = Holder()
        bus.register(late)
        return f"{seen} {[e.version for e in late.sticky]}"

    try:
        assert run_in_child(child) == "[2] [2]"
    finally:
        release.set()
        registering.join(WAIT)
    bus.post(Settings(version=3))
    assert seen == [1, 3]
    bus.shutdown()


# -- ordering against concurrent posts ------------------------------------------------------------


def test_a_newer_event_that_reaches_the_handler_first_cancels_the_replay() -> None:
    """The replay held up (here in its when= filter) while a newer event is handled is dropped, not delivered late."""
    in_filter = threading.Event()
    release = threading.Event()
    got: list[int] = []

    def when(event: Settings) -> bool:
        if event.version == 1:  # the kept event: hold the replay here
            in_filter.set()
            release.wait(WAIT)
        return True

    class Late:
        @subscribe(Settings, sticky=True, thread_safe=True, when=when)
        def on(self, event: Settings) -> None:
            got.append(event.version)

    bus = EventBus(strategy="concurrent", workers=2)
    try:
        bus.post(Settings(version=1))
        bus.register(Late())
        assert in_filter.wait(WAIT)
        bus.post(Settings(version=2))
        wait_until(lambda: got == [2], "the newer event was handled")
        release.set()
        assert bus.join(WAIT)
        assert got == [2]
    finally:
        release.set()
        bus.shutdown(timeout=WAIT)


def test_a_newer_event_waits_for_the_replay_being_handled_on_another_thread() -> None:
    """A thread-safe sticky handler: a newer event does not overtake the replay running on another worker."""
    in_replay = threading.Event()
    release = threading.Event()
    newer_started = threading.Event()
    calls: list[str] = []

    class Slow:
        @subscribe(Settings, sticky=True, thread_safe=True)
        def on(self, event: Settings) -> None:
            calls.append(f"start {event.version}")
            if event.version == 1:
                in_replay.set()
                release.wait(WAIT)
            else:
                newer_started.set()
            calls.append(f"end {event.version}")

    bus = EventBus(strategy="concurrent", workers=2)
    try:
        bus.post(Settings(version=1))
        bus.register(Slow())
        assert in_replay.wait(WAIT)
        bus.post(Settings(version=2))
        wait_until(lambda: bus.stats().running == 2, "a second worker took the newer event")
        assert not newer_started.wait(0.2)  # it waits for the replay instead of running beside it
        release.set()
        assert bus.join(WAIT)
        assert calls == ["start 1", "end 1", "start 2", "end 2"]
    finally:
        release.set()
        bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("thread_safe", [False, True], ids=["serial", "thread_safe"])
@pytest.mark.parametrize("is_async", [False, True], ids=["def", "async"])
def test_subscribers_registering_during_posts_get_each_state_once_and_never_an_older_one(
    make_bus: Callable[..., EventBus], strategy: str, thread_safe: bool, is_async: bool
) -> None:
    """Posts on one thread, registrations on another: each subscriber sees strictly newer states, ending at the last.

    The events share one ordering key, so live events arrive in order on every strategy and
    any repeat or step back can only come from a replay delivered twice or late.
    """
    posts, count = 300, 16
    lock = threading.Lock()
    seen: dict[int, list[int]] = {}

    if is_async:

        class Watcher:
            @subscribe(State, sticky=True, thread_safe=thread_safe)
            async def on(self, event: State) -> None:
                with lock:
                    seen.setdefault(id(self), []).append(event.version)

    else:

        class Watcher:  # type: ignore[no-redef]  # one of the two, by parameter
            @subscribe(State, sticky=True, thread_safe=thread_safe)
            def on(self, event: State) -> None:
                with lock:
                    seen.setdefault(id(self), []).append(event.version)

    bus = make_bus()
    bus.post(State(version=0))
    started = threading.Barrier(2, timeout=WAIT)
    watchers = [Watcher() for _ in range(count)]

    def poster() -> None:
        started.wait()
        for version in range(1, posts + 1):
            bus.post(State(version=version))

    thread = threading.Thread(target=poster)
    thread.start()
    started.wait()
    for watcher in watchers:
        bus.register(watcher)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert bus.join(WAIT)
    assert bus.stats().posted == posts + 1
    with lock:
        for watcher in watchers:
            versions = seen[id(watcher)]
            assert versions == sorted(set(versions)), versions  # each state once, never an older after a newer
            assert versions[-1] == posts


def test_a_subscriber_registering_as_a_state_is_posted_ends_with_that_state(
    make_bus: Callable[..., EventBus], strategy: str
) -> None:
    """A post and a registration released together: the subscriber gets that state, live or replayed, exactly once."""
    rounds = 40
    lock = threading.Lock()
    seen: dict[int, list[int]] = {}

    class Watcher:
        @subscribe(State, sticky=True)
        def on(self, event: State) -> None:
            with lock:
                seen.setdefault(id(self), []).append(event.version)

    bus = make_bus()
    bus.post(State(version=0))
    gate = threading.Barrier(2, timeout=WAIT)
    watchers = [Watcher() for _ in range(rounds)]

    def poster() -> None:
        for version in range(1, rounds + 1):
            gate.wait()
            bus.post(State(version=version))
            gate.wait()

    thread = threading.Thread(target=poster)
    thread.start()
    for watcher in watchers:
        gate.wait()
        bus.register(watcher)
        gate.wait()
    thread.join(WAIT)
    assert not thread.is_alive()
    assert bus.join(WAIT)
    with lock:
        for version, watcher in enumerate(watchers, 1):
            versions = seen[id(watcher)]
            assert versions == sorted(set(versions)), versions
            assert version in versions, (version, versions)
