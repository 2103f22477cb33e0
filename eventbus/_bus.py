"""`EventBus`: register subscribers, post events, and manage the bus's lifetime."""

from __future__ import annotations

import asyncio
import itertools
import os
import time
import weakref
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, TypeVar, final, overload

from . import _awaiting, _waiting
from ._bridge import Bridge
from ._checks import check_positive_int
from ._context import Pending, Tracer, child_of, in_handler, slot, trace_of
from ._delivery import Delivery, submit_traced
from ._dispatch import BusStats, Dispatcher, ErrorContext, log_error
from ._errors import BusClosedError
from ._events import DeadEvent, Message
from ._registry import Registry, Subscription
from ._routes import Routes
from ._sticky import check_sticky_class, post_sticky, weak_replayer
from ._strategies import (
    AsyncioDelivery,
    ConcurrentDelivery,
    DeliveryStrategy,
    OrderedDelivery,
    SyncDelivery,
    is_strategy,
)
from ._topology import Topology, build_topology

if TYPE_CHECKING:
    from ._engine import Engine
    from ._loops import HandlerLoops

__all__ = ["EventBus"]

StrategyName = Literal["sync", "ordered", "concurrent", "asyncio"]

_E = TypeVar("_E")

_MISSING: Final[Any] = object()
_bus_numbers = itertools.count(1)
_live_buses: weakref.WeakSet[EventBus] = weakref.WeakSet()  # for the fork hooks


def _drop(strategy: DeliveryStrategy, loops: HandlerLoops, watchers: _waiting.Watchers) -> None:
    # A bus was garbage-collected without shutdown(): deliver what it accepted and let
    # its threads end, as ThreadPoolExecutor does. Runs on whichever thread dropped it.
    # It holds neither the bus nor its registry: a subscriber that refers to its bus
    # must not keep the bus alive through this very finalizer.
    try:
        strategy.shutdown(False, None)
    finally:
        loops.close()
        watchers.close()


def _before_fork() -> None:
    # Hold the bus's own locks across fork() so that the child never inherits one of
    # them held by a thread that does not exist there, or a half-made change.
    for bus in list(_live_buses):
        bus._registry.before_fork()
        bus._dispatcher.before_fork()


def _after_fork_in_parent() -> None:
    for bus in list(_live_buses):
        bus._dispatcher.after_fork_in_parent()
        bus._registry.after_fork_in_parent()


def _after_fork_in_child() -> None:
    for bus in list(_live_buses):
        bus._after_fork_in_child()


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)


class FastPost(Protocol):
    """An optional capability of a strategy: build the bus's ``post`` as one function.

    The bus asks for it with ``getattr(strategy, "fast_post", None)``; see
    `SyncDelivery.fast_post` for the arguments and what the result must do.
    """

    def __call__(self, registry: Registry, slow: Callable[..., None], missing: object, /) -> Callable[..., None]: ...


