"""Compile the hot modules with mypyc when ``EVENTBUS_COMPILE=1``; pure Python otherwise.

Everything else about the package is declared in ``pyproject.toml``, including the
list of modules to compile (``[tool.eventbus.mypyc]``). The build backend in
``build_backend/`` installs mypy and the runtime dependencies for the compiled build
only, so a plain ``pip install .`` needs neither mypy nor a C compiler.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from setuptools import Extension, setup

ROOT = Path(__file__).resolve().parent


def compiled_modules() -> list[str]:
    """The source files that mypyc compiles, from ``pyproject.toml``."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [f"eventbus/{name.replace('.', '/')}.py" for name in pyproject["tool"]["eventbus"]["mypyc"]["modules"]]


def ext_modules() -> list[Extension]:
    """Mypyc's extension modules with ``EVENTBUS_COMPILE=1``, else none."""
    if os.environ.get("EVENTBUS_COMPILE") != "1":
        return []
    from mypyc.build import mypycify  # a build requirement of the compiled build only

    # group_name: the shared library is eventbus__mypyc.*.so rather than a hash.
    return mypycify(compiled_modules(), opt_level="3", group_name="eventbus")


setup(ext_modules=ext_modules())
