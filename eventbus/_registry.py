"""The registry: who subscribed to what, and the cached handler list per event type.

Registering an object scans its class once (the scan is cached per class), checks
every handler's signature against what it subscribed to, and only then adds the
handlers: registration is atomic. Subscribers are kept by identity, so unhashable
objects and objects with their own ``__eq__`` work.

Posting never scans: `Registry.handlers_for` looks the event's class up in a
dispatch cache that maps it to a ready, sorted tuple of `Subscription`s. Any
change to the registry replaces that cache with an empty one (copy-on-write), so
a post that is already iterating a tuple is never disturbed, and the next post
of each event type resolves its tuple once.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import threading
import types
import typing
import weakref
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Union, final, get_args, get_origin

from ._asyncio import HandlerLoops
from ._decorators import SubscriptionSpec, specs_of
from ._errors import SubscriptionError
from ._events import Event, Message

__all__ = ["Binding", "Registry", "Subscriber", "Subscription"]

_UNION_TYPES: tuple[object, ...] = (Union, types.UnionType)
_OBJECT_HASH: Final = object.__hash__
_OBJECT_EQ: Final = object.__eq__
_MAX_CACHED_KEYS: Final = 10_000  # Message topics are open-ended; bound the cache they fill.


@final
class Subscriber:
    """The registry's record of one registered object (or plain function)."""

    __slots__ = ("_subs", "lane", "obj")

    def __init__(self, obj: object) -> None:
        self.obj = obj
        # One Subscription, or a tuple of several: most subscribers have one handler,
        # and a one-element tuple would cost another 56 bytes per subscriber.
        self._subs: Subscription | tuple[Subscription, ...] = ()
        self.lane: object = None
        """What the bus's strategy keeps per subscriber, made on first use: the sync
        strategy's lock (see `lock`), a thread pool's or the asyncio strategy's line.
        A record belongs to one bus, and a bus has one strategy, so one slot serves."""

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """This subscriber's handlers, one `Subscription` per subscribed key."""
        subs = self._subs
        return subs if isinstance(subs, tuple) else (subs,)

    @property
    def lock(self) -> threading.RLock:
        """Serialises this subscriber's ``thread_safe=False`` handlers on the sync strategy.

        Made on first use and kept in `lane`: most subscribers never need one (a sync
        bus posted to from one thread takes no lock), and an RLock costs about 100
        bytes per subscriber.
        """
        lock = self.lane
        if lock is None:
            with _lock_making:
                lock = self.lane
                if lock is None:
                    lock = self.lane = threading.RLock()
        return lock  # type: ignore[return-value]  # only the sync strategy asks, and it keeps nothing else here


_lock_making = threading.Lock()  # makes Subscriber.lock creation race-free


def _new_lock_making() -> None:
    global _lock_making  # a forked child must not inherit it held
    _lock_making = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_lock_making)
_RLOCK_TYPE: Final = type(threading.RLock())


@final
class Binding:
    """One handler of a class bound to one key: what its scan found, shared by every instance.

    A `Subscription` points here for everything that does not change per
    subscriber, which keeps each registration small.
    """

    __slots__ = ("fast", "is_async", "key", "name", "plain", "priority", "thread_safe", "when")

    def __init__(self, name: str, spec: SubscriptionSpec, key: type | str, is_async: bool) -> None:
        self.name = name
        self.is_async = is_async
        self.key = key
        self.priority = spec.priority
        self.thread_safe = spec.thread_safe
        self.when = spec.when
        self.plain = spec.when is None
        """What a new `Subscription.plain` starts as."""
        self.fast = self.plain and spec.thread_safe
        """What a new `Subscription.fast` starts as."""


