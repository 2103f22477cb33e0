"""The `subscribe` decorator: marks a function or method as an event handler.

The decorator only records *what* the handler wants (a `SubscriptionSpec`) on
the function and returns the function unchanged, so a subscriber class stays an
ordinary class that works without any bus. The registry reads the records when
an object is registered (see ``_registry``); checks that need the owning class,
such as the handler's signature, happen there.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, Union, get_args, get_origin, overload

from ._errors import SubscriptionError
from ._patterns import topic_problem

__all__ = ["SPECS_ATTR", "SubscriptionSpec", "check_sticky_key", "specs_of", "subscribe"]

_F = TypeVar("_F", bound=Callable[..., object])

SPECS_ATTR = "__eventbus_subscriptions__"
"""The attribute under which `subscribe` stores a handler's specs (a tuple)."""

_UNION_TYPES: tuple[object, ...] = (Union, types.UnionType)


@dataclass(frozen=True, slots=True)
class SubscriptionSpec:
    """What one ``@subscribe`` line asked for; a stacked decorator adds another spec."""

    key: type | str | None
    """The event class or topic string; `None` means "read it from the annotation"."""
    thread_safe: bool = False
    """Whether the handler may run on several threads at once for one subscriber."""
    priority: int = 0
    """Handlers with a higher priority run first."""
    when: Callable[[Any], bool] | None = None
    """A filter: the handler is skipped for events for which it returns false."""
    sticky: bool = False
    """Whether the handler receives the kept event of its (sticky) class when registered."""


def specs_of(obj: object) -> tuple[SubscriptionSpec, ...]:
    """Return the specs that ``@subscribe`` attached to *obj* (empty if none)."""
    specs = getattr(obj, SPECS_ATTR, ())
    return specs if isinstance(specs, tuple) else ()


def _expand_key(key: object) -> tuple[type | str, ...]:
    """Validate a decorator argument and return the keys it stands for.

    A union of classes (``A | B``) subscribes to each member.
    """
    if isinstance(key, str):
        if not key:
            raise SubscriptionError("@subscribe(''): a topic must be a non-empty string.")
        problem = topic_problem(key)
        if problem is not None:
            raise SubscriptionError(f"@subscribe({key!r}): {problem}")
        return (key,)
    if isinstance(key, type):
        return (key,)
    if get_origin(key) in _UNION_TYPES:
        members = get_args(key)
        if all(isinstance(m, type) for m in members):
            return tuple(members)
    raise SubscriptionError(
        f"@subscribe({key!r}): the argument must be an event class, a union of event classes "
        "or a topic string.\n"
        "Write @subscribe(OrderPlaced), @subscribe('orders.placed'), or a bare @subscribe "
        "to take the class from the handler's annotation."
    )


def check_sticky_key(key: object) -> None:
    """Refuse a ``sticky=True`` subscription to anything but a sticky event class."""
    if key is None:
        return  # a bare @subscribe(sticky=True): the scan checks the annotation's classes
    if isinstance(key, str):
        raise SubscriptionError(
            f"@subscribe({key!r}, sticky=True): sticky handlers subscribe to an event class, not a topic.\n"
            "Write @subscribe(Settings, sticky=True) for a class declared `class Settings(Event, sticky=True)`."
        )
    if not getattr(key, "__eventbus_sticky__", False):
        name = getattr(key, "__qualname__", repr(key))
        raise SubscriptionError(
            f"@subscribe({name}, sticky=True): {name} is not a sticky event class, so the bus keeps no event of it.\n"
            f"Declare it `class {name}(Event, sticky=True)`, or drop sticky=True."
        )


def _check_options(thread_safe: object, priority: object, when: object, sticky: object) -> None:
    if not isinstance(sticky, bool):
        raise SubscriptionError(f"@subscribe(sticky={sticky!r}): sticky must be True or False.")
    if not isinstance(thread_safe, bool):
        raise SubscriptionError(f"@subscribe(thread_safe={thread_safe!r}): thread_safe must be True or False.")
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise SubscriptionError(f"@subscribe(priority={priority!r}): priority must be an int (higher runs first).")
    if when is not None and not callable(when):
        raise SubscriptionError(
            f"@subscribe(when={when!r}): when must be a callable that takes the event and returns a bool."
        )


