"""Which bridge, if any, carries each event of one bus (SPEC sections 11 and 13).

A bridge carries event classes, and `Message` topics given as topic strings or
patterns (``"orders.*"``, ``"audit.>"``). The bus asks `Routes.find` on every
post that misses its dispatch cache; the answer is cached per class, and for a
`Message` per topic (bounded: topics are open-ended). `Routes.check` runs when a
subscriber registers: a handler of a class or topics that a bridge only sends (no
group) would never run, so it is refused by name. `bridged_events` checks a
bridge's ``events=`` list, and its `TopicSet` tells a receiving bridge which
topics are its own (the others of a shared namespace are skipped).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, Generic, Protocol, TypeVar, final

from ._errors import SubscriptionError
from ._events import DeadEvent, Event, Message
from ._patterns import Pattern, pattern_of, topic_problem
from ._scan import plan_of

__all__ = ["Routed", "Routes", "TopicSet", "bridged_events", "overlap", "within"]

_MAX_CACHED_TOPICS: Final = 10_000  # Message topics are open-ended; bound the cache they fill.


class Routed(Protocol):
    """What routing needs of a bridge."""

    @property
    def closed(self) -> bool:
        """Whether the bridge has been closed."""
        ...


_B = TypeVar("_B", bound=Routed)


def overlap(a: Pattern, b: Pattern) -> bool:
    """Whether some topic matches both *a* and *b* (plain topics are patterns without wildcards)."""
    for want, got in zip(a.head, b.head, strict=False):
        if want is not None and got is not None and want != got:
            return False
    if a.rest and b.rest:
        return True
    if a.rest:
        return b.size > a.size
    if b.rest:
        return a.size > b.size
    return a.size == b.size


def within(a: Pattern, b: Pattern) -> bool:
    """Whether every topic that matches *a* matches *b*."""
    if a.rest:
        if not b.rest or b.size > a.size:
            return False
    elif (b.rest and a.size <= b.size) or (not b.rest and a.size != b.size):
        return False
    return all(want is None or want == got for want, got in zip(b.head, a.head, strict=False))


def bridged_events(events: Iterable[type | str]) -> tuple[list[type[Event]], dict[str, type[Event]], TopicSet]:
    """Check a bridge's ``events=``; return its classes, its decoding table (type -> class) and its topics.

    The table maps ``""`` to `Message` when `Message` or a topic string is listed:
    a receiver then decodes any other type as a `Message` (and skips the topics
    that the `TopicSet` does not match).

    Raises:
        TypeError: Something that is neither an event class nor a topic string.
        ValueError: Nothing listed, two classes with one topic, or a bad topic string (see `TopicSet`).
    """
    if isinstance(events, str):
        raise TypeError(f"events= takes a list of classes and topics: write events=[{events!r}]")
    listed: list[Any] = list(events)  # checked here: callers may pass anything
    if not listed:
        raise ValueError("events= must list at least one event class or Message topic to bridge")
    types: dict[str, type[Event]] = {}
    for cls in listed:
        if isinstance(cls, str):
            continue
        if not (isinstance(cls, type) and issubclass(cls, Event)) or cls is DeadEvent:
            raise TypeError(f"events= takes Event subclasses (or Message) and topic strings, not {cls!r}")
        topic = "" if cls is Message else cls.topic
        if topic in types:
            raise ValueError(
                f"{cls.__qualname__} and {types[topic].__qualname__} share the topic {topic!r}; "
                "a receiver could not tell them apart. Give one of them its own topic."
            )
        types[topic] = cls
    classes = list(types.values())
    topics = TopicSet([text for text in listed if isinstance(text, str)], types)
    if topics.texts:
        types[""] = Message
    return classes, types, topics


@final
class TopicSet:
    """The `Message` topics a bridge carries: topic strings and patterns, and which topics they match."""

    __slots__ = ("_matched", "patterns", "texts")

    def __init__(self, texts: list[str], types: dict[str, type[Event]]) -> None:
        """Check *texts* against the bridge's classes (*types*: topic -> class).

        Raises:
            ValueError: A malformed topic, a topic string beside `Message` itself, or a
                listed class whose topic a topic string matches.
        """
        texts = list(dict.fromkeys(texts))
        for text in texts:
            problem = topic_problem(text)
            if problem is not None:
                raise ValueError(f"events= lists a bad Message topic: {problem}")
        if texts and "" in types:
            raise ValueError(
                f"events= lists Message, which carries every topic, and the topics {texts!r}; "
                "list Message alone (every topic) or the topic strings alone (those topics)"
            )
        self.texts: tuple[str, ...] = tuple(texts)
        self.patterns: tuple[Pattern, ...] = tuple(pattern_of(text) for text in texts)
        self._matched: dict[str, bool] = {}
        for topic, cls in types.items():
            for pattern in self.patterns:
                if pattern.matches(topic.split(".")):
                    raise ValueError(
                        f"the topic {topic!r} of {cls.__qualname__} matches the listed {pattern.text!r}; "
                        f"a receiver could not tell a Message of that topic from a {cls.__qualname__}. "
                        f"Give {cls.__qualname__} a topic outside {pattern.text!r}, or narrow the pattern."
                    )

    def matches(self, topic: str) -> bool:
        """Whether one of the topic strings matches *topic* (cached, at most 10,000 topics)."""
        found = self._matched.get(topic)
        if found is None:
            segments = topic.split(".")
            found = any(pattern.matches(segments) for pattern in self.patterns)
            if len(self._matched) >= _MAX_CACHED_TOPICS:
                self._matched = {}
            self._matched[topic] = found
        return found


class Routes(Generic[_B]):
    """Which bridge, if any, carries each event class and each `Message` topic of one bus."""

    __slots__ = ("_by_class", "_by_topic", "_cache", "_send_only", "_send_only_topics", "_topic_cache")

    def __init__(self) -> None:
        self._by_class: dict[type, _B] = {}
        self._send_only: dict[type, _B] = {}
        self._cache: dict[type, _B | None] = {}
        self._by_topic: dict[str, _B] = {}
        """Topic strings and patterns of `Message`s -> their bridge."""
        self._send_only_topics: dict[str, _B] = {}
        self._topic_cache: dict[str, _B | None] = {}

    def add(self, bridge: _B, classes: Iterable[type], receives: bool, topics: Iterable[str] = ()) -> None:
        """Route *classes*, and the `Message` *topics* (strings or patterns), through *bridge*.

        Raises:
            ValueError: A class, or a topic some of *topics* match, is carried by an open bridge already.
        """
        classes = list(classes)
        topics = list(topics)
        for cls in classes:
            if cls in self._by_class and not self._by_class[cls].closed:
                raise ValueError(f"{cls.__qualname__} is already bridged by {self._by_class[cls]!r}")
        if topics:
            message_bridge = self._by_class.get(Message)
            if message_bridge is not None and not message_bridge.closed:
                raise ValueError(
                    f"Message is already bridged by {message_bridge!r}, with every topic; "
                    f"the topics {topics!r} cannot go through another bridge"
                )
        if Message in classes:
            for text, other in self._by_topic.items():
                if not other.closed:
                    raise ValueError(
                        f"the Message topic {text!r} is already bridged by {other!r}; "
                        "Message (every topic) cannot go through another bridge"
                    )
        for text in topics:
            for other_text, other in self._by_topic.items():
                if not other.closed and overlap(pattern_of(text), pattern_of(other_text)):
                    raise ValueError(
                        f"the Message topics {text!r} and {other_text!r} overlap, and {other_text!r} is "
                        f"already bridged by {other!r}; a Message of a topic both match would have two "
                        "bridges. Bridge each topic through one bridge: narrow the patterns, or list "
                        "them in one bridge."
                    )
        # What a closed bridge carried stays routed to it (posting raises BusClosedError)
        # until another bridge takes it over: then that route goes.
        by_class = dict(self._by_class)
        if topics and by_class.pop(Message, None) is not None:
            self._send_only.pop(Message, None)
        for cls in classes:
            by_class[cls] = bridge
            if receives:
                self._send_only.pop(cls, None)
            else:
                self._send_only[cls] = bridge
        new = [pattern_of(text) for text in topics]
        by_topic = _without_taken(self._by_topic, new, Message in classes)
        self._send_only_topics = _without_taken(self._send_only_topics, new, Message in classes)
        for text in topics:
            by_topic[text] = bridge
            if not receives:
                self._send_only_topics[text] = bridge
        self._by_class = by_class
        self._by_topic = by_topic
        self._cache = {}
        self._topic_cache = {}

    def remove(self, bridge: _B) -> None:
        """Stop routing the classes and topics of *bridge* (it was closed)."""
        self._by_class = {c: b for c, b in self._by_class.items() if b is not bridge}
        self._send_only = {c: b for c, b in self._send_only.items() if b is not bridge}
        self._by_topic = {t: b for t, b in self._by_topic.items() if b is not bridge}
        self._send_only_topics = {t: b for t, b in self._send_only_topics.items() if b is not bridge}
        self._cache = {}
        self._topic_cache = {}

    def find(self, event: object) -> _B | None:
        """The bridge that carries *event*, or `None`.

        Raises:
            TypeError: *event*'s class is a subclass of a bridged class without being listed itself.
        """
        cls = type(event)
        if cls is Message and self._by_topic:  # then Message itself is not routed (see add)
            topic: str = event.topic  # type: ignore[attr-defined]  # a Message has a topic
            try:
                return self._topic_cache[topic]
            except KeyError:
                return self._find_topic(topic)
        try:
            return self._cache[cls]
        except KeyError:
            return self._find_class(cls)

    def _find_class(self, cls: type) -> _B | None:
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

    def _find_topic(self, topic: str) -> _B | None:
        cache = self._topic_cache
        found = self._by_topic.get(topic)
        if found is None:
            segments = topic.split(".")
            for text, bridge in self._by_topic.items():
                if pattern_of(text).matches(segments):
                    found = bridge
                    break
        if len(cache) >= _MAX_CACHED_TOPICS:
            cache = self._topic_cache = {}
        cache[topic] = found
        return found

    def bridged(self, cls: type) -> bool:
        """Whether instances of *cls* never reach local handlers through ``post`` (the registry's test)."""
        return any(base in self._by_class for base in cls.__mro__)

    def check(self, subscriber: object) -> None:
        """Refuse a subscriber with handlers of classes or topics bridged without a group (they would never run).

        Raises:
            SubscriptionError: *subscriber* has such a handler; nothing was registered.
        """
        if not self._send_only and not self._send_only_topics:
            return
        plan = plan_of(subscriber)
        for handler in plan.handlers if plan is not None else ():
            for binding in handler.bindings:
                self.check_handler(binding.name, binding.key, subscriber)

    def check_handler(self, name: str, key: type | str, subscriber: object) -> None:
        """Refuse one handler of a class, a topic or a pattern that a bridge sends without a group.

        A topic handler is refused when every topic it subscribes to (its topic, or
        each topic its pattern matches) is a send-only class's topic or matches a
        send-only `Message` topic string: those events go to the engine and never
        reach it. A pattern handler that also matches other topics is accepted: it
        still runs for those.
        """
        for cls, bridge in self._send_only.items():
            if key is cls or key == getattr(cls, "topic", None):
                raise SubscriptionError(
                    f"handler {name!r} subscribes to {cls.__qualname__}, which {bridge!r} sends "
                    "without a group: it would never run.\n"
                    "Give the bridge group= or broadcast=True, or do not subscribe to it in this process.",
                    subscriber=subscriber,
                    handler=name,
                )
        if not isinstance(key, str):
            return
        for text, bridge in self._send_only_topics.items():
            if within(pattern_of(key), pattern_of(text)):
                raise SubscriptionError(
                    f"handler {name!r} subscribes to the topic {key!r}, and {bridge!r} sends the Messages "
                    f"of {text!r} without a group: those would never reach it.\n"
                    "Give the bridge group= or broadcast=True, or subscribe to topics it does not send.",
                    subscriber=subscriber,
                    handler=name,
                )


def _without_taken(routes: dict[str, _B], new: list[Pattern], every: bool) -> dict[str, _B]:
    """*routes* without the topics that *new* patterns (or, if *every*, `Message` itself) take over."""
    return {text: b for text, b in routes.items() if not (every or any(overlap(pattern_of(text), p) for p in new))}
