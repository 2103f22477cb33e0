"""The registry: who subscribed to what, and the cached handler list per event type.

Registering an object scans its class once (the scan is cached per class), checks
every handler's signature against what it subscribed to, and only then adds the
handlers: registration is atomic. Subscribers are kept by identity, so unhashable
objects and objects with their own ``__eq__`` work.

Posting never scans: `Registry.handlers_for` looks the event's class up in a
dispatch cache that maps it to a ready, sorted tuple of `Subscription`s. Any
change to the registry replaces that cache with an empty one (copy-on-write), so
a post that is already iterating a tuple is never disturbed, and the next post
of each event type resolves its tuple once. Topic patterns (``"orders.*"``) are
matched there, when a tuple is resolved, so a pattern costs a post nothing.

Sticky events (SPEC section 13) live here too: the last accepted event of each
sticky class (`Registry.keep`), and a `StickyGate` per sticky handler, which
orders the replay of a kept event at registration before the newer events of its
class. ``docs/design.md`` ("Sticky events") gives the argument.
"""

from __future__ import annotations

import itertools
import os
import threading
import types
import typing
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Final, final

from ._decorators import SubscriptionSpec
from ._events import DeadEvent, Event, Message
from ._loops import HandlerLoops
from ._patterns import pattern_of
from ._scan import Binding, FoundHandler, call_target, identity, instance_plans, plan_of

__all__ = ["Binding", "Registry", "Replays", "StickyGate", "Subscriber", "Subscription"]

_MAX_CACHED_KEYS: Final = 10_000  # Message topics are open-ended; bound the cache they fill.
_STICKY: Final = object()
"""The second half of a sticky class's dispatch-cache key ``(cls, _STICKY)``: its real handlers.
Under ``cls`` itself a sticky class has ``()``, so that every fast post path falls
through to the bus's ``_accept``, which keeps the event (as for bridged classes)."""


@final
class Subscriber:
    """The bus's record of one registered object (or plain function).

    Every `Subscription` of the object points to it as ``owner``. A delivery
    strategy receives it in `DeliveryStrategy.forget` when the object is
    unregistered, and may compare ``subscription.owner is subscriber`` to find the
    calls it must drop or wait for. ``obj`` is the registered object.
    """

    __slots__ = ("_subs", "obj", "strategy_slot")

    def __init__(self, obj: object) -> None:
        self.obj: object = obj
        # One Subscription, or a tuple of several: most subscribers have one handler,
        # and a one-element tuple would cost another 56 bytes per subscriber.
        self._subs: Subscription | tuple[Subscription, ...] = ()
        self.strategy_slot: object = None
        """What the bus's strategy keeps for this subscriber, made on first use (`None`
        until then): the sync strategy's lock (see `lock`), a thread pool's or the
        asyncio strategy's line of waiting calls. A record belongs to one bus, and a
        bus has one strategy, so one slot serves; a custom strategy may use it too."""

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """This subscriber's handlers, one `Subscription` per subscribed key."""
        subs = self._subs
        return subs if isinstance(subs, tuple) else (subs,)

    @property
    def lock(self) -> threading.RLock:
        """Serialises this subscriber's ``thread_safe=False`` handlers on the sync strategy.

        Made on first use and kept in `strategy_slot`: most subscribers never need one (a sync
        bus posted to from one thread takes no lock), and an RLock costs about 100
        bytes per subscriber.
        """
        lock = self.strategy_slot
        if lock is None:
            with _lock_making:
                lock = self.strategy_slot
                if lock is None:
                    lock = self.strategy_slot = threading.RLock()
        return lock  # type: ignore[return-value]  # only the sync strategy asks, and it keeps nothing else here


_lock_making = threading.Lock()  # makes Subscriber.lock creation race-free


def _new_lock_making() -> None:
    global _lock_making  # a forked child must not inherit it held
    _lock_making = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_making)
_RLOCK_TYPE: Final = type(threading.RLock())


