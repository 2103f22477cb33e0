"""The engines the contract suite runs on, each behind one `Harness`.

Redis and NATS tests run on `redis-server` and `nats-server -js` subprocesses
that these fixtures start on free 127.0.0.1 ports in temporary directories, and
stop afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from eventbus import EventBus
from eventbus.bridges import Engine  # noqa: TC001 - annotations of the harness API
from eventbus.testing import InMemoryEngine

from .servers import NatsServer, RedisServer, nats_available, redis_available

ENGINES: list[str] = ["memory", "redis", "nats"]
"""The engines every contract test runs on."""

_namespaces = itertools.count(1)


class Harness:
    """What a contract test needs from an engine, beyond the bridge itself."""

    name = "?"
    processes = False
    """Whether consumers can run in other processes (a real server)."""

    def __init__(self) -> None:
        self.namespace = f"t{os.getpid()}n{next(_namespaces)}"

    def engine(self) -> Engine:
        raise NotImplementedError

    def pending(self, group: str, namespace: str | None = None) -> int:
        """Messages of *group* read and not acknowledged."""
        raise NotImplementedError

    def stored(self, namespace: str | None = None) -> int:
        """Messages in the namespace's partitions."""
        raise NotImplementedError

    def add_raw(self, partition: int, payload: bytes) -> None:
        """Write *payload* straight into a partition."""
        raise NotImplementedError

    def outage(self) -> None:
        """Make the engine unreachable (a crash)."""
        raise NotImplementedError

    def restore(self, keep_data: bool) -> None:
        """Bring the engine back, with or without what it stored."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the harness holds."""


class MemoryHarness(Harness):
    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._engine = InMemoryEngine()

    def engine(self) -> Engine:
        return self._engine

    def pending(self, group: str, namespace: str | None = None) -> int:
        return self._engine.pending(namespace or self.namespace, group)

    def stored(self, namespace: str | None = None) -> int:
        return self._engine.stored(namespace or self.namespace)

    def add_raw(self, partition: int, payload: bytes) -> None:
        self._engine.add_raw(self.namespace, partition, payload)

    def outage(self) -> None:
        self._engine.go_offline()

    def restore(self, keep_data: bool) -> None:
        self._engine.go_online(keep_data)


class RedisHarness(Harness):
    name = "redis"
    processes = True

    def __init__(self, server: RedisServer) -> None:
        super().__init__()
        import redis

        self.server = server
        self.client = redis.Redis.from_url(server.url, protocol=2, socket_timeout=10)

    @property
    def url(self) -> str:
        return self.server.url

    def engine(self) -> Engine:
        from eventbus.bridges import RedisStreams

        return RedisStreams(self.server.url)

    def _streams(self, namespace: str | None) -> list[str]:
        pattern = f"{namespace or self.namespace}:stream:*"
        return sorted(key.decode() for key in self.client.scan_iter(match=pattern, count=1000))

    def pending(self, group: str, namespace: str | None = None) -> int:
        total = 0
        for stream in self._streams(namespace):
            summary: Any = self.client.xpending(stream, group)
            total += int(summary["pending"])
        return total

    def stored(self, namespace: str | None = None) -> int:
        return sum(int(self.client.xlen(stream)) for stream in self._streams(namespace))

    def add_raw(self, partition: int, payload: bytes) -> None:
        self.client.xadd(f"{self.namespace}:stream:{partition}", {"ce": payload})

    def outage(self) -> None:
        self.server.kill()

    def restore(self, keep_data: bool) -> None:
        if not keep_data:
            self.server.wipe()
        self.server.start()
        self.client.connection_pool.disconnect()

    def close(self) -> None:
        self.client.close()


