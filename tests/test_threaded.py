"""The thread-pool strategies (ordered and concurrent): order, thread safety, backpressure, lifetime.

Every wait has a timeout; gates and barriers stand in for timing, never sleep().
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventbus import BusClosedError, DeadEvent, ErrorContext, Event, EventBus, Message, QueueFullError, subscribe

THREADED = ["ordered", "concurrent"]
WAIT = 30.0  # the longest any gate or join may take before the test fails


class Keyed(Event, topic="threaded.keyed", order_by="key"):
    key: int
    producer: int
    seq: int


class Tick(Event, topic="threaded.tick"):
    n: int


class Other(Event, topic="threaded.other"):
    n: int


@pytest.fixture(params=THREADED)
def strategy(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def pool_bus(strategy: str) -> Iterator[EventBus]:
    bus = EventBus(strategy=strategy, workers=8)  # type: ignore[arg-type]  # a parametrized Literal
    yield bus
    bus.shutdown(timeout=WAIT)


class HighWater:
    """Counts how many threads are inside a region at once, and the most ever seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inside = 0
        self.high = 0
        self.calls = 0

    def enter(self) -> None:
        with self.lock:
            self.inside += 1
            self.calls += 1
            self.high = max(self.high, self.inside)

    def leave(self) -> None:
        with self.lock:
            self.inside -= 1


def run_threads(count: int, target: object, *args: object) -> None:
    threads = [threading.Thread(target=target, args=(i, *args)) for i in range(count)]  # type: ignore[arg-type]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
        assert not thread.is_alive(), "a producer thread did not finish"


def test_keyed_events_keep_per_key_order_under_four_producers(pool_bus: EventBus) -> None:
    """4 producers x 25,000 keyed events over 50 keys: each subscriber sees each key in post order."""

    class Recorder:
        def __init__(self) -> None:
            self.seen: dict[tuple[int, int], list[int]] = defaultdict(list)
            self.total = 0

        @subscribe(thread_safe=True)
        def on_keyed(self, event: Keyed) -> None:
            # Only one event per key runs at a time, so each key's list has one writer at a time.
            self.seen[(event.key, event.producer)].append(event.seq)

    first, second = Recorder(), Recorder()
    pool_bus.register(first)
    pool_bus.register(second)
    per_producer = 25_000

    def produce(producer: int) -> None:
        for seq in range(per_producer):
            pool_bus.post(Keyed(key=seq % 50, producer=producer, seq=seq))

    run_threads(4, produce)
    assert pool_bus.join(WAIT)
    for recorder in (first, second):
        assert sum(len(v) for v in recorder.seen.values()) == 4 * per_producer
        for (key, _producer), seqs in recorder.seen.items():
            assert seqs == list(range(key, per_producer, 50))
    stats = pool_bus.stats()
    assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (100_000, 200_000, 0, 0, 0)


def test_thread_unsafe_handler_never_overlaps_itself(pool_bus: EventBus) -> None:
    """A thread_safe=False handler has high-water 1 under 8 workers and 2,000 events."""
    meter = HighWater()

    class Unsafe:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            meter.enter()
            sum(range(200))  # a little work, so overlaps would have a chance to show
            meter.leave()

    class Busy:  # keeps the other workers running at the same time
        @subscribe(Tick, thread_safe=True)
        def on_tick(self, event: Tick) -> None:
            sum(range(200))

    pool_bus.register(Unsafe())
    pool_bus.register(Busy())
    for n in range(2_000):
        pool_bus.post(Tick(n=n) if n % 2 else Message(f"spread.{n % 16}", n))
        pool_bus.post(Tick(n=n))
    assert pool_bus.join(WAIT)
    assert meter.calls == 3_000
    assert meter.high == 1


