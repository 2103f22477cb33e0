"""Small helpers shared by the tests (not collected: no ``test_`` prefix)."""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import eventbus

if TYPE_CHECKING:
    from eventbus import ErrorContext

WAIT = 10.0
"""The longest any join, gate or barrier may wait before the test fails."""

ROOT = Path(__file__).resolve().parent.parent
"""The repository root (examples, benchmarks, pyproject.toml)."""


def wait_until(condition: Callable[[], object], what: str, timeout: float = WAIT) -> None:
    """Poll *condition* until it holds; fail naming *what* after *timeout* seconds.

    For outcomes no gate can signal (a worker asleep, a span exported, a bus collected);
    polling is fine in tests, as trio's own suite says, as long as every poll has a bound.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting until {what}"
        time.sleep(0.002)


def child_python_env() -> dict[str, str]:
    """The environment for a child Python that must import the eventbus under test.

    That is the checkout's eventbus, even if another copy is installed, or, when the suite
    runs against an installed build (scripts/check.sh's compiled pass), that build: its
    directory goes first on ``PYTHONPATH``, then the checkout (for ``benchmarks``), and
    ``PYTHONSAFEPATH`` keeps ``python -m`` from putting the working directory before both.
    No ``.pyc`` files are left behind.
    """
    env = dict(os.environ)
    home = str(Path(eventbus.__file__).resolve().parent.parent)
    paths = [home, str(ROOT), *filter(None, env.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    env["PYTHONSAFEPATH"] = "1"
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


class Recorder:
    """Records ``(handler_name, event)`` calls, safely from any thread, for plain equality asserts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.calls: list[tuple[str, object]] = []

    def __call__(self, name: str, event: object) -> None:
        with self._lock:
            self.calls.append((name, event))

    def names(self) -> list[str]:
        """The handler names, in call order."""
        with self._lock:
            return [name for name, _ in self.calls]

    def events(self) -> list[object]:
        """The events, in call order."""
        with self._lock:
            return [event for _, event in self.calls]


class ErrorLog:
    """An ``on_error`` hook that keeps every ``(exception, context)`` it is given."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reports: list[tuple[BaseException, ErrorContext]] = []

    def __call__(self, exc: BaseException, context: ErrorContext) -> None:
        with self._lock:
            self.reports.append((exc, context))

    def exceptions(self) -> list[BaseException]:
        """The reported exceptions, in report order."""
        with self._lock:
            return [exc for exc, _ in self.reports]


def raiser(exc: BaseException) -> Callable[[Any], None]:
    """Return a callable that raises *exc* whatever it is given."""

    def raise_it(_: Any) -> None:
        raise exc

    return raise_it


def run_in_child(child: Callable[[], str], timeout: float = 20.0) -> str:
    """Fork; run *child* there and return what it reported (or the reason it failed)."""
    read_end, write_end = os.pipe()
    with warnings.catch_warnings():
        # Python 3.12+ warns that fork() with threads running may deadlock the child;
        # being safe in that child is exactly what these tests check.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report and leave without running the parent's cleanup
        try:
            message = child()
        except BaseException as exc:
            message = f"child raised {exc!r}"
        os.write(write_end, message.encode())
        os._exit(0)
    os.close(write_end)
    try:
        ready, _, _ = select.select([read_end], [], [], timeout)
        if not ready:
            os.kill(pid, signal.SIGKILL)
            return "child hung"
        chunks = []
        while chunk := os.read(read_end, 4096):
            chunks.append(chunk)
        return b"".join(chunks).decode()
    finally:
        os.close(read_end)
        deadline = time.monotonic() + timeout
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                break
            time.sleep(0.01)


_LOGGING_DIR = os.path.dirname(logging.__file__) + os.sep


def in_logging(frame: FrameType | None) -> bool:
    """Whether *frame*, or one of its callers, runs code of the standard library's `logging`.

    The interrupt storms never raise there. `logging` takes its module lock with
    ``_acquireLock()`` before its ``try`` (``Logger.isEnabledFor`` on a cache miss,
    ``Manager.getLogger``): an interrupt landing between the two leaves the lock held
    by the main thread for ever, and the next thread that logs hangs (seen in a
    loop of the storms followed by the bridge tests). That is CPython's, not the
    bus's; a real Ctrl-C there breaks logging in any program.
    """
    if _looking[0]:  # an alarm that came while an earlier one looks here: let it pass
        return True
    _looking[0] = True
    try:
        return _logging_within(frame, 16)  # logging takes its locks within a few calls
    finally:
        _looking[0] = False


_looking = [False]


def _logging_within(frame: FrameType | None, depth: int) -> bool:
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_code.co_filename.startswith(_LOGGING_DIR):
            return True
        frame = frame.f_back
    return False
