"""The workloads and the harness that times them.

How every figure is taken:

- Every case of a workload is set up first; then the rounds are interleaved
  (round 1 of every case, then round 2, ...), so that a burst of load from
  elsewhere on a shared machine hits all cases alike. The figure is the median
  of the rounds.
- Time is `time.perf_counter_ns`. The garbage collector is collected before and
  disabled during each timed section, for every case alike.
- Every handler counts its calls; the harness compares the count with what it
  posted and reports the difference as lost events. Nothing is asserted here: a
  library that loses events is shown doing so.
- Posting loops are one call per post (see `benchmarks.peers.call_loop`), so the
  loop's own cost (the "direct call" floor minus the handler) is in every figure.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import statistics
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from . import patterns, peers
from .peers import Case, Unavailable

# -- sizes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """How much work each workload does."""

    rounds: int
    sync_posts: int  # posts per round, at most; see round_seconds
    sync10_posts: int
    topic_posts: int
    topics: int
    threaded_events: int  # events per round, over all producers
    producers: int
    workers: int
    latency_posts: int  # over all rounds
    latency_pause: float  # seconds of idle time after each handled post
    subscribers: int
    build_events: int
    async_events: int
    round_seconds: float | None  # shorten a slow subject's rounds to about this long


FULL = Sizes(
    rounds=9,
    sync_posts=200_000,
    sync10_posts=50_000,
    topic_posts=100_000,
    topics=1_000,
    threaded_events=100_000,
    producers=4,
    workers=8,
    latency_posts=1_000,
    latency_pause=0.0002,
    subscribers=10_000,
    build_events=200_000,
    async_events=100_000,
    round_seconds=0.1,
)

QUICK = Sizes(
    rounds=3,
    sync_posts=3_000,
    sync10_posts=2_000,
    topic_posts=3_000,
    topics=1_000,
    threaded_events=4_000,
    producers=4,
    workers=8,
    latency_posts=60,
    latency_pause=0.0002,
    subscribers=2_000,
    build_events=3_000,
    async_events=3_000,
    round_seconds=None,
)


# -- results --------------------------------------------------------------------------------


@dataclass
class Result:
    """One row: a case's figures in one workload."""

    workload: str
    case: str
    kind: str
    metrics: dict[str, float] = field(default_factory=dict)
    rounds: list[float] = field(default_factory=list)  # the primary metric, round by round
    expected: int | None = None  # handler calls the harness asked for
    delivered: int | None = None  # handler calls that happened
    skipped: str | None = None  # why the case did not run here (not installed, not implemented)
    error: str | None = None  # the case ran and raised
    note: str = ""

    @property
    def lost(self) -> int | None:
        if self.expected is None or self.delivered is None:
            return None
        return self.expected - self.delivered

    def to_json(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "case": self.case,
            "kind": self.kind,
            "metrics": self.metrics,
            "rounds": self.rounds,
            "expected": self.expected,
            "delivered": self.delivered,
            "lost": self.lost,
            "skipped": self.skipped,
            "error": self.error,
            "note": self.note,
        }


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    fmt: str  # format spec for the value


@dataclass(frozen=True)
class Workload:
    """A workload: what it measures, how its table looks, and the function that runs it."""

    id: str
    number: int
    title: str
    description: str
    columns: tuple[Column, ...]
    primary: str  # metric key charted and used for the "vs reference" column
    higher_is_better: bool
    reference: str | None  # the case that the "vs reference" column divides by
    run: Callable[[Sizes, set[str]], list[Result]]
    chart_keys: tuple[str, ...] = ()

    @property
    def unit(self) -> str:
        return next(c.header for c in self.columns if c.key == self.primary)


# -- helpers --------------------------------------------------------------------------------


def _missing(case: Case) -> str | None:
    for module in case.requires:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install -e '.[bench]')"
    return None


def _select(cases: list[Case], kinds: set[str], workload: str) -> tuple[list[Case], list[Result]]:
    """Split *cases* into those to run and result rows for those that cannot."""
    chosen: list[Case] = []
    rows: list[Result] = []
    for case in cases:
        if case.kind not in kinds:
            continue
        why = _missing(case)
        if why is not None:
            rows.append(Result(workload, case.name, case.kind, skipped=why, note=case.note))
        else:
            chosen.append(case)
    return chosen, rows


