"""Delivery strategies: on which thread, and in which order, handlers run.

A strategy receives events that the bus has already accepted and resolved
(the event, its handler tuple and an optional `Delivery` handle) and runs the
handlers through the bus's `Dispatcher`, which applies the error policy and
counts. The bus never looks inside a strategy, so new strategies plug in
without touching it: implement `DeliveryStrategy` and pass an instance as
``EventBus(strategy=...)``.

This module holds the protocol and `SyncDelivery`; the thread-pool strategies
live in ``_threaded``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, Protocol, TypeGuard, final

if TYPE_CHECKING:
    from ._delivery import Delivery
    from ._dispatch import Dispatcher, ThreadState
    from ._registry import Registry, Subscriber, Subscription

__all__ = ["DeliveryStrategy", "SyncDelivery", "is_strategy"]


class DeliveryStrategy(Protocol):
    """What the bus needs from a delivery strategy.

    The bus calls `start` once, from its constructor; then `submit` for every
    accepted event, from any thread; `forget` from ``unregister``; `join`,
    `shutdown` and `counts` from the methods of the same names. A strategy
    instance belongs to one bus.
    """

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus whose handlers this strategy will call."""

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Deliver *event* to *handlers* (in their order), settling *delivery* if given.

        Once the event is accepted, count it: ``dispatcher.state().posted += 1``
        on the calling thread (the bus counts only the events it drops itself).

        Raises:
            QueueFullError: The strategy has a bounded queue and no room came
                within *timeout* seconds; the event was not accepted.
        """

    def forget(self, subscriber: Subscriber) -> None:
        """*subscriber* was unregistered: drop its queued work, wait for its running calls.

        Its `Subscription`s are already inactive when this is called. Must not wait
        for a call running on the calling thread (a handler that unregisters itself).
        """

    def join(self, timeout: float | None) -> bool:
        """Wait until every submitted event has been handled; `False` on timeout."""

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Finish the submitted events (if *wait*) and release threads; `True` if all were handled."""

    def counts(self) -> tuple[int, int]:
        """Return (events waiting to start, events started but not finished)."""


_STRATEGY_METHODS: Final = ("start", "submit", "forget", "join", "shutdown", "counts")


