"""The receiving side of a `Bridge`: from the engine, through the bus's handlers, to the acknowledgement.

Everything here runs on the bridge's I/O loop, except `Receiving._feed_loop` (the
feeder thread, which hands events to the bus's strategy) and
`Receiving._delivered` (called on whichever thread finished a delivery). The
receiver reads no more than the bridge's window; events with one ordering key go
to the bus one at a time, in stored order (a failed one is retried before the
next starts); each is acknowledged once every local handler succeeded, retried
with backoff on failure, and dead-lettered after ``max_deliver`` attempts.

`Receiving` is a part of `Bridge` (its base class): it declares the fields it
shares with the rest of the bridge, which `Bridge.__init__` sets, and the one
method of the bridge it calls (`_engine_call`, reconnection included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import random
import threading
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from ._delivery import Delivery
from ._events import DeadEvent, Event, Message
from ._wire import BadMessage, decode, trace_of_envelope

if TYPE_CHECKING:
    from ._context import Pending
    from ._engine import BridgeConfig, EngineSession, Incoming
    from ._registry import Registry, Subscription
    from ._routes import TopicSet

__all__ = ["BATCH", "Job", "Receiving", "ReceivingHost", "backoff"]

_logger: Final = logging.getLogger("eventbus.bridge")
_T = TypeVar("_T")
Job = tuple[object, "tuple[Subscription, ...]", Delivery | None]
"""What the feeder submits to the bus: an event, its handlers, its delivery."""
BATCH: Final = 512
"""Events per pipelined send; acknowledgements are gathered up to a quarter of it."""


def backoff(attempt: int, base: float, cap: float) -> float:
    """Capped exponential backoff with full jitter in its upper half."""
    delay: float = min(cap, base * 2.0 ** min(attempt, 30))
    return delay * random.uniform(0.5, 1.0)


class ReceivingHost(Protocol):
    """What receiving needs of the bus: its registry, a way to submit, the kept sticky events' traces."""

    _registry: Registry
    _submit: Callable[..., None]
    _kept_traces: dict[type, tuple[object, Pending]]


class _Item:
    """An incoming message on its way through the bus; called with its delivery when that is done."""

    __slots__ = ("bridge", "delivery", "event", "handlers", "incoming", "key", "trace")

    def __init__(self, bridge: Receiving, incoming: Incoming, event: Event, key: str | None) -> None:
        self.bridge = bridge
        self.incoming = incoming
        self.event = event
        self.key = key
        self.handlers: tuple[Subscription, ...] = ()
        self.delivery: Delivery | None = None
        self.trace: Pending | None = None

    def __call__(self, delivery: Delivery) -> None:
        self.bridge._delivered(self)


