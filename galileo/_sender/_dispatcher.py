"""The dispatcher: one thread that owns all sending state and decides what goes when.

Everything the sender knows lives here and is touched by this thread only, so nothing in it takes a lock:
the outboxes with work and where each waits (:mod:`galileo._sender._schedule`: ready, on a timer, for
answers), each API's health (:mod:`galileo._sender._health`), the counters, and who waits for what. Other
threads talk to it through one event queue (``events``, a deque they append to): loggers hand records over
(:mod:`galileo._sender._handle`), the I/O threads post each request's result (:mod:`galileo._sender._io`),
and callers post waits (flush, shutdown). Each *step* of the dispatcher takes every event in, moves the
outboxes whose time has come to the ready queue, plans requests for the ready ones and gives them to the I/O
threads (at most one per thread: what becomes ready meanwhile joins the next body), answers the waits that
are settled, and publishes the counters (:meth:`Dispatcher.step`). Between steps it sleeps until the next
timer, or until woken. Waiting never blocks a thread.

Handing a record over wakes the dispatcher only when it sleeps with nothing to do (the first record after a
quiet spell); while it has work it looks on its own when its next timer is due. (A 10 s "duty" of looking
every YIELD_CAP while requests came, so that no hand-over ever woke it, cost more than the wake-ups it
saved: in bench_peers' bursts the sender's CPU per request went from 264 to 120 us without it.)
"""

from __future__ import annotations

import collections
import math
from typing import Any

from galileo._sender import _handle
from galileo._sender._accounts import Accounts
from galileo._sender._health import ApiHealth
from galileo._sender._io import traces_in
from galileo._sender._outbox import Request, Tally
from galileo._sender._plan import plan
from galileo._sender._schedule import LINGER, Schedule
from galileo._sender._trace import TraceOutbox
from galileo._sender._waits import Wait, Waits
from galileo._transport import Client, Result

__all__ = ["Dispatcher"]

_RESULT, _PRIORITY, _WAIT, _ABANDON, _SESSION, _REPORT, _STOP = range(10, 17)
Handle = _handle.Handle