def _failure(workload: str, case: Case, exc: BaseException) -> Result:
    if isinstance(exc, Unavailable | ImportError):
        return Result(workload, case.name, case.kind, skipped=str(exc), note=case.note)
    return Result(workload, case.name, case.kind, error=f"{type(exc).__name__}: {exc}", note=case.note)


@contextmanager
def _quiet_gc() -> Iterator[None]:
    """Collect now, and keep the collector out of the timed section."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _timed(fn: Callable[[int], object], n: int) -> int:
    with _quiet_gc():
        start = time.perf_counter_ns()
        fn(n)
        return time.perf_counter_ns() - start


def _round_to(n: int, width: int) -> int:
    return max(width, n // width * width)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


# -- workloads 1-3: posting on the calling thread ------------------------------------------


@dataclass
class _Prepared:
    case: Case
    keys: list[int]
    run: peers.SyncRun
    n: int
    samples: list[float] = field(default_factory=list)
    expected: int = 0
    delivered: int = 0


def _prepare_sync(case: Case, handlers: int, keys: list[int], posts: int, sizes: Sizes) -> _Prepared:
    run = case.build(handlers, keys)
    width = len(keys)
    warm = _round_to(max(posts // 20, 1), width)
    per_post = _timed(run.run, warm) / warm
    n = posts
    if sizes.round_seconds is not None:
        n = min(posts, max(posts // 20, int(sizes.round_seconds * 1e9 / max(per_post, 1.0))))
    return _Prepared(case, keys, run, _round_to(int(n * case.scale), width))


def _measure_sync(
    workload: str, jobs: list[tuple[Case, list[int]]], handlers: int, posts: int, sizes: Sizes
) -> tuple[list[_Prepared], list[Result]]:
    """Time each (case, keys) job's posting loop, rounds interleaved; return the jobs that ran and the failures."""
    prepared: list[_Prepared] = []
    failed: list[Result] = []
    for case, keys in jobs:
        try:
            prepared.append(_prepare_sync(case, handlers, keys, posts, sizes))
        except Exception as exc:
            failed.append(_failure(workload, case, exc))
    for _ in range(sizes.rounds):
        for item in list(prepared):
            try:
                before = item.run.delivered()
                elapsed = _timed(item.run.run, item.n)
                item.delivered += item.run.delivered() - before
                item.expected += item.n * handlers
                item.samples.append(elapsed / item.n)
            except Exception as exc:
                prepared.remove(item)
                failed.append(_failure(workload, item.case, exc))
    for item in prepared:
        item.run.close()
    return prepared, failed


def _sync_workload(
    workload: str, handlers: int, posts_of: Callable[[Sizes], int]
) -> Callable[[Sizes, set[str]], list[Result]]:
    def run(sizes: Sizes, kinds: set[str]) -> list[Result]:
        cases, rows = _select(peers.SYNC_CASES, kinds, workload)
        prepared, failed = _measure_sync(workload, [(c, [0]) for c in cases], handlers, posts_of(sizes), sizes)
        for item in prepared:
            ns = statistics.median(item.samples)
            rows.append(
                Result(
                    workload,
                    item.case.name,
                    item.case.kind,
                    metrics={"ns_per_post": ns, "best_ns": min(item.samples), "posts_per_s": 1e9 / ns, "n": item.n},
                    rounds=item.samples,
                    expected=item.expected,
                    delivered=item.delivered,
                    note=item.case.note,
                )
            )
        return _in_case_order(peers.SYNC_CASES, rows + failed)

    return run


def _in_case_order(cases: list[Case], rows: list[Result]) -> list[Result]:
    order = {case.name: i for i, case in enumerate(cases)}
    return sorted(rows, key=lambda r: order.get(r.case, len(order)))