class Receiving:
    """The receiving half of `Bridge` (see the module's docstring)."""

    if TYPE_CHECKING:
        # Set by Bridge.__init__.
        config: BridgeConfig
        topics: tuple[str, ...]
        _bus: ReceivingHost
        _session: EngineSession
        _engine_retry: Callable[[Incoming, float], Awaitable[None]] | None
        _loop: asyncio.AbstractEventLoop
        _types: dict[str, type[Event]]
        _topics: TopicSet
        _window: int
        _max_deliver: int
        _max_payload: int
        _retry_delay: tuple[float, float]
        _closing: bool
        _killed: bool
        _received: int
        _acked: int
        _retried: int
        _dead: int
        _skipped: int
        # The inbound state, on the loop thread only unless said otherwise.
        _in_flight: int
        _batching: bool
        _busy: dict[str, deque[_Item]]
        _timers: dict[int, tuple[asyncio.TimerHandle, _Item]]
        _acks: list[Incoming]
        _abandoned: list[Incoming]
        _deads: list[tuple[Incoming, str, str | None, str | None]]
        _naks: list[tuple[Incoming, float]]
        _feed: queue.SimpleQueue[list[Job] | None]
        _jobs: list[Job]
        _done: deque[_Item]
        _done_lock: threading.Lock
        _done_scheduled: bool
        _handler_cache: dict[type, tuple[Subscription, ...]]
        _handler_cache_of: object
        _wake_settle: asyncio.Event
        _room: asyncio.Event

        async def _engine_call(self, op: Callable[..., Awaitable[_T]], *args: Any) -> _T: ...

    async def _receiver(self) -> None:
        while not self._closing:
            room = self._window - self._in_flight
            if room <= 0:
                self._room.clear()
                await self._room.wait()
                continue
            items = await self._engine_call(self._session.receive, room, 1.0)
            self._batching = True
            try:
                self._take(items)
            finally:
                self._batching = False
                self._flush_jobs()

    def _take(self, items: list[Incoming]) -> None:
        for incoming in items:
            self._received += 1
            self._in_flight += 1
            if incoming.attempt > self._max_deliver:  # its consumers died with it every time
                reason = f"delivered {incoming.attempt - 1} times, never acknowledged (consumers died)"
                self._settle(incoming, dead=(reason, None, None))
                continue
            try:
                event, envelope = decode(incoming.payload, self._types, self._max_payload)
            except BadMessage as exc:
                _logger.warning("%r: message %s goes to dead letters: %s", self, incoming.id, exc)
                self._settle(incoming, dead=(str(exc), None, None))
                continue
            if self.topics and type(event) is Message and not self._topics.matches(event.topic):
                self._skipped += 1  # another bridge's topic in a shared namespace: acknowledged, skipped
                self._settle(incoming)
                continue
            key = envelope.get("partitionkey")
            item = _Item(self, incoming, event, key if isinstance(key, str) else None)
            item.trace = trace_of_envelope(envelope, incoming.attempt, self.config.group)  # the sender's context (#14)
            if item.key is not None:
                waiting = self._busy.get(item.key)
                if waiting is not None:
                    waiting.append(item)
                    continue
                self._busy[item.key] = deque()
            self._dispatch(item)

    def _dispatch(self, item: _Item) -> None:
        """Hand *item* to the bus (through the feeder thread)."""
        event = item.event
        registry = self._bus._registry
        if self._handler_cache_of is not registry.dispatch:  # registrations changed: collect again
            self._handler_cache = {}
            self._handler_cache_of = registry.dispatch
        cls = type(event)
        if getattr(cls, "__eventbus_sticky__", False) and item.incoming.attempt == 1 and item.delivery is None:
            # Kept like a posted sticky event, handlers resolved under one lock (#15); on a first
            # delivery only: a retry must not put an older event back over a newer one.
            found: tuple[Subscription, ...] | None = registry.keep(event, [None, None])
            if item.trace is not None:  # replayed with the context it came with (#14)
                self._bus._kept_traces[cls] = (event, item.trace)
        else:
            found = self._handler_cache.get(cls) if cls is not Message else None
        if found is None:
            found = registry.collect(cls.__mro__, event.topic)
            if cls is not Message:
                self._handler_cache[cls] = found
        item.handlers = found
        if not found:
            dead = DeadEvent(event=event)
            dead_handlers = registry.handlers_for(dead)
            if dead_handlers:
                self._jobs.append((dead, dead_handlers, None))
            self._settle(item.incoming, key=item.key)
            return
        trace = item.trace
        if trace is not None:  # a retry is the same event on a later attempt (#14)
            trace = item.trace = trace.again(item.incoming.attempt)
        delivery = item.delivery = Delivery(event, len(found), trace)
        delivery.add_done_callback(item)  # item(delivery) queues it for _drain_done
        self._jobs.append((event, found, delivery))
        if not self._batching:
            self._flush_jobs()

    def _delivered(self, item: _Item) -> None:
        """Called on the thread that finished *item*'s delivery: queue it for the loop."""
        # One wake-up of the loop for all the deliveries that finish meanwhile.
        self._done.append(item)
        with self._done_lock:
            if self._done_scheduled:
                return
            self._done_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop is gone: the bridge was killed
            self._loop.call_soon_threadsafe(self._drain_done)

    def _flush_jobs(self) -> None:
        if self._jobs:
            self._feed.put(self._jobs)
            self._jobs = []

    def _drain_done(self) -> None:
        with self._done_lock:
            self._done_scheduled = False
        done = self._done
        if self._killed:  # as if the process had died: what finished is never acknowledged
            done.clear()
            return
        self._batching = True
        try:
            while True:
                if not done:
                    break
                self._finished(done.popleft())
        finally:
            self._batching = False
            self._flush_jobs()

    def _finished(self, item: _Item) -> None:
        assert item.delivery is not None
        errors = item.delivery._errors
        if not errors:
            self._settle(item.incoming, key=item.key)
            return
        index, error = min(errors, key=lambda pair: pair[0])
        handler = item.handlers[index].name if index < len(item.handlers) else None
        incoming = item.incoming
        if incoming.attempt >= self._max_deliver or self._closing:
            if self._closing and incoming.attempt < self._max_deliver:
                # Closing: leave it unacknowledged; the next owner delivers it again.
                self._in_flight -= 1
                self._release_key(item.key, abandon=True)
                self._room.set()
                return
            self._settle(
                incoming,
                key=item.key,
                dead=("handler failed", f"{type(error).__qualname__}: {error}", handler),
            )
            return
        self._retried += 1
        incoming.attempt += 1
        delay = backoff(incoming.attempt - 2, *self._retry_delay)
        if self._engine_retry is not None and not (item.key is not None and self._busy.get(item.key)):
            # The engine delivers it again after the delay (nothing of its key waits here to
            # overtake it; the engine keeps the order of a partition itself).
            self._naks.append((incoming, delay))
            self._wake_settle.set()
            self._release_key(item.key)
            return
        token = id(item)
        self._timers[token] = (self._loop.call_later(delay, self._retry, token), item)

    def _retry(self, token: int) -> None:
        _, item = self._timers.pop(token)
        self._dispatch(item)

    def _settle(
        self,
        incoming: Incoming,
        *,
        key: str | None = None,
        dead: tuple[str, str | None, str | None] | None = None,
    ) -> None:
        """Queue the acknowledgement (or dead letter) of *incoming*, and start what waited behind it."""
        if dead is None:
            self._acks.append(incoming)
        else:
            self._deads.append((incoming, *dead))
        self._wake_settle.set()
        self._release_key(key)

    def _release_key(self, key: str | None, abandon: bool = False) -> None:
        if key is None:
            return
        waiting = self._busy.get(key)
        if waiting is None:
            return
        if waiting and not abandon and not self._closing:
            self._dispatch(waiting.popleft())
        else:
            del self._busy[key]
            # Closing: what waited behind the key stays unacknowledged, for the next owner.
            for item in waiting:
                self._in_flight -= 1
                self._abandoned.append(item.incoming)
            if waiting:
                self._room.set()

    async def _settler(self) -> None:
        while True:
            await self._wake_settle.wait()
            self._wake_settle.clear()
            if len(self._acks) < BATCH // 4 and not self._closing:
                await asyncio.sleep(0.001)  # gather a batch: one round trip acknowledges them all
            while (self._acks or self._deads or self._naks) and not self._killed:
                acks, self._acks = self._acks, []
                deads, self._deads = self._deads, []
                naks, self._naks = self._naks, []
                if naks:
                    await self._give_back(naks)
                if acks:
                    await self._engine_call(self._session.ack, acks)
                    self._acked += len(acks)
                for incoming, reason, error, handler in deads:
                    await self._engine_call(self._session.dead_letter, incoming, reason, error, handler)
                    self._dead += 1
                self._in_flight -= len(acks) + len(deads) + len(naks)
                self._room.set()

    async def _give_back(self, naks: list[tuple[Incoming, float]]) -> None:
        retry = self._engine_retry
        assert retry is not None
        for incoming, delay in naks:
            await self._engine_call(retry, incoming, delay)

    def _feed_loop(self) -> None:
        while True:
            jobs = self._feed.get()
            if jobs is None:
                return
            submit = self._bus._submit
            for event, handlers, delivery in jobs:
                if self._killed:  # as if the process had died: nothing more reaches the bus
                    break
                try:
                    submit(event, handlers, delivery, None)
                except Exception as exc:  # the bus closed under us: count it as a failed attempt
                    if delivery is None:
                        _logger.exception("%r: handing an event to the bus failed", self)
                        continue
                    for index in range(len(handlers)):
                        delivery._settle(index, error=exc)
