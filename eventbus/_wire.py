"""The wire format of bridged events: CloudEvents 1.0 in JSON structured mode.

One bridged event is one JSON object::

    {
        "specversion": "1.0",
        "id": "0193...",
        "source": "//host/1234/eventbus-1",
        "type": "orders.placed",
        "time": "2026-12-01T07:33:26.123456Z",
        "datacontenttype": "application/json",
        "partitionkey": "42",
        "causationid": null,
        "correlationid": null,
        "data": {...},
    }

``type`` is the topic; the receiver resolves it with its bridge's ``events``
list. ``data`` is the event's pydantic JSON (for a `Message`, its ``data``).
``partitionkey`` is the text of the event's ordering key, absent when it has
none. ``id``, ``time``, ``causationid`` and ``correlationid`` carry the event's
`EventContext` (SPEC section 12), so an event keeps its id, cause and chain in
every process; ``source`` says which host, process and bus sent it. An
instrumentation adds ``traceparent`` and ``tracestate`` (W3C trace context). Nothing is ever unpickled or evaluated:
decoding is JSON parsing and pydantic validation.
"""

from __future__ import annotations

import json
import os
import socket
import zlib
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import Any, Final

import pydantic_core

from ._context import EventContext, Pending, new_id
from ._events import Event, Message

_dumps = json.dumps
_from_json = pydantic_core.from_json

__all__ = ["BadMessage", "context_of", "decode", "encode", "new_id", "partition_of", "source_of", "trace_of_envelope"]

_SPECVERSION: Final = "1.0"


class BadMessage(Exception):
    """Raised when a message read from an engine cannot become an event; the reason is the message."""


def source_of(bus_name: str) -> str:
    """The CloudEvents ``source`` of events sent by *bus_name* in this process."""
    return f"//{socket.gethostname()}/{os.getpid()}/{bus_name}"


def partition_of(key: str | None, partitions: int, counter: int) -> int:
    """The partition of an ordering key: crc32 of its text (stable across processes), modulo *partitions*.

    Unkeyed events are spread round-robin by *counter*.
    """
    if key is None:
        return counter % partitions
    return zlib.crc32(key.encode()) % partitions


def key_text(key: Hashable | None) -> str | None:
    """The text of an ordering key as it travels (``str(key)``), or `None`."""
    return None if key is None else str(key)


def encode(
    event: Event,
    source: str,
    max_payload: int,
    context: EventContext | None = None,
    extensions: Mapping[str, str] | None = None,
) -> tuple[bytes, str | None]:
    """Encode *event* as CloudEvents JSON; return the bytes and the partition key text.

    Args:
        event: The event.
        source: The CloudEvents ``source`` (see `source_of`).
        max_payload: The largest payload allowed, in bytes.
        context: The event's context (its id, time, cause and chain); a new root
            context if not given.
        extensions: More extension attributes (``traceparent``, ``tracestate``).

    Raises:
        TypeError: A `Message`'s data is not JSON serialisable.
        ValueError: The encoded event is larger than *max_payload* bytes.
    """
    if isinstance(event, Message):
        try:
            data = json.dumps(event.data, separators=(",", ":"), allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"the data of Message({event.topic!r}) is not JSON serialisable, so it cannot cross a bridge: {exc}"
            ) from None
        topic = event.topic
    else:
        data = event.model_dump_json()
        topic = type(event).topic
    key = key_text(event.ordering_key)
    extra = "" if key is None else f',"partitionkey":{_dumps(key)}'
    if context is None:
        ident = new_id()
        when = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        causation, correlation = "null", f'"{ident}"'
    else:
        ident = context.id
        when = context.time.isoformat().replace("+00:00", "Z")
        causation = "null" if context.causation_id is None else _dumps(context.causation_id)
        correlation = _dumps(context.correlation_id)
    if extensions:
        extra += "".join(f",{_dumps(name)}:{_dumps(value)}" for name, value in extensions.items())
    payload = (
        f'{{"specversion":"1.0","id":{_dumps(ident)},"source":{_dumps(source)},"type":{_dumps(topic)},'
        f'"time":"{when}","datacontenttype":"application/json"{extra},'
        f'"causationid":{causation},"correlationid":{correlation},"data":{data}}}'
    ).encode()
    if len(payload) > max_payload:
        raise ValueError(
            f"{type(event).__qualname__} encodes to {len(payload)} bytes, more than max_payload={max_payload}; "
            "send a reference to the data instead, or raise max_payload"
        )
    return payload, key


