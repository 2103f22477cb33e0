"""End-to-end throughput and idle latency through one local redis-server or nats-server (issues 12, 13).

Usage, from the repository root::

    .venv/bin/pip install -e '.[bench]'          # redis-py, nats-py, faststream[redis,nats]
    .venv/bin/python -m benchmarks.bridges        # about five minutes
    .venv/bin/python -m benchmarks.bridges --engine nats   # the NATS subjects only
    .venv/bin/python -m benchmarks.bridges --events 5000 --samples 100   # a quick look

It starts its own ``redis-server`` (Debian's package) on a free 127.0.0.1 port
with persistence off (also the channel the consumers report on), and for the
NATS subjects a ``nats-server -js`` with its store in a temporary directory, and
runs, for each subject, one producer process and 1 or 3 consumer processes (all
fresh Python processes), then an idle-latency run (one event every 5 ms, one
consumer). Subjects on Redis:

- **eventbus**: ``bus.bridge(RedisStreams(...))``, a send-only bridge in the
  producer (sync strategy), ``group=`` bridges in the consumers (sync strategy,
  ``partitions=6``); the handler takes a typed ``Order`` event.
- **faststream**: FastStream's Redis Streams subscriber (``StreamSub`` with a
  consumer group, ``max_records=100``) with the same payload as a pydantic model;
  the producer awaits ``broker.publish(..., stream=...)`` 50 at a time with
  ``asyncio.gather``.
- **redis-py floor**: pipelined ``XADD`` in batches of 500; consumers
  ``XREADGROUP COUNT 500`` and ``XACK`` each batch, ``json.loads`` each payload.

Subjects on NATS JetStream (one stream each, file storage):

- **eventbus (nats)**: the same bridges on ``NatsJetStream(...)``; the events are
  unkeyed, so they go through the group's ``u`` consumer (many in flight).
- **faststream (nats)**: FastStream's JetStream pull subscriber (``PullSub``,
  ``batch_size=100``, durable consumer shared by the consumer processes); the
  producer awaits ``broker.publish(..., stream=...)`` 50 at a time with ``asyncio.gather``.
- **nats-py floor**: ``publish_async`` in batches of 500 (then waits for the
  acks); consumers ``fetch(500)`` on one durable pull consumer, ``json.loads``
  and ``ack()`` each message.

Throughput is events / (last event handled - first post). Consumers publish
their counters to the server every 20 ms from a side thread; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

GROUP = "bench"
PARTITIONS = 6
STREAM = "bench-stream"  # faststream and the floor: one stream, one group
NATS_STREAMS = {"faststream (nats)": "BENCH_FS", "nats-py floor": "BENCH_FLOOR"}  # subject "<stream>.order"


def _payload(i: int) -> dict[str, Any]:
    return {"order_id": i, "amount": 19.99, "customer": "customer-0042", "sent_ns": time.time_ns()}


# -- consumers (each in its own process) -------------------------------------------------------


class _Reporter:
    """Publishes this consumer's count, last-handled time and latencies to the server."""

    def __init__(self, url: str, name: str) -> None:
        import redis

        self.client = redis.Redis.from_url(os.environ.get("BENCH_REPORT_URL", url))
        self.name = name
        self.count = 0
        self.last_ns = 0
        self.latencies: list[int] = []
        self.stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def seen(self, sent_ns: int) -> None:
        now = time.time_ns()
        self.count += 1
        self.last_ns = now
        self.latencies.append(now - sent_ns)

    def _loop(self) -> None:
        while not self.stop.wait(0.02):
            self.flush()

    def flush(self) -> None:
        self.client.hset(f"report:{self.name}", mapping={"count": self.count, "last_ns": self.last_ns})

    def finish(self) -> None:
        self.stop.set()
        self.flush()
        if self.latencies:
            self.client.rpush(f"latency:{self.name}", *self.latencies[-5000:])


def consume_eventbus(url: str, name: str) -> None:
    from eventbus import Event, EventBus, subscribe
    from eventbus.bridges import RedisStreams

    class Order(Event, topic="bench.order"):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    reporter = _Reporter(url, name)

    class Handler:
        @subscribe(Order)
        def on(self, event: Order) -> None:
            reporter.seen(event.sent_ns)

    bus = EventBus(strategy="sync")
    bus.register(Handler())
    bus.bridge(RedisStreams(url), events=[Order], group=GROUP, namespace="bench", partitions=PARTITIONS)
    print("ready", flush=True)
    sys.stdin.readline()
    bus.shutdown(timeout=10)
    reporter.finish()


