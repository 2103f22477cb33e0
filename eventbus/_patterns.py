"""Topic patterns: NATS-style wildcards in ``@subscribe`` topics (SPEC section 13).

A topic is a string of dot-separated segments. A subscription's topic may use two
wildcards, each standing for whole segments::

    "orders.*"  # exactly one more segment: "orders.placed", not "orders" nor "orders.eu.placed"

    "orders.*.eu"  # "orders.placed.eu"
    "orders.>"  # one or more more segments: "orders.placed", "orders.eu.placed", not "orders"
    "*"  # every one-segment topic
    ">"  # every topic

``*`` may stand anywhere, ``>`` only last; neither may share a segment with other
characters (``"orders.*x"`` is refused, not read as a prefix), and no segment may be
empty (``"a..b"``, ``".orders"`` and ``"orders."`` are typos). `topic_problem` says
what is wrong with a subscription's topic, for the decorator's error message.

Matching happens when the registry builds an event type's handler list, never while
posting: see ``_registry``. `Pattern.matches` takes the topic already split, so a
topic is split once for all the patterns of a registry.
"""

from __future__ import annotations

from typing import Final, final

__all__ = ["Pattern", "is_pattern", "pattern_of", "topic_problem"]

_ONE: Final = "*"
_REST: Final = ">"


def is_pattern(topic: str) -> bool:
    """Whether the (valid) subscription topic *topic* has a wildcard segment."""
    return _ONE in topic or _REST in topic


def topic_problem(topic: str) -> str | None:
    """What is wrong with *topic* as a subscription's topic (problem and fix), or `None`.

    Plain topics and patterns alike: an empty segment is always a typo.
    """
    segments = topic.split(".")
    if "" in segments:
        fixed = ".".join(s for s in segments if s) or "orders.placed"
        return (
            f"the topic {topic!r} has an empty segment (a leading, trailing or doubled dot).\n"
            f"Segments are separated by single dots: write {fixed!r}."
        )
    for index, segment in enumerate(segments):
        if segment in (_ONE, _REST):
            if segment == _REST and index != len(segments) - 1:
                fixed = ".".join(segments[: index + 1])
                return (
                    f"in {topic!r}, '>' is not the last segment; '>' stands for all the remaining segments.\n"
                    f"Write {fixed!r} (one or more segments after it), or use '*' for exactly one segment."
                )
            continue
        if _ONE in segment or _REST in segment:
            one = ".".join(_ONE if s == segment else s for s in segments)
            return (
                f"in {topic!r}, the segment {segment!r} mixes a wildcard with other characters; "
                "a wildcard is a whole segment.\n"
                f"Write {one!r} ('*': exactly one segment) or end the topic with '.>' "
                "('>': one or more segments)."
            )
    return None


@final
class Pattern:
    """A compiled topic pattern: its literal segments and wildcards."""

    __slots__ = ("head", "rest", "size", "text")

    def __init__(self, text: str) -> None:
        segments = text.split(".")
        self.text: str = text
        """The pattern as written."""
        self.rest: bool = segments[-1] == _REST
        """Whether it ends in ``>`` (one or more segments)."""
        self.head: tuple[str | None, ...] = tuple(
            None if s == _ONE else s for s in (segments[:-1] if self.rest else segments)
        )
        """The segments before a final ``>``: a literal, or `None` for ``*``."""
        self.size: int = len(self.head)

    def matches(self, segments: list[str]) -> bool:
        """Whether a topic split into *segments* matches this pattern."""
        count = len(segments)
        if self.rest:
            if count <= self.size:
                return False
        elif count != self.size:
            return False
        return all(want is None or want == got for want, got in zip(self.head, segments, strict=False))

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


_compiled: dict[str, Pattern] = {}


def pattern_of(text: str) -> Pattern:
    """The compiled `Pattern` of the valid pattern *text* (cached)."""
    found = _compiled.get(text)
    if found is None:
        found = _compiled[text] = Pattern(text)
    return found
