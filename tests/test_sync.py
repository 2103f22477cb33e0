"""The sync strategy: delivery on the posting thread, Guava's per-thread queue, BaseException propagation."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from eventbus import Delivery, Event, EventBus, Message, SyncDelivery, subscribe

from .helpers import WAIT, ErrorLog, Recorder


class Ping(Event, topic="sync.ping"):
    n: int = 0


class Pong(Event, topic="sync.pong"):
    n: int = 0


@pytest.fixture
def sync_bus() -> Iterator[EventBus]:
    bus = EventBus(strategy="sync", name="sync")
    yield bus
    bus.shutdown(timeout=WAIT)


def test_sync_strategy_is_a_sync_delivery() -> None:
    """`strategy="sync"` selects SyncDelivery; a SyncDelivery instance serves one bus only."""
    strategy = SyncDelivery()
    bus = EventBus(strategy=strategy)
    assert "SyncDelivery" in repr(bus)
    with pytest.raises(RuntimeError, match="already serves a bus"):
        EventBus(strategy=strategy)
    assert "SyncDelivery" in repr(EventBus(strategy="sync"))


def test_handlers_run_on_the_posting_thread_before_post_returns(sync_bus: EventBus, recorder: Recorder) -> None:
    """On the sync strategy a handler has run, on the caller's thread, by the time `post` returns."""
    threads: list[int] = []

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            threads.append(threading.get_ident())
            recorder("on_ping", event)

    sync_bus.register(Sub())
    sync_bus.post(Ping())
    assert recorder.names() == ["on_ping"]
    assert threads == [threading.get_ident()]
    assert sync_bus.publish(Ping()).done()


def test_dispatch_order_is_breadth_first_like_guava(sync_bus: EventBus, recorder: Recorder) -> None:
    """Guava's dispatcher test: i1, i2, i3 each post a message that s1, s2 receive -> i1 i2 i3 s1 s2 s1 s2 s1 s2."""

    class IntegerSubscriber:
        def __init__(self, name: str) -> None:
            self.name = name

        @subscribe(int)
        def on_int(self, event: int) -> None:
            recorder(self.name, event)
            sync_bus.post("sync.message", self.name)

    class StringSubscriber:
        def __init__(self, name: str) -> None:
            self.name = name

        @subscribe("sync.message")
        def on_message(self, event: Message) -> None:
            recorder(self.name, event)

    for name in ("i1", "i2", "i3"):
        sync_bus.register(IntegerSubscriber(name))
    for name in ("s1", "s2"):
        sync_bus.register(StringSubscriber(name))
    sync_bus.post(1)
    assert recorder.names() == ["i1", "i2", "i3", "s1", "s2", "s1", "s2", "s1", "s2"]
    assert recorder.events()[3:] == [Message("sync.message", f"i{n}") for n in (1, 1, 2, 2, 3, 3)]


def test_repost_chain_is_seen_in_order(sync_bus: EventBus, recorder: Recorder) -> None:
    """A handler that reposts n+1 up to 10 lets a second subscriber see 1..10 in order."""

    class Reposter:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            if event.n < 10:
                sync_bus.post(Ping(n=event.n + 1))

    class Watcher:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("watcher", event)

    sync_bus.register(Reposter())
    sync_bus.register(Watcher())
    sync_bus.post(Ping(n=1))
    assert recorder.events() == [Ping(n=n) for n in range(1, 11)]


def test_no_handler_is_reentered_by_a_nested_post(sync_bus: EventBus) -> None:
    """A post made inside a handler is delivered after that handler returns, never inside it."""
    inside: list[str] = []
    overlaps: list[tuple[str, str]] = []
    seen: list[str] = []

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            if inside:
                overlaps.append((inside[-1], "on_ping"))
            inside.append("on_ping")
            seen.append(f"ping{event.n}")
            if event.n < 3:
                sync_bus.post(Ping(n=event.n + 1))
                sync_bus.post(Pong(n=event.n))
            seen.append(f"ping{event.n} returns")
            inside.pop()

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            if inside:
                overlaps.append((inside[-1], "on_pong"))
            seen.append(f"pong{event.n}")

    sync_bus.register(Sub())
    sync_bus.post(Ping(n=1))
    assert overlaps == []
    assert seen == [
        "ping1",
        "ping1 returns",
        "ping2",
        "ping2 returns",
        "pong1",
        "ping3",
        "ping3 returns",
        "pong2",
    ]


