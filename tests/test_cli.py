"""The ``eventbus`` command line, run for real in a child process (``python -m eventbus``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventbus import Event, EventBus, subscribe
from eventbus._cli import engine_for

from .bridges.servers import NatsServer, RedisServer, nats_available, redis_available
from .helpers import child_python_env

ROOT = Path(__file__).resolve().parent.parent

APP = """
from eventbus import Event, EventBus, subscribe


class OrderPlaced(Event, topic="orders.placed"):
    order_id: int


class Billing:
    @subscribe(OrderPlaced, priority=5)
    def charge(self, event: OrderPlaced) -> None: ...


bus = EventBus(strategy="sync", name="shop")
bus.register(Billing())
not_a_bus = 42


def make_bus() -> EventBus:
    return bus
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventbus", *args],
        cwd=cwd,
        env=child_python_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("app")
    (directory / "shopapp.py").write_text(APP, encoding="utf-8")
    (directory / "broken.py").write_text("raise RuntimeError('boom at import')\n", encoding="utf-8")
    return directory


def test_describe_prints_the_table(app_dir: Path) -> None:
    """``eventbus describe MODULE:ATTRIBUTE`` imports the module and prints the topology."""
    done = run("describe", "shopapp:bus", cwd=app_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "bus 'shop': SyncDelivery()",
        "class OrderPlaced  (topic 'orders.placed')",
        "  1. Billing.charge  [priority=5]",
    ]


def test_describe_json_and_mermaid(app_dir: Path) -> None:
    """``--json`` prints the data of to_dict(), ``--mermaid`` the flowchart; a factory function works too."""
    as_json = run("describe", "shopapp:make_bus", "--json", cwd=app_dir)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["bus"] == "shop"
    assert data["routes"][0]["handlers"][0]["name"] == "Billing.charge"
    mermaid = run("describe", "shopapp:bus", "--mermaid", cwd=app_dir)
    assert mermaid.returncode == 0, mermaid.stderr
    assert mermaid.stdout.startswith("flowchart LR\n")
    assert "route0 -->|1| handler0" in mermaid.stdout


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule:bus", "cannot import module 'nosuchmodule'"),
        ("broken:bus", "importing 'broken' failed: RuntimeError: boom at import"),
        ("shopapp:nothing", "module 'shopapp' has no attribute 'nothing'"),
        ("shopapp:not_a_bus", "shopapp:not_a_bus is int 42, not an EventBus"),
        ("shopapp", "'shopapp' is not MODULE:ATTRIBUTE"),
    ],
)
def test_describe_mistakes_exit_2_saying_what_to_do(app_dir: Path, target: str, message: str) -> None:
    """A module that cannot be imported or an attribute that is not a bus: exit status 2 and a clear message."""
    done = run("describe", target, cwd=app_dir)
    assert done.returncode == 2
    assert done.stdout == ""
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 2  # what went wrong, then what to do


def test_an_unknown_engine_url_exits_2(app_dir: Path) -> None:
    """A URL no engine serves is a usage error."""
    done = run("dead-letters", "list", "http://localhost", cwd=app_dir)
    assert done.returncode == 2
    assert "no engine for 'http' URLs" in done.stderr


def test_the_console_script_is_declared() -> None:
    """``pyproject.toml`` declares the ``eventbus`` console script on the same main()."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts == {"eventbus": "eventbus._cli:main"}


def test_main_in_process(app_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The console script's main() returns the exit status and prints what the child process prints."""
    from eventbus._cli import main

    monkeypatch.chdir(app_dir)
    monkeypatch.syspath_prepend(str(app_dir))
    assert main(["describe", "shopapp:not_a_bus"]) == 2
    assert "not an EventBus" in capsys.readouterr().err


# -- dead letters on a real redis-server ------------------------------------------------------


class Order(Event, topic="cli.order"):
    n: int


class Failing:
    @subscribe(Order)
    def handle(self, event: Order) -> None:
        raise ValueError(f"cannot handle {event.n}")


