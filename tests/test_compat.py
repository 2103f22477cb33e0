"""eventbus.compat: geeteventbus's API on our bus, its README examples, and its defects fixed.

Every wait has a timeout; gates and barriers stand in for timing, never sleep().
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from eventbus import EventBus, Message, subscribe
from eventbus.compat import event, eventbus, subscriber

from .helpers import child_python_env

ROOT = Path(__file__).resolve().parent.parent
WAIT = 30.0


class Collector(subscriber):
    """A consumer that keeps what it processed, safely from any thread."""

    def __init__(self, hook: Callable[[event], object] | None = None) -> None:
        self.lock = threading.Lock()
        self.seen: list[event] = []
        self.hook = hook

    def process(self, eventobj: event) -> None:
        with self.lock:
            self.seen.append(eventobj)
        if self.hook is not None:
            self.hook(eventobj)

    def data(self) -> list[object]:
        with self.lock:
            return [e.get_data() for e in self.seen]


@pytest.fixture
def make_compat() -> Iterator[Callable[..., eventbus]]:
    made: list[eventbus] = []

    def make(**options: object) -> eventbus:
        bus = eventbus(**options)  # type: ignore[arg-type]  # the ancestor's keywords, checked at run time
        made.append(bus)
        return bus

    yield make
    for bus in made:
        bus.bus.shutdown(timeout=WAIT)


def run_python(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=child_python_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# -- the ancestor's README examples ---------------------------------------------------------


def test_simple_example_prints_all_four_events() -> None:
    """The README's first example runs unchanged and prints all four events before it ends."""
    result = run_python("examples/ancestor_simple.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    expected = [
        f"Processing event with TOPIC: an_important_topic, DATA: This is some data for the event {n}"
        for n in range(1, 5)
    ]
    # The four process() calls run on parallel workers (subscribers_thread_safe=True, the
    # ancestor's default) and print() writes text and newline separately, so lines may interleave.
    for line in expected:
        assert result.stdout.count(line) == 1, result.stdout
    assert sorted(result.stdout.replace("\n", "")) == sorted("".join(expected))


COUNTING_RUNNER = """
import json, runpy, sys, threading
from collections import Counter

import eventbus.compat as compat

posted = Counter()
lock = threading.Lock()
original_post = compat.eventbus.post

def counting_post(self, eventobj):
    with lock:
        posted[eventobj.get_topic()] += eventobj.get_data()
    return original_post(self, eventobj)

compat.eventbus.post = counting_post  # the producers' view: what did they post, counter by counter?
sys.argv = [sys.argv[1], sys.argv[2]]
runpy.run_path(sys.argv[0], run_name="__main__")
print("POSTED " + json.dumps(posted))
"""


def test_counter_example_totals_are_exact() -> None:
    """The aggregator's printed changes, plus its final remainder, equal what the producers posted."""
    result = run_python("-c", COUNTING_RUNNER, "examples/ancestor_counters.py", "1")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout  # 31 threads print at once: lines may interleave, so search, do not split

    printed: Counter[str] = Counter()
    for name, count in re.findall(r"Change for counter (c\d) = (\d+), in last [\d.]+ secs", out):
        printed[name] += int(count)
    (leftover,) = re.findall(
        r"Counted after the aggregator's last report: (c1 = \d+, c2 = \d+, c3 = \d+, c4 = \d+)", out
    )
    for name, count in re.findall(r"(c\d) = (\d+)", leftover):
        printed[name] += int(count)
    (posted_json,) = re.findall(r"POSTED (\{.*\})", out)
    posted = Counter(json.loads(posted_json))

    assert set(posted) == {"c1", "c2", "c3", "c4"}
    assert printed == posted
    assert out.count("producer exited") == 30
    assert out.count("Aggregator exited") == 1
    assert "Every posted event was processed exactly once: the totals are exact." in out


def test_counter_example_differs_from_the_readme_only_where_announced() -> None:
    """The example keeps the ancestor's code: no geeteventbus import, and the one changed line is marked."""
    source = (ROOT / "examples" / "ancestor_counters.py").read_text()
    assert "geeteventbus." not in source.replace("geeteventbus.*", "")
    assert source.count("    sleep(RUN_SECONDS)\n") == 1
    assert "    sleep(20)\n" not in source
    for original in (
        "class counter_aggregator(subscriber, Thread):",
        "            ebus.post(ev)",
        "        ebus.register_consumer(subcr, counter)",
        "    ebus.shutdown()",
    ):
        assert original in source


