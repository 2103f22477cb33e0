"""Scaling out on NATS JetStream: one producer, three worker processes, one of them killed midway.

The same program as ``08_scale_out_redis.py`` with one constructor changed:
``NatsJetStream(url)`` instead of ``RedisStreams(url)``. The producer posts
numbered deposits for eight accounts; three worker processes consume them as the
group ``ledger``. ``order_by="account"`` keeps each account's deposits in order
across the workers: on NATS each partition is a consumer that hands out one
event at a time to whichever worker pulls. Halfway through, one worker is killed
with SIGKILL: the deposit it held goes to another worker after ``claim_after``
seconds. Delivery is at least once, so the ledger is idempotent: it is a set of
``(account, deposit)`` lines, and the totals are checked exactly at the end.

Run it with ``NATS_URL=nats://host:4222``, or without to start a throwaway
``nats-server -js`` (Debian's package) on a free port of 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from eventbus import Event, EventBus, subscribe
from eventbus.bridges import NatsJetStream

ACCOUNTS = [f"acct-{i}" for i in range(8)]
DEPOSITS = 300  # per account, numbered 1..300; deposit n is worth n coins
NAMESPACE = "example-bank"
CLAIM_AFTER = 1.0  # seconds before a dead worker's deposit passes on (30 s by default)


class Deposit(Event, topic="bank.deposit", order_by="account"):
    account: str
    seq: int


def worker(url: str, ledger: str) -> None:
    """One worker process: append each deposit to the shared ledger file until told to stop."""
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    class Ledger:
        @subscribe
        def apply(self, deposit: Deposit) -> None:
            os.write(fd, f"{deposit.account} {deposit.seq}\n".encode())  # one write: lines never interleave
            time.sleep(0.001)  # some work

    with EventBus(strategy="ordered", workers=4) as bus:
        bus.register(Ledger())
        bus.bridge(
            NatsJetStream(url),
            events=[Deposit],
            group="ledger",
            namespace=NAMESPACE,
            partitions=4,
            claim_after=CLAIM_AFTER,
        )
        print("ready", flush=True)
        sys.stdin.readline()  # until the producer says stop (or the process is killed)


def start_nats(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a throwaway nats-server with JetStream on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    args = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", directory]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return server, f"nats://127.0.0.1:{port}"


def forget_namespace(url: str) -> None:
    """Delete the example's streams from an earlier run."""
    import nats
    import nats.js.errors

    async def main() -> None:
        nc = await nats.connect(url)
        for stream in (f"eventbus-{NAMESPACE}", f"eventbus-{NAMESPACE}-dead"):
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await nc.jetstream().delete_stream(stream)
        await nc.close()

    asyncio.run(main())


def main() -> None:
    server = None
    with tempfile.TemporaryDirectory() as directory:
        url = os.environ.get("NATS_URL")
        if url is None:
            server, url = start_nats(directory)
            print("started a throwaway nats-server -js on 127.0.0.1")
        forget_namespace(url)
        ledger = Path(directory) / "ledger.txt"
        ledger.touch()
        command = [sys.executable, __file__, "--worker", url, str(ledger)]
        workers = [subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(3)]

        def lines() -> list[tuple[str, int]]:
            return [(a, int(n)) for a, n in (line.split() for line in ledger.read_text().splitlines())]

        try:
            for process in workers:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == b"ready"
            print(f"{len(workers)} workers ready")
            with EventBus(strategy="sync") as producer:
                producer.bridge(NatsJetStream(url), events=[Deposit], namespace=NAMESPACE, partitions=4)
                for seq in range(1, DEPOSITS + 1):
                    for account in ACCOUNTS:
                        producer.post(Deposit(account=account, seq=seq))
            total = len(ACCOUNTS) * DEPOSITS
            print(f"posted {total} deposits")  # shutdown() flushed them: all are stored

            deadline = time.monotonic() + 60
            while len(lines()) < total // 3 and time.monotonic() < deadline:
                time.sleep(0.05)
            workers[1].kill()
            workers[1].wait(10)
            print("killed worker 1 with SIGKILL midway")

            deadline = time.monotonic() + 120
            while len(set(lines())) < total and time.monotonic() < deadline:
                time.sleep(0.05)
            applied = set(lines())
            expected = DEPOSITS * (DEPOSITS + 1) // 2
            balances = {a: sum(n for account, n in applied if account == a) for a in ACCOUNTS}
            print(
                f"applied {len(applied)} of {total} deposits (redelivered and skipped: {len(lines()) - len(applied)})"
            )
            print(f"every balance is {expected}: {all(b == expected for b in balances.values())}")
            last: dict[str, int] = {}
            late = 0
            for account, n in lines():  # in the order written: a rewind repeats, never skips
                late += n > last.get(account, 0) + 1
                last[account] = max(n, last.get(account, 0))
            print(f"out of order: {late}")
        finally:
            for process in workers:
                if process.poll() is None and process.stdin is not None:
                    process.stdin.write(b"\n")
                    process.stdin.flush()
            for process in workers:
                process.wait(30)
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        stream.close()
            if server is not None:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2], sys.argv[3])
    else:
        main()
