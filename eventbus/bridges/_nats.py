"""`NatsJetStream`: the bridge engine on NATS JetStream (nats-py), for JetStream 2.9 and later.

The mapping (``docs/scaling-out.md`` gives the reasoning):

- Stream ``eventbus-{ns}``, subjects ``{ns}.{p}.{topic}`` for events with an
  ordering key (*p* its partition) and ``{ns}.u.{topic}`` for the others; each
  published with ``Nats-Msg-Id`` = its CloudEvents id (a batch sent again is stored once).
- Per group, durable pull consumers ``{group}-p{p}`` (``max_ack_pending=1``: one
  event of a partition in flight across the group, so per-key order needs no
  leases) and ``{group}-u``, with ``ack_wait = claim_after``.
- ``+ACK`` after the local handlers, ``-NAK`` with a delay for retries, ``+WPI``
  while handlers run, dead letters to ``{ns}.dead`` then ``+TERM``; broadcast
  consumers are private to the process and deleted at close.
- nats-py does not reconnect by itself here: the bridge does, with its backoff,
  and a new connection rebuilds inbox, pull requests, stream and consumers.
- Bridged ``Message`` topics and patterns (``events=["orders.*"]``) are the
  subject wildcards ``{ns}.*.orders.*``, but the consumers keep their partition
  filters and the receiving bridge skips the topics it does not list: a 2.9
  consumer has one filter, and the group's durable consumers must not depend on
  which process made them (``docs/scaling-out.md``, "Bridging topics and patterns").
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import urllib.parse
import zlib
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, final

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType, StreamConfig

from .._engine import BridgeConfig, DeadLetter, EngineUnavailable, Incoming

__all__ = ["NatsJetStream"]

_logger: Final = logging.getLogger("eventbus.bridge")

_NAMESPACE: Final = re.compile(r"[A-Za-z0-9_-]+")
_NAME_SAFE: Final = re.compile(r"[^A-Za-z0-9_-]")
_TOKEN_BAD: Final = re.compile(r"[\s*>]|\.\.|^\.|\.$")
_TYPE: Final = re.compile(rb'"type":"([^"\\]*)"')
_ID_HEAD: Final = b'{"specversion":"1.0","id":"'
_CONTENT: Final = b'"datacontenttype":"application/json"'
_KEYED: Final = b',"partitionkey":'
_DEAD_HEADER: Final = "Eventbus-Dead"
_UNKEYED_MAX_ACK_PENDING: Final = 10_000
_PULL_MARGIN: Final = 2.0  # seconds past a pull's expiry before an unanswered pull counts as lost
_NAKED_KEPT: Final = 10_000  # nak'ed ids remembered, to tell their redelivery from a takeover
_CONNECT_GAP: Final = 0.02  # seconds after a failed connect during which start() does not try again


def redact(url: str) -> str:
    """*url* (one or several, comma-separated) with passwords, users and tokens replaced by ``***``."""
    out = []
    for one in url.split(","):
        parts = urllib.parse.urlsplit(one.strip())
        if parts.password is None and parts.username is None:
            out.append(one.strip())
            continue
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
        out.append(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))
    return ",".join(out)


def _safe_name(name: str) -> str:
    """*name* as a JetStream consumer name: unsafe characters become ``_`` and a checksum keeps it unique."""
    cleaned = _NAME_SAFE.sub("_", name)
    if cleaned == name:
        return name
    return f"{cleaned}-{zlib.crc32(name.encode()):08x}"


def durable_names(group: str, partitions: int) -> list[str]:
    """The consumers of *group*: one per partition (``-p{n}``), then the unkeyed lane's (``-u``)."""
    base = _safe_name(group)
    return [f"{base}-p{p}" for p in range(partitions)] + [f"{base}-u"]


def stream_names(namespace: str) -> tuple[str, str]:
    """The events stream and the dead-letter stream of *namespace*."""
    return f"eventbus-{namespace}", f"eventbus-{namespace}-dead"