@final
class Subscription:
    """One handler of one registered subscriber, as the bus will call it.

    Returned by ``EventBus.subscribers()``; read-only for users.
    """

    # Eight slots (96 bytes): what differs per subscriber, plus the flags the hot
    # paths test. The rest is shared with every instance of the class (Binding), and
    # the handler is called as func(target, event), so no bound method is kept.
    __slots__ = ("active", "binding", "fast", "func", "owner", "plain", "seq", "target")

    def __init__(
        self, owner: Subscriber, func: Callable[[Any, Any], object], target: Any, binding: Binding, seq: int
    ) -> None:
        self.owner = owner
        self.func = func
        """Called as ``func(target, event)``: the class's function for a method handler
        (shared by every instance), a small caller otherwise."""
        self.target = target
        """The instance of a method handler; the function itself for a plain function;
        for an ``async def`` handler, a blocking wrapper whose ``__wrapped__`` is the
        bound coroutine function."""
        self.binding = binding
        """What the handler subscribed to and how, shared by every instance of its class."""
        self.seq = seq
        """Registration order, which breaks ties between equal priorities."""
        self.active = True
        """False once the subscriber is unregistered: queued events skip it."""
        self.plain = binding.plain
        """Active and unfiltered: the sync strategy may call it without further checks."""
        self.fast = binding.fast
        """Plain and thread-safe: a thread pool may call it inline, with no line to join."""

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
        if self.func is _call_target:
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
        """The event class or topic string it subscribed to."""
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

    def __repr__(self) -> str:
        key = self.key if isinstance(self.key, str) else self.key.__qualname__
        return f"<Subscription {self.name} to {key!r} priority={self.priority} thread_safe={self.thread_safe}>"


@dataclass(frozen=True, slots=True)
class _Handler:
    """A handler found by scanning a class: where it lives and what it wants."""

    attr: str | None  # attribute name on the class; None for a plain function
    func: Callable[..., object]
    bindings: tuple[Binding, ...]  # one per key it subscribed to
    name: str
    is_async: bool  # an async def handler: decided once, at the scan
    call: Callable[[Any, Any], object] | None = None
    """How a method handler is called: ``call(instance, event)``, one for all instances."""


def _call_target(target: Callable[[Any], object], event: object) -> object:
    """`Subscription.func` of a handler that is itself the target: a plain function or a wrapper."""
    return target(event)


def _method_call(raw: object, func: Callable[..., object], cls: type) -> Callable[[Any, Any], object]:
    """``call(instance, event)`` for the handler *func* found on *cls* as *raw*."""
    if isinstance(raw, staticmethod):

        def call_static(instance: object, event: object) -> object:
            return func(event)

        return call_static
    if isinstance(raw, classmethod):

        def call_class(instance: object, event: object) -> object:
            return func(cls, event)

        return call_class
    return func  # a plain def: func(instance, event) is the call a bound method makes


def _resolve_annotation(func: Callable[..., object], param: str, owner_cls: type | None) -> tuple[bool, object]:
    """Return (found, annotation) for *param*, resolving string and forward references."""
    localns: dict[str, Any] = {}
    if owner_cls is not None:
        localns[owner_cls.__name__] = owner_cls
        localns.update({k: v for k, v in vars(owner_cls).items() if isinstance(v, type)})
    try:
        hints = typing.get_type_hints(func, localns=localns)
    except Exception as exc:  # NameError for unresolvable forward references, and kin
        raw = getattr(func, "__annotations__", {}).get(param, inspect.Parameter.empty)
        if raw is inspect.Parameter.empty:
            return False, None
        raise _Unresolvable(raw, exc) from exc
    if param not in hints:
        return False, None
    return True, hints[param]


class _Unresolvable(Exception):
    def __init__(self, raw: object, cause: BaseException) -> None:
        super().__init__(raw)
        self.raw = raw
        self.cause = cause


def _unparametrized(cls: type) -> type:
    """Map a pydantic generic parametrized only with `Any` to its origin class.

    ``Page[Any]`` is how strictly typed code spells "any page", but pydantic makes
    it a class of its own that no ``Page[int]`` is an instance of; taken literally,
    ``@subscribe(Page)`` with that annotation would be refused and a bare
    ``@subscribe`` would subscribe to a class that no event has.
    """
    metadata = getattr(cls, "__pydantic_generic_metadata__", None)
    if metadata and metadata.get("origin") is not None and all(arg is Any for arg in metadata.get("args", ())):
        origin: type = metadata["origin"]
        return origin
    return cls


