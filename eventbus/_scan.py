"""Scanning a subscriber's class: which methods are handlers, and how to call them.

`scan_class` finds the ``@subscribe`` handlers of a class once (cached per class),
checks every handler's signature against what it subscribed to, and describes each
as a `FoundHandler` with one `Binding` per key. `plan_of` turns that into a `Plan`:
what `Registry.add` needs to register an instance without deciding anything again.
The registry builds on this module; nothing here knows about buses or delivery.
"""

from __future__ import annotations

import contextlib
import inspect
import types
import typing
import weakref
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any, Final, Union, final, get_args, get_origin

from ._decorators import SubscriptionSpec, specs_of
from ._errors import SubscriptionError
from ._patterns import is_pattern

__all__ = [
    "Binding",
    "FoundHandler",
    "Plan",
    "call_target",
    "compares_by_identity",
    "identity",
    "instance_plans",
    "plan_of",
    "scan_class",
]

_UNION_TYPES: tuple[object, ...] = (Union, types.UnionType)
_OBJECT_HASH: Final = object.__hash__
_OBJECT_EQ: Final = object.__eq__


@final
class Binding:
    """One handler of a class bound to one key: what its scan found, shared by every instance.

    A `Subscription` points here for everything that does not change per
    subscriber, which keeps each registration small.
    """

    __slots__ = (
        "direct",
        "direct_parallel",
        "is_async",
        "key",
        "name",
        "pattern",
        "priority",
        "sticky",
        "thread_safe",
        "when",
    )

    def __init__(self, name: str, spec: SubscriptionSpec, key: type | str, is_async: bool) -> None:
        self.name: str = name
        self.is_async: bool = is_async
        self.key: type | str = key
        self.priority: int = spec.priority
        self.thread_safe: bool = spec.thread_safe
        self.when: Callable[[Any], bool] | None = spec.when
        self.direct: bool = spec.when is None
        """What a new `Subscription.direct` starts as."""
        self.direct_parallel: bool = self.direct and spec.thread_safe
        """What a new `Subscription.direct_parallel` starts as."""
        self.pattern: bool = isinstance(key, str) and is_pattern(key)
        """Whether *key* is a topic pattern (``"orders.*"``), matched when handler lists are built."""
        self.sticky: bool = spec.sticky
        """Whether the handler receives its class's kept event when registered."""


@dataclass(frozen=True, slots=True)
class FoundHandler:
    """A handler found by scanning a class: where it lives and what it wants."""

    attr: str | None  # attribute name on the class; None for a plain function
    func: Callable[..., object]
    bindings: tuple[Binding, ...]  # one per key it subscribed to
    name: str
    is_async: bool  # an async def handler: decided once, at the scan
    call: Callable[[Any, Any], object] | None = None
    """How a method handler is called: ``call(instance, event)``, one for all instances."""
    sticky: bool = False
    """Whether any of its keys asked for the kept event at registration (#15)."""


