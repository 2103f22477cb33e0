"""`RedisStreams`: the bridge engine on Redis Streams (redis-py's asyncio client).

The mapping (``docs/scaling-out.md`` gives the reasoning):

- ``{ns}:stream:{p}`` for each partition *p*: the events, one field ``ce`` holding
  the CloudEvents JSON. A batch of up to 512 events is one script call that runs
  ``XADD`` for each (one command and one reply per batch; stored whole or not at all).
- One consumer group per bridge ``group=`` on every partition stream, created at
  ``0`` (a new group reads what the streams still hold). ``broadcast=True`` makes
  a private group per consumer, created at ``$`` and destroyed at close.
- Partition ownership: ``{ns}:group:{g}:owner:{p}`` holds the owning consumer's
  name with a TTL of ``claim_after``; ``{ns}:group:{g}:members`` (a sorted set
  scored by expiry) counts the live consumers. One Lua script renews, expires and
  acquires, on the server's clock, so each consumer owns at most
  ``ceil(partitions / members)`` partitions and each partition has one owner.
- Taking a partition over, a consumer first claims every pending entry of the
  group in it (``XPENDING`` + ``XCLAIM``, in id order), then reads new entries
  (``XREADGROUP >``). So a dead consumer's entries are redelivered after its
  lease runs out (``claim_after``), in order, before anything newer.
- ``XACK`` in batches (one script call across partitions); dead letters go to ``{ns}:dead`` with the
  ``XACK`` in one ``MULTI``. No ``XGROUP DELCONSUMER`` (it drops pending entries).
- Bridged ``Message`` topics and patterns (``events=["orders.*"]``) need nothing
  here: streams have no wildcards, and a partition stream must carry every topic
  of its keys, so a receiving bridge matches each message's ``type`` itself and
  acknowledges and skips the topics it does not list.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import urllib.parse
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final, final

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._engine import BridgeConfig, DeadLetter, EngineUnavailable, Incoming, beat_interval

__all__ = ["RedisStreams"]

_logger: Final = logging.getLogger("eventbus.bridge")

# KEYS: members zset. ARGV: me, ttl_ms, partitions, lease key prefix.
# Returns the partitions this consumer owns, then its fair share.
_HEARTBEAT: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local me, ttl, parts, prefix = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
redis.call('ZADD', KEYS[1], now + ttl, me)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local n = redis.call('ZCARD', KEYS[1])
local share = math.ceil(parts / n)
local owned = {}
for p = 0, parts - 1 do
  local key = prefix .. p
  if redis.call('GET', key) == me then
    redis.call('PEXPIRE', key, ttl)
    owned[#owned + 1] = p
  end
end
for p = 0, parts - 1 do
  if #owned >= share then break end
  local key = prefix .. p
  if redis.call('SET', key, me, 'NX', 'PX', ttl) then owned[#owned + 1] = p end
end
owned[#owned + 1] = share
return owned
"""

# KEYS: the partition streams. ARGV: maxlen (0: none), then (1-based stream index, payload) pairs.
_APPEND: Final = """
local maxlen = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local key = KEYS[tonumber(ARGV[i])]
  if maxlen > 0 then
    redis.call('XADD', key, 'MAXLEN', '~', maxlen, '*', 'ce', ARGV[i + 1])
  else
    redis.call('XADD', key, '*', 'ce', ARGV[i + 1])
  end
end
return #ARGV / 2
"""

# KEYS: the partition streams. ARGV: the group, then (1-based stream index, entry id) pairs.
_ACK: Final = """
local acked = 0
for i = 2, #ARGV, 2 do
  acked = acked + redis.call('XACK', KEYS[tonumber(ARGV[i])], ARGV[1], ARGV[i + 1])
end
return acked
"""

_RELEASE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: a partition stream, the group's liveness key. ARGV: the group. Destroys the group if its
# process stopped renewing the key; in one script, so that no check-then-destroy race is left.
_SWEEP: Final = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('XGROUP', 'DESTROY', KEYS[1], ARGV[1])
"""

_CLAIM_PAGE: Final = 100


def redact(url: str) -> str:
    """*url* with its password (and user) replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@final