def _classes_in(annotation: object) -> tuple[type, ...] | None:
    """The classes an annotation accepts, or `None` when it accepts anything or cannot be read."""
    if annotation is Any or annotation is object:
        return None
    if isinstance(annotation, type):
        return (_unparametrized(annotation),)
    if get_origin(annotation) in _UNION_TYPES:
        out: list[type] = []
        for member in get_args(annotation):
            inner = _classes_in(member)
            if inner is None:
                return None
            out.extend(inner)
        return tuple(out)
    return None


def _scan_callable(
    func: Callable[..., object], skip: int, where: str, owner_cls: type | None, subscriber: object
) -> _Handler | None:
    """Validate one decorated callable and return what it subscribes to."""
    specs = specs_of(func)
    if not specs:
        return None
    name = getattr(func, "__qualname__", repr(func))

    def fail(problem: str, fix: str) -> SubscriptionError:
        return SubscriptionError(f"{where}: {problem}\n{fix}", subscriber=subscriber, handler=name)

    try:
        params = list(inspect.signature(func).parameters.values())[skip:]
    except (TypeError, ValueError):
        raise fail("has no signature that eventbus can read.", "Decorate a plain def function or method.") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in params if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    takes_var = any(p.kind is p.VAR_POSITIONAL for p in params)
    keyword_only = bool(required) and required[0].kind is inspect.Parameter.KEYWORD_ONLY
    if (not positional and not takes_var) or len(required) > 1 or keyword_only:
        shown = "(" + ", ".join(str(p) for p in params) + ")"
        raise fail(
            f"must take exactly one event argument, but its parameters are {shown}.",
            "Write it as `def handler(self, event: SomeEvent) -> None` (or `def handler(event)` for a plain function).",
        )
    event_param = positional[0].name if positional else None
    try:
        found, annotation = (
            _resolve_annotation(func, event_param, owner_cls) if event_param is not None else (False, None)
        )
    except _Unresolvable as unresolvable:
        if any(spec.key is None for spec in specs):
            raise fail(
                f"annotates its event parameter as {unresolvable.raw!r}, which cannot be resolved "
                f"({unresolvable.cause}).",
                "Define or import that class at module level, or name it explicitly: @subscribe(EventClass).",
            ) from None
        found, annotation = False, None

    keys: list[tuple[SubscriptionSpec, type | str]] = []
    for spec in specs:
        if spec.key is None:
            classes = _classes_in(annotation) if found else None
            if not found or classes is None:
                what = f"its annotation {annotation!r} names no event class" if found else "it has no annotation"
                raise fail(
                    f"uses a bare @subscribe, but {what}.",
                    f"Annotate the event parameter (`{event_param or 'event'}: OrderPlaced`) "
                    "or name the key: @subscribe(OrderPlaced) or @subscribe('topic').",
                )
            keys.extend((spec, cls) for cls in classes)
            continue
        if isinstance(spec.key, type) and found:
            accepted = _classes_in(annotation)
            if accepted is not None and not any(issubclass(spec.key, cls) for cls in accepted):
                raise fail(
                    f"subscribes to {spec.key.__qualname__} but annotates its event parameter as "
                    f"{annotation!r}, which cannot receive it.",
                    f"Annotate it as {spec.key.__qualname__} (or a base class of it), "
                    "or subscribe to the class it annotates.",
                )
        keys.append((spec, spec.key))
    is_async = inspect.iscoroutinefunction(func)
    bindings = tuple(Binding(name, spec, key, is_async) for spec, key in keys)
    return _Handler(attr=None, func=func, bindings=bindings, name=name, is_async=is_async)


# Per-class scan results. Weak keys, so classes defined at run time (tests, plugins) can be freed.
_scan_cache: weakref.WeakKeyDictionary[type, tuple[_Handler, ...]] = weakref.WeakKeyDictionary()


