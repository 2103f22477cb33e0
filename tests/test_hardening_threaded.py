"""The thread-pool strategies under faults (issue 10): interrupts, escaping exceptions, join, garbage, fork.

Every wait has a bound; gates and polls against a deadline stand in for timing.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import select
import signal
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from eventbus import Delivery, ErrorContext, Event, EventBus, QueueFullError, subscribe
from eventbus._strategies._pool_exit import drain_at_exit
from eventbus._strategies._pool_queues import IDLE_WAKE_SECONDS
from eventbus._strategies.threaded import _ThreadPoolDelivery

from .helpers import WAIT, in_logging, wait_until

THREADED = ["ordered", "concurrent"]


class Plain(Event, topic="hardening.plain"):
    uid: int


class Single(Event, topic="hardening.single"):
    uid: int


class Keyed(Event, topic="hardening.keyed", order_by="key"):
    uid: int
    key: int


def pool_of(bus: EventBus) -> _ThreadPoolDelivery:
    strategy = bus._strategy
    assert isinstance(strategy, _ThreadPoolDelivery)
    return strategy


def worker_threads(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-worker-")]


class Tally:
    """Counts handler calls per (handler, uid), safely from any thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: Counter[tuple[str, int]] = Counter()

    def add(self, handler: str, uid: int) -> None:
        with self.lock:
            self.calls[(handler, uid)] += 1

    def snapshot(self) -> Counter[tuple[str, int]]:
        with self.lock:
            return Counter(self.calls)


# -- 1. Ctrl-C storms --------------------------------------------------------------------


class StormSubscriber:
    """The stable subscriber of a storm: every event reaches each of its handlers once."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    @subscribe(Plain, thread_safe=True, priority=2)
    def plain_safe(self, event: Plain) -> None:
        self.tally.add("plain_safe", event.uid)

    @subscribe(Plain, priority=1)
    def plain_unsafe(self, event: Plain) -> None:
        self.tally.add("plain_unsafe", event.uid)

    @subscribe(Keyed, thread_safe=True)
    def keyed_safe(self, event: Keyed) -> None:
        self.tally.add("keyed_safe", event.uid)


class Mailbox:
    """The only handler of `Single` (thread_safe=False): the subscriber-line-only path."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    @subscribe(Single)
    def single(self, event: Single) -> None:
        self.tally.add("single", event.uid)


class KeyedUnsafe:
    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    @subscribe(Keyed)
    def keyed_unsafe(self, event: Keyed) -> None:
        self.tally.add("keyed_unsafe", event.uid)


