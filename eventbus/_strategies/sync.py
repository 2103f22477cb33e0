"""Delivery strategies: on which thread, and in which order, handlers run.

A strategy receives events that the bus has already resolved (the event, its
handler tuple and an optional `Delivery` handle) and runs the handlers through
the bus's `Dispatcher`, which applies the error policy and counts. The bus knows
a strategy only through the `DeliveryStrategy` protocol and the optional
capabilities it asks for by name (``fast_post``, ``after_fork_in_child``, and the
asyncio strategy's ``loop`` and ``wait_for_room``), so a new strategy plugs in
without touching the bus: implement the protocol and pass an instance as
``EventBus(strategy=...)``.

This module holds the protocol and `SyncDelivery`; the thread-pool strategies
live in ``_threaded``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, final

from .._compiled import compiled
from .._context import in_handler, nested
from .._dispatch import GIL_DISABLED, ThreadState
from .._errors import BusClosedError

if TYPE_CHECKING:
    from .._context import Pending
    from .._delivery import Delivery
    from .._dispatch import Dispatcher
    from .._registry import Registry, Subscriber, Subscription

__all__ = ["SyncDelivery"]


_Item = tuple[object, tuple["Subscription", ...], "Delivery | None", "Pending | None"]


_CLOSED: Final = ThreadState()
"""Put in `SyncDelivery._first_poster` by ``shutdown()``: no thread's state, so every post takes the checking path."""


