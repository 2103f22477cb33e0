"""Workload 9's subjects: what topic patterns cost a post (issue 15).

Two pairs, each timed in the same interleaved rounds:

- a topic that 10 patterns match, against a topic with 10 plain topic handlers
  (10 subscriber classes in both, running the same handler code, so that the
  call sites see the same variety of functions);
- a post to a topic that none of 1,000 registered patterns matches (one handler
  of its class), against the same post with no pattern registered.

Patterns are matched when a topic's handler tuple is built, so both ratios
should be 1 within noise: a post is one dictionary lookup either way.
"""

from __future__ import annotations

import types
from typing import Any

from eventbus import Event, EventBus, subscribe

from .peers import Case, Counter, SyncRun, call_loop, dict_loop

TOPIC = "bench.orders.placed"
MATCHING = (
    "bench.orders.*",
    "bench.orders.>",
    "bench.*.placed",
    "*.orders.placed",
    "bench.>",
    ">",
    "*.*.placed",
    "bench.*.*",
    "*.orders.*",
    "*.*.*",
)
"""Ten different patterns, each matching `TOPIC`."""
UNMATCHED = 1_000


class Placed(Event, topic=TOPIC):
    """The event of the first pair."""

    n: int


class Unmatched(Event, topic="bench.unmatched"):
    """The event of the second pair: a topic that no pattern of the workload matches."""

    n: int


def _subscriber(key: type | str) -> type[Counter]:
    """A new `Counter` subclass whose ``on_event`` (Counter's very code) is ``@subscribe(key)``."""
    body = Counter.on_event
    handler = types.FunctionType(body.__code__, body.__globals__, "on_event")
    handler.__qualname__ = "Counter.on_event"
    return type("Counter", (Counter,), {"__slots__": (), "on_event": subscribe(key)(handler)})


def _run(bus: EventBus, counters: list[Counter], event: Event) -> SyncRun:
    for counter in counters:
        bus.register(counter)
    return SyncRun(call_loop([(bus.post, event)]), lambda: sum(c.calls for c in counters), bus.shutdown)


def plain_topics(handlers: int, keys: list[int]) -> SyncRun:
    """10 plain subscriptions to the posted topic."""
    return _run(EventBus(strategy="sync"), [_subscriber(TOPIC)() for _ in MATCHING], Placed(n=0))


def matching_patterns(handlers: int, keys: list[int]) -> SyncRun:
    """10 patterns that all match the posted topic."""
    return _run(EventBus(strategy="sync"), [_subscriber(pattern)() for pattern in MATCHING], Placed(n=0))


def no_patterns(handlers: int, keys: list[int]) -> SyncRun:
    """One handler of the posted class; no pattern registered."""
    return _run(EventBus(strategy="sync"), [_subscriber(Unmatched)()], Unmatched(n=0))


def unmatched_patterns(handlers: int, keys: list[int]) -> SyncRun:
    """The same, with 1,000 patterns registered that do not match the posted topic."""
    bus = EventBus(strategy="sync")
    for index in range(UNMATCHED):

        def elsewhere(event: Any) -> None:
            raise AssertionError("a pattern that does not match was called")

        bus.register(subscribe(f"svc{index}.*" if index % 2 else f"svc{index}.>")(elsewhere))
    return _run(bus, [_subscriber(Unmatched)()], Unmatched(n=0))


TEN = [
    Case("eventbus sync · 10 plain topic handlers", "eventbus", plain_topics),
    Case("eventbus sync · 10 matching patterns", "eventbus", matching_patterns),
    Case("dict-of-lists loop", "floor", dict_loop, note="10 handlers"),
]
ONE = [
    Case("eventbus sync · 1 handler, no patterns", "eventbus", no_patterns),
    Case("eventbus sync · 1 handler, 1,000 unmatched patterns", "eventbus", unmatched_patterns),
]
CASES = TEN + ONE
"""Workload 9's rows, in table order."""