def consume_faststream(url: str, name: str) -> None:
    from faststream.redis import RedisBroker, StreamSub
    from pydantic import BaseModel

    class Order(BaseModel):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    reporter = _Reporter(url, name)
    broker = RedisBroker(url, logger=None)

    @broker.subscriber(stream=StreamSub(STREAM, group=GROUP, consumer=name, max_records=100))
    async def handle(order: Order) -> None:
        reporter.seen(order.sent_ns)

    async def main() -> None:
        async with broker:
            await broker.start()
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

    asyncio.run(main())
    reporter.finish()


def consume_floor(url: str, name: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    with contextlib.suppress(redis.ResponseError):
        client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    reporter = _Reporter(url, name)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            reply: Any = client.xreadgroup(GROUP, name, {STREAM: ">"}, count=500, block=200)
            for _, entries in reply or ():
                ids = []
                for entry_id, fields in entries:
                    reporter.seen(json.loads(fields[b"data"])["sent_ns"])
                    ids.append(entry_id)
                client.xack(STREAM, GROUP, *ids)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    print("ready", flush=True)
    sys.stdin.readline()
    stop.set()
    thread.join(5)
    reporter.finish()


def consume_eventbus_nats(url: str, name: str) -> None:
    from eventbus import Event, EventBus, subscribe
    from eventbus.bridges import NatsJetStream

    class Order(Event, topic="bench.order"):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    reporter = _Reporter(url, name)

    class Handler:
        @subscribe(Order)
        def on(self, event: Order) -> None:
            reporter.seen(event.sent_ns)

    bus = EventBus(strategy="sync")
    bus.register(Handler())
    bus.bridge(NatsJetStream(url), events=[Order], group=GROUP, namespace="bench", partitions=PARTITIONS)
    print("ready", flush=True)
    sys.stdin.readline()
    bus.shutdown(timeout=10)
    reporter.finish()


def consume_faststream_nats(url: str, name: str) -> None:
    from faststream.nats import JStream, NatsBroker, PullSub
    from pydantic import BaseModel

    class Order(BaseModel):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    stream = NATS_STREAMS["faststream (nats)"]
    reporter = _Reporter(url, name)
    broker = NatsBroker(url, logger=None)

    @broker.subscriber(
        f"{stream}.order",
        stream=JStream(stream, subjects=[f"{stream}.order"]),
        durable=GROUP,
        pull_sub=PullSub(batch_size=100, timeout=1.0),
    )
    async def handle(order: Order) -> None:
        reporter.seen(order.sent_ns)

    async def main() -> None:
        async with broker:
            await broker.start()
            print("ready", flush=True)
            await asyncio.to_thread(sys.stdin.readline)

    asyncio.run(main())
    reporter.finish()


def consume_nats_floor(url: str, name: str) -> None:
    import nats
    import nats.errors
    import nats.js.errors

    stream = NATS_STREAMS["nats-py floor"]
    reporter = _Reporter(url, name)

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        with contextlib.suppress(nats.js.errors.BadRequestError):
            await js.add_stream(name=stream, subjects=[f"{stream}.order"])
        psub = await js.pull_subscribe(f"{stream}.order", durable=GROUP, stream=stream)
        print("ready", flush=True)
        stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.readline))
        while not stop.done():
            try:
                msgs = await psub.fetch(500, timeout=0.2)
            except (TimeoutError, nats.errors.TimeoutError):  # an empty pull
                continue
            for msg in msgs:
                reporter.seen(json.loads(msg.data)["sent_ns"])
                await msg.ack()
        await nc.close()

    asyncio.run(main())
    reporter.finish()


# -- producers ---------------------------------------------------------------------------------------


def produce_eventbus(url: str, count: int, gap: float) -> None:
    from eventbus import Event, EventBus
    from eventbus.bridges import RedisStreams

    class Order(Event, topic="bench.order"):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    with EventBus(strategy="sync") as bus:
        bus.bridge(RedisStreams(url), events=[Order], namespace="bench", partitions=PARTITIONS)
        for i in range(count):
            bus.post(Order(**_payload(i)))
            if gap:
                time.sleep(gap)


def produce_faststream(url: str, count: int, gap: float) -> None:
    from faststream.redis import RedisBroker

    async def main() -> None:
        async with RedisBroker(url, logger=None) as broker:
            if gap:
                for i in range(count):
                    await broker.publish(_payload(i), stream=STREAM)
                    await asyncio.sleep(gap)
                return
            for start in range(0, count, 50):  # its connection pool allows so many at once
                await asyncio.gather(
                    *(broker.publish(_payload(i), stream=STREAM) for i in range(start, min(count, start + 50)))
                )

    asyncio.run(main())