@final
class Subscription:
    """One handler of one registered subscriber, as the bus will call it.

    Returned by ``EventBus.subscribers()``; read-only for users.
    """

    # Eight slots (96 bytes): what differs per subscriber, plus the flags the hot
    # paths test. The rest is shared with every instance of the class (Binding), and
    # the handler is called as func(target, event), so no bound method is kept.
    __slots__ = ("active", "binding", "direct", "direct_parallel", "func", "owner", "seq", "target")

    def __init__(
        self, owner: Subscriber, func: Callable[[Any, Any], object], target: Any, binding: Binding, seq: int
    ) -> None:
        self.owner: Subscriber = owner
        self.func: Callable[[Any, Any], object] = func
        """Called as ``func(target, event)``: the class's function for a method handler
        (shared by every instance), a small caller otherwise."""
        self.target: Any = target
        """The instance of a method handler; the function itself for a plain function;
        for an ``async def`` handler, a blocking wrapper whose ``__wrapped__`` is the
        bound coroutine function."""
        self.binding: Binding = binding
        """What the handler subscribed to and how, shared by every instance of its class."""
        self.seq: int = seq
        """Registration order, which breaks ties between equal priorities."""
        self.active: bool = True
        """False once the subscriber is unregistered: queued events skip it."""
        self.direct: bool = binding.direct
        """Active and without a ``when=`` filter: a strategy may call it directly,
        without the dispatcher's checks (the subscriber's lock or line still apply)."""
        self.direct_parallel: bool = binding.direct_parallel
        """Direct and ``thread_safe``: any thread may call it directly, with no lock
        and no line, even while another call of it runs."""

    @property
    def name(self) -> str:
        """The handler's qualified name, for example ``"Billing.charge"``."""
        return self.binding.name

    @property
    def thread_safe(self) -> bool:
        """Whether the handler may run on several threads at once for one subscriber."""
        return self.binding.thread_safe

    @property
    def callback(self) -> Callable[[Any], object]:
        """The handler as a one-argument callable, as the thread-based strategies run it.

        A bound method for a method handler (made on each access), the function
        itself for a plain function, a blocking wrapper for an ``async def`` handler.
        """
        if self.func is call_target:
            target: Callable[[Any], object] = self.target
            return target
        return types.MethodType(self.func, self.target)

    @property
    def coroutine(self) -> Callable[[Any], Awaitable[object]] | None:
        """The ``async def`` handler itself (bound), or `None` for a plain handler."""
        if self.binding.is_async:
            coroutine: Callable[[Any], Awaitable[object]] = self.target.__wrapped__  # see HandlerLoops.blocking
            return coroutine
        return None

    @property
    def key(self) -> type | str:
        """The event class or topic string (or topic pattern) it subscribed to."""
        return self.binding.key

    @property
    def priority(self) -> int:
        """Handlers with a higher priority are called first."""
        return self.binding.priority

    @property
    def when(self) -> Callable[[Any], bool] | None:
        """The ``when=`` filter, or `None`."""
        return self.binding.when

    @property
    def subscriber(self) -> object:
        """The registered object, or `None` for a plain function."""
        obj = self.owner.obj
        return None if isinstance(obj, types.FunctionType) else obj

    @property
    def sticky(self) -> bool:
        """Whether the handler receives its class's kept event when its subscriber registers."""
        return self.binding.sticky

    def __repr__(self) -> str:
        key = self.key if isinstance(self.key, str) else self.key.__qualname__
        sticky = " sticky=True" if self.sticky else ""
        return f"<Subscription {self.name} to {key!r} priority={self.priority} thread_safe={self.thread_safe}{sticky}>"


_WAITING: Final = 1  # StickyGate.pending: the kept event of this class is still to be replayed
_RUNNING: Final = 2  # ... and is being replayed right now


