"""Scaling out on Redis Streams: one producer, three worker processes, one of them killed midway.

The producer posts numbered deposits for eight accounts through a bridge; three
worker processes consume them as the group ``ledger``, each with its own bus and
the same ``@subscribe`` handler. ``order_by="account"`` keeps each account's
deposits in order across the workers (``partitions=4``: each partition is read
by one worker at a time). Halfway through, one worker is killed with SIGKILL:
its partitions and the deposits it had read but not acknowledged pass to the
others after ``claim_after`` seconds. Delivery is at least once, so the handler
is idempotent: it records each deposit's number once (``SADD``), and the totals
at the end are checked exactly against what was posted.

Run it with ``REDIS_URL=redis://host:port/0``, or without to start a throwaway
``redis-server`` (Debian's package) on a free port of 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from eventbus import Event, EventBus, subscribe
from eventbus.bridges import RedisStreams

ACCOUNTS = [f"acct-{i}" for i in range(8)]
DEPOSITS = 300  # per account, numbered 1..300; deposit n is worth n coins
NAMESPACE = "example-bank"
CLAIM_AFTER = 1.0  # seconds before a dead worker's partitions pass on (30 s by default)


class Deposit(Event, topic="bank.deposit", order_by="account"):
    account: str
    seq: int


def worker(url: str) -> None:
    """One worker process: apply deposits until told to stop (SIGTERM)."""
    import redis

    store = redis.Redis.from_url(url)

    class Ledger:
        @subscribe
        def apply(self, deposit: Deposit) -> None:
            last = int(store.hget(f"{NAMESPACE}:last", deposit.account) or 0)
            if deposit.seq <= last:  # delivered again after a worker died: already applied
                store.incr(f"{NAMESPACE}:duplicates")
                return
            if deposit.seq != last + 1:
                store.incr(f"{NAMESPACE}:out-of-order")
            store.sadd(f"{NAMESPACE}:applied:{deposit.account}", deposit.seq)
            store.hset(f"{NAMESPACE}:last", deposit.account, deposit.seq)
            time.sleep(0.001)  # some work

    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with EventBus(strategy="ordered", workers=4) as bus:
        bus.register(Ledger())
        bus.bridge(
            RedisStreams(url),
            events=[Deposit],
            group="ledger",
            namespace=NAMESPACE,
            partitions=4,
            claim_after=CLAIM_AFTER,
        )
        print("ready", flush=True)
        while not stop:
            time.sleep(0.05)


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start a throwaway redis-server on a free loopback port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [binary, "--bind", "127.0.0.1", "--port", str(port), "--dir", directory, "--save", "", "--logfile", ""]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.02)
    return server, f"redis://127.0.0.1:{port}/0"


def wait_for(condition: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.05)
    return False


def main() -> None:
    import redis

    server = None
    with tempfile.TemporaryDirectory() as directory:
        url = os.environ.get("REDIS_URL")
        if url is None:
            server, url = start_redis(directory)
            print("started a throwaway redis-server on 127.0.0.1")
        store = redis.Redis.from_url(url)
        for key in store.scan_iter(match=f"{NAMESPACE}:*"):
            store.delete(key)
        workers = [
            subprocess.Popen([sys.executable, __file__, "--worker", url], stdout=subprocess.PIPE) for _ in range(3)
        ]
        try:
            for process in workers:
                assert process.stdout is not None
                assert process.stdout.readline().strip() == b"ready"
            print(f"{len(workers)} workers ready")

            def applied() -> int:
                return sum(int(store.scard(f"{NAMESPACE}:applied:{a}")) for a in ACCOUNTS)

            with EventBus(strategy="sync") as producer:
                producer.bridge(RedisStreams(url), events=[Deposit], namespace=NAMESPACE, partitions=4)
                for seq in range(1, DEPOSITS + 1):
                    for account in ACCOUNTS:
                        producer.post(Deposit(account=account, seq=seq))
            total = len(ACCOUNTS) * DEPOSITS
            print(f"posted {total} deposits")  # shutdown() flushed them: all are stored

            wait_for(lambda: applied() >= total // 3, 60)
            victim = workers[1]
            victim.kill()
            victim.wait(10)
            print("killed worker 1 with SIGKILL midway")

            wait_for(lambda: applied() == total, 120)
            expected = DEPOSITS * (DEPOSITS + 1) // 2
            balances = {a: sum(int(s) for s in store.smembers(f"{NAMESPACE}:applied:{a}")) for a in ACCOUNTS}
            duplicates = int(store.get(f"{NAMESPACE}:duplicates") or 0)
            print(f"applied {applied()} of {total} deposits (redelivered and skipped: {duplicates})")
            print(f"every balance is {expected}: {all(b == expected for b in balances.values())}")
            print(f"out of order: {int(store.get(f'{NAMESPACE}:out-of-order') or 0)}")
        finally:
            for process in workers:
                if process.poll() is None:
                    process.terminate()
            for process in workers:
                process.wait(30)
                if process.stdout is not None:
                    process.stdout.close()
            store.close()
            if server is not None:
                server.terminate()
                server.wait(10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(sys.argv[2])
    else:
        main()
