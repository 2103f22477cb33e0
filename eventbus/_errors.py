"""The exceptions and warnings that eventbus raises.

Every error the bus raises on its own account derives from `EventBusError`, so
``except EventBusError`` catches all of them; each also derives from the builtin
category it belongs to, so code written against the builtins keeps working::

    Exception
     └── EventBusError
          ├── SubscriptionError (also TypeError)   bad @subscribe use or registration
          ├── BusClosedError    (also RuntimeError) post/publish after shutdown()
          └── QueueFullError                         max_queued reached within timeout=
    Warning
     └── EventBusWarning

Plain argument misuse (``post(None)``, a negative ``workers``) raises the builtin
`TypeError` or `ValueError` directly, as the standard library does.
"""

from __future__ import annotations

__all__ = [
    "BusClosedError",
    "EventBusError",
    "EventBusWarning",
    "QueueFullError",
    "SubscriptionError",
]


class EventBusError(Exception):
    """Base class of every error that eventbus raises on its own account."""


class SubscriptionError(EventBusError, TypeError):
    """Raised when ``@subscribe`` is misused or a subscriber cannot be registered.

    Raised at decoration time for bad decorator arguments, and at registration
    time for handlers whose signature cannot receive the subscribed events. When
    it is raised by ``register``, nothing of the subscriber has been registered.
    """

    def __init__(self, message: str, *, subscriber: object = None, handler: str | None = None) -> None:
        super().__init__(message)
        self.subscriber = subscriber
        """The object (or plain function) being registered, if known."""
        self.handler = handler
        """The qualified name of the offending handler, if known."""


class BusClosedError(EventBusError, RuntimeError):
    """Raised when posting to a bus after ``shutdown()``."""


class QueueFullError(EventBusError):
    """Raised when ``post(..., timeout=...)`` finds no room in the queue in time.

    The event was not accepted: nothing of it was queued or delivered, so the
    caller still owns it and may retry, drop or divert it.
    """


class EventBusWarning(Warning):
    """Base class of the warnings that eventbus issues."""


for _cls in (EventBusError, SubscriptionError, BusClosedError, QueueFullError, EventBusWarning):
    # Tracebacks read `eventbus.QueueFullError`, the name users import.
    _cls.__module__ = "eventbus"
del _cls