def run_topics(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 3: one handler on each of 1,000 types, posted round-robin, against one type."""
    workload = "topics"
    cases, rows = _select(peers.SYNC_CASES, kinds, workload)
    one_type = [0] * sizes.topics
    many = list(range(sizes.topics))
    # Both variants run the same round-robin loop over `topics` pre-built events, in the
    # same interleaved rounds, so the ratio of a round compares like with like.
    jobs = [(case, keys) for case in cases for keys in (one_type, many)]
    prepared, failed = _measure_sync(workload, jobs, 1, sizes.topic_posts, sizes)
    for case in cases:
        pair = [item for item in prepared if item.case is case]
        if len(pair) != 2:
            continue
        one, spread = sorted(pair, key=lambda item: len(set(item.keys)))
        ratios = [m / o for o, m in zip(one.samples, spread.samples, strict=True)]
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={
                    "one_ns": statistics.median(one.samples),
                    "many_ns": statistics.median(spread.samples),
                    "ratio": statistics.median(ratios),
                    "n": spread.n,
                },
                rounds=ratios,
                expected=one.expected + spread.expected,
                delivered=one.delivered + spread.delivered,
                note=case.note,
            )
        )
    reported = {r.case for r in rows}
    for failure in failed:
        if failure.case not in reported:
            reported.add(failure.case)
            rows.append(failure)
    return _in_case_order(peers.SYNC_CASES, rows)


# -- workload 4: producers and a worker pool -----------------------------------------------


def _threaded_round(case: Case, sizes: Sizes, total: int) -> tuple[int, int, int]:
    """Run one round: (elapsed ns, expected, delivered)."""
    run: peers.ThreadedRun = case.build(sizes.workers)
    per_producer = total // sizes.producers
    start_line = threading.Barrier(sizes.producers + 1)
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            start_line.wait(60)
            run.produce(per_producer)
        except BaseException as exc:  # reported below, after the join
            errors.append(exc)

    threads = [threading.Thread(target=producer, name=f"producer-{i}") for i in range(sizes.producers)]
    for thread in threads:
        thread.start()
    with _quiet_gc():
        start = time.perf_counter_ns()
        start_line.wait(60)
        for thread in threads:
            thread.join()
        run.finish()
        elapsed = time.perf_counter_ns() - start
    if errors:
        raise errors[0]
    return elapsed, per_producer * sizes.producers, run.delivered()


def run_threaded(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 4: 4 producer threads post through 8 workers to one trivial handler."""
    workload = "threaded"
    cases, rows = _select(peers.THREADED_CASES, kinds, workload)
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    totals: dict[str, list[int]] = {c.name: [0, 0] for c in cases}
    failed: dict[str, Result] = {}
    for _ in range(sizes.rounds):
        for case in cases:
            if case.name in failed:
                continue
            try:
                elapsed, expected, delivered = _threaded_round(case, sizes, int(sizes.threaded_events * case.scale))
            except Exception as exc:
                failed[case.name] = _failure(workload, case, exc)
                continue
            # Events per second counts only delivered events: losing events is not speed.
            samples[case.name].append(delivered / (elapsed / 1e9))
            totals[case.name][0] += expected
            totals[case.name][1] += delivered
    for case in cases:
        if case.name in failed:
            rows.append(failed[case.name])
            continue
        rate = statistics.median(samples[case.name])
        expected, delivered = totals[case.name]
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={
                    "events_per_s": rate,
                    "best_events_per_s": max(samples[case.name]),
                    "us_per_event": 1e6 / rate,
                },
                rounds=samples[case.name],
                expected=expected,
                delivered=delivered,
                note=case.note,
            )
        )
    return _in_case_order(peers.THREADED_CASES, rows)


# -- workload 5: idle latency --------------------------------------------------------------


class _Probe:
    """Stamps the handler's start and opens the gate the poster waits at."""

    def __init__(self) -> None:
        self.started = 0
        self.calls = 0
        self.gate = threading.Event()

    def on_start(self) -> None:
        self.started = time.perf_counter_ns()
        self.calls += 1
        self.gate.set()


