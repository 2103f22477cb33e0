"""The public API: a sorted `__all__` that is exactly the public names, with tidy exception names."""

from __future__ import annotations

import types

import eventbus


def public_names() -> set[str]:
    # Submodules (eventbus.testing, ...) are reached by their own import path, not re-exported.
    return {
        name
        for name, value in vars(eventbus).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


def test_all_is_sorted() -> None:
    """`eventbus.__all__` is sorted (and so free of duplicates)."""
    assert eventbus.__all__ == sorted(set(eventbus.__all__))


def test_all_is_exactly_the_public_names() -> None:
    """Every public name is in `__all__`, and every name in `__all__` exists."""
    assert set(eventbus.__all__) == public_names()
    for name in eventbus.__all__:
        assert getattr(eventbus, name) is not None


def test_core_api_is_exported() -> None:
    """The names SPEC.md promises are importable from `eventbus` itself."""
    promised = {
        "BusClosedError",
        "DeadEvent",
        "Delivery",
        "DeliveryStrategy",
        "Event",
        "EventBus",
        "EventBusError",
        "Message",
        "QueueFullError",
        "SubscriptionError",
        "get_default_bus",
        "post",
        "publish",
        "register",
        "reset_default_bus",
        "set_default_bus",
        "subscribe",
        "unregister",
    }
    assert promised <= set(eventbus.__all__)


def test_exceptions_and_warnings_read_as_eventbus_names() -> None:
    """Exported exceptions and warnings say `eventbus.X` in tracebacks."""
    exported = [getattr(eventbus, name) for name in eventbus.__all__]
    errors = [obj for obj in exported if isinstance(obj, type) and issubclass(obj, BaseException)]
    assert {cls.__name__ for cls in errors} >= {
        "BusClosedError",
        "EventBusError",
        "EventBusWarning",
        "QueueFullError",
        "SubscriptionError",
    }
    for cls in errors:
        assert cls.__module__ == "eventbus", cls