class RedisStreams:
    """The Redis Streams engine for `EventBus.bridge` (extra ``eventbus[redis]``).

    Args:
        url: A redis-py URL: ``redis://[[user]:password@]host:port/db``, or
            ``rediss://`` for TLS (with redis-py's ``ssl_*`` query options).
        maxlen: Trim each partition stream to about this many entries
            (``XADD MAXLEN ~``); `None` (the default) never trims. Trimming drops
            entries that a slow group may not have read yet.
        block: The longest a read waits on the server, in seconds (kept below
            the socket timeout, see redis-py's ``socket_timeout``).
        client_options: Further keyword arguments for ``redis.asyncio.Redis.from_url``.
        broadcast_idle: How long, in seconds, a broadcast group outlives its
            process when that process died without ``close()``: every broadcasting
            bridge renews a liveness key of its group every quarter of this, and
            destroys the groups of the namespace whose key has expired. More than
            twice ``block``.

    Needs Redis 6.2 or later (exclusive ``XPENDING`` ranges); tested on 7.0.
    Standalone Redis or a replicated primary: the ownership script touches keys
    it computes, which Redis Cluster forbids.
    """

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        maxlen: int | None = None,
        block: float = 1.0,
        client_options: Mapping[str, Any] | None = None,
        broadcast_idle: float = 3600.0,
    ) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, not {redact(str(url))!r}")
        if not broadcast_idle > 2 * block:
            raise ValueError(
                f"broadcast_idle ({broadcast_idle!r} s) must be more than twice block ({block!r} s): "
                "a bridge renews its broadcast group's liveness between two reads"
            )
        self._url = url
        self.maxlen = maxlen
        self.block = block
        self.broadcast_idle = broadcast_idle
        self._options = dict(client_options or {})

    def describe(self) -> str:
        """The URL without its password."""
        return redact(self._url)

    def __repr__(self) -> str:
        return f"RedisStreams({self.describe()!r})"

    def client(self) -> aioredis.Redis:
        """A new asyncio client on this engine's URL, set up as the bridge uses it."""
        options: dict[str, Any] = {
            "protocol": 2,  # RESP2: the replies parsed below, and no RESP3 push surprises on idle connections
            # No per-reply socket timeout (redis-py arms one per reply, a third of a pipeline's
            # cost); every operation of a session runs under one deadline instead (see _guard).
            "socket_timeout": None,
            "socket_keepalive": True,
            "socket_connect_timeout": 5.0,
            "retry": Retry(NoBackoff(), 0),  # the bridge retries with backoff and logs the outage once
            "health_check_interval": 15,
        }
        options.update(self._options)
        return aioredis.Redis.from_url(self._url, **options)

    def session(self, config: BridgeConfig) -> _RedisSession:
        """The session of one bridge."""
        return _RedisSession(self, config)


@contextlib.asynccontextmanager
async def _guard(session: _RedisSession) -> AsyncIterator[None]:
    """Turn connection trouble into `EngineUnavailable` (and a lost group into a new start).

    The whole operation (a blocking read included) must finish within the
    engine's ``block`` plus ten seconds, or the connection counts as lost.
    """
    try:
        async with asyncio.timeout(session.deadline):
            yield
    except TimeoutError:
        raise EngineUnavailable(f"no answer within {session.deadline} s") from None
    except (RedisConnectionError, RedisTimeoutError, BusyLoadingError, OSError) as exc:
        raise EngineUnavailable(f"{type(exc).__name__}: {exc}") from None
    except ResponseError as exc:
        if "NOGROUP" in str(exc):  # restarted without its data: the bridge calls start() again
            session.started = False
            raise EngineUnavailable("the consumer group is gone (server restarted without its data?)") from None
        raise