def decode(payload: bytes, types: Mapping[str, type[Event]], max_payload: int) -> tuple[Event, dict[str, Any]]:
    """Decode CloudEvents JSON into an event of a class in *types* (topic -> class).

    Returns the event and the envelope (without ``data``).

    Raises:
        BadMessage: The payload is too large, not CloudEvents JSON, of a type not in
            *types*, or its data does not validate; the message says which.
    """
    if len(payload) > max_payload:
        raise BadMessage(f"oversize: {len(payload)} bytes, more than max_payload={max_payload}")
    try:
        envelope = _from_json(payload)  # pydantic-core's parser: a third of json.loads's time
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadMessage(f"malformed: not JSON ({exc})") from None
    if not isinstance(envelope, dict) or envelope.get("specversion") != _SPECVERSION:
        raise BadMessage("malformed: not a CloudEvents 1.0 JSON object")
    topic = envelope.get("type")
    if not isinstance(topic, str) or "data" not in envelope:
        raise BadMessage("malformed: no 'type' or no 'data'")
    data = envelope.pop("data")
    cls = types.get(topic)
    if cls is None:
        cls = types.get("")  # Message, when it is bridged: any other topic
        if cls is None:
            raise BadMessage(f"unknown type: {topic!r} is not among this bridge's events")
    try:
        if cls is Message:
            event: Event = Message(topic, data, envelope.get("partitionkey"))
        else:
            event = cls.model_validate(data)
    except Exception as exc:  # pydantic's ValidationError, or a validator's own error
        raise BadMessage(f"invalid data for {cls.__qualname__}: {exc}") from None
    return event, envelope


def context_of(envelope: Mapping[str, Any], attempt: int) -> EventContext:
    """The `EventContext` that a decoded envelope carries, as seen on its *attempt*-th delivery.

    Tolerant of senders that predate tracing (no ``causationid``/``correlationid``:
    a root event) and of a ``time`` it cannot read (then: now).
    """
    ident = str(envelope.get("id") or new_id())
    try:
        when = datetime.fromisoformat(str(envelope["time"]).replace("Z", "+00:00"))
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    except (KeyError, ValueError):
        when = datetime.now(UTC)
    causation = envelope.get("causationid")
    correlation = envelope.get("correlationid")
    return EventContext(
        id=ident,
        time=when.astimezone(UTC),
        causation_id=causation if isinstance(causation, str) else None,
        correlation_id=correlation if isinstance(correlation, str) and correlation else ident,
        source=str(envelope.get("source") or "unknown"),
        attempt=attempt,
    )


_TRACE_HEADERS: Final = ("traceparent", "tracestate")


def trace_of_envelope(envelope: Mapping[str, Any], attempt: int, group: str | None = None) -> Pending:
    """The trace of a received event: its context as sent, its ``traceparent``/``tracestate``, the receiving group.

    The context itself is read from the envelope only when something asks for it.
    """
    trace = Pending.later(str(envelope.get("source") or "unknown"), attempt, partial(context_of, envelope, attempt))
    trace.group = group
    if "traceparent" in envelope or "tracestate" in envelope:  # only from a traced sender
        headers = {name: value for name in _TRACE_HEADERS if isinstance(value := envelope.get(name), str)}
        if headers:
            trace.headers = headers
    return trace
