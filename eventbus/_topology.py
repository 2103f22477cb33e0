"""`Topology`: what a bus is wired to, as data, as a table and as a diagram.

``bus.describe()`` takes one snapshot of the bus's subscriptions and bridges::

    print(bus.describe())  # a readable table
    json.dumps(bus.describe().to_dict())  # JSON-able data
    bus.describe().to_mermaid()  # a Mermaid flowchart

Each subscribed event class and each subscribed topic string is one `Route`,
listing every handler that an event of that class (or with that topic) would
reach, in call order, with its options. A class that is only bridged (posted to
an engine, no local handler) is a route too, so the diagram shows where it goes.
The command line prints the same: ``eventbus describe MODULE:ATTRIBUTE``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

from ._events import Event

if TYPE_CHECKING:
    from ._registry import Subscription

__all__ = ["BridgeInfo", "HandlerInfo", "Route", "Topology", "build_topology"]


@final
@dataclass(frozen=True, slots=True)
class HandlerInfo:
    """One handler as a route reaches it. Added in version 0.2."""

    name: str
    """The handler's qualified name, for example ``"Billing.charge"``."""
    subscribed_to: str
    """What it subscribed to: an event class's qualified name, or a topic string."""
    priority: int
    """Handlers with a higher priority are called first."""
    thread_safe: bool
    """Whether it may run on several threads at once for one subscriber."""
    filtered: bool
    """Whether it has a ``when=`` filter."""
    is_async: bool
    """Whether it is an ``async def`` handler."""

    def to_dict(self) -> dict[str, Any]:
        """The handler as JSON-able data."""
        return {
            "name": self.name,
            "subscribed_to": self.subscribed_to,
            "priority": self.priority,
            "thread_safe": self.thread_safe,
            "filtered": self.filtered,
            "async": self.is_async,
        }

    def options(self) -> str:
        """The options that differ from the defaults, as text (``"priority=10, thread_safe"``)."""
        parts = []
        if self.priority:
            parts.append(f"priority={self.priority}")
        if self.thread_safe:
            parts.append("thread_safe")
        if self.filtered:
            parts.append("when=")
        if self.is_async:
            parts.append("async")
        return ", ".join(parts)


@final
@dataclass(frozen=True, slots=True)
class Route:
    """An event class or a topic string, and the handlers its events reach. Added in version 0.2."""

    key: str
    """The event class's qualified name, or the topic string."""
    kind: str
    """``"class"`` or ``"topic"``."""
    topic: str | None
    """The class's topic (for a topic route, the topic itself); `None` for a plain class."""
    handlers: tuple[HandlerInfo, ...]
    """The local handlers, in call order."""
    bridge: int | None
    """The index in `Topology.bridges` of the bridge that carries this class, if any."""

    def to_dict(self) -> dict[str, Any]:
        """The route as JSON-able data."""
        return {
            "key": self.key,
            "kind": self.kind,
            "topic": self.topic,
            "handlers": [handler.to_dict() for handler in self.handlers],
            "bridge": self.bridge,
        }


@final
@dataclass(frozen=True, slots=True)
class BridgeInfo:
    """One bridge of the bus. Added in version 0.2."""

    engine: str
    """The engine, as it describes itself (its URL without a password)."""
    classes: tuple[str, ...]
    """The qualified names of the bridged classes."""
    topics: tuple[str, ...]
    """The bridged `Message` topics and topic patterns."""
    namespace: str
    group: str | None
    """The consumer group it reads as; `None` for a send-only bridge."""
    broadcast: bool
    partitions: int
    closed: bool

    def to_dict(self) -> dict[str, Any]:
        """The bridge as JSON-able data."""
        return {
            "engine": self.engine,
            "classes": list(self.classes),
            "topics": list(self.topics),
            "namespace": self.namespace,
            "group": self.group,
            "broadcast": self.broadcast,
            "partitions": self.partitions,
            "closed": self.closed,
        }

    def role(self) -> str:
        """``"broadcast"``, ``"group=..."`` or ``"send only"``."""
        if self.broadcast:
            return "broadcast"
        return f"group={self.group}" if self.group else "send only"


