"""Strategies compared: where handlers run, what keeps its order, what overlaps.

Posts the same events to a bus of each built-in strategy: three events in each
of two keyed streams (``order_by="stream"``), then two unkeyed events of one
topic. The handler is ``thread_safe=True``, so only the strategy limits how many
calls run at once; the first call of each round waits briefly for a second call
to start beside it, which shows whether the strategy runs them in parallel.
"""

from __future__ import annotations

import threading

from eventbus import Event, EventBus, subscribe


class Tick(Event, topic="ticks", order_by="stream"):
    stream: str
    n: int


class Note(Event, topic="notes"):  # no ordering key
    n: int


class Probe:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.order: dict[str, list[int]] = {"a": [], "b": []}
        self.threads: set[str] = set()
        self.new_round()

    def new_round(self) -> None:
        self.running, self.first, self.overlap = 0, True, threading.Event()

    @subscribe(thread_safe=True)  # both classes, from the annotation
    def handle(self, event: Tick | Note) -> None:
        with self.lock:
            if isinstance(event, Tick):
                self.order[event.stream].append(event.n)
            self.threads.add(threading.current_thread().name)
            self.running += 1
            first, self.first = self.first, False
            if self.running > 1:
                self.overlap.set()
        if first:
            self.overlap.wait(0.5)  # give a second call the chance to start meanwhile
        with self.lock:
            self.running -= 1


def main() -> None:
    for strategy in ("sync", "ordered", "concurrent"):
        probe = Probe()
        with EventBus(strategy=strategy, workers=4) as bus:
            bus.register(probe)
            for n in (1, 2, 3):
                bus.post(Tick(stream="a", n=n))
                bus.post(Tick(stream="b", n=n))
            bus.join()
            keyed_overlap = probe.overlap.is_set()
            probe.new_round()
            bus.post(Note(n=1))
            bus.post(Note(n=2))
        where = "the posting thread" if probe.threads == {threading.current_thread().name} else "worker threads"
        print(
            f"{strategy:<11} ran on {where:<18}  per-key order kept: {probe.order == {'a': [1, 2, 3], 'b': [1, 2, 3]}}"
            f"  keyed streams overlapped: {keyed_overlap!s:<5}  unkeyed events overlapped: {probe.overlap.is_set()}"
        )


if __name__ == "__main__":
    main()