@final
class NatsJetStream:
    """The NATS JetStream engine for `EventBus.bridge` (extra ``eventbus[nats]``).

    Args:
        url: A nats-py server URL, ``nats://[user:password@]host:4222`` (``tls://``
            for TLS, with an ``ssl.SSLContext`` as ``connect_options={"tls": ...}``),
            or several separated by commas (a cluster).
        max_msgs: Keep at most this many events in the namespace's stream (the
            oldest go first); `None` (the default) keeps everything.
        max_age: Keep events at most this many seconds; `None` keeps them.
        replicas: The stream's replicas (1 on a single server).
        duplicate_window: Seconds within which an event sent again (same
            CloudEvents id) is stored once.
        pull_expires: How long one pull request waits on the server, in seconds.
        connect_options: Further keyword arguments for ``nats.connect``.
        broadcast_idle: How long, in seconds, the server keeps a broadcast
            bridge's consumers without a pull before it deletes them (their process
            died without ``close()``): JetStream's ``inactive_threshold``. More than
            twice ``pull_expires``.

    Needs nats-server 2.9 or later with JetStream enabled (``nats-server -js``).
    The namespace is the subject prefix and must be letters, digits, ``_`` or ``-``.
    Added in version 0.2.
    """

    def __init__(
        self,
        url: str = "nats://localhost:4222",
        *,
        max_msgs: int | None = None,
        max_age: float | None = None,
        replicas: int = 1,
        duplicate_window: float = 120.0,
        pull_expires: float = 5.0,
        connect_options: Mapping[str, Any] | None = None,
        broadcast_idle: float = 3600.0,
    ) -> None:
        servers = [one.strip() for one in str(url).split(",") if one.strip()]
        if not servers or not all(s.startswith(("nats://", "tls://", "ws://", "wss://")) for s in servers):
            raise ValueError(f"url must be nats://, tls://, ws:// or wss:// URLs, not {redact(str(url))!r}")
        if not broadcast_idle > 2 * pull_expires:
            raise ValueError(
                f"broadcast_idle ({broadcast_idle!r} s) must be more than twice pull_expires "
                f"({pull_expires!r} s): a live consumer is idle while its pull waits"
            )
        self._url = url
        self._servers = servers
        self.max_msgs = max_msgs
        self.max_age = max_age
        self.replicas = replicas
        self.duplicate_window = duplicate_window
        self.pull_expires = pull_expires
        self.broadcast_idle = broadcast_idle
        self._options = dict(connect_options or {})

    def describe(self) -> str:
        """The URL without its password."""
        return redact(self._url)

    def __repr__(self) -> str:
        return f"NatsJetStream({self.describe()!r})"

    def _secrets(self) -> list[str]:
        found = []
        for server in self._servers:
            parts = urllib.parse.urlsplit(server)
            found += [s for s in (parts.password, parts.username) if s]
        return found

    async def connect(self, **callbacks: Any) -> Any:
        """A new nats-py connection on this engine's URL, set up as the bridge uses it."""
        options: dict[str, Any] = {
            "allow_reconnect": False,  # the bridge reconnects, with capped backoff, logging the outage once
            # nats-py's connect itself tries each server until it is past max_reconnect_attempts
            # (60 by default, every reconnect_time_wait): here a connect tries each server twice, at
            # once, and the bridge's backoff spaces the connects.
            "max_reconnect_attempts": 1,
            "reconnect_time_wait": 0,
            "connect_timeout": 2,
            "ping_interval": 5,  # a silent server is noticed within about 15 s
            "max_outstanding_pings": 3,
            "skip_subject_validation": True,  # the session makes its subjects from checked tokens
        }
        options.update(callbacks)
        options.update(self._options)
        return await nats.connect(servers=self._servers, **options)

    def session(self, config: BridgeConfig) -> _NatsSession:
        """The session of one bridge."""
        if not _NAMESPACE.fullmatch(config.namespace):
            raise ValueError(
                f"namespace={config.namespace!r} cannot be a NATS subject prefix and stream name: "
                "use letters, digits, '_' and '-'"
            )
        return _NatsSession(self, config)


@dataclass(slots=True)
class _Lane:
    """One consumer of the group: a partition's (one event in flight) or the unkeyed events'."""

    index: int
    durable: str
    subject: str
    keyed: bool
    requested: int = 0  # messages asked for by the open pull request
    deadline: float = 0.0  # when the open pull request counts as lost (0: none open)
    quiet_until: float = 0.0  # after a refused pull (409), when to ask again


