"""Which bridge, if any, carries each event class of one bus (SPEC section 11).

The bus asks `Routes.find` on every post of a class it has not seen bridged or not,
and `Routes.check` when a subscriber registers: a handler of a class that a bridge
only sends (no group) would never run, so it is refused by name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, Protocol, TypeVar

from ._errors import SubscriptionError
from ._scan import plan_of

__all__ = ["Routed", "Routes"]


class Routed(Protocol):
    """What routing needs of a bridge."""

    @property
    def closed(self) -> bool:
        """Whether the bridge has been closed."""
        ...


_B = TypeVar("_B", bound=Routed)


class Routes(Generic[_B]):
    """Which bridge, if any, carries each event class of one bus."""

    __slots__ = ("_by_class", "_cache", "_send_only")

    def __init__(self) -> None:
        self._by_class: dict[type, _B] = {}
        self._send_only: dict[type, _B] = {}
        self._cache: dict[type, _B | None] = {}

    def add(self, bridge: _B, classes: Iterable[type], receives: bool) -> None:
        """Route *classes* through *bridge*."""
        classes = list(classes)
        for cls in classes:
            if cls in self._by_class and not self._by_class[cls].closed:
                raise ValueError(f"{cls.__qualname__} is already bridged by {self._by_class[cls]!r}")
        by_class = dict(self._by_class)
        for cls in classes:
            by_class[cls] = bridge
            if not receives:
                self._send_only[cls] = bridge
        self._by_class = by_class
        self._cache = {}

    def remove(self, bridge: _B) -> None:
        """Stop routing the classes of *bridge* (it was closed)."""
        self._by_class = {c: b for c, b in self._by_class.items() if b is not bridge}
        self._send_only = {c: b for c, b in self._send_only.items() if b is not bridge}
        self._cache = {}

    def find(self, cls: type) -> _B | None:
        """The bridge that carries instances of *cls*, or `None`.

        Raises:
            TypeError: *cls* is a subclass of a bridged class without being listed itself.
        """
        try:
            return self._cache[cls]
        except KeyError:
            pass
        found = self._by_class.get(cls)
        if found is None:
            for base in cls.__mro__[1:]:
                if base in self._by_class:
                    raise TypeError(
                        f"{cls.__qualname__} is a subclass of the bridged {base.__qualname__} "
                        f"but is not bridged itself; add {cls.__qualname__} to the events= of the bridge to send it"
                    )
        self._cache[cls] = found
        return found

    def bridged(self, cls: type) -> bool:
        """Whether instances of *cls* never reach local handlers through ``post`` (the registry's test)."""
        return any(base in self._by_class for base in cls.__mro__)

    def check(self, subscriber: object) -> None:
        """Refuse a subscriber with handlers of classes bridged without a group (they would never run).

        Raises:
            SubscriptionError: *subscriber* has such a handler; nothing was registered.
        """
        if not self._send_only:
            return
        plan = plan_of(subscriber)
        for handler in plan.handlers if plan is not None else ():
            for binding in handler.bindings:
                self.check_handler(binding.name, binding.key, subscriber)

    def check_handler(self, name: str, key: type | str, subscriber: object) -> None:
        """Refuse one handler of a class (or its topic) that is bridged without a group."""
        for cls, bridge in self._send_only.items():
            if key is cls or key == getattr(cls, "topic", None):
                raise SubscriptionError(
                    f"handler {name!r} subscribes to {cls.__qualname__}, which {bridge!r} sends "
                    "without a group: it would never run.\n"
                    "Give the bridge group= or broadcast=True, or do not subscribe to it in this process.",
                    subscriber=subscriber,
                    handler=name,
                )