class NatsHarness(Harness):
    name = "nats"
    processes = True

    def __init__(self, server: NatsServer) -> None:
        super().__init__()
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nats-harness", daemon=True)
        self._thread.start()
        self._nc: Any = None

    @property
    def url(self) -> str:
        return self.server.url

    def engine(self) -> Engine:
        from eventbus.bridges import NatsJetStream

        return NatsJetStream(self.server.url)

    def _run(self, make: Callable[[Any], Awaitable[Any]]) -> Any:
        """Run ``make(jetstream)`` on the harness's loop, with a connection made on first use (and after a restart)."""
        import nats

        async def run() -> Any:
            if self._nc is None or self._nc.is_closed:
                self._nc = await nats.connect(self.server.url, allow_reconnect=False, connect_timeout=2)
            try:
                return await make(self._nc.jetstream())
            except Exception:
                await self._nc.close()
                self._nc = None
                raise

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(20)

    def pending(self, group: str, namespace: str | None = None) -> int:
        from nats.js.errors import NotFoundError

        from eventbus.bridges._nats import durable_names, stream_names

        stream = stream_names(namespace or self.namespace)[0]
        names = set(durable_names(group, 64))

        async def count(js: Any) -> int:
            try:
                consumers = await js.consumers_info(stream)
            except NotFoundError:
                return 0
            return sum(c.num_ack_pending for c in consumers if c.name in names)

        total: int = self._run(count)
        return total

    def stored(self, namespace: str | None = None) -> int:
        from nats.js.errors import NotFoundError

        from eventbus.bridges._nats import stream_names

        stream = stream_names(namespace or self.namespace)[0]

        async def count(js: Any) -> int:
            try:
                info = await js.stream_info(stream)
            except NotFoundError:
                return 0
            return int(info.state.messages)

        total: int = self._run(count)
        return total

    def add_raw(self, partition: int, payload: bytes) -> None:
        subject = f"{self.namespace}.{partition}.raw"
        self._run(lambda js: js.publish(subject, payload))

    def outage(self) -> None:
        self.server.kill()

    def restore(self, keep_data: bool) -> None:
        if not keep_data:
            self.server.wipe()
        self.server.start()

    def close(self) -> None:
        async def disconnect() -> None:
            if self._nc is not None:
                await self._nc.close()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(disconnect(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


def _need_nats() -> None:
    if not nats_available():
        pytest.fail(
            "nats-server is not installed: the bridge tests need Debian's nats-server "
            "(bash scripts/check.sh installs it as root: apt-get install nats-server)"
        )


def _need_redis() -> None:
    if not redis_available():
        pytest.fail(
            "redis-server is not installed: the bridge tests need Debian's redis-server "
            "(bash scripts/check.sh installs it as root: apt-get install redis-server)"
        )


@pytest.fixture(autouse=True)
def _no_bridge_threads_left() -> Iterator[None]:
    """After each test, wait (bounded) until its bridges' threads have ended, then collect garbage.

    A bridge's threads hold the bridge, and through it the test's subscribers and
    their classes; letting them go on a background thread while a later test
    checks what the garbage collector frees would make that test flaky.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # the test's threads (bridges, bus workers, timers) have ended
        if not [t for t in threading.enumerate() if t not in before and t.is_alive()]:
            break
        time.sleep(0.01)
    gc.collect()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the tests that do not restart it (each test has its own namespace)."""
    _need_redis()
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One nats-server -js for the tests that do not restart it (each test has its own namespace)."""
    _need_nats()
    server = NatsServer(tmp_path_factory.mktemp("nats"))
    server.start()
    yield server
    server.stop()


def _make_harness(name: str, request: pytest.FixtureRequest, *, own_server: bool, tmp: Path) -> Harness:
    if name == "memory":
        return MemoryHarness()
    if name == "redis":
        _need_redis()
        if own_server:
            server = RedisServer(tmp, persistent=True)
            server.start()
            request.addfinalizer(server.stop)
        else:
            server = request.getfixturevalue("redis_server")
        return RedisHarness(server)
    if name == "nats":
        _need_nats()
        if own_server:
            nats = NatsServer(tmp)
            nats.start()
            request.addfinalizer(nats.stop)
        else:
            nats = request.getfixturevalue("nats_server")
        return NatsHarness(nats)
    raise ValueError(name)


@pytest.fixture(params=ENGINES)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The engine under test, on a shared server and a namespace of its own."""
    made = _make_harness(request.param, request, own_server=False, tmp=tmp_path)
    yield made
    made.close()


@pytest.fixture(params=ENGINES)
def own_harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    """The engine under test on a server of its own (persistent), which the test may kill and restart."""
    made = _make_harness(request.param, request, own_server=True, tmp=tmp_path)
    yield made
    made.close()


@pytest.fixture
def redis(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[RedisHarness]:
    """A Redis harness on the shared server."""
    made = _make_harness("redis", request, own_server=False, tmp=tmp_path)
    assert isinstance(made, RedisHarness)
    yield made
    made.close()


@pytest.fixture
def nats(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[NatsHarness]:
    """A NATS harness on the shared server."""
    made = _make_harness("nats", request, own_server=False, tmp=tmp_path)
    assert isinstance(made, NatsHarness)
    yield made
    made.close()


@pytest.fixture
def own_nats(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[NatsHarness]:
    """A NATS harness on a server of its own, which the test may kill and restart."""
    made = _make_harness("nats", request, own_server=True, tmp=tmp_path)
    assert isinstance(made, NatsHarness)
    yield made
    made.close()


@pytest.fixture
def buses() -> Iterator[Callable[..., EventBus]]:
    """A factory of buses that are all shut down (bridges first) after the test."""
    made: list[EventBus] = []

    def make(strategy: str = "concurrent", **options: Any) -> EventBus:
        bus = EventBus(strategy=strategy, **options)  # type: ignore[arg-type]  # a parametrized Literal
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.shutdown(timeout=20)
