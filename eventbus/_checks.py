"""Argument checks shared by the bus and the strategies."""

from __future__ import annotations

__all__ = ["check_positive_int"]


def check_positive_int(name: str, value: object) -> None:
    """Raise `ValueError` unless *value* is an int of at least 1 (``bool`` is refused too)."""
    if type(value) is not int or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