@final
class StickyGate:
    """One sticky handler of one subscriber: the target that every strategy calls.

    A sticky handler's `Subscription` calls the gate instead of the handler
    (``func`` is `call_target`, ``target`` the gate), so the gate sees every call:
    live events through ``gate(event)`` (or ``await gate.__wrapped__(event)``, the
    asyncio strategy's way to an ``async def`` handler) and the replay of a kept
    event at registration through `replay`.

    ``pending`` holds the classes whose kept event is still to be replayed. Every
    live event that reaches the handler is newer than the kept event of its class
    that registration read (see ``docs/design.md``), so the first live event of
    such a class cancels the replay; and a replay being called holds the lock, so
    that a live call on another thread (a ``thread_safe=True`` handler) waits for
    it to return instead of overtaking it. Once nothing is pending, a live call
    costs one truth test.
    """

    __slots__ = ("coroutine", "func", "lock", "pending", "target")

    def __init__(
        self, func: Callable[[Any, Any], object], target: Any, coroutine: Callable[[Any], Awaitable[object]] | None
    ) -> None:
        self.func = func
        self.target = target
        self.coroutine = coroutine
        """The ``async def`` handler itself (bound), or `None` for a plain handler."""
        self.lock = threading.RLock()
        self.pending: dict[type, int] = {}
        """Classes whose kept event is to be replayed (`_WAITING`) or is being replayed (`_RUNNING`)."""

    def __call__(self, event: object) -> object:
        if self.pending:
            self._newer(type(event))
        return self.func(self.target, event)

    async def __wrapped__(self, event: object) -> object:  # what Subscription.coroutine reads
        """The live call of an ``async def`` handler, on the asyncio strategy."""
        coroutine = self.coroutine
        assert coroutine is not None, "only async handlers are awaited"
        if self.pending:
            self._newer(type(event))
        return await coroutine(event)

    def _newer(self, cls: type) -> None:
        # An event newer than the kept one reaches the handler: the replay is stale.
        # Taking the lock waits for a replay being called on another thread.
        with self.lock:
            if self.pending.get(cls) == _WAITING:
                del self.pending[cls]

    def replay(self, event: object) -> object:
        """Call the handler with the kept *event*, unless a newer event of its class came first."""
        cls = type(event)
        with self.lock:
            if self.pending.get(cls) != _WAITING:
                return None  # a newer event reached the handler first
            self.pending[cls] = _RUNNING
            try:
                return self.func(self.target, event)
            finally:
                self.pending.pop(cls, None)

    async def replay_async(self, event: object) -> object:
        """`replay` for an ``async def`` handler on the asyncio strategy.

        On the loop's one thread the check and the start of the handler's body are
        one step, so no lock is held across the handler's awaits.
        """
        coroutine = self.coroutine
        assert coroutine is not None, "only async handlers are awaited"
        cls = type(event)
        with self.lock:
            if self.pending.get(cls) != _WAITING:
                return None
            del self.pending[cls]
        return await coroutine(event)

    def waiting(self, event: object) -> bool:
        """Whether the kept *event*'s replay is still to come (no newer event came first)."""
        return self.pending.get(type(event)) == _WAITING


@final
class _Replay:
    """The target of a replay `Subscription`: what a strategy calls to replay a kept event."""

    __slots__ = ("gate",)

    def __init__(self, gate: StickyGate) -> None:
        self.gate = gate

    def __call__(self, event: object) -> object:
        return self.gate.replay(event)

    async def __wrapped__(self, event: object) -> object:  # what Subscription.coroutine reads
        return await self.gate.replay_async(event)


def _replay_subscription(sub: Subscription, gate: StickyGate) -> Subscription:
    """A one-off `Subscription` that replays a kept event to *sub*'s handler through the strategy.

    Same owner (so ``thread_safe=False`` lines and ``unregister`` apply), priority
    and order as *sub*; never called directly, always through the ``when=`` check,
    which skips it once *sub* is unregistered or a newer event came first.
    """
    binding = sub.binding
    user_when = binding.when

    def when(event: object) -> bool:
        return sub.active and gate.waiting(event) and (user_when is None or bool(user_when(event)))

    spec = SubscriptionSpec(binding.key, binding.thread_safe, binding.priority, when, True)
    replay_binding = Binding(binding.name, spec, binding.key, binding.is_async)
    replay = Subscription(sub.owner, call_target, _Replay(gate), replay_binding, sub.seq)
    replay.direct = replay.direct_parallel = False
    return replay


Replays = list[tuple[object, tuple[Subscription, ...]]]
"""Kept events to replay at a registration: each with the replay subscriptions it goes to."""


def key_of(event: object) -> Hashable:
    """The dispatch-cache key of *event*: its class, plus its topic for `Message`s."""
    cls: Hashable = typing.cast("Hashable", type(event))
    if getattr(cls, "__eventbus_dynamic_topic__", False):
        return (cls, event.topic)  # type: ignore[attr-defined]  # Message has a topic field
    return cls


