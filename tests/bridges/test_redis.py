"""What is particular to Redis Streams: the broadcast groups that a dead process leaves behind.

The contract itself runs on Redis in test_contract.py. A broadcasting bridge has
a consumer group of its own on every partition stream, destroyed at ``close()``;
these tests check what happens to the groups of a process that never closed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventbus import Bridge, EventBus

from .conftest import RedisHarness  # noqa: TC001 - a fixture type, used at run time by nothing else
from .test_contract import Collect, Placed, wait_until

pytest.importorskip("redis")

from eventbus.bridges import RedisStreams
from eventbus.bridges._redis import _RedisSession

PARTITIONS = 2
IDLE = 1.0
"""The broadcast_idle of these tests, in seconds: a killed process's groups outlive it this long."""


def _groups(redis: RedisHarness) -> list[set[str]]:
    """The consumer groups of each partition stream of the harness's namespace."""
    found: list[set[str]] = []
    for p in range(PARTITIONS):
        infos: Any = redis.client.xinfo_groups(f"{redis.namespace}:stream:{p}")
        found.append({info["name"].decode() for info in infos})
    return found


def _session(bridge: Bridge) -> _RedisSession:
    session = bridge._session
    assert isinstance(session, _RedisSession)
    return session


def _broadcaster(redis: RedisHarness, buses: Callable[..., EventBus], **engine: Any) -> tuple[Bridge, Collect]:
    bus = buses("concurrent")
    sink = Collect()
    bus.register(sink)
    engine_ = RedisStreams(redis.url, **engine)
    bridge = bus.bridge(engine_, events=[Placed], broadcast=True, namespace=redis.namespace, partitions=PARTITIONS)
    return bridge, sink


def test_the_broadcast_groups_of_a_dead_process_are_destroyed(
    redis: RedisHarness, buses: Callable[..., EventBus]
) -> None:
    """A process that died without close() leaves groups that live broadcasters destroy after broadcast_idle."""
    dead, _ = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    dead_group = dead.config.group
    assert dead_group is not None
    dead._kill()  # as if its process had died: no close(), no more renewals
    assert all(dead_group in groups for groups in _groups(redis))
    live, live_sink = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    sweeper, sweeper_sink = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    # Its liveness key expires within IDLE s; the live bridges sweep every IDLE / 4 s.
    wait_until(lambda: all(dead_group not in groups for groups in _groups(redis)), timeout=IDLE * 20)
    assert redis.client.exists(f"{redis.namespace}:alive:{dead_group}") == 0
    # The live broadcasters keep theirs, quiet as they are: they renew their keys.
    for groups in _groups(redis):
        assert groups == {live.config.group, sweeper.config.group}
    assert sum(_session(b).swept for b in (live, sweeper)) == PARTITIONS  # once per stream, by one or the other
    _send(redis, 10)
    wait_until(lambda: live_sink.count() == 10 and sweeper_sink.count() == 10)
    assert sorted(e.order_id for e in live_sink.seen) == list(range(10))


def test_a_quiet_live_broadcaster_keeps_its_group(redis: RedisHarness, buses: Callable[..., EventBus]) -> None:
    """A broadcaster that receives nothing for longer than broadcast_idle is not taken for dead."""
    bridge, sink = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    other, other_sink = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    session = _session(other)
    wait_until(lambda: session._next_sweep > 0)
    first = session._next_sweep
    # Eight sweeps of the other bridge, two broadcast_idle periods, with nothing to read.
    wait_until(lambda: session._next_sweep >= first + 2 * IDLE, timeout=IDLE * 40)
    assert all(bridge.config.group in groups for groups in _groups(redis))
    assert session.swept == 0
    _send(redis, 3)
    wait_until(lambda: sink.count() == 3 and other_sink.count() == 3)


def test_close_removes_the_group_and_its_liveness_key(redis: RedisHarness, buses: Callable[..., EventBus]) -> None:
    """close() destroys the broadcast groups and deletes the key at once (no sweep needed)."""
    bridge, _ = _broadcaster(redis, buses, block=0.05, broadcast_idle=IDLE)
    group = bridge.config.group
    assert redis.client.exists(f"{redis.namespace}:alive:{group}") == 1
    assert bridge.close(timeout=10)
    assert all(group not in groups for groups in _groups(redis))
    assert redis.client.exists(f"{redis.namespace}:alive:{group}") == 0


def _send(redis: RedisHarness, count: int) -> None:
    sender = EventBus(strategy="sync")
    try:
        sender.bridge(RedisStreams(redis.url), events=[Placed], namespace=redis.namespace, partitions=PARTITIONS)
        for n in range(count):
            sender.post(Placed(order_id=n))
    finally:
        sender.shutdown()


def test_broadcast_idle_must_exceed_the_reads_wait() -> None:
    """broadcast_idle at or under twice block would let a live group expire between reads: refused."""
    with pytest.raises(ValueError, match="broadcast_idle"):
        RedisStreams("redis://127.0.0.1:6379/0", block=1.0, broadcast_idle=2.0)
    assert RedisStreams("redis://127.0.0.1:6379/0").broadcast_idle == 3600.0