def _attach(func: _F, specs: tuple[SubscriptionSpec, ...]) -> _F:
    if isinstance(func, (staticmethod, classmethod)):
        target: object = func.__func__
    else:
        target = func
    if isinstance(target, types.MethodType):
        raise SubscriptionError(
            f"@subscribe was applied to the bound method {func!r}.\n"
            "Decorate the method in its class body, then register the instance."
        )
    if isinstance(target, type) or not callable(target):
        raise SubscriptionError(
            f"@subscribe was applied to {func!r}, which is not a function.\nPut it on a function or a method."
        )
    try:
        setattr(target, SPECS_ATTR, specs_of(target) + specs)
    except (AttributeError, TypeError):
        raise SubscriptionError(
            f"@subscribe cannot mark {func!r}: it does not accept attributes.\n"
            "Wrap it in a plain Python function and decorate that."
        ) from None
    return func


# The decorator-factory form comes first: an event class is callable too, so with the
# bare form first `subscribe(OrderPlaced)` would be typed as returning the class itself.
@overload
def subscribe(
    key: type | str | types.UnionType | None = None,
    /,
    *,
    thread_safe: bool = False,
    priority: int = 0,
    when: Callable[[Any], bool] | None = None,
    sticky: bool = False,
) -> Callable[[_F], _F]: ...


@overload
def subscribe(key: _F, /) -> _F: ...


def subscribe(
    key: object = None,
    /,
    *,
    thread_safe: bool = False,
    priority: int = 0,
    when: Callable[[Any], bool] | None = None,
    sticky: bool = False,
) -> Any:
    """Mark a function or method as a handler of events of a class or a topic.

    Forms::

        @subscribe(OrderPlaced)          # OrderPlaced and its subclasses
        @subscribe("orders.placed")      # every event whose topic is "orders.placed"
        @subscribe("orders.*")           # "orders.placed", "orders.shipped" (one segment)
        @subscribe("orders.>")           # "orders.placed", "orders.eu.placed" (one or more)
        @subscribe                       # the class in the parameter's annotation
        @subscribe(priority=5)           # the same, with options
        @subscribe(Settings, sticky=True)  # also the kept Settings, at registration

    Decorators may be stacked to subscribe one handler to several keys; it is
    still called at most once per event, however many of its keys match. The
    function is returned unchanged.

    Args:
        key: An event class (or a union of them), a topic string, or nothing to
            take the class from the annotation of the handler's event parameter.
            A topic's dot-separated segments may be wildcards: ``*`` matches
            exactly one segment, ``>`` (last only) one or more. Patterns never
            match `DeadEvent`s.
        thread_safe: ``False`` (the default) promises that the handler never runs
            twice at the same time for the same subscriber object; ``True`` lets
            the asynchronous strategies run it in parallel.
        priority: Handlers with a higher priority are called first; equal
            priorities run in registration order.
        when: A filter called with the event; the handler is skipped when it
            returns false.
        sticky: When the subscriber is registered, also deliver the event the bus
            keeps for the subscribed class (declared ``sticky=True``), through the
            bus's strategy and before any later event of that class reaches this
            handler. Added in version 0.2.

    Raises:
        SubscriptionError: The key is neither a class nor a topic string, a topic
            is malformed (an empty segment, a wildcard mixed with other
            characters, ``>`` not last), an option has the wrong type, the target
            is not a function, or ``sticky=True`` names a topic or a class that is
            not sticky.
    """
    _check_options(thread_safe, priority, when, sticky)
    if key is None:
        keys: tuple[type | str | None, ...] = (None,)
    elif (callable(key) and not isinstance(key, type) and get_origin(key) not in _UNION_TYPES) or isinstance(
        key, (staticmethod, classmethod)
    ):
        # Bare @subscribe: the "key" is the decorated function itself.
        return _attach(key, (SubscriptionSpec(None),))  # type: ignore[type-var]  # checked callable above
    else:
        keys = _expand_key(key)
    if sticky:
        for k in keys:
            check_sticky_key(k)
    specs = tuple(SubscriptionSpec(k, thread_safe, priority, when, sticky) for k in keys)

    def decorate(func: _F) -> _F:
        return _attach(func, specs)

    return decorate