# -- the ancestor's defects, fixed ------------------------------------------------------------


def test_shutdown_delivers_5000_queued_events(make_compat: Callable[..., eventbus]) -> None:
    """shutdown() delivers every queued event before it returns (the ancestor handled 8 of 5,000)."""
    ebus = make_compat(executor_count=2)
    gate = threading.Event()
    consumer = Collector(hook=lambda _: gate.wait(WAIT))
    ebus.register_consumer(consumer, "work")
    for n in range(5000):
        assert ebus.post(event("work", n))
    queued = ebus.bus.stats().queued
    assert queued >= 5000 - 2  # at most two are held by the workers at the gate

    outcome: list[bool] = []
    closer = threading.Thread(target=lambda: outcome.append(ebus.shutdown()))
    closer.start()
    deadline = time.monotonic() + WAIT
    while not ebus.bus.closed:  # polling a condition against a deadline; shutdown is now waiting
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert not ebus.post(event("work", -1))  # closed to new events while it drains
    gate.set()
    closer.join(WAIT)
    assert outcome == [True]
    assert sorted(consumer.data()) == list(range(5000))  # type: ignore[type-var]  # ints


EXIT_WITHOUT_SHUTDOWN = """
import atexit, sys, threading

received = []
atexit.register(lambda: print("received", len(received), flush=True))  # runs after eventbus drained

from eventbus.compat import event, eventbus, subscriber

class slow(subscriber):
    def process(self, eobj):
        gate.wait(10)
        received.append(eobj.get_data())

gate = threading.Event()
eb = eventbus(executor_count=2)
eb.register_consumer(slow(), "t")
for n in range(200):
    eb.post(event("t", n))
gate.set()
print("main done", flush=True)
# no eb.shutdown(): the ancestor hung here
"""


