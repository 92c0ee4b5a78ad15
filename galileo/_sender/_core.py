"""The :class:`Sender`: what loggers and callers see of the sender, and the threads that run it.

Loggers open a :class:`~galileo._sender._handle.Handle` per trace (:meth:`Sender.open_trace`) or per batch
flush (:meth:`Sender.submit_batch`) and hand events over through it; callers wait for handles
(:meth:`Sender.wait`), read counters (:meth:`Sender.stats`) and shut down (:meth:`Sender.close`). All of
these only append to the dispatcher's event queue, wake its thread when needed and, for waits, block on an
event the dispatcher sets: no caller touches the sending state (:mod:`galileo._sender._dispatcher`).

Threads: one dispatcher thread, started with the first event, and a fixed pool of I/O threads
(:mod:`galileo._sender._io`) started with the first request. :meth:`Sender.close` stops both; the sender
keeps its counters and starts them again for the next record. Where no thread can be started (interpreter
exit on Python 3.12+), a waiting caller runs the dispatcher's steps, and the exchanges, on its own thread.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from galileo import schema
from galileo._context import activity
from galileo._sender import _dispatcher
from galileo._sender._accounts import Accounts
from galileo._sender._dispatcher import Dispatcher
from galileo._sender._handle import BATCH, Handle
from galileo._sender._io import IoPool, exchange
from galileo._sender._outbox import BatchOutbox, Request
from galileo._sender._schedule import QUIET, YIELD_CAP
from galileo._sender._trace import TraceOutbox
from galileo._sender._waits import Wait
from galileo._sessions import SessionRef
from galileo._transport import Result, Target, TargetIds, get_client
from galileo.config import GalileoConfig

__all__ = ["Sender"]

_log = logging.getLogger("galileo")

_H = TypeVar("_H", bound=Handle)


class Sender:
    """The process's sender. Thread-safe; obtain it with :func:`galileo._sender.get_sender`."""

    def __init__(self, *, workers: int = 8, queue_size: int = 10_000, retry_window: float = 120.0) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.retry_window = retry_window
        self.accounts = Accounts()
        self._dispatcher = Dispatcher(self.accounts, retry_window, self._submit, workers)
        self._events = self._dispatcher.events
        self._pool = IoPool(workers, self._answered)
        self._lock = threading.Lock()  # starting and stopping the thread only
        self._wakeup = threading.Event()
        self._thread: threading.Thread | None = None
        self._inline = False  # no thread could be started: waiting callers run the steps
        #: When the dispatcher looks again on its own (inf: it sleeps until woken, or has no thread). A
        #: hand-over wakes it only when that is further off than a new record may wait (YIELD_CAP): a
        #: wake-up is a context switch on the request's thread. Written by the dispatcher, read without lock.
        self._wake_at = math.inf

    def __repr__(self) -> str:
        return f"<galileo Sender {self.workers} I/O threads, queue {self.queue_size}>"

    # -- loggers ---------------------------------------------------------------------------------------
    def open_trace(
        self,
        config: GalileoConfig,
        target: Target,
        trace_id: str,
        *,
        owned: bool,
        session: SessionRef | None = None,
    ) -> Handle:
        """A handle for one logger's records of ``trace_id`` (``owned``: the logger started the trace)."""
        outbox = TraceOutbox(get_client(config), target, self.retry_window, trace_id, owned=owned)
        outbox.session = session
        return Handle(outbox, self.accounts, self.queue_size, self._put, self._dispatcher)

    def submit_batch(
        self,
        config: GalileoConfig,
        target: Target,
        traces: Sequence[schema.Trace],
        records: int,
        session: SessionRef | None = None,
    ) -> Handle:
        """Hand one batch flush's traces over (``records`` in all); dropped at once beyond the bound."""
        outbox = BatchOutbox(get_client(config), target, self.retry_window, traces, records, session)
        handle = Handle(outbox, self.accounts, self.queue_size, self._put, self._dispatcher)
        if self.accounts.queued() + records > self.queue_size:
            self.accounts.lost("queue_full", records)
            handle.idle = True  # (nothing handed over: done)
            return handle
        handle.handed = records
        self.accounts.hand_batch(records)
        self._put((BATCH, handle, None, None))
        return handle

    def prioritize(self, handle: Handle) -> None:
        """Send what ``handle`` has at once: another service is about to point at it."""
        self._put((_dispatcher._PRIORITY, handle, None, None), wake=True)

    def note_dropped(self, reason: str, n: int = 1) -> None:
        """Count records lost before they reached the sender (e.g. a span with no trace), and have the
        dispatcher report them (its WARNING, at most once per interval), as it reports its own drops."""
        self.accounts.lost(reason, n)
        self._put((_dispatcher._REPORT, None, None, None), wake=True)

    def note_session_failed(self, session: SessionRef) -> None:
        """Count ``session`` among those the API would not create (once per session)."""
        self._put((_dispatcher._SESSION, session, None, None))

    def resolve_session(
        self, config: GalileoConfig, target: Target, session: SessionRef
    ) -> str | Result | None:
        """Create (or find) ``session`` now, on the caller's thread (a few bounded exchanges; never on a
        request's thread): see :meth:`SessionRef.resolve`."""
        return session.resolve(get_client(config), target)

    def known_ids(self, config: GalileoConfig, target: Target) -> TargetIds | None:
        """The ids ``target`` was resolved to, if it was (no I/O)."""
        return get_client(config).known_ids(target)

    def stats(self) -> dict[str, Any]:
        """The counters: see :func:`galileo._sender.stats`."""
        return self.accounts.snapshot()

    # -- waiting ---------------------------------------------------------------------------------------
    def wait(self, handles: Iterable[Handle], timeout: float | None) -> int:
        """Wait until ``handles`` are settled or ``timeout`` passes; return their records still pending.

        Settled: delivered or given up, or waiting for an API known to be down with none of their requests
        in flight (it returns then, with what is pending, rather than wait the outage out). Handles of a
        sender from before a fork are not waited for.
        """
        mine = [h for h in handles if h.owner is self._dispatcher]
        if not mine:
            return 0
        return self._wait(Wait(mine, urgent=True), timeout)

    def _wait(self, wait: Wait, timeout: float | None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        self._put((_dispatcher._WAIT, wait, None, None), wake=True)
        if self._inline:
            self._run_inline(wait, deadline)
        if not wait.done.wait(0 if self._inline else timeout):
            wait.cancelled = True  # (the dispatcher forgets it: it no longer hurries anything)
            handles = wait.handles if wait.handles is not None else ()
            return max(1, sum(h.pending() for h in handles)) if handles else max(1, self.accounts.queued())
        return wait.pending

    def settled(self) -> bool:
        """Whether nothing at all is pending: no record, no update, no request in flight (asks the
        dispatcher; for benchmarks and tests that must know the sender is done)."""
        if self._thread is None and not self._events:
            return True
        wait = Wait(None, urgent=False)
        self._wait(wait, 5.0)
        return wait.done.is_set() and self.accounts.in_flight == 0 and not self._dispatcher.busy()

    def busy_pending(self, handles: Iterable[_H]) -> tuple[list[_H], int]:
        """The handles that may still have work, and their records pending (hints: never waits)."""
        busy = [h for h in handles if not h.done() and h.owner is self._dispatcher]
        return busy, sum(h.pending() for h in busy)

    def prune(self, handles: list[_H], floor: int) -> tuple[list[_H], int]:
        """Forget the settled handles of a list kept to wait on later: (those still busy, the length at
        which to prune again; callers prune only past it, so the work is amortised)."""
        busy = self.busy_pending(handles)[0]
        return busy, max(floor, 2 * len(busy))

    def close(self, timeout: float | None) -> int:
        """Deliver what is pending, waiting at most ``timeout``; give up the rest, counted (what was sent
        and not answered as ``shutdown_in_flight``); stop the threads. Returns the records given up."""
        if self._thread is None and not self._events and not self._inline:
            return 0  # never started, nothing handed over
        self._wait(Wait(None, urgent=True), timeout)
        given_up = Wait(None, urgent=True)
        self._put((_dispatcher._ABANDON, given_up, None, None), wake=True)
        if self._inline:
            self._run_inline(given_up, time.monotonic() + 1.0)
        else:
            given_up.done.wait(2.0)
        with self._lock:
            thread, self._thread = self._thread, None
            self._wake_at = math.inf  # the next record starts the thread again
            if thread is not None:
                self._events.append((_dispatcher._STOP, None, None, None))
                self._wakeup.set()
            self._pool.close()
        return given_up.pending

    # -- the threads -----------------------------------------------------------------------------------
    def _put(self, event: tuple[Any, ...], *, wake: bool = False) -> None:
        self._events.append(event)
        if wake or self._wake_at > time.monotonic() + YIELD_CAP:
            if self._thread is None:
                self._start()
            self._wakeup.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            thread = threading.Thread(target=self._run, name="galileo-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # the interpreter is exiting (Python 3.12+): callers run the steps
                self._inline = True
                return
            self._thread = thread
            self._inline = False

    def _run(self) -> None:
        dispatcher, wakeup = self._dispatcher, self._wakeup
        dispatcher.stopped = False
        while True:
            wakeup.clear()
            try:
                wake_at = dispatcher.step(time.monotonic())
            except Exception:  # a bug: say so, and go on with the next events rather than stop sending
                _log.exception("galileo: the sender failed in a step (a bug; please report it)")
                wake_at = time.monotonic() + 0.05
            if dispatcher.stopped:
                return
            self._wake_at = math.inf if wake_at is None else wake_at
            if self._events:  # (handed over after the step, by a thread that saw the previous _wake_at)
                continue
            wakeup.wait(None if wake_at is None else max(0.0, wake_at - time.monotonic()))

    def _run_inline(self, wait: Wait, deadline: float | None) -> None:
        """Run the dispatcher's steps on this thread until ``wait`` is answered or ``deadline`` passes."""
        while not wait.done.is_set():
            now = time.monotonic()
            wake_at = self._dispatcher.step(now)
            if wait.done.is_set() or (deadline is not None and now >= deadline):
                return
            until = min(x for x in (wake_at, deadline, now + 0.05) if x is not None)
            time.sleep(max(0.0, until - time.monotonic()))

    def _submit(self, request: Request) -> None:
        """Give ``request`` to an I/O thread (the dispatcher's thread); inline when none can run."""
        if not self._pool.submit(request):
            self._answered(request, exchange(request))

    def _answered(self, request: Request, result: Result) -> None:
        """An I/O thread's result, for the dispatcher."""
        self._events.append((_dispatcher._RESULT, request, result, None))
        self._wakeup.set()

    def requests_idle(self) -> None:
        """The last request in flight ended (``TracingMiddleware``, on its thread): the dispatcher looks
        again once no request came for QUIET — woken by a timer on that request's event loop, or at once
        off a loop."""
        activity.holding = False
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._wakeup.set()
            return
        loop.call_later(QUIET, self._after_quiet)

    def _after_quiet(self) -> None:
        if activity.active or time.monotonic() - activity.ended_at < QUIET:
            activity.holding = True  # not quiet yet: the next request out looks again
            return
        self._wakeup.set()