def test_nested_publish_completes_after_the_outer_event(sync_bus: EventBus) -> None:
    """A delivery published inside a handler is pending there, times out if waited on, and is done afterwards."""
    inner: list[Delivery] = []
    observed: list[object] = []

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            delivery = sync_bus.publish(Pong(n=event.n))
            inner.append(delivery)
            observed.append(delivery.done())
            try:
                delivery.result(timeout=0.01)
            except TimeoutError as exc:
                observed.append(exc)

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> int:
            return event.n * 10

    sync_bus.register(Sub())
    sync_bus.post(Ping(n=4))
    assert observed[0] is False
    assert isinstance(observed[1], TimeoutError)
    assert inner[0].done()
    assert inner[0].result() == [40]


def test_each_threads_events_reach_handlers_in_post_order(sync_bus: EventBus) -> None:
    """Events posted by one thread reach every handler in the order that thread posted them."""
    seen: dict[str, list[tuple[int, int]]] = {"first": [], "second": []}
    lock = threading.Lock()
    barrier = threading.Barrier(4, timeout=WAIT)

    class Sub:
        @subscribe(Ping, thread_safe=True)
        def first(self, event: Ping) -> None:
            with lock:
                seen["first"].append((event.n // 1000, event.n % 1000))

        @subscribe(Ping, thread_safe=True)
        def second(self, event: Ping) -> None:
            with lock:
                seen["second"].append((event.n // 1000, event.n % 1000))

    sync_bus.register(Sub())

    def produce(thread: int) -> None:
        barrier.wait()
        for seq in range(300):
            sync_bus.post(Ping(n=thread * 1000 + seq))

    threads = [threading.Thread(target=produce, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(thread.is_alive() for thread in threads)
    for handler in ("first", "second"):
        for producer in range(4):
            assert [seq for t, seq in seen[handler] if t == producer] == list(range(300))


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_base_exceptions_propagate_to_the_poster_and_the_bus_stays_usable(
    interrupt: type[BaseException], recorder: Recorder
) -> None:
    """KeyboardInterrupt/SystemExit from a handler reach the caller of `post`; the next post works."""
    errors = ErrorLog()
    bus = EventBus(strategy="sync", on_error=errors)

    class Sub:
        @subscribe(Ping, priority=1)
        def interrupt(self, event: Ping) -> None:
            recorder("interrupt", event)
            if event.n == 0:
                raise interrupt

        @subscribe(Ping)
        def later(self, event: Ping) -> None:
            recorder("later", event)

    bus.register(Sub())
    with pytest.raises(interrupt):
        bus.post(Ping(n=0))
    assert recorder.names() == ["interrupt"]  # the interrupted event's later handlers are skipped
    assert [type(exc) for exc in errors.exceptions()] == [interrupt]  # and it was reported
    bus.post(Ping(n=1))
    assert recorder.calls[1:] == [("interrupt", Ping(n=1)), ("later", Ping(n=1))]
    assert bus.join(timeout=WAIT)


def test_interrupted_publish_settles_the_skipped_handlers() -> None:
    """A delivery interrupted by KeyboardInterrupt is still done: the failed handler and no value for the rest."""
    deliveries: list[Delivery] = []
    bus = EventBus(strategy="sync", on_error=ErrorLog())

    class Sub:
        @subscribe(Ping, priority=2)
        def first(self, event: Ping) -> str:
            deliveries.append(bus.publish(Pong()))
            return "first"

        @subscribe(Pong, priority=1)
        def interrupt(self, event: Pong) -> None:
            raise KeyboardInterrupt

        @subscribe(Pong)
        def skipped(self, event: Pong) -> str:
            return "skipped"

    bus.register(Sub())
    with pytest.raises(KeyboardInterrupt):
        bus.post(Ping())
    (delivery,) = deliveries
    assert delivery.done()
    with pytest.raises(BaseExceptionGroup) as caught:
        delivery.result(timeout=0)
    assert [type(exc) for exc in caught.value.exceptions] == [KeyboardInterrupt]


def test_events_queued_before_an_interrupt_are_delivered_by_the_next_post(recorder: Recorder) -> None:
    """Events a handler posted before a KeyboardInterrupt stay queued and go out first on the next post."""
    bus = EventBus(strategy="sync", on_error=ErrorLog())

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("on_ping", event)
            if event.n == 0:
                bus.post(Pong(n=1))
                raise KeyboardInterrupt

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            recorder("on_pong", event)

    bus.register(Sub())
    with pytest.raises(KeyboardInterrupt):
        bus.post(Ping(n=0))
    assert recorder.names() == ["on_ping"]
    bus.post(Pong(n=2))
    assert recorder.calls[1:] == [("on_pong", Pong(n=1)), ("on_pong", Pong(n=2))]


def test_join_delivers_events_left_queued_by_an_interrupt(recorder: Recorder) -> None:
    """`join()` on the interrupted thread delivers what it left queued."""
    bus = EventBus(strategy="sync", on_error=ErrorLog())

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            bus.post(Pong(n=1))
            raise KeyboardInterrupt

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            recorder("on_pong", event)

    bus.register(Sub())
    with pytest.raises(KeyboardInterrupt):
        bus.post(Ping())
    assert bus.stats().queued == 1
    assert bus.join(timeout=WAIT)
    assert recorder.events() == [Pong(n=1)]
    assert bus.stats().queued == 0


def test_event_interrupted_by_keyboard_interrupt_is_still_counted_as_posted() -> None:
    """An event accepted and delivered (one handler raised KeyboardInterrupt) counts in `posted`."""
    bus = EventBus(strategy="sync", on_error=ErrorLog())

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            raise KeyboardInterrupt

    bus.register(Sub())
    with pytest.raises(KeyboardInterrupt):
        bus.post(Ping())
    stats = bus.stats()
    assert (stats.failed, stats.posted) == (1, 1)


def test_join_does_not_wait_forever_for_a_dead_threads_leftovers() -> None:
    """A thread that ends after SystemExit in a handler must not leave `join()` waiting forever."""
    bus = EventBus(strategy="sync", on_error=ErrorLog())

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            bus.post(Pong())
            raise SystemExit

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            pass

    bus.register(Sub())
    exits: list[SystemExit] = []

    def post_then_end() -> None:
        try:
            bus.post(Ping())
        except SystemExit as exc:
            exits.append(exc)

    worker = threading.Thread(target=post_then_end)
    worker.start()
    worker.join(timeout=WAIT)
    assert not worker.is_alive()
    assert len(exits) == 1
    assert bus.stats().queued == 1  # the Pong, stranded by the SystemExit
    assert bus.join(timeout=0.5)
    stats = bus.stats()
    assert (stats.posted, stats.delivered, stats.queued) == (2, 1, 0)  # join() delivered the Pong


def test_thread_unsafe_handler_never_runs_on_two_posting_threads_at_once(sync_bus: EventBus) -> None:
    """`thread_safe=False` handlers of one subscriber are serialised across posting threads."""
    lock = threading.Lock()
    state = {"inside": 0, "high": 0, "calls": 0}
    # Two handlers meet at the barrier only if they run at the same time; serialised, the
    # first times out (a bounded wait, not a sleep) and the second finds the barrier broken.
    barrier = threading.Barrier(2, timeout=0.3)

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            with lock:
                state["inside"] += 1
                state["calls"] += 1
                state["high"] = max(state["high"], state["inside"])
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            with lock:
                state["inside"] -= 1

    sync_bus.register(Sub())
    threads = [threading.Thread(target=sync_bus.post, args=(Ping(n=n),)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert not any(thread.is_alive() for thread in threads)
    assert state == {"inside": 0, "high": 1, "calls": 2}


def test_thread_safe_handler_runs_on_several_posting_threads_at_once(sync_bus: EventBus) -> None:
    """`thread_safe=True` handlers may run at the same time on several posting threads."""
    barrier = threading.Barrier(3, timeout=WAIT)
    met: list[int] = []

    class Sub:
        @subscribe(Ping, thread_safe=True)
        def on_ping(self, event: Ping) -> None:
            met.append(barrier.wait())  # only returns once all three are inside at once

    sync_bus.register(Sub())
    threads = [threading.Thread(target=sync_bus.post, args=(Ping(n=n),)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert sorted(met) == [0, 1, 2]


def test_unregistering_a_later_subscriber_mid_event_skips_it(sync_bus: EventBus, recorder: Recorder) -> None:
    """A subscriber unregistered by an earlier handler of the same event does not receive it."""

    class Later:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("later", event)

    later = Later()

    class Earlier:
        @subscribe(Ping, priority=1)
        def on_ping(self, event: Ping) -> None:
            recorder("earlier", event)
            sync_bus.unregister(later)

    sync_bus.register(Earlier())
    sync_bus.register(later)
    sync_bus.post(Ping())
    assert recorder.names() == ["earlier"]


def test_handler_may_unregister_its_own_subscriber(sync_bus: EventBus, recorder: Recorder) -> None:
    """A handler that unregisters its own object returns normally; later handlers of the object are skipped."""

    class Once:
        @subscribe(Ping)
        def first(self, event: Ping) -> None:
            recorder("first", event)
            assert sync_bus.unregister(self)

        @subscribe(Ping)
        def second(self, event: Ping) -> None:
            recorder("second", event)

    sync_bus.register(Once())
    sync_bus.post(Ping(n=1))
    sync_bus.post(Ping(n=2))
    assert recorder.calls == [("first", Ping(n=1))]


def test_queued_events_skip_a_subscriber_unregistered_before_their_turn(sync_bus: EventBus, recorder: Recorder) -> None:
    """Events already queued for a subscriber are not delivered once it is unregistered."""

    class Target:
        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            recorder("target", event)

    target = Target()

    class Driver:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            sync_bus.post(Pong(n=1))  # queued behind this event
            sync_bus.unregister(target)

    sync_bus.register(Driver())
    sync_bus.register(target)
    sync_bus.post(Ping())
    assert recorder.calls == []


def test_subscriber_registered_mid_event_gets_only_later_events(sync_bus: EventBus, recorder: Recorder) -> None:
    """A subscriber registered during delivery misses the current event and receives the next."""

    class Newcomer:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            recorder("newcomer", event)

    class Host:
        @subscribe(Ping, priority=1)
        def on_ping(self, event: Ping) -> None:
            recorder("host", event)
            sync_bus.register(Newcomer())

    sync_bus.register(Host())
    sync_bus.post(Ping(n=1))
    assert recorder.calls == [("host", Ping(n=1))]
    sync_bus.post(Ping(n=2))
    assert recorder.calls[1:] == [("host", Ping(n=2)), ("newcomer", Ping(n=2))]


def test_join_waits_for_deliveries_running_on_other_threads(sync_bus: EventBus) -> None:
    """`join` reports False while another thread is still delivering, True once it is done; stats show it running."""
    entered, release = threading.Event(), threading.Event()

    class Slow:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            entered.set()
            release.wait(timeout=WAIT)

    sync_bus.register(Slow())
    poster = threading.Thread(target=sync_bus.post, args=(Ping(),))
    poster.start()
    try:
        assert entered.wait(timeout=WAIT)
        assert sync_bus.join(timeout=0.05) is False
        assert sync_bus.stats().running == 1
    finally:
        release.set()
    assert sync_bus.join(timeout=WAIT) is True
    poster.join(timeout=WAIT)
    stats = sync_bus.stats()
    assert (stats.running, stats.queued, stats.delivered) == (0, 0, 1)


def test_stats_count_posts_from_every_thread(sync_bus: EventBus) -> None:
    """Counters from all posting threads add up, also after those threads have ended."""

    class Sub:
        @subscribe(Ping, thread_safe=True)
        def on_ping(self, event: Ping) -> None:
            pass

    sync_bus.register(Sub())

    def produce() -> None:
        for _ in range(50):
            sync_bus.post(Ping())

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=WAIT)
    assert sync_bus.join(timeout=WAIT)
    stats = sync_bus.stats()
    assert (stats.posted, stats.delivered) == (200, 200)


def test_shutdown_without_wait_on_an_idle_bus_reports_success(sync_bus: EventBus) -> None:
    """`shutdown(wait=False)` on an idle sync bus returns True: nothing was left undelivered."""
    assert sync_bus.shutdown(wait=False) is True


def test_join_inside_a_handler_does_not_claim_pending_events_were_handled(sync_bus: EventBus) -> None:
    """`join()` from a handler must not return True while an event it posted is still waiting in line."""
    outcome: list[object] = []

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            sync_bus.post(Pong())  # queued behind this very event
            try:
                outcome.append(sync_bus.join(timeout=0.2))
            except RuntimeError as exc:  # refusing, as the thread-pool strategies do, is fine too
                outcome.append(exc)

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            outcome.append("pong delivered")

    sync_bus.register(Sub())
    sync_bus.post(Ping())
    assert outcome[-1] == "pong delivered"
    assert outcome[0] is not True


def test_handlers_unregistering_each_other_on_two_threads_do_not_deadlock() -> None:
    """Two handlers that unregister each other's subscriber from two posting threads both return."""
    sync_bus = EventBus(strategy="sync")  # not shut down: with the bug, it would wait for the stuck posts
    meet = threading.Barrier(2, timeout=WAIT)

    class OnPing:
        other: object = None

        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            meet.wait()
            sync_bus.unregister(self.other)

    class OnPong:
        other: object = None

        @subscribe(Pong)
        def on_pong(self, event: Pong) -> None:
            meet.wait()
            sync_bus.unregister(self.other)

    on_ping, on_pong = OnPing(), OnPong()
    on_ping.other, on_pong.other = on_pong, on_ping
    sync_bus.register(on_ping)
    sync_bus.register(on_pong)
    # Daemon threads: if the bug is present they stay blocked, and must not keep the process alive.
    posters = [threading.Thread(target=sync_bus.post, args=(event,), daemon=True) for event in (Ping(), Pong())]
    for poster in posters:
        poster.start()
    for poster in posters:
        poster.join(timeout=2)
    assert not any(poster.is_alive() for poster in posters), "the two posts deadlocked"
    assert not sync_bus.is_registered(on_ping)
    assert not sync_bus.is_registered(on_pong)


def test_second_posting_thread_waits_for_the_first_threads_lock_free_call() -> None:
    """While one thread has posted, it calls thread_safe=False handlers without a lock; a second
    posting thread then waits until that call has returned before calling the same subscriber."""
    bus = EventBus(strategy="sync")
    entered, release = threading.Event(), threading.Event()
    lock = threading.Lock()
    state = {"inside": 0, "high": 0, "calls": 0}

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            with lock:
                state["inside"] += 1
                state["calls"] += 1
                state["high"] = max(state["high"], state["inside"])
                first = state["calls"] == 1
            if first:
                entered.set()
                assert release.wait(WAIT)
            with lock:
                state["inside"] -= 1

    bus.register(Sub())
    first = threading.Thread(target=bus.post, args=(Ping(),))  # the only poster so far: no lock taken
    first.start()
    assert entered.wait(WAIT)
    second_done = threading.Event()

    def post_second() -> None:
        bus.post(Ping())  # the second posting thread: switches the bus to locks, waits for the first call
        second_done.set()

    second = threading.Thread(target=post_second)
    second.start()
    assert not second_done.wait(0.2)  # still waiting: the first call has not returned
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert second_done.is_set()
    assert (state["calls"], state["high"]) == (2, 1)


def test_handoff_while_the_first_thread_still_needs_the_subscribers_lock_later_in_the_same_event() -> None:
    """The second thread waits for the first thread's unlocked delivery without holding the
    subscriber's lock, so that delivery can still take the lock for a filtered handler after it."""
    bus = EventBus(strategy="sync")
    entered, release = threading.Event(), threading.Event()
    calls: list[str] = []
    lock = threading.Lock()
    inside = {"now": 0, "high": 0}

    def enter(name: str) -> None:
        with lock:
            calls.append(name)
            inside["now"] += 1
            inside["high"] = max(inside["high"], inside["now"])

    def leave() -> None:
        with lock:
            inside["now"] -= 1

    class Sub:
        @subscribe(Ping, priority=1)
        def first(self, event: Ping) -> None:
            enter("first")
            if not entered.is_set():
                entered.set()
                assert release.wait(WAIT)
            leave()

        @subscribe(Ping, when=lambda event: True)  # filtered: goes through the locking path
        def filtered(self, event: Ping) -> None:
            enter("filtered")
            leave()

    bus.register(Sub())
    first = threading.Thread(target=bus.post, args=(Ping(),), daemon=True)
    first.start()
    assert entered.wait(WAIT)
    second = threading.Thread(target=bus.post, args=(Ping(),), daemon=True)
    second.start()
    release.set()
    first.join(WAIT)
    second.join(WAIT)
    assert not first.is_alive(), "the first poster deadlocked"
    assert not second.is_alive(), "the second poster deadlocked"
    assert sorted(calls) == ["filtered", "filtered", "first", "first"]
    assert inside["high"] == 1


def test_unregister_on_another_thread_waits_for_the_first_threads_unlocked_call() -> None:
    """unregister() returns only after a lock-free call of the subscriber has returned."""
    bus = EventBus(strategy="sync")
    entered, release, unregistered = threading.Event(), threading.Event(), threading.Event()
    returned: list[bool] = []

    class Sub:
        @subscribe(Ping)
        def on_ping(self, event: Ping) -> None:
            entered.set()
            assert release.wait(WAIT)
            returned.append(True)

    sub = Sub()
    bus.register(sub)
    poster = threading.Thread(target=bus.post, args=(Ping(),), daemon=True)
    poster.start()
    assert entered.wait(WAIT)

    def unregister() -> None:
        assert bus.unregister(sub)
        unregistered.set()

    remover = threading.Thread(target=unregister, daemon=True)
    remover.start()
    assert not unregistered.wait(0.2)  # still inside the handler
    assert returned == []
    release.set()
    assert unregistered.wait(WAIT)
    assert returned == [True]
    poster.join(WAIT)
    remover.join(WAIT)
    bus.post(Ping())  # unregistered: not called again
    assert returned == [True]