class Dispatcher:
    """The state behind the sender, and the steps that change it (the dispatcher thread's only)."""

    def __init__(self, accounts: Accounts, retry_window: float, submit: Any, max_in_flight: int) -> None:
        self.accounts = accounts
        #: Requests under way at most (one per I/O thread): the rest stays ready, and what becomes ready
        #: meanwhile joins it, so under load bodies grow instead of exchanges multiplying.
        self.max_in_flight = max_in_flight
        self.retry_window = retry_window
        self.events: collections.deque[tuple[Any, ...]] = collections.deque()
        self._submit = submit  # (request) -> None: to the I/O threads
        self.schedule = Schedule()
        self._health: dict[Client, ApiHealth] = {}
        self._probe_waiters: dict[Client, list[Handle]] = {}
        self._in_flight: set[Request] = set()
        self.waits = Waits()
        self.stopped = False

    # -- one step --------------------------------------------------------------------------------------
    def step(self, now: float) -> float | None:
        """Take events in, send what may go, answer waits; return when to step again (None: when woken)."""
        self._take_events(now)
        self.schedule.release_due(now)
        hold_until = self.schedule.hold_until(now, self.waits.urgent)
        if hold_until is None:
            self._dispatch(now)
        report_at = self.accounts.report_due(now)
        self.accounts.publish()
        self.waits.answer(self)
        wake_at = min(
            self.schedule.next_timer(),
            hold_until if hold_until is not None else math.inf,
            report_at if report_at is not None else math.inf,
        )
        if self.schedule.ready and hold_until is None and self.accounts.in_flight < self.max_in_flight:
            wake_at = now  # made ready during this step (an answer, a pause's end): go on at once
        return None if wake_at == math.inf else wake_at

    def _take_events(self, now: float) -> None:
        events, pop = self.events, self.events.popleft
        touched: dict[Handle, None] = {}  # scheduled once each, after their events (a step takes many)
        while events:
            kind, a, b, c = pop()
            if kind == _handle.ADD:
                self._add(a, b, c, now)
                a.taken += 1
                touched[a] = None
            elif kind == _handle.CONCLUDE:
                a.outbox.conclude(b)
                a.taken += 1
                touched[a] = None
            elif kind == _handle.COMPLETE:
                tally = a.outbox.complete(b)
                if tally is not None:
                    self._count(a, tally)
                a.taken += 1
                touched[a] = None
            elif kind == _RESULT:
                self._answered(a, b, now)
            elif kind == _handle.BATCH:
                self.accounts.taken += a.handed
                self.accounts.pending += a.handed
                touched[a] = None
            elif kind == _PRIORITY:
                self.schedule.prioritize(a, now)
            elif kind == _WAIT:
                self.waits.add(a)
                if a.urgent:
                    self.schedule.release_all(now)
            elif kind == _ABANDON:
                a.pending = self.abandon_all()
                a.done.set()
            elif kind == _SESSION:
                self.note_session_failed(a)
            elif kind == _STOP:
                self.stopped = True
                self.waits.release()
            # (_REPORT: nothing to do but step, which reports the drops counted on other threads)
        for handle in touched:
            self.schedule.touch(handle, now)

    def _add(self, handle: Handle, record: Any, parent_id: str | None, now: float) -> None:
        accounts = self.accounts
        accounts.taken += 1
        accounts.pending += 1
        outbox = handle.outbox
        assert isinstance(outbox, TraceOutbox)
        if not outbox.nodes and handle not in self.schedule.busy and not self.waits.urgent:
            # a new trace: let what comes with it come (not while a flush or a shutdown waits)
            outbox.not_before = max(outbox.not_before, now + LINGER)
        tally = outbox.add(record, parent_id)
        if tally is not None:
            self._count(handle, tally)

    def _count(self, handle: Handle, tally: Tally, *, report: bool = True) -> None:
        self.accounts.settle(tally, report=report)
        handle.settled += tally.sent + tally.given_up

    # -- sending --------------------------------------------------------------------------------------
    def _health_of(self, client: Client) -> ApiHealth:
        health = self._health.get(client)
        if health is None:
            health = self._health[client] = ApiHealth(client)
        return health

    def _dispatch(self, now: float) -> None:
        """Plan a request for each ready outbox whose API takes writes now, and hand it to the I/O."""
        ready, self.schedule.ready = self.schedule.ready, collections.deque()
        for handle in ready:
            handle.in_ready = False
        while ready:
            if self.accounts.in_flight >= self.max_in_flight:  # the rest waits its turn, in order
                left: collections.deque[Handle] = collections.deque()
                for handle in ready:
                    if not handle.in_ready:
                        handle.in_ready = True
                        left.append(handle)
                left.extend(self.schedule.ready)
                self.schedule.ready = left
                break
            handle = ready.popleft()
            outbox = handle.outbox
            health = self._health_of(outbox.client)
            if not health.may_send(now):
                self._wait_out(handle, health, now)
                continue
            request = outbox.take(self.schedule.others_busy(handle))
            if request is not None:
                request.owner = handle
            if request is None:
                self.schedule.put(handle, now)
                continue
            health.sending()
            if not health.down:
                request = plan(request, ready, self.schedule.others_busy)
            self._send(request)  # (the other traces' outboxes stay in ``ready``, for their next request)
            self.schedule.put(handle, now)

    def _send(self, request: Request) -> None:
        self.accounts.in_flight += 1
        self._in_flight.add(request)
        self._submit(request)

    def _wait_out(self, handle: Handle, health: ApiHealth, now: float) -> None:
        """``handle``'s API takes no write now: wait for its probe's answer, or for its pause to end (or
        the retry window, to give up on time)."""
        outbox = handle.outbox
        if outbox.expired(now):  # (its first wait starts its window: a pause it cannot outlast ends it)
            reason = "auth_failed" if health.reason == "auth" else "retry_window_exceeded"
            self._count(handle, outbox.abandon(reason))
            self.schedule.put(handle, now)
            return
        if health.probing:
            self._probe_waiters.setdefault(health.client, []).append(handle)
            return
        until = health.paused_until
        if outbox.first_failure is not None:
            until = min(until, outbox.first_failure + self.retry_window + 0.001)
        outbox.not_before = max(outbox.not_before, until)
        self.schedule.put(handle, now)

    def _answered(self, request: Request, result: Result, now: float) -> None:
        if request not in self._in_flight:
            return  # given up at a shutdown, which counted it
        self._in_flight.discard(request)
        self.accounts.in_flight -= 1
        outbox = request.outbox
        health = self._health_of(outbox.client)
        if health.observe(result, now, self.accounts.pending, self.retry_window):
            for handle in [*self._probe_waiters.pop(outbox.client, ()), *self.schedule.busy]:
                waiting = handle.outbox
                if waiting.client is outbox.client and waiting.not_before > now:
                    waiting.not_before = now
                    waiting.first_failure = None
                self.schedule.put(handle, now)
        elif not health.probing:
            for handle in self._probe_waiters.pop(outbox.client, ()):
                self.schedule.put(handle, now)  # the next pause, or the next probe
        session = outbox.session if request.kind in ("traces", "batch") else None
        if session is not None and session.failed and result.status is not None and result.status < 300:
            self.note_session_failed(session)
            self.accounts.count("traces_without_session", traces_in(request))
        for part in request.parts or [request]:
            handle = _owner(part)
            self._count(handle, handle.outbox.settle(part, result, now, shared=request.parts is not None))
            self.schedule.put(handle, now)

    def note_session_failed(self, session: Any) -> None:
        if session.failed and not session.counted:
            session.counted = True
            self.accounts.count("sessions_failed")

    # -- waits and shutdown ---------------------------------------------------------------------------
    def settled(self, wait: Wait) -> bool:
        """Whether ``wait`` may return: its handles are idle, or every busy one's API is known to be down
        and none of them has a request in flight."""
        handles = self.schedule.busy if wait.handles is None else [h for h in wait.handles if not h.idle]
        busy = [h for h in handles if h in self.schedule.busy]
        if not busy:
            return True
        if not all(self._health_of(h.outbox.client).known_down for h in busy):
            return False
        outboxes = {h.outbox for h in busy}
        return not any(r.outbox in outboxes for r in self._in_flight)

    def busy(self) -> bool:
        """Whether any outbox has work (a hint off this thread)."""
        return bool(self.schedule.busy)

    def pending_of(self, wait: Wait) -> int:
        handles = self.schedule.busy if wait.handles is None else wait.handles
        return sum(h.outbox.pending() for h in handles if h in self.schedule.busy)

    def abandon_all(self) -> int:
        """Shutdown: give up everything not delivered, what was sent and not answered as
        ``shutdown_in_flight`` (the server may have stored it); return the records given up."""
        given_up = 0
        for handle in list(self.schedule.busy):
            tally = handle.outbox.abandon("shutdown_timeout", "shutdown_in_flight")
            given_up += tally.given_up
            self._count(handle, tally, report=False)  # (one report for them all, below)
            self.schedule.retire(handle, 0.0)
        self.accounts.in_flight -= len(self._in_flight)
        self._in_flight.clear()
        self.schedule.ready.clear()
        self.schedule.timers.clear()
        self._probe_waiters.clear()
        self.accounts.report()
        self.accounts.publish()
        return given_up


def _owner(request: Request) -> Handle:
    owner = request.owner
    assert isinstance(owner, Handle)
    return owner
