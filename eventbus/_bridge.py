"""`Bridge`: one bus across processes, through a distributed engine (SPEC section 11).

A bridge owns one daemon thread running its own asyncio loop, where all engine
I/O happens, and one feeder thread that hands events read from the engine to the
bus's strategy (on the sync strategy the handlers run on that thread; on the
others it only queues them). So a bridge works with every strategy and never
runs engine I/O on an asyncio bus's loop, nor handlers on its I/O loop.

Outbound: ``post`` of a bridged event encodes it on the posting thread (so that
bad data fails there), appends it to a bounded buffer and returns; the sender
task stores the buffer in pipelined batches. Inbound is `Receiving`, the bridge's
base class in ``_bridge_inbound``: reading within the window, per-key order,
acknowledgements, retries and dead letters. This module holds the rest: the
configuration, the loop and its reconnection, sending, closing and stats.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import itertools
import logging
import os
import queue
import socket
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar, final

from ._bridge_inbound import BATCH, Receiving, ReceivingHost, backoff
from ._delivery import Delivery
from ._engine import BridgeConfig, DeadLetter, Engine, EngineUnavailable
from ._errors import BusClosedError, QueueFullError
from ._routes import bridged_events
from ._wire import encode, partition_of, source_of

if TYPE_CHECKING:
    from ._context import Pending
    from ._events import Event

__all__ = ["Bridge", "BridgeHost", "BridgeStats"]

_logger: Final = logging.getLogger("eventbus.bridge")
_T = TypeVar("_T")
_consumer_numbers = itertools.count(1)
_SETUP_WAIT: Final = 10.0  # how long bridge() waits for the engine before going on in the background
_EXIT_CLOSE_SECONDS: Final = 10.0
"""At interpreter exit, how long the bridges still open have to store what they accepted and to
acknowledge what their handlers finished (all of them together)."""


@final
@dataclass(frozen=True, slots=True)
class BridgeStats:
    """A snapshot of a bridge's counters."""

    sent: int
    """Events stored in the engine by this bridge."""
    received: int
    """Messages read from the engine (redeliveries included)."""
    acked: int
    """Messages acknowledged after every local handler succeeded."""
    retried: int
    """Handler failures that were delivered again."""
    dead_lettered: int
    """Messages written to the dead letters (bad input or out of attempts)."""
    reclaimed: int
    """Messages taken over from consumers that died."""
    outbound: int
    """Events accepted and not yet stored."""
    in_flight: int
    """Messages read and not yet acknowledged or dead-lettered."""
    outages: int
    """Times the engine became unreachable."""
    skipped: int = 0
    """Messages of topics the bridge does not list: acknowledged, not handled (counted as ``acked`` too)."""


class BridgeHost(ReceivingHost, Protocol):
    """What a bridge needs of its bus (`EventBus` is one): a name, the registry, a way to submit."""

    name: str

    def _unbridge(self, bridge: Bridge) -> None: ...


