"""Sticky events (SPEC 13): the bus's side of keeping a class's last event and replaying it.

The registry keeps the events themselves (`Registry.keep`, under the lock that
registration reads them under, so each subscriber gets a state exactly one way).
This module is what the bus does around that: posting an event of a sticky class
(keep it, then hand it to the strategy, taking it back if the strategy refuses
it) and replaying the kept events to a new subscriber's sticky handlers through
the bus's strategy. It sees the bus through `StickyHost`, so that nothing here
imports the bus.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._delivery import Delivery, submit_traced
from ._errors import BusClosedError
from ._events import DeadEvent

if TYPE_CHECKING:
    from ._context import Pending
    from ._dispatch import Dispatcher
    from ._registry import Registry, Replays, Subscription

__all__ = ["StickyHost", "check_sticky_class", "post_sticky", "replay_sticky", "weak_replayer"]


class StickyHost(Protocol):
    """What sticky events need of their bus (`EventBus` is one)."""

    _registry: Registry
    _dispatcher: Dispatcher
    _submit: Callable[..., None]
    _submit_traced: Callable[..., None] | None
    _kept_traces: dict[type, tuple[object, Pending]]
    """Each sticky class's kept event with the trace it was posted with, to replay it with its context (#14)."""

    def _hand_over(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None,
    ) -> Delivery | None: ...

    def unregister(self, subscriber: object) -> bool: ...


def check_sticky_class(cls: object, method: str) -> None:
    """Refuse *cls* for `EventBus.sticky` and `EventBus.remove_sticky` unless it is declared sticky."""
    if not isinstance(cls, type) or not getattr(cls, "__eventbus_sticky__", False):
        name = getattr(cls, "__qualname__", repr(cls))
        raise TypeError(
            f"{method}({name}): only the events of a class declared sticky are kept; "
            f"declare it `class {name}(Event, sticky=True)`"
        )


def post_sticky(
    bus: StickyHost, event: object, timeout: float | None, publish: bool, trace: Pending
) -> Delivery | None:
    """The tail of a post of an event of a sticky class: keep it, then deliver it like any other.

    Kept first, under the registry's lock and with its handlers resolved (see
    `Registry.keep`); if the strategy then refuses it (a full queue, a closed
    bus), it is taken back, unless a newer event replaced it meanwhile.
    """
    state = bus._dispatcher.state()
    before = state.posted
    taken: list[Any] = [None, None]  # (the entry replaced, the new one) once kept
    try:
        handlers = bus._registry.keep(event, taken)
        if handlers:
            delivery = Delivery(event, len(handlers), trace) if publish else None
            bus._hand_over(event, handlers, delivery, timeout, trace)  # counts the event as posted
            bus._kept_traces[type(event)] = (event, trace)
            return delivery
        dead = DeadEvent(event=event)
        handlers = bus._registry.handlers_for(dead)
        if not handlers:  # nobody wants the dead event either: counted, dropped (and still kept)
            state.dead += 1
            state.posted += 1
            bus._kept_traces[type(event)] = (event, trace)
            return Delivery(dead, 0, trace) if publish else None
        delivery = Delivery(dead, len(handlers), trace) if publish else None
        bus._hand_over(dead, handlers, delivery, timeout, trace)
        state.dead += 1
        bus._kept_traces[type(event)] = (event, trace)
        return delivery
    except BaseException:
        if taken[1] is not None and state.posted == before:  # kept, not accepted
            bus._registry.unkeep(type(event), taken[1], taken[0])
        raise


def replay_sticky(bus: StickyHost, subscriber: object, replays: Replays) -> None:
    """Hand a newly registered *subscriber*'s sticky handlers the kept events, through the strategy.

    Not counted as posted (each event was counted when it was posted). If one
    cannot be handed over, the registration is undone, so that it stays all or
    nothing; on a closed bus nothing is delivered anyway, and the rest is skipped.
    """
    state = bus._dispatcher.state()
    for event, handlers in replays:
        before = state.posted
        kept = bus._kept_traces.get(type(event))
        try:
            # With the context it had when it was posted (#14).
            trace = kept[1] if kept is not None and kept[0] is event else None
            submit_traced(bus._submit, bus._submit_traced, event, handlers, None, None, trace)
        except BaseException as exc:
            if state.posted != before:  # it was accepted: the strategy counted it
                state.posted -= 1
            if not isinstance(exc, BusClosedError):
                bus.unregister(subscriber)
                raise
            return
        state.posted -= 1  # the strategy counted it as posted


def weak_replayer(bus: StickyHost) -> Callable[[object, Replays], None]:
    """The registry's hook for a new sticky subscriber's kept events, holding the bus weakly.

    Nothing below the bus refers to it strongly, so that a dropped bus is collected.
    """
    ref = weakref.ref(bus)

    def replay(subscriber: object, replays: Replays) -> None:
        found = ref()
        if found is not None:
            replay_sticky(found, subscriber, replays)

    return replay
