"""`InMemoryEngine`: the bridge contract without a server, for unit tests.

Several buses in one process bridge through one `InMemoryEngine` as processes
would through Redis: partitions with one owner per group, pending messages,
acknowledgements, takeover of a silent consumer's partitions and messages after
``claim_after``, dead letters and replay. It follows the same algorithm as
`eventbus.bridges.RedisStreams`, on Python data structures under one lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import final

from ._engine import BridgeConfig, DeadLetter, EngineUnavailable, Incoming, beat_interval

__all__ = ["InMemoryEngine"]


@dataclass(slots=True)
class _Pending:
    partition: int
    consumer: str
    count: int
    payload: bytes


@dataclass(slots=True)
class _Group:
    start: int  # the first sequence number this group reads (broadcast groups start at the end)
    read_upto: dict[int, int] = field(default_factory=dict)  # partition -> index of the next new entry
    pending: dict[str, _Pending] = field(default_factory=dict)  # entry id -> its record, in id order
    leases: dict[int, tuple[str, float]] = field(default_factory=dict)  # partition -> (owner, expiry)
    members: dict[str, float] = field(default_factory=dict)  # consumer -> expiry


@final
class InMemoryEngine:
    """An in-process engine with the bridge contract of `eventbus.bridges.RedisStreams`.

    Give one instance to every bus that should share events::

        engine = InMemoryEngine()
        producer.bridge(engine, events=[OrderPlaced])
        worker.bridge(engine, events=[OrderPlaced], group="billing")

    `go_offline` and `go_online` simulate an outage and a restart (with or
    without the data) for tests of recovery. Added in version 0.2.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seq = itertools.count(1)
        self._streams: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._dead: dict[str, list[DeadLetter]] = {}
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self._online = True

    def describe(self) -> str:
        """``memory://`` and the engine's id."""
        return f"memory://{id(self):x}"

    def __repr__(self) -> str:
        return f"InMemoryEngine({self.describe()!r})"

    def session(self, config: BridgeConfig) -> _MemorySession:
        """The session of one bridge."""
        return _MemorySession(self, config)

    # -- test controls ------------------------------------------------------------------

    def go_offline(self) -> None:
        """Make every operation fail as if the server were unreachable."""
        with self._lock:
            self._online = False

    def go_online(self, keep_data: bool = True) -> None:
        """End an outage; with ``keep_data=False`` as a server restarted without its data."""
        with self._lock:
            self._online = True
            if not keep_data:
                self._streams.clear()
                self._groups.clear()
                self._dead.clear()
        self._wake()

    def add_raw(self, namespace: str, partition: int, payload: bytes) -> str:
        """Append *payload* to a partition as it is, bypassing every check (tests of bad input)."""
        with self._lock:
            entry_id = f"{next(self._seq)}-0"
            self._streams.setdefault((namespace, partition), []).append((entry_id, payload))
        self._wake()
        return entry_id

    def pending(self, namespace: str, group: str) -> int:
        """How many messages of *group* are read and not acknowledged."""
        with self._lock:
            found = self._groups.get((namespace, group))
            return 0 if found is None else len(found.pending)

    def stored(self, namespace: str) -> int:
        """How many messages the partitions of *namespace* hold."""
        with self._lock:
            return sum(len(entries) for (ns, _), entries in self._streams.items() if ns == namespace)

    # -- for the sessions -----------------------------------------------------------------

    def _check(self) -> None:
        if not self._online:
            raise EngineUnavailable("the in-memory engine is offline")

    def _wake(self) -> None:
        for loop, event in list(self._waiters):
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that bridge's loop is closed
                self._waiters.discard((loop, event))


