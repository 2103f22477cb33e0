"""The main demo: geeteventbus's counter aggregator, rewritten for eventbus.

Thirty producer threads post `CounterChanged` events for four counters through
a concurrent bus for a few seconds; one aggregator subscriber adds them up and
prints the running totals every second. At the end the bus is shut down (which
delivers everything it accepted) and the aggregated totals are compared with
what the producers say they posted: they must be equal, event for event.

Run it with ``bash scripts/demo.sh`` (or ``python examples/demo_counters.py
[seconds]`` inside the virtual environment).
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter

from eventbus import Event, EventBus, subscribe

COUNTERS = ("c1", "c2", "c3", "c4")


class CounterChanged(Event, topic="counters.changed", order_by="counter"):
    """One producer's change to one counter."""

    counter: str
    delta: int


class CounterAggregator:
    """Adds up the changes per counter. thread_safe=False: the bus never runs it twice at once."""

    def __init__(self) -> None:
        self.totals: Counter[str] = Counter()
        self.events = 0

    @subscribe
    def on_change(self, event: CounterChanged) -> None:
        self.totals[event.counter] += event.delta
        self.events += 1


def produce(bus: EventBus, stop: threading.Event, posted: Counter[str], lock: threading.Lock) -> None:
    rng = random.Random()
    mine: Counter[str] = Counter()
    while not stop.is_set():
        counter, delta = rng.choice(COUNTERS), rng.randint(1, 100)
        bus.post(CounterChanged(counter=counter, delta=delta))
        mine[counter] += delta
        time.sleep(0.002)
    with lock:
        posted.update(mine)


def main(seconds: float = 3.0) -> int:
    bus = EventBus()  # the ancestor's defaults: concurrent, 8 workers, 10,000 queued
    aggregator = CounterAggregator()
    bus.register(aggregator)
    stop, lock, posted = threading.Event(), threading.Lock(), Counter[str]()
    producers = [threading.Thread(target=produce, args=(bus, stop, posted, lock)) for _ in range(30)]
    for thread in producers:
        thread.start()
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < seconds:
        time.sleep(min(1.0, seconds - elapsed))
        print(
            f"after {time.monotonic() - started:4.1f} s: "
            + "  ".join(f"{name}={aggregator.totals[name]:>8,}" for name in COUNTERS)
        )
    stop.set()
    for thread in producers:
        thread.join(timeout=10)
    delivered_all = bus.shutdown(wait=True, timeout=30)
    stats = bus.stats()
    print(
        f"posted {stats.posted:,} events; delivered {stats.delivered:,}; failed {stats.failed}; "
        f"all delivered: {delivered_all}"
    )
    for name in COUNTERS:
        print(f"  {name}: producers posted {posted[name]:>9,}   aggregator counted {aggregator.totals[name]:>9,}")
    if aggregator.totals == posted and stats.posted == aggregator.events:
        print("OK: every counter's total equals exactly what the producers posted.")
        return 0
    print("MISMATCH: the aggregated totals differ from what was posted.")
    return 1


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0))
