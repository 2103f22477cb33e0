"""Every script in ``examples/`` runs and prints what it claims to show.

Each example runs in a subprocess, as a user would run it, and its output is
checked against `EXPECTED`: the listed lines must appear in that order (other
lines may come between them). An example that is missing from `EXPECTED` fails,
so that a new example cannot go untested; the ancestor's README examples are
checked in ``tests/test_compat.py`` instead.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from .helpers import child_python_env

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 120.0  # seconds for one example; they take one or two


@dataclass(frozen=True)
class Part:
    """Matches any output line that contains *text* (for lines with variable numbers)."""

    text: str


Expectation = str | Part
"""A plain string must equal a whole output line (trailing spaces ignored); a `Part` must be contained in one."""

EXPECTED: dict[str, list[Expectation]] = {
    "01_quickstart.py": [
        "publish().result(): ['charged 20.00 for order 2']",
        "billing charged orders: [1, 2]",
        "stats: posted=2 delivered=2 failed=0 dead=0",
        "bus closed: True",
    ],
    "02_typed_events_and_topics.py": [
        "topics: orders.placed orders.placed __main__.Heartbeat pages",
        "post OrderPlaced:",
        "  by class: OrderPlaced 1",
        "  by topic: OrderPlaced on 'orders.placed'",
        "post RushOrderPlaced:",
        "  by class: RushOrderPlaced 2",
        "  by topic: RushOrderPlaced on 'orders.placed'",
        "post Message:",
        "  by topic: Message on 'orders.placed'",
        "post Page[int]:",
        "  Page[int] handler: [1, 2]",
        "post Page[str]:",
        Part("invalid: Input should be a valid integer"),
        "frozen: Instance is frozen",
        "dead events (reached no handler): 1",
    ],
    "03_strategies_compared.py": [
        "sync        ran on the posting thread  per-key order kept: True  keyed streams overlapped: False  "
        "unkeyed events overlapped: False",
        "ordered     ran on worker threads      per-key order kept: True  keyed streams overlapped: True   "
        "unkeyed events overlapped: False",
        "concurrent  ran on worker threads      per-key order kept: True  keyed streams overlapped: True   "
        "unkeyed events overlapped: True",
    ],
    "04_ordered_per_key.py": [
        *(f"acct-{i}: 500 deposits, balance 125,250" for i in range(8)),
        "posted 4,000 deposits; out of order: 0",
        "OK: every account saw its deposits in post order and holds 125,250.",
    ],
    "05_errors_and_dead_events.py": [
        "result: ['fraud check passed', 'booked 10']",
        "on_error: Fraud.check raised ValueError('amount 5000 needs a review') (topic 'payments')",
        "result() raised ValueError('amount 5000 needs a review'); "
        "note: raised by handler Fraud.check for topic 'payments'",
        "dead letter: nobody handles Refund(amount=3)",
        Part("SubscriptionError: Broken.wrong: must take exactly one event argument"),
        "stats: delivered=4 failed=1 dead=1",
    ],
    "06_default_vs_injected.py": [
        "default bus: <EventBus 'default' ConcurrentDelivery open> -> ['hello via the default bus']",
        "injected bus: <EventBus 'injected' SyncDelivery closed> -> ['hello, injected bus']",
        "new default bus: <EventBus 'configured' SyncDelivery open> -> events that reached no handler: 1",
        "after reset_default_bus: <EventBus 'default' ConcurrentDelivery open>",
    ],
    "07_testing_helpers.py": [
        Part("a failing assertion says: Expected an event of type OrderPlaced to have been posted twice"),
        "passed: test_checkout_posts_one_order",
        "  post() raised ValueError('cannot charge 0.0'); note: raised by handler Billing.charge "
        "for topic 'orders.placed'",
        "passed: test_a_failing_handler_fails_the_test",
        "passed: test_code_that_uses_the_default_bus",
    ],
    "08_scale_out_redis.py": [
        "3 workers ready",
        "posted 2400 deposits",
        "killed worker 1 with SIGKILL midway",
        Part("applied 2400 of 2400 deposits"),
        "every balance is 45150: True",
        "out of order: 0",
    ],
    "09_custom_strategy.py": [
        "publish().result(): [-10]",
        "joined: True",
        "stats: posted=301 delivered=301 failed=0",
        "handler threads: ['ui-background']",
        "each poster's frames drawn in order: True",
    ],
    "10_patterns_and_sticky.py": [
        "monitor: orders.placed",
        "audit: orders.placed",
        "audit: orders.eu.shipped",
        "orders.placed reaches ['OrderMonitor.seen', 'OrderMonitor.audit']",
        "dashboard: database up at db:5432",
        "dashboard: database down at db:5432",
        "kept: up=False",
        "posted=4",
    ],
    "11_scale_out_nats.py": [
        "3 workers ready",
        "posted 2400 deposits",
        "killed worker 1 with SIGKILL midway",
        Part("applied 2400 of 2400 deposits"),
        "every balance is 45150: True",
        "out of order: 0",
    ],
    "demo_counters.py": [
        Part("after  1.0 s: c1="),
        Part("all delivered: True"),
        *(Part(f"  {name}: producers posted") for name in ("c1", "c2", "c3", "c4")),
        "OK: every counter's total equals exactly what the producers posted.",
    ],
    "12_tracing.py": [
        "bus 'shop': SyncDelivery()",
        "  1. Shop.charge  [priority=10]",
        "payment caused by the order: True",
        "one chain: True",
        "spans:",
        "  publish orders.placed",
        "    process orders.placed  (Shop.charge)",
        "      publish payments.taken",
        "        process payments.taken  (Shop.ship)",
    ],
}

ARGS: dict[str, list[str]] = {"demo_counters.py": ["1"]}
"""Command-line arguments per example (the demo runs for 1 second instead of 3)."""

TESTED_ELSEWHERE: dict[str, str] = {
    "ancestor_simple.py": "tests/test_compat.py",
    "ancestor_counters.py": "tests/test_compat.py",
}
"""The ancestor's README examples run unchanged against eventbus.compat; their test checks the totals."""