class _MemorySession:
    def __init__(self, engine: InMemoryEngine, config: BridgeConfig) -> None:
        self._engine = engine
        self._cfg = config
        self._me = config.consumer
        self.reclaimed: int = 0
        self.owned: set[int] = set()
        self._to_claim: set[int] = set()
        self._flying: dict[int, set[str]] = {p: set() for p in range(config.partitions)}
        self._backlog: deque[Incoming] = deque()
        self._next_beat = 0.0
        self._event: asyncio.Event | None = None

    def _group(self) -> _Group:
        """The group, made if missing (as XGROUP CREATE ... MKSTREAM). Called under the lock."""
        engine = self._engine
        key = (self._cfg.namespace, self._cfg.group or "")
        found = engine._groups.get(key)
        if found is None:
            start = next(engine._seq) if self._cfg.broadcast else 0
            found = engine._groups[key] = _Group(start)
        return found

    async def start(self) -> None:
        if self._event is None:
            self._event = asyncio.Event()
            self._engine._waiters.add((asyncio.get_running_loop(), self._event))
        with self._engine._lock:
            self._engine._check()
            if self._cfg.group is not None:
                self._group()
                if self._cfg.broadcast:
                    self.owned = set(range(self._cfg.partitions))

    async def send(self, batch: list[tuple[int, bytes]]) -> None:
        engine = self._engine
        with engine._lock:
            engine._check()
            for partition, payload in batch:
                entry = (f"{next(engine._seq)}-0", payload)
                engine._streams.setdefault((self._cfg.namespace, partition), []).append(entry)
        engine._wake()

    async def receive(self, limit: int, wait: float) -> list[Incoming]:
        assert self._event is not None
        deadline = time.monotonic() + wait
        while True:
            self._event.clear()
            out = self._take(limit)
            if out:
                return out
            remaining = min(deadline, self._next_beat) - time.monotonic()
            if time.monotonic() >= deadline:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._event.wait(), max(0.001, remaining))

    def _take(self, limit: int) -> list[Incoming]:
        engine = self._engine
        cfg = self._cfg
        with engine._lock:
            engine._check()
            group = self._group()
            now = time.monotonic()
            if not cfg.broadcast and now >= self._next_beat:
                self._beat(group, now)
            if not self._backlog:
                for partition in sorted(self._to_claim):
                    self._claim(group, partition)
                self._to_claim.clear()
            if not self._backlog:
                for partition in sorted(self.owned):
                    entries = engine._streams.get((cfg.namespace, partition), [])
                    index = group.read_upto.get(partition, 0)
                    while True:
                        if index >= len(entries) or len(self._backlog) >= limit:
                            break
                        entry_id, payload = entries[index]
                        index += 1
                        if int(entry_id.split("-")[0]) < group.start:
                            continue
                        group.pending[entry_id] = _Pending(partition, self._me, 1, payload)
                        self._backlog.append(Incoming(partition, entry_id, payload))
                    group.read_upto[partition] = index
            out: list[Incoming] = []
            while True:
                if not self._backlog or len(out) >= limit:
                    break
                item = self._backlog.popleft()
                self._flying[item.partition].add(item.id)
                out.append(item)
            return out

    def _beat(self, group: _Group, now: float) -> None:
        cfg = self._cfg
        ttl = cfg.claim_after
        group.members[self._me] = now + ttl
        for name, expiry in list(group.members.items()):
            if expiry <= now:
                del group.members[name]
        share = math.ceil(cfg.partitions / len(group.members))
        owned: list[int] = []
        for p in range(cfg.partitions):
            lease = group.leases.get(p)
            if lease is not None and lease[0] == self._me and lease[1] > now:
                group.leases[p] = (self._me, now + ttl)
                owned.append(p)
        for p in range(cfg.partitions):
            if len(owned) >= share:
                break
            lease = group.leases.get(p)
            if lease is None or lease[1] <= now:
                group.leases[p] = (self._me, now + ttl)
                owned.append(p)
        new = set(owned)
        self._to_claim |= new - self.owned
        self._to_claim &= new
        self.owned = new
        extra = len(owned) - share
        for p in sorted(owned)[-extra:] if extra > 0 else ():
            busy = self._flying[p] or any(i.partition == p for i in self._backlog)
            if not busy and p not in self._to_claim:
                del group.leases[p]
                self.owned.discard(p)
        self._next_beat = now + beat_interval(ttl)

    def _claim(self, group: _Group, partition: int) -> None:
        mine = self._flying[partition]
        for entry_id, record in list(group.pending.items()):
            if record.partition != partition or entry_id in mine:
                continue
            if record.consumer != self._me:
                self.reclaimed += 1
            record.count += 1
            record.consumer = self._me
            self._backlog.append(Incoming(partition, entry_id, record.payload, attempt=record.count, reclaimed=True))

    async def ack(self, items: list[Incoming]) -> None:
        with self._engine._lock:
            self._engine._check()
            group = self._group()
            for item in items:
                group.pending.pop(item.id, None)
                self._flying[item.partition].discard(item.id)

    async def dead_letter(self, item: Incoming, reason: str, error: str | None, handler: str | None) -> None:
        engine = self._engine
        with engine._lock:
            engine._check()
            letter = DeadLetter(
                id=f"{next(engine._seq)}-0",
                reason=reason,
                error=error,
                handler=handler,
                attempts=item.attempt,
                group=self._cfg.group,
                partition=item.partition,
                message_id=item.id,
                payload=item.payload,
            )
            engine._dead.setdefault(self._cfg.namespace, []).append(letter)
            self._group().pending.pop(item.id, None)
            self._flying[item.partition].discard(item.id)

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        with self._engine._lock:
            self._engine._check()
            return list(self._engine._dead.get(self._cfg.namespace, [])[:limit])

    async def replay(self, ids: list[str]) -> int:
        engine = self._engine
        wanted = set(ids)
        with engine._lock:
            engine._check()
            letters = engine._dead.get(self._cfg.namespace, [])
            chosen, engine._dead[self._cfg.namespace] = _split_letters(letters, wanted)
            for letter in chosen:
                entry = (f"{next(engine._seq)}-0", letter.payload)
                engine._streams.setdefault((self._cfg.namespace, letter.partition), []).append(entry)
        engine._wake()
        return len(chosen)

    async def close(self, abandoned: list[Incoming]) -> None:
        engine = self._engine
        with engine._lock:
            key = (self._cfg.namespace, self._cfg.group or "")
            group = engine._groups.get(key)
            if group is not None:
                if self._cfg.broadcast:
                    del engine._groups[key]
                else:
                    _release(group, self.owned, self._me)
            self.owned.clear()
            engine._waiters = _without(engine._waiters, self._event)
        engine._wake()  # another consumer may take over at once


# Helpers of their own: a comprehension, or a loop ending in an `if`, directly under
# `with engine._lock:` would let an interrupt skip the release on CPython 3.13
# (tests/test_interrupt_shapes.py).


def _split_letters(letters: list[DeadLetter], wanted: set[str]) -> tuple[list[DeadLetter], list[DeadLetter]]:
    """The dead letters whose ids are *wanted*, and the others, in their order."""
    return [x for x in letters if x.id in wanted], [x for x in letters if x.id not in wanted]


def _release(group: _Group, owned: set[int], me: str) -> None:
    """Give up the leases on *owned* partitions that *me* holds, and leave the group."""
    for partition in owned:
        if group.leases.get(partition, ("", 0.0))[0] == me:
            del group.leases[partition]
    group.members.pop(me, None)


def _without(
    waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]], event: asyncio.Event | None
) -> set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]:
    return {w for w in waiters if w[1] is not event}
