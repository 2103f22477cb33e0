"""What is particular to NATS JetStream: its subject mapping, publish dedupe and nats-py's pitfalls.

The contract itself runs on NATS in test_contract.py; these tests check the
mapping (docs/scaling-out.md, "The NATS mapping") and the client pitfalls of
issue 13: a pull subscription dead after a server restart or a lost consumer,
a pull that expires on an empty stream, and reconnects that do not storm.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest

from eventbus import EventBus, Message, subscribe
from eventbus._engine import BridgeConfig
from eventbus._wire import encode

from .conftest import NatsHarness  # noqa: TC001 - a fixture type, used at run time by nothing else
from .servers import free_port
from .test_contract import Collect, Keyed, Placed, wait_until

pytest.importorskip("nats")

from eventbus.bridges import NatsJetStream
from eventbus.bridges._nats import durable_names, stream_names


def _config(namespace: str, group: str | None = None, partitions: int = 4) -> BridgeConfig:
    return BridgeConfig(
        namespace=namespace, group=group, broadcast=False, partitions=partitions, consumer="c1", claim_after=5.0
    )


def _subjects(harness: NatsHarness) -> list[str]:
    stream = stream_names(harness.namespace)[0]

    async def read(js: Any) -> list[str]:
        info = await js.stream_info(stream, subjects_filter=">")
        return sorted(info.state.subjects or {})

    found: list[str] = harness._run(read)
    return found


def test_subjects_carry_lane_and_topic(nats: NatsHarness, buses: Callable[..., EventBus]) -> None:
    """Keyed events go to {ns}.{partition}.{topic}, unkeyed ones to {ns}.u.{topic}; odd topics to a '_' token."""
    bus = buses("sync")
    bus.bridge(nats.engine(), events=[Placed, Keyed, Message], namespace=nats.namespace, partitions=4)
    bus.publish(Placed(order_id=1)).result(10)
    bus.publish(Keyed(key=3, n=1)).result(10)
    bus.publish(Message("jobs run", {"x": 1})).result(10)  # a space cannot be in a subject
    # Data that looks like the envelope's key does not make an unkeyed event keyed.
    bus.publish(Message("jobs.raw", {"datacontenttype": "application/json", "partitionkey": 1})).result(10)
    ns = nats.namespace
    partition = next(s for s in _subjects(nats) if s.endswith(".tests.bridges.keyed")).split(".")[1]
    assert _subjects(nats) == sorted(
        [f"{ns}.u.tests.bridges.placed", f"{ns}.{partition}.tests.bridges.keyed", f"{ns}.u._", f"{ns}.u.jobs.raw"]
    )
    assert partition.isdigit()


def test_a_batch_sent_again_is_stored_once(nats: NatsHarness) -> None:
    """Nats-Msg-Id is the event id: a batch sent again (as after a lost reply) is stored once."""
    engine = NatsJetStream(nats.url)
    batch = [(i % 4, encode(Placed(order_id=i), "//test", 1 << 20)[0]) for i in range(50)]

    async def main() -> None:
        session = engine.session(_config(nats.namespace))
        await session.start()
        await session.send(batch)
        await session.send(batch)  # the bridge's retry after EngineUnavailable sends the same batch
        await session.send([*batch[:10], (0, encode(Placed(order_id=99), "//test", 1 << 20)[0])])
        await session.close([])

    asyncio.run(main())
    assert nats.stored() == 51


def test_partition_consumers_hold_one_event_and_a_nak_keeps_the_order(
    nats: NatsHarness, buses: Callable[..., EventBus]
) -> None:
    """A failed keyed event is nak'ed and redelivered by the server before the next event of its partition."""
    failed = threading.Event()

    def fail(event: Any) -> bool:
        if event.n == 0 and not failed.is_set():
            failed.set()
            return True
        return False

    bus = buses("concurrent")
    sub = Collect(fail)
    bus.register(sub)
    bridge = bus.bridge(
        nats.engine(), events=[Keyed], group="g", namespace=nats.namespace, partitions=1, retry_delay=(0.2, 0.2)
    )
    prod = buses("sync")
    prod.bridge(nats.engine(), events=[Keyed], namespace=nats.namespace, partitions=1)
    for n in range(5):
        prod.post(Keyed(key=1, n=n))
    wait_until(lambda: bridge.stats().acked == 5, what="5 acks")
    assert [e.n for e in sub.seen] == [0, 0, 1, 2, 3, 4]
    assert bridge.stats().retried == 1
    assert bridge.stats().reclaimed == 0  # its own nak is no takeover
    stream = stream_names(nats.namespace)[0]

    async def config(js: Any) -> tuple[int, int]:
        info = await js.consumer_info(stream, durable_names("g", 1)[0])
        return info.config.max_ack_pending, info.delivered.consumer_seq

    max_ack_pending, deliveries = nats._run(config)
    assert max_ack_pending == 1
    assert deliveries == 6  # the server delivered the failed event again (a local retry would make it 5)