def call_target(target: Callable[[Any], object], event: object) -> object:
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
) -> FoundHandler | None:
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
            if spec.sticky:
                unkept = [cls.__qualname__ for cls in classes if not getattr(cls, "__eventbus_sticky__", False)]
                if unkept:
                    raise fail(
                        f"uses a bare @subscribe(sticky=True), but its annotation names {', '.join(unkept)}, "
                        "which is not a sticky event class.",
                        f"Declare it `class {unkept[0]}(Event, sticky=True)`, or drop sticky=True.",
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
    sticky = any(binding.sticky for binding in bindings)
    return FoundHandler(attr=None, func=func, bindings=bindings, name=name, is_async=is_async, sticky=sticky)


# Per-class scan results. Weak keys, so classes defined at run time (tests, plugins) can be freed.
_scan_cache: weakref.WeakKeyDictionary[type, tuple[FoundHandler, ...]] = weakref.WeakKeyDictionary()


def scan_class(cls: type) -> tuple[FoundHandler, ...]:
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
    handlers: list[FoundHandler] = []
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
            handlers.append(
                FoundHandler(attr, found.func, found.bindings, found.name, found.is_async, call, found.sticky)
            )
    result = tuple(handlers)
    with contextlib.suppress(TypeError):  # a class that cannot be weakly referenced is just not cached
        _scan_cache[cls] = result
    return result


@final
class Plan:
    """How to register an object: its handlers, and what `Registry.add` can skip.

    Made once per class (and per call for a plain function), so that registering
    many instances of one class repeats none of the decisions.
    """

    __slots__ = ("by_identity", "cls", "handlers", "only", "only_call", "only_topic")

    def __init__(self, handlers: tuple[FoundHandler, ...], cls: type) -> None:
        self.cls: weakref.ref[type] | None = None
        """The class, weakly, once the plan is remembered for it (see `remember_plan`)."""
        self.handlers = handlers
        self.by_identity = compares_by_identity(cls)
        """Instances compare by identity, so each is its own key in the registry (see `identity`)."""
        first = handlers[0]
        simple = (
            len(handlers) == 1
            and first.call is not None
            and not first.is_async
            and len(first.bindings) == 1
            and not first.bindings[0].pattern  # filed in a table of its own
            and not first.sticky  # called through a gate, and may receive kept events
        )
        self.only: Binding | None = first.bindings[0] if simple else None
        """The one binding, when one method subscribes to one key: the common case."""
        self.only_call: Callable[[Any, Any], object] = first.call if first.call is not None else call_target
        """The method's call, when `only` is set."""
        self.only_topic = simple and isinstance(first.bindings[0].key, str)
        """Whether `only` subscribes to a topic string rather than a class."""


# register()'s fast path: the plans of classes whose instances were registered, by
# id(class). Each plan knows its class weakly and is checked against it on lookup, so
# a plan left behind by a class that died (and whose entry was not dropped, say
# because a Ctrl-C landed in the weakref callback) is never used for a class that
# reuses its id. (A WeakKeyDictionary lookup makes a weak reference on every call, a
# fifth of what registering an object costs.)
instance_plans: dict[int, Plan] = {}


def remember_plan(cls: type, plan: Plan) -> None:
    key = id(cls)

    def forget(_: object) -> None:
        if instance_plans.get(key) is plan:
            del instance_plans[key]

    try:
        plan.cls = weakref.ref(cls, forget)
    except TypeError:
        return
    instance_plans[key] = plan


def plan_of(obj: object) -> Plan | None:
    """The registration plan of *obj*, or `None` when it has no handlers.

    Raises:
        SubscriptionError: *obj* is a class or a bound method, or a handler's
            signature cannot receive what it subscribed to.
    """
    cls = type(obj)
    plan = instance_plans.get(id(cls))
    if plan is not None and plan.cls is not None and plan.cls() is cls:
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
        return None if found is None else Plan((found,), cls)
    try:
        handlers = scan_class(cls)
    except SubscriptionError as exc:
        exc.subscriber = obj
        raise
    if not handlers:  # not remembered: a bound method's class must keep failing above
        return None
    plan = Plan(handlers, cls)
    remember_plan(cls, plan)
    return plan


def identity(obj: object) -> Hashable:
    """The registry's key for *obj*, so that subscribers are told apart by identity.

    An object whose class keeps ``object``'s ``__eq__`` and ``__hash__`` already
    compares by identity and is its own key; any other object (unhashable, or with
    an ``__eq__`` of its own) is keyed by its ``id()``. The two kinds of key never
    compare equal, and skipping the ``id()`` saves a 32-byte int per subscriber.
    """
    if compares_by_identity(type(obj)):
        return obj
    return id(obj)


def compares_by_identity(cls: type) -> bool:
    """Whether instances of *cls* keep ``object``'s ``__eq__`` and ``__hash__``."""
    hash_: object = cls.__hash__
    eq: object = cls.__eq__
    return hash_ is _OBJECT_HASH and eq is _OBJECT_EQ
