"""A consumer process for the bridge tests: ``python worker.py URL NAMESPACE GROUP PARTITIONS CLAIM_AFTER DELAY OUT``.

Each handled event appends ``key n pid start_ns`` to OUT (one ``write`` per line,
``O_APPEND``, so lines of several processes never interleave), then sleeps DELAY
seconds. It prints ``ready`` once its bridge runs, and shuts down on SIGTERM.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

from eventbus import Event, EventBus, subscribe


class Tick(Event, topic="tests.bridges.tick", order_by="key"):
    key: int
    n: int


def main() -> None:
    from eventbus.bridges import NatsJetStream, RedisStreams

    url, namespace, group, partitions, claim_after, delay, out = sys.argv[1:8]
    pause = float(delay)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    pid = os.getpid()

    class Worker:
        @subscribe
        def on_tick(self, event: Tick) -> None:
            os.write(fd, f"{event.key} {event.n} {pid} {time.time_ns()}\n".encode())
            if pause:
                time.sleep(pause)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    bus = EventBus(strategy="ordered", workers=8, name=f"worker-{pid}")
    bus.register(Worker())
    bus.bridge(
        NatsJetStream(url) if url.startswith("nats://") else RedisStreams(url),
        events=[Tick],
        group=group,
        namespace=namespace,
        partitions=int(partitions),
        claim_after=float(claim_after),
    )
    print("ready", flush=True)
    stop.wait(300)
    bus.shutdown(timeout=30)
    os.close(fd)


if __name__ == "__main__":
    main()
