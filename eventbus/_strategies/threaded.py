"""The thread-pool strategies: `ConcurrentDelivery` and `OrderedDelivery`.

Both run handlers on a pool of daemon worker threads fed by one run queue; they
differ only in which events must keep their order:

- `ConcurrentDelivery` keeps per-key order for events that carry an ordering key
  (``order_by=`` on typed events, ``ordered=`` on `Message`) and runs the others
  in parallel;
- `OrderedDelivery` also keys the events without one, by their topic (or class),
  so every topic is a stream handled one event at a time.

How the parts fit: *key lines* keep the events of one ordering key in order, and
*subscriber lines* keep a busy ``thread_safe=False`` subscriber from holding a
worker (both in `_pool_queues`, with the run queue that feeds the workers).

*Backpressure.* At most ``max_queued`` accepted events wait to start. ``post``
blocks while that many wait, or raises `QueueFullError` when its ``timeout=``
runs out. A post made from a worker thread of the same bus is never blocked (it
may exceed ``max_queued``): a handler that waited for room would wait for the
very workers it occupies, and a bus whose handlers all post could deadlock.

*Lifetime.* Workers are daemon threads, so a process that never calls
``shutdown()`` still exits. At interpreter exit, every bus with undelivered
events (never shut down, or shut down with ``wait=False``) is drained for as
long as its workers make progress; only when no event has finished for
`EXIT_STALL_SECONDS` (a handler that hangs) does the interpreter exit without
the rest. ``shutdown()`` stops intake, lets the workers deliver everything
accepted, then stops them. A bus that is garbage-collected without
``shutdown()`` is shut down with ``wait=False`` by its finalizer: its workers
deliver what it accepted and then end, as `concurrent.futures` workers do; no
worker holds the bus (a worker holds this strategy, which holds the dispatcher,
which holds the bus weakly), and idle workers hold no event.

*Faults.* A ``KeyboardInterrupt`` on the posting thread leaves an event accepted
whole or not at all (see `_ThreadPoolDelivery`, "Accepted points"); nothing
blocked waits on a `threading.Condition` (see `Gates`), and every wait is
bounded, so a wake-up that an interrupt cut off costs latency, never a hang. In
a forked child the pool starts over with fresh locks, queues and workers
(`_ThreadPoolDelivery.after_fork_in_child`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Final, cast

from .._checks import check_positive_int
from .._context import in_handler, trace_of
from .._delivery import Delivery, carrier
from .._dispatch import GIL_DISABLED
from .._errors import BusClosedError
from .._events import ordering_key_of, topic_of
from ._pool_exit import EXIT_STALL_SECONDS, open_pools
from ._pool_queues import _IDLE, _STOP, _escaped, _internal_error, _KeyedWork, _Line, _Parked, _RunQueue, _Unit
from .backpressure import Gates, queue_full_error

if TYPE_CHECKING:
    from .._context import Pending
    from .._dispatch import Dispatcher, ThreadState
    from .._registry import Subscriber, Subscription

__all__ = ["EXIT_STALL_SECONDS", "ConcurrentDelivery", "OrderedDelivery"]

_WAIT_SLICE: Final = 0.1
# The longest a blocked caller (join, shutdown, unregister, a post waiting for room)
# sleeps on a condition before it looks again: workers notify, but a notification
# can be missed (see IDLE_WAKE_SECONDS), and then it costs this much, never a hang.

_LOCK_FREE: Final = not GIL_DISABLED
# Without the GIL, posts and subscriber-line hand-overs take the pool's lock
# (see submit, _park, _let_go and docs/design.md, "Without the GIL").

_CLOSED: Final = "the bus was shut down before this event was accepted; it was not delivered"


class _ThreadPoolDelivery:
    """The machinery shared by `ConcurrentDelivery` and `OrderedDelivery`.

    The hot path takes no lock of ours: a post appends to a `_RunQueue` and a
    worker takes from it, and the counters that `join` and ``stats()`` need are
    per thread (`ThreadState` ``submitted``/``finished``, and their ``_odd``
    twins), each written only by its own thread and summed by
    `Dispatcher.sums`. Work is counted in *units*: an accepted event is one unit
    until a worker's pass over its handlers ends, and a call parked in a
    subscriber's line is one more unit until it returns (the last handler's
    parked call takes over the pass's unit). Subscriber lines take no lock either
    (see `_Line`); ``_lock`` guards the rarer structures: key lines, the creation
    of a line, the join phases and the conditions that blocked callers wait on.

    *Accepted points.* A post changes nothing that another thread can see until
    one call-free run of bytecode: read the join phase, check ``_closed``, count
    the unit, and one C-level commit (``deque.append`` of the job to the run
    queue or to its key line). CPython runs signal handlers, and switches
    threads, only at calls, function starts and loop back-edges, so a
    ``KeyboardInterrupt`` lands either before that run (nothing accepted,
    nothing to undo) or after it (the event is accepted whole). Waking a
    sleeping worker comes after the commit; if an interrupt skips it, the worker
    wakes by itself within `IDLE_WAKE_SECONDS`. Everything else (subscriber
    lines, key-line successors, the finish bookkeeping) happens on worker
    threads, which receive no signals.

    *join phases.* Units are counted in one of two phases, 0 and 1 (even and odd
    join epochs). A post counts its event in the current phase, and the event's
    parked calls and its key-line successor stay in that phase. ``join()`` flips
    the phase (once the other phase has drained: then every event accepted
    before the call is in the phase being left) and waits until the phase it
    left has drained, so a producer that keeps posting only fills the new phase.

    ``max_queued`` bounds the units waiting to start: the events in the run
    queue (not the subscriber lines there), ``_held`` (events waiting in key
    lines) and the calls parked in subscriber lines, counted by ``_parked``.
    ``_parked`` and ``_queued_lines`` are deques used as counters (``append``,
    ``pop`` and ``len`` are atomic, so the lines need no lock). A worker appends
    a ``_parked`` token before it appends its call, and pops one just before the
    call starts, so the count never runs low. With one posting thread the bound
    is exact; posts racing on several threads may each pass the check at once,
    so it can be exceeded by at most one event per concurrent poster.
    """

    _key_of: Callable[[object], Hashable | None]
    takes_traces: Final = True  # submit(..., trace): a traced event rides in a carrier Delivery (#14)

    def __init__(self, *, workers: int = 8, max_queued: int = 10_000) -> None:
        check_positive_int("workers", workers)
        check_positive_int("max_queued", max_queued)
        self.workers = workers
        """The number of worker threads."""
        self.max_queued = max_queued
        """How many accepted events may wait to start before ``post`` blocks."""
        self._dispatcher: Dispatcher | None = None
        self._closed = False
        self._stopped = False  # closed and idle: the workers have been told to end
        self._fresh_state()

    def _fresh_state(self) -> None:
        # Everything that threads share besides the counters: made at start, and
        # again in a forked child (never reuse a lock another parent thread may hold).
        self._runq = _RunQueue()
        self._runq.stopped = self._stopped
        self._items = self._runq._items  # its deque, for the posts' inline append and len()
        self._sleepers = self._runq._sleepers  # its sleeping workers, for the posts' inline wake-up
        # Reentrant: a bus collected by the garbage collector on a worker runs its
        # finalizer (shutdown) wherever that worker is, perhaps inside this lock. And
        # its owner check turns a release by the wrong thread into an error instead
        # of a silent release of someone else's hold. Nobody waits while holding it
        # (see Gates: Condition.wait is not safe from Ctrl-C).
        self._lock = threading.RLock()
        self._room = Gates()  # posts waiting for max_queued to let them in
        self._settled = Gates()  # join()/shutdown() waiting for units to finish
        self._forgotten = Gates()  # unregister() waiting for running calls to end
        self._room_waiters = self._room.gates  # non-empty while a post waits for room
        self._joiners = self._settled.gates  # non-empty while join()/shutdown() waits
        self._forgetting = self._forgotten.gates  # non-empty while unregister() waits
        self._held = 0  # events waiting in key lines (under _lock)
        self._parked: deque[None] = deque()  # one token per call parked in a subscriber line
        self._queued_lines: deque[None] = deque()  # one token per subscriber line in the run queue
        self._keys: dict[Hashable, deque[_Unit]] = {}  # key -> jobs waiting behind the active one
        self._epoch = 0  # join epochs so far (under _lock)
        self._phase = 0  # the phase new units count in: _epoch & 1
        self._lines = object()  # this generation of subscriber lines (see _Line.pool)
        self._threads: list[threading.Thread] = []
        self._worker_ids: dict[int, int] = {}  # thread ident -> worker index
        self._calling: list[Subscriber | None] = [None] * self.workers  # worker index -> subscriber in a call
        # Without the GIL, a worker publishes its _calling slot under its own lock and
        # unregister() reads the slots under the same locks (see _announce and forget).
        self._slot_locks = [threading.Lock() for _ in range(self.workers)]

    # -- protocol ----------------------------------------------------------------------

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher and start the worker threads."""
        if self._dispatcher is not None:
            raise RuntimeError(f"this {type(self).__name__} already serves a bus; give each bus its own strategy")
        self._dispatcher = dispatcher
        self._local = dispatcher.local
        self._name = str(getattr(dispatcher.bus, "name", "eventbus"))  # a string: no worker holds the bus
        self._start_workers()
        open_pools.add(self)

    def _start_workers(self) -> None:
        # The thread's target is this strategy, never the bus (see docs/design.md, "Garbage").
        for index in range(self.workers):
            thread = threading.Thread(
                target=self._work, args=(index,), name=f"{self._name}-worker-{index}", daemon=True
            )
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def after_fork_in_child(self) -> None:
        """Make the pool usable in a forked child: fresh locks, queues, lines and workers.

        What the parent accepted stays the parent's: its queued events, key lines
        and parked calls are dropped here, and their units are counted as finished
        (in `Dispatcher.retired`) so that ``join()`` and ``shutdown()`` in the child
        return at once. A closed pool stays closed, and is stopped.
        """
        dispatcher = self._dispatcher
        self._fresh_state()
        if dispatcher is None:
            return
        self._local = dispatcher.local
        state = getattr(dispatcher.local, "state", None)
        if state is not None:  # the forking thread is the child's main thread: signals land there now
            state.signal_thread = True
        finished, finished_odd, submitted, submitted_odd = dispatcher.sums(
            "finished", "finished_odd", "submitted", "submitted_odd"
        )
        retired = dispatcher.retired
        retired.finished += submitted - finished
        retired.finished_odd += submitted_odd - finished_odd
        if self._closed:
            self._stopped = self._runq.stopped = True
            open_pools.discard(self)
        else:
            self._start_workers()

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None = None,
    ) -> None:
        """Queue *event* for the workers, waiting for room if ``max_queued`` units wait.

        Raises:
            BusClosedError: The pool was shut down; nothing was accepted.
            QueueFullError: No room within *timeout*; nothing was accepted.
        """
        key = self._key_of(event)
        try:
            state: ThreadState = self._local.state
        except AttributeError:
            assert self._dispatcher is not None, "start() was not called"
            state = self._dispatcher.state()
        if delivery is None and (trace is not None or in_handler(state.trace)):  # it travels with its trace (#14)
            delivery = carrier(event, len(handlers), trace, state.trace, self._dispatcher.name)  # type: ignore[union-attr]
        if self._closed:
            raise BusClosedError(_CLOSED)
        # The room check (_waiting(), inlined) takes no lock: it reads counters that only
        # posts raise, so with one posting thread what it sees can only grow roomier.
        if len(self._items) - len(self._queued_lines) + self._held + len(self._parked) >= self.max_queued:
            self._wait_for_room(timeout)  # may raise: nothing was accepted
        if key is not None or not _LOCK_FREE:
            # A keyed event (or any event without the GIL): the key line and the
            # accepted point under the lock.
            keyed = None if key is None else _KeyedWork(key)
            with self._lock:
                ahead = None if key is None else self._keys.get(key)  # may run the key's __hash__
                new: deque[_Unit] | None = deque() if key is not None and ahead is None else None
                phase = self._phase
                keyed_job: _Unit = (event, handlers, delivery, keyed, phase)
                if self._closed:
                    raise BusClosedError(_CLOSED)
                if new is not None:
                    # Storing a new key line may run the key's __hash__/__eq__, where an
                    # interrupt can land: then it is not stored and nothing was counted.
                    # Once stored, the rest up to the append is one call-free run.
                    self._keys[key] = new
                # The accepted point: counts and one append, with no call in between.
                if phase:
                    state.submitted_odd += 1
                else:
                    state.submitted += 1
                state.posted += 1
                if ahead is not None:  # wait behind the key's active event
                    self._held += 1
                    ahead.append(keyed_job)
                    return
                self._items.append(keyed_job)
            # Accepted. Wake a sleeping worker; an interrupt that skips this costs latency only.
            if self._sleepers:
                try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                    self._sleepers.pop().release()
                except (IndexError, RuntimeError):
                    pass
            return
        if not state.signal_thread and len(handlers) == 1 and not handlers[0].binding.thread_safe:
            # One thread_safe=False handler, posted from a thread that gets no signals:
            # the call goes straight into its subscriber's line (a mailbox), and only the
            # worker serving that line touches it, instead of one worker parking it for
            # another. Several steps, which no KeyboardInterrupt can separate here.
            sub = handlers[0]
            line = self._line_of(sub.owner)
            phase = self._phase
            call = (sub, event, delivery, 0, None, phase)
            if self._closed:  # shut down while this post waited: a shutdown() now waits for our count
                raise BusClosedError(_CLOSED)
            if phase:
                state.submitted_odd += 1
            else:
                state.submitted += 1
            state.posted += 1
            self._parked.append(None)
            line.calls.append(call)
            if line.claim.acquire(False):
                self._queue_line(line)
            return
        items = self._items
        # The accepted point, lock-free. From here to items.append() there is no call, so no
        # interrupt and (with the GIL) no other thread can come in between: the
        # phase read, the closed check, the counts and the append happen as one.
        phase = self._phase
        job = (event, handlers, delivery, None, phase)
        if self._closed:  # shut down while this post waited: a shutdown() now waits for our count
            raise BusClosedError(_CLOSED)
        if phase:
            state.submitted_odd += 1
        else:
            state.submitted += 1
        state.posted += 1
        items.append(job)
        # Accepted. Wake a sleeping worker; an interrupt that skips this costs latency only.
        if self._sleepers:
            try:  # noqa: SIM105  # suppress() adds two Python calls: slower, and a Ctrl-C can land in them
                self._sleepers.pop().release()
            except (IndexError, RuntimeError):  # no sleeper left / its gate was open already
                pass

    def _queue_line(self, line: _Line) -> None:
        # The caller (a worker) holds line.claim, which passes to the worker that takes the line.
        self._queued_lines.append(None)
        self._runq.put(line)

    def _release_line(self, line: _Line) -> None:
        # The caller (a worker) holds line.claim and is done running: hand the line on
        # if calls wait in it, else let it go and look once more (see _Line).
        while True:
            if line.calls:
                self._queue_line(line)
                return
            if not self._let_go(line):
                return

    def _park(self, line: _Line, call: _Parked) -> None:
        # Leave *call* (already counted) in *line*, and take the line to the run queue
        # if it is idle (see _Line). Without the GIL, the append and the try run under
        # the lock, like _let_go's release and look, so that the two cannot miss each other.
        self._parked.append(None)
        if _LOCK_FREE:
            line.calls.append(call)
            claimed = line.claim.acquire(False)
        else:
            with self._lock:
                line.calls.append(call)
                claimed = line.claim.acquire(False)
        if claimed:
            self._queue_line(line)

    def _let_go(self, line: _Line) -> bool:
        # Release the claim of *line* (held by the caller, a worker), then look once
        # more: True if a call arrived meanwhile and the claim was taken back (see _Line).
        calls, claim = line.calls, line.claim
        if _LOCK_FREE:
            claim.release()
            return bool(calls) and claim.acquire(False)
        with self._lock:
            claim.release()
            return bool(calls) and claim.acquire(False)

    def _line_of(self, owner: Subscriber) -> _Line:
        line = owner.strategy_slot
        if line is None or cast("_Line", line).pool is not self._lines:
            with self._lock:  # two workers may meet the subscriber's first call at once
                line = owner.strategy_slot
                if line is None or cast("_Line", line).pool is not self._lines:  # none yet, or from before a fork
                    line = owner.strategy_slot = _Line(self._lines)
        return cast("_Line", line)

    def _wait_for_room(self, timeout: float | None) -> None:
        # Wait until fewer than max_queued units wait (or raise); nothing is accepted here.
        if threading.get_ident() in self._worker_ids:
            return  # a handler posting into a full bus is let in: waiting could deadlock the pool
        deadline = None if timeout is None else time.monotonic() + timeout
        room = self._room
        while True:
            gate = room.enter()  # before the look: a worker that makes room after it wakes us
            if self._closed:
                room.sleep(gate, 0)
                raise BusClosedError("the bus was shut down while this post waited for room; it was not accepted")
            if self._waiting() < self.max_queued:
                room.sleep(gate, 0)
                return
            remaining = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
            room.sleep(gate, remaining)
            if remaining <= 0:
                raise queue_full_error(self.max_queued, timeout)

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no worker is inside one of *subscriber*'s handlers.

        Called from a handler (on a worker) it does not wait: two handlers
        unregistering each other's subscribers would otherwise wait for each other.
        """
        if threading.get_ident() in self._worker_ids:
            return
        forgotten = self._forgotten
        while True:
            gate = forgotten.enter()  # before the look: a worker leaving the call after it wakes us
            if _LOCK_FREE:
                busy = any(owner is subscriber for owner in self._calling)
            else:
                busy = False
                for index, slot_lock in enumerate(self._slot_locks):
                    with slot_lock:
                        busy = busy or self._calling[index] is subscriber
            forgotten.sleep(gate, _WAIT_SLICE if busy else 0)  # bounded: a missed wake-up costs latency
            if not busy:
                return

    def join(self, timeout: float | None) -> bool:
        """Wait until every event accepted before the call has reached all its handlers.

        Events posted meanwhile (by a producer that keeps posting) are not waited
        for. Returns `False` if *timeout* seconds passed first.

        Raises:
            RuntimeError: Called from a handler running on this bus, which would wait for itself.
        """
        if threading.get_ident() in self._worker_ids:
            raise RuntimeError(
                "join() was called from a handler running on the same bus; it would wait for itself.\n"
                "Use publish() and a done-callback, or join from outside the bus."
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        settled = self._settled
        # Events accepted so far count in the phase of epoch `mine` or, if a join before
        # us has not seen it drain, of the epoch before; every older epoch has drained
        # (a flip into a phase waits until that phase is empty).
        with self._lock:
            mine = self._epoch
        while True:
            gate = settled.enter()  # before the look: a worker finishing a unit after it wakes us
            with self._lock:
                epoch = self._epoch
                if epoch == mine and self._drained((mine + 1) & 1):  # the other phase is empty: flip into it
                    epoch = self._epoch = mine + 1
                    self._phase = epoch & 1
                done = epoch >= mine + 2 or (epoch == mine + 1 and self._drained(mine & 1))
            if done:  # flipping to mine + 2 needed our phase drained, as our own look does
                settled.sleep(gate, 0)
                return True
            if not self._sleep(gate, deadline):
                return False

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Stop intake, let the workers deliver everything accepted, then stop them.

        Called from one of this bus's handlers it cannot wait for the event being
        handled: it stops intake and returns `False` at once, and the workers
        finish the rest.
        """
        with self._lock:
            self._closed = True
            self._stop_if_idle()
        self._room.notify_all()  # posts waiting for room now fail with BusClosedError
        if not wait or threading.get_ident() in self._worker_ids:
            return self._unfinished() == 0
        deadline = None if timeout is None else time.monotonic() + timeout
        done = self._wait_settled(deadline)
        if done:
            for thread in self._threads:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                thread.join(remaining)
        return done

    def _sleep(self, gate: threading.Lock, deadline: float | None) -> bool:
        # One bounded sleep of a join()/shutdown() on *gate*; False once *deadline* has passed.
        remaining = _WAIT_SLICE if deadline is None else deadline - time.monotonic()
        self._settled.sleep(gate, remaining)
        return remaining > 0

    def _drained(self, phase: int) -> bool:
        # Whether every unit counted in *phase* has finished. Finished counts are read
        # before submitted ones: both only grow and a unit is submitted before it
        # finishes, so equality means that when the finished counts were read, every
        # unit submitted in that phase had finished.
        assert self._dispatcher is not None
        if phase:
            finished, submitted = self._dispatcher.sums("finished_odd", "submitted_odd")
        else:
            finished, submitted = self._dispatcher.sums("finished", "submitted")
        return finished == submitted

    def _unfinished(self) -> int:
        # Units accepted and not finished, over both phases (read as in _drained).
        assert self._dispatcher is not None
        finished, finished_odd, submitted, submitted_odd = self._dispatcher.sums(
            "finished", "finished_odd", "submitted", "submitted_odd"
        )
        return submitted + submitted_odd - finished - finished_odd

    def _waiting(self) -> int:
        # Units not yet started: events in the run queue (not the lines there), events in
        # key lines and calls parked in subscriber lines.
        waiting = len(self._items) - len(self._queued_lines) + self._held + len(self._parked)
        return waiting if waiting > 0 else 0

    def _finished_total(self) -> int:
        assert self._dispatcher is not None
        finished, finished_odd = self._dispatcher.sums("finished", "finished_odd")
        return finished + finished_odd

    def _wait_settled(self, deadline: float | None) -> bool:
        # Wait until every unit has finished (shutdown and the exit drain), then stop
        # the workers if the pool is closed. Workers wake us after finishing a unit.
        while True:
            gate = self._settled.enter()  # before the look: a unit finishing after it wakes us
            if not self._unfinished():
                self._settled.sleep(gate, 0)
                with self._lock:
                    self._stop_if_idle()
                return True
            if not self._sleep(gate, deadline):
                return False

    def counts(self) -> tuple[int, int]:
        """Return (units waiting to start, units started and not finished)."""
        waiting = self._waiting()
        unfinished = self._unfinished()
        waiting = min(waiting, unfinished)
        return waiting, unfinished - waiting

    # -- the workers --------------------------------------------------------------------
    #
    # Workers receive no signals (CPython runs signal handlers on the main thread),
    # and every call into user code is wrapped, so the bookkeeping below always
    # completes. Whatever escapes anyway is logged and the worker goes on.

    def _work(self, index: int) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        self._worker_ids[threading.get_ident()] = index
        state = dispatcher.state()
        get = self._runq.get
        calling = self._calling
        lock_free = _LOCK_FREE
        gate = threading.Lock()
        gate.acquire()  # held while this worker runs; released by a put() to wake it
        while True:
            item = get(gate)
            try:
                if self._room_waiters:
                    self._room.notify()
                if type(item) is tuple:
                    event, handlers, delivery, keyed, phase = item
                    if delivery is None and keyed is None and all(sub.direct_parallel for sub in handlers):
                        # The hot path, inline: thread-safe, unfiltered handlers of an
                        # unkeyed, unpublished event (see _call and _finish for the rest).
                        state.trace.current = dispatcher  # an event of this bus: its context is made if read (#14)
                        for sub in handlers:
                            if lock_free:
                                calling[index] = sub.owner  # before the check: see _call
                            else:
                                self._announce(index, sub.owner)
                            if not sub.direct_parallel:  # unregistered since the look above
                                continue
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                self._failed(exc, sub, event, state)
                            else:
                                state.delivered += 1
                        calling[index] = None
                        if phase:
                            state.finished_odd += 1
                        else:
                            state.finished += 1
                        if self._forgetting or self._joiners or self._closed:
                            self._notify_finished()
                    else:
                        job: _Unit | None = item
                        while True:  # a keyed event's successor follows on this worker
                            if job is None:
                                break
                            job = self._run_job(job, index, state)
                elif item is _STOP:
                    return
                elif item is _IDLE:
                    if self._closed and not self._stopped:
                        # A shutdown() cut off by Ctrl-C before it could stop an idle pool.
                        with self._lock:
                            self._stop_if_idle()
                else:
                    self._run_line(cast("_Line", item), index, state)
            except BaseException as exc:  # never let a worker die; this is a bug in eventbus itself
                _internal_error(index, exc)
            # Hold no event, handler or subscriber while asleep (a dropped bus must be collectable).
            item = event = handlers = delivery = sub = job = state.trace.current = None

    def _run_job(self, job: _Unit, index: int, state: ThreadState) -> _Unit | None:
        event, handlers, delivery, keyed, phase = job
        state.trace.current = self._dispatcher  # (#14) a published event's trace: Dispatcher.call marks it
        last = len(handlers) - 1
        for position, sub in enumerate(handlers):
            if sub.binding.thread_safe:
                self._call(sub, event, delivery, position, index, state)
                continue
            line = self._line_of(sub.owner)
            if not line.calls and line.claim.acquire(False):
                # The subscriber is idle: run the call here, then hand on what arrived meanwhile.
                self._call(sub, event, delivery, position, index, state)
                self._release_line(line)
                continue
            # Park the call (with the event's trace: it may run on another thread, #14) for the
            # line's runner, or take the line to the run queue if it was let go meanwhile. The last
            # handler's call takes over the pass's unit (a one-handler event becomes a mailbox
            # entry); any other is one more unit, counted in its event's join phase.
            delivery = delivery or Delivery(event, len(handlers), trace_of(state.trace), carrier=True)
            if position != last:
                if phase:
                    state.submitted_odd += 1
                else:
                    state.submitted += 1
                if keyed is not None:
                    with self._lock:
                        keyed.pending += 1
            self._park(line, (sub, event, delivery, position, keyed, phase))
            if position == last:
                return None
        return self._finish(keyed, phase, state, keep=True)

    def _run_line(self, line: _Line, index: int, state: ThreadState) -> None:
        # This worker took the line from the run queue, and its claim with it: run the
        # parked calls until none is left, then let the line go (see _Line).
        self._queued_lines.pop()
        calls, parked = line.calls, self._parked
        while True:
            try:
                sub, event, delivery, position, keyed, phase = calls.popleft()
            except IndexError:
                if self._let_go(line):
                    continue  # a call arrived just before the release, and its parker missed the claim
                return
            parked.pop()  # the call starts: it no longer waits
            if self._room_waiters:
                self._room.notify()
            state.trace.current = self._dispatcher  # (#14) a parked call carries its event's trace in its delivery
            self._call(sub, event, delivery, position, index, state)
            self._finish(keyed, phase, state)

    def _call(
        self, sub: Subscription, event: object, delivery: Delivery | None, position: int, index: int, state: ThreadState
    ) -> None:
        # Publish which subscriber this worker is in *before* checking sub.active,
        # so that unregister() either sees us here or we see the handler inactive.
        calling = self._calling
        if _LOCK_FREE:
            calling[index] = sub.owner
        else:
            self._announce(index, sub.owner)
        try:
            if delivery is None and sub.direct:
                try:
                    sub.func(sub.target, event)
                except BaseException as exc:
                    self._failed(exc, sub, event, state)
                else:
                    state.delivered += 1
            else:
                assert self._dispatcher is not None
                self._dispatcher.call(sub, event, delivery, position, state, reraise=False)
        except BaseException as exc:  # a done-callback's BaseException, if the core let one out
            _escaped(sub, exc)
        calling[index] = None
        if self._forgetting:
            self._forgotten.notify_all()

    def _announce(self, index: int, owner: Subscriber) -> None:
        # Without the GIL: publish that worker *index* is in *owner*'s handler under the
        # slot's lock, before the caller reads the handler's active flag. unregister()
        # clears that flag, then reads the slots under the same locks: either it sees
        # this worker here, or this worker then sees the flag cleared (lock release and
        # acquire order the two; plain stores and loads would not).
        with self._slot_locks[index]:
            self._calling[index] = owner

    def _failed(self, exc: BaseException, sub: Subscription, event: object, state: ThreadState) -> None:
        # A handler called inline raised: count and report it (Dispatcher.fail never
        # raises with reraise=False; if it did, the worker would still go on).
        try:
            assert self._dispatcher is not None
            self._dispatcher.fail(state, exc, sub, event, reraise=False)
        except BaseException as escaped:
            _escaped(sub, escaped)

    def _finish(self, keyed: _KeyedWork | None, phase: int, state: ThreadState, *, keep: bool = False) -> _Unit | None:
        # One unit is done: release its key when its event is complete, then count it.
        # The key's next event goes to the run queue, or with *keep* back to the caller,
        # a worker that then runs it at once instead of handing it to another thread.
        following: _Unit | None = None
        try:
            if keyed is not None:
                with self._lock:
                    keyed.pending -= 1
                    if not keyed.pending:
                        line = self._keys[keyed.key]
                        if line:
                            following = line.popleft()
                            self._held -= 1
                            if not keep:
                                self._runq.put(following)
                                following = None
                            elif self._room_waiters:  # it starts now: one waiting unit fewer
                                self._room.notify()
                        else:
                            del self._keys[keyed.key]
        finally:
            # Counted after the key is released: join() must not see the unit done before.
            if phase:
                state.finished_odd += 1
            else:
                state.finished += 1
        if self._joiners or self._closed or self._forgetting:
            self._notify_finished()
        return following

    def _notify_finished(self) -> None:
        self._forgotten.notify_all()
        self._settled.notify_all()
        if self._closed:
            with self._lock:
                self._stop_if_idle()

    def _stop_if_idle(self) -> None:
        # Called with the lock held: once closed and idle, end the workers. An
        # interrupt that skips some wake-ups costs latency: idle workers look at
        # `stopped` again within IDLE_WAKE_SECONDS.
        if self._closed and not self._stopped and self._unfinished() == 0:
            self._stopped = self._runq.stopped = True
            open_pools.discard(self)  # nothing left for the exit drain
            self._runq.wake_all()