def scan_class(cls: type) -> tuple[_Handler, ...]:
    """Return the handlers declared by *cls* and its bases, in definition order (cached).

    Raises:
        SubscriptionError: A handler's signature cannot receive what it subscribed to.
    """
    try:
        return _scan_cache[cls]
    except (KeyError, TypeError):
        pass
    names: dict[str, None] = {}
    for klass in reversed(cls.__mro__):  # bases first, so ties run base handlers first
        names.update(dict.fromkeys(vars(klass)))
    handlers: list[_Handler] = []
    for attr in names:
        if attr.startswith("__") and attr.endswith("__"):
            continue
        try:
            raw = inspect.getattr_static(cls, attr)
        except AttributeError:
            continue
        if isinstance(raw, staticmethod):
            func, skip = raw.__func__, 0
        elif isinstance(raw, classmethod):
            func, skip = raw.__func__, 1
        elif inspect.isfunction(raw):
            func, skip = raw, 1
        else:
            continue
        if not specs_of(func):
            continue
        where = f"{cls.__qualname__}.{attr}"
        found = _scan_callable(func, skip, where, cls, None)
        if found is not None:
            call = _method_call(raw, found.func, cls)
            handlers.append(_Handler(attr, found.func, found.bindings, found.name, found.is_async, call))
    result = tuple(handlers)
    with contextlib.suppress(TypeError):  # a class that cannot be weakly referenced is just not cached
        _scan_cache[cls] = result
    return result


@final
class _Plan:
    """How to register an object: its handlers, and what `Registry.add` can skip.

    Made once per class (and per call for a plain function), so that registering
    many instances of one class repeats none of the decisions.
    """

    __slots__ = ("by_identity", "handlers", "only", "only_call", "only_topic")

    def __init__(self, handlers: tuple[_Handler, ...], cls: type) -> None:
        self.handlers = handlers
        self.by_identity = _compares_by_identity(cls)
        """Instances compare by identity, so each is its own key in the registry (see `_identity`)."""
        first = handlers[0]
        simple = len(handlers) == 1 and first.call is not None and not first.is_async and len(first.bindings) == 1
        self.only: Binding | None = first.bindings[0] if simple else None
        """The one binding, when one method subscribes to one key: the common case."""
        self.only_call: Callable[[Any, Any], object] = first.call if first.call is not None else _call_target
        """The method's call, when `only` is set."""
        self.only_topic = simple and isinstance(first.bindings[0].key, str)
        """Whether `only` subscribes to a topic string rather than a class."""


# register()'s fast path: the plans of classes whose instances were registered, by
# id(class). A weak reference to each class drops its entry when the class is freed,
# before its id can be reused. (A WeakKeyDictionary lookup makes a weak reference on
# every call, a fifth of what registering an object costs.)
_instance_plans: dict[int, _Plan] = {}
_instance_plan_refs: dict[int, weakref.ref[type]] = {}


def _remember_plan(cls: type, plan: _Plan) -> None:
    key = id(cls)

    def forget(_: object) -> None:
        _instance_plans.pop(key, None)
        _instance_plan_refs.pop(key, None)

    try:
        _instance_plan_refs[key] = weakref.ref(cls, forget)
    except TypeError:
        return
    _instance_plans[key] = plan


def _plan_of(obj: object) -> _Plan | None:
    """The registration plan of *obj*, or `None` when it has no handlers.

    Raises:
        SubscriptionError: *obj* is a class or a bound method, or a handler's
            signature cannot receive what it subscribed to.
    """
    cls = type(obj)
    plan = _instance_plans.get(id(cls))
    if plan is not None:
        return plan
    if isinstance(obj, type):
        if scan_class(obj):
            raise SubscriptionError(
                f"register({obj.__qualname__}) was given the class, not an instance.\n"
                f"Register an instance: bus.register({obj.__qualname__}(...)).",
                subscriber=obj,
            )
        return None
    if isinstance(obj, types.MethodType) and specs_of(obj.__func__):
        raise SubscriptionError(
            f"register() was given the bound method {obj.__qualname__}.\n"
            "Register the object that owns it: bus.register(instance).",
            subscriber=obj,
            handler=obj.__qualname__,
        )
    if isinstance(obj, types.FunctionType):
        found = _scan_callable(obj, 0, obj.__qualname__, None, obj)
        return None if found is None else _Plan((found,), cls)
    try:
        handlers = scan_class(cls)
    except SubscriptionError as exc:
        exc.subscriber = obj
        raise
    if not handlers:  # not remembered: a bound method's class must keep failing above
        return None
    plan = _Plan(handlers, cls)
    _remember_plan(cls, plan)
    return plan


