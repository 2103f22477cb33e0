"""The benchmark suite still runs, and eventbus loses no event in it (no thresholds on time).

The suite runs as its users run it, ``python -m benchmarks.run``, in a subprocess:
``benchmarks/`` is a script tree outside the package, and the peers it compares
against are optional (the ``bench`` extra), so only eventbus and the floors are
required here.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import eventbus

from .helpers import child_python_env

ROOT = Path(__file__).resolve().parent.parent
SYNC_PEERS = {
    "psygnal": ("psygnal emit", "psygnal emit_fast"),
    "blinker": ("blinker send",),
    "pyee": ("pyee emit",),
    "pubsub": ("pypubsub sendMessage",),
    "pydispatch": ("PyDispatcher send",),
    "geeteventbus": ("geeteventbus 1.0 post (synchronus)",),
}


def _run(out: Path, *args: str) -> dict[str, Any]:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--no-chart", "--out", str(out), *args],
        cwd=ROOT,
        env=child_python_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    document: dict[str, Any] = json.loads((out / "benchmarks.json").read_text(encoding="utf-8"))
    document["stdout"] = completed.stdout
    document["out"] = str(out)
    return document


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One quick run of every workload, eventbus and the floors only."""
    return _run(tmp_path_factory.mktemp("bench"), "--no-peers")


def _rows(document: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [row for row in document["results"] if row["kind"] == kind]


def test_every_workload_runs_eventbus_and_a_floor(quick: dict[str, Any]) -> None:
    """Each workload has eventbus rows and floor rows, and no peer rows under --no-peers."""
    workloads = {w["id"] for w in quick["workloads"]}
    assert workloads == {
        "sync-1",
        "sync-10",
        "topics",
        "threaded",
        "latency",
        "register",
        "build",
        "asyncio",
        "patterns",
    }
    for workload in workloads:
        kinds = {row["kind"] for row in quick["results"] if row["workload"] == workload}
        assert kinds == {"eventbus", "floor"}, workload


def test_eventbus_delivers_every_event(quick: dict[str, Any]) -> None:
    """No eventbus case raises or loses an event; only a strategy that does not exist yet may be skipped."""
    for row in _rows(quick, "eventbus"):
        assert row["error"] is None, row
        if row["skipped"] is not None:
            assert row["workload"] == "asyncio", row
            continue
        if row["expected"] is not None:
            assert row["expected"] > 0, row
            assert row["lost"] == 0, row
            assert row["delivered"] == row["expected"], row


def test_floors_deliver_every_event(quick: dict[str, Any]) -> None:
    """The hand-written floors run and lose nothing either (so the harness's counting is sound)."""
    for row in _rows(quick, "floor"):
        assert row["error"] is None, row
        assert row["skipped"] is None, row
        if row["expected"] is not None:
            assert row["lost"] == 0, row


def test_outputs_and_targets_are_written(quick: dict[str, Any]) -> None:
    """The run prints the targets and the machine, and writes a Markdown table next to the JSON."""
    assert "== Targets (printed, never asserted)" in quick["stdout"]
    assert any(t["what"].startswith("sync 1 handler: eventbus / dict-loop") for t in quick["targets"])
    assert quick["meta"]["mode"] == "quick"
    assert quick["meta"]["nproc"] >= 1
    table = (Path(quick["out"]) / "benchmarks.md").read_text(encoding="utf-8")
    assert "### 1. Sync post, 1 handler" in table
    assert "| **eventbus sync · typed Event** |" in table


def test_installed_peers_run_and_deliver(tmp_path: Path) -> None:
    """With the bench extra installed, every sync peer runs and delivers every event."""
    pytest.importorskip("psygnal")
    document = _run(tmp_path, "--only", "sync-1")
    assert (tmp_path / "benchmarks.md").read_text(encoding="utf-8").count("| **eventbus") == 2
    peers = {row["case"]: row for row in _rows(document, "peer")}
    for module, cases in SYNC_PEERS.items():
        for case in cases:
            row = peers[case]
            if importlib.util.find_spec(module) is None:
                assert row["skipped"], row
                continue
            assert row["error"] is None, row
            assert row["skipped"] is None, row
            assert row["lost"] == 0, row


@pytest.mark.skipif(not eventbus.compiled, reason="needs the compiled build (scripts/check.sh's compiled pass)")
def test_compiled_rows_sit_below_the_pure_rows(tmp_path: Path) -> None:
    """``--compiled PYTHON`` adds each eventbus case again, run by the compiled build, right below it."""
    document = _run(tmp_path, "--only", "sync-1", "--no-peers", "--compiled", sys.executable)
    cases = [row["case"] for row in document["results"]]
    typed = "eventbus sync · typed Event"
    assert cases[cases.index(typed) + 1] == typed + " [compiled]"
    for row in document["results"]:
        if row["kind"] == "compiled":
            assert row["error"] is None, row
            assert row["lost"] == 0, row