def produce_floor(url: str, count: int, gap: float) -> None:
    import redis

    client = redis.Redis.from_url(url)
    if gap:
        for i in range(count):
            client.xadd(STREAM, {"data": json.dumps(_payload(i))})
            time.sleep(gap)
        return
    for start in range(0, count, 500):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(count, start + 500)):
            pipe.xadd(STREAM, {"data": json.dumps(_payload(i))})
        pipe.execute()


def produce_eventbus_nats(url: str, count: int, gap: float) -> None:
    from eventbus import Event, EventBus
    from eventbus.bridges import NatsJetStream

    class Order(Event, topic="bench.order"):
        order_id: int
        amount: float
        customer: str
        sent_ns: int

    with EventBus(strategy="sync") as bus:
        bus.bridge(NatsJetStream(url), events=[Order], namespace="bench", partitions=PARTITIONS)
        for i in range(count):
            bus.post(Order(**_payload(i)))
            if gap:
                time.sleep(gap)


def produce_faststream_nats(url: str, count: int, gap: float) -> None:
    from faststream.nats import NatsBroker

    stream = NATS_STREAMS["faststream (nats)"]
    subject = f"{stream}.order"

    async def main() -> None:
        async with NatsBroker(url, logger=None) as broker:
            if gap:
                for i in range(count):
                    await broker.publish(_payload(i), subject=subject, stream=stream)
                    await asyncio.sleep(gap)
                return
            for start in range(0, count, 50):
                await asyncio.gather(
                    *(
                        broker.publish(_payload(i), subject=subject, stream=stream)
                        for i in range(start, min(count, start + 50))
                    )
                )

    asyncio.run(main())


def produce_nats_floor(url: str, count: int, gap: float) -> None:
    import nats

    subject = f"{NATS_STREAMS['nats-py floor']}.order"

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        if gap:
            for i in range(count):
                await js.publish(subject, json.dumps(_payload(i)).encode())
                await asyncio.sleep(gap)
        else:
            for start in range(0, count, 500):
                futures = [
                    await js.publish_async(subject, json.dumps(_payload(i)).encode())
                    for i in range(start, min(count, start + 500))
                ]
                await asyncio.gather(*futures)
        await nc.close()

    asyncio.run(main())


CONSUMERS = {
    "eventbus": consume_eventbus,
    "faststream": consume_faststream,
    "redis-py floor": consume_floor,
    "eventbus (nats)": consume_eventbus_nats,
    "faststream (nats)": consume_faststream_nats,
    "nats-py floor": consume_nats_floor,
}
PRODUCERS = {
    "eventbus": produce_eventbus,
    "faststream": produce_faststream,
    "redis-py floor": produce_floor,
    "eventbus (nats)": produce_eventbus_nats,
    "faststream (nats)": produce_faststream_nats,
    "nats-py floor": produce_nats_floor,
}
NATS_SUBJECTS = ("eventbus (nats)", "faststream (nats)", "nats-py floor")


# -- the orchestrator --------------------------------------------------------------------------------


