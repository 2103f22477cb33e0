"""Waiting for events from asyncio code: `wait_for` and `stream`, on every strategy.

Each test body runs under ``asyncio.run`` with an overall timeout; every wait
has a timeout; nothing sleeps to synchronise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from eventbus import BusClosedError, DeadEvent, Event, EventBus, EventStream, Message, subscribe

WAIT = 30.0
STRATEGIES = ["sync", "ordered", "concurrent", "asyncio"]
T = TypeVar("T")


class Ping(Event, topic="wait.ping"):
    n: int


class Keyed(Event, topic="wait.keyed", order_by="key"):
    key: int
    n: int


class Other(Event, topic="wait.other"):
    n: int


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run *main* on a fresh loop, failing after WAIT seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT)

    return asyncio.run(bounded())


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop (and the bus's threads) run until *condition* holds, for at most WAIT seconds."""
    async with asyncio.timeout(WAIT):
        while not condition():
            await asyncio.sleep(0.001)


def new_bus(strategy: str, **options: Any) -> EventBus:
    return EventBus(strategy=strategy, **options)  # type: ignore[arg-type]  # a parametrized Literal


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


def test_wait_for_returns_the_next_matching_event(strategy: str) -> None:
    """wait_for(Class, where=...) returns the first later event that passes the predicate, then unsubscribes."""

    async def main() -> None:
        bus = new_bus(strategy)
        bus.post(Ping(n=-1))  # before the wait: not seen
        waiter = asyncio.create_task(bus.wait_for(Ping, where=lambda e: e.n >= 3, timeout=WAIT))
        await until(lambda: bus.has_subscribers(Ping))
        for n in range(6):
            bus.post(Keyed(key=0, n=n) if n % 2 else Ping(n=n))
        event = await waiter
        assert event == Ping(n=4)
        assert not bus.has_subscribers(Ping)
        assert await bus.ajoin(WAIT)
        assert bus.stats().subscribers == 0
        assert await bus.ashutdown(WAIT)

    run(main)


def test_wait_for_a_topic_and_without_timeout(strategy: str) -> None:
    """wait_for('topic') with no timeout returns the next event with that topic, Message or typed."""

    async def main() -> None:
        bus = new_bus(strategy)
        waiter = asyncio.create_task(bus.wait_for("wait.ping"))
        await until(lambda: bus.has_subscribers("wait.ping"))
        bus.post("wait.ping", {"x": 1})
        message = await asyncio.wait_for(waiter, WAIT)
        assert isinstance(message, Message)
        assert message.data == {"x": 1}
        typed = asyncio.create_task(bus.wait_for("wait.ping"))
        await until(lambda: bus.has_subscribers("wait.ping"))
        bus.post(Ping(n=9))
        assert await asyncio.wait_for(typed, WAIT) == Ping(n=9)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_wait_for_times_out_and_unsubscribes(strategy: str) -> None:
    """No matching event within the timeout: TimeoutError, and the temporary subscriber is gone."""

    async def main() -> None:
        bus = new_bus(strategy)
        bus.post(Other(n=1))
        with pytest.raises(TimeoutError, match="Ping"):
            await bus.wait_for(Ping, timeout=0.01)
        assert not bus.has_subscribers(Ping)
        assert bus.stats().subscribers == 0
        assert await bus.ashutdown(WAIT)

    run(main)


def test_a_failing_predicate_is_raised_to_the_waiter(strategy: str) -> None:
    """An exception from where= ends the wait with that exception."""

    def picky(event: Ping) -> bool:
        raise LookupError(event.n)

    async def main() -> None:
        bus = new_bus(strategy)
        waiter = asyncio.create_task(bus.wait_for(Ping, where=picky, timeout=WAIT))
        await until(lambda: bus.has_subscribers(Ping))
        bus.post(Ping(n=5))
        with pytest.raises(LookupError):
            await waiter
        assert not bus.has_subscribers(Ping)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_cancelling_wait_for_unsubscribes_and_keeps_the_counts_exact(strategy: str) -> None:
    """A cancelled wait_for leaves no subscriber; a later event is a dead event, counted once."""

    async def main() -> None:
        bus = new_bus(strategy)
        waiter = asyncio.create_task(bus.wait_for(Ping))
        await until(lambda: bus.has_subscribers(Ping))
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not bus.has_subscribers(Ping)
        bus.post(Ping(n=1))
        assert await bus.ajoin(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.dead, stats.subscribers) == (1, 0, 1, 0)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_wait_for_on_a_closed_bus_and_across_shutdown(strategy: str) -> None:
    """A pending wait_for raises BusClosedError when the bus shuts down; a new one raises at once."""

    async def main() -> None:
        bus = new_bus(strategy)
        waiter = asyncio.create_task(bus.wait_for(Ping))
        await until(lambda: bus.has_subscribers(Ping))
        assert await bus.ashutdown(WAIT)
        with pytest.raises(BusClosedError):
            await asyncio.wait_for(waiter, WAIT)
        with pytest.raises(BusClosedError):
            await bus.wait_for(Ping)
        assert bus.stats().subscribers == 0

    run(main)


