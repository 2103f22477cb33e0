"""The `subscribe` decorator: records what a handler wants and returns it unchanged."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from eventbus import Event, EventBusError, SubscriptionError, subscribe
from eventbus._decorators import SPECS_ATTR, SubscriptionSpec, specs_of


class Ping(Event, topic="dec.ping"):
    n: int = 0


class Pong(Event, topic="dec.pong"):
    n: int = 0


def is_positive(event: Any) -> bool:
    return bool(event.n > 0)


def test_every_form_returns_the_function_unchanged() -> None:
    """Each decorator form returns the very function it was given."""

    def handler(event: Ping) -> None:
        pass

    assert subscribe(handler) is handler
    assert subscribe()(handler) is handler
    assert subscribe(Ping)(handler) is handler
    assert subscribe("dec.ping")(handler) is handler
    assert subscribe(Ping | Pong, priority=3)(handler) is handler


def test_decorated_class_works_without_a_bus() -> None:
    """A subscriber class stays an ordinary class: its methods can be called directly."""

    class Billing:
        @subscribe(Ping)
        def charge(self, event: Ping) -> int:
            return event.n * 2

    assert Billing().charge(Ping(n=21)) == 42


@pytest.mark.parametrize(
    ("decorator", "expected"),
    [
        (subscribe(Ping), SubscriptionSpec(Ping)),
        (subscribe("dec.ping"), SubscriptionSpec("dec.ping")),
        (subscribe(), SubscriptionSpec(None)),
        (subscribe(Ping, thread_safe=True, priority=-5), SubscriptionSpec(Ping, True, -5, None)),
        (subscribe(Ping, when=is_positive), SubscriptionSpec(Ping, False, 0, is_positive)),
    ],
)
def test_decorator_records_one_spec(decorator: Callable[[Callable[..., object]], object], expected: object) -> None:
    """One `@subscribe(...)` line stores one spec with its key and options."""

    def handler(event: Ping) -> None:
        pass

    decorator(handler)
    assert specs_of(handler) == (expected,)
    assert getattr(handler, SPECS_ATTR) == (expected,)


def test_bare_decorator_records_a_spec_without_key() -> None:
    """A bare `@subscribe` records a spec whose key is read from the annotation later."""

    @subscribe
    def handler(event: Ping) -> None:
        pass

    assert specs_of(handler) == (SubscriptionSpec(None),)


def test_stacked_decorators_add_up() -> None:
    """Stacked `@subscribe` lines add one spec each, innermost first."""

    @subscribe("dec.other", priority=2)
    @subscribe(Ping)
    def handler(event: Event) -> None:
        pass

    assert specs_of(handler) == (SubscriptionSpec(Ping), SubscriptionSpec("dec.other", priority=2))


def test_union_key_subscribes_to_each_member() -> None:
    """`@subscribe(A | B)` stands for one spec per class, with shared options."""

    @subscribe(Ping | Pong, priority=4)
    def handler(event: Ping | Pong) -> None:
        pass

    assert specs_of(handler) == (SubscriptionSpec(Ping, priority=4), SubscriptionSpec(Pong, priority=4))


def test_specs_of_an_undecorated_function_is_empty() -> None:
    """A function without `@subscribe` has no specs."""

    def handler(event: Ping) -> None:
        pass

    assert specs_of(handler) == ()


def test_decorator_on_staticmethod_and_classmethod() -> None:
    """`@subscribe` may sit on top of `@staticmethod` or `@classmethod`, marking the function inside."""

    class Holder:
        @subscribe(Ping)
        @staticmethod
        def static(event: Ping) -> None:
            pass

        @subscribe(Ping)
        @classmethod
        def klass(cls, event: Ping) -> None:
            pass

    assert specs_of(Holder.static) == (SubscriptionSpec(Ping),)
    assert specs_of(Holder.__dict__["klass"].__func__) == (SubscriptionSpec(Ping),)


@pytest.mark.parametrize("key", [42, 4.2, b"topic", ["a"], Ping(n=1)])
def test_key_that_is_neither_class_nor_string_fails_at_decoration(key: object) -> None:
    """`@subscribe(42)` raises SubscriptionError at once, before any function is decorated."""
    with pytest.raises(SubscriptionError, match=r"@subscribe\(.*\): the argument must be an event class"):
        subscribe(key)  # type: ignore[call-overload]  # the point of the test


def test_empty_topic_fails_at_decoration() -> None:
    """An empty topic string is refused at decoration time."""
    with pytest.raises(SubscriptionError, match="non-empty"):
        subscribe("")


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"thread_safe": "yes"}, "thread_safe"),
        ({"thread_safe": 1}, "thread_safe"),
        ({"priority": 1.5}, "priority"),
        ({"priority": True}, "priority"),
        ({"priority": "high"}, "priority"),
        ({"when": 3}, "when"),
    ],
)
def test_bad_options_fail_at_decoration(options: dict[str, Any], match: str) -> None:
    """Options of the wrong type raise SubscriptionError naming the option."""
    with pytest.raises(SubscriptionError, match=match):
        subscribe(Ping, **options)
    with pytest.raises(SubscriptionError, match=match):
        subscribe(**options)


def test_decorating_a_class_fails() -> None:
    """`@subscribe(...)` on a class (not a function) is refused."""
    with pytest.raises(SubscriptionError, match="not a function"):

        @subscribe(Ping)
        class NotAHandler:
            pass


def test_decorating_a_non_callable_fails() -> None:
    """`@subscribe(...)` applied to a plain value is refused."""
    with pytest.raises(SubscriptionError, match="not a function"):
        subscribe(Ping)(42)  # type: ignore[type-var]  # the point of the test


def test_decorating_a_bound_method_fails() -> None:
    """A bound method cannot be marked: decorate the method in its class body."""

    class Plain:
        def handle(self, event: Ping) -> None:
            pass

    with pytest.raises(SubscriptionError, match="bound method"):
        subscribe(Ping)(Plain().handle)


def test_subscription_error_is_an_eventbus_error_and_a_type_error() -> None:
    """Decorator misuse can be caught as EventBusError or as TypeError."""
    with pytest.raises(EventBusError):
        subscribe(42)  # type: ignore[call-overload]  # the point of the test
    with pytest.raises(TypeError):
        subscribe(42)  # type: ignore[call-overload]  # the point of the test
