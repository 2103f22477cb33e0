"""asyncio benchmark: 100,000 events to one ``async def`` handler, events per second.

Run it standalone::

    python -m benchmarks.bench_asyncio [--events N] [--rounds R]

Each case posts N events from a coroutine on the loop to one async handler and
stops the clock when the handler has run for every event (a counter resolves a
future). Cases, all in one run:

- eventbus ``EventBus(strategy="asyncio")`` with ``post`` (``max_queued`` ≥ N,
  so that the burst fits) and with ``await bus.apost``;
- floors: ``loop.call_soon(handler, event)`` with a plain handler, and
  ``loop.create_task(handler(event))``;
- peers: blinker ``await signal.send_async``, pyee ``AsyncIOEventEmitter.emit``,
  psygnal with an async slot, and abxbus (bubus's successor) ``emit`` on a
  fraction of the events (it takes ~0.3 ms per event). A peer that is not
  installed is skipped with the reason printed.

Targets (SPEC issue 6): eventbus ≥ blinker ``send_async``, and ≥ 0.5x the
``call_soon`` floor. The table prints the median of the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from itertools import repeat

from eventbus import Event, EventBus, subscribe

TIMEOUT = 120.0


class Ping(Event, topic="bench.ping"):
    n: int


class _Done:
    """Counts handler calls and resolves a future at the expected count."""

    def __init__(self, expected: int) -> None:
        self.calls = 0
        self.expected = expected
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hit(self) -> None:
        self.calls += 1
        if self.calls == self.expected:
            self.future.set_result(None)

    async def wait(self) -> None:
        await asyncio.wait_for(asyncio.shield(self.future), TIMEOUT)


class Skip(Exception):
    """A peer that cannot run here; the message says why."""


Case = Callable[[int], Awaitable[tuple[float, int]]]


async def eventbus_post(n: int) -> tuple[float, int]:
    bus = EventBus(strategy="asyncio", max_queued=max(n, 10_000))
    done = _Done(n)

    class Subscriber:
        @subscribe(Ping)
        async def on_ping(self, event: Ping) -> None:
            done.hit()

    bus.register(Subscriber())
    event = Ping(n=0)
    post = bus.post
    start = time.perf_counter()
    for _ in repeat(None, n):
        post(event)
    await done.wait()
    elapsed = time.perf_counter() - start
    assert await bus.ashutdown(TIMEOUT)
    assert bus.stats().delivered == n
    return elapsed, done.calls


async def eventbus_apost(n: int) -> tuple[float, int]:
    bus = EventBus(strategy="asyncio")  # the default max_queued=10,000: apost waits for room
    done = _Done(n)

    class Subscriber:
        @subscribe(Ping)
        async def on_ping(self, event: Ping) -> None:
            done.hit()

    bus.register(Subscriber())
    event = Ping(n=0)
    apost = bus.apost
    start = time.perf_counter()
    for _ in repeat(None, n):
        await apost(event)
    await done.wait()
    elapsed = time.perf_counter() - start
    assert await bus.ashutdown(TIMEOUT)
    return elapsed, done.calls


async def call_soon_floor(n: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    done = _Done(n)

    def handler(event: object) -> None:
        done.hit()

    event = Ping(n=0)
    call_soon = loop.call_soon
    start = time.perf_counter()
    for _ in repeat(None, n):
        call_soon(handler, event)
    await done.wait()
    return time.perf_counter() - start, done.calls


async def create_task_floor(n: int) -> tuple[float, int]:
    loop = asyncio.get_running_loop()
    done = _Done(n)

    async def handler(event: object) -> None:
        done.hit()

    event = Ping(n=0)
    create_task = loop.create_task
    start = time.perf_counter()
    tasks = [create_task(handler(event)) for _ in repeat(None, n)]
    await done.wait()
    elapsed = time.perf_counter() - start
    del tasks
    return elapsed, done.calls


async def blinker_send_async(n: int) -> tuple[float, int]:
    try:
        import blinker
    except ImportError as exc:
        raise Skip(f"blinker is not installed ({exc})") from None
    done = _Done(n)

    async def receiver(sender: object) -> None:
        done.hit()

    signal = blinker.Signal()
    signal.connect(receiver)
    event = Ping(n=0)
    send_async = signal.send_async
    start = time.perf_counter()
    for _ in repeat(None, n):
        await send_async(event)
    await done.wait()
    return time.perf_counter() - start, done.calls


async def pyee_asyncio(n: int) -> tuple[float, int]:
    try:
        from pyee.asyncio import AsyncIOEventEmitter
    except ImportError as exc:
        raise Skip(f"pyee is not installed ({exc})") from None
    done = _Done(n)
    emitter = AsyncIOEventEmitter()

    @emitter.on("ping")
    async def handler(event: object) -> None:
        done.hit()

    event = Ping(n=0)
    emit = emitter.emit
    start = time.perf_counter()
    for _ in repeat(None, n):
        emit("ping", event)
    await done.wait()
    return time.perf_counter() - start, done.calls


async def psygnal_async(n: int) -> tuple[float, int]:
    try:
        import psygnal
        from psygnal._async import clear_async_backend
    except ImportError as exc:
        raise Skip(f"psygnal with async slots is not installed ({exc})") from None
    backend = psygnal.set_async_backend("asyncio")
    try:
        await asyncio.wait_for(backend.running.wait(), TIMEOUT)
        done = _Done(n)

        class Emitter:
            ping = psygnal.Signal(object)

        emitter = Emitter()

        async def slot(event: object) -> None:
            done.hit()

        emitter.ping.connect(slot)
        event = Ping(n=0)
        emit = emitter.ping.emit
        start = time.perf_counter()
        for _ in repeat(None, n):
            emit(event)
        await done.wait()
        return time.perf_counter() - start, done.calls
    finally:
        clear_async_backend()


async def abxbus_emit(n: int) -> tuple[float, int]:
    try:
        import abxbus
    except ImportError:
        try:
            import bubus as abxbus  # type: ignore[no-redef]  # the older name of the same project
        except ImportError as exc:
            raise Skip(f"neither abxbus nor bubus is installed ({exc})") from None

    class AbxPing(abxbus.BaseEvent):  # type: ignore[misc, name-defined]  # untyped peer
        n: int = 0

    done = _Done(n)
    bus = abxbus.EventBus(name=f"bench{time.monotonic_ns()}", max_history_size=100, max_history_drop=True)

    async def on_ping(event: AbxPing) -> None:
        done.hit()

    bus.on(AbxPing, on_ping)
    events = [AbxPing() for _ in range(n)]
    emit = bus.emit
    start = time.perf_counter()
    for event in events:
        emit(event)
    await done.wait()
    elapsed = time.perf_counter() - start
    await bus.wait_until_idle()
    await bus.destroy()
    return elapsed, done.calls


CASES: list[tuple[str, str, Case, float]] = [
    ("eventbus asyncio post", "eventbus", eventbus_post, 1.0),
    ("eventbus asyncio apost", "eventbus", eventbus_apost, 1.0),
    ("loop.call_soon (plain handler)", "floor", call_soon_floor, 1.0),
    ("loop.create_task", "floor", create_task_floor, 1.0),
    ("blinker send_async", "peer", blinker_send_async, 1.0),
    ("pyee AsyncIOEventEmitter", "peer", pyee_asyncio, 1.0),
    ("psygnal async slot", "peer", psygnal_async, 1.0),
    ("abxbus emit (2% of the events)", "peer", abxbus_emit, 0.02),
]


def run(events: int, rounds: int) -> dict[str, float | str]:
    """Run every case *rounds* times; return the median events/s per case, or the skip reason."""
    rates: dict[str, list[float]] = {name: [] for name, *_ in CASES}
    skipped: dict[str, str] = {}
    for _ in range(rounds):
        for name, _kind, case, scale in CASES:
            if name in skipped:
                continue
            n = max(100, int(events * scale))
            gc.collect()
            gc.disable()
            try:
                elapsed, calls = asyncio.run(case(n))
            except Skip as why:
                skipped[name] = str(why)
                continue
            except Exception as exc:
                skipped[name] = f"failed: {type(exc).__name__}: {exc}"
                continue
            finally:
                gc.enable()
            if calls != n:
                skipped[name] = f"lost events: {n - calls} of {n}"
                continue
            rates[name].append(n / elapsed)
    out: dict[str, float | str] = {}
    for name, *_ in CASES:
        out[name] = skipped[name] if name in skipped else statistics.median(rates[name])
    return out


def main() -> None:
    """Print the table and the targets."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = run(args.events, args.rounds)
    floor = results["loop.call_soon (plain handler)"]
    print(f"{args.events:,} events to one async handler, median of {args.rounds} rounds\n")
    print(f"| {'case':<32} | {'kind':<8} | {'events/s':>11} | {'µs/event':>8} | {'vs call_soon':>12} |")
    print(f"|{'-' * 34}|{'-' * 10}|{'-' * 13}|{'-' * 10}|{'-' * 14}|")
    for name, kind, *_ in CASES:
        rate = results[name]
        if isinstance(rate, str):
            print(f"| {name:<32} | {kind:<8} | {'skipped: ' + rate} |")
            continue
        ratio = f"{rate / floor:.2f}x" if isinstance(floor, float) else "-"
        print(f"| {name:<32} | {kind:<8} | {rate:>11,.0f} | {1e6 / rate:>8.2f} | {ratio:>12} |")
    ours = results["eventbus asyncio post"]
    blinker = results["blinker send_async"]
    print("\nTargets:")
    for label, peer, goal in (("blinker send_async", blinker, 1.0), ("loop.call_soon", floor, 0.5)):
        if isinstance(ours, float) and isinstance(peer, float):
            ratio = ours / peer
            mark = "met" if ratio >= goal else "NOT met"
            print(f"- eventbus asyncio / {label} = {ratio:.2f}x (target >= {goal}x): {mark}")
        else:
            print(f"- eventbus asyncio / {label}: not measurable in this run")


if __name__ == "__main__":
    main()