def test_thread_safe_handler_runs_in_parallel() -> None:
    """Two events for a thread_safe=True handler are inside it at once (both reach a barrier)."""
    bus = EventBus(strategy="concurrent", workers=4)
    barrier = threading.Barrier(2, timeout=WAIT)
    meter = HighWater()

    class Safe:
        @subscribe(thread_safe=True)
        def on_tick(self, event: Tick) -> None:
            meter.enter()
            barrier.wait()  # breaks (and fails the handler) unless two run at once
            meter.leave()

    bus.register(Safe())
    delivery = [bus.publish(Tick(n=n)) for n in range(2)]
    assert all(d.wait(WAIT) for d in delivery)
    assert [d.result() for d in delivery] == [[None], [None]]
    assert meter.high == 2
    bus.shutdown(timeout=WAIT)


def test_ordered_strategy_runs_different_topics_in_parallel_and_one_topic_serially() -> None:
    """Ordered: events of one topic never overlap; events of two topics do."""
    bus = EventBus(strategy="ordered", workers=4)
    barrier = threading.Barrier(2, timeout=WAIT)
    per_topic: dict[str, HighWater] = {"threaded.tick": HighWater(), "threaded.other": HighWater()}

    class Safe:
        @subscribe(Tick, thread_safe=True)
        @subscribe(Other, thread_safe=True)
        def on_any(self, event: Tick | Other) -> None:
            meter = per_topic[event.topic]
            meter.enter()
            if event.n == 0:
                barrier.wait()  # the first Tick and the first Other must meet here
            else:
                sum(range(500))
            meter.leave()

    bus.register(Safe())
    for n in range(200):
        bus.post(Tick(n=n))
        bus.post(Other(n=n))
    assert bus.join(WAIT)
    assert bus.stats().failed == 0  # the barrier was passed: the two topics ran at once
    assert [m.high for m in per_topic.values()] == [1, 1]
    assert [m.calls for m in per_topic.values()] == [200, 200]
    bus.shutdown(timeout=WAIT)


def test_busy_subscriber_does_not_block_the_pool(pool_bus: EventBus) -> None:
    """One thread_safe=False handler held at a gate with 20 events waiting; 100 others complete meanwhile."""
    gate, entered = threading.Event(), threading.Event()
    held: list[int] = []
    others: list[int] = []
    lock = threading.Lock()

    class Slow:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            entered.set()
            assert gate.wait(WAIT)
            held.append(event.n)

    class Fast:
        @subscribe(thread_safe=True)
        def on_other(self, event: Other) -> None:
            with lock:
                others.append(event.n)

    pool_bus.register(Slow())
    pool_bus.register(Fast())
    for n in range(21):
        pool_bus.post(Tick(n=n))
    assert entered.wait(WAIT)
    deliveries = [pool_bus.publish(Other(n=n)) for n in range(100)]
    assert all(d.wait(WAIT) for d in deliveries), "Other events waited behind the held subscriber"
    assert len(others) == 100
    assert held == []  # still held at the gate
    gate.set()
    assert pool_bus.join(WAIT)
    assert held == list(range(21))


def test_full_queue_times_out_and_refuses_the_event(strategy: str) -> None:
    """max_queued=10 with a held handler: post(timeout=0.2) raises QueueFullError and drops nothing accepted."""
    bus = EventBus(strategy=strategy, workers=2, max_queued=10)  # type: ignore[arg-type]
    gate, entered = threading.Event(), threading.Event()
    seen: list[int] = []

    class Held:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            entered.set()
            assert gate.wait(WAIT)
            seen.append(event.n)

    bus.register(Held())
    bus.post(Tick(n=0))
    assert entered.wait(WAIT)  # n=0 is running: it no longer counts against max_queued
    for n in range(1, 11):
        bus.post(Tick(n=n), timeout=1)
    assert bus.stats().queued == 10
    started = time.monotonic()
    with pytest.raises(QueueFullError, match="10 events are already waiting"):
        bus.post(Tick(n=99), timeout=0.2)
    assert time.monotonic() - started >= 0.19
    gate.set()
    assert bus.join(WAIT)
    assert seen == list(range(11))
    assert bus.stats().posted == 11
    bus.shutdown(timeout=WAIT)


