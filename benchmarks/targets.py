"""The performance targets of issues 2, 3, 4, 6 and 15, as ratios computed from one run.

Targets are printed next to the figures, never asserted: a benchmark on a shared
2-core machine is evidence for people, not a pass/fail gate.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .workloads import Result

EVENTBUS_SYNC = "eventbus sync · typed Event"
EVENTBUS_THREADED = ("eventbus concurrent · thread_safe=False", "eventbus concurrent · thread_safe=True")
PURE_PYTHON_PEERS = (
    "blinker send",
    "pyee emit",
    "pypubsub sendMessage",
    "PyDispatcher send",
    "geeteventbus 1.0 post (synchronus)",
)  # psygnal is compiled with mypyc, so it is held to its own target


COMPILED = " [compiled]"  # the suffix of the compiled build's rows (benchmarks.run --compiled)


@dataclass(frozen=True)
class Check:
    """One target: what was compared, the figure, the target, and whether it is met."""

    issues: str  # "#2", "#2 #4"
    what: str
    value: float | None
    shown: str  # the value as printed, e.g. "2.41x"
    target: str  # e.g. "≤ 3x"
    met: bool | None  # None when a figure is missing (case skipped or failed)

    @property
    def mark(self) -> str:
        return {True: "✓", False: "✗", None: "-"}[self.met]

    def line(self) -> str:
        return f"{self.mark} {self.issues:<6} {self.what} = {self.shown} (target {self.target})"

    def to_json(self) -> dict[str, Any]:
        return {
            "issues": self.issues,
            "what": self.what,
            "value": self.value,
            "target": self.target,
            "met": self.met,
        }


class _Figures:
    def __init__(self, results: list[Result]) -> None:
        self._by = {(r.workload, r.case): r for r in results}

    def get(self, workload: str, case: str, key: str) -> float | None:
        result = self._by.get((workload, case))
        if result is None or result.skipped or result.error:
            return None
        return result.metrics.get(key)

    def result(self, workload: str, case: str) -> Result | None:
        return self._by.get((workload, case))

    def cases(self, workload: str, kind: str) -> list[Result]:
        return [r for (w, _), r in self._by.items() if w == workload and r.kind == kind and not (r.skipped or r.error)]


def _at_most(limit: float) -> Callable[[float], bool]:
    return lambda v: v <= limit


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _check(
    issues: str, what: str, value: float | None, target: str, ok: Callable[[float], bool], fmt: str = "{:.2f}x"
) -> Check:
    if value is None:
        return Check(issues, what, None, "n/a", target, None)
    return Check(issues, what, value, fmt.format(value), target, ok(value))


def evaluate(results: list[Result]) -> list[Check]:
    """Compute every target that this run's figures allow."""
    f = _Figures(results)
    checks: list[Check] = []
    add = checks.append

    # Sync, 1 handler (#2: ≤ 3x the dict loop; #4: 2x faster than pure-Python peers, ≤ 1.2x emit_fast).
    eb1 = f.get("sync-1", EVENTBUS_SYNC, "ns_per_post")
    add(
        _check(
            "#2",
            "sync 1 handler: eventbus / dict-loop",
            _ratio(eb1, f.get("sync-1", "dict-of-lists loop", "ns_per_post")),
            "≤ 3x",
            lambda v: v <= 3,
        )
    )
    for peer in PURE_PYTHON_PEERS:
        add(
            _check(
                "#4",
                f"sync 1 handler: {peer} / eventbus",
                _ratio(f.get("sync-1", peer, "ns_per_post"), eb1),
                "≥ 2x",
                lambda v: v >= 2,
            )
        )
    add(
        _check(
            "#4",
            "sync 1 handler: eventbus / psygnal emit_fast",
            _ratio(eb1, f.get("sync-1", "psygnal emit_fast", "ns_per_post")),
            "≤ 1.2x; goal < 1x",
            lambda v: v <= 1.2,
        )
    )

    # Sync, 10 handlers (#2: ≤ 1.5x the dict loop; #4: faster than every peer).
    eb10 = f.get("sync-10", EVENTBUS_SYNC, "ns_per_post")
    add(
        _check(
            "#2",
            "sync 10 handlers: eventbus / dict-loop",
            _ratio(eb10, f.get("sync-10", "dict-of-lists loop", "ns_per_post")),
            "≤ 1.5x",
            lambda v: v <= 1.5,
        )
    )
    peers10 = f.cases("sync-10", "peer")
    if peers10:
        fastest = min(peers10, key=lambda r: r.metrics["ns_per_post"])
        add(
            _check(
                "#4",
                f"sync 10 handlers: eventbus / fastest peer ({fastest.case})",
                _ratio(eb10, fastest.metrics["ns_per_post"]),
                "< 1x",
                lambda v: v < 1,
            )
        )

    # 1,000 types (#2, #4: within 10% of one type).
    add(
        _check(
            "#2 #4",
            "1,000 types / 1 type, eventbus",
            f.get("topics", EVENTBUS_SYNC, "ratio"),
            "≤ 1.10x",
            lambda v: v <= 1.10,
        )
    )

    # Topic patterns (#15: matched when the handler tuple is built, so a post costs the same).
    add(
        _check(
            "#15",
            "10 matching patterns / 10 plain topic handlers",
            f.get("patterns", "eventbus sync · 10 matching patterns", "ratio"),
            "≤ 1.10x",
            lambda v: v <= 1.10,
        )
    )
    add(
        _check(
            "#15",
            "unmatched topic, 1,000 patterns / none",
            f.get("patterns", "eventbus sync · 1 handler, 1,000 unmatched patterns", "ratio"),
            "≤ 1.10x",
            lambda v: v <= 1.10,
        )
    )

    # Threaded (#3: ≥ 10x ThreadPoolExecutor, ≥ 0.25x SimpleQueue; #4: ≥ 10x geeteventbus, ≥ 5x pyee executor, 0 lost).
    for case in EVENTBUS_THREADED:
        rate = f.get("threaded", case, "events_per_s")
        short = case.removeprefix("eventbus ")
        add(
            _check(
                "#3",
                f"threaded {short}: eventbus / ThreadPoolExecutor.submit",
                _ratio(rate, f.get("threaded", "ThreadPoolExecutor.submit", "events_per_s")),
                "≥ 10x",
                lambda v: v >= 10,
            )
        )
        add(
            _check(
                "#3",
                f"threaded {short}: eventbus / SimpleQueue floor",
                _ratio(rate, f.get("threaded", "SimpleQueue + worker threads", "events_per_s")),
                "≥ 0.25x",
                lambda v: v >= 0.25,
            )
        )
        add(
            _check(
                "#4",
                f"threaded {short}: eventbus / geeteventbus",
                _ratio(rate, f.get("threaded", "geeteventbus 1.0 eventbus()", "events_per_s")),
                "≥ 10x",
                lambda v: v >= 10,
            )
        )
        add(
            _check(
                "#4",
                f"threaded {short}: eventbus / pyee executor",
                _ratio(rate, f.get("threaded", "pyee ExecutorEventEmitter", "events_per_s")),
                "≥ 5x",
                lambda v: v >= 5,
            )
        )
    for result in f.cases("threaded", "eventbus"):
        lost = result.lost
        add(
            _check(
                "#3 #4",
                f"threaded {result.case.removeprefix('eventbus ')}: lost events",
                None if lost is None else float(lost),
                "0",
                lambda v: v == 0,
                "{:,.0f}",
            )
        )

    # Idle latency (#3: p99 under 1 ms).
    for case in ("eventbus concurrent", "eventbus ordered"):
        add(
            _check(
                "#3",
                f"idle latency p99, {case}",
                f.get("latency", case, "p99_us"),
                "< 1,000 µs",
                lambda v: v < 1000,
                "{:,.0f} µs",
            )
        )

    # Registration (#2: < 2 µs and 300 B; #4: < 1 µs and 250 B).
    us = f.get("register", "eventbus register", "us_per_sub")
    size = f.get("register", "eventbus register", "bytes_per_sub")
    add(_check("#2", "registration time per subscriber", us, "< 2 µs", lambda v: v < 2, "{:.2f} µs"))
    add(_check("#4", "registration time per subscriber", us, "< 1 µs", lambda v: v < 1, "{:.2f} µs"))
    add(_check("#2", "registration memory per subscriber", size, "< 300 B", lambda v: v < 300, "{:,.0f} B"))
    add(_check("#4", "registration memory per subscriber", size, "< 250 B", lambda v: v < 250, "{:,.0f} B"))

    # asyncio (#6: ≥ blinker send_async, ≥ 0.5x call_soon).
    rate = f.get("asyncio", "eventbus asyncio", "events_per_s")
    add(
        _check(
            "#6",
            "asyncio: eventbus / blinker send_async",
            _ratio(rate, f.get("asyncio", "blinker send_async", "events_per_s")),
            "≥ 1x",
            lambda v: v >= 1,
        )
    )
    add(
        _check(
            "#6",
            "asyncio: eventbus / loop.call_soon",
            _ratio(rate, f.get("asyncio", "loop.call_soon (sync handler)", "events_per_s")),
            "≥ 0.5x",
            lambda v: v >= 0.5,
        )
    )
    # The compiled build (#11: sync ≤ 0.85x emit_fast with 1 handler, ≤ 0.5x with 10; threaded ≥ 1.5x the pure
    # build). Only when the run has compiled rows (--compiled).
    for workload, limit in (("sync-1", 0.85), ("sync-10", 0.5)):
        if f.result(workload, EVENTBUS_SYNC + COMPILED) is not None:
            add(
                _check(
                    "#11",
                    f"{workload}: compiled eventbus / psygnal emit_fast",
                    _ratio(
                        f.get(workload, EVENTBUS_SYNC + COMPILED, "ns_per_post"),
                        f.get(workload, "psygnal emit_fast", "ns_per_post"),
                    ),
                    f"≤ {limit}x",
                    _at_most(limit),
                )
            )
    for case in EVENTBUS_THREADED:
        if f.result("threaded", case + COMPILED) is not None:
            add(
                _check(
                    "#11",
                    f"threaded {case.removeprefix('eventbus ')}: compiled / pure",
                    _ratio(f.get("threaded", case + COMPILED, "events_per_s"), f.get("threaded", case, "events_per_s")),
                    "≥ 1.5x",
                    lambda v: v >= 1.5,
                )
            )
    return checks
