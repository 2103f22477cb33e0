"""``async def`` handlers on every strategy (sync, ordered, concurrent, asyncio).

Each test runs its body under ``asyncio.run`` with an overall timeout; gates are
`asyncio.Event`/`threading.Event` objects and every wait has a timeout.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import threading
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from eventbus import Event, EventBus, subscribe

from .helpers import ErrorLog

WAIT = 30.0
STRATEGIES = ["sync", "ordered", "concurrent", "asyncio"]
THREADED = ["sync", "ordered", "concurrent"]

T = TypeVar("T")


class Ping(Event, topic="async.ping"):
    n: int


class Pong(Event, topic="async.pong"):
    n: int


class Keyed(Event, topic="async.keyed", order_by="key"):
    key: int
    n: int


def run(main: Callable[[], Awaitable[T]]) -> T:
    """Run *main* on a fresh loop, failing after WAIT seconds."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), WAIT)

    return asyncio.run(bounded())


def new_bus(strategy: str, **options: Any) -> EventBus:
    return EventBus(strategy=strategy, **options)  # type: ignore[arg-type]  # a parametrized Literal


@pytest.fixture(params=STRATEGIES)
def strategy(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def no_unawaited_coroutines() -> Iterator[list[warnings.WarningMessage]]:
    """Record warnings (a 'never awaited' RuntimeWarning among them) and fail on any."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
        gc.collect()
    unawaited = [w for w in caught if "never awaited" in str(w.message)]
    assert not unawaited, [str(w.message) for w in unawaited]


def test_async_handler_receives_events_and_returns_values(strategy: str) -> None:
    """An async handler gets every event; `await bus.publish()` returns its value; stats are exact."""
    seen: list[int] = []
    lock = threading.Lock()

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> str:
            await asyncio.sleep(0)  # really suspends
            with lock:
                seen.append(event.n)
            return f"got {event.n}"

    async def main() -> None:
        bus = new_bus(strategy)
        bus.register(Sub())
        assert await bus.publish(Ping(n=-1)) == ["got -1"]
        for n in range(50):
            bus.post(Ping(n=n))
        assert await bus.ajoin(WAIT)
        stats = bus.stats()
        assert (stats.posted, stats.delivered, stats.failed, stats.queued, stats.running) == (51, 51, 0, 0, 0)
        assert await bus.ashutdown(WAIT)

    run(main)
    assert sorted(seen) == [-1, *range(50)]
    if strategy != "concurrent":  # one topic: in post order on the others
        assert seen == [-1, *range(50)]


def test_sync_and_async_handlers_start_in_priority_order(strategy: str) -> None:
    """A mix of plain and async handlers on one event starts (and finishes) in priority order."""
    log: list[str] = []

    class Mixed:
        @subscribe(priority=3)
        async def first(self, event: Ping) -> str:
            log.append("first")
            await asyncio.sleep(0)
            log.append("first done")
            return "a3"

        @subscribe(priority=2)
        def second(self, event: Ping) -> str:
            log.append("second")
            return "s2"

        @subscribe(priority=1)
        async def third(self, event: Ping) -> str:
            log.append("third")
            await asyncio.sleep(0)
            return "a1"

        @subscribe(priority=0)
        def fourth(self, event: Ping) -> str:
            log.append("fourth")
            return "s0"

    async def main() -> list[Any]:
        bus = new_bus(strategy)
        bus.register(Mixed())
        values = await bus.publish(Ping(n=1))
        assert await bus.ashutdown(WAIT)
        return values

    assert run(main) == ["a3", "s2", "a1", "s0"]
    assert log == ["first", "first done", "second", "third", "fourth"]


def test_async_handler_failure_goes_to_on_error_and_to_the_publisher(strategy: str) -> None:
    """An async handler's exception reaches on_error with its context and the awaiting publisher."""
    errors = ErrorLog()

    class Broken:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            await asyncio.sleep(0)
            raise ValueError(f"bad {event.n}")

        @subscribe(priority=-1)
        async def after(self, event: Ping) -> str:
            return "still called"

    async def main() -> None:
        bus = new_bus(strategy, on_error=errors)
        broken = Broken()
        bus.register(broken)
        with pytest.raises(ExceptionGroup) as caught:
            await bus.publish(Ping(n=7))
        (exc,) = caught.value.exceptions
        assert isinstance(exc, ValueError)
        assert str(exc) == "bad 7"
        name = Broken.on_ping.__qualname__
        assert f"raised by handler {name} for topic 'async.ping'" in (exc.__notes__ or [])
        assert await bus.ashutdown(WAIT)
        stats = bus.stats()
        assert (stats.delivered, stats.failed) == (1, 1)
        ((reported, context),) = errors.reports
        assert reported is exc
        assert (context.subscriber, context.handler, context.topic) == (broken, name, "async.ping")

    run(main)


@pytest.mark.parametrize("strategy", THREADED)
def test_async_handler_runs_in_a_task_on_the_calling_thread(strategy: str) -> None:
    """On the thread strategies the coroutine runs on the thread that calls it, inside a task."""
    found: list[tuple[int, bool, str]] = []

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            async with asyncio.timeout(WAIT):  # needs a current task
                await asyncio.sleep(0)
            found.append((threading.get_ident(), asyncio.current_task() is not None, threading.current_thread().name))

    bus = new_bus(strategy, name="calling")
    bus.register(Sub())
    bus.publish(Ping(n=1)).result(WAIT)
    bus.shutdown(timeout=WAIT)
    ((ident, in_task, thread_name),) = found
    assert in_task
    if strategy == "sync":
        assert ident == threading.get_ident()
    else:
        assert thread_name.startswith("calling-worker-")


def test_posts_from_an_async_handler_are_breadth_first_on_sync() -> None:
    """On the sync strategy an async handler's post waits until the current event has reached every handler."""
    log: list[str] = []

    class Chain:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            log.append("ping start")
            bus.post(Pong(n=event.n))
            await asyncio.sleep(0)
            log.append("ping end")

        @subscribe(priority=-1)
        def after_ping(self, event: Ping) -> None:
            log.append("ping last handler")

        @subscribe
        async def on_pong(self, event: Pong) -> None:
            log.append("pong")

    bus = EventBus(strategy="sync")
    bus.register(Chain())
    bus.post(Ping(n=1))
    assert log == ["ping start", "ping end", "ping last handler", "pong"]
    bus.shutdown()


@pytest.mark.parametrize("strategy", ["ordered", "concurrent"])
def test_async_handlers_posting_into_a_full_pool_do_not_deadlock(strategy: str) -> None:
    """Async handlers that post into their own full bus are let in, as plain handlers are."""
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    class Fanout:
        @subscribe(thread_safe=True)
        async def on_ping(self, event: Ping) -> None:
            for n in range(5):
                bus.post(Pong(n=n))
                await asyncio.sleep(0)

        @subscribe(thread_safe=True)
        async def on_pong(self, event: Pong) -> None:
            with lock:
                count[0] += 1
                if count[0] == 50:
                    done.set()

    bus = new_bus(strategy, workers=2, max_queued=1)
    bus.register(Fanout())
    for n in range(10):
        bus.post(Ping(n=n))
    assert done.wait(WAIT)
    assert bus.join(WAIT)
    assert bus.stats().failed == 0
    assert bus.shutdown(timeout=WAIT)


@pytest.mark.parametrize("strategy", THREADED)
def test_async_handler_may_unregister_its_own_subscriber(strategy: str) -> None:
    """An async handler that unregisters its own subscriber does not wait for itself."""

    class Once:
        def __init__(self) -> None:
            self.calls = 0

        @subscribe
        async def on_ping(self, event: Ping) -> None:
            self.calls += 1
            await asyncio.sleep(0)
            bus.unregister(self)

    bus = new_bus(strategy)
    once = Once()
    bus.register(once)
    bus.publish(Ping(n=1)).result(WAIT)
    bus.post(Ping(n=2))  # a dead event now
    assert bus.join(WAIT)
    assert once.calls == 1
    assert not bus.is_registered(once)
    assert bus.shutdown(timeout=WAIT)


def test_sync_bus_posted_from_a_coroutine_runs_async_handlers_and_restores_the_loop() -> None:
    """A sync post from inside a running loop runs the async handler to completion, then gives the loop back."""
    loops: list[asyncio.AbstractEventLoop] = []

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> int:
            await asyncio.sleep(0)
            loops.append(asyncio.get_running_loop())
            return event.n * 2

    async def main() -> None:
        outer = asyncio.get_running_loop()
        bus = EventBus(strategy="sync")
        bus.register(Sub())
        assert bus.publish(Ping(n=21)).result(0) == [42]  # done before publish() returned
        assert asyncio.get_running_loop() is outer
        await asyncio.sleep(0)  # the outer loop still runs
        assert await bus.ashutdown(WAIT)
        (inner,) = loops
        assert inner is not outer
        assert inner.is_closed()  # shutdown() closed the bus's loops

    run(main)


def test_thread_unsafe_async_handler_never_overlaps_itself_on_a_pool() -> None:
    """A thread_safe=False async handler has high-water 1 under 8 workers; a thread_safe=True one overlaps."""
    inside = {"unsafe": 0, "safe": 0}
    high = {"unsafe": 0, "safe": 0}
    lock = threading.Lock()
    both_safe_inside = threading.Barrier(2, timeout=WAIT)

    def enter(name: str) -> None:
        with lock:
            inside[name] += 1
            high[name] = max(high[name], inside[name])

    def leave(name: str) -> None:
        with lock:
            inside[name] -= 1

    class Unsafe:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            enter("unsafe")
            for _ in range(3):
                await asyncio.sleep(0)
            leave("unsafe")

    class Safe:
        @subscribe(thread_safe=True)
        async def on_pong(self, event: Pong) -> None:
            enter("safe")
            if event.n < 2:
                both_safe_inside.wait()  # two calls inside at once, or the barrier breaks
            leave("safe")

    bus = EventBus(strategy="concurrent", workers=8)
    bus.register(Unsafe())
    bus.register(Safe())
    bus.post(Pong(n=0))
    bus.post(Pong(n=1))
    for n in range(300):
        bus.post(Ping(n=n))
    assert bus.join(WAIT)
    stats = bus.stats()
    assert (stats.delivered, stats.failed) == (302, 0)
    assert high == {"unsafe": 1, "safe": 2}
    assert bus.shutdown(timeout=WAIT)


def test_shutdown_closes_the_handler_loops_and_cancels_left_over_tasks() -> None:
    """A task a handler started and left running is cancelled when the bus shuts down."""
    left: list[asyncio.Task[None]] = []
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    class Careless:
        @subscribe
        async def on_ping(self, event: Ping) -> None:
            left.append(asyncio.create_task(forever()))
            await asyncio.sleep(0)

    bus = EventBus(strategy="concurrent", workers=2)
    bus.register(Careless())
    bus.publish(Ping(n=1)).result(WAIT)
    assert bus.shutdown(timeout=WAIT)
    assert cancelled.is_set()
    (task,) = left
    assert task.cancelled()


def test_async_subscription_keeps_the_coroutine_function_and_a_blocking_callback() -> None:
    """`Subscription.coroutine` is the async handler; `callback` is a plain callable that runs it."""

    class Sub:
        @subscribe
        async def on_ping(self, event: Ping) -> int:
            return event.n + 1

    bus = EventBus(strategy="sync")
    sub = Sub()
    bus.register(sub)
    (subscription,) = bus.subscribers(Ping)
    assert subscription.coroutine == sub.on_ping
    assert not inspect.iscoroutinefunction(subscription.callback)
    assert subscription.callback(Ping(n=1)) == 2
    assert bus.shutdown()


def test_no_coroutine_is_left_unawaited(strategy: str, no_unawaited_coroutines: list[warnings.WarningMessage]) -> None:
    """Skipped, filtered, failing-filter and unregistered async handlers never create a stray coroutine."""
    calls: list[int] = []
    errors = ErrorLog()

    def fussy(event: Ping) -> bool:
        if event.n == 2:
            raise RuntimeError("filter failed")
        return event.n % 2 == 0

    class Sub:
        @subscribe(when=fussy)
        async def on_ping(self, event: Ping) -> None:
            calls.append(event.n)

    class Gone:
        @subscribe
        async def on_pong(self, event: Pong) -> None:
            calls.append(-1)

    async def main() -> None:
        bus = new_bus(strategy, on_error=errors)
        bus.register(Sub())
        gone = Gone()
        bus.register(gone)
        for n in range(5):
            bus.post(Ping(n=n))
        bus.unregister(gone)
        bus.post(Pong(n=0))  # nobody: a dead event
        assert await bus.ashutdown(WAIT)
        assert sorted(calls) == [0, 4]
        assert [type(e) for e in errors.exceptions()] == [RuntimeError]

    run(main)


def test_coroutines_are_closed_when_a_handler_loop_cannot_take_them(
    no_unawaited_coroutines: list[warnings.WarningMessage],
) -> None:
    """The blocking wrapper closes a coroutine whose loop refused it, so it is never left un-awaited."""
    from eventbus._loops import _run_nested

    async def handler() -> None:  # pragma: no cover - never runs
        raise AssertionError("must not run")

    loop = asyncio.new_event_loop()
    loop.close()
    coro = handler()
    with pytest.raises(RuntimeError, match="closed"):
        _run_nested(loop, coro)
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_keyed_async_handlers_keep_per_key_order_on_the_pools() -> None:
    """Async handlers of keyed events see each key's events in post order on the concurrent pool."""
    seen: dict[int, list[int]] = {}
    lock = threading.Lock()

    class Sub:
        @subscribe(thread_safe=True)
        async def on_keyed(self, event: Keyed) -> None:
            await asyncio.sleep(0)
            with lock:
                seen.setdefault(event.key, []).append(event.n)

    bus = EventBus(strategy="concurrent", workers=4)
    bus.register(Sub())
    for n in range(400):
        bus.post(Keyed(key=n % 4, n=n))
    assert bus.join(WAIT)
    assert seen == {key: list(range(key, 400, 4)) for key in range(4)}
    assert bus.shutdown(timeout=WAIT)
