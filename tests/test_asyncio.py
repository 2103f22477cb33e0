"""The asyncio strategy: lanes, order, thread safety, backpressure on and off the loop, lifetime, cancellation.

Every test body runs under ``asyncio.run`` with an overall timeout. Gates are
`asyncio.Event`s (and `threading.Event`s for other threads); every wait has a
timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from eventbus import AsyncioDelivery, BusClosedError, Event, EventBus, Message, QueueFullError, subscribe

from .helpers import ErrorLog

WAIT = 30.0
T = TypeVar("T")


class Ping(Event, topic="aio.ping"):
    n: int


class Pong(Event, topic="aio.pong"):
    n: int


class Keyed(Event, topic="aio.keyed", order_by="key"):
    key: int
    producer: int
    seq: int


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run *main* on a fresh loop, failing after WAIT seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT)

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until *condition* holds (fine to poll in tests), for at most WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0)


class Meter:
    """How many calls are inside a region at once, and the most ever seen."""

    def __init__(self) -> None:
        self.inside = 0
        self.high = 0
        self.calls = 0

    def enter(self) -> None:
        self.inside += 1
        self.calls += 1
        self.high = max(self.high, self.inside)

    def leave(self) -> None:
        self.inside -= 1


def test_the_asyncio_strategy_needs_a_loop() -> None:
    """Outside a running loop and without loop=, EventBus(strategy='asyncio') says what to do."""
    with pytest.raises(RuntimeError, match="loop="):
        EventBus(strategy="asyncio")
    loop = asyncio.new_event_loop()
    try:
        with pytest.raises(ValueError, match="strategy='asyncio'"):
            EventBus(strategy="sync", loop=loop)
        with pytest.raises(TypeError, match="event loop"):
            AsyncioDelivery(loop=object())  # type: ignore[arg-type]  # the point of the test
    finally:
        loop.close()


def test_sync_handlers_run_on_the_loop_and_async_ones_are_awaited_there() -> None:
    """Both kinds run on the loop's thread; results come back in priority order."""
    threads: list[int] = []

    class Sub:
        @subscribe(priority=1)
        def plain(self, event: Ping) -> str:
            threads.append(threading.get_ident())
            return "plain"

        @subscribe
        async def coro(self, event: Ping) -> str:
            await asyncio.sleep(0)
            threads.append(threading.get_ident())
            return "coro"

    async def main() -> None:
        bus = EventBus(strategy="asyncio")
        bus.register(Sub())
        assert await bus.publish(Ping(n=1)) == ["plain", "coro"]
        assert await bus.ashutdown(WAIT)

    run(main)
    assert threads == [threading.get_ident()] * 2


def test_at_most_workers_handler_calls_run_at_once() -> None:
    """With workers=3, three gated async handler calls are inside at once and never a fourth."""
    meter = Meter()

    async def main() -> None:
        gate = asyncio.Event()

        class Slow:
            @subscribe(thread_safe=True)
            async def on_ping(self, event: Ping) -> None:
                meter.enter()
                await gate.wait()
                meter.leave()

        bus = EventBus(strategy="asyncio", workers=3)
        bus.register(Slow())
        for n in range(10):
            bus.post(Ping(n=n))
        await until(lambda: meter.inside == 3)
        for _ in range(50):  # give a fourth call every chance to start
            await asyncio.sleep(0)
        assert meter.inside == 3
        assert bus.stats().queued == 7
        gate.set()
        assert await bus.ajoin(WAIT)
        assert await bus.ashutdown(WAIT)

    run(main)
    assert (meter.high, meter.calls) == (3, 10)