@final
class Bridge(Receiving):
    """A running bridge between a bus and a distributed engine; made by `EventBus.bridge`.

    Close it with `close` (or `aclose`, or ``with`` / ``async with``); closing
    the bus closes its bridges first. Added in version 0.2.
    """

    def __init__(
        self,
        bus: BridgeHost,
        engine: Engine,
        events: Iterable[type | str],
        *,
        group: str | None,
        broadcast: bool,
        namespace: str,
        partitions: int,
        max_deliver: int,
        claim_after: float,
        max_payload: int,
        consumer: str | None,
        window: int,
        max_outbound: int,
        retry_delay: tuple[float, float],
    ) -> None:
        classes, types, self._topics = bridged_events(events)
        if group is not None and broadcast:
            raise ValueError("give group= or broadcast=True, not both")
        if group is not None and (not isinstance(group, str) or not group):  # type: ignore[redundant-expr]  # untyped callers
            raise ValueError(f"group= must be a non-empty string, not {group!r}")
        for name, value in (("partitions", partitions), ("max_deliver", max_deliver), ("max_payload", max_payload)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:  # type: ignore[redundant-expr]  # untyped callers
                raise ValueError(f"{name}= must be a positive int, not {value!r}")
        if not claim_after > 0:
            raise ValueError(f"claim_after= must be positive seconds, not {claim_after!r}")
        self._bus: BridgeHost = bus
        self._engine = engine
        self.classes: tuple[type[Event], ...] = tuple(classes)
        """The bridged event classes."""
        self.topics: tuple[str, ...] = self._topics.texts
        """The bridged `Message` topics and topic patterns (SPEC section 13)."""
        self._types = types
        self.receives: bool = group is not None or broadcast
        """Whether this bridge reads events (it has a group, or broadcasts)."""
        consumer = consumer or f"{socket.gethostname()}-{os.getpid()}-{next(_consumer_numbers)}"
        self.config: BridgeConfig = BridgeConfig(
            namespace=namespace,
            group=(f"broadcast.{consumer}" if broadcast else group),
            broadcast=broadcast,
            partitions=partitions,
            consumer=consumer,
            claim_after=float(claim_after),
        )
        """What the bridge asked its engine for."""
        self._max_deliver = max_deliver
        self._max_payload = max_payload
        self._source = source_of(bus.name)
        self._window = max(1, window)
        self._max_outbound = max(1, max_outbound)
        self._retry_delay = retry_delay
        self._counter = itertools.count()
        # Outbound buffer: any thread appends under _space; the sender task takes.
        self._space = threading.Condition(threading.Lock())
        self._out: deque[tuple[int, bytes, Delivery | None]] = deque()
        self._sending = 0  # taken from _out and not yet stored
        self._sender_idle = True
        self._closing = False  # no more posts
        self._closed = False
        self._killed = False
        self._pid = os.getpid()  # the process whose threads and connections these are
        # Counters (written on the loop thread, or under _space for outbound).
        self._sent = self._received = self._acked = self._retried = self._dead = self._outages = self._skipped = 0
        # Inbound state, on the loop thread only.
        self._in_flight = 0
        self._batching = False  # inside a batch: jobs for the feeder wait for its end
        self._busy = {}  # ordering key -> items waiting behind the running one
        self._timers = {}
        self._acks = []
        self._abandoned = []  # left unacknowledged at close, for the next owner
        self._deads = []
        self._naks = []  # given back to the engine for a later delivery
        self._outage_since: float | None = None
        self._outage_attempts = 0
        self._session = engine.session(self.config)
        # An engine that redelivers on request (NATS: nak with a delay) keeps a retry's state and
        # its attempt count on the server; others get retries from a local timer.
        self._engine_retry = getattr(self._session, "retry", None)
        self._feed = queue.SimpleQueue()
        self._jobs = []  # for the feeder, handed over once per batch read
        self._done = deque()  # finished deliveries, for the loop
        self._done_lock = threading.Lock()
        self._done_scheduled = False
        self._handler_cache = {}
        self._handler_cache_of = None
        # Made here, used on the loop only (asyncio.Event binds to a loop at first use), so
        # that a post racing with the start of the loop finds them.
        self._wake_send = asyncio.Event()
        self._wake_settle = asyncio.Event()
        self._room = asyncio.Event()
        self._stopped = asyncio.Event()
        self._main_task: asyncio.Task[None] | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(target=self._run, name=f"eventbus-bridge-{consumer}", daemon=True)
        self._feeder = threading.Thread(target=self._feed_loop, name=f"eventbus-bridge-feed-{consumer}", daemon=True)

    # -- starting ---------------------------------------------------------------------------

    def _start(self) -> None:
        _watch_at_exit(self)
        self._thread.start()
        if self.receives:
            self._feeder.start()
        if not self._ready.wait(_SETUP_WAIT):
            _logger.warning("%r: the engine did not answer within %s s; going on in the background", self, _SETUP_WAIT)

    def _discard(self) -> None:
        """Drop a bridge that was never started."""
        self._closed = True
        self._loop.close()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except asyncio.CancelledError:  # closed before the engine was ever reached
            pass
        except BaseException:  # a killed bridge's loop was stopped: nothing to report
            if not self._killed:
                _logger.exception("%r: its loop failed", self)
        finally:
            if self._killed:  # as the OS would at a crash: drop the connections, give nothing up
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(self._abandon())
            with contextlib.suppress(Exception):
                self._loop.close()

    async def _abandon(self) -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        abandon = getattr(self._session, "abandon", None)
        if abandon is not None:
            await abandon()

    async def _main(self) -> None:
        self._main_task = asyncio.current_task()
        await self._engine_call(self._session.start)
        self._ready.set()
        self._tasks.append(asyncio.create_task(self._sender()))
        if self.receives:
            self._tasks.append(asyncio.create_task(self._receiver()))
            self._tasks.append(asyncio.create_task(self._settler()))
        await self._stopped.wait()

    # -- engine calls with reconnection ------------------------------------------------------

    async def _engine_call(self, op: Callable[..., Awaitable[_T]], *args: Any) -> _T:
        """Run *op*; while the engine is unreachable, back off and retry (logging the outage once)."""
        attempt = 0
        while True:
            try:
                result = await op(*args)
            except EngineUnavailable as exc:
                attempt += 1
                if self._outage_since is None:
                    self._outage_since = time.monotonic()
                    self._outage_attempts = 0
                    self._outages += 1
                    _logger.warning("%r: engine unreachable (%s); retrying with backoff", self, exc)
                self._outage_attempts += 1
                self._ready.set()  # bridge() must not wait out an outage
                await asyncio.sleep(backoff(attempt, 0.05, 2.0))
                with contextlib.suppress(EngineUnavailable):
                    await self._session.start()
                continue
            if self._outage_since is not None:
                _logger.warning(
                    "%r: engine reachable again after %.1f s (%d attempts)",
                    self,
                    time.monotonic() - self._outage_since,
                    self._outage_attempts,
                )
                self._outage_since = None
            return result

    # -- sending -------------------------------------------------------------------------------

    def _send(self, event: Event, publish: bool, timeout: float | None, trace: Pending) -> Delivery | None:
        """Accept *event* into the outbound buffer (called by the bus's post and publish).

        The event's context (its id, cause and chain) and *trace*'s headers travel with it (#14).
        """
        payload, key = encode(event, self._source, self._max_payload, trace.context(), trace.headers)
        partition = partition_of(key, self.config.partitions, next(self._counter))
        delivery = Delivery(event, 1, trace) if publish else None
        wake = False
        with self._space:
            if self._closing:
                raise self._refusal()
            if len(self._out) + self._sending >= self._max_outbound:  # a batch being sent still counts
                on_loop = _on_a_running_loop()
                deadline = None if timeout is None else time.monotonic() + timeout
                while True:
                    if len(self._out) + self._sending < self._max_outbound:
                        break
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if on_loop or (remaining is not None and remaining <= 0):
                        raise QueueFullError(
                            f"{self._max_outbound} events wait to be sent by {self!r}; this event was not accepted"
                        )
                    self._space.wait(remaining)
                    if self._closing:
                        raise self._refusal()
            self._out.append((partition, payload, delivery))
            if self._sender_idle:
                self._sender_idle = False
                wake = True
        if wake:
            self._call_soon(self._wake_send.set)
        return delivery

    async def _sender(self) -> None:
        while True:
            await self._wake_send.wait()
            self._wake_send.clear()
            while True:
                with self._space:
                    n = min(len(self._out), BATCH)
                    if not n:
                        self._sender_idle = True
                        break
                    batch = [self._out.popleft() for _ in range(n)]
                    self._sending = n
                    self._space.notify_all()
                try:
                    await self._engine_call(self._session.send, [(p, payload) for p, payload, _ in batch])
                except BaseException:  # cancelled by close() during an outage: back in line, for _fail_unsent
                    with self._space:
                        self._out.extendleft(reversed(batch))
                        self._sending = 0
                        self._space.notify_all()
                    raise
                with self._space:
                    self._sent += n
                    self._sending = 0
                    self._space.notify_all()
                for _, _, delivery in batch:
                    if delivery is not None:
                        delivery._settle(0)

    # -- closing ---------------------------------------------------------------------------------

    async def _close(self, deadline: float | None) -> bool:
        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        clean = True
        with self._space:
            self._closing = True
            self._space.notify_all()
        for task in self._tasks[1:2]:  # the receiver: stop reading
            task.cancel()
        for handle, item in self._timers.values():  # waiting to retry: left for the next owner
            handle.cancel()
            self._in_flight -= 1
            self._abandoned.append(item.incoming)
            self._release_key(item.key, abandon=True)
        self._timers.clear()
        # Finish the events in flight (their handlers are running) and acknowledge them.
        while self._in_flight > 0 or self._acks or self._deads or self._naks:
            self._room.clear()
            self._wake_settle.set()
            try:
                await asyncio.wait_for(self._room.wait(), left())
            except TimeoutError:
                clean = False
                break
        # Flush what was accepted for sending.
        self._wake_send.set()
        while True:
            with self._space:
                pending = len(self._out) + self._sending
            if not pending:
                break
            remaining = left()
            if remaining is not None and remaining <= 0:
                clean = False
                break
            await asyncio.sleep(0.002 if remaining is None else min(0.002, remaining))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        unsent = self._fail_unsent()
        try:
            await asyncio.wait_for(self._session.close(self._abandoned), left() if left() is not None else 10.0)
        except (EngineUnavailable, TimeoutError) as exc:
            _logger.warning("%r: could not give up its engine session cleanly: %s", self, exc)
            clean = False
        self._stopped.set()
        if not self._tasks and self._main_task is not None:  # still waiting for the engine at start
            self._main_task.cancel()
        return clean and not unsent

    def _fail_unsent(self) -> int:
        with self._space:
            unsent = list(self._out)
            self._out.clear()
            self._space.notify_all()
        error = BusClosedError(f"{self!r} closed before the engine stored this event")
        for _, _, delivery in unsent:
            if delivery is not None:
                delivery._settle(0, error=error)
        if unsent:
            _logger.error("%r: closed with %d events not stored", self, len(unsent))
        return len(unsent)

    def close(self, timeout: float | None = None) -> bool:
        """Stop reading, finish and acknowledge the events in flight, flush what waits to be sent, disconnect.

        Idempotent. Returns `True` if nothing was left: every accepted event was
        stored and every event in flight acknowledged within *timeout* seconds.
        """
        if self._closed:
            return True
        self._closed = True
        if self._killed:
            return False
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            future = asyncio.run_coroutine_threadsafe(self._close(deadline), self._loop)
        except RuntimeError:  # the loop is gone
            return False
        try:
            clean = future.result(None if timeout is None else timeout + 10.0)
        except Exception:
            _logger.exception("%r: closing failed", self)
            clean = False
        self._finish()
        return clean

    async def aclose(self, timeout: float | None = None) -> bool:
        """`close` without blocking the event loop."""
        return await asyncio.to_thread(self.close, timeout)

    def _finish(self) -> None:
        self._flush_jobs()
        self._feed.put(None)
        if threading.current_thread() is not self._feeder and self._feeder.is_alive():
            self._feeder.join(5.0)
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)
        _open_bridges.discard(self)
        self._bus._unbridge(self)

    def _kill(self) -> None:
        """Stop at once, as if the process had died: nothing acknowledged, nothing given up (tests)."""
        self._killed = True
        with self._space:
            self._closing = True
            self._space.notify_all()
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5.0)
        self._feed.put(None)
        _open_bridges.discard(self)
        self._bus._unbridge(self)

    def _after_fork_in_child(self) -> None:
        """In a forked child: the loop, threads and connections are the parent's, so here the bridge is closed.

        What the parent accepted stays the parent's to send. Nothing of the parent's
        session is touched (closing its connections could disturb the parent's). A
        post of a bridged class raises `BusClosedError`, which says to bridge again.
        """
        self._space = threading.Condition(threading.Lock())  # a parent thread may have held it
        self._out = deque()
        self._sending = 0
        self._closing = self._closed = True

    def _refusal(self) -> BusClosedError:
        if self._pid != os.getpid():
            return BusClosedError(
                f"{self!r} belongs to process {self._pid}, which forked this one; its threads and connections "
                "are not here: call bus.bridge(...) again in this process"
            )
        return BusClosedError(f"{self!r} is closed and sends no more events")

    def _call_soon(self, callback: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: the bridge is closed
            self._loop.call_soon_threadsafe(callback)

    def __enter__(self) -> Bridge:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    async def __aenter__(self) -> Bridge:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    # -- introspection and dead letters ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """Whether `close` has been called."""
        return self._closed

    def stats(self) -> BridgeStats:
        """A snapshot of the bridge's counters."""
        with self._space:
            outbound = len(self._out) + self._sending
            sent = self._sent
        return BridgeStats(
            sent=sent,
            received=self._received,
            acked=self._acked,
            retried=self._retried,
            dead_lettered=self._dead,
            reclaimed=getattr(self._session, "reclaimed", 0),
            outbound=outbound,
            in_flight=self._in_flight,
            outages=self._outages,
            skipped=self._skipped,
        )

    def _on_loop(self, coro: Awaitable[_T], timeout: float) -> _T:
        if self._closed or self._killed:
            raise BusClosedError(f"{self!r} is closed")

        async def run() -> _T:
            return await coro

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout)

    def dead_letters(self, limit: int = 100, timeout: float = 30.0) -> list[DeadLetter]:
        """The oldest *limit* dead letters of the bridge's namespace (all groups)."""
        return self._on_loop(self._engine_call(self._session.dead_letters, limit), timeout)

    def replay(self, ids: Iterable[str], timeout: float = 30.0) -> int:
        """Send the dead letters *ids* again and remove them from the dead letters; return how many.

        A replayed event goes back into its partition, so every group of the
        namespace receives it again (handlers are idempotent: at least once).
        """
        return self._on_loop(self._engine_call(self._session.replay, list(ids)), timeout)

    def __repr__(self) -> str:
        config = self.config
        role = "broadcast" if config.broadcast else (f"group={config.group!r}" if config.group else "send-only")
        state = "closed" if self._closed else "open"
        return (
            f"<Bridge {self._engine.describe()} {role} namespace={config.namespace!r} "
            f"partitions={config.partitions} {state}>"
        )