def _identity(obj: object) -> Hashable:
    """The registry's key for *obj*, so that subscribers are told apart by identity.

    An object whose class keeps ``object``'s ``__eq__`` and ``__hash__`` already
    compares by identity and is its own key; any other object (unhashable, or with
    an ``__eq__`` of its own) is keyed by its ``id()``. The two kinds of key never
    compare equal, and skipping the ``id()`` saves a 32-byte int per subscriber.
    """
    if _compares_by_identity(type(obj)):
        return obj
    return id(obj)


def _compares_by_identity(cls: type) -> bool:
    """Whether instances of *cls* keep ``object``'s ``__eq__`` and ``__hash__``."""
    hash_: object = cls.__hash__
    eq: object = cls.__eq__
    return hash_ is _OBJECT_HASH and eq is _OBJECT_EQ


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

    __slots__ = ("_by_topic", "_by_type", "_lock", "_records", "_seq", "bridged", "dispatch", "loops")

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._records: dict[Hashable, Subscriber] = {}
        """Every subscriber's record, keyed by `_identity` of the registered object."""
        self._by_type: dict[type, list[Subscription]] = {}
        self._by_topic: dict[str, list[Subscription]] = {}
        self._seq = itertools.count()
        self.dispatch: dict[Hashable, tuple[Subscription, ...]] = {}
        """The dispatch cache: event key -> sorted handlers. Replaced, never cleared in place."""
        self.loops = HandlerLoops()
        """Where the blocking wrappers of ``async def`` handlers run their coroutines."""
        self.bridged: Callable[[type], bool] | None = None
        """Set by the bus's bridges: classes that go to a bridge, not to local handlers, on post (#12)."""

    # -- registration ---------------------------------------------------------------

    def add(self, obj: object) -> None:
        """Register *obj* (a no-op if it is registered or has no handlers).

        The bus installs this very method as its ``register`` (see `EventBus`), so
        that registering takes one call: it returns nothing, and `record` finds
        what it made.
        """
        plan = _instance_plans.get(id(type(obj)))  # _plan_of()'s fast path, inlined
        if plan is None:
            plan = _plan_of(obj)  # may raise; nothing has changed yet
            if plan is None:
                return
        # `with` and never acquire() before a try: a Ctrl-C can land right after an
        # acquire() returns, and the lock would stay held for ever.
        with self._lock:
            ident = obj if plan.by_identity else id(obj)
            if ident in self._records:
                return
            record = Subscriber(obj)
            binding = plan.only
            if binding is None:
                self._add_several(ident, record, obj, plan.handlers)
                return
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

    def _add_several(self, ident: Hashable, record: Subscriber, obj: object, handlers: tuple[_Handler, ...]) -> None:
        # Called with the lock held. Several subscriptions cannot be filed in one step:
        # an interrupt part-way undoes them all (see _undo_add), so registering stays atomic.
        filed: list[Subscription] = []
        for handler in handlers:
            func: Callable[[Any, Any], object] = _call_target
            target: Any = obj
            if handler.is_async:
                # One wrapper per handler: every key of it shares the target (see _order).
                coroutine: Any = obj if handler.attr is None else getattr(obj, handler.attr)
                target = self.loops.blocking(coroutine)
            elif handler.attr is not None:
                assert handler.call is not None, "a method handler has its call"
                func = handler.call
            for binding in handler.bindings:
                filed.append(Subscription(record, func, target, binding, next(self._seq)))
        record._subs = filed[0] if len(filed) == 1 else tuple(filed)
        try:
            self._records[ident] = record
            self.dispatch = {}
            for sub in filed:
                self._file(sub.key, sub)
        except BaseException:
            self._undo_add(ident, record)
            raise

    def _undo_add(self, ident: Hashable, record: Subscriber) -> None:
        # Idempotent, and run again until it completes if another interrupt lands in it.
        try:
            self._drop(ident, record)
        except BaseException:
            self._undo_add(ident, record)
            raise

    def _file(self, key: type | str, sub: Subscription) -> None:
        table: dict[Any, list[Subscription]] = self._by_topic if isinstance(key, str) else self._by_type
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
        ident = _identity(obj)
        with self._lock:
            record = self._records.get(ident)
            if record is None:
                return None
            self._undo_add(ident, record)
            return record

    def _drop(self, ident: Hashable, record: Subscriber) -> None:
        # Called with the lock held; idempotent: takes out whatever of *record* is still in.
        self._records.pop(ident, None)
        for sub in record.subscriptions:
            sub.fast = sub.plain = sub.active = False  # the order the hot paths test them in
        for sub in record.subscriptions:
            table: dict[Any, list[Subscription]] = self._by_topic if isinstance(sub.key, str) else self._by_type
            found = table.get(sub.key)
            if found is not None and any(s is sub for s in found):
                remaining = [s for s in found if s is not sub]
                if remaining:
                    table[sub.key] = remaining
                else:
                    del table[sub.key]
        self.dispatch = {}

    def before_fork(self) -> None:
        """Take the registry's lock, so that no half-made change is forked."""
        self._lock.acquire()

    def after_fork_in_parent(self) -> None:
        """Release what `before_fork` took."""
        self._lock.release()

    def after_fork_in_child(self) -> None:
        """In a forked child: a new lock, and no strategy state inherited from the parent.

        Each subscriber's lock or line (`Subscriber.lane`) may have been held by a
        parent thread that does not exist here; they are made again on first use. A
        lock that the forking thread itself holds (a fork from inside a handler) is kept.
        """
        self._lock = threading.RLock()
        for record in self._records.values():
            lane = record.lane
            if lane is not None and not (isinstance(lane, _RLOCK_TYPE) and lane._is_owned()):  # type: ignore[attr-defined]
                record.lane = None

    def record(self, obj: object) -> Subscriber | None:
        """The record of *obj* (by identity), or `None` if it is not registered."""
        return self._records.get(_identity(obj))

    def contains(self, obj: object) -> bool:
        """Whether *obj* itself (by identity) is registered."""
        return _identity(obj) in self._records

    def records(self) -> list[Subscriber]:
        """A snapshot of every registered subscriber."""
        with self._lock:
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
            dispatch = self.dispatch
            found = dispatch.get(key)
            if found is None:
                # A bridged class has no local handlers for post(): its events go to the bridge (#12).
                bridged = self.bridged is not None and self.bridged(cls)
                found = () if bridged else self._collect(cls.__mro__, topic)
                if len(dispatch) >= _MAX_CACHED_KEYS:
                    dispatch = self.dispatch = {}
                dispatch[key] = found
            return found

    def subscribers(self, key: type | str) -> tuple[Subscription, ...]:
        """The handlers that an event of class *key*, or with topic *key*, would reach."""
        with self._lock:
            if isinstance(key, str):
                # Everything that could carry this topic: a Message (post("topic", ...))
                # and every event class whose declared topic it is, with their bases.
                carriers: list[type] = [Message, *(c for c in _event_classes() if _static_topic(c) == key)]
                subs = [s for cls in carriers for s in self._collect_unordered(cls.__mro__, key)]
                return _order(subs)
            if isinstance(key, type):
                return self._collect(key.__mro__, _static_topic(key))
        raise TypeError(f"subscribers() takes an event class or a topic string, not {key!r}")

    def _collect(self, mro: tuple[type, ...], topic: str | None) -> tuple[Subscription, ...]:
        return _order(self._collect_unordered(mro, topic))

    def _collect_unordered(self, mro: tuple[type, ...], topic: str | None) -> list[Subscription]:
        subs = [s for cls in mro for s in self._by_type.get(cls, ())]
        if topic is not None:
            subs.extend(self._by_topic.get(topic, ()))
        return subs


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
