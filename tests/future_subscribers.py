"""Subscribers written with postponed annotations and forward references (imported by tests).

Every annotation here is a string at run time, and the event classes are defined
*after* the subscribers that name them, so the registry must resolve the names
when an object is registered, not when its class is defined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from eventbus import DeadEvent, Event, subscribe

if TYPE_CHECKING:
    # Importable by type checkers only: at run time the name does not exist.
    from eventbus import DeadEvent as TypeCheckingOnlyEvent


class ForwardSubscriber:
    """Bare `@subscribe` handlers whose annotations name classes defined further down."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Event]] = []

    @subscribe
    def on_later(self, event: LaterEvent) -> None:
        self.received.append(("on_later", event))

    @subscribe
    def on_either(self, event: OtherLaterEvent | ThirdLaterEvent) -> None:
        self.received.append(("on_either", event))

    @subscribe(priority=-1)
    def on_nested(self, event: ForwardSubscriber.Nested) -> None:
        self.received.append(("on_nested", event))

    class Nested(Event, topic="future.nested"):
        pass


@subscribe
def on_later_function(event: LaterEvent) -> None:
    """A plain function with a forward-referenced annotation."""
    FUNCTION_CALLS.append(event)


FUNCTION_CALLS: list[LaterEvent] = []


class ExplicitKeyUnresolvableAnnotation:
    """An explicit key does not need the annotation, so an unresolvable one is tolerated."""

    def __init__(self) -> None:
        self.received: list[Event] = []

    @subscribe(DeadEvent)
    def on_dead(self, event: TypeCheckingOnlyEvent) -> None:
        self.received.append(event)


class BareUnresolvableAnnotation:
    """A bare `@subscribe` needs the annotation; this one cannot be resolved at run time."""

    @subscribe
    def on_missing(self, event: TypeCheckingOnlyEvent) -> None:
        pass


class LaterEvent(Event, topic="future.later"):
    n: int


class OtherLaterEvent(Event, topic="future.other"):
    n: int


class ThirdLaterEvent(Event, topic="future.third"):
    n: int
