"""Where the time of one ``EventBus(strategy="sync").post(event)`` goes, function by function.

Usage, from the repository root::

    .venv/bin/python -m benchmarks.profile_post [--posts 200000] [--handlers 1] [--plain]

Three views of the same loop (one pre-built typed event, trivial counting handlers):

1. the plain time per post, without any profiler;
2. cProfile (deterministic): calls per post and own time per post for every
   function on the path. cProfile adds a fixed cost to every call it sees, so
   the last column spreads the real time per post over the functions in
   proportion to their own time: read it as an estimate, not a measurement;
3. pyinstrument (sampling, when installed): the share of samples per frame,
   which does not inflate small functions;
4. ablation, without any profiler: ``post`` against calling the strategy's
   ``submit`` and the handler directly, so each layer's own time is a
   difference of two plain timings (best of 9 interleaved rounds: the floor of
   each cost, with the noise of a shared machine filtered out);
5. line by line (when ``line_profiler`` is installed): each function's own
   time from the ablation, split in proportion to line_profiler's line times
   (a rough split: line_profiler's own per-line cost is large and uneven);
6. reference costs of the kinds of statement on the path (a threading.local
   read, a slot write, a call...), measured with timeit on this machine.

Sections 4 and 5 read private attributes of the bus (``_submit``, ``_registry``,
``_strategy``); when those change, they say so and are skipped.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import inspect
import pstats
import time
from itertools import repeat
from typing import Any

from eventbus import EventBus

from .peers import Ping, PlainPing, eventbus_subscriber


def _bus(handlers: int, plain: bool) -> tuple[EventBus, object, list[object]]:
    bus = EventBus(strategy="sync")
    event_cls = PlainPing if plain else Ping
    subs = [eventbus_subscriber(event_cls)() for _ in range(handlers)]
    for sub in subs:
        bus.register(sub)
    event = PlainPing(0) if plain else Ping(n=0)
    bus.post(event)  # resolve the dispatch cache
    return bus, event, subs


def _loop(bus: EventBus, event: object, n: int) -> None:
    post = bus.post
    for _ in repeat(None, n):
        post(event)


def _plain_ns(bus: EventBus, event: object, n: int, rounds: int = 5) -> float:
    samples = []
    for _ in range(rounds):
        gc.collect()
        gc.disable()
        start = time.perf_counter_ns()
        _loop(bus, event, n)
        samples.append((time.perf_counter_ns() - start) / n)
        gc.enable()
    return sorted(samples)[len(samples) // 2]


def _loop_overhead(n: int) -> float:
    def nothing(event: object) -> None:
        pass

    gc.disable()
    start = time.perf_counter_ns()
    for _ in repeat(None, n):
        nothing(None)
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    return elapsed / n


def _time_once(call: object, args: tuple[object, ...], n: int) -> float:
    """ns per ``call(*args)`` in a loop, written out per arity so that no ``*args`` cost is added."""
    fn: Any = call
    gc.collect()
    gc.disable()
    start = time.perf_counter_ns()
    if len(args) == 1:
        (a,) = args
        for _ in repeat(None, n):
            fn(a)
    else:
        a, b, c, d = args
        for _ in repeat(None, n):
            fn(a, b, c, d)
    elapsed = time.perf_counter_ns() - start
    gc.enable()
    return elapsed / n


def _best_interleaved(steps: dict[str, tuple[object, tuple[object, ...]]], n: int, rounds: int = 9) -> dict[str, float]:
    """The best round of each step, the steps' rounds interleaved (the floor of each cost, noise filtered)."""
    best = {name: float("inf") for name in steps}
    for _ in range(rounds):
        for name, (call, args) in steps.items():
            best[name] = min(best[name], _time_once(call, args, n))
    return best