def test_an_empty_pull_is_an_empty_batch(nats: NatsHarness) -> None:
    """Pulls that expire on an empty stream (408) are empty batches, not errors; the next event still comes."""
    engine = NatsJetStream(nats.url, pull_expires=0.1)
    payload = encode(Placed(order_id=1), "//test", 1 << 20)[0]

    async def main() -> tuple[list[list[Any]], list[Any]]:
        session = engine.session(_config(nats.namespace, group="g"))
        await session.start()
        idle = []
        for _ in range(4):  # each wait outlasts two expiries of the pull
            idle.append(await session.receive(10, 0.25))
        await session.send([(0, payload)])
        later = await session.receive(10, 5.0)
        await session.ack(later)
        await session.close([])
        return idle, later

    idle, later = asyncio.run(main())
    assert idle == [[], [], [], []]
    assert [item.payload for item in later] == [payload]
    assert nats.pending("g") == 0


def test_pull_requests_are_rebuilt_after_a_restart(own_nats: NatsHarness, buses: Callable[..., EventBus]) -> None:
    """After the server restarts, the consumer pulls again at once (not when its old pull would have expired)."""
    bus = buses("concurrent")
    sub = Collect()
    bus.register(sub)
    bus.bridge(
        NatsJetStream(own_nats.url, pull_expires=60.0),
        events=[Placed],
        group="g",
        namespace=own_nats.namespace,
        claim_after=1.0,
    )
    prod = buses("sync")
    prod.bridge(own_nats.engine(), events=[Placed], namespace=own_nats.namespace)
    prod.publish(Placed(order_id=1)).result(10)
    wait_until(lambda: sub.count() == 1, timeout=10)
    own_nats.outage()
    own_nats.restore(keep_data=True)
    prod.publish(Placed(order_id=2)).result(30)
    wait_until(lambda: sub.count() == 2, timeout=15, what="the event posted after the restart")


def test_a_deleted_consumer_is_made_again(nats: NatsHarness, buses: Callable[..., EventBus]) -> None:
    """Consumers deleted under a running bridge (its pulls then go unanswered) are made again; nothing is lost."""
    bus = buses("concurrent")
    sub = Collect()
    bus.register(sub)
    bus.bridge(
        NatsJetStream(nats.url, pull_expires=0.5), events=[Placed], group="g", namespace=nats.namespace, partitions=1
    )
    stream = stream_names(nats.namespace)[0]

    async def delete(js: Any) -> None:
        for name in durable_names("g", 1):
            await js.delete_consumer(stream, name)

    nats._run(delete)
    prod = buses("sync")
    prod.bridge(nats.engine(), events=[Placed], namespace=nats.namespace, partitions=1)
    prod.publish(Placed(order_id=1)).result(10)
    wait_until(lambda: sub.count() == 1, timeout=15, what="the event, through a consumer made again")


def test_reconnects_back_off_without_a_storm(caplog: pytest.LogCaptureFixture) -> None:
    """With no server, a bridge tries to connect a few times a second at most, and logs the outage once."""
    caplog.set_level(logging.WARNING, logger="eventbus.bridge")
    with EventBus(strategy="sync") as bus:
        bridge = bus.bridge(NatsJetStream(f"nats://127.0.0.1:{free_port()}"), events=[Placed], namespace="storm")
        session: Any = bridge._session
        bus.post(Placed(order_id=1))
        threading.Event().wait(2.0)  # an outage of two seconds
        connects = session.connects
        assert not bridge.close(timeout=0.5)
    assert 3 <= connects <= 10, connects  # backoff from 50 ms doubling to a 2 s cap, jittered: about 6
    assert len([r for r in caplog.records if "unreachable" in r.getMessage()]) == 1


