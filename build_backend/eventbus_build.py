"""The PEP 517 build backend of eventbus: setuptools', plus what mypyc needs when asked.

``pip install .`` builds pure Python and needs setuptools alone. With
``EVENTBUS_COMPILE=1`` in the environment, ``setup.py`` compiles the modules listed
under ``[tool.eventbus.mypyc]`` in ``pyproject.toml`` with mypyc, and this backend
adds mypy (which brings mypyc) and the runtime dependencies (which mypyc type-checks
against) to the wheel's build requirements. That is what psygnal gets from
hatch-mypyc's build hook with ``enable-by-default = false``: the compiler toolchain is
a build-time need of the compiled build only, never of the two-command setup.

An sdist is always the pure source (the compiled modules are built from it), and an
editable install cannot be compiled: mypyc's extension modules would shadow the
source being edited.
"""

from __future__ import annotations

import contextlib
import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from setuptools import build_meta as _setuptools

__all__ = [
    "build_editable",
    "build_sdist",
    "build_wheel",
    "get_requires_for_build_editable",
    "get_requires_for_build_sdist",
    "get_requires_for_build_wheel",
    "prepare_metadata_for_build_editable",
    "prepare_metadata_for_build_wheel",
]

COMPILE_VARIABLE = "EVENTBUS_COMPILE"
MYPYC_REQUIRES = ["mypy>=2.4"]  # mypyc ships with mypy; the oldest version the compiled build was tested with


def compiling() -> bool:
    """Whether this build was asked to compile (``EVENTBUS_COMPILE=1``)."""
    return os.environ.get(COMPILE_VARIABLE) == "1"


@contextlib.contextmanager
def _pure() -> Iterator[None]:
    # Run a setuptools hook as for a pure build: setup.py then neither imports mypyc
    # (not installed yet when requirements are asked for) nor runs it (metadata, sdist).
    saved = os.environ.pop(COMPILE_VARIABLE, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[COMPILE_VARIABLE] = saved


def _runtime_dependencies() -> list[str]:
    pyproject = tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))
    return list(pyproject["project"]["dependencies"])


def _refuse_editable() -> None:
    if compiling():
        raise RuntimeError(
            f"{COMPILE_VARIABLE}=1 builds a regular install: run `{COMPILE_VARIABLE}=1 pip install .` "
            "without -e (compiled modules would shadow the source you edit)"
        )


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Setuptools' requirements, plus mypy and the runtime dependencies when compiling."""
    with _pure():
        requires: list[str] = _setuptools.get_requires_for_build_wheel(config_settings)
    if compiling():
        requires += [*MYPYC_REQUIRES, *_runtime_dependencies()]
    return requires


def build_wheel(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    """Setuptools' hook; ``setup.py`` compiles when ``EVENTBUS_COMPILE=1``."""
    name: str = _setuptools.build_wheel(wheel_directory, config_settings, metadata_directory)
    return name


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """The same metadata for both builds (computing it must not run mypyc)."""
    with _pure():
        name: str = _setuptools.prepare_metadata_for_build_wheel(metadata_directory, config_settings)
    return name


def get_requires_for_build_sdist(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Setuptools' requirements: an sdist is the pure source."""
    with _pure():
        requires: list[str] = _setuptools.get_requires_for_build_sdist(config_settings)
    return requires


def build_sdist(sdist_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """Build the sdist, always the pure source."""
    with _pure():
        name: str = _setuptools.build_sdist(sdist_directory, config_settings)
    return name


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    """Setuptools' requirements; refuses ``EVENTBUS_COMPILE=1``."""
    _refuse_editable()
    requires: list[str] = _setuptools.get_requires_for_build_editable(config_settings)
    return requires


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: dict[str, Any] | None = None) -> str:
    """Setuptools' hook; refuses ``EVENTBUS_COMPILE=1``."""
    _refuse_editable()
    name: str = _setuptools.prepare_metadata_for_build_editable(metadata_directory, config_settings)
    return name


def build_editable(
    wheel_directory: str, config_settings: dict[str, Any] | None = None, metadata_directory: str | None = None
) -> str:
    """Setuptools' hook; refuses ``EVENTBUS_COMPILE=1``."""
    _refuse_editable()
    name: str = _setuptools.build_editable(wheel_directory, config_settings, metadata_directory)
    return name