def test_posts_from_four_threads_keep_totals_and_per_key_order() -> None:
    """4 producer threads x 2,500 keyed events: every event arrives once, each key in post order."""
    per_producer = 2_500
    seen: dict[tuple[int, int], list[int]] = defaultdict(list)
    per_key: defaultdict[int, Meter] = defaultdict(Meter)

    class Sub:
        @subscribe(thread_safe=True)
        async def on_keyed(self, event: Keyed) -> None:
            meter = per_key[event.key]
            meter.enter()
            await asyncio.sleep(0)
            seen[(event.key, event.producer)].append(event.seq)
            meter.leave()

        @subscribe(Keyed, thread_safe=True, priority=1)
        def count(self, event: Keyed) -> None:
            pass

    async def main() -> None:
        bus = EventBus(strategy="asyncio", workers=8, max_queued=500)  # the producers will wait for room
        bus.register(Sub())
        start = threading.Barrier(4, timeout=WAIT)

        def produce(producer: int) -> None:
            start.wait()
            for seq in range(per_producer):
                bus.post(Keyed(key=seq % 10, producer=producer, seq=seq), timeout=WAIT)

        threads = [threading.Thread(target=produce, args=(p,)) for p in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            await asyncio.to_thread(thread.join, WAIT)
            assert not thread.is_alive()
        assert await bus.ajoin(WAIT)
        stats = bus.stats()
        total = 4 * per_producer
        assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (total, 2 * total, 0, 0, 0)
        assert await bus.ashutdown(WAIT)

    run(main)
    for (key, _producer), seqs in seen.items():
        assert seqs == list(range(key, per_producer, 10))
    assert sum(len(v) for v in seen.values()) == 4 * per_producer
    assert {key: meter.high for key, meter in per_key.items()} == dict.fromkeys(range(10), 1)


def test_thread_unsafe_async_handler_never_overlaps_while_a_thread_safe_one_does() -> None:
    """thread_safe=False: high-water 1 over 500 events; thread_safe=True: two calls inside at once."""
    unsafe, safe = Meter(), Meter()

    async def main() -> None:
        both_inside = asyncio.Barrier(2)

        class Unsafe:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                unsafe.enter()
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                unsafe.leave()

            @subscribe(priority=-1)
            def also_unsafe(self, event: Ping) -> None:  # shares the subscriber's line
                unsafe.enter()
                unsafe.leave()

        class Safe:
            @subscribe(thread_safe=True)
            async def on_pong(self, event: Pong) -> None:
                safe.enter()
                async with asyncio.timeout(WAIT):
                    await both_inside.wait()  # returns only when two calls are inside at once
                safe.leave()

        bus = EventBus(strategy="asyncio", workers=8)
        bus.register(Unsafe())
        bus.register(Safe())
        bus.post(Pong(n=0))
        bus.post(Pong(n=1))
        for n in range(500):
            bus.post(Ping(n=n))
        assert await bus.ajoin(WAIT)
        stats = bus.stats()
        assert (stats.delivered, stats.failed) == (1002, 0)
        assert await bus.ashutdown(WAIT)

    run(main)
    assert (unsafe.high, unsafe.calls) == (1, 1000)
    assert (safe.high, safe.calls) == (2, 2)


def test_a_busy_thread_unsafe_subscriber_does_not_hold_up_the_lanes() -> None:
    """While one subscriber is held at a gate with 20 events parked, 100 other events complete."""
    held: list[int] = []
    others: list[int] = []

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        class Slow:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                entered.set()
                await gate.wait()
                held.append(event.n)

        class Fast:
            @subscribe
            async def on_pong(self, event: Pong) -> None:
                others.append(event.n)

        bus = EventBus(strategy="asyncio", workers=2)
        bus.register(Slow())
        bus.register(Fast())
        for n in range(20):
            bus.post(Ping(n=n))
        await asyncio.wait_for(entered.wait(), WAIT)
        for n in range(100):
            bus.post(Pong(n=n))
        await until(lambda: len(others) == 100)
        assert held == []
        gate.set()
        assert await bus.ashutdown(WAIT)

    run(main)
    assert held == list(range(20))
    assert others == list(range(100))


def test_events_of_one_key_run_serially_and_keys_in_parallel() -> None:
    """Keyed events: one at a time per key, in order; two keys meet at a barrier."""
    per_key: dict[int, Meter] = defaultdict(Meter)
    order: dict[int, list[int]] = defaultdict(list)

    async def main() -> None:
        two_keys = asyncio.Barrier(2)

        class Sub:
            @subscribe(thread_safe=True)
            async def on_keyed(self, event: Keyed) -> None:
                meter = per_key[event.key]
                meter.enter()
                if event.seq == 0:
                    async with asyncio.timeout(WAIT):
                        await two_keys.wait()  # the first events of keys 0 and 1 run together
                await asyncio.sleep(0)
                order[event.key].append(event.seq)
                meter.leave()

        bus = EventBus(strategy="asyncio", workers=4)
        bus.register(Sub())
        for seq in range(50):
            for key in (0, 1):
                bus.post(Keyed(key=key, producer=0, seq=seq))
        assert await bus.ashutdown(WAIT)
        assert bus.stats().failed == 0

    run(main)
    assert {k: m.high for k, m in per_key.items()} == {0: 1, 1: 1}
    assert order == {0: list(range(50)), 1: list(range(50))}


def test_a_full_queue_refuses_a_post_on_the_loop_at_once_and_apost_waits_for_room() -> None:
    """On the loop a full queue raises QueueFullError at once; apost waits, and times out if told to."""
    handled: list[int] = []

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                entered.set()
                await gate.wait()
                handled.append(event.n)

        bus = EventBus(strategy="asyncio", workers=1, max_queued=2)
        bus.register(Gated())
        bus.post(Ping(n=0))
        await asyncio.wait_for(entered.wait(), WAIT)  # n=0 runs; the queue is empty
        bus.post(Ping(n=1))
        bus.post(Ping(n=2))  # two waiting: full
        with pytest.raises(QueueFullError, match="apost"):
            bus.post(Ping(n=3))
        with pytest.raises(QueueFullError, match="apost"):
            bus.post(Ping(n=3), timeout=WAIT)  # never waits on the loop, whatever the timeout
        with pytest.raises(QueueFullError, match="stayed full"):
            await bus.apost(Ping(n=3), timeout=0.01)
        waiting = asyncio.create_task(bus.apost(Ping(n=3)))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        assert bus.stats().posted == 3
        gate.set()
        await asyncio.wait_for(waiting, WAIT)
        assert await bus.ashutdown(WAIT)
        assert bus.stats().posted == 4

    run(main)
    assert handled == [0, 1, 2, 3]


def test_cancelling_apost_accepts_nothing() -> None:
    """A cancelled apost left nothing behind: the event was not accepted, the counts are exact."""

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                entered.set()
                await gate.wait()

        bus = EventBus(strategy="asyncio", workers=1, max_queued=1)
        bus.register(Gated())
        bus.post(Ping(n=0))
        await asyncio.wait_for(entered.wait(), WAIT)
        bus.post(Ping(n=1))  # full
        first = asyncio.create_task(bus.apost(Ping(n=2)))
        second = asyncio.create_task(bus.apost(Ping(n=3)))
        await until(lambda: len(bus._strategy._room_futures) == 2)  # type: ignore[attr-defined]  # both wait
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        gate.set()
        await asyncio.wait_for(second, WAIT)
        assert await bus.ashutdown(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.queued) == (3, 3, 0)

    run(main)


def test_posts_from_another_thread_wait_for_room_or_time_out() -> None:
    """Off the loop, post() waits for room like the pools, and raises QueueFullError after timeout=."""

    async def main() -> None:
        gate, entered = asyncio.Event(), asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                entered.set()
                await gate.wait()

        bus = EventBus(strategy="asyncio", workers=1, max_queued=1)
        bus.register(Gated())
        bus.post(Ping(n=0))
        await asyncio.wait_for(entered.wait(), WAIT)
        bus.post(Ping(n=1))  # full
        with pytest.raises(QueueFullError, match=r"within 0\.01 s"):
            await asyncio.to_thread(bus.post, Ping(n=2), timeout=0.01)
        posting = asyncio.ensure_future(asyncio.to_thread(bus.post, Ping(n=3), timeout=WAIT))
        await until(lambda: bus._strategy._room_threads == 1)  # type: ignore[attr-defined]  # it waits
        gate.set()
        await asyncio.wait_for(posting, WAIT)
        assert await bus.ashutdown(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered) == (3, 3)

    run(main)


def test_handlers_posting_into_their_full_bus_are_let_in() -> None:
    """A handler's post (or apost) on a full asyncio bus is accepted: waiting could deadlock the lanes."""
    pongs: list[int] = []
    buses: list[EventBus] = []

    class Fanout:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            for n in range(3):
                buses[0].post(Pong(n=n))
            await buses[0].apost(Pong(n=3))

        @subscribe
        def on_pong(self, event: Pong) -> None:
            pongs.append(event.n)

    async def main() -> None:
        bus = EventBus(strategy="asyncio", workers=1, max_queued=1)
        buses.append(bus)
        bus.register(Fanout())
        bus.post(Ping(n=0))
        assert await bus.ajoin(WAIT)
        assert bus.stats().failed == 0
        assert await bus.ashutdown(WAIT)

    run(main)
    assert pongs == [0, 1, 2, 3]


def test_shutdown_delivers_ten_thousand_queued_events() -> None:
    """10,000 events queued on the loop are all delivered by ashutdown(); none is lost."""
    count = [0]

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            count[0] += 1

    async def main() -> None:
        bus = EventBus(strategy="asyncio", max_queued=10_000)
        bus.register(Sub())
        for n in range(10_000):
            bus.post(Ping(n=n))
        assert bus.stats().queued == 10_000
        assert await bus.ashutdown(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.queued, stats.running) == (10_000, 10_000, 0, 0)
        with pytest.raises(BusClosedError):
            bus.post(Ping(n=0))
        with pytest.raises(BusClosedError):
            await bus.apost(Ping(n=0))
        assert await bus.ashutdown(WAIT)  # idempotent

    run(main)
    assert count[0] == 10_000


def test_shutdown_timeout_cancels_and_awaits_running_handlers() -> None:
    """After the timeout, running handler calls are cancelled and awaited; unstarted events fail their Delivery."""
    errors = ErrorLog()
    cleaned: list[str] = []

    async def main() -> None:
        entered = asyncio.Event()

        class Stuck:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                entered.set()
                try:
                    await asyncio.Event().wait()  # never set
                finally:
                    cleaned.append("finally ran")

        bus = EventBus(strategy="asyncio", workers=1, on_error=errors, name="stuck")
        bus.register(Stuck())
        running = bus.publish(Ping(n=0))
        queued = bus.publish(Ping(n=1))
        await asyncio.wait_for(entered.wait(), WAIT)
        assert not await bus.ashutdown(timeout=0.05)  # the timeout is what is tested here
        assert cleaned == ["finally ran"]
        assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("stuck-lane")]
        with pytest.raises(BaseExceptionGroup) as caught:
            await running
        assert [type(e) for e in caught.value.exceptions] == [asyncio.CancelledError]
        with pytest.raises(ExceptionGroup) as caught_queued:
            await queued
        assert [type(e) for e in caught_queued.value.exceptions] == [BusClosedError]
        assert [type(e) for e in errors.exceptions()] == [asyncio.CancelledError]

    run(main)