@final
class SyncDelivery:
    """Deliver on the posting thread, before ``post`` returns.

    A post made from inside a handler on the same thread is queued and delivered
    after the current event has reached all its handlers (Guava's per-thread
    queue, breadth-first). So each thread's events reach every handler in post
    order, and no handler is re-entered by its own event.

    ``thread_safe=False`` handlers of one subscriber never run at the same time on
    two posting threads: once a second thread posts, a per-subscriber lock
    serialises them (while only one thread has ever posted, no lock is taken at
    all). Delivery never takes one subscriber's lock while holding another's,
    because nested posts are queued, not delivered inline; and ``unregister``
    called from inside a handler does not wait for other threads. A handler that
    blocks waiting for another posting thread's handler of the same subscriber
    would still deadlock, as it would with any lock.

    Every thread announces the handler it is about to call (`ThreadState.calling`)
    before it looks at anything that decides how to call it, so ``unregister``
    can wait for a running call of its subscriber on another thread, whether that
    handler is ``thread_safe`` or not, and the first thread's lock-free calls hand
    over to locked ones handler by handler when a second thread starts posting.

    A `KeyboardInterrupt` or `SystemExit` from a handler (or from ``on_error``)
    propagates to the caller of ``post``; the rest of that event's handlers are
    skipped (a published event's `Delivery` settles them as not called), and
    events that the thread had queued meanwhile are delivered, in order, by the
    next ``post`` on any thread or by ``join``.
    """

    __slots__ = ("_closed", "_dispatcher", "_enter_lock", "_first_poster", "_local", "_locking", "_orphans", "_state")

    takes_traces: Final = True
    """`submit` takes each event's trace (#14) and marks the event as current while its handlers run."""

    def __init__(self) -> None:
        self._dispatcher: Dispatcher | None = None
        self._first_poster: ThreadState | None = None  # the first thread that posted (_CLOSED after shutdown)
        # Set once a second thread posts: from then on, lock. Free-threaded CPython
        # gives no ordering between one thread's announcement and another's check,
        # so there every call takes the subscriber's lock from the start.
        self._locking = GIL_DISABLED
        self._closed = False
        self._enter_lock = threading.Lock()
        self._orphans: deque[_Item] = deque()  # replaced by the dispatcher's in start()

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher."""
        if self._dispatcher is not None:
            raise RuntimeError("this SyncDelivery already serves a bus; give each bus its own strategy")
        self._dispatcher = dispatcher
        self._state = dispatcher.state
        self._local = dispatcher.local
        # Events that an interrupted delivery or an ended thread left behind; the
        # dispatcher adds those of ended threads here itself.
        self._orphans = dispatcher.retired.queue

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
        trace: Pending | None = None,
    ) -> None:
        """Deliver now, or queue behind the event this thread is delivering."""
        if trace is None and delivery is not None:
            trace = delivery._trace  # a published event handed over without its trace (a bridge's)
        if self._closed:
            raise BusClosedError("the bus was shut down before this event was accepted; it was not delivered")
        try:
            state: ThreadState = self._local.state
        except AttributeError:
            state = self._state()
        if trace is None and delivery is None and in_handler(state.trace):  # posted by a handler, not via _accept
            trace = nested(state.trace, self._dispatcher.name)  # type: ignore[union-attr]  # started
        queue = state.queue
        if state.dispatching:
            # Accepted point: the count, then the append, with no call between them.
            state.posted += 1
            queue.append((event, handlers, delivery, trace))
            return
        if state is not self._first_poster and not self._locking:
            self._enter(state)
        try:
            if self._orphans:  # events stranded by an interrupted delivery were posted first
                self._adopt_orphans(queue)
            # Accepted point: an interrupt from here on finds the event queued, and the
            # except below hands it to the orphans; nothing is taken back.
            state.posted += 1
            state.dispatching = True
            queue.append((event, handlers, delivery, trace))
            self._drain(state)
        except BaseException:
            self._strand(state)
            raise
        finally:
            state.dispatching = False
            state.calling = None

    def _drain(self, state: ThreadState) -> None:
        """Deliver this thread's queue in order, until it is empty (the thread is dispatching).

        Each event is marked as the one being handled on this thread (its trace, or
        the event itself when it has none yet) while its handlers run (#14).
        """
        queue = state.queue
        tracked: Delivery | None = None
        here = state.trace
        before = here.current  # another bus's event, when a handler of it posted here
        try:
            while True:
                if not queue:
                    break
                # Take the event off the queue with no call in between: an interrupt
                # lands either before (the event stays queued) or during its delivery.
                event, handlers, tracked, trace = queue[0]
                del queue[0]
                here.current = self._dispatcher if trace is None else trace
                if tracked is None:
                    self._deliver(state, event, handlers)
                else:  # published: every call goes through the dispatcher, to settle it
                    for index, sub in enumerate(handlers):
                        state.calling = sub
                        self._call(state, sub, event, tracked, index)
                    tracked = None
                    state.calling = None
                state.done += 1
        except BaseException:
            if tracked is not None:  # the handlers not called yet will not be called
                tracked._settle_rest()
            raise
        finally:
            here.current = before

    def _deliver(self, state: ThreadState, event: object, handlers: tuple[Subscription, ...]) -> None:
        """The call loop: deliver an unpublished *event* to *handlers* on this thread.

        A handler that may be called as it is (active, unfiltered, and either
        thread-safe or on the only thread that has posted) is called inline; any
        other goes through `_call`, and every failure through `Dispatcher.fail`.
        """
        delivered = 0
        try:
            for sub in handlers:
                state.calling = sub  # announce, then decide: see the class docstring
                if (sub.direct and not self._locking) or sub.direct_parallel:
                    try:
                        sub.func(sub.target, event)
                    except BaseException as exc:
                        self._dispatcher.fail(state, exc, sub, event, reraise=True)  # type: ignore[union-attr]
                    else:
                        delivered += 1
                else:
                    self._call(state, sub, event, None, 0)
            state.calling = None
        finally:
            state.delivered += delivered

    def _strand(self, state: ThreadState) -> None:
        # A KeyboardInterrupt or SystemExit is leaving for the poster. Events this
        # thread queued meanwhile were accepted: hand them to the next post on any
        # thread, or to join(), rather than strand them on a thread that may end.
        # Each event moves with no call between taking and putting it, so a second
        # interrupt leaves it in one place or the other, never in both or neither
        # (what stays here is delivered by this thread's next post or join, or is
        # handed over by the dispatcher when the thread ends).
        queue, orphans = state.queue, self._orphans
        while queue:
            item = queue[0]
            del queue[0]
            orphans.append(item)

    def _adopt_orphans(self, queue: deque[_Item]) -> None:
        orphans = self._orphans
        with self._enter_lock:  # one adopter at a time keeps the orphans in order
            while True:
                if not orphans:
                    break
                item = orphans[0]
                del orphans[0]
                queue.append(item)

    def fast_post(self, registry: Registry, slow: Callable[..., None], missing: object) -> Callable[..., None]:
        """Build a ``post`` function that delivers the common case in a single frame.

        The common case: an event whose class the registry has already resolved
        to handlers, posted from the only thread that has posted so far, not
        from inside a handler, with nothing left over from an interrupted
        delivery. Everything else goes to *slow* (the bus's general path, which
        ends in `submit`), and so does every post after ``shutdown()``. The bus
        installs the result as its ``post``. On free-threaded CPython this is
        *slow* itself.

        Args:
            registry: The bus's registry; its dispatch cache is read on every call.
            slow: The bus's general ``post(event, data, /, *, timeout)``.
            missing: The bus's "no data given" sentinel.
        """
        if GIL_DISABLED:
            return slow
        strategy = self
        local = self._local
        orphans = self._orphans
        dispatcher = self._dispatcher
        assert dispatcher is not None
        fail = dispatcher.fail
        # Compiled, a native method call is cheap and a closure's variables are not: the
        # compiled build calls `_deliver`, the pure one inlines its success path.
        call_loop_inline = not compiled

        def post(event: object, data: object = missing, /, *, timeout: float | None = None) -> None:
            handlers = registry.dispatch.get(type(event))  # type: ignore[call-overload]  # classes hash
            if not handlers or data is not missing:
                return slow(event, data, timeout=timeout)
            try:
                state: ThreadState = local.state
            except AttributeError:
                return slow(event, data, timeout=timeout)
            here = state.trace
            # A handler of any bus runs on this thread (this bus's too: while it is
            # dispatching, its event is marked current), or asyncio lanes run here: the
            # event may come from a handler, and the checking path finds its trace.
            if state is not strategy._first_poster or here.current is not None or orphans or state.queue:
                return slow(event, data, timeout=timeout)
            delivered = 0
            try:
                # The accepted point: the stores, with no call between them. The bus is
                # marked as handling an event here: its context is made only if read (#14).
                state.posted += 1
                state.dispatching = True
                here.current = dispatcher  # this bus's event, with no trace: made if read
                if call_loop_inline:
                    # The success path of `_deliver`, inline (a call costs a fifth of a pure
                    # Python post); everything else goes through the same functions as there.
                    for sub in handlers:
                        state.calling = sub
                        if (sub.direct and not strategy._locking) or sub.direct_parallel:
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                fail(state, exc, sub, event, reraise=True)
                            else:
                                delivered += 1
                        else:
                            strategy._call(state, sub, event, None, 0)
                else:
                    strategy._deliver(state, event, handlers)
                # Not counted in `done`: a join() waiting for this thread sees it stop
                # dispatching, or counts one event more of a chain (never one fewer).
                if state.queue:  # posts made by the handlers, breadth-first
                    strategy._drain(state)
            except BaseException:
                strategy._strand(state)
                raise
            finally:
                state.dispatching = False
                state.calling = None
                state.delivered += delivered
                here.current = None
            return None

        return post

    def _enter(self, state: ThreadState) -> None:
        with self._enter_lock:
            if self._first_poster is None:
                self._first_poster = state
            elif self._first_poster is not state:
                self._locking = True

    def _call(
        self, state: ThreadState, sub: Subscription, event: object, delivery: Delivery | None, index: int
    ) -> None:
        # The caller has announced *sub* in state.calling.
        dispatcher = self._dispatcher
        assert dispatcher is not None
        owner = sub.owner
        if GIL_DISABLED:  # no lock-free handshakes: every call under the subscriber's lock
            with owner.lock:
                dispatcher.call(sub, event, delivery, index, state, reraise=True)
            return
        if sub.binding.thread_safe or (state is self._first_poster and not self._locking):
            dispatcher.call(sub, event, delivery, index, state, reraise=True)
            return
        self._wait_for_first_poster(state, owner)  # before the lock: the first thread may need it
        with owner.lock:
            dispatcher.call(sub, event, delivery, index, state, reraise=True)

    def _wait_for_first_poster(self, state: ThreadState, owner: Subscriber) -> None:
        # Just after a second thread first posts, the first one may still be inside a
        # lock-free call of this subscriber's; wait for that call (not for the rest of
        # its event: a later handler of it may be waiting for this very thread).
        # Called without holding owner's lock: that call may need the lock itself.
        first = self._first_poster
        if first is None or first is state:
            return
        delay = 0.0001
        while (calling := first.calling) is not None and calling.owner is owner:
            time.sleep(delay)
            delay = min(delay * 2, 0.005)

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no other thread is inside one of the subscriber's handlers.

        Called from inside a handler it does not wait: two handlers unregistering
        each other's subscribers on two threads would otherwise wait for each other.
        The subscriber's subscriptions are already inactive, and every thread
        announces a handler before it checks that: so once no other thread
        announces one of this subscriber's handlers, none can start one any more.
        """
        dispatcher = self._dispatcher
        assert dispatcher is not None
        state = self._state()
        if state.dispatching:
            return
        if GIL_DISABLED:
            with subscriber.lock:  # every call is made under it there
                return
        delay = 0.0001
        while any(
            s is not state and (calling := s.calling) is not None and calling.owner is subscriber
            for s in dispatcher.states()
        ):
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def join(self, timeout: float | None) -> bool:
        """Deliver stranded events on this thread, then wait for the deliveries in progress.

        Waits only for what was accepted before the call: a delivery that another
        thread starts later (a producer that keeps posting) is not waited for.
        """
        dispatcher = self._dispatcher
        assert dispatcher is not None, "start() was not called"
        mine = dispatcher.state()
        if mine.dispatching:
            raise RuntimeError(
                "join() was called from a handler on the same bus; the events it posted wait until the handler "
                "returns, so join() would wait for itself.\n"
                "Use publish() and a done-callback, or join from outside the bus."
            )
        deadline = None if timeout is None else time.monotonic() + timeout
        # For each other thread in a delivery now: how many events it will have
        # finished once the one in progress and those queued behind it are done.
        # (`done` is read first: an event finishing between the reads makes us wait
        # for one event more, never return early.)
        busy = []
        for state in dispatcher.states():
            done = state.done
            if state is not mine and state.dispatching:
                busy.append((state, done + 1 + len(state.queue)))
        delay = 0.0001
        while True:
            if self._orphans or mine.queue:
                self._deliver_orphans(mine)
            busy = [(state, target) for state, target in busy if state.dispatching and state.done < target]
            if not busy and not self._orphans:
                return True
            # Other threads deliver on their own stacks; all we can do is watch them finish.
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def _deliver_orphans(self, mine: ThreadState) -> None:
        try:
            mine.dispatching = True
            self._adopt_orphans(mine.queue)
            self._drain(mine)
        except BaseException:
            self._strand(mine)
            raise
        finally:
            mine.dispatching = False
            mine.calling = None

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Refuse further events (a saved ``bus.post`` included), then optionally join.

        Called from a handler it cannot wait for the delivery it is part of: it
        refuses further events and returns `False`.
        """
        self._closed = True
        self._first_poster = _CLOSED
        if wait and not self._state().dispatching:
            return self.join(timeout)
        return self.counts() == (0, 0)

    def after_fork_in_child(self) -> None:
        """In a forked child: the parent's other threads and their events are gone."""
        self._enter_lock = threading.Lock()
        self._orphans.clear()  # accepted by the parent: the parent's to deliver
        if self._closed:
            return
        mine: ThreadState | None = getattr(self._local, "state", None)
        if self._first_poster is not mine:
            self._first_poster = None
        self._locking = GIL_DISABLED

    def counts(self) -> tuple[int, int]:
        """Return (events queued on any thread, threads in the middle of a delivery)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return 0, 0
        states = dispatcher.states()
        queued = len(self._orphans) + sum(len(s.queue) for s in states)
        return queued, sum(1 for s in states if s.dispatching)