def test_handler_posting_into_a_full_bus_does_not_deadlock(strategy: str) -> None:
    """A handler that posts while the queue is full is accepted (over the limit), not blocked."""
    bus = EventBus(strategy=strategy, workers=1, max_queued=2)  # type: ignore[arg-type]
    seen: list[int] = []

    class Chain:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            seen.append(event.n)
            if event.n < 50:
                for child in range(3):  # fan out: far more than max_queued
                    bus.post(Other(n=event.n * 10 + child))

        @subscribe
        def on_other(self, event: Other) -> None:
            seen.append(-1)

    bus.register(Chain())
    for n in range(60):
        bus.post(Tick(n=n), timeout=WAIT)
    assert bus.join(WAIT)
    assert seen.count(-1) == 150
    assert sorted(n for n in seen if n >= 0) == list(range(60))
    bus.shutdown(timeout=WAIT)


def test_shutdown_right_after_posting_delivers_everything(strategy: str) -> None:
    """shutdown() right after 20,000 posts to a slow handler delivers all 20,000; post then raises."""
    bus = EventBus(strategy=strategy)  # type: ignore[arg-type]
    counted: list[int] = []

    class Slow:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            sum(range(100))  # slow enough that most events are still queued at shutdown
            counted.append(event.n)

    bus.register(Slow())
    for n in range(20_000):
        bus.post(Tick(n=n))
    assert bus.shutdown(timeout=WAIT) is True
    assert len(counted) == 20_000
    assert bus.stats().delivered == 20_000
    with pytest.raises(BusClosedError):
        bus.post(Tick(n=-1))
    assert bus.shutdown() is True  # idempotent


def test_unregister_drops_queued_events_for_the_subscriber(pool_bus: EventBus) -> None:
    """After unregister returns, a subscriber with 1,000 queued events receives none of them."""
    gate, entered = threading.Event(), threading.Event()
    received: list[int] = []
    blocked: list[int] = []

    class Blocker:  # runs first and holds key 0, so every later key-0 event stays queued
        @subscribe(priority=10)
        def on_keyed(self, event: Keyed) -> None:
            entered.set()
            assert gate.wait(WAIT)
            blocked.append(event.seq)

    class Victim:
        @subscribe(thread_safe=True)
        def on_keyed(self, event: Keyed) -> None:
            received.append(event.seq)

    victim = Victim()
    pool_bus.register(Blocker())
    pool_bus.register(victim)
    pool_bus.post(Keyed(key=0, producer=0, seq=-1))
    assert entered.wait(WAIT)
    for seq in range(1_000):
        pool_bus.post(Keyed(key=0, producer=0, seq=seq))
    assert pool_bus.stats().queued == 1_000
    assert pool_bus.unregister(victim) is True
    gate.set()
    assert pool_bus.join(WAIT)
    assert received == []
    assert blocked == [-1, *range(1_000)]


def test_unregister_waits_for_a_running_call_on_another_thread(pool_bus: EventBus) -> None:
    """unregister() returns only after the subscriber's running call has finished."""
    entered, gate = threading.Event(), threading.Event()
    finished: list[str] = []

    class Busy:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            entered.set()
            assert gate.wait(WAIT)
            finished.append("handler")

    busy = Busy()
    pool_bus.register(busy)
    pool_bus.post(Tick(n=1))
    assert entered.wait(WAIT)
    unregistered = threading.Event()

    def unregister() -> None:
        pool_bus.unregister(busy)
        finished.append("unregister")
        unregistered.set()

    thread = threading.Thread(target=unregister)
    thread.start()
    assert not unregistered.wait(0.05)  # cannot have returned: the handler is still inside
    gate.set()
    assert unregistered.wait(WAIT)
    thread.join(WAIT)
    assert finished == ["handler", "unregister"]