class ConcurrentDelivery(_ThreadPoolDelivery):
    """Deliver on ``workers`` threads; keep order only among events with an ordering key.

    Guarantees:

    - events without an ordering key may be handled in parallel and in any order;
    - events with the same ordering key are handled one at a time, in the order
      they were accepted (each reaches all its handlers before the next starts);
    - the handlers of one event are started in priority order, except that a call
      to a ``thread_safe=False`` subscriber that is busy elsewhere waits in that
      subscriber's line while the worker goes on with the lower-priority handlers;
    - a ``thread_safe=False`` handler never runs twice at once for one subscriber
      object (all such handlers of the object share one waiting line), and waiting
      for it never parks a worker; ``thread_safe=True`` handlers run in parallel.

    Args:
        workers: The number of worker threads.
        max_queued: How many accepted events may wait to start before ``post`` blocks.
    """

    _key_of = staticmethod(ordering_key_of)


def _ordered_key(event: object) -> Hashable:
    key = ordering_key_of(event)
    if key is not None:
        return key
    topic = topic_of(event)
    cls: Hashable = cast("Hashable", type(event))
    return topic if topic is not None else cls


class OrderedDelivery(_ThreadPoolDelivery):
    """Deliver on ``workers`` threads, one event at a time per ordering key.

    An event's key is its ordering key, or else its topic (or, for plain
    objects, its class). Events with the same key are handled one at a time in
    the order they were accepted; different keys run in parallel on up to
    ``workers`` threads. No polling: an event posted on an idle bus starts at
    once. ``thread_safe`` means what it means for `ConcurrentDelivery`.

    Args:
        workers: The number of worker threads (parallel lanes).
        max_queued: How many accepted events may wait to start before ``post`` blocks.
    """

    _key_of = staticmethod(_ordered_key)