def run_latency(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 5: on an idle bus, the time from ``post`` to the handler's first line."""
    workload = "latency"
    cases, rows = _select(peers.LATENCY_CASES, kinds, workload)
    built: list[tuple[Case, peers.LatencyRun, _Probe, int]] = []
    for case in cases:
        probe = _Probe()
        try:
            run = case.build(probe.on_start, sizes.workers)
        except Exception as exc:
            rows.append(_failure(workload, case, exc))
            continue
        per_round = max(1, int(sizes.latency_posts * case.scale) // sizes.rounds)
        built.append((case, run, probe, per_round))
    latencies: dict[str, list[float]] = {case.name: [] for case, *_ in built}
    missed: dict[str, int] = {case.name: 0 for case, *_ in built}
    posted: dict[str, int] = {case.name: 0 for case, *_ in built}
    for _ in range(sizes.rounds):
        for case, run, probe, per_round in built:
            for _ in range(per_round):
                probe.gate.clear()
                start = time.perf_counter_ns()
                run.post()
                posted[case.name] += 1
                if not probe.gate.wait(5.0):
                    missed[case.name] += 1
                    continue
                latencies[case.name].append((probe.started - start) / 1e3)
                time.sleep(sizes.latency_pause)  # let the workers go idle again
    for case, run, probe, _ in built:
        run.close()
        values = latencies[case.name]
        if not values:
            rows.append(Result(workload, case.name, case.kind, error="no post reached the handler within 5 s"))
            continue
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={
                    "p50_us": _percentile(values, 0.50),
                    "p99_us": _percentile(values, 0.99),
                    "max_us": max(values),
                    "n": len(values),
                },
                rounds=values,
                expected=posted[case.name],
                delivered=probe.calls,
                note=case.note,
            )
        )
    return _in_case_order(peers.LATENCY_CASES, rows)


# -- workload 6: registration ----------------------------------------------------------------


def _register_all(case: Case, count: int, trace: bool) -> tuple[int, int, Any]:
    """Register *count* fresh subscribers on a fresh bus: (elapsed ns, bytes allocated, bus)."""
    run: peers.RegistrationRun = case.build()
    subscribers = [run.new_subscriber() for _ in range(count)]
    register = run.register
    with _quiet_gc():
        if trace:
            tracemalloc.start()
            before = tracemalloc.get_traced_memory()[0]
        start = time.perf_counter_ns()
        for subscriber in subscribers:
            register(subscriber)
        elapsed = time.perf_counter_ns() - start
        allocated = 0
        if trace:
            allocated = tracemalloc.get_traced_memory()[0] - before
            tracemalloc.stop()
    run.close()
    return elapsed, allocated, subscribers


def run_registration(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 6: register 10,000 subscriber objects; time and memory per subscriber."""
    workload = "register"
    cases, rows = _select(peers.REGISTRATION_CASES, kinds, workload)
    count = sizes.subscribers
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    failed: dict[str, Result] = {}
    for _ in range(sizes.rounds):
        for case in cases:
            if case.name in failed:
                continue
            try:
                elapsed, _, _ = _register_all(case, count, trace=False)
            except Exception as exc:
                failed[case.name] = _failure(workload, case, exc)
                continue
            samples[case.name].append(elapsed / count / 1e3)
    for case in cases:
        if case.name in failed:
            rows.append(failed[case.name])
            continue
        # Memory in a separate pass: tracemalloc slows every allocation down.
        _, allocated, _ = _register_all(case, count, trace=True)
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={"us_per_sub": statistics.median(samples[case.name]), "bytes_per_sub": allocated / count},
                rounds=samples[case.name],
                note=case.note,
            )
        )
    return _in_case_order(peers.REGISTRATION_CASES, rows)


# -- workload 7: building an event -------------------------------------------------------------


def run_build(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 7: the cost of building one event object, for reference."""
    workload = "build"
    cases, rows = _select(peers.BUILD_CASES, kinds, workload)
    built: list[tuple[Case, Callable[[int], None], int]] = []
    for case in cases:
        try:
            built.append((case, case.build(), max(100, int(sizes.build_events * case.scale))))
        except Exception as exc:
            rows.append(_failure(workload, case, exc))
    samples: dict[str, list[float]] = {case.name: [] for case, *_ in built}
    for _, run, n in built:
        run(min(n, 1_000))  # warm up
    for _ in range(sizes.rounds):
        for case, run, n in built:
            samples[case.name].append(_timed(run, n) / n)
    for case, _, _ in built:
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={"ns_per_event": statistics.median(samples[case.name])},
                rounds=samples[case.name],
                note=case.note,
            )
        )
    return _in_case_order(peers.BUILD_CASES, rows)


