"""Where each outbox with work waits: ready to go, on a timer, or for answers; and when ready ones go.

The dispatcher's (:mod:`galileo._sender._dispatcher`) bookkeeping of its outboxes, on its thread only: the
outboxes with work (and, per trace, which of them: a trace's owner completes it only after the others), the
ready queue (outboxes a downstream service is about to point at first), and the timers, a heap of
(when, outbox): a new trace's :data:`LINGER`, a retry's backoff, an API's pause.

Yielding to requests: the sender's CPU is the application's (one process, one interpreter lock), so while
``TracingMiddleware`` serves requests (``activity``), ready records are held until the last request in
flight ends and none has ended for :data:`QUIET` (a burst is served one request after another), never
longer than :data:`YIELD_CAP` (:meth:`Schedule.hold_until`); the last request out wakes the dispatcher QUIET
later from its event loop, if no other request came. Records a downstream service is about to point at
(``get_tracing_headers()``), flushes and shutdowns are not held.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math

from galileo._context import activity
from galileo._sender._handle import Handle
from galileo._sender._trace import TraceOutbox

__all__ = ["LINGER", "QUIET", "YIELD_CAP", "Schedule"]

#: A new trace's records wait this long, so that what a request logs together goes together.
LINGER = 0.005
#: The longest records are held back while requests are served.
YIELD_CAP = 0.05
#: ... and, once no request is in flight, until none has ended for this long.
QUIET = 0.02


class Schedule:
    """The outboxes with work, by where they wait (the dispatcher thread's only)."""

    def __init__(self) -> None:
        self.busy: set[Handle] = set()  # handles whose outbox has work
        #: trace id -> its handles with work: the handle itself while it is the only one (the common case:
        #: no set made per trace), a set once there are more.
        self._by_trace: dict[str, Handle | set[Handle]] = {}
        self.ready: collections.deque[Handle] = collections.deque()
        self.timers: list[tuple[float, int, Handle]] = []
        self._seq = itertools.count()
        self._held_since: float | None = None  # ready records held for requests since then

    def next_timer(self) -> float:
        return self.timers[0][0] if self.timers else math.inf

    def touch(self, handle: Handle, now: float) -> None:
        """Register ``handle`` as having work, and put it where its next request is found."""
        if handle not in self.busy:
            self.busy.add(handle)
            handle.idle = False
            outbox = handle.outbox
            if isinstance(outbox, TraceOutbox):
                mates = self._by_trace.get(outbox.trace_id)
                if mates is None:
                    self._by_trace[outbox.trace_id] = handle
                elif isinstance(mates, set):
                    mates.add(handle)
                else:
                    self._by_trace[outbox.trace_id] = {mates, handle}
        self.put(handle, now)

    def others_busy(self, handle: Handle) -> bool:
        outbox = handle.outbox
        if not isinstance(outbox, TraceOutbox):
            return False
        mates = self._by_trace.get(outbox.trace_id)
        if mates is None or mates is handle:
            return False
        return not isinstance(mates, set) or any(h is not handle for h in mates)

    def put(self, handle: Handle, now: float) -> None:
        """Put ``handle`` where its next request is found: ready, on a timer, or nowhere (idle, or
        waiting for answers)."""
        outbox = handle.outbox
        if outbox.idle():
            self.retire(handle, now)
            return
        if handle.in_ready:
            return
        if outbox.not_before > now:
            if handle.timer_at != outbox.not_before:
                handle.timer_at = outbox.not_before
                heapq.heappush(self.timers, (outbox.not_before, next(self._seq), handle))
            return
        if outbox.has_ready(self.others_busy(handle)):
            handle.in_ready = True
            (self.ready.appendleft if handle.priority else self.ready.append)(handle)

    def retire(self, handle: Handle, now: float) -> None:
        """``handle`` has nothing left to do: forget it; a trace's owner may now complete it."""
        handle.idle = True
        if handle not in self.busy:
            return
        self.busy.discard(handle)
        outbox = handle.outbox
        if isinstance(outbox, TraceOutbox):
            mates = self._by_trace.get(outbox.trace_id)
            if mates is handle:
                del self._by_trace[outbox.trace_id]
            elif isinstance(mates, set):
                mates.discard(handle)
                left = list(mates)
                if len(left) == 1:
                    self._by_trace[outbox.trace_id] = left[0]
                for mate in left:  # an owner may have been waiting to complete the trace
                    self.put(mate, now)

    def release_due(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            when, _, handle = heapq.heappop(timers)
            if handle.timer_at == when:
                handle.timer_at = math.inf
                self.put(handle, now)

    def release_all(self, now: float) -> None:
        """A flush or shutdown waits: what lingers or yields goes now (backoffs are kept)."""
        for handle in list(self.busy):
            if handle.outbox.attempts == 0:
                handle.outbox.not_before = 0.0
                handle.timer_at = math.inf
            self.put(handle, now)

    def prioritize(self, handle: Handle, now: float) -> None:
        handle.priority = True
        outbox = handle.outbox
        if outbox.attempts == 0:  # no backoff to honour: end the linger, another service is waiting
            outbox.not_before = 0.0
        if handle.in_ready:
            self.ready.remove(handle)
            handle.in_ready = False
        self.put(handle, now)

    def hold_until(self, now: float, urgent: bool) -> float | None:
        """While requests are served, hold ready records back (see the module docstring): until when."""
        if not self.ready or urgent or self.ready[0].priority:
            self._held_since = None
            return None
        if not activity.active and now - activity.ended_at >= QUIET:
            self._held_since = None
            return None
        if self._held_since is None:
            self._held_since = now
        cap = self._held_since + YIELD_CAP
        if now >= cap:
            self._held_since = None
            return None
        activity.holding = True  # the last request out wakes this thread, QUIET later
        return cap if activity.active else min(cap, activity.ended_at + QUIET)