@final
class Registry:
    """The subscribers of one bus and the handler tuples resolved from them.

    Thread-safe: every change happens under one lock; `handlers_for` reads the
    dispatch cache without locking on a hit.
    """

    __slots__ = (
        "_by_pattern",
        "_by_topic",
        "_by_type",
        "_kept_seq",
        "_lock",
        "_records",
        "_seq",
        "_undoing",
        "bridged",
        "dispatch",
        "kept",
        "loops",
        "replay",
    )

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[Hashable, Subscriber] = {}
        """Every subscriber's record, keyed by `identity` of the registered object."""
        self._by_type: dict[type, list[Subscription]] = {}
        self._by_topic: dict[str, list[Subscription]] = {}
        self._by_pattern: dict[str, list[Subscription]] = {}
        """Subscriptions to topic patterns, matched when a handler tuple is resolved."""
        self._seq = itertools.count()
        self._undoing: tuple[Hashable, Subscriber] | None = None
        """A registration being taken out (an unregister, or an add that failed part-way).

        Set in one store before the first change and cleared after the last, so an
        interrupt anywhere between leaves it set; every operation under the lock
        first finishes it (`_settle`). A retry from inside an ``except`` block is not
        enough: a second interrupt can land on the retry's call (issue 10).
        """
        self.dispatch: dict[Hashable, tuple[Subscription, ...]] = {}
        """The dispatch cache: event key -> sorted handlers. Replaced, never cleared in place."""
        self.loops: HandlerLoops = HandlerLoops()
        """Where the blocking wrappers of ``async def`` handlers run their coroutines."""
        self.bridged: Callable[[type], bool] | None = None
        """Set by the bus's bridges: classes that go to a bridge, not to local handlers, on post (#12)."""
        self.kept: dict[type, tuple[object, int]] = {}
        """Sticky classes' last accepted events, with the order they were kept in (#15)."""
        self._kept_seq = itertools.count()
        self.replay: Callable[[object, Replays], None] | None = None
        """Set by the bus: submits the kept events a new subscriber's sticky handlers receive (#15)."""

    # -- registration ---------------------------------------------------------------

    def add(self, obj: object) -> None:
        """Register *obj* (a no-op if it is registered or has no handlers).

        The bus installs this very method as its ``register`` (see `EventBus`), so
        that registering takes one call: it returns nothing, and `record` finds
        what it made.
        """
        cls = type(obj)
        plan = instance_plans.get(id(cls))  # plan_of()'s fast path, inlined
        if plan is None or plan.cls() is not cls:  # type: ignore[misc]  # a remembered plan has its cls
            plan = plan_of(obj)  # may raise; nothing has changed yet
            if plan is None:
                return
        # `with` and never acquire() before a try: a Ctrl-C can land right after an
        # acquire() returns, and the lock would stay held for ever.
        with self._lock:
            if self._undoing is not None:
                self._settle()
            ident = obj if plan.by_identity else id(obj)
            if ident in self._records:
                return
            record = Subscriber(obj)
            binding = plan.only
            if binding is not None:
                # One method, one key: everything is made first, then the accepted point.
                sub = Subscription(record, plan.only_call, obj, binding, next(self._seq))
                record._subs = sub
                key = binding.key
                table: dict[Any, list[Subscription]] = self._by_topic if plan.only_topic else self._by_type
                found = table.get(key)
                # The accepted point: stores that no interrupt can split (no call among
                # them), then one append; an interrupt after it finds the work done.
                self._records[ident] = record
                if self.dispatch:  # an empty cache holds nothing stale (entries are only made under the lock)
                    self.dispatch = {}
                if found is None:
                    table[key] = [sub]
                else:
                    found.append(sub)
                return
            replays = self._add_several(ident, record, obj, plan.handlers)
            if not replays:
                return
        # Sticky handlers receive the kept events outside the lock: on the sync strategy
        # they run right here, and may take as long as they like.
        replay = self.replay
        if replay is not None:
            replay(obj, replays)

    def _add_several(
        self, ident: Hashable, record: Subscriber, obj: object, handlers: tuple[FoundHandler, ...]
    ) -> Replays:
        # Called with the lock held. Several subscriptions cannot be filed in one step:
        # an interrupt part-way undoes them all (see _settle), so registering stays atomic.
        # Returns the kept events that the sticky handlers are to receive.
        filed: list[Subscription] = []
        for handler in handlers:
            func: Callable[[Any, Any], object] = call_target
            target: Any = obj
            coroutine: Any = None
            if handler.is_async:
                # One wrapper per handler: every key of it shares the target (see _order).
                coroutine = obj if handler.attr is None else getattr(obj, handler.attr)
                target = self.loops.blocking(coroutine)
            elif handler.attr is not None:
                assert handler.call is not None, "a method handler has its call"
                func = handler.call
            if handler.sticky:  # every call goes through the handler's gate (one per handler, for _order)
                target = StickyGate(func, target, coroutine)
                func = call_target
            for binding in handler.bindings:
                filed.append(Subscription(record, func, target, binding, next(self._seq)))
        record._subs = filed[0] if len(filed) == 1 else tuple(filed)
        # From here until the last store, the registration is "being undone" unless it
        # completes: an interrupt anywhere in between is finished by `_settle`.
        self._undoing = (ident, record)
        try:
            self._records[ident] = record
            self.dispatch = {}
            for sub in filed:
                self._file(sub.key, sub)
            # Read under the lock that keep() stores under: see docs/design.md, "Sticky events".
            replays = self._replays_of(record) if self.kept else []
        except BaseException:
            self._settle()  # if an interrupt lands on this call, the next operation settles
            raise
        self._undoing = None  # the accepted point: a single store
        return replays

    def _replays_of(self, record: Subscriber) -> Replays:
        """The kept events that *record*'s sticky handlers receive, oldest first (with the lock held)."""
        replays: Replays = []
        for cls, (event, _) in sorted(self.kept.items(), key=_kept_order):
            subs = _replay_subscriptions(record, cls)
            if subs:
                replays.append((event, subs))
        return replays

    def _table(self, binding: Binding) -> dict[Any, list[Subscription]]:
        if binding.pattern:
            return self._by_pattern
        return self._by_topic if isinstance(binding.key, str) else self._by_type

    def _settle(self) -> None:
        """Finish taking out `_undoing` (with the lock held); idempotent, so it may be cut short and run again."""
        undoing = self._undoing
        if undoing is not None:
            self._drop(undoing[0], undoing[1])
            self._undoing = None

    def _file(self, key: type | str, sub: Subscription) -> None:
        table = self._table(sub.binding)
        found = table.get(key)
        if found is None:
            table[key] = [sub]
        else:
            found.append(sub)

    def remove(self, obj: object) -> Subscriber | None:
        """Unregister *obj*; return its record, or `None` if it was not registered.

        Completed even if an interrupt lands in it (the interrupt then propagates):
        the object is never left half registered.
        """
        ident = identity(obj)
        with self._lock:
            if self._undoing is not None:
                self._settle()
            record = self._records.get(ident)
            if record is None:
                return None
            self._undoing = (ident, record)  # decided: from here on, an interrupt is finished by _settle
            self._settle()
            return record

    def _drop(self, ident: Hashable, record: Subscriber) -> None:
        # Called with the lock held; idempotent: takes out whatever of *record* is still in.
        # The cache goes first: whatever is left half done, no post finds it there, and
        # the post that builds the entry again settles first.
        self.dispatch = {}
        if self._records.get(ident) is record:
            del self._records[ident]
        for sub in record.subscriptions:
            sub.direct_parallel = sub.direct = sub.active = False  # the order the hot paths test them in
        for sub in record.subscriptions:
            table = self._table(sub.binding)
            found = table.get(sub.key)
            if found is not None and any(s is sub for s in found):
                remaining = [s for s in found if s is not sub]
                if remaining:
                    table[sub.key] = remaining
                else:
                    del table[sub.key]

    def before_fork(self) -> None:
        """Take the registry's lock, so that no half-made change is forked."""
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        """Release what `before_fork` took."""
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """In a forked child: a new lock, and no strategy state inherited from the parent.

        Each subscriber's lock or line (`Subscriber.strategy_slot`) may have been held by a
        parent thread that does not exist here; they are made again on first use. A
        lock that the forking thread itself holds (a fork from inside a handler) is kept.
        """
        self._lock = threading.RLock()
        for record in self._records.values():
            slot = record.strategy_slot
            if slot is not None and not (isinstance(slot, _RLOCK_TYPE) and slot._is_owned()):  # type: ignore[attr-defined]
                record.strategy_slot = None
            _gates_after_fork(record)

    def record(self, obj: object) -> Subscriber | None:
        """The record of *obj* (by identity), or `None` if it is not registered."""
        if self._undoing is not None:
            self._settle_locked()
        return self._records.get(identity(obj))

    def contains(self, obj: object) -> bool:
        """Whether *obj* itself (by identity) is registered."""
        if self._undoing is not None:
            self._settle_locked()
        return identity(obj) in self._records

    def _settle_locked(self) -> None:
        with self._lock:
            self._settle()

    def records(self) -> list[Subscriber]:
        """A snapshot of every registered subscriber."""
        with self._lock:
            if self._undoing is not None:
                self._settle()
            return list(self._records.values())

    # -- lookup ----------------------------------------------------------------------

    def handlers_for(self, event: object) -> tuple[Subscription, ...]:
        """Return the handlers of *event*, sorted by priority then registration order."""
        key = key_of(event)
        found = self.dispatch.get(key)
        if found is not None:
            return found
        cls = type(event)
        topic = event.topic if isinstance(event, Event) else None
        with self._lock:
            if self._undoing is not None:
                self._settle()
            dispatch = self.dispatch
            found = dispatch.get(key)
            if found is None:
                # A bridged class has no local handlers for post(): its events go to the bridge (#12).
                # A sticky class has none under this key either: the bus's _accept keeps its
                # events (see keep()), and every fast path falls through to it (#15).
                bridged = self.bridged is not None and self.bridged(cls)
                sticky: bool = getattr(cls, "__eventbus_sticky__", False)
                found = () if bridged or sticky else self.collect(cls.__mro__, topic)
                if len(dispatch) >= _MAX_CACHED_KEYS:
                    dispatch = self.dispatch = {}
                dispatch[key] = found
            return found

    def subscribers(self, key: type | str) -> tuple[Subscription, ...]:
        """The handlers that an event of class *key*, or with topic *key*, would reach."""
        with self._lock:
            if self._undoing is not None:
                self._settle()
            if isinstance(key, str):
                # Everything that could carry this topic: a Message (post("topic", ...))
                # and every event class whose declared topic it is, with their bases.
                carriers: list[type] = [Message, *(c for c in _event_classes() if _static_topic(c) == key)]
                subs = [s for cls in carriers for s in self._collect_unordered(cls.__mro__, key)]
                return _order(subs)
            if isinstance(key, type):
                return self.collect(key.__mro__, _static_topic(key))
        raise TypeError(f"subscribers() takes an event class or a topic string, not {key!r}")

    def collect(self, mro: tuple[type, ...], topic: str | None) -> tuple[Subscription, ...]:
        """The handlers of the classes in *mro* and of *topic*, in call order (a registry lookup, uncached)."""
        with self._lock:  # re-entrant: the bus's lookups call this with the lock held
            if self._undoing is not None:
                self._settle()
            return _order(self._collect_unordered(mro, topic))

    def _collect_unordered(self, mro: tuple[type, ...], topic: str | None) -> list[Subscription]:
        subs = [s for cls in mro for s in self._by_type.get(cls, ())]
        if topic is not None:
            subs.extend(self._by_topic.get(topic, ()))
            if self._by_pattern and DeadEvent not in mro:  # patterns never match dead events
                subs.extend(_matching(self._by_pattern, topic))
        return subs

    # -- sticky events (#15) -----------------------------------------------------------------

    def keep(self, event: object, taken: list[Any]) -> tuple[Subscription, ...]:
        """Keep *event* as its sticky class's last event, and return its handlers.

        The handlers are resolved and the event kept under the lock that registration
        reads the kept events under, so that each subscriber's sticky handler gets
        *event* exactly one way: live (registered before) or replayed (after).
        *taken* (``[None, None]``) receives the entry replaced and the new one, in
        the same call-free run as the replacement, for `unkeep`.
        """
        cls = type(event)
        key = (cls, _STICKY)
        with self._lock:
            if self._undoing is not None:
                self._settle()
            dispatch = self.dispatch
            found = dispatch.get(key)
            if found is None:
                found = self.collect(cls.__mro__, event.topic if isinstance(event, Event) else None)
                if len(dispatch) >= _MAX_CACHED_KEYS:
                    dispatch = self.dispatch = {}
                dispatch[key] = found
            previous = self.kept.get(cls)
            entry = (event, next(self._kept_seq))
            # The replacement, and what undoing it needs: stores, no call among them, so
            # an interrupt finds all three done or none.
            taken[0] = previous
            taken[1] = entry
            self.kept[cls] = entry
        return found

    def unkeep(self, cls: type, entry: tuple[object, int], previous: tuple[object, int] | None) -> None:
        """Take back *entry* (its event was not accepted), unless a newer one replaced it already."""
        with self._lock:
            current = self.kept.get(cls)
            # Compared by sequence number, not identity: compiled, the tuples are values.
            if current is not None and current[1] == entry[1]:
                if previous is None:
                    del self.kept[cls]
                else:
                    self.kept[cls] = previous

    def forget_kept(self, cls: type) -> object:
        """Forget the kept event of *cls*; return it, or `None` if none was kept."""
        with self._lock:
            entry = self.kept.pop(cls, None)
        return None if entry is None else entry[0]