# -- workload 8: asyncio ---------------------------------------------------------------------


def run_asyncio(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 8: events to one ``async def`` handler on an event loop."""
    workload = "asyncio"
    cases, rows = _select(peers.ASYNC_CASES, kinds, workload)
    samples: dict[str, list[float]] = {c.name: [] for c in cases}
    totals: dict[str, list[int]] = {c.name: [0, 0] for c in cases}
    failed: dict[str, Result] = {}

    async def one(case: Case, n: int) -> tuple[int, int]:
        return await case.build(n, time.perf_counter_ns)

    for _ in range(sizes.rounds):
        for case in cases:
            if case.name in failed:
                continue
            n = max(100, int(sizes.async_events * case.scale))
            try:
                with _quiet_gc():
                    elapsed, delivered = asyncio.run(one(case, n))
            except Exception as exc:
                failed[case.name] = _failure(workload, case, exc)
                continue
            samples[case.name].append(delivered / (elapsed / 1e9))
            totals[case.name][0] += n
            totals[case.name][1] += delivered
    for case in cases:
        if case.name in failed:
            rows.append(failed[case.name])
            continue
        rate = statistics.median(samples[case.name])
        rows.append(
            Result(
                workload,
                case.name,
                case.kind,
                metrics={"events_per_s": rate, "us_per_event": 1e6 / rate},
                rounds=samples[case.name],
                expected=totals[case.name][0],
                delivered=totals[case.name][1],
                note=case.note,
            )
        )
    return _in_case_order(peers.ASYNC_CASES, rows)


# -- workload 9: topic patterns -----------------------------------------------------------------


def run_patterns(sizes: Sizes, kinds: set[str]) -> list[Result]:
    """Workload 9: 10 matching patterns against 10 plain topic handlers; 1,000 unmatched patterns against none."""
    workload = "patterns"
    rows: list[Result] = []
    for cases, handlers in ((patterns.TEN, 10), (patterns.ONE, 1)):
        chosen, skipped = _select(cases, kinds, workload)
        prepared, failed = _measure_sync(workload, [(c, [0]) for c in chosen], handlers, sizes.sync10_posts, sizes)
        rows += skipped + failed
        twin = next((item for item in prepared if item.case is cases[0]), None)
        for item in prepared:
            metrics = {"ns_per_post": statistics.median(item.samples), "best_ns": min(item.samples), "n": item.n}
            if item.case is cases[1] and twin is not None:  # the pair's pattern case, against its plain twin
                ratios = [mine / theirs for theirs, mine in zip(twin.samples, item.samples, strict=True)]
                metrics["ratio"] = statistics.median(ratios)
            rows.append(
                Result(
                    workload,
                    item.case.name,
                    item.case.kind,
                    metrics=metrics,
                    rounds=item.samples,
                    expected=item.expected,
                    delivered=item.delivered,
                    note=item.case.note,
                )
            )
    return _in_case_order(patterns.CASES, rows)


# -- the table of workloads ------------------------------------------------------------------

_NS = Column("ns_per_post", "ns/post", ",.0f")
_BEST = Column("best_ns", "best round", ",.0f")
_RATE = Column("posts_per_s", "posts/s", ",.0f")

WORKLOADS: list[Workload] = [
    Workload(
        "sync-1",
        1,
        "Sync post, 1 handler",
        "One pre-built event posted on the calling thread to one handler that counts its calls.",
        (_NS, _BEST, _RATE),
        "ns_per_post",
        higher_is_better=False,
        reference="dict-of-lists loop",
        run=_sync_workload("sync-1", 1, lambda s: s.sync_posts),
    ),
    Workload(
        "sync-10",
        2,
        "Sync post, 10 handlers",
        "One pre-built event posted on the calling thread to ten handlers.",
        (_NS, _BEST, _RATE),
        "ns_per_post",
        higher_is_better=False,
        reference="dict-of-lists loop",
        run=_sync_workload("sync-10", 10, lambda s: s.sync10_posts),
    ),
    Workload(
        "topics",
        3,
        "1,000 event types, 1 handler each, posted round-robin",
        "The same round-robin loop over 1,000 pre-built events, all of one type versus 1,000 types "
        "(one topic/signal per type for the peers).",
        (
            Column("one_ns", "1 type ns/post", ",.0f"),
            Column("many_ns", "1,000 types ns/post", ",.0f"),
            Column("ratio", "1,000 / 1 (median of per-round ratios)", ".2f"),
        ),
        "many_ns",
        higher_is_better=False,
        reference="dict-of-lists loop",
        run=run_topics,
        chart_keys=("one_ns", "many_ns"),
    ),
    Workload(
        "threaded",
        4,
        "Threaded: 4 producers → 8 workers → 1 trivial handler",
        "4 producer threads post 100,000 events in all; the clock stops when the library's own "
        "shutdown/drain returns. events/s counts delivered events only.",
        (
            Column("events_per_s", "events/s", ",.0f"),
            Column("best_events_per_s", "best round", ",.0f"),
            Column("us_per_event", "µs/event", ".2f"),
        ),
        "events_per_s",
        higher_is_better=True,
        reference="ThreadPoolExecutor.submit",
        run=run_threaded,
    ),
    Workload(
        "latency",
        5,
        "Idle latency, post → handler start",
        "One post at a time on an idle bus; the poster waits at a gate until the handler starts, "
        "then pauses 0.2 ms so the workers go idle again.",
        (
            Column("p50_us", "p50 µs", ",.1f"),
            Column("p99_us", "p99 µs", ",.1f"),
            Column("max_us", "max µs", ",.0f"),
            Column("n", "posts", ",.0f"),
        ),
        "p99_us",
        higher_is_better=False,
        reference="SimpleQueue + worker threads",
        run=run_latency,
        chart_keys=("p50_us", "p99_us"),
    ),
    Workload(
        "register",
        6,
        "Registering 10,000 subscriber objects",
        "Fresh subscriber objects with one handler each, registered on a fresh bus; memory is what "
        "tracemalloc sees allocated by the registrations (the objects themselves excluded).",
        (Column("us_per_sub", "µs/subscriber", ".2f"), Column("bytes_per_sub", "bytes/subscriber", ",.0f")),
        "us_per_sub",
        higher_is_better=False,
        reference="dict-of-lists append",
        run=run_registration,
    ),
    Workload(
        "build",
        7,
        "Building one event (reference)",
        "The cost of constructing the event object itself, through the same one-line lambda for every case.",
        (Column("ns_per_event", "ns/event", ",.0f"),),
        "ns_per_event",
        higher_is_better=False,
        reference="tuple",
        run=run_build,
    ),
    Workload(
        "asyncio",
        8,
        "asyncio: events to 1 async handler",
        "Events posted from the loop to one `async def` handler (the call_soon floor calls a plain "
        "function); the clock stops when the handler has run for every event.",
        (Column("events_per_s", "events/s", ",.0f"), Column("us_per_event", "µs/event", ".2f")),
        "events_per_s",
        higher_is_better=True,
        reference="loop.call_soon (sync handler)",
        run=run_asyncio,
    ),
    Workload(
        "patterns",
        9,
        "Topic patterns (issue 15)",
        "Sync posts of one pre-built event: to a topic that 10 patterns match versus a topic with 10 "
        "plain topic handlers, and to a topic that none of 1,000 registered patterns matches versus "
        "no patterns at all. Each pair's rounds are interleaved; the ratio is the median of per-round ratios.",
        (_NS, _BEST, Column("ratio", "vs its plain twin", ".2f")),
        "ns_per_post",
        higher_is_better=False,
        reference="dict-of-lists loop",
        run=run_patterns,
    ),
]

BY_ID = {w.id: w for w in WORKLOADS}