def _example_names() -> list[str]:
    return sorted(path.name for path in EXAMPLES.glob("*.py"))


def _run(name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *ARGS.get(name, [])],
        cwd=ROOT,
        env=child_python_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def _matches(line: str, expectation: Expectation) -> bool:
    if isinstance(expectation, Part):
        return expectation.text in line
    return line.rstrip() == expectation


def _missing(lines: list[str], expected: list[Expectation]) -> Expectation | None:
    """Return the first expectation not met, in order, by *lines*; `None` if all are met."""
    position = 0
    for expectation in expected:
        while position < len(lines) and not _matches(lines[position], expectation):
            position += 1
        if position == len(lines):
            return expectation
        position += 1
    return None


def test_examples_exist() -> None:
    """The numbered examples and the demo are all there (so the glob below is not vacuous)."""
    names = set(_example_names())
    assert set(EXPECTED) <= names, f"EXPECTED lists examples that do not exist: {sorted(set(EXPECTED) - names)}"


@pytest.mark.parametrize("name", _example_names())
def test_example_runs_and_prints_what_it_shows(name: str) -> None:
    """The example exits with 0, writes nothing to stderr, and prints its expected lines in order."""
    if name in TESTED_ELSEWHERE:
        pytest.skip(f"{name} is checked in {TESTED_ELSEWHERE[name]}")
    if name not in EXPECTED:
        pytest.fail(f"examples/{name} has no expected output: add it to EXPECTED in tests/test_examples.py")
    result = _run(name)
    shown = f"--- stdout ---\n{result.stdout}--- stderr ---\n{result.stderr}"
    assert result.returncode == 0, f"examples/{name} exited with {result.returncode}\n{shown}"
    assert result.stderr == "", f"examples/{name} wrote to stderr\n{shown}"
    missing = _missing(result.stdout.splitlines(), EXPECTED[name])
    assert missing is None, f"examples/{name} did not print {missing!r} (in order)\n{shown}"


@pytest.mark.parametrize("name", [n for n in _example_names() if n not in TESTED_ELSEWHERE])
def test_example_is_a_teaching_script(name: str) -> None:
    """Each example has a module docstring, a main() function and an ``if __name__ == "__main__":`` guard."""
    tree = ast.parse((EXAMPLES / name).read_text(encoding="utf-8"), filename=name)
    assert ast.get_docstring(tree), f"examples/{name} needs a module docstring saying what it shows"
    functions = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert "main" in functions, f"examples/{name} needs a main() function"
    last = tree.body[-1]
    assert isinstance(last, ast.If), f"examples/{name} must end with `if __name__ == '__main__':`"
    assert ast.unparse(last.test) == "__name__ == '__main__'", f"examples/{name} must end with the __main__ guard"
