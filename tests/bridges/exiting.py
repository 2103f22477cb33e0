"""A process that ends without ``shutdown()``: ``python exiting.py URL NAMESPACE COUNT send|receive``.

``send``: it bridges `Sent` (send only), prints ``ready``, waits for a line on
stdin, posts COUNT events, prints ``posted`` and returns. ``receive``: it bridges
`Sent` with group ``g``, prints ``ready``, and returns as soon as its handler has
seen COUNT events, before their acknowledgements can have gone out. Either way,
what its bridge still has to store or acknowledge is left to the bridges' close at
interpreter exit.
"""

from __future__ import annotations

import sys
import threading

from eventbus import Event, EventBus, subscribe


class Sent(Event, topic="tests.bridges.sent", order_by="key"):
    key: int
    n: int


def main() -> None:
    from eventbus.bridges import NatsJetStream, RedisStreams

    url, namespace, count, mode = sys.argv[1:5]
    total = int(count)
    bus = EventBus(strategy="sync", name="exiting")
    engine = NatsJetStream(url) if url.startswith("nats://") else RedisStreams(url)
    if mode == "receive":
        seen: set[int] = set()
        done = threading.Event()

        @subscribe(Sent)
        def on_sent(event: Sent) -> None:
            seen.add(event.n)
            if len(seen) == total:
                done.set()

        bus.register(on_sent)
        bus.bridge(engine, events=[Sent], group="g", namespace=namespace, partitions=2)
        print("ready", flush=True)
        if done.wait(60):
            print("handled", flush=True)
        return
    bus.bridge(engine, events=[Sent], namespace=namespace, partitions=2)
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(total):
        bus.post(Sent(key=n % 16, n=n))
    print("posted", flush=True)


if __name__ == "__main__":
    main()
