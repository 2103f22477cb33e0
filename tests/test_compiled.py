"""`eventbus.compiled` tells which build runs, and the compiled build compiles what it lists.

scripts/check.sh runs the whole suite a second time against ``EVENTBUS_COMPILE=1 pip
install .`` with ``EVENTBUS_EXPECT_COMPILED=1``; that pass fails here if it imported
the pure source tree instead.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
from importlib.machinery import EXTENSION_SUFFIXES

import eventbus

from .helpers import ROOT, child_python_env

EXPECT_COMPILED = os.environ.get("EVENTBUS_EXPECT_COMPILED") == "1"


def listed_modules() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    modules: list[str] = pyproject["tool"]["eventbus"]["mypyc"]["modules"]
    return modules


def test_compiled_says_which_build_runs() -> None:
    """`eventbus.compiled` is true in the compiled pass of scripts/check.sh and false otherwise."""
    assert eventbus.compiled is EXPECT_COMPILED


def test_the_listed_modules_are_compiled_exactly_in_the_compiled_build() -> None:
    """Every module under ``[tool.eventbus.mypyc]`` is an extension module in the compiled build, source otherwise."""
    for name in listed_modules():
        module = importlib.import_module(f"eventbus.{name}")
        assert (module.__file__ or "").endswith(tuple(EXTENSION_SUFFIXES)) is EXPECT_COMPILED, module.__file__


def test_the_listed_modules_exist() -> None:
    """The list names real modules of the package, sorted."""
    names = listed_modules()
    assert names == sorted(names)
    for name in names:
        assert (ROOT / "eventbus" / f"{name.replace('.', '/')}.py").is_file(), name


def test_child_pythons_import_the_same_build() -> None:
    """The examples, benchmarks and compat scripts that tests run in a child Python get the build under test."""
    completed = subprocess.run(
        [sys.executable, "-c", "import eventbus; print(eventbus.compiled)"],
        cwd=ROOT,
        env=child_python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == str(EXPECT_COMPILED)
