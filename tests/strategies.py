"""Hypothesis strategies shared by the property tests (kept in one file, as attrs does)."""

from __future__ import annotations

from hypothesis import strategies as st

priorities = st.integers(min_value=-100, max_value=100)
"""Handler priorities, with plenty of ties among small draws."""

topics = st.lists(st.text(alphabet="abc", min_size=1, max_size=2), min_size=1, max_size=3).map(".".join)
"""Topic strings from a small alphabet, so that draws collide often; dot-separated, no segment empty
(a subscription to ``"a..b"`` is a typo that ``@subscribe`` refuses, #15)."""


@st.composite
def trees(draw: st.DrawFn, max_nodes: int = 30) -> list[int]:
    """A rooted tree as a parent list: node 0 is the root, node ``i > 0`` has parent ``parents[i]`` < ``i``."""
    size = draw(st.integers(min_value=1, max_value=max_nodes))
    parents = [-1]
    for node in range(1, size):
        parents.append(draw(st.integers(min_value=0, max_value=node - 1)))
    return parents


def breadth_first(parents: list[int]) -> list[int]:
    """The nodes of a parent-list tree in breadth-first order, children in ascending order."""
    children: dict[int, list[int]] = {node: [] for node in range(len(parents))}
    for node, parent in enumerate(parents):
        if parent >= 0:
            children[parent].append(node)
    order, frontier = [], [0]
    while frontier:
        node = frontier.pop(0)
        order.append(node)
        frontier.extend(children[node])
    return order


handler_specs = st.lists(
    st.tuples(st.sampled_from(["base", "child", "topic", "other"]), priorities),
    min_size=1,
    max_size=8,
)
"""The handlers of a generated subscriber class: (what it subscribes to, priority), in definition order."""