@dataclass(slots=True)
class _Held:
    reply: str
    subject: str


class _Broken(Exception):
    """The connection or the consumers are gone: reconnect and rebuild."""


_CONNECTION_ERRORS: Final = (
    OSError,
    nats.errors.ConnectionClosedError,
    nats.errors.NoServersError,
    nats.errors.StaleConnectionError,
    nats.errors.UnexpectedEOF,
    nats.errors.OutboundBufferLimitError,
    nats.errors.NoRespondersError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.NoStreamResponseError,
)


@contextlib.asynccontextmanager
async def _guard(session: _NatsSession, deadline: float = 15.0) -> AsyncIterator[None]:
    """Turn connection trouble into `EngineUnavailable` (and forget the connection, so `start` makes a new one)."""
    try:
        async with asyncio.timeout(deadline):
            yield
    except TimeoutError:
        session._drop()
        raise EngineUnavailable(f"no answer within {deadline} s") from None
    except (_Broken, *_CONNECTION_ERRORS) as exc:
        session._drop()
        raise EngineUnavailable(session._clean(f"{type(exc).__name__}: {exc}")) from None
    except nats.js.errors.APIError as exc:
        if exc.code == 503:  # JetStream not (yet) available, e.g. while a restarted server recovers
            session._drop()
            raise EngineUnavailable(session._clean(f"JetStream unavailable: {exc}")) from None
        raise