def test_ajoin_waits_without_blocking_the_loop() -> None:
    """ajoin() lets other tasks run while it waits; it returns False on timeout, True when done."""

    async def main() -> None:
        gate = asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                await gate.wait()

        bus = EventBus(strategy="asyncio")
        bus.register(Gated())
        bus.post(Ping(n=0))
        assert not await bus.ajoin(timeout=0.01)
        joining = asyncio.create_task(bus.ajoin(WAIT))
        await asyncio.sleep(0)
        assert not joining.done()
        gate.set()  # only possible because the loop is free while ajoin() waits
        assert await asyncio.wait_for(joining, WAIT)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_blocking_calls_on_the_loop_never_block_it() -> None:
    """join() on the loop raises; shutdown() on the loop stops intake and returns at once."""
    handled: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                await gate.wait()
                handled.append(event.n)

        bus = EventBus(strategy="asyncio")
        bus.register(Gated())
        bus.post(Ping(n=0))
        with pytest.raises(RuntimeError, match="ajoin"):
            bus.join(1)
        assert bus.shutdown() is False  # not delivered yet, and it did not wait
        with pytest.raises(BusClosedError):
            bus.post(Ping(n=1))
        gate.set()
        assert await bus.ashutdown(WAIT)

    run(main)
    assert handled == [0]