def _start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory]
    server = subprocess.Popen([*args, "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return server, f"redis://127.0.0.1:{port}/0"


def _start_nats(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    args = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", os.path.join(directory, "jetstream")]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return server, f"nats://127.0.0.1:{port}"


def _reset_nats(url: str) -> None:
    """Delete every stream, so that each run starts empty."""
    import nats

    async def main() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for info in await js.streams_info():
            await js.delete_stream(info.config.name)
        await nc.close()

    asyncio.run(main())


def _spawn(*args: str, report_url: str = "") -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    if report_url:
        env["BENCH_REPORT_URL"] = report_url
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bridges", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def run_case(
    url: str, subject: str, consumers: int, count: int, gap: float, timeout: float, engine_url: str | None = None
) -> dict[str, Any]:
    """One run; *url* is the redis-server the consumers report to, *engine_url* the engine (default: *url*)."""
    import redis

    client = redis.Redis.from_url(url)
    client.flushall()
    engine = engine_url or url
    if engine.startswith("nats://"):
        _reset_nats(engine)
    names = [f"c{i}" for i in range(consumers)]
    procs = [_spawn("--consume", subject, engine, name, report_url=url) for name in names]
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", f"{subject} consumer said {line!r}"
        if consumers > 1:
            time.sleep(2.0)  # let the consumers share the partitions out (eventbus rebalances every 0.5 s)
        start_ns = time.time_ns()
        producer = _spawn("--produce", subject, engine, str(count), str(gap), report_url=url)
        deadline = time.monotonic() + timeout
        total = 0
        while time.monotonic() < deadline:
            reports = [client.hgetall(f"report:{name}") for name in names]
            total = sum(int(r.get(b"count", 0)) for r in reports)
            if total >= count:
                break
            time.sleep(0.02)
        producer.wait(timeout)
        reports = [client.hgetall(f"report:{name}") for name in names]
        last_ns = max(int(r.get(b"last_ns", 0)) for r in reports)
    finally:
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("\n")
            proc.stdin.flush()
        for proc in procs:
            proc.wait(30)
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
    latencies = sorted(int(x) for name in names for x in client.lrange(f"latency:{name}", 0, -1))
    client.close()
    seconds = (last_ns - start_ns) / 1e9
    result: dict[str, Any] = {"subject": subject, "consumers": consumers, "events": count, "handled": total}
    if gap:
        result["p50_ms"] = statistics.median(latencies) / 1e6 if latencies else float("nan")
        result["p99_ms"] = latencies[int(len(latencies) * 0.99) - 1] / 1e6 if latencies else float("nan")
    else:
        result["events_per_s"] = count / seconds if seconds > 0 else float("nan")
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bridges", description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=30_000, help="events per throughput run")
    parser.add_argument("--samples", type=int, default=400, help="events of the idle-latency run (one per 5 ms)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per figure; the median is reported")
    parser.add_argument("--only", action="append", choices=list(CONSUMERS), help="run one subject (repeatable)")
    parser.add_argument("--engine", choices=["redis", "nats"], help="run the subjects of one engine")
    parser.add_argument("--consume", nargs=3, metavar=("SUBJECT", "URL", "NAME"), help=argparse.SUPPRESS)
    parser.add_argument("--produce", nargs=4, metavar=("SUBJECT", "URL", "COUNT", "GAP"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.consume:
        subject, url, name = args.consume
        CONSUMERS[subject](url, name)
        return
    if args.produce:
        subject, url, count, gap = args.produce
        PRODUCERS[subject](url, int(count), float(gap))
        return
    subjects = args.only or [
        s for s in CONSUMERS if args.engine is None or (s in NATS_SUBJECTS) == (args.engine == "nats")
    ]
    # Rounds interleave the subjects (round 1 of each, round 2 of each, ...) and the
    # median is reported, so that load from elsewhere on a shared machine hits all alike.
    samples: dict[str, dict[str, list[float]]] = {s: {"tp1": [], "tp3": [], "p50": [], "p99": []} for s in subjects}
    with tempfile.TemporaryDirectory() as directory:
        server, url = _start_redis(directory)
        nats_server, nats_url = _start_nats(directory) if any(s in NATS_SUBJECTS for s in subjects) else (None, "")
        try:
            for round_number in range(1, args.rounds + 1):
                for subject in subjects:
                    got = samples[subject]
                    engine_url = nats_url if subject in NATS_SUBJECTS else url
                    for consumers in (1, 3):
                        result = run_case(url, subject, consumers, args.events, 0.0, 300, engine_url)
                        got[f"tp{consumers}"].append(result["events_per_s"])
                        rate = result["events_per_s"]
                        print(f"round {round_number} {subject:>15}: {consumers} consumer(s) {rate:>9,.0f} events/s")
                    result = run_case(url, subject, 1, args.samples, 0.005, 120, engine_url)
                    got["p50"].append(result["p50_ms"])
                    got["p99"].append(result["p99_ms"])
                    print(
                        f"round {round_number} {subject:>15}: idle latency p50 {result['p50_ms']:.2f} ms, "
                        f"p99 {result['p99_ms']:.2f} ms",
                        flush=True,
                    )
        finally:
            for process in (server, nats_server):
                if process is not None:
                    process.terminate()
                    process.wait(10)
    rows = {
        subject: {key: statistics.median(values) for key, values in got.items()} for subject, got in samples.items()
    }
    print(
        f"\nmedians of {args.rounds} rounds, {args.events:,} events per throughput run, load average at the end "
        f"{os.getloadavg()[0]:.1f}"
    )
    print("| subject | 1 consumer (events/s) | 3 consumers (events/s) | idle p50 | idle p99 |")
    print("|---|---:|---:|---:|---:|")
    for subject, row in rows.items():
        print(f"| {subject} | {row['tp1']:,.0f} | {row['tp3']:,.0f} | {row['p50']:.2f} ms | {row['p99']:.2f} ms |")
    for ours, floor, faststream in (
        ("eventbus", "redis-py floor", "faststream"),
        ("eventbus (nats)", "nats-py floor", "faststream (nats)"),
    ):
        if ours not in rows:
            continue
        eb = rows[ours]
        for other, target in ((floor, 0.5), (faststream, 3.0)):
            if other in rows:
                for n in (1, 3):
                    ratio = eb[f"tp{n}"] / rows[other][f"tp{n}"]
                    print(f"{ours} / {other}, {n} consumer(s): {ratio:.2f}x (target >= {target}x)")
        print(f"{ours} idle p99: {eb['p99']:.2f} ms (target < 5 ms)")


if __name__ == "__main__":
    main()