def _gates_after_fork(record: Subscriber) -> None:
    # A parent thread may have been replaying to a sticky handler: its gate's lock may be
    # held, and its mark says "running" for a call that does not exist here (#15).
    for sub in record.subscriptions:
        gate = sub.target
        if isinstance(gate, StickyGate) and not gate.lock._is_owned():  # type: ignore[attr-defined]
            gate.lock = threading.RLock()
            gate.pending = {cls: mark for cls, mark in gate.pending.items() if mark == _WAITING}


def _kept_order(item: tuple[type, tuple[object, int]]) -> int:
    return item[1][1]


def _replay_subscriptions(record: Subscriber, cls: type) -> tuple[Subscription, ...]:
    """*record*'s sticky handlers that receive the kept event of *cls*, as one-off replays, in call order.

    Marks the replay as pending in each handler's gate; a handler with several
    sticky keys that *cls* falls under gets it once.
    """
    subs: list[Subscription] = []
    for sub in record.subscriptions:
        gate = sub.target
        binding = sub.binding
        if (
            binding.sticky
            and isinstance(gate, StickyGate)
            and isinstance(binding.key, type)
            and issubclass(cls, binding.key)
            and cls not in gate.pending
        ):
            gate.pending[cls] = _WAITING
            subs.append(_replay_subscription(sub, gate))
    subs.sort(key=lambda s: (-s.priority, s.seq))
    return tuple(subs)