def _ablation(bus: EventBus, event: object, n: int) -> dict[str, float] | None:
    """Own time of post, of the strategy's submit and of the handler, each as a difference of plain timings."""
    try:
        handlers = bus._registry.dispatch[type(event)]
        submit = bus._submit
        callbacks = [sub.callback for sub in handlers]
    except (AttributeError, KeyError, TypeError) as exc:
        print(f"ablation skipped: the bus's internals changed ({type(exc).__name__}: {exc})")
        return None

    def nothing4(a: object, b: object, c: object, d: object) -> None:
        pass

    def nothing1(a: object) -> None:
        pass

    steps: dict[str, tuple[object, tuple[object, ...]]] = {
        "post": (bus.post, (event,)),
        "submit": (submit, (event, handlers, None, None)),
        "call4": (nothing4, (None, None, None, None)),
        "call1": (nothing1, (None,)),
    }
    for i, callback in enumerate(callbacks):
        steps[f"handler{i}"] = (callback, (event,))
    best = _best_interleaved(steps, n)
    handler_ns = sum(best[f"handler{i}"] for i in range(len(callbacks)))
    call1, call4 = best["call1"], best["call4"]
    figures = {
        "post_total": best["post"],
        "loop_and_call": call1,
        "post_own": best["post"] - best["submit"],
        "submit_own": best["submit"] - call4 - (handler_ns - call1 * len(callbacks)),
        "handlers": handler_ns - call1 * len(callbacks),
        "submit_call": call4 - call1,
    }
    print("ablation (no profiler; best of 9 interleaved rounds; each line is a difference of two timings)")
    print(f"  bus.post(event), whole                          {best['post']:>7,.0f} ns")
    print(f"  - the benchmark loop + a 1-argument call        {call1:>7,.0f} ns")
    print(f"  - post's own body (EventBus.post)               {figures['post_own']:>7,.0f} ns")
    print(f"  - calling submit (4 arguments) from post        {figures['submit_call']:>7,.0f} ns")
    print(f"  - submit's own body (SyncDelivery.submit)       {figures['submit_own']:>7,.0f} ns")
    print(f"  - the handler(s) themselves, {len(callbacks)} call(s)             {figures['handlers']:>7,.0f} ns")
    print()
    return figures


def _line_profile(bus: EventBus, event: object, n: int, own: dict[str, float]) -> None:
    """Line by line: each function's own time (ablation) split in proportion to line_profiler's line times."""
    try:
        from line_profiler import LineProfiler
    except ImportError:
        print("line_profiler is not installed (pip install line_profiler): no line-by-line view")
        return
    try:
        post_fn = type(bus).post
        submit_fn = type(bus._strategy).submit
    except AttributeError as exc:
        print(f"line view skipped: the bus's internals changed ({exc})")
        return
    profiler = LineProfiler(post_fn, submit_fn)
    profiler.enable_by_count()
    _loop(bus, event, n)
    profiler.disable_by_count()
    stats = profiler.get_stats()
    by_name = {name.rsplit(".", 1)[-1]: lines for (_, _, name), lines in stats.timings.items()}
    # Line times are inclusive: post's line that calls submit holds all of submit's time.
    submit_total = sum(t for _, _, t in by_name.get("submit", []))
    print("line by line: each function's own time (ablation) split in proportion to line_profiler's line times.")
    print("line_profiler adds a large, uneven cost to every line, so read the split as rough, not as a measurement.")
    for name, fn, own_ns in (
        ("post", post_fn, own["post_own"]),
        ("submit", submit_fn, own["submit_own"] + own["handlers"]),
    ):
        text, start = inspect.getsourcelines(fn)
        lines = []
        for line, hits, t in by_name.get(name, []):
            code = text[line - start].strip() if 0 <= line - start < len(text) else "?"
            if name == "post" and t >= submit_total * 0.9:
                t -= submit_total
                code += "   [submit's time taken out]"
            lines.append((line, hits, max(t, 0), code))
        total = sum(t for _, _, t, _ in lines) or 1
        print(f"  {fn.__qualname__}: {own_ns:,.0f} ns{' incl. the handler' if name == 'submit' else ''}")
        for line, hits, t, code in lines:
            print(f"    {line:>4}  {hits / n:>4.1f}x  {t / total * own_ns:>6,.0f} ns  {code[:100]}")
    print()