def is_strategy(obj: object) -> TypeGuard[DeliveryStrategy]:
    """Whether *obj* has every method of `DeliveryStrategy`.

    What ``@runtime_checkable`` would check, which the compiled build cannot offer:
    mypyc compiles this module, and a compiled class is not a runtime protocol.
    """
    return all(callable(getattr(obj, name, None)) for name in _STRATEGY_METHODS)


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

    A `KeyboardInterrupt` or `SystemExit` from a handler propagates to the caller of
    ``post``; the rest of that event's handlers are skipped, and events that the
    thread had queued meanwhile are delivered, in order, by the next ``post`` on
    any thread or by ``join``.
    """

    __slots__ = ("_dispatcher", "_enter_lock", "_local", "_orphans", "_shared", "_solo", "_state")

    def __init__(self) -> None:
        self._dispatcher: Dispatcher | None = None
        self._solo: ThreadState | None = None  # the first thread that posted
        self._shared = False  # set once a second thread posts: from then on, lock
        self._enter_lock = threading.Lock()
        self._orphans: deque[tuple[object, tuple[Subscription, ...], Delivery | None]] = deque()

    def start(self, dispatcher: Dispatcher) -> None:
        """Bind to the bus's dispatcher."""
        if self._dispatcher is not None:
            raise RuntimeError("this SyncDelivery already serves a bus; give each bus its own strategy")
        self._dispatcher = dispatcher
        self._state = dispatcher.state
        self._local = dispatcher.local

    def submit(
        self,
        event: object,
        handlers: tuple[Subscription, ...],
        delivery: Delivery | None,
        timeout: float | None,
    ) -> None:
        """Deliver now, or queue behind the event this thread is delivering."""
        try:
            state: ThreadState = self._local.state
        except AttributeError:
            state = self._state()
        state.posted += 1
        queue = state.queue
        if state.dispatching:
            queue.append((event, handlers, delivery))
            return
        if state is not self._solo and not self._shared:
            self._enter(state)
        if self._orphans:  # events stranded by an interrupted delivery were posted first
            self._adopt_orphans(queue)
        queue.append((event, handlers, delivery))
        state.dispatching = True
        try:
            self._drain(state)
        finally:
            state.dispatching = False

    def _drain(self, state: ThreadState) -> None:
        """Deliver this thread's queue in order, until it is empty (the thread is dispatching)."""
        queue = state.queue
        delivered = 0
        try:
            while queue:
                event, handlers, delivery = queue.popleft()
                if delivery is not None:
                    self._deliver_tracked(state, event, handlers, delivery)
                    continue
                # Kept in step with the loop in fast_post(). Announce the event's
                # handlers before reading _shared, so that a second thread turning
                # _shared on either sees us inside them or finds us taking locks.
                state.bare = handlers
                if self._shared:
                    state.bare = None
                    for sub in handlers:
                        if sub.fast:  # plain and thread-safe: no lock needed
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                self._fail(state, exc, sub, event)
                            else:
                                delivered += 1
                        else:
                            self._call(state, sub, event, None, 0)
                    continue
                # Only this thread has ever posted: plain handlers (active, no filter)
                # are called inline and without locks; anything unusual goes through _call.
                for sub in handlers:
                    if sub.plain:
                        try:
                            sub.func(sub.target, event)
                        except BaseException as exc:
                            self._fail(state, exc, sub, event)
                        else:
                            delivered += 1
                    else:
                        self._call(state, sub, event, None, 0)
                state.bare = None
        except BaseException:
            state.bare = None
            self._strand(queue)
            raise
        finally:
            state.delivered += delivered

    def _strand(self, queue: deque[tuple[object, tuple[Subscription, ...], Delivery | None]]) -> None:
        # A KeyboardInterrupt or SystemExit is leaving for the poster. Events this
        # thread queued meanwhile were accepted: hand them to the next post on any
        # thread, or to join(), rather than strand them on a thread that may end.
        if queue:
            with self._enter_lock:
                self._orphans.extend(queue)
            queue.clear()

    def _adopt_orphans(self, queue: deque[tuple[object, tuple[Subscription, ...], Delivery | None]]) -> None:
        with self._enter_lock:
            queue.extend(self._orphans)
            self._orphans.clear()

    def fast_post(self, registry: Registry, slow: Callable[..., None], missing: object) -> Callable[..., None]:
        """Build a ``post`` function that delivers the common case in a single frame.

        The common case: an event whose class the registry has already resolved
        to handlers, posted from the only thread that has posted so far, and not
        from inside a handler. Everything else goes to *slow* (the bus's general
        path, which ends in `submit`). The bus installs the result as its ``post``.

        Args:
            registry: The bus's registry; its dispatch cache is read on every call.
            slow: The bus's general ``post(event, data, /, *, timeout)``.
            missing: The bus's "no data given" sentinel.
        """
        strategy = self
        local = self._local

        def post(event: object, data: object = missing, /, *, timeout: float | None = None) -> None:
            handlers = registry.dispatch.get(type(event))  # type: ignore[call-overload]  # classes hash
            if not handlers or data is not missing:
                return slow(event, data, timeout=timeout)
            try:
                state: ThreadState = local.state
            except AttributeError:
                return slow(event, data, timeout=timeout)
            if state is not strategy._solo or state.dispatching or strategy._orphans:
                return slow(event, data, timeout=timeout)
            state.posted += 1
            state.dispatching = True
            delivered = 0
            try:
                # Kept in step with the loop in _drain(): announce, then read _shared.
                state.bare = handlers
                if strategy._shared:
                    state.bare = None
                    for sub in handlers:
                        if sub.fast:
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                strategy._fail(state, exc, sub, event)
                            else:
                                delivered += 1
                        else:
                            strategy._call(state, sub, event, None, 0)
                else:
                    for sub in handlers:
                        if sub.plain:
                            try:
                                sub.func(sub.target, event)
                            except BaseException as exc:
                                strategy._fail(state, exc, sub, event)
                            else:
                                delivered += 1
                        else:
                            strategy._call(state, sub, event, None, 0)
                    state.bare = None
                if state.queue:  # posts made by the handlers, breadth-first
                    strategy._drain(state)
            except BaseException:
                state.bare = None
                strategy._strand(state.queue)
                raise
            finally:
                state.dispatching = False
                state.delivered += delivered
            return None

        return post

    def _enter(self, state: ThreadState) -> None:
        with self._enter_lock:
            if self._solo is None:
                self._solo = state
            elif self._solo is not state:
                self._shared = True

    def _deliver_tracked(
        self, state: ThreadState, event: object, handlers: tuple[Subscription, ...], delivery: Delivery
    ) -> None:
        # Announced like the loops in _drain() and fast_post(), so that _call may run
        # thread_safe=False handlers without a lock while this thread is alone.
        state.bare = handlers
        if self._shared:
            state.bare = None
        try:
            for index, sub in enumerate(handlers):
                try:
                    self._call(state, sub, event, delivery, index)
                except BaseException:
                    for skipped in range(index + 1, len(handlers)):  # settle what will not run now
                        delivery._settle(skipped)
                    raise
        finally:
            state.bare = None

    def _call(
        self, state: ThreadState, sub: Subscription, event: object, delivery: Delivery | None, index: int
    ) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        if sub.binding.thread_safe:
            dispatcher.call(sub, event, delivery, index, state, reraise=True)
            return
        owner = sub.owner
        if state is self._solo:
            # Every caller announced the event's handlers (state.bare) before reading
            # _shared; while no second thread has posted, no lock is needed.
            if state.bare is not None and not self._shared:
                dispatcher.call(sub, event, delivery, index, state, reraise=True)
                return
        else:
            self._wait_for_solo(state, owner)  # before the lock: the first thread may need it
        with owner.lock:
            dispatcher.call(sub, event, delivery, index, state, reraise=True)

    def _wait_for_solo(self, state: ThreadState, owner: Subscriber) -> None:
        # Just after a second thread first posts, the first one may still be inside an
        # unlocked delivery that includes this subscriber; wait for it (once per bus).
        # Called without holding owner's lock: that delivery may need the lock itself.
        solo = self._solo
        if solo is None or solo is state:
            return
        while (bare := solo.bare) is not None and any(sub.owner is owner for sub in bare):
            time.sleep(0.0005)

    def _fail(self, state: ThreadState, exc: BaseException, sub: Subscription, event: object) -> None:
        dispatcher = self._dispatcher
        assert dispatcher is not None
        state.failed += 1
        dispatcher.report(exc, sub, event)
        if not isinstance(exc, Exception):
            raise exc

    def forget(self, subscriber: Subscriber) -> None:
        """Wait until no other thread is inside one of the subscriber's serialised handlers.

        Called from inside a handler it does not wait: two handlers unregistering
        each other's subscribers on two threads would otherwise wait for each other.
        """
        state = self._state()
        if state.dispatching:
            return
        self._wait_for_solo(state, subscriber)  # its unlocked calls on the first thread
        with subscriber.lock:  # and its locked calls anywhere
            pass

    def join(self, timeout: float | None) -> bool:
        """Deliver stranded events on this thread, then wait until no other thread is mid-delivery."""
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
        delay = 0.0001
        while True:
            if self._orphans and not mine.dispatching:
                self._adopt_orphans(mine.queue)
                mine.dispatching = True
                try:
                    self._drain(mine)
                finally:
                    mine.dispatching = False
            if not any(s.dispatching and s is not mine for s in dispatcher.states()):
                return True
            # Other threads deliver on their own stacks; all we can do is watch them finish.
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def shutdown(self, wait: bool, timeout: float | None) -> bool:
        """Nothing to stop: handlers ran on their posters' threads. Optionally join."""
        return self.join(timeout) if wait else self.counts() == (0, 0)

    def counts(self) -> tuple[int, int]:
        """Return (events queued on any thread, threads in the middle of a delivery)."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return 0, 0
        states = dispatcher.states()
        queued = len(self._orphans) + sum(len(s.queue) for s in states)
        return queued, sum(1 for s in states if s.dispatching)