def test_handler_may_unregister_its_own_subscriber(pool_bus: EventBus) -> None:
    """A handler that unregisters itself does not wait for itself."""

    class Once:
        def __init__(self) -> None:
            self.calls = 0

        @subscribe
        def on_tick(self, event: Tick) -> None:
            self.calls += 1
            pool_bus.unregister(self)

    once = Once()
    pool_bus.register(once)
    delivery = pool_bus.publish(Tick(n=1))
    assert delivery.result(WAIT) == [None]
    assert not pool_bus.is_registered(once)


@pytest.mark.parametrize("error", [ValueError("v"), KeyboardInterrupt(), SystemExit(3)], ids=lambda e: type(e).__name__)
def test_failing_handlers_never_kill_a_worker(strategy: str, error: BaseException) -> None:
    """ValueError, KeyboardInterrupt and SystemExit from a handler go to on_error; the pool goes on."""
    reports: list[tuple[type[BaseException], str]] = []
    bus = EventBus(
        strategy=strategy,  # type: ignore[arg-type]
        workers=2,
        on_error=lambda exc, ctx: reports.append((type(exc), ctx.handler)),
    )
    threads: set[str] = set()

    class Flaky:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            threads.add(threading.current_thread().name)
            if event.n % 2 == 0:
                raise error

    bus.register(Flaky())
    for n in range(100):
        bus.post(Tick(n=n))
    assert bus.join(WAIT)
    stats = bus.stats()
    assert (stats.delivered, stats.failed) == (50, 50)
    assert reports == [(type(error), f"{Flaky.__qualname__}.on_tick")] * 50
    assert threads <= {f"{bus.name}-worker-0", f"{bus.name}-worker-1"}
    assert bus.publish(Tick(n=1)).result(WAIT) == [None]  # the same pool still delivers
    bus.shutdown(timeout=WAIT)


def test_on_error_that_raises_is_logged_and_delivery_goes_on(strategy: str, caplog: pytest.LogCaptureFixture) -> None:
    """If on_error raises on a worker, that is logged and later events are still delivered."""

    def broken_hook(exc: BaseException, context: ErrorContext) -> None:
        raise RuntimeError("the hook is broken")

    bus = EventBus(strategy=strategy, on_error=broken_hook)  # type: ignore[arg-type]

    class Failing:
        @subscribe
        def on_tick(self, event: Tick) -> int:
            if event.n == 0:
                raise ValueError("first")
            return event.n

    bus.register(Failing())
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        bus.post(Tick(n=0))
        assert bus.publish(Tick(n=1)).result(WAIT) == [1]
        assert bus.join(WAIT)
    assert any("on_error raised RuntimeError" in record.getMessage() for record in caplog.records)
    bus.shutdown(timeout=WAIT)


def test_default_on_error_logs_the_traceback_on_a_worker(pool_bus: EventBus, caplog: pytest.LogCaptureFixture) -> None:
    """The default on_error logs handler, event and traceback on the eventbus logger."""

    class Failing:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            raise ValueError("boom")

    pool_bus.register(Failing())
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        pool_bus.post(Tick(n=7))
        assert pool_bus.join(WAIT)
    (record,) = [r for r in caplog.records if r.name == "eventbus"]
    assert "Failing.on_tick" in record.getMessage()
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


def test_publish_result_collects_values_and_errors(pool_bus: EventBus) -> None:
    """publish().result() waits and returns values in call order, or raises the ExceptionGroup."""

    class Two:
        @subscribe(priority=2)
        def first(self, event: Tick) -> str:
            return "first"

        @subscribe(priority=1)
        def second(self, event: Tick) -> str:
            if event.n < 0:
                raise ValueError("negative")
            return "second"

    pool_bus.register(Two())
    assert pool_bus.publish(Tick(n=1)).result(WAIT) == ["first", "second"]
    with pytest.raises(ExceptionGroup) as caught:
        pool_bus.publish(Tick(n=-1)).result(WAIT)
    (error,) = caught.value.exceptions
    assert isinstance(error, ValueError)
    assert any("Two.second" in note for note in error.__notes__)