def test_a_program_that_never_calls_shutdown_exits_and_delivers() -> None:
    """Without shutdown() the process exits at once, after delivering what it posted."""
    started = time.monotonic()
    result = run_python("-c", EXIT_WITHOUT_SHUTDOWN, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["main done", "received 200"]
    assert elapsed < 30


EXIT_WITH_A_STUCK_CONSUMER = """
import threading
from eventbus.compat import event, eventbus, subscriber

class stuck(subscriber):
    def process(self, eobj):
        threading.Event().wait()  # never returns

eb = eventbus()
eb.register_consumer(stuck(), "t")
eb.post(event("t", 1))
print("main done", flush=True)
"""


def test_a_stuck_consumer_does_not_hang_interpreter_exit() -> None:
    """Even a consumer that never returns cannot keep the process alive: the exit drain is bounded."""
    result = run_python("-c", EXIT_WITH_A_STUCK_CONSUMER, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["main done"]


@pytest.mark.parametrize("synchronus", [True, False], ids=["sync", "concurrent"])
def test_a_failing_consumer_is_logged_with_its_traceback(
    make_compat: Callable[..., eventbus], caplog: pytest.LogCaptureFixture, synchronus: bool
) -> None:
    """A process() that raises is logged with its traceback, consumer and event (the ancestor logged str(exc))."""

    class Fragile(subscriber):
        def process(self, eventobj: event) -> None:
            raise ZeroDivisionError(f"bad data {eventobj.get_data()}")

    ebus = make_compat(synchronus=synchronus)
    ebus.register_consumer(Fragile(), "t")
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        assert ebus.post(event("t", 7))
        assert ebus.shutdown()
    (record,) = caplog.records
    assert record.name == "eventbus"
    assert "Fragile.process raised ZeroDivisionError" in record.getMessage()
    assert "event(topic='t', data=7, ordered=None)" in record.getMessage()
    assert record.exc_info is not None
    text = "".join(traceback.format_exception(*record.exc_info))
    assert 'raise ZeroDivisionError(f"bad data {eventobj.get_data()}")' in text
    assert "ZeroDivisionError: bad data 7" in text


def test_a_failing_consumer_does_not_stop_the_others(make_compat: Callable[..., eventbus]) -> None:
    """After one consumer raised, the others still get the event, and the bus goes on."""

    class Fragile(subscriber):
        def process(self, eventobj: event) -> None:
            raise ValueError

    ebus = make_compat(synchronus=True)
    good = Collector()
    ebus.register_consumer(Fragile(), "t")
    ebus.register_consumer(good, "t")
    logging.getLogger("eventbus").disabled = True
    try:
        ebus.post(event("t", 1))
        ebus.post(event("t", 2))
    finally:
        logging.getLogger("eventbus").disabled = False
    assert good.data() == [1, 2]


# -- delivery: threads, thread safety, order --------------------------------------------------


def test_synchronus_delivers_on_the_posting_thread(make_compat: Callable[..., eventbus]) -> None:
    """``synchronus=True`` runs process() on the poster's thread before post() returns."""
    threads: list[int] = []
    ebus = make_compat(synchronus=True)
    ebus.register_consumer(Collector(hook=lambda _: threads.append(threading.get_ident())), "t")
    ebus.post(event("t", 1))
    assert threads == [threading.get_ident()]
    assert "SyncDelivery" in repr(ebus)


def test_default_is_concurrent_with_eight_workers(make_compat: Callable[..., eventbus]) -> None:
    """``eventbus()`` delivers on worker threads, up to 8 of them at once for a thread-safe consumer."""
    barrier = threading.Barrier(8)
    passed: list[int] = []
    ebus = make_compat()
    ebus.register_consumer(Collector(hook=lambda e: passed.append(barrier.wait(WAIT))), "t")
    for n in range(8):
        ebus.post(event("t", n))
    assert ebus.shutdown()
    assert sorted(passed) == list(range(8))  # all eight met at the barrier: they ran in parallel
    assert "ConcurrentDelivery" in repr(ebus)


def test_thread_unsafe_consumers_run_one_event_at_a_time_without_holding_workers(
    make_compat: Callable[..., eventbus],
) -> None:
    """With ``subscribers_thread_safe=False`` a consumer never runs twice at once, even across topics,
    and its waiting events do not occupy the workers (the ancestor parked them on a lock)."""
    lock = threading.Lock()
    inside = [0, 0]  # now, most ever
    first_in = threading.Event()
    gate = threading.Event()

    def hold(eventobj: event) -> None:
        with lock:
            inside[0] += 1
            inside[1] = max(inside)
        if eventobj.get_data() == 0:
            first_in.set()
            gate.wait(WAIT)
        with lock:
            inside[0] -= 1

    ebus = make_compat(executor_count=2, subscribers_thread_safe=False)
    slow = Collector(hook=hold)
    other_got = threading.Event()
    ebus.register_consumer_topics(slow, ["a", "b"])
    ebus.register_consumer(Collector(hook=lambda _: other_got.set()), "other")
    ebus.post(event("a", 0))
    assert first_in.wait(WAIT)
    for n in range(1, 20):
        ebus.post(event("a" if n % 2 else "b", n))
    ebus.post(event("other", "x"))
    assert other_got.wait(WAIT)  # a worker was free while the slow consumer was busy
    gate.set()
    assert ebus.shutdown()
    assert sorted(slow.data()) == list(range(20))  # type: ignore[type-var]  # ints
    assert inside == [0, 1]


def test_ordered_events_keep_their_order_per_key(make_compat: Callable[..., eventbus]) -> None:
    """Events with the same ``ordered`` key are processed in post order; keys run in parallel."""
    ebus = make_compat(executor_count=4)
    consumer = Collector()
    ebus.register_consumer(consumer, "t")
    for n in range(400):
        ebus.post(event("t", n, ordered=f"key{n % 4}"))
    assert ebus.shutdown()
    by_key: dict[object, list[object]] = {}
    for e in consumer.seen:
        by_key.setdefault(e.get_ordered(), []).append(e.get_data())
    assert by_key == {f"key{k}": list(range(k, 400, 4)) for k in range(4)}


# -- the API ------------------------------------------------------------------------------------


def test_event_getters_and_defaults() -> None:
    """An event has the ancestor's getters; ``ordered`` defaults to None and may be any hashable."""
    e = event("topic", {"x": 1})
    assert (e.get_topic(), e.get_data(), e.get_ordered()) == ("topic", {"x": 1}, None)
    assert event("t", None, ordered=("a", 1)).get_ordered() == ("a", 1)
    assert isinstance(e, Message)
    assert e == event("topic", {"x": 1})


def test_subscriber_must_override_process() -> None:
    """The base class's process() says what to do."""
    with pytest.raises(NotImplementedError, match="subscriber must override process"):
        subscriber().process(event("t", 1))


def test_register_and_query_consumers(make_compat: Callable[..., eventbus]) -> None:
    """register_consumer, is_subscribed and get_subscribers agree, in registration order."""
    ebus = make_compat(synchronus=True)
    first, second = Collector(), Collector()
    assert ebus.get_subscribers("a") is None
    assert ebus.register_consumer(first, "a") is True
    assert ebus.register_consumer(first, "a") is True  # again: nothing changes
    assert ebus.register_consumer_topics(second, ["a", "b"]) is True
    assert ebus.get_subscribers("a") == [first, second]
    assert ebus.get_subscribers("b") == [second]
    assert ebus.is_subscribed(first, "a")
    assert not ebus.is_subscribed(first, "b")
    ebus.post(event("a", 1))
    ebus.post(event("b", 2))
    ebus.post(event("c", 3))  # nobody: dropped, as the ancestor did
    assert (first.data(), second.data()) == ([1], [1, 2])
    assert ebus.bus.stats().subscribers == 2


def test_unregister_a_topic_or_everything(make_compat: Callable[..., eventbus]) -> None:
    """unregister_consumer drops one topic, or all of them; False if there was nothing to drop."""
    ebus = make_compat(synchronus=True)
    consumer = Collector()
    ebus.register_consumer_topics(consumer, ["a", "b", "c"])
    assert ebus.unregister_consumer(consumer, "a") is True
    assert ebus.unregister_consumer(consumer, "a") is False
    ebus.post(event("a", 1))
    ebus.post(event("b", 2))
    assert consumer.data() == [2]
    assert ebus.unregister_consumer(consumer) is True  # the ancestor's form: every topic
    assert ebus.unregister_consumer(consumer) is False
    assert ebus.get_subscribers("b") is None
    assert not ebus.bus.has_subscribers(Message)
    ebus.post(event("b", 3))
    assert consumer.data() == [2]


def test_unregistering_the_last_topic_removes_the_consumer(make_compat: Callable[..., eventbus]) -> None:
    """Dropping the last topic one by one unregisters the consumer from the bus."""
    ebus = make_compat(synchronus=True)
    consumer = Collector()
    ebus.register_consumer(consumer, "a")
    assert ebus.unregister_consumer(consumer, "a")
    assert ebus.bus.stats().subscribers == 0
    assert ebus.register_consumer(consumer, "a")  # and it can come back
    ebus.post(event("a", 1))
    assert consumer.data() == [1]


def test_queued_events_of_a_dropped_topic_are_not_delivered(make_compat: Callable[..., eventbus]) -> None:
    """Events already queued for a topic the consumer dropped are not processed."""
    gate = threading.Event()
    started = threading.Event()

    def hold(eventobj: event) -> None:
        if eventobj.get_data() == 0:
            started.set()
            gate.wait(WAIT)

    ebus = make_compat(executor_count=2, subscribers_thread_safe=False)
    consumer = Collector(hook=hold)
    ebus.register_consumer_topics(consumer, ["a", "b"])
    ebus.post(event("b", 0))
    assert started.wait(WAIT)
    for n in range(1, 6):
        ebus.post(event("a", n))
    ebus.post(event("b", 6))
    ebus.unregister_consumer(consumer, "a")
    gate.set()
    assert ebus.shutdown()
    assert consumer.data() == [0, 6]


def test_a_consumer_may_change_its_topics_from_process(make_compat: Callable[..., eventbus]) -> None:
    """process() may register and unregister, even on a thread-unsafe bus, without deadlock."""
    ebus = make_compat(executor_count=2, subscribers_thread_safe=False)
    done = threading.Event()

    class Hopper(subscriber):
        def __init__(self) -> None:
            self.seen: list[str] = []

        def process(self, eventobj: event) -> None:
            self.seen.append(eventobj.get_topic())
            if eventobj.get_topic() == "first":
                ebus.register_consumer(self, "second")
                ebus.unregister_consumer(self, "first")
                ebus.post(event("second", None))
            else:
                ebus.unregister_consumer(self)
                done.set()

    hopper = Hopper()
    ebus.register_consumer(hopper, "first")
    ebus.post(event("first", None))
    assert done.wait(WAIT)
    assert ebus.shutdown()
    assert hopper.seen == ["first", "second"]
    assert ebus.get_subscribers("second") is None


def test_refused_arguments_are_logged_like_the_ancestor(
    make_compat: Callable[..., eventbus], caplog: pytest.LogCaptureFixture
) -> None:
    """A non-subscriber or a non-event is refused with False and an error log; a bad topic raises."""
    ebus = make_compat(synchronus=True)
    with caplog.at_level(logging.ERROR, logger="eventbus"):
        assert ebus.register_consumer(object(), "t") is False  # type: ignore[arg-type]  # the mistake under test
        assert ebus.register_consumer_topics(object(), ["t"]) is False  # type: ignore[arg-type]  # likewise
        assert ebus.post(("t", "a tuple, as in the README's step 3")) is False
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3
    assert all(m.endswith("is not a subscriber; it was not registered") for m in messages[:2])
    assert messages[2].startswith("eventbus.compat: post() takes an event, not ('t', ")
    with pytest.raises(TypeError, match="a topic is a string"):
        ebus.register_consumer(Collector(), 42)  # type: ignore[arg-type]  # the mistake under test


def test_post_after_shutdown_returns_false(make_compat: Callable[..., eventbus]) -> None:
    """After shutdown(), post() returns False, as the ancestor's did; shutdown is idempotent."""
    ebus = make_compat()
    assert ebus.shutdown()
    assert ebus.shutdown()
    assert ebus.post(event("t", 1)) is False


def test_options_reach_the_bus(make_compat: Callable[..., eventbus]) -> None:
    """executor_count and max_queued_event configure the bus underneath; bad values are refused."""
    ebus = make_compat(max_queued_event=50, executor_count=3)
    strategy = ebus.bus._strategy
    assert (getattr(strategy, "workers", None), getattr(strategy, "max_queued", None)) == (3, 50)
    with pytest.raises(ValueError, match="workers must be a positive int"):
        eventbus(executor_count=0)
    assert (ebus.synchronus, ebus.subscribers_thread_safe) == (False, True)


def test_native_and_compat_code_share_the_bus(make_compat: Callable[..., eventbus]) -> None:
    """Native handlers receive compat events by topic; native Messages reach compat consumers as events."""
    ebus = make_compat(synchronus=True)
    native: list[object] = []

    @subscribe("orders")
    def on_order(message: Message) -> None:
        native.append(message)

    ebus.bus.register(on_order)
    consumer = Collector()
    ebus.register_consumer(consumer, "orders")
    ebus.post(event("orders", 1))
    ebus.bus.post("orders", 2)
    assert native == [event("orders", 1), Message("orders", 2)]
    assert [type(e) for e in consumer.seen] == [event, event]
    assert consumer.data() == [1, 2]


def test_consumer_handlers_are_named_after_the_consumer(make_compat: Callable[..., eventbus]) -> None:
    """The bus lists a consumer as ``<its class>.process``."""
    ebus = make_compat(synchronus=True)
    ebus.register_consumer(Collector(), "t")
    assert [s.name for s in ebus.bus.subscribers(Message)] == ["Collector.process"]
    assert isinstance(ebus.bus, EventBus)


def test_public_names() -> None:
    """eventbus.compat exports the ancestor's three names."""
    import eventbus.compat as compat

    assert compat.__all__ == ["event", "eventbus", "subscriber"]


def test_module_docstring_example_runs() -> None:
    """The example at the top of eventbus.compat runs as written."""
    import eventbus.compat as compat

    assert compat.__doc__ is not None
    example = textwrap.dedent(compat.__doc__.split("::\n", 1)[1].split("\nHow it maps")[0])
    result = run_python("-c", example)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "greetings hello\n"
