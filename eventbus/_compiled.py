"""Which build of eventbus is running: pure Python, or compiled with mypyc.

``EVENTBUS_COMPILE=1 pip install .`` compiles the modules on the post path (listed
in ``pyproject.toml`` under ``[tool.eventbus.mypyc]``) into extension modules; any
other install runs the same sources as pure Python.
"""

from __future__ import annotations

from importlib.machinery import EXTENSION_SUFFIXES
from typing import Final

from . import _dispatch

__all__ = ["compiled"]

compiled: Final[bool] = (_dispatch.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES))
"""`True` when the hot modules run compiled by mypyc (``EVENTBUS_COMPILE=1`` at build time).

Added in version 0.1.
"""