def test_delivery_is_awaitable_from_asyncio(pool_bus: EventBus) -> None:
    """await bus.publish(event) waits on the loop without blocking it."""

    class Echo:
        @subscribe
        def on_tick(self, event: Tick) -> int:
            return event.n * 2

    pool_bus.register(Echo())

    async def main() -> list[object]:
        return await pool_bus.publish(Tick(n=21))

    assert asyncio.run(asyncio.wait_for(main(), WAIT)) == [42]


def test_join_and_shutdown_report_a_timeout(strategy: str) -> None:
    """join(timeout) and shutdown(timeout=...) return False while a handler is held."""
    bus = EventBus(strategy=strategy, workers=1)  # type: ignore[arg-type]
    gate, entered = threading.Event(), threading.Event()

    class Held:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            entered.set()
            assert gate.wait(WAIT)

    bus.register(Held())
    bus.post(Tick(n=1))
    bus.post(Tick(n=2))
    assert entered.wait(WAIT)
    assert bus.join(timeout=0.05) is False
    stats = bus.stats()
    assert (stats.queued, stats.running) == (1, 1)
    assert bus.shutdown(timeout=0.05) is False
    with pytest.raises(BusClosedError):
        bus.post(Tick(n=3))
    gate.set()
    assert bus.shutdown(timeout=WAIT) is True  # the second call waits for what was accepted
    assert bus.stats().delivered == 2


def test_join_from_a_handler_raises(pool_bus: EventBus) -> None:
    """join() from a handler of the same bus would wait for itself: it raises RuntimeError."""

    class Joiner:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            pool_bus.join(1)

    pool_bus.register(Joiner())
    with pytest.raises(ExceptionGroup) as caught:
        pool_bus.publish(Tick(n=1)).result(WAIT)
    assert isinstance(caught.value.exceptions[0], RuntimeError)


def test_context_manager_drains_on_exit(strategy: str) -> None:
    """Leaving the with block shuts the bus down after delivering everything."""
    seen: list[int] = []

    class Sink:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            seen.append(event.n)

    with EventBus(strategy=strategy) as bus:  # type: ignore[arg-type]
        bus.register(Sink())
        for n in range(500):
            bus.post(Tick(n=n))
    assert bus.closed
    assert sorted(seen) == list(range(500))


def test_dead_events_on_a_pool(pool_bus: EventBus) -> None:
    """An event nobody handles is delivered as a DeadEvent by the workers too."""
    dead: list[object] = []

    class Graveyard:
        @subscribe
        def on_dead(self, event: DeadEvent) -> None:
            dead.append(event.event)

    pool_bus.register(Graveyard())
    pool_bus.post(Tick(n=5))
    assert pool_bus.join(WAIT)
    assert dead == [Tick(n=5)]
    assert pool_bus.stats().dead == 1


def test_process_without_shutdown_exits_promptly_and_default_bus_delivers(tmp_path: object) -> None:
    """A process that never calls shutdown() exits in under 10 s; the default bus delivered everything."""
    script = textwrap.dedent(
        """
        import atexit, sys, threading
        counted = []
        # Registered before eventbus is imported, so it runs after eventbus's own exit hook.
        atexit.register(lambda: print("handled", len(counted), flush=True))
        import eventbus
        from eventbus import EventBus, subscribe, Message

        class Slowish:
            @subscribe(Message)
            def on_message(self, event):
                sum(range(2000))
                counted.append(event.data)

        eventbus.register(Slowish())
        for n in range(5000):
            eventbus.post("work", n)
        other = EventBus(strategy="ordered")   # an injected bus that is never shut down either
        other.register(Slowish())
        other.post("work", -1)
        print("posted", flush=True)
        """
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=20,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        check=False,
    )
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["posted", "handled 5001"]
    assert elapsed < 10