@final
@dataclass(frozen=True, slots=True)
class Topology:
    """A snapshot of what a bus is wired to; returned by ``EventBus.describe()``.

    ``str(topology)`` is a readable table, `to_dict` gives JSON-able data and
    `to_mermaid` a Mermaid flowchart (event classes and topics on the left,
    handlers on the right, bridges as engines). Added in version 0.2.
    """

    bus: str
    """The bus's name."""
    strategy: str
    """The delivery strategy and its settings, for example ``"ConcurrentDelivery(workers=8, max_queued=10000)"``."""
    routes: tuple[Route, ...]
    """Every subscribed event class (sorted by name), then every subscribed topic (sorted)."""
    bridges: tuple[BridgeInfo, ...]
    closed: bool

    def to_dict(self) -> dict[str, Any]:
        """The topology as JSON-able data (``json.dumps`` takes it as it is)."""
        return {
            "bus": self.bus,
            "strategy": self.strategy,
            "closed": self.closed,
            "routes": [route.to_dict() for route in self.routes],
            "bridges": [bridge.to_dict() for bridge in self.bridges],
        }

    def __str__(self) -> str:
        state = " (closed)" if self.closed else ""
        lines = [f"bus {self.bus!r}{state}: {self.strategy}"]
        if not self.routes:
            lines.append("  no subscriptions")
        for route in self.routes:
            topic = f"  (topic {route.topic!r})" if route.kind == "class" and route.topic else ""
            lines.append(f"{route.kind} {route.key}{topic}")
            if route.bridge is not None:
                bridge = self.bridges[route.bridge]
                lines.append(f"  -> bridge {route.bridge}: {bridge.engine} ({bridge.role()})")
            if not route.handlers and route.bridge is None:
                lines.append("  (no handlers)")
            for position, handler in enumerate(route.handlers, 1):
                via = "" if handler.subscribed_to == route.key else f"  via {handler.subscribed_to}"
                options = handler.options()
                lines.append(f"  {position}. {handler.name}{f'  [{options}]' if options else ''}{via}")
        for index, bridge in enumerate(self.bridges):
            state = ", closed" if bridge.closed else ""
            lines.append(
                f"bridge {index}: {bridge.engine} namespace={bridge.namespace!r} {bridge.role()} "
                f"partitions={bridge.partitions}{state}"
            )
            lines.append(f"  classes: {', '.join(bridge.classes)}")
            if bridge.topics:
                lines.append(f"  topics: {', '.join(bridge.topics)}")
        return "\n".join(lines)

    def to_mermaid(self) -> str:
        """A Mermaid flowchart: routes point to their handlers (numbered in call order) and bridges."""
        lines = ["flowchart LR"]
        handler_ids: dict[str, str] = {}
        for index, bridge in enumerate(self.bridges):
            label = f"{_label(bridge.engine)}<br/>{_label(bridge.namespace)} · {_label(bridge.role())}"
            lines.append(f'    bridge{index}[("{label}")]')
        for index, route in enumerate(self.routes):
            node = f"route{index}"
            title = route.key if route.kind == "class" else f"topic {route.key}"
            extra = f"<br/><i>{route.topic}</i>" if route.kind == "class" and route.topic else ""
            lines.append(f'    {node}["{_label(title)}{_label(extra, keep_tags=True)}"]')
            for position, handler in enumerate(route.handlers, 1):
                hid = handler_ids.get(handler.name)
                if hid is None:
                    hid = handler_ids[handler.name] = f"handler{len(handler_ids)}"
                    options = handler.options()
                    label = handler.name + (f"<br/><small>{options}</small>" if options else "")
                    lines.append(f'    {hid}(["{_label(label, keep_tags=True)}"])')
                lines.append(f"    {node} -->|{position}| {hid}")
            if route.bridge is not None:
                bridge_info = self.bridges[route.bridge]
                lines.append(f"    {node} -.->|sent| bridge{route.bridge}")
                if bridge_info.group is not None:
                    lines.append(f"    bridge{route.bridge} -.->|received| {node}")
        return "\n".join(lines)


_UNSAFE = re.compile(r'["<>]')


def _label(text: str, *, keep_tags: bool = False) -> str:
    """Text that is safe inside a quoted Mermaid label (its own ``<br/>``-style tags kept)."""
    if keep_tags:
        return text.replace('"', "#quot;")
    return _UNSAFE.sub(lambda m: {'"': "#quot;", "<": "#lt;", ">": "#gt;"}[m.group()], text)


def _key_name(key: type | str) -> str:
    return key if isinstance(key, str) else key.__qualname__


def _handler_info(sub: Subscription) -> HandlerInfo:
    return HandlerInfo(
        name=sub.name,
        subscribed_to=_key_name(sub.key),
        priority=sub.priority,
        thread_safe=sub.thread_safe,
        filtered=sub.when is not None,
        is_async=sub.binding.is_async,
    )


def _strategy_text(strategy: object) -> str:
    settings = [
        f"{name}={value!r}"
        for name in ("workers", "max_queued")
        if isinstance(value := getattr(strategy, name, None), int) and not isinstance(value, bool)
    ]
    return f"{type(strategy).__name__}({', '.join(settings)})"


def build_topology(
    name: str,
    strategy: object,
    closed: bool,
    keys: Iterable[type | str],
    subscribers: Any,
    bridges: Sequence[Any],
) -> Topology:
    """Make a `Topology` (called by ``EventBus.describe``).

    Args:
        name: The bus's name.
        strategy: The bus's strategy instance.
        closed: Whether the bus is shut down.
        keys: Every key a handler subscribed to.
        subscribers: ``EventBus.subscribers``: key -> handlers in call order.
        bridges: The bus's `Bridge` objects.
    """
    bridge_infos: list[BridgeInfo] = []
    bridged: dict[type, int] = {}
    for index, bridge in enumerate(bridges):
        config = bridge.config
        bridge_infos.append(
            BridgeInfo(
                engine=bridge._engine.describe(),
                classes=tuple(cls.__qualname__ for cls in bridge.classes),
                topics=bridge.topics,
                namespace=config.namespace,
                group=None if config.broadcast else config.group,
                broadcast=config.broadcast,
                partitions=config.partitions,
                closed=bridge.closed,
            )
        )
        for cls in bridge.classes:
            bridged.setdefault(cls, index)
    classes = {key for key in keys if isinstance(key, type)} | set(bridged)
    topics = {key for key in keys if isinstance(key, str)}
    routes: list[Route] = []
    for cls in sorted(classes, key=lambda c: (c.__qualname__, c.__module__)):
        topic = cls.topic if issubclass(cls, Event) else None
        handlers = subscribers(cls)  # a receiving bridge posts what it reads locally
        routes.append(
            Route(
                key=cls.__qualname__,
                kind="class",
                topic=topic,
                handlers=tuple(_handler_info(sub) for sub in handlers),
                bridge=bridged.get(cls),
            )
        )
    for topic in sorted(topics):
        routes.append(
            Route(
                key=topic,
                kind="topic",
                topic=topic,
                handlers=tuple(_handler_info(sub) for sub in subscribers(topic)),
                bridge=None,
            )
        )
    return Topology(
        bus=name,
        strategy=_strategy_text(strategy),
        routes=tuple(routes),
        bridges=tuple(bridge_infos),
        closed=closed,
    )