@pytest.fixture(scope="module", params=["redis", "nats"])
def engine_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real engine server of this test run (redis-server, or nats-server -js)."""
    server: RedisServer | NatsServer
    if request.param == "redis":
        if not redis_available():
            pytest.fail("redis-server is not installed (apt-get install redis-server)")
        server = RedisServer(tmp_path_factory.mktemp("redis-cli"))
    else:
        if not nats_available():
            pytest.fail("nats-server is not installed (apt-get install nats-server)")
        server = NatsServer(tmp_path_factory.mktemp("nats-cli"))
    server.start()
    yield server.url
    server.stop()


def make_dead_letters(url: str, namespace: str, count: int) -> None:
    """Post *count* events that a failing handler sends to the dead letters on its first attempt."""
    bus = EventBus(strategy="sync", name="producer", on_error=lambda exc, context: None)
    try:
        bus.register(Failing())
        bridge = bus.bridge(
            engine_for(url),
            events=[Order],
            group="workers",
            namespace=namespace,
            partitions=2,
            max_deliver=1,
            retry_delay=(0.01, 0.01),
        )
        for n in range(count):
            bus.post(Order(n=n))
        deadline = time.monotonic() + 20
        while bridge.stats().dead_lettered < count:
            assert time.monotonic() < deadline, bridge.stats()
            time.sleep(0.01)
    finally:
        bus.shutdown(timeout=20)


def test_dead_letters_list_replay_drop(engine_url: str, tmp_path: Path) -> None:
    """list shows each dead letter with its handler and error; replay sends one again; drop deletes one."""
    make_dead_letters(engine_url, "clitest", 3)
    common = ("--namespace", "clitest", "--partitions", "2")
    listed = run("dead-letters", "list", engine_url, *common, "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    letters = json.loads(listed.stdout)
    assert len(letters) == 3
    assert {letter["type"] for letter in letters} == {"cli.order"}
    assert {letter["handler"] for letter in letters} == {"Failing.handle"}
    assert all("ValueError: cannot handle" in letter["error"] for letter in letters)
    text = run("dead-letters", "list", engine_url, *common, cwd=tmp_path)
    assert text.returncode == 0, text.stderr
    assert f"{letters[0]['id']}  cli.order  attempts=1  handler failed" in text.stdout

    # Replay one into the namespace: a plain reader (no failing handler) receives it.
    got: list[int] = []
    reader = EventBus(strategy="sync", name="reader")

    class Reader:
        @subscribe(Order)
        def take(self, event: Order) -> None:
            got.append(event.n)

    try:
        reader.register(Reader())
        reader.bridge(engine_for(engine_url), events=[Order], group="readers", namespace="clitest", partitions=2)
        # The new group reads from the start of the streams: the three originals, then the replay.
        replayed = run("dead-letters", "replay", engine_url, *common, letters[0]["id"], cwd=tmp_path)
        assert replayed.returncode == 0, replayed.stderr
        assert replayed.stdout.strip() == "replayed 1 of 1 dead letter(s)"
        deadline = time.monotonic() + 20
        while len(got) < 4:
            assert time.monotonic() < deadline, got
            time.sleep(0.01)
    finally:
        reader.shutdown(timeout=20)
    assert sorted(got) == sorted([0, 1, 2, json.loads(letters[0]["payload"])["data"]["n"]])

    dropped = run("dead-letters", "drop", engine_url, "--namespace", "clitest", letters[1]["id"], "0-1", cwd=tmp_path)
    assert dropped.returncode == 0, dropped.stderr
    assert dropped.stdout.strip() == "dropped 1 of 2 dead letter(s)"
    left = json.loads(run("dead-letters", "list", engine_url, *common, "--json", cwd=tmp_path).stdout)
    assert [letter["id"] for letter in left] == [letters[2]["id"]]


def test_dead_letters_of_an_unreachable_engine_fail_with_status_1(tmp_path: Path) -> None:
    """An engine that does not answer: a one-line error and status 1, not a traceback."""
    done = run("dead-letters", "list", "redis://127.0.0.1:1/0", "--timeout", "1", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("eventbus: error: ")
    assert "Traceback" not in done.stderr