def test_stream_yields_events_in_order(strategy: str) -> None:
    """A stream yields the matching events in post order (one ordering key), only while open."""

    async def main() -> None:
        bus = new_bus(strategy)
        got: list[int] = []
        async with bus.stream(Keyed, maxsize=100) as events:
            assert isinstance(events, EventStream)
            for n in range(20):
                bus.post(Keyed(key=1, n=n))
                bus.post(Other(n=n))
            async for event in events:
                got.append(event.n)
                if event.n == 19:
                    break
        assert got == list(range(20))
        assert events.dropped == 0
        assert not bus.has_subscribers(Keyed)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_a_slow_consumer_loses_the_oldest_events_and_sees_the_count(strategy: str) -> None:
    """Overflow policy: a full buffer drops its oldest event and counts it in `dropped`; the bus never waits."""

    async def main() -> None:
        bus = new_bus(strategy)
        async with bus.stream(Keyed, maxsize=3) as events:
            for n in range(10):
                bus.post(Keyed(key=0, n=n))
            assert await bus.ajoin(WAIT)  # every event was delivered, none waited for the consumer
            assert events.dropped == 7
            assert [e.n for e in events.buffer] == [7, 8, 9]
            got = [(await anext(events)).n for _ in range(3)]
            assert got == [7, 8, 9]
            bus.post(Keyed(key=0, n=10))
            assert (await asyncio.wait_for(anext(events), WAIT)).n == 10
        stats = bus.stats()
        assert (stats.delivered, stats.failed) == (11, 0)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_a_stream_ends_when_the_bus_shuts_down(strategy: str) -> None:
    """Iteration stops after the buffered events once the bus has shut down."""

    async def main() -> list[int]:
        bus = new_bus(strategy)
        got: list[int] = []
        async with bus.stream(Ping) as events:

            async def consume() -> None:
                async for event in events:
                    got.append(event.n)

            consumer = asyncio.create_task(consume())
            for n in range(5):
                bus.post(Ping(n=n))
            assert await bus.ashutdown(WAIT)
            await asyncio.wait_for(consumer, WAIT)
        return got

    assert sorted(run(main)) == list(range(5))


def test_cancelling_a_stream_consumer_unsubscribes(strategy: str) -> None:
    """Cancelling the task iterating a stream leaves the block, unsubscribes and keeps the counts exact."""

    async def main() -> None:
        bus = new_bus(strategy)
        received: list[int] = []

        async def consume() -> None:
            async with bus.stream(Ping) as events:
                async for event in events:
                    received.append(event.n)

        consumer = asyncio.create_task(consume())
        await until(lambda: bus.has_subscribers(Ping))
        bus.post(Ping(n=1))
        await until(lambda: received == [1])
        consumer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert not bus.has_subscribers(Ping)

        class Dead:
            def __init__(self) -> None:
                self.events: list[object] = []

            @subscribe
            def on_dead(self, event: DeadEvent) -> None:
                self.events.append(event.event)

        dead = Dead()
        bus.register(dead)
        bus.post(Ping(n=2))
        assert await bus.ajoin(WAIT)
        assert dead.events == [Ping(n=2)]
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.dead) == (2, 2, 1)
        assert await bus.ashutdown(WAIT)

    run(main)


def test_stream_filter_and_misuse(strategy: str) -> None:
    """where= filters before buffering; a stream is entered once and iterated inside its block."""

    async def main() -> None:
        bus = new_bus(strategy)
        stream = bus.stream(Keyed, maxsize=2, where=lambda e: e.n % 2 == 0)
        with pytest.raises(RuntimeError, match="async with"):
            await anext(stream)
        async with stream as evens:
            for n in range(6):
                bus.post(Keyed(key=0, n=n))
            assert await bus.ajoin(WAIT)
            assert [e.n for e in evens.buffer] == [2, 4]
            assert evens.dropped == 1
            with pytest.raises(RuntimeError, match="entered already"):
                await stream.__aenter__()
        with pytest.raises(ValueError, match="maxsize"):
            bus.stream(Ping, maxsize=0)
        assert await bus.ashutdown(WAIT)

    run(main)