_open_bridges: set[Bridge] = set()
"""Bridges started and not closed yet, for `_close_at_exit` (their threads keep them alive anyway)."""
_hooked: list[bool] = [False]


def _watch_at_exit(bridge: Bridge) -> None:
    """Close *bridge* at interpreter exit if it is still open then.

    The hook is registered when the first bridge starts, after the thread pools'
    exit drain (registered when eventbus is imported): ``atexit`` runs the last
    registered first, so the bridges close while the strategies still run the
    handlers of the events in flight.
    """
    _open_bridges.add(bridge)
    if not _hooked[0]:
        _hooked[0] = True
        atexit.register(_close_at_exit)


def _close_at_exit() -> None:
    """Store what open bridges accepted and acknowledge what they handled, before the interpreter ends.

    Without it, the events a program posted just before it ended without
    ``shutdown()`` would die with the bridges' daemon threads. Bounded by
    `_EXIT_CLOSE_SECONDS` in all: an unreachable engine delays exit, never hangs it
    (the bridge logs how many events it could not store).
    """
    deadline = time.monotonic() + _EXIT_CLOSE_SECONDS
    for bridge in list(_open_bridges):
        bridge.close(timeout=max(0.0, deadline - time.monotonic()))


def _forget_the_parents_bridges() -> None:
    bridges = list(_open_bridges)
    _open_bridges.clear()
    for bridge in bridges:
        bridge._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_forget_the_parents_bridges)


def _on_a_running_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