def test_passwords_never_in_reprs_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    """A NATS password appears in no repr and no log line, also while the server is unreachable."""
    caplog.set_level(logging.DEBUG)
    engine = NatsJetStream(f"nats://user:s3cret@127.0.0.1:{free_port()}")
    assert "s3cret" not in repr(engine)
    with EventBus(strategy="sync") as bus:
        bridge = bus.bridge(engine, events=[Placed], namespace="secret-test")
        assert "s3cret" not in repr(bridge)
        bus.post(Placed(order_id=1))
        wait_until(lambda: bridge.stats().outages >= 1)
        assert not bridge.close(timeout=0.5)
    assert caplog.records
    assert not any("s3cret" in r.getMessage() for r in caplog.records)


def test_broadcast_consumers_are_removed_at_close(nats: NatsHarness, buses: Callable[..., EventBus]) -> None:
    """A broadcast bridge's consumers are its own, and deleted when it closes."""
    bus = buses("concurrent")

    class Sink:
        @subscribe
        def on(self, event: Placed) -> None:
            pass

    bus.register(Sink())
    engine = NatsJetStream(nats.server.url, broadcast_idle=120.0)
    bridge = bus.bridge(engine, events=[Placed], broadcast=True, namespace=nats.namespace, partitions=2)
    stream = stream_names(nats.namespace)[0]

    async def names(js: Any) -> list[str]:
        return sorted(c.name for c in await js.consumers_info(stream))

    async def thresholds(js: Any) -> list[float]:
        return [c.config.inactive_threshold for c in await js.consumers_info(stream)]

    assert nats._run(names) == sorted(durable_names(bridge.config.group or "", 2))
    # The server deletes them by itself if the process dies without close().
    assert nats._run(thresholds) == [120.0] * len(durable_names(bridge.config.group or "", 2))
    assert all(name.startswith("broadcast_") for name in nats._run(names))
    assert bridge.close(timeout=10)
    assert nats._run(names) == []


def test_broadcast_idle_must_exceed_the_pulls_wait() -> None:
    """broadcast_idle at or under twice pull_expires would let the server delete a live consumer."""
    with pytest.raises(ValueError, match="broadcast_idle"):
        NatsJetStream("nats://127.0.0.1:4222", pull_expires=5.0, broadcast_idle=10.0)
    assert NatsJetStream("nats://127.0.0.1:4222").broadcast_idle == 3600.0


def test_namespace_must_be_a_subject_token() -> None:
    """A namespace that cannot prefix subjects and name streams is refused at bridge()."""
    with EventBus(strategy="sync") as bus, pytest.raises(ValueError, match="namespace"):
        bus.bridge(NatsJetStream("nats://127.0.0.1:4222"), events=[Placed], namespace="shop.eu")


def test_other_partitions_in_one_namespace_are_logged(
    nats: NatsHarness, buses: Callable[..., EventBus], caplog: pytest.LogCaptureFixture
) -> None:
    """A bridge whose partitions differ from the namespace's stream logs an error: per-key order breaks."""
    caplog.set_level(logging.ERROR, logger="eventbus.bridge")
    buses("sync").bridge(nats.engine(), events=[Placed], namespace=nats.namespace, partitions=4)
    assert not caplog.records
    buses("sync").bridge(nats.engine(), events=[Placed], namespace=nats.namespace, partitions=8)
    assert any("per-key order breaks" in r.getMessage() for r in caplog.records)


def test_concurrent_starts_make_one_connection(nats: NatsHarness) -> None:
    """After an outage the sender, receiver and settler all call start(): one connection results, none leaks."""
    engine = NatsJetStream(nats.url)

    async def main() -> int:
        session = engine.session(_config(nats.namespace, group="g"))
        await asyncio.gather(session.start(), session.start(), session.start())
        connects = session.connects
        await session.close([])
        return connects

    assert asyncio.run(main()) == 1