def _reference_costs() -> None:
    """What the kinds of statement on the path cost on this machine (timeit, less an empty statement)."""
    setup = """
import threading
class Slots:
    __slots__ = ("count", "flag", "other")
    def __init__(self):
        self.count = 0
        self.flag = False
        self.other = None
    def method(self, event):
        pass
def function(event):
    pass
def four(a, b, c, d):
    pass
local = threading.local()
local.state = Slots()
obj = Slots()
table = {Slots: (obj,)}
handlers = (obj,)
bound = obj.method
"""
    statements = {
        "threading.local attribute read (local.state)": "local.state",
        "slot attribute read (obj.flag)": "obj.flag",
        "slot attribute write (obj.flag = True)": "obj.flag = True",
        "slot counter increment (obj.count += 1)": "obj.count += 1",
        "dict.get on the event's class (table.get(type(obj)))": "table.get(type(obj))",
        "for over a 1-tuple (for h in handlers: pass)": "for h in handlers: pass",
        "try/finally around nothing": "try:\n    pass\nfinally:\n    pass",
        "call: plain function, 1 argument": "function(obj)",
        "call: bound method, 1 argument": "bound(obj)",
        "call: function, 4 arguments": "four(obj, obj, None, None)",
    }
    import timeit

    number = 1_000_000
    empty = min(timeit.repeat("pass", setup, number=number, repeat=5)) / number * 1e9
    print("reference costs on this machine (timeit, best of 5 x 1,000,000, less an empty statement)")
    for label, statement in statements.items():
        ns = min(timeit.repeat(statement, setup, number=number, repeat=5)) / number * 1e9 - empty
        print(f"  {label:<58} {ns:>5.1f} ns")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_post", description=__doc__.split("\n\n")[0])
    parser.add_argument("--posts", type=int, default=200_000)
    parser.add_argument("--handlers", type=int, default=1)
    parser.add_argument("--plain", action="store_true", help="post a plain object instead of a typed Event")
    args = parser.parse_args(argv)
    n = args.posts

    bus, event, _ = _bus(args.handlers, args.plain)
    real = _plain_ns(bus, event, n)
    floor = _loop_overhead(n)
    what = "plain object" if args.plain else "typed Event"
    print(f"eventbus sync post, {args.handlers} handler(s), {what}: {real:,.0f} ns/post (median of 5 x {n:,})")
    print(f"  of which the benchmark loop and an empty one-argument call: {floor:,.0f} ns")
    print()

    profiler = cProfile.Profile()
    profiler.enable()
    _loop(bus, event, n)
    profiler.disable()
    stats = pstats.Stats(profiler)
    rows = []
    total_own = 0.0
    for (filename, line, name), (_, calls, own, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if name == "_loop" or "disable" in name:
            continue
        rows.append((own, cumulative, calls, f"{filename.rsplit('/', 1)[-1]}:{line}({name})"))
        total_own += own
    rows.sort(reverse=True)
    print("cProfile (own time is inflated by the profiler; the last column rescales it to the real ns/post)")
    print(f"{'function':<58} {'calls/post':>10} {'own ns/post':>12} {'cum ns/post':>12} {'≈ real ns':>10}")
    for own, cumulative, calls, label in rows:
        share = own / total_own if total_own else 0.0
        print(
            f"{label:<58} {calls / n:>10.2f} {own / n * 1e9:>12,.0f} {cumulative / n * 1e9:>12,.0f}"
            f" {share * (real - floor):>10,.0f}"
        )
    print()

    own = _ablation(bus, event, n)
    if own is not None:
        _line_profile(bus, event, n, own)
    _reference_costs()

    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed (pip install -e '.[bench]'): no sampling profile")
        return 0
    sampler = Profiler(interval=0.00005)
    sampler.start()
    _loop(bus, event, n * 5)
    sampler.stop()
    print("pyinstrument (sampling, 50 µs interval; the share of time per frame, call tree)")
    print(sampler.output_text(unicode=True, color=False, show_all=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
