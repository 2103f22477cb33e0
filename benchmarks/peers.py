"""One adapter per library and workload: the idiomatic way to subscribe and post with each.

Every adapter builds its own bus (or emitter, signal, queue), connects trivial
handlers that only count their calls, and returns a small record that the
harness in `benchmarks.workloads` drives and checks: the harness compares the
handlers' call count with what it posted, so lost events show up as such.

The peers are imported inside their adapters. A peer that is not installed only
skips its own rows (`Unavailable`); eventbus and the floors need nothing but the
standard library.

Kinds of subject:

- ``eventbus``: this project;
- ``peer``: another library people use for the same job (psygnal, blinker, pyee,
  pypubsub, PyDispatcher, geeteventbus 1.0, abxbus);
- ``floor``: the least code that does the job by hand (a direct call, a
  dict-of-lists loop, ``queue.SimpleQueue`` + threads, ``ThreadPoolExecutor``,
  ``loop.call_soon``). Nothing built on Python can beat its floor by much.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import types
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from queue import SimpleQueue
from typing import Any, NamedTuple

from eventbus import Event, EventBus, Message, subscribe

ASYNC_TIMEOUT = 120.0  # seconds; a run that has not delivered by then is reported, not waited for
SHUTDOWN_TIMEOUT = 120.0


class Unavailable(Exception):
    """Raised by an adapter whose subject cannot run here (not installed, not implemented)."""


def _nothing() -> None:
    pass


# -- what the harness drives ---------------------------------------------------------------


@dataclass
class SyncRun:
    """A bus with handlers connected, ready to post on the calling thread."""

    run: Callable[[int], None]
    """Post *n* events (a multiple of the number of keys), round-robin over the keys."""
    delivered: Callable[[], int]
    """Handler calls so far."""
    close: Callable[[], object] = _nothing


@dataclass
class ThreadedRun:
    """A bus with worker threads and one handler, fed by several producer threads."""

    produce: Callable[[int], None]
    """Post *n* events; called on each producer thread."""
    finish: Callable[[], object]
    """Deliver what was accepted (the library's idiomatic way) and stop the workers."""
    delivered: Callable[[], int]


@dataclass
class LatencyRun:
    """A bus whose one handler starts by calling the harness's ``on_start``."""

    post: Callable[[], object]
    close: Callable[[], object]


@dataclass
class RegistrationRun:
    """A fresh bus, and how to make and register one subscriber object."""

    new_subscriber: Callable[[], object]
    register: Callable[[object], object]
    close: Callable[[], object] = _nothing


@dataclass(frozen=True)
class Case:
    """One row of a workload: a subject and the adapter that sets it up."""

    name: str
    kind: str  # "eventbus", "peer" or "floor"
    build: Callable[..., Any]
    requires: tuple[str, ...] = ()  # modules that must be importable
    scale: float = 1.0  # fraction of the workload's event count, for very slow subjects
    note: str = ""


# -- events and counting handlers ---------------------------------------------------------


class Ping(Event, topic="bench.ping"):
    """The typed event that eventbus posts."""

    n: int


class PlainPing:
    """A plain object: what the peers post, and eventbus's "any object" case."""

    __slots__ = ("n",)

    def __init__(self, n: int) -> None:
        self.n = n


_typed_events: dict[int, type[Event]] = {0: Ping}
_plain_events: dict[int, type] = {0: PlainPing}


def typed_event(key: int) -> type[Event]:
    """The `Event` class for topic number *key* (``Ping`` for 0), created once."""
    cls = _typed_events.get(key)
    if cls is None:
        namespace = {"__annotations__": {"n": int}, "__module__": __name__, "__qualname__": f"Ping{key}"}
        cls = _typed_events[key] = type(Event)(f"Ping{key}", (Event,), namespace, topic=f"bench.ping.{key}")
    return cls


def plain_event(key: int) -> type:
    """A plain class for event type number *key* (``PlainPing`` for 0), created once."""
    cls = _plain_events.get(key)
    if cls is None:
        # Not a subclass of PlainPing: eventbus would rightly deliver it to PlainPing's handlers too.
        namespace = {"__slots__": ("n",), "__init__": PlainPing.__init__, "__module__": __name__}
        cls = _plain_events[key] = type(f"PlainPing{key}", (), namespace)
    return cls


class Counter:
    """A trivial handler for the calling thread: counts its calls."""

    __slots__ = ("__weakref__", "calls")

    def __init__(self) -> None:
        self.calls = 0

    def on_event(self, event: object) -> None:
        self.calls += 1


_counter_classes: dict[int, type[Counter]] = {0: Counter}


def counter_class(key: int) -> type[Counter]:
    """The handler class for topic number *key* (``Counter`` for 0), created once.

    Each topic gets a class and a code object of its own, as the handlers of 1,000
    event types in an application would be. Sharing one function across 1,000 handler
    classes would instead make its inline caches miss on every call (CPython
    specialises attribute access per class), a cost that belongs to the benchmark,
    not to the bus: measured with eventbus, 1.35x for 1,000 types against 1.11x.
    """
    cls = _counter_classes.get(key)
    if cls is None:
        body = Counter.on_event
        code = body.__code__.replace(co_name=f"on_event_{key}", co_qualname=f"Counter{key}.on_event")
        handler = types.FunctionType(code, body.__globals__, "on_event")
        namespace = {"__slots__": (), "on_event": handler, "__module__": __name__, "__qualname__": f"Counter{key}"}
        cls = _counter_classes[key] = type(f"Counter{key}", (Counter,), namespace)
    return cls


class ThreadCounter:
    """A trivial handler for worker threads: ``next()`` on a C counter is atomic under the GIL."""

    __slots__ = ("__weakref__", "_calls", "_reads")

    def __init__(self) -> None:
        self._calls = itertools.count()
        self._reads = 0

    def on_event(self, event: object) -> None:
        next(self._calls)

    @property
    def calls(self) -> int:
        seen = next(self._calls) - self._reads
        self._reads += 1
        return seen


class Starter:
    """A handler that reports its start to the latency harness."""

    __slots__ = ("__weakref__", "on_start")

    def __init__(self, on_start: Callable[[], object]) -> None:
        self.on_start = on_start

    def on_event(self, event: object) -> None:
        self.on_start()


_subscriber_classes: dict[tuple[Hashable, ...], type] = {}


def eventbus_subscriber(event_cls: type, base: type = Counter, thread_safe: bool = False) -> type:
    """A subclass of *base* whose ``on_event`` is ``@subscribe(event_cls)``: the very same handler code."""
    cache_key = (event_cls, base, thread_safe)
    cls = _subscriber_classes.get(cache_key)
    if cls is None:
        body = base.on_event  # copied, because @subscribe marks the function object it is given
        handler = types.FunctionType(body.__code__, body.__globals__, "on_event", body.__defaults__, body.__closure__)
        handler.__qualname__ = f"{base.__name__}.on_event"
        on_event = subscribe(event_cls, thread_safe=thread_safe)(handler)
        cls = type(base.__name__, (base,), {"__slots__": (), "on_event": on_event})
        _subscriber_classes[cache_key] = cls
    return cls


# -- loops ----------------------------------------------------------------------------------
# Each adapter posts through one of these, so that the loop around the post is the
# same for every subject: one call per post, no extra wrapper.


def call_loop(items: list[tuple[Callable[[Any], object], object]]) -> Callable[[int], None]:
    """Post by calling ``fn(arg)`` for each ``(fn, arg)`` in *items*, round-robin."""
    if len(items) == 1:
        ((fn, arg),) = items

        def run(n: int) -> None:
            for _ in repeat(None, n):
                fn(arg)

        return run

    def run_round_robin(n: int) -> None:
        for _ in repeat(None, n // len(items)):
            for fn, arg in items:
                fn(arg)

    return run_round_robin


def call_loop2(items: list[tuple[Callable[[Any, Any], object], object, object]]) -> Callable[[int], None]:
    """Post by calling ``fn(a, b)`` for each ``(fn, a, b)`` in *items*, round-robin."""
    if len(items) == 1:
        ((fn, a, b),) = items

        def run(n: int) -> None:
            for _ in repeat(None, n):
                fn(a, b)

        return run

    def run_round_robin(n: int) -> None:
        for _ in repeat(None, n // len(items)):
            for fn, a, b in items:
                fn(a, b)

    return run_round_robin


def _sum_calls(counters: list[Any]) -> Callable[[], int]:
    return lambda: sum(c.calls for c in counters)


# -- workloads 1-3: posting on the calling thread ----------------------------------------
# *keys* lists the topic of each post in one round-robin pass: [0] for one event
# type, [0] * 1000 or range(1000) for workload 3. Each position gets its own
# pre-built event object, so "one type" and "1,000 types" differ only in types.


def eventbus_sync(typed: bool) -> Callable[[int, list[int]], SyncRun]:
    """eventbus, sync strategy: ``bus.post(event)`` with a pre-built event."""

    def build(handlers: int, keys: list[int]) -> SyncRun:
        bus = EventBus(strategy="sync")
        subs: list[Any] = []
        for key in dict.fromkeys(keys):
            sub_cls = eventbus_subscriber(typed_event(key) if typed else plain_event(key), counter_class(key))
            for _ in range(handlers):
                sub = sub_cls()
                bus.register(sub)
                subs.append(sub)
        post = bus.post
        events = [typed_event(k)(n=k) if typed else plain_event(k)(k) for k in keys]
        return SyncRun(call_loop([(post, event) for event in events]), _sum_calls(subs), bus.shutdown)

    return build


def direct_call(handlers: int, keys: list[int]) -> SyncRun:
    """Floor: call the handler method directly (a list of them for several handlers)."""
    counters: list[Counter] = []
    targets: dict[int, Callable[[Any], object]] = {}
    for key in dict.fromkeys(keys):
        group = [counter_class(key)() for _ in range(handlers)]
        counters.extend(group)
        if handlers == 1:
            targets[key] = group[0].on_event
        else:
            methods = [c.on_event for c in group]

            def call_all(event: object, methods: list[Callable[[object], None]] = methods) -> None:
                for method in methods:
                    method(event)

            targets[key] = call_all
    return SyncRun(call_loop([(targets[k], plain_event(k)(k)) for k in keys]), _sum_calls(counters))


def dict_loop(handlers: int, keys: list[int]) -> SyncRun:
    """Floor: ``for handler in table.get(type(event), ()): handler(event)``."""
    table: dict[type, list[Callable[[object], None]]] = {}
    counters: list[Counter] = []
    for key in dict.fromkeys(keys):
        for _ in range(handlers):
            counter = counter_class(key)()
            counters.append(counter)
            table.setdefault(plain_event(key), []).append(counter.on_event)

    def post(event: object) -> None:
        for handler in table.get(type(event), ()):
            handler(event)

    return SyncRun(call_loop([(post, plain_event(k)(k)) for k in keys]), _sum_calls(counters))


def psygnal_sync(fast: bool) -> Callable[[int, list[int]], SyncRun]:
    """psygnal: a ``Signal(object)`` per topic on an emitter object; ``emit`` or ``emit_fast``."""

    def build(handlers: int, keys: list[int]) -> SyncRun:
        import psygnal

        class Emitter:
            ping = psygnal.Signal(object)

        counters: list[Counter] = []
        emits: dict[int, Callable[[Any], object]] = {}
        for key in dict.fromkeys(keys):
            emitter = Emitter()
            for _ in range(handlers):
                counter = counter_class(key)()
                counters.append(counter)
                emitter.ping.connect(counter.on_event)
            emits[key] = emitter.ping.emit_fast if fast else emitter.ping.emit
        return SyncRun(call_loop([(emits[k], PlainPing(k)) for k in keys]), _sum_calls(counters))

    return build


def blinker_send(handlers: int, keys: list[int]) -> SyncRun:
    """blinker: a ``Signal()`` per topic; ``signal.send(event)`` (the event is the sender)."""
    import blinker

    counters: list[Counter] = []
    signals: dict[int, blinker.Signal] = {}
    for key in dict.fromkeys(keys):
        signal = signals[key] = blinker.Signal()
        for _ in range(handlers):
            counter = counter_class(key)()
            counters.append(counter)
            signal.connect(counter.on_event)
    return SyncRun(call_loop([(signals[k].send, PlainPing(k)) for k in keys]), _sum_calls(counters))


def pyee_emit(handlers: int, keys: list[int]) -> SyncRun:
    """pyee: one ``EventEmitter``, an event name per topic; ``ee.emit(name, event)``."""
    import pyee

    emitter = pyee.EventEmitter()
    counters: list[Counter] = []
    for key in dict.fromkeys(keys):
        for _ in range(handlers):
            counter = counter_class(key)()
            counters.append(counter)
            emitter.on(f"ping{key}", counter.on_event)
    return SyncRun(call_loop2([(emitter.emit, f"ping{k}", PlainPing(k)) for k in keys]), _sum_calls(counters))


_builds = itertools.count()


def pypubsub_send(handlers: int, keys: list[int]) -> SyncRun:
    """pypubsub: ``pub.subscribe(listener, topic)``; ``pub.sendMessage(topic, event=event)``."""
    from pubsub import pub

    prefix = f"bench{next(_builds)}"
    counters: list[Counter] = []
    for key in dict.fromkeys(keys):
        for _ in range(handlers):
            counter = counter_class(key)()
            counters.append(counter)
            pub.subscribe(counter.on_event, f"{prefix}_ping{key}")
    items = [(f"{prefix}_ping{k}", PlainPing(k)) for k in keys]
    send = pub.sendMessage

    def run(n: int) -> None:
        for _ in repeat(None, n // len(items)):
            for topic, event in items:
                send(topic, event=event)

    def close() -> None:
        manager = pub.getDefaultTopicMgr()
        for key in dict.fromkeys(keys):
            pub.unsubAll(f"{prefix}_ping{key}")
            manager.delTopic(f"{prefix}_ping{key}")

    return SyncRun(run, _sum_calls(counters), close)


def pydispatcher_send(handlers: int, keys: list[int]) -> SyncRun:
    """PyDispatcher: ``dispatcher.connect(receiver, signal=...)``; ``dispatcher.send(signal=..., event=...)``."""
    from pydispatch import dispatcher

    prefix = f"bench{next(_builds)}"
    counters: list[Counter] = []
    connected: list[tuple[Callable[[object], None], str]] = []
    for key in dict.fromkeys(keys):
        for _ in range(handlers):
            counter = counter_class(key)()
            counters.append(counter)
            dispatcher.connect(counter.on_event, signal=f"{prefix}.ping{key}")
            connected.append((counter.on_event, f"{prefix}.ping{key}"))
    items = [(f"{prefix}.ping{k}", PlainPing(k)) for k in keys]
    send = dispatcher.send

    def run(n: int) -> None:
        for _ in repeat(None, n // len(items)):
            for signal, event in items:
                send(signal=signal, event=event)

    def close() -> None:
        for receiver, signal in connected:
            dispatcher.disconnect(receiver, signal=signal)

    return SyncRun(run, _sum_calls(counters), close)


def _geet_subscriber_class(base: type) -> type:
    from geeteventbus.subscriber import subscriber

    class GeetSubscriber(base, subscriber):
        __slots__ = ()

        def process(self, eventobj: object) -> None:
            self.on_event(eventobj)

    # A code object per class, for the reason given in counter_class().
    process = GeetSubscriber.process
    code = process.__code__.replace(co_name=f"process_{base.__name__}")
    GeetSubscriber.process = types.FunctionType(code, process.__globals__, "process")  # type: ignore[method-assign]
    return GeetSubscriber


def geeteventbus_sync(handlers: int, keys: list[int]) -> SyncRun:
    """geeteventbus 1.0 with ``synchronus=True``: ``eb.post(event(topic, data))``."""
    from geeteventbus.event import event
    from geeteventbus.eventbus import eventbus

    bus = eventbus(synchronus=True)
    counters: list[Any] = []
    for key in dict.fromkeys(keys):
        sub_cls = _geet_subscriber_class(counter_class(key))
        for _ in range(handlers):
            sub = sub_cls()
            counters.append(sub)
            bus.register_consumer(sub, f"ping{key}")
    items = [(bus.post, event(f"ping{k}", PlainPing(k))) for k in keys]
    return SyncRun(call_loop(items), _sum_calls(counters), bus.shutdown)


SYNC_CASES = [
    Case("eventbus sync · typed Event", "eventbus", eventbus_sync(typed=True)),
    Case("eventbus sync · plain object", "eventbus", eventbus_sync(typed=False)),
    Case("direct call", "floor", direct_call),
    Case("dict-of-lists loop", "floor", dict_loop),
    Case("psygnal emit", "peer", psygnal_sync(fast=False), ("psygnal",)),
    Case("psygnal emit_fast", "peer", psygnal_sync(fast=True), ("psygnal",)),
    Case("blinker send", "peer", blinker_send, ("blinker",)),
    Case("pyee emit", "peer", pyee_emit, ("pyee",)),
    Case("pypubsub sendMessage", "peer", pypubsub_send, ("pubsub",)),
    Case("PyDispatcher send", "peer", pydispatcher_send, ("pydispatch",)),
    Case("geeteventbus 1.0 post (synchronus)", "peer", geeteventbus_sync, ("geeteventbus",)),
]


# -- workload 4: producer threads and a worker pool ---------------------------------------


def _warm_executor(executor: ThreadPoolExecutor, workers: int) -> None:
    """Start every worker thread now, so that thread creation is not timed."""
    barrier = threading.Barrier(workers)
    for future in [executor.submit(barrier.wait, 10) for _ in range(workers)]:
        future.result()


def eventbus_threaded(strategy: str, thread_safe: bool) -> Callable[[int], ThreadedRun]:
    """eventbus with a worker pool: producers ``bus.post(event)``; ``bus.shutdown()`` drains."""

    def build(workers: int) -> ThreadedRun:
        bus = EventBus(strategy=strategy, workers=workers)
        sub = eventbus_subscriber(Ping, ThreadCounter, thread_safe)()
        bus.register(sub)
        event = Ping(n=0)
        post = bus.post

        def produce(n: int) -> None:
            for _ in repeat(None, n):
                post(event)

        return ThreadedRun(produce, lambda: bus.shutdown(timeout=SHUTDOWN_TIMEOUT), lambda: sub.calls)

    return build


def _queue_pool(
    workers: int, handler: Callable[[object], object]
) -> tuple[Callable[[object], None], Callable[[], None]]:
    """Start *workers* threads that call *handler* on every item of a `SimpleQueue`; return (put, finish)."""
    queue: SimpleQueue[object] = SimpleQueue()
    stop = object()

    def work() -> None:
        get = queue.get
        while True:
            item = get()
            if item is stop:
                return
            handler(item)

    threads = [threading.Thread(target=work, daemon=True) for _ in range(workers)]
    for thread in threads:
        thread.start()

    def finish() -> None:
        for _ in threads:
            queue.put(stop)
        for thread in threads:
            thread.join(SHUTDOWN_TIMEOUT)

    return queue.put, finish


def simplequeue_threads(workers: int) -> ThreadedRun:
    """Floor: a ``queue.SimpleQueue`` drained by worker threads (unbounded: no backpressure)."""
    counter = ThreadCounter()
    put, finish = _queue_pool(workers, counter.on_event)
    event = PlainPing(0)

    def produce(n: int) -> None:
        for _ in repeat(None, n):
            put(event)

    return ThreadedRun(produce, finish, lambda: counter.calls)


def threadpool_submit(workers: int) -> ThreadedRun:
    """Floor: ``ThreadPoolExecutor(workers).submit(handler, event)``; ``shutdown(wait=True)``."""
    executor = ThreadPoolExecutor(workers)
    _warm_executor(executor, workers)
    counter = ThreadCounter()
    event = PlainPing(0)

    def produce(n: int) -> None:
        submit, handler = executor.submit, counter.on_event
        for _ in repeat(None, n):
            submit(handler, event)

    return ThreadedRun(produce, lambda: executor.shutdown(wait=True), lambda: counter.calls)


def pyee_executor(workers: int) -> ThreadedRun:
    """pyee ``ExecutorEventEmitter`` over ``ThreadPoolExecutor(workers)``; ``ee.shutdown()``."""
    from pyee.executor import ExecutorEventEmitter

    executor = ThreadPoolExecutor(workers)
    _warm_executor(executor, workers)
    emitter = ExecutorEventEmitter(executor)
    counter = ThreadCounter()
    emitter.on("ping", counter.on_event)
    event = PlainPing(0)

    def produce(n: int) -> None:
        emit = emitter.emit
        for _ in repeat(None, n):
            emit("ping", event)

    return ThreadedRun(produce, lambda: emitter.shutdown(wait=True), lambda: counter.calls)


def geeteventbus_threaded(workers: int) -> ThreadedRun:
    """geeteventbus 1.0 ``eventbus(executor_count=workers)``; its ``shutdown()`` is the only way to wait."""
    from geeteventbus.event import event
    from geeteventbus.eventbus import eventbus

    bus = eventbus(executor_count=workers)
    sub = _geet_subscriber_class(ThreadCounter)()
    bus.register_consumer(sub, "ping")
    item = event("ping", PlainPing(0))

    def produce(n: int) -> None:
        post = bus.post
        for _ in repeat(None, n):
            post(item)

    return ThreadedRun(produce, bus.shutdown, lambda: sub.calls)


THREADED_CASES = [
    Case("eventbus concurrent · thread_safe=False", "eventbus", eventbus_threaded("concurrent", thread_safe=False)),
    Case("eventbus concurrent · thread_safe=True", "eventbus", eventbus_threaded("concurrent", thread_safe=True)),
    Case("eventbus ordered", "eventbus", eventbus_threaded("ordered", thread_safe=False)),
    Case("SimpleQueue + worker threads", "floor", simplequeue_threads),
    Case("ThreadPoolExecutor.submit", "floor", threadpool_submit),
    Case("pyee ExecutorEventEmitter", "peer", pyee_executor, ("pyee",)),
    Case("geeteventbus 1.0 eventbus()", "peer", geeteventbus_threaded, ("geeteventbus",)),
]


# -- workload 5: idle latency from post to handler start ---------------------------------


def eventbus_latency(strategy: str) -> Callable[[Callable[[], object], int], LatencyRun]:
    def build(on_start: Callable[[], object], workers: int) -> LatencyRun:
        bus = EventBus(strategy=strategy, workers=workers)
        sub = eventbus_subscriber(Ping, Starter)(on_start)
        bus.register(sub)
        event = Ping(n=0)
        return LatencyRun(lambda: bus.post(event), lambda: bus.shutdown(timeout=SHUTDOWN_TIMEOUT))

    return build


def simplequeue_latency(on_start: Callable[[], object], workers: int) -> LatencyRun:
    put, finish = _queue_pool(workers, Starter(on_start).on_event)
    event = PlainPing(0)
    return LatencyRun(lambda: put(event), finish)


def threadpool_latency(on_start: Callable[[], object], workers: int) -> LatencyRun:
    executor = ThreadPoolExecutor(workers)
    _warm_executor(executor, workers)
    starter = Starter(on_start)
    event = PlainPing(0)
    return LatencyRun(lambda: executor.submit(starter.on_event, event), lambda: executor.shutdown(wait=True))


def pyee_executor_latency(on_start: Callable[[], object], workers: int) -> LatencyRun:
    from pyee.executor import ExecutorEventEmitter

    executor = ThreadPoolExecutor(workers)
    _warm_executor(executor, workers)
    emitter = ExecutorEventEmitter(executor)
    starter = Starter(on_start)
    emitter.on("ping", starter.on_event)
    event = PlainPing(0)
    return LatencyRun(lambda: emitter.emit("ping", event), lambda: emitter.shutdown(wait=True))


def geeteventbus_latency(ordered: bool) -> Callable[[Callable[[], object], int], LatencyRun]:
    def build(on_start: Callable[[], object], workers: int) -> LatencyRun:
        from geeteventbus.event import event
        from geeteventbus.eventbus import eventbus

        bus = eventbus(executor_count=workers)
        sub = _geet_subscriber_class(Starter)(on_start)
        bus.register_consumer(sub, "ping")
        item = event("ping", PlainPing(0), "key") if ordered else event("ping", PlainPing(0))
        return LatencyRun(lambda: bus.post(item), bus.shutdown)

    return build


LATENCY_CASES = [
    Case("eventbus concurrent", "eventbus", eventbus_latency("concurrent")),
    Case("eventbus ordered", "eventbus", eventbus_latency("ordered")),
    Case("SimpleQueue + worker threads", "floor", simplequeue_latency),
    Case("ThreadPoolExecutor.submit", "floor", threadpool_latency),
    Case("pyee ExecutorEventEmitter", "peer", pyee_executor_latency, ("pyee",)),
    Case("geeteventbus 1.0 eventbus()", "peer", geeteventbus_latency(ordered=False), ("geeteventbus",)),
    Case(
        "geeteventbus 1.0 ordered event",
        "peer",
        geeteventbus_latency(ordered=True),
        ("geeteventbus",),
        scale=0.05,
        note="polls every 100 ms; 5% of the posts",
    ),
]


# -- workload 6: registering subscriber objects ------------------------------------------


def eventbus_registration() -> RegistrationRun:
    """eventbus: ``bus.register(obj)`` of an object with one ``@subscribe`` method."""
    sub_cls = eventbus_subscriber(Ping)
    EventBus(strategy="sync").register(sub_cls())  # the class scan is cached per class: warm it
    bus = EventBus(strategy="sync")
    return RegistrationRun(sub_cls, bus.register, bus.shutdown)


def dict_registration() -> RegistrationRun:
    """Floor: ``table.setdefault(EventClass, []).append(obj.on_event)``."""
    table: dict[type, list[Callable[[object], None]]] = {}

    def register(obj: Any) -> None:
        table.setdefault(PlainPing, []).append(obj.on_event)

    return RegistrationRun(Counter, register)


def psygnal_registration() -> RegistrationRun:
    import psygnal

    class Emitter:
        ping = psygnal.Signal(object)

    signal = Emitter().ping
    return RegistrationRun(Counter, lambda obj: signal.connect(obj.on_event))


def blinker_registration() -> RegistrationRun:
    import blinker

    signal = blinker.Signal()
    return RegistrationRun(Counter, lambda obj: signal.connect(obj.on_event))


def pyee_registration() -> RegistrationRun:
    import pyee

    emitter = pyee.EventEmitter()
    return RegistrationRun(Counter, lambda obj: emitter.on("ping", obj.on_event))


def pypubsub_registration() -> RegistrationRun:
    from pubsub import pub

    topic = f"bench{next(_builds)}_ping"

    def close() -> None:
        pub.unsubAll(topic)
        pub.getDefaultTopicMgr().delTopic(topic)

    return RegistrationRun(Counter, lambda obj: pub.subscribe(obj.on_event, topic), close)


def pydispatcher_registration() -> RegistrationRun:
    from pydispatch import dispatcher

    signal = f"bench{next(_builds)}.ping"
    return RegistrationRun(Counter, lambda obj: dispatcher.connect(obj.on_event, signal=signal))


def geeteventbus_registration() -> RegistrationRun:
    from geeteventbus.eventbus import eventbus

    bus = eventbus(synchronus=True)
    return RegistrationRun(_geet_subscriber_class(Counter), lambda obj: bus.register_consumer(obj, "ping"))


REGISTRATION_CASES = [
    Case("eventbus register", "eventbus", eventbus_registration),
    Case("dict-of-lists append", "floor", dict_registration),
    Case("psygnal connect", "peer", psygnal_registration, ("psygnal",)),
    Case("blinker connect", "peer", blinker_registration, ("blinker",)),
    Case("pyee on", "peer", pyee_registration, ("pyee",)),
    Case("pypubsub subscribe", "peer", pypubsub_registration, ("pubsub",)),
    Case("PyDispatcher connect", "peer", pydispatcher_registration, ("pydispatch",)),
    Case(
        "geeteventbus 1.0 register_consumer",
        "peer",
        geeteventbus_registration,
        ("geeteventbus",),
        note="checks membership in a list: quadratic",
    ),
]


# -- workload 7: building one event ------------------------------------------------------


class OrderPlaced(Event, topic="orders.placed"):
    """A typed event with two fields, validated on construction."""

    order_id: int
    amount: float


@dataclass(frozen=True, slots=True)
class OrderPlacedDataclass:
    order_id: int
    amount: float


class OrderPlacedTuple(NamedTuple):
    order_id: int
    amount: float


def build_loop(make: Callable[[int, float], object]) -> Callable[[], Callable[[int], None]]:
    def build() -> Callable[[int], None]:
        def run(n: int) -> None:
            amount = 9.5
            for order_id in range(n):
                make(order_id, amount)

        return run

    return build


def abxbus_event_build() -> Callable[[int], None]:
    import abxbus

    class AbxOrderPlaced(abxbus.BaseEvent):
        order_id: int
        amount: float

    def run(n: int) -> None:
        amount = 9.5
        for order_id in range(n):
            AbxOrderPlaced(order_id=order_id, amount=amount)

    return run


BUILD_CASES = [
    Case("eventbus Event(...) (validated)", "eventbus", build_loop(lambda i, a: OrderPlaced(order_id=i, amount=a))),
    Case(
        "eventbus Event.model_construct(...)",
        "eventbus",
        build_loop(lambda i, a: OrderPlaced.model_construct(order_id=i, amount=a)),
    ),
    Case("eventbus Message(topic, data)", "eventbus", build_loop(lambda i, a: Message("orders.placed", (i, a)))),
    Case("frozen slots dataclass", "floor", build_loop(lambda i, a: OrderPlacedDataclass(i, a))),
    Case("NamedTuple", "floor", build_loop(lambda i, a: OrderPlacedTuple(i, a))),
    Case("tuple", "floor", build_loop(lambda i, a: (i, a))),
    Case(
        "abxbus BaseEvent(...)",
        "peer",
        abxbus_event_build,
        ("abxbus",),
        scale=0.05,
        note="abxbus needs a new event for every emit",
    ),
]
"""Every case here goes through a one-line lambda, so each figure includes the same call overhead."""


# -- workload 8: asyncio, one async handler ----------------------------------------------


class _Done:
    """Counts handler calls on the loop and resolves a future at the expected count."""

    def __init__(self, expected: int) -> None:
        self.calls = 0
        self.expected = expected
        self.future: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def hit(self) -> None:
        self.calls += 1
        if self.calls == self.expected:
            self.future.set_result(None)

    async def wait(self) -> None:
        await asyncio.wait_for(asyncio.shield(self.future), ASYNC_TIMEOUT)


AsyncCase = Callable[[int, Callable[[], int]], Awaitable[tuple[int, int]]]
"""``await case(n, clock)`` posts *n* events and returns (elapsed ns from the clock, handler calls)."""


async def call_soon_floor(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """Floor: ``loop.call_soon(handler, event)`` with a plain (not async) handler."""
    loop = asyncio.get_running_loop()
    done = _Done(n)
    event = PlainPing(0)

    def handler(event: object) -> None:
        done.hit()

    start = clock()
    call_soon = loop.call_soon
    for _ in repeat(None, n):
        call_soon(handler, event)
    await done.wait()
    return clock() - start, done.calls


async def create_task_floor(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """Floor: ``loop.create_task(handler(event))`` for each event."""
    loop = asyncio.get_running_loop()
    done = _Done(n)
    event = PlainPing(0)

    async def handler(event: object) -> None:
        done.hit()

    start = clock()
    create_task = loop.create_task
    tasks = [create_task(handler(event)) for _ in repeat(None, n)]
    await done.wait()
    elapsed = clock() - start
    del tasks
    return elapsed, done.calls


async def _eventbus_async(n: int, clock: Callable[[], int], *, awaited: bool) -> tuple[int, int]:
    # One async def handler on EventBus(strategy="asyncio"); *n* posts with post(), or
    # with await apost() (which waits for room once 10,000 events are queued).
    bus = EventBus(strategy="asyncio", max_queued=10_000 if awaited else max(n, 10_000))
    done = _Done(n)

    class Subscriber:
        @subscribe(Ping)
        async def on_event(self, event: Ping) -> None:
            done.hit()

    bus.register(Subscriber())
    event = Ping(n=0)
    start = clock()
    if awaited:
        apost = bus.apost
        for _ in repeat(None, n):
            await apost(event)
    else:
        post = bus.post
        for _ in repeat(None, n):
            post(event)
    await done.wait()
    elapsed = clock() - start
    await bus.ashutdown()
    return elapsed, done.calls


async def eventbus_asyncio(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """eventbus ``EventBus(strategy="asyncio")`` with an ``async def`` handler, posting with ``bus.post(event)``."""
    return await _eventbus_async(n, clock, awaited=False)


async def eventbus_apost(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """eventbus asyncio strategy, posting with ``await bus.apost(event)`` (waits for room at 10,000 queued)."""
    return await _eventbus_async(n, clock, awaited=True)


async def blinker_send_async(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """blinker: ``await signal.send_async(event)`` to an ``async def`` receiver."""
    import blinker

    done = _Done(n)

    async def receiver(sender: object) -> None:
        done.hit()

    signal = blinker.Signal()
    signal.connect(receiver)
    event = PlainPing(0)
    start = clock()
    send_async = signal.send_async
    for _ in repeat(None, n):
        await send_async(event)
    await done.wait()
    return clock() - start, done.calls


async def pyee_asyncio(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """pyee ``AsyncIOEventEmitter``: ``ee.emit(name, event)`` schedules the coroutine."""
    from pyee.asyncio import AsyncIOEventEmitter

    done = _Done(n)
    emitter = AsyncIOEventEmitter()

    @emitter.on("ping")
    async def handler(event: object) -> None:
        done.hit()

    event = PlainPing(0)
    start = clock()
    emit = emitter.emit
    for _ in repeat(None, n):
        emit("ping", event)
    await done.wait()
    return clock() - start, done.calls


async def psygnal_async(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """psygnal: an ``async def`` slot, with ``psygnal.set_async_backend("asyncio")``."""
    import psygnal
    from psygnal._async import clear_async_backend

    backend = psygnal.set_async_backend("asyncio")
    try:
        await asyncio.wait_for(backend.running.wait(), ASYNC_TIMEOUT)
        done = _Done(n)

        class Emitter:
            ping = psygnal.Signal(object)

        emitter = Emitter()

        async def slot(event: object) -> None:
            done.hit()

        emitter.ping.connect(slot)
        event = PlainPing(0)
        start = clock()
        emit = emitter.ping.emit
        for _ in repeat(None, n):
            emit(event)
        await done.wait()
        return clock() - start, done.calls
    finally:
        clear_async_backend()


async def abxbus_emit(n: int, clock: Callable[[], int]) -> tuple[int, int]:
    """abxbus: ``bus.emit(Event())`` per event (events are built beforehand, not timed)."""
    import abxbus

    class AbxPing(abxbus.BaseEvent):
        n: int = 0

    done = _Done(n)
    bus = abxbus.EventBus(name=f"bench{next(_builds)}", max_history_size=100, max_history_drop=True)

    async def on_ping(event: AbxPing) -> None:
        done.hit()

    bus.on(AbxPing, on_ping)
    events = [AbxPing() for _ in range(n)]
    start = clock()
    emit = bus.emit
    for event in events:
        emit(event)
    await done.wait()
    elapsed = clock() - start
    await bus.wait_until_idle()
    await bus.destroy()
    return elapsed, done.calls


ASYNC_CASES = [
    Case("eventbus asyncio", "eventbus", eventbus_asyncio),
    Case("eventbus asyncio · apost", "eventbus", eventbus_apost),
    Case("loop.call_soon (sync handler)", "floor", call_soon_floor),
    Case("loop.create_task", "floor", create_task_floor),
    Case("blinker send_async", "peer", blinker_send_async, ("blinker",)),
    Case("pyee AsyncIOEventEmitter", "peer", pyee_asyncio, ("pyee",)),
    Case("psygnal async slot", "peer", psygnal_async, ("psygnal",)),
    Case("abxbus emit", "peer", abxbus_emit, ("abxbus",), scale=0.02, note="2% of the events: ~0.3 ms each"),
]