def _matching(by_pattern: dict[str, list[Subscription]], topic: str) -> list[Subscription]:
    """The subscriptions of every pattern in *by_pattern* that *topic* matches."""
    segments = topic.split(".")
    found: list[Subscription] = []
    for text, subs in by_pattern.items():
        if pattern_of(text).matches(segments):
            found.extend(subs)
    return found


def _event_classes() -> list[type[Event]]:
    """Every `Event` subclass defined so far (for topic introspection, not for posting)."""
    found: list[type[Event]] = []
    pending: list[type[Event]] = [Event]
    seen: set[type[Event]] = set()
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                found.append(sub)
                pending.append(sub)
    return found


def _static_topic(cls: type) -> str | None:
    if issubclass(cls, Event) and not getattr(cls, "__eventbus_dynamic_topic__", False):
        return cls.topic
    return None


def _order(subs: list[Subscription]) -> tuple[Subscription, ...]:
    """Sort by priority (descending) then registration order, keeping one call per handler."""
    subs.sort(key=lambda s: (-s.priority, s.seq))
    seen: set[tuple[int, int, int]] = set()
    out: list[Subscription] = []
    for sub in subs:
        # Every key of one handler of one subscriber shares one func and one target
        # (see Registry.add); different handlers differ in func or target.
        ident = (id(sub.owner), id(sub.func), id(sub.target))
        if ident not in seen:
            seen.add(ident)
            out.append(sub)
    return tuple(out)