def test_a_bus_on_another_threads_loop() -> None:
    """loop= binds the bus to a loop on another thread; post, join and shutdown work from here."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    assert ready.wait(WAIT)
    seen: list[tuple[int, int]] = []

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            await asyncio.sleep(0)
            seen.append((event.n, threading.get_ident()))

    try:
        bus = EventBus(strategy="asyncio", loop=loop)
        bus.register(Sub())
        for n in range(100):
            bus.post(Ping(n=n))
        assert bus.publish(Ping(n=100)).result(WAIT) == [None]
        assert bus.join(WAIT)
        assert bus.shutdown(timeout=WAIT)

        async def stop() -> None:
            loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), loop)
        server.join(WAIT)
    finally:
        if not loop.is_running():
            loop.close()
    assert [n for n, _ in seen] == list(range(101))
    assert {ident for _, ident in seen} == {server.ident}


def test_awaiting_from_another_loop() -> None:
    """apost, ajoin and ashutdown work when awaited on a loop other than the bus's."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    server = threading.Thread(target=lambda: (loop.call_soon(ready.set), loop.run_forever()), daemon=True)
    server.start()
    assert ready.wait(WAIT)
    seen: list[int] = []

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            seen.append(event.n)

    async def main() -> None:
        bus = EventBus(strategy="asyncio", loop=loop, max_queued=1)
        bus.register(Sub())
        for n in range(20):
            await bus.apost(Ping(n=n))
        assert await bus.ajoin(WAIT)
        assert await bus.ashutdown(WAIT)

    try:
        run(main)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        server.join(WAIT)
        loop.close()
    assert seen == list(range(20))