class Churn:
    """Registered and unregistered over and over during the storm; its calls are only counted."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    @subscribe(Plain)
    def churn(self, event: Plain) -> None:
        self.tally.add("churn", event.uid)


HANDLERS_OF = {Plain: ("plain_safe", "plain_unsafe"), Single: ("single",), Keyed: ("keyed_safe", "keyed_unsafe")}


@pytest.fixture
def alarm() -> Iterator[Callable[[float], list[bool]]]:
    """Start a SIGALRM timer raising KeyboardInterrupt while the returned flag is set; always stopped."""
    previous = signal.getsignal(signal.SIGALRM)
    armed = [False]
    # No garbage collection during the storm: a finalizer or weakref callback that
    # the collector runs in the middle of a post (say, of a strategy from an earlier
    # test) would take the interrupt, and Python reports it as unraisable and drops
    # it. That is a limit of Python's, not of the bus; pytest turns it into noise.
    gc.collect()
    gc.disable()

    def start(interval: float) -> list[bool]:
        def on_alarm(signum: int, frame: FrameType | None) -> None:
            if armed[0] and not in_logging(frame):
                raise KeyboardInterrupt

        signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, interval, interval)
        return armed

    try:
        yield start
    finally:
        armed[0] = False
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, previous)
        gc.enable()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
@pytest.mark.parametrize("interval", [50e-6, 200e-6, 500e-6], ids=["50us", "200us", "500us"])
@pytest.mark.parametrize("strategy", THREADED)
def test_ctrl_c_storm_leaves_the_pool_consistent(
    strategy: str, interval: float, alarm: Callable[[float], list[bool]]
) -> None:
    """KeyboardInterrupts landing anywhere in post/publish/register/unregister: every event once or never."""
    tally = Tally()
    bus = EventBus(strategy=strategy, workers=4, max_queued=32, name=f"storm-{strategy}")  # type: ignore[arg-type]
    try:
        bus.register(StormSubscriber(tally))
        bus.register(Mailbox(tally))
        bus.register(KeyedUnsafe(tally))
        churn = Churn(tally)
        kinds: dict[int, type[Event]] = {}
        returned: set[int] = set()  # posts that returned normally
        refused: set[int] = set()  # posts that raised QueueFullError: not accepted
        deliveries: list[Delivery] = []
        interrupted = 0
        armed = alarm(interval)
        deadline = time.monotonic() + 0.6
        uid = 0
        try:
            while time.monotonic() < deadline:
                uid += 1
                op = uid % 7
                kind: type[Event] = (Plain, Single, Keyed)[op % 3]
                event: Event = Keyed(uid=uid, key=uid % 5) if kind is Keyed else kind(uid=uid)  # type: ignore[call-arg]
                kinds[uid] = kind
                try:
                    armed[0] = True
                    if op == 0:
                        deliveries.append(bus.publish(event))
                    elif op == 1:
                        bus.register(churn)
                        bus.post(event)
                    elif op == 2:
                        bus.unregister(churn)
                        bus.post(event, timeout=0.0005)
                    else:
                        bus.post(event)
                    armed[0] = False
                    returned.add(uid)
                except KeyboardInterrupt:
                    armed[0] = False
                    interrupted += 1
                except QueueFullError:
                    armed[0] = False
                    refused.add(uid)

        finally:
            armed[0] = False  # first, and with no call before it
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
        assert interrupted > 0, "the storm never interrupted anything"

        assert bus.join(WAIT), "join() did not finish after the storm"
        calls = tally.snapshot()
        accepted = 0
        for uid, kind in kinds.items():
            counts = {calls[(name, uid)] for name in HANDLERS_OF[kind]}
            assert len(counts) == 1, f"event {uid} reached only some of its handlers: {counts}"
            (count,) = counts
            assert count in (0, 1), f"event {uid} was delivered {count} times"
            if uid in returned:
                assert count == 1, f"event {uid} was accepted (its post returned) but not delivered"
            if uid in refused:
                assert count == 0, f"event {uid} was refused (QueueFullError) but delivered"
            accepted += count
        assert all(d.done() for d in deliveries)
        stats = bus.stats()
        assert stats.posted == accepted
        assert stats.delivered == sum(calls.values())
        assert (stats.failed, stats.queued, stats.running) == (0, 0, 0)

        # Nothing stranded: every kind of event still gets through, on every key.
        bus.register(churn)
        after = [Plain(uid=-1), Single(uid=-2)] + [Keyed(uid=-3 - key, key=key) for key in range(5)]
        for event in after:
            bus.post(event)
        assert bus.join(WAIT)
        calls = tally.snapshot()
        for event in after:
            assert all(calls[(name, event.uid)] == 1 for name in HANDLERS_OF[type(event)])  # type: ignore[attr-defined]
        assert bus.unregister(churn)
        assert bus.shutdown(timeout=WAIT), "shutdown() did not finish after the storm"
        assert all(not t.is_alive() for t in pool_of(bus)._threads), "a worker did not stop"
    finally:
        bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("strategy", THREADED)
def test_a_lost_wake_up_costs_latency_not_a_hang(strategy: str) -> None:
    """A post whose wake-up of the sleeping worker was cut off (as by Ctrl-C) is still delivered."""
    tally = Tally()
    bus = EventBus(strategy=strategy, workers=1)  # type: ignore[arg-type]
    try:
        bus.register(StormSubscriber(tally))
        pool = pool_of(bus)
        wait_until(lambda: len(pool._sleepers) == 1, "the worker sleeps")
        pool._sleepers.pop()  # what an interrupted put() leaves behind: taken off the list, never released
        bus.post(Plain(uid=1))
        assert bus.join(IDLE_WAKE_SECONDS + WAIT)
        assert tally.snapshot()[("plain_safe", 1)] == 1
    finally:
        bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("strategy", THREADED)
def test_a_shutdown_cut_off_after_closing_still_stops_the_idle_workers(strategy: str) -> None:
    """Closed, but interrupted before it stopped an idle pool: the workers notice and end by themselves."""
    name = f"cut-off-{strategy}"
    bus = EventBus(strategy=strategy, workers=2, name=name)  # type: ignore[arg-type]
    pool = pool_of(bus)
    wait_until(lambda: len(pool._sleepers) == 2, "the workers sleep")
    pool._closed = True  # what shutdown() leaves when a Ctrl-C lands right after it closed the pool
    wait_until(lambda: not worker_threads(name), "the idle workers ended", timeout=IDLE_WAKE_SECONDS + 5.0)
    assert bus.shutdown(timeout=WAIT)


# -- 2. BaseException from done-callbacks and on_error on a worker -----------------------

ESCAPING = [SystemExit(3), KeyboardInterrupt(), asyncio.CancelledError(), GeneratorExit()]


@pytest.mark.parametrize("exc", ESCAPING, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("strategy", THREADED)
def test_a_done_callback_raising_a_base_exception_breaks_nothing(
    strategy: str, exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """Every handler still runs, unregister returns, the subscriber keeps receiving, counts are exact."""
    tally = Tally()
    gate = threading.Event()

    class Unsafe:
        @subscribe(Plain, priority=2)
        def first(self, event: Plain) -> None:
            if event.uid == 0:
                assert gate.wait(WAIT)
            tally.add("first", event.uid)

        @subscribe(Plain, priority=1)
        def second(self, event: Plain) -> None:
            tally.add("second", event.uid)

    class Other:
        @subscribe(Plain, thread_safe=True)
        def other(self, event: Plain) -> None:
            tally.add("other", event.uid)

    def raise_it(_: Delivery) -> None:
        raise exc

    bus = EventBus(strategy=strategy, workers=2)  # type: ignore[arg-type]
    unsafe = Unsafe()
    try:
        bus.register(unsafe)
        bus.register(Other())
        delivery = bus.publish(Plain(uid=0))
        delivery.add_done_callback(raise_it)  # before the gate opens: it runs on the worker
        gate.set()
        assert delivery.wait(WAIT)
        for uid in range(1, 6):
            bus.publish(Plain(uid=uid)).add_done_callback(raise_it) if uid % 2 else bus.post(Plain(uid=uid))
        assert bus.join(WAIT)
        calls = tally.snapshot()
        for name in ("first", "second", "other"):
            assert [calls[(name, uid)] for uid in range(6)] == [1] * 6
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (6, 18, 0, 0, 0)

        result: list[bool] = []
        unregistering = threading.Thread(target=lambda: result.append(bus.unregister(unsafe)))
        unregistering.start()
        unregistering.join(WAIT)
        assert result == [True], "unregister() did not return"
        bus.register(unsafe)
        bus.post(Plain(uid=10))
        assert bus.join(WAIT)
        assert tally.snapshot()[("second", 10)] == 1
        assert bus.shutdown(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("exc", ESCAPING, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("strategy", THREADED)
def test_on_error_raising_a_base_exception_on_a_worker_breaks_nothing(
    strategy: str, exc: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    """on_error raising SystemExit & co. on a worker: logged, and delivery and counting go on."""
    tally = Tally()

    def on_error(error: BaseException, context: ErrorContext) -> None:
        raise exc

    class Failing:
        @subscribe(Plain, priority=1)
        def fails(self, event: Plain) -> None:
            raise ValueError(event.uid)

        @subscribe(Plain)
        def after(self, event: Plain) -> None:
            tally.add("after", event.uid)

    class Fast:
        @subscribe(Single, thread_safe=True)
        def fails_fast(self, event: Single) -> None:
            raise ValueError(event.uid)

    bus = EventBus(strategy=strategy, workers=2, on_error=on_error)  # type: ignore[arg-type]
    try:
        bus.register(Failing())
        bus.register(Fast())
        for uid in range(10):
            bus.post(Plain(uid=uid))
            bus.post(Single(uid=uid))
        bus.publish(Plain(uid=10))
        assert bus.join(WAIT)
        assert [tally.snapshot()[("after", uid)] for uid in range(11)] == [1] * 11
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (21, 11, 21, 0, 0)
        assert bus.shutdown(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)


# -- 3. join waits for what was accepted before it -----------------------------------------


@pytest.mark.parametrize("strategy", THREADED)
def test_join_is_not_starved_by_a_producer_that_keeps_posting(strategy: str) -> None:
    """join() returns True while another thread keeps the pool busy, having waited for every earlier event."""
    handled: set[int] = set()
    lock = threading.Lock()

    class Slow:
        @subscribe(Plain, thread_safe=True)
        def on_plain(self, event: Plain) -> None:
            time.sleep(0.0002)  # the workload: slower than the producer, so the pool is never idle
            with lock:
                handled.add(event.uid)

    bus = EventBus(strategy=strategy, workers=2, max_queued=500)  # type: ignore[arg-type]
    stop = threading.Event()
    posted = [0]  # posts that have returned (the producer is the only writer)

    def produce() -> None:
        for uid in range(200_000):  # the cap: stop is set long before
            if stop.is_set():
                return
            bus.post(Plain(uid=uid))
            posted[0] = uid + 1

    producer = threading.Thread(target=produce)
    try:
        bus.register(Slow())
        producer.start()
        wait_until(lambda: posted[0] >= 1_000, "the producer got going")
        for _ in range(3):  # concurrent producer, several joins in a row
            before = posted[0]
            assert bus.join(timeout=WAIT), "join() was starved by the producer"
            with lock:
                missing = [uid for uid in range(before) if uid not in handled]
            assert not missing, f"join() returned before {len(missing)} earlier events were handled"
            assert producer.is_alive(), "the producer stopped: join() was not tested under load"
    finally:
        stop.set()
        producer.join(WAIT)
        assert not producer.is_alive()
        assert bus.shutdown(timeout=WAIT)


def test_concurrent_joins_under_a_producer_all_return() -> None:
    """Several threads joining at once while a producer posts: each returns True and waited for its events."""
    handled: set[int] = set()
    lock = threading.Lock()

    class Slow:
        @subscribe(Plain)
        def on_plain(self, event: Plain) -> None:
            time.sleep(0.0002)  # the workload: slower than the producer, so the pool is never idle
            with lock:
                handled.add(event.uid)

    bus = EventBus(strategy="concurrent", workers=3, max_queued=300)
    stop = threading.Event()
    posted = [0]
    failures: list[str] = []

    def produce() -> None:
        for uid in range(200_000):
            if stop.is_set():
                return
            bus.post(Plain(uid=uid))
            posted[0] = uid + 1

    def join_some() -> None:
        for _ in range(3):
            before = posted[0]
            if not bus.join(timeout=WAIT):
                failures.append("join() timed out")
                return
            with lock:
                if any(uid not in handled for uid in range(before)):
                    failures.append("join() returned early")

    producer = threading.Thread(target=produce)
    try:
        bus.register(Slow())
        producer.start()
        wait_until(lambda: posted[0] >= 500, "the producer got going")
        joiners = [threading.Thread(target=join_some) for _ in range(3)]
        for thread in joiners:
            thread.start()
        for thread in joiners:
            thread.join(3 * WAIT)
            assert not thread.is_alive()
        assert failures == []
    finally:
        stop.set()
        producer.join(WAIT)
        assert bus.shutdown(timeout=WAIT)


# -- 4. per-thread bookkeeping of ended threads --------------------------------------------


@pytest.mark.parametrize("strategy", THREADED)
def test_three_thousand_short_lived_posting_threads(strategy: str) -> None:
    """3,000 threads posting once each leave a handful of states behind, and exact stats."""
    count = Counter[str]()
    lock = threading.Lock()

    class Sub:
        @subscribe(Plain)
        def on_plain(self, event: Plain) -> None:
            with lock:
                count["calls"] += 1

    bus = EventBus(strategy=strategy, workers=4)  # type: ignore[arg-type]
    try:
        bus.register(Sub())
        for batch in range(30):
            threads = [threading.Thread(target=bus.post, args=(Plain(uid=batch * 100 + i),)) for i in range(100)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(WAIT)
                assert not thread.is_alive()
        assert bus.join(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.queued, stats.running) == (3_000, 3_000, 0, 0)
        assert count["calls"] == 3_000
        assert len(bus._dispatcher.states()) <= 4 + 2  # the workers, this thread, perhaps one ending
        assert bus.shutdown(timeout=WAIT)
    finally:
        bus.shutdown(timeout=WAIT)


# -- 5. a bus that nothing references any more -------------------------------------------


@pytest.mark.parametrize("cycle", [False, True], ids=["plain", "subscriber-holds-bus"])
@pytest.mark.parametrize("strategy", THREADED)
def test_a_dropped_bus_delivers_then_its_workers_end(strategy: str, cycle: bool) -> None:
    """Dropped without shutdown(): it delivers what it accepted, its threads end, its subscribers go."""
    handled: list[int] = []
    lock = threading.Lock()

    class Sub:
        bus: EventBus | None = None

        @subscribe(Plain)
        def on_plain(self, event: Plain) -> None:
            with lock:
                handled.append(event.uid)

        @subscribe(Keyed, thread_safe=True)
        def on_keyed(self, event: Keyed) -> None:
            with lock:
                handled.append(event.uid)

    name = f"dropped-{strategy}-{cycle}"

    def make() -> tuple[weakref.ref[EventBus], weakref.ref[Sub]]:
        bus = EventBus(strategy=strategy, workers=3, name=name)  # type: ignore[arg-type]
        sub = Sub()
        if cycle:
            sub.bus = bus
        bus.register(sub)
        for uid in range(200):
            bus.post(Plain(uid=uid) if uid % 2 else Keyed(uid=uid, key=uid % 3))
        return weakref.ref(bus), weakref.ref(sub)

    bus_ref, sub_ref = make()
    if not cycle:
        assert bus_ref() is None, "something in the pool holds the bus"

    def delivered() -> bool:
        with lock:
            return len(handled) == 200

    wait_until(delivered, "the dropped bus delivered what it had accepted")
    # Once idle, its workers hold no event (so no subscriber, which may hold the bus).
    wait_until(lambda: gc.collect() >= 0 and bus_ref() is None, "the bus was collected", timeout=3.0)
    wait_until(lambda: not worker_threads(name), "the dropped bus's workers ended", timeout=5.0)
    with lock:
        assert sorted(handled) == list(range(200))
    gc.collect()
    assert sub_ref() is None, "something still holds the subscriber"


# -- 6. fork -------------------------------------------------------------------------------


def _fork(child: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run *child* in a forked child; return what it reported through a pipe (bounded waits; killed on timeout)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() in a multi-threaded process may deadlock the
        # child; that is the very situation under test, and pytest would make it an error.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report, then leave without running the parent's atexit or pytest
        code = 0
        try:
            os.close(read_end)
            report = child()
        except BaseException as exc:
            report, code = {"error": repr(exc)}, 1
        try:
            os.write(write_end, json.dumps(report).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 20.0
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([read_end], [], [], 0.1)
            if ready:
                chunk = os.read(read_end, 65536)
                if not chunk:
                    break
                chunks.append(chunk)
        while time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                assert os.waitstatus_to_exitcode(status) == 0, chunks
                break
            time.sleep(0.01)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail("the forked child did not exit in time")
    finally:
        os.close(read_end)
    return dict(json.loads(b"".join(chunks)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.parametrize("strategy", THREADED)
def test_fork_while_a_worker_is_mid_handler(strategy: str) -> None:
    """In the child: new events delivered, the parent's queued ones not, join/shutdown/exit drain prompt."""
    tally = Tally()
    gate = threading.Event()
    entered = threading.Event()

    class Sub:
        @subscribe(Plain)
        def on_plain(self, event: Plain) -> None:
            if event.uid == 0:
                entered.set()
                gate.wait(WAIT)
            tally.add("plain", event.uid)

        @subscribe(Keyed, thread_safe=True)
        def on_keyed(self, event: Keyed) -> None:
            if event.uid == 100:
                entered.set()
                gate.wait(WAIT)
            tally.add("keyed", event.uid)

    bus = EventBus(strategy=strategy, workers=2)  # type: ignore[arg-type]
    never_shut = EventBus(strategy=strategy, workers=2)  # type: ignore[arg-type]  # left for the exit drain
    try:
        bus.register(Sub())
        never_shut.register(Sub())
        bus.post(Plain(uid=0))
        assert entered.wait(WAIT)
        entered.clear()
        never_shut.post(Keyed(uid=100, key=1))
        assert entered.wait(WAIT)
        for uid in range(1, 6):  # queued behind the gated call (its line / key line)
            bus.post(Plain(uid=uid))
            never_shut.post(Keyed(uid=100 + uid, key=1))

        def child() -> dict[str, Any]:
            for uid in range(1000, 1010):
                bus.post(Plain(uid=uid))
                bus.post(Keyed(uid=uid + 100, key=uid % 3))
                never_shut.post(Keyed(uid=uid + 200, key=2))
            start = time.monotonic()
            joined = bus.join(5.0) and never_shut.join(5.0)
            seen = tally.snapshot()
            shut = bus.shutdown(timeout=5.0)
            drain_at_exit()  # what the child's interpreter exit runs
            return {
                "joined": joined,
                "shut": shut,
                "seconds": time.monotonic() - start,
                "new": sum(
                    seen[("plain", u)] + seen[("keyed", u + 100)] + seen[("keyed", u + 200)] for u in range(1000, 1010)
                ),
                "old": sum(count for (_, uid), count in seen.items() if uid < 1000 and uid != 0 and uid != 100),
            }

        report = _fork(child)
        assert "error" not in report, report
        assert report["joined"]
        assert report["shut"]
        assert report["new"] == 30, "the child did not deliver its own events"
        assert report["old"] == 0, "the child delivered events that the parent had queued"
        assert report["seconds"] < 5.0
        gate.set()
        assert bus.join(WAIT)  # the parent is unaffected
        assert never_shut.join(WAIT)
        calls = tally.snapshot()
        assert [calls[("plain", uid)] for uid in range(6)] == [1] * 6
        assert [calls[("keyed", 100 + uid)] for uid in range(6)] == [1] * 6
    finally:
        gate.set()
        bus.shutdown(timeout=WAIT)
        never_shut.shutdown(timeout=WAIT)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_closed_pool_stays_closed_in_a_forked_child() -> None:
    """A pool shut down before the fork refuses posts in the child and has no workers there."""
    bus = EventBus(strategy="concurrent", workers=2, name="closed-before-fork")
    bus.shutdown(timeout=WAIT)

    def child() -> dict[str, Any]:
        from eventbus import BusClosedError

        try:
            bus.post(Plain(uid=1))
        except BusClosedError:
            refused = True
        else:
            refused = False
        return {"refused": refused, "workers": len(worker_threads("closed-before-fork")), "joined": bus.join(1.0)}

    assert _fork(child) == {"refused": True, "workers": 0, "joined": True}


# -- free-threaded builds --------------------------------------------------------------------


def test_the_gil_decides_the_lock_free_paths() -> None:
    """Without the GIL, posts take the pool's lock (see docs/design.md)."""
    from eventbus._strategies import threaded as _threaded

    gil = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
    assert gil is _threaded._LOCK_FREE