def _weak_post(bus: EventBus) -> Callable[..., None]:
    """The bus's general ``post`` path, holding the bus weakly (for the sync strategy's fast post)."""
    ref = weakref.ref(bus)

    def post(event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> None:
        found = ref()
        if found is None:
            raise BusClosedError("the bus was garbage-collected; it accepts no more events")
        found._accept(event, data, timeout, publish=False)

    return post


def _make_strategy(
    strategy: object, workers: int, max_queued: int, loop: asyncio.AbstractEventLoop | None
) -> DeliveryStrategy:
    if strategy == "asyncio":
        return AsyncioDelivery(loop=loop, workers=workers, max_queued=max_queued)
    if loop is not None:
        raise ValueError(
            f"loop= goes with strategy='asyncio', not with {strategy!r}; "
            "pass AsyncioDelivery(loop=...) to give a strategy instance its loop"
        )
    if strategy == "sync":
        return SyncDelivery()
    if strategy == "concurrent":
        return ConcurrentDelivery(workers=workers, max_queued=max_queued)
    if strategy == "ordered":
        return OrderedDelivery(workers=workers, max_queued=max_queued)
    if isinstance(strategy, str):
        raise ValueError(
            f"unknown strategy {strategy!r}; use 'sync', 'ordered', 'concurrent', 'asyncio' or a DeliveryStrategy"
        )
    if not is_strategy(strategy):
        raise TypeError(f"strategy must be a strategy name or a DeliveryStrategy, not {strategy!r}")
    return strategy


@final
class EventBus:
    """An in-process event bus: subscribers register, publishers post events.

    ``EventBus()`` has the ancestor's defaults: the concurrent strategy with 8
    worker threads and room for 10,000 waiting events.

    Args:
        strategy: How handlers run: ``"concurrent"`` (the default) or
            ``"ordered"`` on a pool of worker threads, ``"sync"`` on the posting
            thread, ``"asyncio"`` on an event loop, or any `DeliveryStrategy`
            instance. ``async def`` handlers work on all of them (see the asyncio
            guide).
        workers: Worker threads of the thread-pool strategies.
        max_queued: How many accepted events may wait to start on the thread-pool
            strategies before ``post`` blocks (backpressure).
        on_error: Called as ``on_error(exc, context)`` for every handler failure;
            the default logs it with its traceback on the ``eventbus`` logger.
        name: A name for logs and reprs.
        loop: The event loop of the ``"asyncio"`` strategy; by default the loop
            running where the bus is created.

    A bus is a context manager: leaving the ``with`` block calls `shutdown`
    (``async with`` awaits `ashutdown`).
    """

    # __dict__ lets __init__ install the one-frame register() and, on the sync
    # strategy, post() on the instance; everything else lives in slots.
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_bridges",
        "_closed",
        "_dispatcher",
        "_dropped",
        "_kept_traces",
        "_registry",
        "_routes",
        "_strategy",
        "_submit",
        "_submit_traced",
        "_tracer",
        "_watchers",
        "name",
    )

    def __init__(
        self,
        *,
        strategy: StrategyName | DeliveryStrategy = "concurrent",
        workers: int = 8,
        max_queued: int = 10_000,
        on_error: Callable[[BaseException, ErrorContext], object] | None = None,
        name: str | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        check_positive_int("workers", workers)
        check_positive_int("max_queued", max_queued)
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable as on_error(exc, context), not {on_error!r}")
        self.name: str = name if name is not None else f"eventbus-{next(_bus_numbers)}"
        """The bus's name, as given or numbered."""
        self._registry = Registry()
        self._dispatcher = Dispatcher(self, on_error if on_error is not None else log_error)
        self._strategy = _make_strategy(strategy, workers, max_queued, loop)
        self._strategy.start(self._dispatcher)
        self._submit = self._strategy.submit
        # A strategy that carries traces itself takes the trace as a fifth argument;
        # for any other, a traced event travels in a Delivery made for it (see _hand_over).
        self._submit_traced: Callable[..., None] | None = (
            self._strategy.submit if getattr(self._strategy, "takes_traces", False) is True else None
        )
        self._tracer: Tracer | None = None  # set by eventbus.otel.instrument(); see _hand_over
        self._kept_traces: dict[type, tuple[object, Pending]] = {}  # sticky classes' kept events' traces
        self._closed = False
        self._watchers = _waiting.Watchers()
        self._routes: Routes[Bridge] | None = None  # bridged classes (#12)
        self._bridges: list[Bridge] = []
        # Two hot paths installed on the instance, each to take one call instead of
        # two; a subclass that overrides the method keeps its own.
        if type(self).register is EventBus.register:
            vars(self)["register"] = self._registry.add  # what register() below calls
        self._registry.replay = weak_replayer(self)  # sticky handlers' kept events (#15)
        fast_post: FastPost | None = getattr(self._strategy, "fast_post", None)
        if fast_post is not None and type(self).post is EventBus.post:
            # A strategy that can deliver a post in a single frame (the sync strategy)
            # builds it. It holds the bus only weakly, like everything below the bus,
            # so that a dropped bus can be collected.
            vars(self)["post"] = fast_post(self._registry, _weak_post(self), _MISSING)
        # Nothing below the bus refers to it, so a bus that its program drops is
        # collected; then its strategy delivers what it accepted and stops its threads.
        self._dropped = weakref.finalize(self, _drop, self._strategy, self._registry.loops, self._watchers)
        self._dropped.atexit = False  # at exit, the strategies' own exit drain runs
        _live_buses.add(self)

    # -- subscribers -------------------------------------------------------------------------

    def register(self, subscriber: object) -> None:
        """Add every ``@subscribe`` handler of *subscriber* (an object or a decorated function).

        The class is scanned once and the result cached. Registering an object
        twice changes nothing; an object with no handlers registers nothing.
        Handlers declared ``sticky=True`` also receive the event the bus keeps of
        their (sticky) class, through the strategy: on the sync strategy before
        this returns.

        Raises:
            SubscriptionError: A handler cannot receive what it subscribed to, or a
                class was given instead of an instance. Nothing was registered.
            QueueFullError: A kept event could not be queued for a sticky handler
                (a full queue, on the asyncio strategy's loop); nothing was registered.
        """
        if self._routes is not None:  # handlers of classes bridged without a group are refused (#12)
            self._routes.check(subscriber)
        self._registry.add(subscriber)
        if self._tracer is not None:  # an instrumentation wraps the new handlers (#14)
            record = self._registry.record(subscriber)
            if record is not None:
                self._tracer.registered(record)

    def unregister(self, subscriber: object) -> bool:
        """Remove every handler of *subscriber*; return `False` if it was not registered.

        Once this returns, *subscriber* receives nothing more, not even events that
        were already queued for it. Called from outside the bus's handlers, it first
        waits for a call of *subscriber* already running on another thread; called
        from a handler (one may unregister its own subscriber) it does not wait,
        since two handlers unregistering each other would wait forever.
        """
        record = self._registry.remove(subscriber)
        if record is None:
            return False
        self._strategy.forget(record)
        return True

    def is_registered(self, subscriber: object) -> bool:
        """Whether *subscriber* (by identity) is registered."""
        return self._registry.contains(subscriber)

    def subscribers(self, key: type | str) -> tuple[Subscription, ...]:
        """The handlers that an event of class *key*, or with topic *key*, would reach, in call order.

        Handlers of topic patterns (``"orders.*"``) that match the topic are included.
        """
        return self._registry.subscribers(key)

    def has_subscribers(self, key: type | str) -> bool:
        """Whether an event of class *key*, or with topic *key*, would reach any handler."""
        return bool(self._registry.subscribers(key))

    # -- posting -------------------------------------------------------------------------------

    def post(self, event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> None:
        """Post *event* to its subscribers and return (fire and forget).

        ``post("topic", data)`` posts ``Message("topic", data)``. Handlers run
        according to the bus's strategy; their failures go to ``on_error``. An
        event that matches no handler is posted again as ``DeadEvent(event=...)``.

        Args:
            event: An `Event`, any other object (routed by its class), or a topic string.
            data: The data of a `Message`, when *event* is a topic string.
            timeout: How long to wait for room in a full queue (thread-pool
                strategies); `None` waits as long as it takes.

        Raises:
            TypeError: *event* is `None`, or *data* was given with a non-string event.
            BusClosedError: The bus has been shut down.
            QueueFullError: No room in the queue within *timeout*; the event was not accepted.
        """
        # The hot path: a known event class with handlers. Everything else (topic
        # strings, None, Messages, dead events, a closed bus) takes _accept.
        handlers = self._registry.dispatch.get(type(event))  # type: ignore[call-overload]  # classes hash
        if handlers and data is _MISSING and not self._closed and (self._submit_traced or not in_handler(slot())):
            self._submit(event, handlers, None, timeout)  # a strategy that takes traces finds a poster's itself
        else:  # posted by a handler (its trace follows the event: #14), or not the common case
            self._accept(event, data, timeout, publish=False)

    def publish(self, event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> Delivery:
        """Post *event* like `post`, and return a `Delivery` to follow it.

        ``publish(event).result()`` waits for every handler and returns their
        return values in call order, or raises an `ExceptionGroup` of their
        exceptions (each with a note naming the handler). Errors still go to
        ``on_error`` as well. Takes the same arguments and raises the same errors
        as `post`.
        """
        delivery = self._accept(event, data, timeout, publish=True)
        assert delivery is not None
        return delivery

    def _accept(self, event: object, data: Any, timeout: float | None, *, publish: bool) -> Delivery | None:
        if self._closed:
            raise BusClosedError(
                f"{self.name} has been shut down and accepts no more events.\n"
                "Post before shutdown(), or create a new EventBus."
            )
        if isinstance(event, str):
            event = Message(event, None if data is _MISSING else data)
        elif data is not _MISSING:
            raise TypeError(f"data= goes with a topic string, not with {type(event).__qualname__}; put it in the event")
        elif event is None:
            raise TypeError("cannot post None; post an Event, a topic string or another object")
        state = self._dispatcher.state()
        # The trace (#14): a child of the event being handled here, if any; a root event
        # gets one only if it is published or traced, else its context is made when read.
        parent = trace_of(state.trace)
        trace = child_of(parent, self.name, time.time_ns()) if parent or publish or self._tracer else None
        if self._routes is not None:  # a bridged class goes to its bridge, not to local handlers (#12)
            bridge = self._routes.find(event)
            if bridge is not None:
                if trace is None:
                    trace = Pending(None, self.name, time.time_ns())
                return self._hand_over(event, (), None, timeout, trace, bridge, publish)
        if getattr(type(event), "__eventbus_sticky__", False):  # kept for later subscribers (#15)
            # A kept event is replayed later with its original context (#14): it has one now.
            return post_sticky(self, event, timeout, publish, trace or Pending(None, self.name, time.time_ns()))
        handlers = self._registry.handlers_for(event)
        dead = not handlers
        if dead:
            if type(event) is DeadEvent:
                handlers = ()
            else:
                event = DeadEvent(event=event)
                handlers = self._registry.handlers_for(event)
            if not handlers:  # nobody wants the dead event either: counted, dropped
                state.dead += 1
                state.posted += 1
                return Delivery(event, 0, trace) if publish else None
        delivery = Delivery(event, len(handlers), trace) if publish else None
        self._hand_over(event, handlers, delivery, timeout, trace)  # counts the event as posted
        if dead:  # counted once accepted: a QueueFullError retry must not count it twice
            state.dead += 1
        return delivery

    def _set_tracer(self, tracer: Tracer | None) -> None:
        """Install (`None`: remove) an instrumentation; with one, every post takes `_accept`."""
        self._tracer = tracer
        if tracer is not None:
            vars(self)["post"] = _weak_post(self)
            vars(self).pop("register", None)
            return
        vars(self).pop("post", None)
        fast_post: FastPost | None = getattr(self._strategy, "fast_post", None)
        if fast_post is not None and type(self).post is EventBus.post and not self._closed:
            vars(self)["post"] = fast_post(self._registry, _weak_post(self), _MISSING)
        if type(self).register is EventBus.register and self._routes is None:
            vars(self)["register"] = self._registry.add

    def _hand_over(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None,
        bridge: Bridge | None = None,
        publish: bool = False,
    ) -> Delivery | None:
        """Give an event to the strategy (or its bridge) with its trace; the accepted point is in there."""
        tracer = self._tracer
        span = None if tracer is None or trace is None else tracer.start_producer(self, event, trace, bridge)
        error: BaseException | None = None
        try:
            if bridge is not None:
                assert trace is not None
                return bridge._send(event, publish, timeout, trace)  # type: ignore[arg-type]  # bridged classes are Events
            submit_traced(self._submit, self._submit_traced, event, handlers, delivery, timeout, trace)
            return delivery
        except BaseException as exc:
            error = exc
            raise
        finally:
            if span is not None:
                tracer.end_producer(span, error)  # type: ignore[union-attr]  # span implies tracer

    # -- sticky events (#15) ---------------------------------------------------------------------

    def sticky(self, cls: type[_E]) -> _E | None:
        """Return the last accepted event of the sticky class *cls*, or `None` if none is kept.

        Events are kept per exact class: ``sticky(Settings)`` is the last
        ``Settings`` posted, never an instance of a subclass. Added in version 0.2.

        Raises:
            TypeError: *cls* is not declared ``sticky=True``.
        """
        check_sticky_class(cls, "sticky")
        entry = self._registry.kept.get(cls)
        return None if entry is None else entry[0]  # type: ignore[return-value]  # kept under its own class

    def remove_sticky(self, cls: type[_E]) -> _E | None:
        """Forget the kept event of the sticky class *cls*; return it, or `None` if none was kept.

        Subscribers registered afterwards receive nothing at registration until
        the next event of *cls* is posted. Added in version 0.2.

        Raises:
            TypeError: *cls* is not declared ``sticky=True``.
        """
        check_sticky_class(cls, "remove_sticky")
        self._kept_traces.pop(cls, None)
        return self._registry.forget_kept(cls)  # type: ignore[return-value]  # kept under its own class

    # -- bridges (#12) ---------------------------------------------------------------------------

    def bridge(
        self,
        engine: Engine,
        *,
        events: Iterable[type | str],
        group: str | None = None,
        broadcast: bool = False,
        namespace: str = "eventbus",
        partitions: int = 8,
        max_deliver: int = 5,
        claim_after: float = 30.0,
        max_payload: int = 1 << 20,
        consumer: str | None = None,
        window: int = 256,
        retry_delay: tuple[float, float] = (0.1, 10.0),
    ) -> Bridge:
        """Carry the *events* classes through a distributed *engine*; return the running `Bridge`.

        Posting an instance of a bridged class sends it to the engine instead of
        to local handlers. With ``group=``, this bus also reads them: each group
        gets every event once, one consumer of the group handles it, here through
        the bus's strategy, acknowledged once every handler succeeded. With
        ``broadcast=True`` every such bus gets every event. The scaling-out guide
        tells the whole contract.

        Args:
            engine: `eventbus.bridges.RedisStreams`, or `eventbus.testing.InMemoryEngine`.
            events: Event classes (`Message`: every topic), and `Message` topics as
                strings, plain or patterns (``"orders.*"``, ``"audit.>"``); a receiver
                skips other topics (the guide's "Bridging topics and patterns").
            group: The consumer group to read as; `None` (and no *broadcast*): send only.
            broadcast: Read every event in this bus, in a group of its own.
            namespace: The prefix of every stream.
            partitions: Streams per namespace; events with one ordering key share
                one, and each partition is read by one consumer of a group at a time.
                Every bridge of a namespace must use the same number.
            max_deliver: Attempts before an event goes to the dead letters.
            claim_after: Seconds after which a silent consumer's partitions and
                unacknowledged events pass to another consumer of its group.
            max_payload: The largest encoded event, in bytes.
            consumer: This consumer's name in its group (default: host, pid and a number).
            window: The most events read and not yet acknowledged.
            retry_delay: Base and cap, in seconds, of the backoff between attempts.

        Raises:
            ValueError: Bad options or topic strings, a class or topic bridged twice, or one topic for two kinds.
            SubscriptionError: A registered handler of a class or topic that would be sent without a group.
        """
        if self._closed:
            raise BusClosedError(f"{self.name} has been shut down; it takes no bridges")
        strategy_room = getattr(self._strategy, "max_queued", window)
        made = Bridge(
            self,
            engine,
            events,
            group=group,
            broadcast=broadcast,
            namespace=namespace,
            partitions=partitions,
            max_deliver=max_deliver,
            claim_after=claim_after,
            max_payload=max_payload,
            consumer=consumer,
            window=min(window, strategy_room) if isinstance(strategy_room, int) else window,
            max_outbound=strategy_room if isinstance(strategy_room, int) else 10_000,
            retry_delay=retry_delay,
        )
        routes: Routes[Bridge] = self._routes if self._routes is not None else Routes()
        try:
            routes.add(made, made.classes, made.receives, made.topics)
        except BaseException:
            made._discard()
            raise
        try:
            for record in self._registry.records() if not made.receives else ():
                for sub in record.subscriptions:
                    routes.check_handler(sub.name, sub.key, sub.subscriber)
        except BaseException:
            routes.remove(made)
            made._discard()
            raise
        self._routes = routes
        self._bridges.append(made)
        self._registry.bridged = routes.bridged
        self._registry.dispatch = {}  # cached handler tuples of the bridged classes go stale
        vars(self).pop("register", None)  # register() checks the routes now
        made._start()
        return made

    def _unbridge(self, bridge: Bridge) -> None:
        """Forget a closed bridge (its classes stay routed to it: posting them raises `BusClosedError`)."""
        if bridge in self._bridges:
            self._bridges.remove(bridge)

    # -- lifetime --------------------------------------------------------------------------------

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far has been handled; `False` on timeout."""
        return self._strategy.join(timeout)

    def shutdown(self, wait: bool = True, timeout: float | None = None) -> bool:
        """Stop accepting events, deliver those already accepted, and stop the workers.

        Idempotent. After it, `post` and `publish` raise `BusClosedError`.

        Args:
            wait: Wait for the accepted events to be delivered.
            timeout: The longest to wait, in seconds; `None` waits as long as it takes.

        Returns:
            `True` if every accepted event was delivered.
        """
        self._closed = True
        vars(self).pop("post", None)  # back to the checking post(), which refuses events now
        for bridge in list(self._bridges):  # bridges first: they finish what they read through the strategy (#12)
            bridge.close(timeout)
        self._dropped.detach()  # shut down by hand: nothing left to do when it is collected
        done = self._strategy.shutdown(wait, timeout)
        self._registry.loops.close()  # the event loops of async handlers (thread-based strategies)
        self._watchers.close()  # pending wait_for() calls fail, streams end
        return done

    def _after_fork_in_child(self) -> None:
        # In a forked child, on the thread that forked: only that thread exists here.
        self._dispatcher.after_fork_in_child()
        self._registry.after_fork_in_child()
        for part in (self._registry.loops, self._strategy):  # what each keeps per thread or process
            after_fork = getattr(part, "after_fork_in_child", None)
            if after_fork is not None:
                after_fork()

    @property
    def closed(self) -> bool:
        """Whether `shutdown` has been called."""
        return self._closed

    def __enter__(self) -> EventBus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown()

    # -- introspection -----------------------------------------------------------------------

    def stats(self) -> BusStats:
        """A snapshot of the bus's counters, exact after `join`."""
        posted, delivered, failed, dead = self._dispatcher.totals()
        queued, running = self._strategy.counts()
        return BusStats(
            posted=posted,
            delivered=delivered,
            failed=failed,
            dead=dead,
            queued=queued,
            running=running,
            subscribers=len(self._registry.records()),
        )

    # -- tracing (#14) -----------------------------------------------------------------------

    def describe(self) -> Topology:
        """A snapshot of what this bus is wired to: routes, handlers in call order, strategy, bridges.

        See `Topology`; ``eventbus describe MODULE:ATTRIBUTE`` prints it. Added in version 0.2.
        """
        keys = {sub.key for record in self._registry.records() for sub in record.subscriptions}
        return build_topology(self.name, self._strategy, self._closed, keys, self.subscribers, list(self._bridges))

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<EventBus {self.name!r} {type(self._strategy).__name__} {state}>"

    # -- asyncio ---------------------------------------------------------------------------------

    async def apost(self, event: object, data: Any = _MISSING, /, *, timeout: float | None = None) -> None:
        """Post *event* like `post`, waiting for room in a full queue without blocking the loop.

        On the ``"asyncio"`` strategy a `post` on the loop raises `QueueFullError` at
        once when ``max_queued`` events wait; ``await bus.apost(event)`` waits for
        room instead. Cancelling the waiting task leaves nothing half done: the event
        is either accepted whole or not at all.

        Raises:
            BusClosedError: The bus has been shut down.
            QueueFullError: No room came within *timeout* seconds; the event was not accepted.
        """
        await _awaiting.apost(self.post, self._strategy, event, data, timeout)

    async def ajoin(self, timeout: float | None = None) -> bool:
        """Wait until every event accepted so far has been handled, without blocking the loop.

        The awaitable counterpart of `join`; `False` on timeout.
        """
        return await _awaiting.ajoin(self._strategy, self.join, timeout, self.name)

    async def ashutdown(self, timeout: float | None = None) -> bool:
        """Stop accepting events, deliver those accepted, and stop, without blocking the loop.

        The awaitable counterpart of ``shutdown(wait=True, timeout=...)``. On the
        ``"asyncio"`` strategy, handler calls still running when *timeout* runs out
        are cancelled and awaited. Idempotent.

        Returns:
            `True` if every accepted event was delivered.
        """
        self._closed = True
        for bridge in list(self._bridges):  # bridges first (#12)
            await bridge.aclose(timeout)
        return await _awaiting.ashutdown(self._strategy, self.shutdown, timeout, self.name)

    @overload
    async def wait_for(
        self, key: type[_E], where: Callable[[_E], object] | None = None, timeout: float | None = None
    ) -> _E: ...

    @overload
    async def wait_for(
        self, key: str, where: Callable[[Any], object] | None = None, timeout: float | None = None
    ) -> Any: ...

    async def wait_for(
        self, key: type | str, where: Callable[[Any], object] | None = None, timeout: float | None = None
    ) -> Any:
        """Wait for the next event of class *key* (or with topic *key*) for which *where* is true.

        Subscribes for the duration of the wait only; any strategy. Events posted
        before the wait starts are not seen: to wait for the effect of a post, open
        a `stream` first.

        Args:
            key: An event class (its subclasses match too) or a topic string.
            where: A predicate on the event, called on the delivering thread; an
                exception it raises is raised here.
            timeout: The longest to wait, in seconds; `None` waits as long as it takes.

        Raises:
            TimeoutError: No matching event came within *timeout*.
            BusClosedError: The bus was (or got) shut down.
        """
        return await _waiting.wait_for(self, self._watchers, key, where, timeout)

    @overload
    def stream(
        self, key: type[_E], *, maxsize: int = 1000, where: Callable[[_E], object] | None = None
    ) -> _waiting.EventStream[_E]: ...

    @overload
    def stream(
        self, key: str, *, maxsize: int = 1000, where: Callable[[Any], object] | None = None
    ) -> _waiting.EventStream[Any]: ...

    def stream(
        self, key: type | str, *, maxsize: int = 1000, where: Callable[[Any], object] | None = None
    ) -> _waiting.EventStream[Any]:
        """Iterate over the events of class (or topic) *key* as they come.

        For example::

            async with bus.stream(OrderPlaced, maxsize=100) as orders:
                async for order in orders:
                    ...

        The stream subscribes when the ``async with`` block is entered and
        unsubscribes when it is left. Events wait in a buffer of *maxsize*; when it
        is full, the oldest is dropped and ``orders.dropped`` counts it, so a slow
        consumer never holds up the bus. Iteration ends when the bus shuts down.

        Args:
            key: An event class (its subclasses match too) or a topic string.
            maxsize: How many events the buffer holds.
            where: A predicate on the event, called on the delivering thread;
                events for which it is false are not buffered. An exception it
                raises is raised by the iteration.
        """
        return _waiting.EventStream(self, self._watchers, key, maxsize, where)

    async def __aenter__(self) -> EventBus:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.ashutdown()
