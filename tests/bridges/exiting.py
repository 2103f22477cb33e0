"""A sender that ends without ``shutdown()``: ``python exiting.py URL NAMESPACE COUNT``.

It bridges `Sent` (send only), prints ``ready``, waits for a line on stdin, posts
COUNT events, prints ``posted`` and returns: whatever its bridge stores from then
on is stored by the bridges' close at interpreter exit.
"""

from __future__ import annotations

import sys

from eventbus import Event, EventBus


class Sent(Event, topic="tests.bridges.sent", order_by="key"):
    key: int
    n: int


def main() -> None:
    from eventbus.bridges import NatsJetStream, RedisStreams

    url, namespace, count = sys.argv[1:4]
    bus = EventBus(strategy="sync", name="exiting")
    engine = NatsJetStream(url) if url.startswith("nats://") else RedisStreams(url)
    bus.bridge(engine, events=[Sent], namespace=namespace, partitions=2)
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(int(count)):
        bus.post(Sent(key=n % 16, n=n))
    print("posted", flush=True)


if __name__ == "__main__":
    main()
