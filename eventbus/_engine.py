"""What a bridge needs from a distributed engine: the `Engine` and `EngineSession` protocols.

A bridge (`eventbus.Bridge`) is engine-neutral: it encodes, buffers, gates
ordering keys, retries and counts. An engine stores, distributes, redelivers
and keeps dead letters. Every method of a session runs on the bridge's own
event loop (one thread per bridge), so a session needs no locks of its own.

The split of work, for an engine author:

- `EngineSession.receive` returns messages in the order the engine stored them
  per partition, first those the consumer must take over (its own, or a dead
  consumer's, pending messages), then new ones. It owns the partitions it reads:
  while this consumer holds a partition no other consumer of the group reads it.
- A message returned by `receive` is *in flight* until it is passed to `ack` or
  `dead_letter`; a session never gives a partition with messages in flight away.
- Connection trouble raises `EngineUnavailable`; the bridge backs off, calls
  `start` again (which recreates what an engine restarted without its data lost)
  and retries the operation.
- Optional: a session with ``async def retry(item, delay)`` gives a message back
  to an engine that redelivers on request (NATS: ``nak`` with a delay), which then
  keeps the retry and its attempt count; the bridge uses it for a failed handler
  when nothing of the same ordering key waits behind the message, and otherwise
  retries from a local timer. ``async def abandon()`` drops the connections without
  giving anything up (a simulated crash, in tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "BridgeConfig",
    "DeadLetter",
    "Engine",
    "EngineSession",
    "EngineUnavailable",
    "Incoming",
    "beat_interval",
]


def beat_interval(claim_after: float) -> float:
    """How often a consumer renews its partitions and looks for a new share of them.

    A third of ``claim_after`` (a lease survives two missed renewals), and at most
    half a second, so that consumers that join or leave rebalance promptly.
    """
    return min(claim_after / 3, 0.5)


class EngineUnavailable(Exception):
    """Raised by a session when the engine cannot be reached; the bridge retries with backoff."""


@dataclass(frozen=True, slots=True)
class BridgeConfig:
    """What a bridge asks of its engine session."""

    namespace: str
    """The prefix of every stream or subject."""
    group: str | None
    """The consumer group; `None` for a send-only bridge."""
    broadcast: bool
    """Every consumer gets every message (``group`` is then private to this consumer)."""
    partitions: int
    consumer: str
    """This consumer's name, unique within the group."""
    claim_after: float
    """Seconds after which a silent consumer's partitions and messages are taken over."""


@dataclass(slots=True)
class Incoming:
    """One message read from the engine, in flight until acknowledged or dead-lettered."""

    partition: int
    id: str
    """The engine's id of the message (a Redis stream entry id)."""
    payload: bytes
    attempt: int = 1
    """The delivery attempt, counting deliveries to consumers that died."""
    reclaimed: bool = False
    """Taken over from another consumer (or from this consumer's previous life)."""


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be handled, as kept in the dead-letter stream."""

    id: str
    """The dead letter's own id: pass it to `Bridge.replay`."""
    reason: str
    """Why: ``"handler failed"``, or ``"oversize: ..."``, ``"unknown type: ..."``, ``"malformed: ..."``,
    ``"invalid data ..."`` for bad input."""
    error: str | None
    """The handler's exception (type and message), for handler failures."""
    handler: str | None
    """The handler that failed."""
    attempts: int
    group: str | None
    partition: int
    message_id: str
    """The id the message had in its stream."""
    payload: bytes
    """The message exactly as it was read."""


class EngineSession(Protocol):
    """One bridge's connection to its engine (see the module docstring for the contract)."""

    reclaimed: int
    """How many messages this session took over from consumers that died."""

    async def start(self) -> None:
        """Connect, and create what is missing (streams, groups). Idempotent."""

    async def send(self, batch: list[tuple[int, bytes]]) -> None:
        """Store every ``(partition, payload)`` of *batch*, in order; return once stored."""

    async def receive(self, limit: int, wait: float) -> list[Incoming]:
        """Return up to *limit* messages, waiting up to *wait* seconds for the first."""

    async def ack(self, items: list[Incoming]) -> None:
        """Acknowledge *items*: handled, never to be delivered again."""

    async def dead_letter(self, item: Incoming, reason: str, error: str | None, handler: str | None) -> None:
        """Write *item* to the dead letters with the reason, and acknowledge it, in one step."""

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        """The oldest *limit* dead letters of the namespace."""

    async def replay(self, ids: list[str]) -> int:
        """Send the dead letters *ids* again (to their partition) and remove them; return how many."""

    async def close(self, abandoned: list[Incoming]) -> None:
        """Give up ownership and disconnect; *abandoned* messages stay unacknowledged for the next owner."""


class Engine(Protocol):
    """A distributed engine a bridge can run on (`RedisStreams`, `InMemoryEngine`)."""

    def describe(self) -> str:
        """A short text for reprs and logs, never with a password."""

    def session(self, config: BridgeConfig) -> EngineSession:
        """Make the session of one bridge (not yet connected: the bridge calls `EngineSession.start`)."""
