"""A delivery strategy of your own: every event on one background thread, in post order.

A strategy decides on which thread, and in which order, handlers run. The bus
hands it a `Dispatcher` at ``start()``: ``dispatcher.call(...)`` runs one handler
under the bus's error policy (skips unregistered and filtered-out handlers,
counts, reports failures to ``on_error``, settles a published event's
`Delivery`), and ``dispatcher.count_accepted()`` counts an accepted event. The
strategy below is written with public names only, and the project's behavioural
test suite runs on it next to the built-in strategies.

``OneBackgroundThread`` is what a GUI or a game loop often wants: posting never
runs a handler on the caller's thread, and handlers never run concurrently with
each other, so they need no locks of their own.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from eventbus import (
    BusClosedError,
    Delivery,
    Dispatcher,
    Event,
    EventBus,
    QueueFullError,
    Subscriber,
    Subscription,
    subscribe,
)

_Item = tuple[object, tuple[Subscription, ...], Delivery | None]


# --8<-- [start:strategy]
class OneBackgroundThread:
    """Deliver every event on one background thread, one at a time, in the order accepted.

    Args:
        max_queued: How many accepted events may wait before ``post`` blocks.
    """

    def __init__(self, *, max_queued: int = 10_000) -> None:
        self.max_queued = max_queued
        self._dispatcher: Dispatcher | None = None
        self._thread: threading.Thread | None = None
        self._changed = threading.Condition()  # guards everything below
        self._queue: deque[_Item] = deque()
        self._accepted = 0  # events accepted so far
        self._finished = 0  # events whose handlers have all run
        self._calling: Subscriber | None = None  # whose handler the thread is in
        self._closed = False

    def start(self, dispatcher: Dispatcher) -> None:
        """Keep the dispatcher and start the thread (it holds the strategy, never the bus)."""
        self._dispatcher = dispatcher
        self._thread = threading.Thread(target=self._run, name=f"{dispatcher.name}-background", daemon=True)
        self._thread.start()

    def submit(
        self, event: object, handlers: tuple[Subscription, ...], delivery: Delivery | None, timeout: float | None
    ) -> None:
        """Queue the event, waiting for room; a handler posting from the thread never waits."""
        assert self._dispatcher is not None, "start() was not called"
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                if self._closed:
                    raise BusClosedError("the bus was shut down; the event was not accepted")
                if len(self._queue) < self.max_queued or self._on_thread():
                    break
                remaining = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
                if remaining <= 0:
                    raise QueueFullError(f"{self.max_queued} events wait; the event was not accepted")
                self._changed.wait(remaining)
            # The accepted point: the count and the append, with no call in between.
            self._accepted += 1
            self._queue.append((event, handlers, delivery))
            self._changed.notify_all()
        self._dispatcher.count_accepted()

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until the thread is out of the subscriber's handler (unless called from it)."""
        if self._on_thread():
            return
        with self._changed:
            while self._calling is subscriber:
                self._changed.wait(0.1)

    def join(self, timeout: float | None) -> bool:
        """Wait for the events accepted before the call; `False` on timeout."""
        if self._on_thread():
            raise RuntimeError("join() from a handler would wait for itself; use publish() and a done-callback")
        with self._changed:
            target = self._accepted
            return self._changed.wait_for(lambda: self._finished >= target, timeout)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Refuse new events, let the thread finish the queue, and let it end."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if not wait or self._on_thread():
            return self.counts() == (0, 0)
        done = self.join(timeout)
        if done and self._thread is not None:
            self._thread.join(timeout)
        return done

    def counts(self) -> tuple[int, int]:
        """Return (events waiting, events being delivered)."""
        with self._changed:
            waiting = len(self._queue)
            return waiting, self._accepted - self._finished - waiting

    def _on_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def _run(self) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        while True:
            with self._changed:
                while not self._queue:
                    if self._closed:
                        return  # everything accepted was delivered
                    self._changed.wait(0.5)
                event, handlers, delivery = self._queue.popleft()
                self._changed.notify_all()  # room for a waiting poster
            for index, handler in enumerate(handlers):
                with self._changed:
                    self._calling = handler.owner
                    self._changed.notify_all()
                dispatcher.call(handler, event, delivery, index)  # errors, counts, the Delivery
            with self._changed:
                self._calling = None
                self._finished += 1
                self._changed.notify_all()


# --8<-- [end:strategy]


class Frame(Event, topic="ui.frame"):
    """A frame to draw."""

    n: int


class Renderer:
    """Draws frames; never called on two threads at once, so it keeps plain lists."""

    def __init__(self) -> None:
        self.drawn: list[int] = []
        self.threads: set[str] = set()

    @subscribe
    def draw(self, event: Frame) -> int:
        self.drawn.append(event.n)
        self.threads.add(threading.current_thread().name)
        return event.n * 10


def main() -> None:
    renderer = Renderer()
    with EventBus(strategy=OneBackgroundThread(), name="ui") as bus:
        bus.register(renderer)
        posters = [
            threading.Thread(target=lambda k=k: [bus.post(Frame(n=k * 100 + i)) for i in range(100)]) for k in range(3)
        ]
        for poster in posters:
            poster.start()
        for poster in posters:
            poster.join()
        print("publish().result():", bus.publish(Frame(n=-1)).result(timeout=10))
        print("joined:", bus.join(timeout=10))
        stats = bus.stats()
        print(f"stats: posted={stats.posted} delivered={stats.delivered} failed={stats.failed}")
    print("handler threads:", sorted(renderer.threads))
    in_order = all(
        [n for n in renderer.drawn if n // 100 == k] == list(range(k * 100, k * 100 + 100)) for k in range(3)
    )
    print("each poster's frames drawn in order:", in_order)


if __name__ == "__main__":
    main()