@settings(max_examples=40, deadline=None)
@given(
    plan=st.lists(
        st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=1, max_size=40),
        min_size=1,
        max_size=4,
    ),
    workers=st.integers(1, 4),
)
def test_ordered_strategy_keeps_per_key_order_for_any_interleaving(
    plan: list[list[tuple[int, bool]]], workers: int
) -> None:
    """Any interleaving of posts from several threads keeps per-key order (ordered strategy), as a model says."""
    bus = EventBus(strategy="ordered", workers=workers)
    seen: dict[int, list[tuple[int, int]]] = defaultdict(list)

    class Recorder:
        @subscribe(Keyed, thread_safe=True)
        def on_keyed(self, event: Keyed) -> None:
            seen[event.key].append((event.producer, event.seq))

        @subscribe("threaded.tick", thread_safe=True)
        def on_tick(self, event: Tick) -> None:
            seen[-1].append((event.n // 1000, event.n % 1000))

    bus.register(Recorder())
    start = threading.Barrier(len(plan), timeout=WAIT)

    def produce(producer: int) -> None:
        start.wait()
        for seq, (key, topical) in enumerate(plan[producer]):
            bus.post(Tick(n=producer * 1000 + seq) if topical else Keyed(key=key, producer=producer, seq=seq))

    run_threads(len(plan), produce)
    assert bus.shutdown(timeout=WAIT)
    # The model: per key, each producer's events in its own post order, and nothing else.
    model: dict[int, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for producer, steps in enumerate(plan):
        for seq, (key, topical) in enumerate(steps):
            model[-1 if topical else key][producer].append(seq)
    assert set(seen) == set(model)
    for key, events in seen.items():
        by_producer: dict[int, list[int]] = defaultdict(list)
        for producer, seq in events:
            by_producer[producer].append(seq)
        assert by_producer == model[key]


def test_dead_event_refused_for_lack_of_room_is_not_counted(strategy: str) -> None:
    """A dead event that a full queue refuses is not counted in stats().dead (its retry will be)."""
    bus = EventBus(strategy=strategy, workers=1, max_queued=1)  # type: ignore[arg-type]
    gate, entered = threading.Event(), threading.Event()

    class Graveyard:
        @subscribe
        def on_dead(self, event: DeadEvent) -> None:
            entered.set()
            assert gate.wait(WAIT)

    bus.register(Graveyard())
    bus.post(Tick(n=1))  # running, held at the gate
    assert entered.wait(WAIT)
    bus.post(Tick(n=2))  # waiting: the queue is full now
    with pytest.raises(QueueFullError):
        bus.post(Tick(n=3), timeout=0.05)
    gate.set()
    assert bus.join(WAIT)
    stats = bus.stats()
    assert (stats.posted, stats.dead, stats.delivered) == (2, 2, 2)
    bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("thread_safe", [False, True])
def test_a_poster_waiting_for_room_behind_one_busy_key_is_let_in_as_the_key_moves(
    strategy: str, thread_safe: bool
) -> None:
    """A worker runs a key's next event itself; the room that makes still wakes the waiting poster."""
    got: list[int] = []
    started, gate = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    class Sub:
        @subscribe(Keyed, thread_safe=thread_safe)
        def on(self, event: Keyed) -> None:
            if event.seq == 0:
                started.set()
                assert gate.wait(WAIT)
            got.append(event.seq)

    bus = EventBus(strategy=strategy, workers=2, max_queued=2)  # type: ignore[arg-type]  # a parametrized Literal
    bus.register(Sub())

    def produce() -> None:
        try:
            for seq in range(50):
                bus.post(Keyed(key=0, producer=0, seq=seq), timeout=WAIT)  # QueueFullError if never woken
        except BaseException as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    try:
        producer.start()
        assert started.wait(WAIT)
        pool: Any = bus._strategy  # the test needs to see the poster blocked: seq 1 and 2 wait behind seq 0
        deadline = time.monotonic() + WAIT
        while not pool._room_waiters:
            assert time.monotonic() < deadline, "the poster never had to wait for room"
            time.sleep(0.001)
        gate.set()
        producer.join(WAIT)
        assert not producer.is_alive()
        assert errors == []
        assert bus.join(WAIT)
    finally:
        gate.set()
        bus.shutdown(timeout=WAIT)
    assert got == list(range(50))