class _NatsSession:
    def __init__(self, engine: NatsJetStream, config: BridgeConfig) -> None:
        self._engine = engine
        self._cfg = config
        ns = config.namespace
        self._stream, self._dead_stream = stream_names(ns)
        self._dead_subject = f"{ns}.dead"
        self._me = config.consumer
        self._lanes: list[_Lane] = []
        if config.group is not None:
            names = durable_names(config.group, config.partitions)
            for p in range(config.partitions):
                self._lanes.append(_Lane(p, names[p], f"{ns}.{p}.>", keyed=True))
            self._lanes.append(_Lane(config.partitions, names[-1], f"{ns}.u.>", keyed=False))
        self._by_durable = {lane.durable: lane for lane in self._lanes}
        self._topics: dict[bytes, str] = {}
        self._nc: Any = None
        self._js: Any = None
        self._inbox = ""
        self._pub_inbox = ""
        self._pub_gen = 0
        self._pub_reply = ""
        self._pub_left = 0
        self._pub_errors: list[str] = []
        self._pub_done = asyncio.Event()
        self._arrived = asyncio.Event()
        self._broken: str | None = None
        self._generation = 0
        self._backlog: deque[Incoming] = deque()
        self._held: dict[str, _Held] = {}  # message id -> how to settle it: read and not settled
        # Ids this session gave back with a nak, oldest first: their redelivery here is no takeover.
        # Bounded, since another process of the group may get the redelivery instead.
        self._naked: dict[str, None] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()
        self._closing: set[asyncio.Future[None]] = set()
        self._failed_at = 0.0
        self.started: bool = False
        self.reclaimed: int = 0
        self.connects: int = 0
        """Connection attempts (tests check that an outage makes no storm of them)."""

    # -- connecting ----------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        for secret in self._engine._secrets():
            text = text.replace(secret, "***")
        return text

    def _drop(self) -> None:
        """Forget the connection after trouble; `start` makes a new one."""
        nc, self._nc = self._nc, None
        self.started = False
        if nc is not None and not nc.is_closed:
            task = asyncio.ensure_future(self._close_quietly(nc))
            self._closing.add(task)  # awaited at close: a connection left open would outlive the loop
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_quietly(nc: Any) -> None:
        with contextlib.suppress(Exception):
            await nc.close()

    async def _closed_all(self) -> None:
        """Wait (bounded) for the connections dropped after trouble to be closed."""
        if self._closing:
            await asyncio.wait(list(self._closing), timeout=5.0)

    async def _on_error(self, exc: Exception) -> None:
        if isinstance(exc, (*_CONNECTION_ERRORS, TimeoutError)):
            return  # an outage: the operations fail, and the bridge logs it once
        # Anything else (a permissions violation, a slow consumer) would otherwise show only
        # as operations that time out.
        _logger.warning("%s: nats-py reports %s", self._engine.describe(), self._clean(f"{type(exc).__name__}: {exc}"))

    async def _connect(self) -> None:
        if time.monotonic() - self._failed_at < _CONNECT_GAP:
            # The bridge calls start() after its backoff, and then the operation, which may be
            # start() again: one connect per backoff step is enough.
            raise _Broken("the server was unreachable a moment ago")
        self.connects += 1
        self._generation += 1
        generation = self._generation

        async def on_closed() -> None:
            if generation != self._generation:  # an earlier connection, dropped after trouble
                return
            self._broken = "the connection was closed"
            self._pub_errors.append("connection closed")
            self._pub_done.set()
            self._arrived.set()

        try:
            nc = await self._engine.connect(
                error_cb=self._on_error, closed_cb=on_closed, disconnected_cb=on_closed, name=self._me
            )
        except BaseException:
            self._failed_at = time.monotonic()
            raise
        self._broken = None
        self._nc = nc
        self._js = nc.jetstream()
        self._inbox = nc.new_inbox()
        self._pub_inbox = nc.new_inbox()
        await nc.subscribe(f"{self._inbox}.*", cb=self._on_pulled)
        await nc.subscribe(f"{self._pub_inbox}.*", cb=self._on_stored)
        for lane in self._lanes:
            lane.requested = 0
            lane.deadline = 0.0

    def _conn(self) -> Any:
        if self._nc is None or self._broken is not None:
            raise _Broken(self._broken or "not connected")
        return self._nc

    async def start(self) -> None:
        # The sender, receiver and settler may all call start() after an outage: one at a
        # time, and the later ones find the work done (two connects would leak one).
        async with self._starting, _guard(self):
            if self.started and self._nc is not None and self._broken is None:
                return
            if self._nc is None or self._broken is not None:
                self._drop()
                await self._connect()
            await self._ensure()
            self.started = True
        if self._keeper is None and self._lanes:
            self._keeper = asyncio.create_task(self._keep_in_progress())

    async def _ensure(self) -> None:
        """Create the streams and this group's consumers where missing."""
        engine = self._engine
        cfg = self._cfg
        events = StreamConfig(
            name=self._stream,
            description=f"eventbus namespace {cfg.namespace}, partitions={cfg.partitions}",
            subjects=[f"{cfg.namespace}.*.>"],
            storage=StorageType.FILE,
            num_replicas=engine.replicas,
            duplicate_window=engine.duplicate_window,
            max_msgs=engine.max_msgs if engine.max_msgs is not None else -1,
            max_age=engine.max_age or 0,
        )
        await self._ensure_stream(events)
        dead = StreamConfig(
            name=self._dead_stream,
            description=f"eventbus dead letters of namespace {cfg.namespace}",
            subjects=[self._dead_subject],
            storage=StorageType.FILE,
            num_replicas=engine.replicas,
            duplicate_window=engine.duplicate_window,
        )
        await self._ensure_stream(dead)
        for lane in self._lanes:
            await self._ensure_consumer(lane)

    async def _ensure_stream(self, config: StreamConfig) -> None:
        js = self._js
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as exc:
            if exc.err_code != 10058:  # "stream name already in use" with another configuration
                raise
            info = await js.stream_info(config.name)
            if info.config.description != config.description and "partitions=" in (config.description or ""):
                _logger.error(
                    "stream %s was made as %r, this bridge has %r: per-key order breaks; "
                    "use the same partitions everywhere",
                    config.name,
                    info.config.description,
                    config.description,
                )

    async def _ensure_consumer(self, lane: _Lane) -> None:
        js = self._js
        try:
            await js.consumer_info(self._stream, lane.durable)
            return
        except nats.js.errors.NotFoundError:
            pass
        broadcast = self._cfg.broadcast
        config = ConsumerConfig(
            name=lane.durable,
            durable_name=lane.durable,
            filter_subject=lane.subject,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self._cfg.claim_after,
            max_deliver=-1,  # the bridge counts attempts and dead-letters (then +TERM)
            max_ack_pending=1 if lane.keyed else _UNKEYED_MAX_ACK_PENDING,
            deliver_policy=DeliverPolicy.NEW if broadcast else DeliverPolicy.ALL,
            inactive_threshold=self._engine.broadcast_idle if broadcast else None,
        )
        await js.add_consumer(self._stream, config)

    # -- sending -------------------------------------------------------------------------------

    def _route(self, partition: int, payload: bytes) -> tuple[str, dict[str, str] | None]:
        """The subject of an encoded event, and its ``Nats-Msg-Id`` header (from the CloudEvents id)."""
        match = _TYPE.search(payload)
        raw_topic = match.group(1) if match else b""
        tail = self._topics.get(raw_topic)
        if tail is None:
            if len(self._topics) >= 1024:  # Message topics may be many: keep the cache small
                self._topics.clear()
            text = raw_topic.decode(errors="replace")
            tail = self._topics[raw_topic] = "_" if not text or _TOKEN_BAD.search(text) else text
        at = payload.find(_CONTENT)
        keyed = at >= 0 and payload.startswith(_KEYED, at + len(_CONTENT))
        subject = f"{self._cfg.namespace}.{partition if keyed else 'u'}.{tail}"
        if payload.startswith(_ID_HEAD) and payload[63:64] == b'"':
            return subject, {"Nats-Msg-Id": payload[27:63].decode()}
        return subject, None

    async def _on_stored(self, msg: Any) -> None:
        if msg.subject != self._pub_reply:
            return  # the reply to a batch given up on
        data = msg.data
        if not data and msg.headers and msg.headers.get("Status") == "503":
            self._pub_errors.append("no stream for the subject (server restarted without its data?)")
        elif b'"error"' in data:
            self._pub_errors.append(data.decode(errors="replace"))
        self._pub_left -= 1
        if self._pub_left <= 0:
            self._pub_done.set()

    async def send(self, batch: list[tuple[int, bytes]]) -> None:
        async with _guard(self):
            nc = self._conn()
            self._pub_gen += 1
            reply = self._pub_reply = f"{self._pub_inbox}.{self._pub_gen}"
            self._pub_left = len(batch)
            self._pub_errors = []
            self._pub_done.clear()
            await self._publish_all(nc, batch, reply)
            await self._pub_done.wait()
            if self._pub_errors:
                raise _Broken(f"not stored: {self._pub_errors[0]}")

    async def _publish_all(self, nc: Any, batch: list[tuple[int, bytes]], reply: str) -> None:
        publish = nc.publish
        route = self._route
        for partition, payload in batch:
            subject, headers = route(partition, payload)
            await publish(subject, payload, reply=reply, headers=headers)

    # -- receiving -----------------------------------------------------------------------------

    async def _on_pulled(self, msg: Any) -> None:
        reply = msg.reply
        if not reply:  # a status on the pull's inbox: the request ended (404, 408, 409), or a heartbeat (100)
            headers = msg.headers or {}
            status = headers.get("Status")
            if status == "100":
                return
            inbox, _, index = msg.subject.rpartition(".")
            if inbox != self._inbox:  # the inbox of an earlier connection
                return
            ended = self._lanes[int(index)]
            ended.requested = 0
            ended.deadline = 0.0
            if status == "409":
                if "Deleted" in headers.get("Description", ""):
                    self._broken = "the consumer was deleted"
                else:  # refused (too many waiting pulls, say): ask again later, not at once
                    ended.quiet_until = time.monotonic() + 1.0
            self._arrived.set()
            return
        # A message keeps the subject it was stored under; its reply subject says the rest:
        # $JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>,
        # with <domain>.<account hash> after ACK (and a token at the end) on newer servers.
        tokens = reply.split(".")
        consumer, delivered, seq = tokens[3:6] if len(tokens) == 9 else tokens[5:8]
        lane = self._by_durable.get(consumer)
        if lane is None:
            return
        lane.requested -= 1
        if lane.requested <= 0:
            lane.requested = 0
            lane.deadline = 0.0
        attempt = int(delivered)
        reclaimed = False
        if attempt > 1:
            if seq in self._naked:
                del self._naked[seq]
            else:
                reclaimed = True
                self.reclaimed += 1
        self._held[seq] = _Held(reply, msg.subject)
        self._backlog.append(Incoming(lane.index, seq, msg.data, attempt=attempt, reclaimed=reclaimed))
        self._arrived.set()

    async def receive(self, limit: int, wait: float) -> list[Incoming]:
        async with _guard(self, wait + 15.0):
            if not self.started:
                await self.start()
            return await self._receive(limit, time.monotonic() + wait)

    async def _receive(self, limit: int, deadline: float) -> list[Incoming]:
        while True:
            await self._pull(self._conn(), limit)  # again when a pull ended empty (408) meanwhile
            remaining = deadline - time.monotonic()
            if self._backlog or remaining <= 0:
                return self._take(limit)
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def _take(self, limit: int) -> list[Incoming]:
        out: list[Incoming] = []
        backlog = self._backlog
        while True:
            if not backlog or len(out) >= limit:
                return out
            out.append(backlog.popleft())

    async def _pull(self, nc: Any, limit: int) -> None:
        """Open a pull request on every lane that has none (the unkeyed lane for the room left)."""
        now = time.monotonic()
        expires = self._engine.pull_expires
        for lane in self._lanes:
            if lane.quiet_until > now:
                continue
            if lane.deadline:
                if now < lane.deadline:
                    continue
                # No answer, not even the expiry's 408: the server lost the request, or the
                # consumer is gone. Make sure the consumers exist, then ask again.
                await self._ensure()
            batch = 1 if lane.keyed else min(limit - len(self._backlog), 512)
            if batch <= 0:
                continue
            lane.requested = batch
            lane.deadline = now + expires + _PULL_MARGIN
            request = f'{{"batch":{batch},"expires":{int(expires * 1e9)}}}'.encode()
            await nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self._stream}.{lane.durable}", request, reply=f"{self._inbox}.{lane.index}"
            )

    async def _keep_in_progress(self) -> None:
        """Tell the server every ``claim_after / 3`` that the events read are still being handled (``+WPI``)."""
        interval = self._cfg.claim_after / 3
        while True:
            await asyncio.sleep(interval)
            nc = self._nc
            if nc is None or self._broken is not None or not self._held:
                continue
            with contextlib.suppress(Exception):  # a lost connection shows in the next operation
                await self._publish_each(nc, [held.reply for held in self._held.values()], b"+WPI")

    @staticmethod
    async def _publish_each(nc: Any, replies: list[str], body: bytes) -> None:
        for reply in replies:
            await nc.publish(reply, body)

    # -- settling ------------------------------------------------------------------------------

    def _replies(self, items: list[Incoming]) -> list[str]:
        held = self._held
        out = []
        for item in items:
            found = held.get(item.id)
            if found is not None:
                out.append(found.reply)
        return out

    def _forget(self, items: list[Incoming]) -> None:
        for item in items:
            self._held.pop(item.id, None)

    async def ack(self, items: list[Incoming]) -> None:
        async with _guard(self):
            await self._publish_each(self._conn(), self._replies(items), b"+ACK")
        self._forget(items)

    async def retry(self, item: Incoming, delay: float) -> None:
        """Give *item* back to the server, to be delivered again after *delay* seconds (``-NAK``)."""
        body = f'-NAK {{"delay":{int(delay * 1e9)}}}'.encode()
        async with _guard(self):
            await self._publish_each(self._conn(), self._replies([item]), body)
        self._naked[item.id] = None
        if len(self._naked) > _NAKED_KEPT:
            del self._naked[next(iter(self._naked))]
        self._forget([item])

    async def dead_letter(self, item: Incoming, reason: str, error: str | None, handler: str | None) -> None:
        held = self._held.get(item.id)
        record = {
            "reason": reason,
            "error": error,
            "handler": handler,
            "attempts": item.attempt,
            "group": self._cfg.group,
            "partition": item.partition,
            "message_id": item.id,
            "subject": held.subject if held is not None else "",
            "consumer": self._me,
            "time": time.time(),
        }
        headers = {
            "Nats-Msg-Id": f"{self._cfg.group}:{item.id}",  # dead-lettered again (a lost +TERM): stored once
            _DEAD_HEADER: json.dumps(record),
        }
        async with _guard(self):
            self._conn()
            await self._js.publish(self._dead_subject, item.payload, headers=headers)
            await self._publish_each(self._conn(), self._replies([item]), b"+TERM")
        self._forget([item])

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        async with _guard(self):
            self._conn()
            return await self._letters(limit)

    async def _letters(self, limit: int) -> list[DeadLetter]:
        js = self._js
        info = await js.stream_info(self._dead_stream)
        seq = info.state.first_seq
        out: list[DeadLetter] = []
        while True:
            if len(out) >= limit or seq > info.state.last_seq or info.state.messages == 0:
                return out
            try:
                raw = await js.get_msg(self._dead_stream, seq=seq, subject=self._dead_subject, next=True)
            except nats.js.errors.NotFoundError:
                return out
            out.append(_dead_letter(raw.seq, raw.headers, raw.data))
            seq = raw.seq + 1

    async def replay(self, ids: list[str]) -> int:
        async with _guard(self):
            self._conn()
            return await self._replay(ids)

    async def _replay(self, ids: list[str]) -> int:
        js = self._js
        done = 0
        for dead_id in ids:
            try:
                raw = await js.get_msg(self._dead_stream, seq=int(dead_id))
            except (nats.js.errors.NotFoundError, ValueError):
                continue
            record = _record(raw.headers)
            subject = str(record.get("subject") or "")
            if not subject.startswith(f"{self._cfg.namespace}."):
                subject = f"{self._cfg.namespace}.{record.get('partition', 0)}._"
            # A new message id: the original's is still in the duplicate window, and a replay
            # sent again after a lost reply must be stored once.
            await js.publish(subject, raw.data or b"", headers={"Nats-Msg-Id": f"replay:{self._dead_stream}:{dead_id}"})
            await js.delete_msg(self._dead_stream, int(dead_id))
            done += 1
        return done

    # -- closing -------------------------------------------------------------------------------

    async def _stop_keeper(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)

    async def abandon(self) -> None:
        """Drop the connection without giving anything back (a simulated crash, in tests)."""
        await self._stop_keeper()
        nc, self._nc = self._nc, None
        if nc is not None:
            with contextlib.suppress(Exception):
                await nc.close()
        await self._closed_all()

    async def close(self, abandoned: list[Incoming]) -> None:
        await self._stop_keeper()
        await self._closed_all()
        nc = self._nc
        if nc is None:
            return
        try:
            async with _guard(self, 10.0):
                self._conn()
                # What is read and not settled goes back at once, for the next consumer.
                await self._publish_each(nc, [held.reply for held in self._held.values()], b"-NAK")
                self._held.clear()
                if self._cfg.broadcast:
                    await self._delete_consumers()
                await nc.flush(5)
        finally:
            self._nc = None
            with contextlib.suppress(Exception):
                await nc.close()
            await self._closed_all()

    async def _delete_consumers(self) -> None:
        for lane in self._lanes:
            with contextlib.suppress(nats.js.errors.NotFoundError):
                await self._js.delete_consumer(self._stream, lane.durable)


def _record(headers: Mapping[str, str] | None) -> dict[str, Any]:
    try:
        record = json.loads((headers or {}).get(_DEAD_HEADER, "{}"))
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _dead_letter(seq: int, headers: Mapping[str, str] | None, data: bytes | None) -> DeadLetter:
    """A dead letter from its message in the dead-letter stream."""
    record = _record(headers)

    def text(name: str) -> str | None:
        value = record.get(name)
        return str(value) if value not in (None, "") else None

    group = record.get("group")
    return DeadLetter(
        id=str(seq),
        reason=text("reason") or "",
        error=text("error"),
        handler=text("handler"),
        attempts=int(record.get("attempts") or 0),
        group=str(group) if group is not None else None,
        partition=int(record.get("partition") or 0),
        message_id=text("message_id") or "",
        payload=data or b"",
    )