class _RedisSession:
    def __init__(self, engine: RedisStreams, config: BridgeConfig) -> None:
        self._engine = engine
        self._cfg = config
        ns = config.namespace
        self._streams = [f"{ns}:stream:{p}" for p in range(config.partitions)]
        self._index = {name: p for p, name in enumerate(self._streams)}
        self._dead = f"{ns}:dead"
        self._group = config.group
        self._me = config.consumer
        self._prefix = f"{ns}:group:{config.group}:owner:"
        self._members = f"{ns}:group:{config.group}:members"
        self._ttl_ms = max(10, int(config.claim_after * 1000))
        self.deadline: float = engine.block + 10.0
        self._redis: Any = None
        self._heartbeat: Any = None
        self._release: Any = None
        self._append: Any = None
        self._ack: Any = None
        self._destroy_if_dead: Any = None
        self._alive = f"{ns}:alive:{config.group}"
        """A broadcast group's liveness key, renewed while its bridge runs (see `_sweep`)."""
        self.started: bool = False
        self.owned: set[int] = set(range(config.partitions)) if config.broadcast else set()
        self._to_claim: set[int] = set()
        self._releasing: set[int] = set()
        self._flying: dict[int, set[str]] = defaultdict(set)
        self._backlog: deque[Incoming] = deque()
        self._next_beat = 0.0
        self._next_sweep = 0.0
        self.reclaimed: int = 0
        self.swept: int = 0
        """Broadcast groups of dead processes that this session destroyed."""

    @property
    def _r(self) -> Any:  # redis-py's reply types are unions of everything; the replies are parsed below
        if self._redis is None:
            self._redis = self._engine.client()
            self._heartbeat = self._redis.register_script(_HEARTBEAT)
            self._release = self._redis.register_script(_RELEASE)
            self._append = self._redis.register_script(_APPEND)
            self._ack = self._redis.register_script(_ACK)
            self._destroy_if_dead = self._redis.register_script(_SWEEP)
        return self._redis

    async def start(self) -> None:
        r = self._r
        async with _guard(self):
            meta = f"{self._cfg.namespace}:meta"
            await r.hsetnx(meta, "partitions", self._cfg.partitions)
            stored = await r.hget(meta, "partitions")
            if stored is not None and int(stored) != self._cfg.partitions:
                _logger.error(
                    "namespace %r was made with partitions=%s, this bridge has %d: per-key order breaks; "
                    "use the same partitions everywhere",
                    self._cfg.namespace,
                    _text(stored),
                    self._cfg.partitions,
                )
            if self._cfg.broadcast:  # alive before the group exists: a sweep never sees it without its key
                await self._renew()
            if self._group is not None:
                start_id = "$" if self._cfg.broadcast else "0"
                for stream in self._streams:
                    try:
                        await r.xgroup_create(stream, self._group, id=start_id, mkstream=True)
                    except ResponseError as exc:
                        if "BUSYGROUP" not in str(exc):
                            raise
            self.started = True

    async def send(self, batch: list[tuple[int, bytes]]) -> None:
        # One script call per batch: one command to pack and one reply to parse instead
        # of one per event (three times the throughput of a pipeline of XADDs), and the
        # batch is stored whole or not at all.
        args: list[int | bytes] = [self._engine.maxlen or 0]
        for partition, payload in batch:
            args.append(partition + 1)
            args.append(payload)
        async with _guard(self):
            await self._append(keys=self._streams, args=args)

    # -- receiving -----------------------------------------------------------------------

    def _readable(self) -> list[int]:
        # A method of its own: a comprehension directly under `async with _guard(self):` would
        # let an interrupt skip the guard's exit on CPython 3.13 (tests/test_interrupt_shapes.py).
        return [p for p in sorted(self.owned) if p not in self._releasing and p not in self._to_claim]

    async def receive(self, limit: int, wait: float) -> list[Incoming]:
        async with _guard(self):
            if not self.started:
                await self.start()
            assert self._group is not None
            if not self._cfg.broadcast and time.monotonic() >= self._next_beat:
                await self._beat()
            if self._cfg.broadcast and time.monotonic() >= self._next_sweep:
                await self._sweep()
            if not self._backlog and self._to_claim:
                for partition in sorted(self._to_claim):
                    await self._claim(partition)
                self._to_claim.clear()
            if not self._backlog:
                readable = self._readable()
                until_beat = wait if self._cfg.broadcast else max(0.001, self._next_beat - time.monotonic())
                block = min(wait, self._engine.block, until_beat)
                if not readable:
                    await asyncio.sleep(block)
                    return []
                reply = await self._r.xreadgroup(
                    self._group,
                    self._me,
                    {self._streams[p]: ">" for p in readable},
                    count=limit,
                    block=max(1, int(block * 1000)),
                )
                for stream, entries in reply or ():
                    partition = self._index[stream.decode() if isinstance(stream, bytes) else stream]
                    for entry_id, fields in entries:
                        self._backlog.append(Incoming(partition, _text(entry_id), _payload(fields)))
            out: list[Incoming] = []
            while True:
                if not self._backlog or len(out) >= limit:
                    break
                item = self._backlog.popleft()
                self._flying[item.partition].add(item.id)
                out.append(item)
            return out

    async def _renew(self) -> None:
        await self._r.set(self._alive, self._me, px=max(1, int(self._engine.broadcast_idle * 1000)))

    async def _sweep(self) -> None:
        """Renew this bridge's liveness, and destroy the broadcast groups of processes that died.

        A broadcasting bridge renews its group's liveness key (``{ns}:alive:{group}``,
        expiring after the engine's ``broadcast_idle``) every quarter of that time. A
        process that died without ``close()`` stops renewing; nothing else would ever
        remove its group and that group's pending list, so the next sweep of any
        broadcasting bridge of the namespace does, key check and destroy in one
        script. (Redis's own consumer idle time cannot tell: before Redis 7.2 a read
        that finds nothing does not reset it.)
        """
        self._next_sweep = time.monotonic() + self._engine.broadcast_idle / 4
        await self._renew()
        for stream in self._streams:
            for name in await self._broadcast_groups(stream):
                if not await self._destroy_if_dead(keys=[stream, f"{self._cfg.namespace}:alive:{name}"], args=[name]):
                    continue  # alive, or another broadcasting bridge destroyed it first
                self.swept += 1
                _logger.info("destroyed the broadcast group %r of %s: its process stopped", name, stream)

    async def _broadcast_groups(self, stream: str) -> list[str]:
        """The other broadcast groups on *stream*."""
        try:
            groups = await self._r.xinfo_groups(stream)
        except ResponseError:  # the stream is gone (a server restarted without its data)
            return []
        names = [_text(info["name"]) for info in groups]
        return [name for name in names if name.startswith("broadcast.") and name != self._group]

    async def _beat(self) -> None:
        reply = await self._heartbeat(
            keys=[self._members], args=[self._me, self._ttl_ms, self._cfg.partitions, self._prefix]
        )
        share = int(reply[-1])
        owned = {int(p) for p in reply[:-1]}
        lost = self.owned - owned
        if lost:
            _logger.warning("consumer %s lost partitions %s (its lease ran out)", self._me, sorted(lost))
        self._to_claim |= owned - self.owned
        self._to_claim &= owned
        self.owned = owned
        extra = len(owned) - share
        self._releasing = set(sorted(owned)[-extra:]) if extra > 0 else set()
        for partition in sorted(self._releasing):
            busy = self._flying[partition] or any(i.partition == partition for i in self._backlog)
            if not busy and partition not in self._to_claim:
                await self._release(keys=[self._prefix + str(partition)], args=[self._me])
                self.owned.discard(partition)
        self._releasing &= self.owned
        self._next_beat = time.monotonic() + beat_interval(self._cfg.claim_after)

    async def _claim(self, partition: int) -> None:
        """Take every pending entry of the group in *partition* (a new owner's first step)."""
        r = self._r
        stream = self._streams[partition]
        start = "-"
        while True:
            pending = await r.xpending_range(stream, self._group, min=start, max="+", count=_CLAIM_PAGE)
            if not pending:
                return
            mine = self._flying[partition]
            counts = {_text(p["message_id"]): (int(p["times_delivered"]), _text(p["consumer"])) for p in pending}
            ids = [i for i in counts if i not in mine]
            if ids:
                claimed = await r.xclaim(stream, self._group, self._me, min_idle_time=0, message_ids=ids)
                found = set()
                for entry_id, fields in claimed:
                    if fields is None:
                        continue
                    text = _text(entry_id)
                    found.add(text)
                    times, owner = counts[text]
                    self._backlog.append(Incoming(partition, text, _payload(fields), attempt=times + 1, reclaimed=True))
                    if owner != self._me:
                        self.reclaimed += 1
                gone = [i for i in ids if i not in found]
                if gone:  # trimmed or deleted entries linger in the pending list: drop them
                    await r.xack(stream, self._group, *gone)
            if len(pending) < _CLAIM_PAGE:
                return
            start = "(" + _text(pending[-1]["message_id"])

    # -- settling ------------------------------------------------------------------------------

    def _landed(self, items: list[Incoming]) -> None:
        for item in items:
            self._flying[item.partition].discard(item.id)

    async def ack(self, items: list[Incoming]) -> None:
        if len({item.partition for item in items}) == 1:
            async with _guard(self):
                await self._r.xack(self._streams[items[0].partition], self._group, *(i.id for i in items))
        else:  # one script call for every stream, as for sending
            args: list[int | str] = [self._group or ""]
            for item in items:
                args.append(item.partition + 1)
                args.append(item.id)
            async with _guard(self):
                await self._ack(keys=self._streams, args=args)
        self._landed(items)

    async def dead_letter(self, item: Incoming, reason: str, error: str | None, handler: str | None) -> None:
        fields = {
            "payload": item.payload,
            "reason": reason,
            "error": error or "",
            "handler": handler or "",
            "attempts": item.attempt,
            "group": self._group or "",
            "partition": item.partition,
            "message_id": item.id,
            "consumer": self._me,
            "time": time.time(),
        }
        async with _guard(self):
            pipe = self._r.pipeline(transaction=True)
            pipe.xadd(self._dead, fields)
            pipe.xack(self._streams[item.partition], self._group, item.id)
            await pipe.execute()
        self._landed([item])

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        async with _guard(self):
            entries = await self._r.xrange(self._dead, "-", "+", count=limit)
        return [_dead_letter(entry_id, fields) for entry_id, fields in entries]

    async def replay(self, ids: list[str]) -> int:
        done = 0
        async with _guard(self):
            for dead_id in ids:
                entries = await self._r.xrange(self._dead, dead_id, dead_id)
                if not entries:
                    continue
                letter = _dead_letter(*entries[0])
                pipe = self._r.pipeline(transaction=True)
                pipe.xadd(self._streams[letter.partition % len(self._streams)], {"ce": letter.payload})
                pipe.xdel(self._dead, dead_id)
                await pipe.execute()
                done += 1
        return done

    async def abandon(self) -> None:
        """Drop the connections without giving anything up (a simulated crash, in tests)."""
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.aclose()
            self._redis = None

    async def close(self, abandoned: list[Incoming]) -> None:
        r = self._redis
        if r is None:
            return
        try:
            async with _guard(self):
                if self._cfg.broadcast and self._group is not None:
                    pipe = r.pipeline(transaction=False)
                    for stream in self._streams:
                        pipe.xgroup_destroy(stream, self._group)
                    pipe.delete(self._alive)
                    await pipe.execute(raise_on_error=False)
                elif self._group is not None:
                    for partition in sorted(self.owned):
                        await self._release(keys=[self._prefix + str(partition)], args=[self._me])
                    await r.zrem(self._members, self._me)
        finally:
            self.owned.clear()
            await r.aclose()
            self._redis = None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _payload(fields: dict[bytes, bytes] | None) -> bytes:
    if fields and b"ce" in fields:
        return fields[b"ce"]
    return repr(fields).encode()  # not ours: fails to decode as "malformed", with the fields kept for the record


def _dead_letter(entry_id: bytes | str, fields: dict[bytes, bytes]) -> DeadLetter:
    """A dead letter from its stream entry."""

    def text(name: bytes) -> str | None:
        value = fields.get(name)
        return value.decode() if value else None

    return DeadLetter(
        id=_text(entry_id),
        reason=text(b"reason") or "",
        error=text(b"error"),
        handler=text(b"handler"),
        attempts=int(fields.get(b"attempts", b"0")),
        group=text(b"group"),
        partition=int(fields.get(b"partition", b"0")),
        message_id=text(b"message_id") or "",
        payload=fields.get(b"payload", b""),
    )