def test_awaiting_from_another_loop_while_the_bus_loop_is_stopped_keeps_the_timeout() -> None:
    """ajoin/ashutdown awaited on another loop return by their timeout when the bus's loop does not run.

    Before, they handed a coroutine to the bus's loop and awaited it without a bound: with that
    loop stopped, the coroutine never started and the caller waited forever.
    """
    stopped = asyncio.new_event_loop()  # never run while the awaits below wait
    try:
        bus = EventBus(strategy="asyncio", loop=stopped)
        bus.register(_Recorder())
        bus.post(Ping(n=1))  # from this thread: waits in the inbox of a loop that does not run

        async def main() -> tuple[bool, bool]:
            joined = await asyncio.wait_for(bus.ajoin(0.2), WAIT)
            shut = await asyncio.wait_for(bus.ashutdown(0.2), WAIT)
            return joined, shut

        assert asyncio.run(main()) == (False, False)  # nothing could be delivered, and that is said
    finally:
        stopped.close()


class _Recorder:
    @subscribe
    def on_ping(self, event: Ping) -> None:
        pass


def test_cancelling_a_task_that_awaits_publish_leaves_the_bus_consistent() -> None:
    """The event is still delivered and counted when the publisher's task is cancelled."""
    handled: list[int] = []

    async def main() -> None:
        gate = asyncio.Event()

        class Gated:
            @subscribe
            async def on_ping(self, event: Ping) -> None:
                await gate.wait()
                handled.append(event.n)

        bus = EventBus(strategy="asyncio")
        bus.register(Gated())
        delivery = bus.publish(Ping(n=1))

        async def wait_for_it() -> list[Any]:
            return await delivery

        waiter = asyncio.create_task(wait_for_it())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        assert await bus.ashutdown(WAIT)
        assert delivery.done()
        assert delivery.result(0) == [None]
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (1, 1, 0, 0, 0)

    run(main)
    assert handled == [1]


def test_unregister_on_the_loop_skips_queued_events() -> None:
    """After unregister() on the loop, events already queued for the subscriber are skipped."""
    calls: list[int] = []

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            calls.append(event.n)

    class Other:
        @subscribe(Ping)
        def keep(self, event: Ping) -> None:
            pass

    async def main() -> None:
        bus = EventBus(strategy="asyncio")
        sub = Sub()
        bus.register(sub)
        bus.register(Other())
        for n in range(5):
            bus.post(Ping(n=n))
        assert bus.unregister(sub)
        assert await bus.ashutdown(WAIT)
        assert bus.stats().delivered == 5  # Other's calls only

    run(main)
    assert calls == []


def test_async_with_drains_the_bus() -> None:
    """`async with EventBus(strategy='asyncio')` awaits ashutdown() on exit."""
    count = [0]

    class Sub:
        @subscribe
        async def on_message(self, event: Message) -> None:
            await asyncio.sleep(0)
            count[0] += 1

    async def main() -> None:
        async with EventBus(strategy="asyncio") as bus:
            bus.register(Sub())
            for n in range(100):
                bus.post("aio.topic", n)
        assert bus.closed

    run(main)
    assert count[0] == 100


def test_a_loop_that_ends_before_shutdown_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    """If the loop ends with events undelivered (no ashutdown), that is logged, never silent."""

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            await asyncio.Event().wait()

    async def main() -> None:
        bus = EventBus(strategy="asyncio", name="abandoned")
        bus.register(Sub())
        bus.post(Ping(n=0))
        bus.post(Ping(n=1))
        await asyncio.sleep(0)

    with caplog.at_level(logging.ERROR, logger="eventbus"):
        run(main)
    assert any("abandoned" in r.getMessage() and "ashutdown" in r.getMessage() for r in caplog.records)


def test_handler_errors_keep_the_lanes_going() -> None:
    """Failing async and plain handlers are reported; later events are still delivered; stats are exact."""
    errors = ErrorLog()
    good: list[int] = []

    class Sub:
        @subscribe
        async def boom(self, event: Ping) -> None:
            if event.n % 2:
                raise ValueError(event.n)
            good.append(event.n)

        @subscribe(priority=-1)
        def plain_boom(self, event: Ping) -> None:
            if event.n == 4:
                raise KeyError(event.n)

    async def main() -> None:
        bus = EventBus(strategy="asyncio", on_error=errors)
        bus.register(Sub())
        for n in range(10):
            bus.post(Ping(n=n))
        assert await bus.ashutdown(WAIT)
        stats = bus.stats()
        assert (stats.delivered, stats.failed) == (14, 6)

    run(main)
    assert good == [0, 2, 4, 6, 8]
    assert sorted(type(e).__name__ for e in errors.exceptions()) == ["KeyError"] + ["ValueError"] * 5
