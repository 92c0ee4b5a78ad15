"""The process-wide sender: a bounded set of pending records, a fixed pool of worker threads, ordering.

Every logger in the process hands its records to one :class:`Sender` (:func:`get_sender`); creating a logger
creates no thread, registers no hook and does no I/O. The worker threads start on the first record.

Records are grouped in *outboxes*: one per (logger, trace) in distributed mode (:class:`TraceOutbox`) and one
per flush in batch mode (:class:`BatchOutbox`). Workers pick outboxes that have something ready, ask them
for the next request, send it without holding any lock, then settle the outcome. The rules an outbox keeps:

- A record's POST starts only after its parent's ingest was acknowledged (2xx), or it travels nested in
  its parent's body. A parent outside the outbox (an upstream service's span) counts as acknowledged.
- Coalescing takes two shapes only: ready siblings of one parent share one ``spans`` list, and a subtree
  not sent yet travels nested in its root. A span concluded before it went out goes once, concluded; a span
  concluded after its POST started gets a PATCH once that POST is acknowledged.
- The trace's ``is_complete`` PATCH goes last, after every record of the trace from this process (its own
  outbox's and those of other loggers continuing the same trace here) was acknowledged or given up. A trace
  concluded before it went out goes once, complete, as a span does: when its ``POST /traces`` carries every
  record of the trace this process has (nothing else of it queued, in flight, or held by another logger
  here) and they are all concluded, the POST says ``is_complete: true`` (the API's default for that field)
  and no PATCH follows. That is the common case of a request that logs and returns before the sender looks
  (see :data:`LINGER` and the yielding below): one exchange per trace instead of two, and traces ready at
  one moment share it. What the API stores is the same either way.
- Records of different traces never share a span POST. Trace POSTs are the exception the API allows: a
  ``traces`` list may hold several traces, so traces of different outboxes to one API and target that are
  ready at one moment (each with its subtree not sent yet) go in one ``POST /traces``
  (:meth:`Sender._coalesce`); ``is_complete`` and ``session_id`` are fields of the whole body, so complete
  traces share a POST only with complete ones (the others each get their own ``is_complete`` PATCH), and
  traces of one session only with traces of that session. A session still to be created is created (or
  found by its external id) by the worker about to send the first POST naming it (see
  :mod:`galileo._sessions`). A combined POST the
  API rejects outright (422, 413, other 4xx) is sent again trace by trace: one bad trace never sinks the
  others.

A logger hands its records over without taking the sender's lock when it can (:meth:`TraceOutbox.add` and
friends): each event is appended to the outbox's *inbox*, a deque (appending is atomic), and only an outbox
the sender does not hold yet — its first record, or the first after it went idle — takes the lock to be
registered. The sender takes the inbox in under its lock whenever it looks at the outbox (before planning a
request, after settling one), and an outbox goes idle only once its inbox is empty, rechecked after the flag
is cleared, so no event is ever left behind. Every record handed over is counted at once, without the lock
(``next`` on an itertools.count is atomic), and admitted when taken in, where the records still in inboxes
hold their room: what is queued (admitted, or handed over and not taken in) never exceeds the bound. Near
the bound, and for an outbox backing off or waiting out an outage, records go through the lock at once, to
be admitted or turned away. A request handler thus pays one lock round trip per trace instead of one per
call, and none at all while a worker's timer runs within :data:`YIELD_CAP` (the usual case while requests
log, see :data:`DUTY`): then a new outbox is appended to the sender's *arrivals* without the lock, and
registered by that worker when it wakes or by the last request out (:meth:`Sender._hand_over`). A request
never waits for a worker holding the lock.

When the API itself is in trouble — :data:`OUTAGE_AFTER` transient failures in a row from one API
(refused connections, timeouts, 5xx, 429), or credentials refused even after a fresh login — the sender
stops sending to it rather than letting every outbox retry on its own: one request at a time probes it,
after a pause that doubles up to :data:`BACKOFF_MAX` (honouring Retry-After; :data:`AUTH_PAUSE` after a
refused login), while the other outboxes wait without a timer of their own. The first answer releases them
all. Records still waiting when their retry window ends are given up and counted; one WARNING says the API
is unreachable (one ERROR when it refuses the API key) and one INFO line says when it answers again.

A new trace's first records linger :data:`LINGER` (5 ms) so that what a request logs together goes together.
While requests are in flight (TracingMiddleware counts them) records yield to them, and then until no
request has ended for :data:`QUIET` (a burst is served one request after another), for up to
:data:`YIELD_CAP` in all. No worker is woken for them while a request is in flight unless none would wake
within that cap anyway: on the application's CPU a woken worker preempts the handler or event loop, and every
wake-up hands the interpreter over. The last request out has one woken QUIET later by a timer on its event
loop, if no other request came meanwhile (in a burst the next request is already waiting when one ends).
While requests that log keep coming, one idle worker stays on duty (:data:`DUTY`) so that some worker always
wakes within the cap; a worker settling an exchange takes the work it makes itself rather than waking another.
Waiting never sleeps in a worker: a request that must wait (backoff, Retry-After, a paused login) puts its
outbox aside with a not-before time, and the worker takes other work. Transient failures (408, 429, 5xx,
connection errors, timeouts, and a parent the server has not seen yet) are retried with exponential backoff
and jitter within the retry window; permanent ones (a 422 schema error, 413, other 4xx) are given up at once.
Records given up, and the records that depended on them, are counted by reason in :meth:`Sender.stats` and
reported at WARNING at most once per burst. The number of records not yet delivered is bounded by the
configured queue size: beyond it new records are dropped and counted, never queued without bound.
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import heapq
import itertools
import logging
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from galileo import schema
from galileo._context import activity
from galileo._sessions import SessionRef, same_session
from galileo._transport import Client, Outcome, Result, Target, get_client, reset_clients
from galileo.config import GalileoConfig

__all__ = [
    "BatchOutbox",
    "Outbox",
    "Sender",
    "TraceOutbox",
    "get_client",
    "get_sender",
    "reset",
    "shutdown",
    "stats",
]

_log = logging.getLogger("galileo")

#: First retry delay; doubled per attempt up to BACKOFF_MAX, then scaled by a random factor in [0.5, 1].
BACKOFF_BASE = 0.25
BACKOFF_MAX = 30.0
#: How long sending pauses after the API refused our credentials even after a fresh login.
AUTH_PAUSE = 30.0
#: Transient failures in a row from one API after which it is treated as down (see the module docstring).
OUTAGE_AFTER = 3
#: The first pause of an API treated as down; doubled per failed probe up to BACKOFF_MAX, with jitter (so
#: an outage of 10 s is noticed to be over within about 5 s of its end, a long one within 30 s).
OUTAGE_PAUSE = 0.5
#: A new trace's first records wait this long before they go, so that the records a request creates
#: together (its trace and first spans, often already concluded) travel in one body instead of several:
#: fewer requests, and no sender thread woken in the middle of a handler's burst of logging calls.
#: ``get_tracing_headers()`` ends the wait at once.
LINGER = 0.005
#: While this process serves requests (through TracingMiddleware), records ready to go are held back until
#: the last request in flight ends, but never longer than this: the sender's CPU work does not compete with
#: handlers, and a long or never-ending stream of requests only delays records by this much.
YIELD_CAP = 0.05
#: ... and, once no request is in flight, until none has ended for this long: an event loop serves a burst
#: of requests one after another, idle for an instant between two, and a sender woken in such an instant
#: would compete with the rest of the burst for the interpreter. It also batches the traces of a service
#: under moderate load: at 100 requests/s (10 ms apart) no request-free 20 ms comes, so the traces go
#: together when the cap ends, about 5 to a POST, instead of a POST each 2 ms after its request (an
#: exchange costs the sender as much CPU as several trivial requests: in bench_request_path's spread load
#: the sender's CPU per request went from 1.4 ms to 0.6 ms on the development VM). A record thus waits at
#: most this long after the last request ends, and :data:`YIELD_CAP` while requests keep coming.
QUIET = 0.02
#: While this process serves requests that log (and until none did for this long), one idle worker stays on
#: duty: it waits with a timeout of :data:`YIELD_CAP` instead of until woken. Then a record logged during a
#: request never has to wake a worker, which on the request's CPU would preempt the handler mid-call (a
#: context switch, 10-15 µs on a VM): the worker on duty, or the last request out, looks at it within the
#: cap. The duty costs a wake-up every 50 ms while the service is busy, none once it is idle.
DUTY = 10.0
#: Events a logger appends to an outbox the sender holds before it takes the lock to hand them over.
INBOX_MAX = 256
#: At most this many records in one request body.
MAX_RECORDS_PER_REQUEST = 500
#: At most this many traces (of different outboxes) in one ``POST /traces``.
MAX_TRACES_PER_REQUEST = 64
#: Drops and failures are reported at WARNING at most once per this many seconds.
WARN_INTERVAL = 10.0
#: How long the interpreter-exit drain waits for pending records.
EXIT_TIMEOUT = 5.0

_NEW, _SENDING, _ACKED, _FAILED = range(4)
_O = TypeVar("_O", bound="Outbox")
_ADD, _CONCLUDE, _COMPLETE = range(3)
#: Records that open a level and are concluded later (a leaf is added concluded).
_LEVELS = (schema.WorkflowSpan, schema.AgentSpan)


class _Node:
    """One record known to a trace outbox."""

    __slots__ = ("children", "concluded", "needs_patch", "parent_id", "patching", "record", "state")

    def __init__(self, record: schema.Record, parent_id: str | None) -> None:
        self.record = record
        self.parent_id = parent_id
        self.state = _NEW
        #: ids of its children: a tuple while it has one or none (a tuple of strings is one object the garbage
        #: collector stops tracking; most records have one child or none), a list from the second on.
        self.children: tuple[str, ...] | list[str] = ()
        self.concluded = False
        self.needs_patch = False
        self.patching = False


class _Request:
    """A planned request: made under the sender lock, serialised and sent outside it."""

    __slots__ = ("complete", "kind", "nodes", "parent_id", "parts", "roots")

    def __init__(
        self,
        kind: str,
        roots: list[_Node],
        nodes: list[_Node],
        parent_id: str | None = None,
        parts: list[tuple[TraceOutbox, _Request]] | None = None,
        *,
        complete: bool = False,
    ) -> None:
        self.kind = kind  # "traces", "spans", "span_update", "trace_update" or "batch"
        self.roots = roots
        self.nodes = nodes
        self.parent_id = parent_id
        #: A ``POST /traces`` of several outboxes' traces: each outbox's own request (see Sender._coalesce).
        self.parts = parts
        #: A ``POST /traces`` carrying its trace complete: the trace's is_complete PATCH is folded into it.
        self.complete = complete


class Outbox:
    """Records of one trace (or one batch flush) on their way to one project and log stream."""

    #: Events handed over without the lock (see the module docstring); only trace outboxes have any.
    inbox: collections.deque[Any] | tuple[()] = ()
    # Scalar state starts as these class attributes: an outbox is made per trace, on a request path.
    attempts = 0
    not_before = 0.0
    first_failure: float | None = None
    in_ready = False
    priority = False
    deferred_at: float | None = None  # when it first yielded to requests in flight
    #: The session its traces belong to (see galileo._sessions): set when the outbox is made, never after.
    session: SessionRef | None = None

    def __init__(self, sender: Sender, client: Client, target: Target) -> None:
        self.sender = sender
        self.client = client
        self.target = target

    # The following run under the sender lock.
    def intake(self) -> None:
        """Take in the events handed over without the lock."""

    def handed(self) -> int:
        """Records handed over and not taken in yet."""
        return 0

    def has_ready(self) -> bool:
        raise NotImplementedError

    def take(self) -> _Request | None:
        raise NotImplementedError

    def settle(self, request: _Request, result: Result, now: float) -> None:
        raise NotImplementedError

    @property
    def idle(self) -> bool:
        """Nothing left to send or in flight."""
        raise NotImplementedError

    def pending(self) -> int:
        """Records not yet delivered nor given up."""
        raise NotImplementedError

    def abandon(self, reason: str, result: Result | None) -> None:
        """Give up everything not yet sent (counted under ``reason``)."""
        raise NotImplementedError

    def expired(self, now: float) -> bool:
        """Whether this outbox has waited longer than the retry window since it first had to wait."""
        if self.first_failure is None:
            self.first_failure = now
        return now - self.first_failure > self.sender.retry_window

    # Runs outside the lock, in a worker.
    def build(self, request: _Request) -> tuple[str, str, dict[str, Any]]:
        raise NotImplementedError

    def _retry_later(self, result: Result, now: float) -> bool:
        """Schedule a retry; False when the retry window is spent (the caller gives up)."""
        if self.expired(now):
            return False
        assert self.first_failure is not None  # set by expired()
        self.attempts += 1
        delay = min(BACKOFF_BASE * 2 ** (self.attempts - 1), BACKOFF_MAX) * random.uniform(0.5, 1.0)
        if result.retry_after is not None:
            delay = max(delay, result.retry_after)
        if result.outcome is Outcome.AUTH:
            delay = max(delay, AUTH_PAUSE)
        # The last attempt goes when the window ends, not a whole backoff after it: give-up is on time.
        window_left = self.first_failure + self.sender.retry_window - now
        self.not_before = max(self.not_before, now + min(delay, window_left + 0.001))
        return True

    def _succeeded(self) -> None:
        self.attempts = 0
        self.first_failure = None


class TraceOutbox(Outbox):
    """Distributed mode: the records of one trace from one logger, sent as soon as their parent is in."""

    #: Events as flat triples (kind, a, b): a tuple per event would be one more object for the garbage
    #: collector to count and scan for as long as the trace waits to go (a third of what it holds then).
    #: ``deque.extend`` of a tuple appends its three items at once (no other thread runs in between: it
    #: runs no Python code; free-threaded builds hold the deque's lock for the call), and only the sender,
    #: under its lock, takes events out, so the triples never interleave.
    inbox: collections.deque[Any]
    completion: schema.Trace | None = None  # set when the trace was concluded (owned only)
    completion_sent = False
    inflight = 0
    #: ids of records the queue bound turned away (and their children); a set of its own once there are any.
    _refused: frozenset[str] | set[str] = frozenset()
    #: Set while the sender holds this outbox (under the lock, or by the logger as it appends the outbox to
    #: the sender's arrivals): the logger's events then need no lock. Cleared under the lock only.
    held = False
    #: Set (under the lock) once the sender registered this outbox (see :meth:`Sender._hand_over`).
    known = False
    #: Set once a POST its trace shared with other traces was rejected: from then on it goes on its own.
    solo = False

    def __init__(self, sender: Sender, client: Client, target: Target, trace_id: str, *, owned: bool) -> None:
        # (Outbox.__init__, inlined: an outbox is made per trace, on a request path)
        self.sender = sender
        self.client = client
        self.target = target
        self.trace_id = trace_id
        self.owned = owned
        self.nodes: dict[str, _Node] = {}
        self._new: dict[str, None] = {}  # ids of NEW nodes, in arrival order
        self._patches: dict[str, None] = {}  # ids of ACKED nodes needing a PATCH
        self.inbox = collections.deque()

    # -- events from the logger (any thread, no lock) -----------------------------------------------------
    def add(self, record: schema.Record, parent_id: str | None) -> None:
        """A new record; it is counted against the queue bound (and maybe dropped) when taken in."""
        self._hand(_ADD, record, parent_id)

    def conclude(self, record_id: str) -> None:
        """The record was concluded: its final state goes with its POST, or in a PATCH after it."""
        self._hand(_CONCLUDE, record_id, None)

    def complete(self, trace: schema.Trace) -> None:
        """The trace was concluded: its is_complete PATCH goes after everything else of the trace."""
        self._hand(_COMPLETE, trace, None)

    def _hand(self, kind: int, a: Any, b: Any) -> None:
        inbox = self.inbox
        inbox.extend((kind, a, b))  # (see ``inbox``)
        # Read after the append: if the sender still holds the outbox here, it takes the event in later.
        # Near the queue's bound, records go through the lock at once, to be counted (or turned away).
        sender = self.sender
        if kind == _ADD:  # counted at once (see Sender._unadmitted), taken in (and admitted) later
            sender._handed = next(sender._handed_count)
        if (
            not self.held
            or len(inbox) >= 3 * INBOX_MAX
            or sender._pending + sender._handed - sender._taken >= sender.queue_size  # (_unadmitted, inlined)
        ):
            sender._hand_over(self)

    # -- taking the events in (under the lock) ------------------------------------------------------------
    def intake(self) -> None:
        inbox = self.inbox
        pop = inbox.popleft
        while inbox:
            kind, a, b = pop(), pop(), pop()
            if kind == _ADD:
                self.sender._taken += 1
                if self.sender._admit(1):
                    self._add(a, b)
                else:
                    self._refuse(a.id)
            elif kind == _CONCLUDE:
                self._conclude(a)
            else:
                self.completion = a

    def _add(self, record: schema.Record, parent_id: str | None) -> None:
        node = _Node(record, parent_id)
        self.nodes[record.id] = node
        self._new[record.id] = None
        if parent_id in self._refused:  # its parent was dropped: never send it as an orphan
            self._refuse(record.id)
            self._fail([node], "parent_failed", None)
            return
        parent = self.nodes.get(parent_id) if parent_id else None
        if parent is not None:
            children = parent.children
            if type(children) is list:
                children.append(record.id)
            else:
                parent.children = [*children, record.id] if children else (record.id,)
            if parent.state == _FAILED:
                self._fail([node], "parent_failed", None)

    def _refuse(self, record_id: str) -> None:
        if not isinstance(self._refused, set):
            self._refused = set()
        self._refused.add(record_id)

    def _conclude(self, record_id: str) -> bool:
        node = self.nodes.get(record_id)
        if node is None or node.concluded:
            return False
        node.concluded = True
        if node.state in (_SENDING, _ACKED):
            node.needs_patch = True
            if node.state == _ACKED:
                self._patches[record_id] = None
            return True
        return False

    # -- planning -----------------------------------------------------------------------------------------
    def _is_ready(self, node: _Node) -> bool:
        if node.parent_id is None:
            return True
        parent = self.nodes.get(node.parent_id)
        return parent is None or parent.state == _ACKED

    def _completion_ready(self) -> bool:
        return (
            self.completion is not None
            and not self.completion_sent
            and not self._new
            and not self._patches
            and self.inflight == 0
            and not self.sender._trace_busy_elsewhere(self)
        )

    def has_ready(self) -> bool:
        if self._patches or self._completion_ready():
            return True
        return any(self._is_ready(self.nodes[i]) for i in self._new)

    @property
    def idle(self) -> bool:
        if self.inflight or self._new or self._patches or self.inbox:
            return False
        return self.completion is None or self.completion_sent or not self.owned

    def _subtree(self, root: _Node, into: list[_Node]) -> None:
        stack = [root]
        while stack and len(into) < MAX_RECORDS_PER_REQUEST:
            node = stack.pop()
            into.append(node)
            stack.extend(self.nodes[c] for c in reversed(node.children) if self.nodes[c].state == _NEW)

    def take(self) -> _Request | None:
        ready = next((self.nodes[i] for i in self._new if self._is_ready(self.nodes[i])), None)
        if ready is not None:
            nodes: list[_Node] = []
            if ready.parent_id is None:
                self._subtree(ready, nodes)
                complete = self._goes_complete(ready, nodes)  # (before _taken changes what it looks at)
                return self._taken("traces", [ready], nodes, None, complete=complete)
            roots = []
            for i in self._new:
                node = self.nodes[i]
                if node.parent_id == ready.parent_id and len(nodes) < MAX_RECORDS_PER_REQUEST:
                    roots.append(node)
                    self._subtree(node, nodes)
            return self._taken("spans", roots, nodes, ready.parent_id)
        if self._patches:
            record_id = next(iter(self._patches))
            del self._patches[record_id]
            node = self.nodes[record_id]
            node.needs_patch = False
            node.patching = True
            self.inflight += 1
            return _Request("span_update", [node], [node])
        if self._completion_ready():
            self.completion_sent = True
            root = self.nodes.get(self.trace_id)
            if self.trace_id in self._refused or (root is not None and root.state == _FAILED):
                self.sender._drop("parent_failed", 1, None, updates=True)  # the trace itself never went
                return None
            self.inflight += 1
            return _Request("trace_update", [], [])
        return None

    def take_trace(self, room: int, complete: bool) -> _Request | None:
        """The trace record with its subtree not sent yet, if it is what this outbox would send next, that
        is at most ``room`` records and goes ``complete`` or not (:meth:`_goes_complete`) as asked: to share
        a ``POST /traces`` with other traces."""
        root = self.nodes.get(self.trace_id)
        if root is None or root.state != _NEW or not self.owned or self.solo:
            return None
        if self.first_failure is not None:  # a retry keeps its own backoff
            return None
        nodes: list[_Node] = []
        self._subtree(root, nodes)
        if len(nodes) > room or self._goes_complete(root, nodes) != complete:
            return None
        return self._taken("traces", [root], nodes, None, complete=complete)

    def _goes_complete(self, root: _Node, nodes: list[_Node]) -> bool:
        """Whether the POST of the trace ``root`` with ``nodes`` (its subtree not sent yet) can carry the
        trace complete: it was concluded, the POST holds every record of it this process has, none still
        open, and no other logger here has records of it (see the module docstring)."""
        return (
            root.record.id == self.trace_id
            and self.owned
            and self.completion is not None
            and not self.completion_sent
            and self.inflight == 0
            and not self._patches
            and len(nodes) == len(self._new)
            and all(node.concluded or not isinstance(node.record, _LEVELS) for node in nodes)
            and not self.sender._trace_busy_elsewhere(self)
        )

    def _taken(
        self,
        kind: str,
        roots: list[_Node],
        nodes: list[_Node],
        parent_id: str | None,
        *,
        complete: bool = False,
    ) -> _Request:
        for node in nodes:
            node.state = _SENDING
            node.needs_patch = False
            del self._new[node.record.id]
        self.inflight += 1
        return _Request(kind, roots, nodes, parent_id, complete=complete)

    def build(self, request: _Request) -> tuple[str, str, dict[str, Any]]:
        if request.kind == "span_update":
            span = request.roots[0].record
            assert isinstance(span, _LEVELS)  # only they conclude after going out
            return "PATCH", f"/spans/{span.id}", schema.span_update_body(span, log_stream_id=None)
        if request.kind == "trace_update":
            assert self.completion is not None
            body = schema.trace_update_body(self.completion, log_stream_id=None, is_complete=True)
            return "PATCH", f"/traces/{self.trace_id}", body
        if request.parts is not None:  # a POST /traces this trace shares with others (see Sender._coalesce)
            wires = [wire for part_outbox, part in request.parts for wire in part_outbox.wires(part)]
        else:
            wires = self.wires(request)
        if request.kind == "traces":
            body = schema.traces_ingest_body(
                wires, log_stream_id=None, is_complete=request.complete, **_session_fields(self.session)
            )
            return "POST", "/traces", body
        assert request.parent_id is not None
        body = schema.spans_ingest_body(
            wires, trace_id=self.trace_id, parent_id=request.parent_id, log_stream_id=None
        )
        return "POST", "/spans", body

    def wires(self, request: _Request) -> list[dict[str, Any]]:
        """The JSON of a POST's roots, each with the records of ``request`` below it nested."""
        included = {id(n) for n in request.nodes}
        return [self._wire(root, included) for root in request.roots]

    def _wire(self, node: _Node, included: set[int]) -> dict[str, Any]:
        # A method, not a closure calling itself: that would be a reference cycle, garbage for the collector.
        data = node.record.to_wire(include_children=False)
        if "spans" in data:
            children = [self.nodes[c] for c in node.children]
            data["spans"] = [self._wire(child, included) for child in children if id(child) in included]
        return data

    # -- outcomes -----------------------------------------------------------------------------------------
    def settle(self, request: _Request, result: Result, now: float) -> None:
        self.inflight -= 1
        if result.outcome is Outcome.OK:
            self._succeeded()
            if request.kind in ("trace_update", "span_update"):
                self.sender._count("updates_sent", 1)
            acked = 0
            for node in request.nodes:
                node.patching = False
                if node.state == _SENDING:
                    node.state = _ACKED
                    acked += 1
                if node.needs_patch:  # concluded while its POST was in flight
                    self._patches[node.record.id] = None
            self.sender._pending -= acked
            self.sender._count("sent", acked)
            if request.complete:  # the trace went complete: no is_complete PATCH to send
                self.completion_sent = True
            return
        transient = result.outcome in (Outcome.RETRY, Outcome.PARENT_MISSING, Outcome.AUTH)
        if transient and self._retry_later(result, now):
            self.sender._count("retried", 1)
            self._requeue(request)
            return
        reason = _reason(result, transient)
        if request.kind == "trace_update":
            self.sender._drop(reason, 1, result, updates=True)
            return
        if request.kind == "span_update":
            request.roots[0].patching = False
            self.sender._drop(reason, 1, result, updates=True)
            return
        self._fail(request.nodes, reason, result)

    def _requeue(self, request: _Request) -> None:
        if request.kind == "trace_update":
            self.completion_sent = False
            return
        if request.kind == "span_update":
            node = request.roots[0]
            node.patching = False
            node.needs_patch = True
            self._patches[node.record.id] = None
            return
        for node in request.nodes:
            node.state = _NEW
            self._new[node.record.id] = None

    def _fail(self, nodes: Iterable[_Node], reason: str, result: Result | None) -> None:
        """Give up ``nodes`` and every record below them not yet delivered."""
        failed = 0
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node.state in (_ACKED, _FAILED):
                continue
            node.state = _FAILED
            self.sender._pending -= 1
            node.needs_patch = False
            self._new.pop(node.record.id, None)
            self._patches.pop(node.record.id, None)
            failed += 1
            stack.extend(self.nodes[c] for c in node.children if self.nodes[c].state == _NEW)
        if failed:
            self.sender._drop(reason, failed, result)

    def handed(self) -> int:
        """Records handed over and not taken in yet."""
        return list(self.inbox)[::3].count(_ADD)  # a copy: it may grow meanwhile

    def abandon(self, reason: str, result: Result | None) -> None:
        self.intake()
        self._fail([self.nodes[i] for i in list(self._new)], reason, result)
        patches = len(self._patches)
        for record_id in self._patches:
            self.nodes[record_id].needs_patch = False
        self._patches.clear()
        if self.owned and self.completion is not None and not self.completion_sent:
            self.completion_sent = True
            patches += 1
        if patches:
            self.sender._drop(reason, patches, result, updates=True)

    def pending(self) -> int:
        return (
            len(self._new)
            + len(self._patches)
            + sum(1 for n in self.nodes.values() if n.state == _SENDING)
            + self.handed()
        )


class BatchOutbox(Outbox):
    """Batch mode: traces concluded by ``flush()``, sent in one ``POST /traces``."""

    def __init__(
        self,
        sender: Sender,
        client: Client,
        target: Target,
        traces: Sequence[schema.Trace],
        records: int,
        session: SessionRef | None = None,
    ) -> None:
        super().__init__(sender, client, target)
        if session is not None:
            self.session = session
        self.traces = list(traces)
        self.records = records
        self.state = _NEW

    def has_ready(self) -> bool:
        return self.state == _NEW

    @property
    def idle(self) -> bool:
        return self.state in (_ACKED, _FAILED)

    def take(self) -> _Request | None:
        if self.state != _NEW:
            return None
        self.state = _SENDING
        return _Request("batch", [], [])

    def build(self, request: _Request) -> tuple[str, str, dict[str, Any]]:
        body = schema.traces_ingest_body(
            self.traces, log_stream_id=None, is_complete=True, **_session_fields(self.session)
        )
        return "POST", "/traces", body

    def settle(self, request: _Request, result: Result, now: float) -> None:
        if result.outcome is Outcome.OK:
            self.state = _ACKED
            self.sender._pending -= self.records
            self.sender._count("sent", self.records)
            return
        transient = result.outcome in (Outcome.RETRY, Outcome.AUTH)
        if transient and self._retry_later(result, now):
            self.sender._count("retried", 1)
            self.state = _NEW
            return
        self.state = _FAILED
        self.sender._pending -= self.records
        self.sender._drop(_reason(result, transient), self.records, result)

    def pending(self) -> int:
        return self.records if self.state in (_NEW, _SENDING) else 0

    def abandon(self, reason: str, result: Result | None) -> None:
        if self.state == _NEW:
            self.state = _FAILED
            self.sender._pending -= self.records
            self.sender._drop(reason, self.records, result)


def _session_fields(session: SessionRef | None) -> dict[str, Any]:
    """The ingest body's session fields for traces of ``session`` (resolved before the body is built)."""
    if session is None or session.id is None:
        return {}
    return {"session_id": session.id, "session_external_id": session.external_id}


def _api_trouble(result: Result) -> bool:
    """Whether ``result`` says the API (not the record) is in trouble: no answer, 5xx, 408 or 429."""
    return result.outcome is Outcome.RETRY


def _reason(result: Result, transient: bool) -> str:
    if transient:
        return "retry_window_exceeded" if result.outcome is not Outcome.AUTH else "auth_failed"
    if result.status == 413:
        return "too_large"
    if result.status == 422:
        return "schema_rejected"
    return f"rejected_{result.status}" if result.status else "rejected"


class _ApiHealth:
    """What the sender knows about one API (one :class:`Client`): transient failures in a row, and while
    they reach :data:`OUTAGE_AFTER` (or credentials were refused), the pause and the outboxes waiting it out.
    Changed under the sender lock only."""

    __slots__ = (
        "announced",
        "down_since",
        "failed_probes",
        "failures",
        "paused_until",
        "probing",
        "reason",
        "waiting",
    )

    def __init__(self) -> None:
        self.failures = 0
        self.failed_probes = 0
        self.paused_until = 0.0
        self.probing = False
        self.down_since: float | None = None
        self.reason = ""  # "unreachable" or "auth"
        self.announced = False  # the outage was reported at WARNING (so its end is reported at INFO)
        self.waiting: set[Outbox] = set()

    def blocks(self, now: float) -> bool:
        return self.down_since is not None and (self.probing or now < self.paused_until)


class Sender:
    """The process's queue and worker pool. Thread-safe; obtain it with :func:`get_sender`."""

    def __init__(self, *, workers: int = 8, queue_size: int = 10_000, retry_window: float = 120.0) -> None:
        self.workers = workers
        self.queue_size = queue_size
        self.retry_window = retry_window
        self._lock = threading.Lock()
        #: Workers wait on ``_wake`` for work; flush and shutdown wait on ``_done`` for outboxes going idle.
        #: Two conditions on one lock, so finishing a request wakes neither idle workers nor, with nothing
        #: gone idle, waiters: every wake-up is a GIL hand-off taken from the application's threads.
        self._wake = threading.Condition(self._lock)
        self._done = threading.Condition(self._lock)
        self._ready: collections.deque[Outbox] = collections.deque()
        self._delayed: list[tuple[float, int, Outbox]] = []
        self._seq = itertools.count()
        self._outboxes: set[Outbox] = set()  # not idle
        self._yielding: set[Outbox] = set()  # held back while requests are in flight
        self._deferred: set[Outbox] = set()  # held back for requests, in flight or just ended (see _yield)
        #: trace id -> its outboxes not idle: the outbox itself while there is one (the common case: one
        #: object less per trace for the garbage collector to track), a set once there are more.
        self._by_trace: dict[str, TraceOutbox | set[TraceOutbox]] = {}
        #: Outboxes of new traces handed over without the lock, for a worker to register (see _hand_over).
        self._arrivals: collections.deque[TraceOutbox] = collections.deque()
        self._health: dict[Client, _ApiHealth] = {}
        self._outage_said: dict[Client, float] = {}  # when an API was last reported unreachable
        self._threads: list[threading.Thread] = []
        self._generation = 0  # workers of an older generation exit (see close)
        self._quiet = False  # a wake-up was skipped while requests were in flight (see _notify)
        self._settling = False  # a worker settles an exchange, and looks for work next (see _notify)
        self._timer_at = math.inf  # when the first worker waiting with a timeout wakes
        self._stopping = False
        self._pending = 0  # records admitted and neither delivered nor given up
        # Records handed over to inboxes in all (a count loggers advance without the lock: ``next`` on an
        # itertools.count is atomic) and taken in (under the lock): see _unadmitted.
        self._handed_count = itertools.count(1)
        self._handed = 0  # the last value a logger drew from _handed_count (a hint: may lag by a record)
        self._taken = 0
        self._inflight = 0  # requests being sent
        self._awaiting_answers = 0  # drains waiting for the requests in flight to be answered
        self._counters: collections.Counter[str] = collections.Counter()
        self._dropped: collections.Counter[str] = collections.Counter()
        self._unreported: collections.Counter[str] = collections.Counter()
        self._updates_dropped: collections.Counter[str] = collections.Counter()
        self._unreported_updates = 0
        self._last_warning = 0.0
        self._last_detail = ""

    # -- accounting (under the lock) ---------------------------------------------------------------------
    def _count(self, name: str, n: int) -> None:
        self._counters[name] += n

    def _drop(self, reason: str, n: int, result: Result | None, *, updates: bool = False) -> None:
        """Count ``n`` records (or updates: a PATCH of a record already delivered) given up for ``reason``."""
        if updates:
            self._updates_dropped[reason] += n
            self._unreported_updates += n
        else:
            self._dropped[reason] += n
            self._unreported[reason] += n
        if result is not None and result.detail:
            self._last_detail = result.detail
        now = time.monotonic()
        if now - self._last_warning >= WARN_INTERVAL:
            self._last_warning = now
            self._warn_dropped()

    def _warn_dropped(self) -> None:
        if not self._unreported and not self._unreported_updates:
            return
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(self._unreported.items())) or "none"
        updates = f" and {self._unreported_updates} update(s)" if self._unreported_updates else ""
        detail = f" (last error: {self._last_detail})" if self._last_detail else ""
        _log.warning(
            "galileo: gave up %s record(s)%s since the last report: %s%s; totals %s",
            sum(self._unreported.values()),
            updates,
            what,
            detail,
            self._stats_locked(),
        )
        self._unreported.clear()
        self._unreported_updates = 0

    def _stats_locked(self) -> dict[str, Any]:
        return {
            "queued": self._pending + sum(ob.handed() for ob in {*self._outboxes, *self._arrivals}),
            "sent": self._counters["sent"],
            "retried": self._counters["retried"],
            "dropped": sum(self._dropped.values()),
            "dropped_by_reason": dict(self._dropped),
            "in_flight": self._inflight,
            "updates_sent": self._counters["updates_sent"],
            "updates_dropped": sum(self._updates_dropped.values()),
            "sessions_failed": self._counters["sessions_failed"],
            "traces_without_session": self._counters["traces_without_session"],
        }

    def stats(self) -> dict[str, Any]:
        """The sender's counters since the process started.

        ``queued``, ``sent`` and ``dropped`` count records (a trace or a span), so that every record handed
        over is in exactly one of them: ``queued + sent + dropped`` is what was logged (``dropped_by_reason``
        splits ``dropped``). ``retried`` counts requests sent again, ``in_flight`` requests under way.
        Updates of records already delivered (a workflow span's PATCH, a trace's ``is_complete`` PATCH) are
        counted apart, in ``updates_sent`` and ``updates_dropped``. ``sessions_failed`` counts sessions the
        API would not create, ``traces_without_session`` the traces of theirs sent without a session.
        """
        with self._lock:
            return self._stats_locked()

    def note_session_failed(self, session: SessionRef) -> None:
        """Count ``session`` among those the API would not create (once per session)."""
        with self._lock:
            self._session_failed(session)

    def _session_failed(self, session: SessionRef) -> None:
        if session.failed and not session.counted:
            session.counted = True
            self._count("sessions_failed", 1)

    def note_dropped(self, reason: str, n: int = 1) -> None:
        """Count records lost before they reached the sender (e.g. a span with no trace)."""
        with self._lock:
            self._drop(reason, n, None)

    # -- events --------------------------------------------------------------------------------------------
    def _unadmitted(self) -> int:
        """Records handed over to inboxes and not taken in yet (read without the lock: may lag by a few)."""
        return max(0, self._handed - self._taken)

    def _admit(self, n: int) -> bool:
        """Count ``n`` records against the bound, or turn them away. Records still in inboxes hold their
        room: ``queued`` (admitted plus handed over) stays within the bound."""
        if self._pending + n + self._unadmitted() > self.queue_size:
            self._drop("queue_full", n, None)
            return False
        self._pending += n
        return True

    def open_trace(
        self,
        client: Client,
        target: Target,
        trace_id: str,
        *,
        owned: bool,
        session: SessionRef | None = None,
    ) -> TraceOutbox:
        """A new outbox for one logger's records of ``trace_id``; hand it records with its own methods.
        ``session``: the session its trace belongs to (its ``POST /traces`` names it)."""
        outbox = TraceOutbox(self, client, target, trace_id, owned=owned)
        if session is not None:
            outbox.session = session
        outbox.not_before = time.monotonic() + LINGER  # let the records made together go together
        return outbox

    def _hand_over(self, outbox: TraceOutbox) -> None:
        """Take ``outbox``'s inbox in and hold the outbox until it is idle (its logger's thread).

        The first event of an outbox still lingering (a new trace, on a request path) is only registered: the
        outbox is held, and a worker takes its inbox in when the linger ends — no planning on the logger's
        thread. Near the queue's bound the events are taken in (counted, or turned away) at once.

        While requests are in flight and a worker's timer fires within :data:`YIELD_CAP` (the case in which
        registering it would wake no worker either, see :meth:`_notify`), a new outbox is not even
        registered here: it is appended to ``_arrivals`` without the lock, and that worker registers it when
        it wakes (:meth:`_take_arrivals`, first thing in :meth:`_next`), as does the last request out
        (:meth:`_requests_idle`). A request thus takes no lock for its trace, and never waits for a worker
        holding it. Nothing of the sender's is read off the lock but ``_timer_at`` (one float) and counts
        (a stale count only sends an outbox through the lock). The worker's timer is read again after the
        append: if it fired meanwhile, that worker may have looked at the arrivals before the append, and
        they are registered here, under the lock, instead.
        """
        if activity.active and not outbox.known:
            now = time.monotonic()
            if (
                now < self._timer_at <= now + YIELD_CAP
                and outbox.not_before > now
                and not self._counts_at_once(outbox)
            ):
                outbox.held = True
                arrivals = self._arrivals
                first = not arrivals and not self._delayed  # (lengths only: nothing indexed off the lock)
                arrivals.append(outbox)
                if first:  # nothing else waits to go: the last request out registers it (see _notify)
                    activity.holding = True
                if time.monotonic() < self._timer_at:
                    return  # the worker whose timer that is has yet to wake: it registers the outbox
                with self._lock:
                    self._take_arrivals()
                return
        with self._lock:
            outbox.held = True
            if outbox.known or outbox.not_before <= time.monotonic() or self._counts_at_once(outbox):
                self._schedule(outbox)
                return
            self._register(outbox)
            self._start_workers()
            self._delay(outbox)

    def _counts_at_once(self, outbox: TraceOutbox) -> bool:
        """Whether ``outbox``'s records are to be taken in as they come: near the queue's bound (to be
        counted, or turned away), or while its API is in trouble."""
        return self._pending + self._unadmitted() >= self.queue_size or outbox.client in self._health

    def _take_arrivals(self, *, wake: bool = True, not_before: float = 0.0) -> bool:
        """Register the outboxes handed over without the lock (under the lock), to go at ``not_before`` at
        the earliest; ``wake`` as for :meth:`_delay`. True if there were any."""
        arrivals = self._arrivals
        if not arrivals:
            return False
        while arrivals:
            outbox = arrivals.popleft()
            if outbox.known or self._counts_at_once(outbox):
                self._schedule(outbox)
                continue
            outbox.not_before = max(outbox.not_before, not_before)
            self._register(outbox)
            self._start_workers()
            self._delay(outbox, wake=wake)  # (a time already past: the next worker to look sends it)
        return True

    def prioritize(self, outbox: TraceOutbox) -> None:
        with self._lock:
            outbox.priority = True
            if outbox.attempts == 0:  # no backoff to honour: end the linger, another service is waiting
                outbox.not_before = 0.0
            if outbox.in_ready:  # move it to the front
                with contextlib.suppress(ValueError):
                    self._ready.remove(outbox)
                outbox.in_ready = False
            self._schedule(outbox)

    def submit_batch(
        self,
        client: Client,
        target: Target,
        traces: Sequence[schema.Trace],
        records: int,
        session: SessionRef | None = None,
    ) -> Outbox:
        with self._lock:
            outbox = BatchOutbox(self, client, target, traces, records, session)
            if self._admit(records):
                self._schedule(outbox)
            else:
                outbox.state = _FAILED
            return outbox

    def _trace_busy_elsewhere(self, outbox: TraceOutbox) -> bool:
        """Whether another logger of this process still has records of ``outbox``'s trace to deliver."""
        entry = self._by_trace.get(outbox.trace_id)
        if isinstance(entry, set):
            return any(other is not outbox for other in entry)
        return entry is not None and entry is not outbox

    def _schedule(self, outbox: Outbox) -> None:
        """Take ``outbox``'s inbox in; put it where a worker finds it when it has work (under the lock)."""
        outbox.intake()
        if isinstance(outbox, TraceOutbox):
            while outbox.held and outbox.idle:
                outbox.held = False  # from here on its logger hands events over through the lock ...
                if not outbox.inbox:
                    break
                outbox.held = True  # ... but one was appended before it could see that: take it in
                outbox.intake()
        if not outbox.idle:
            self._register(outbox)
        elif outbox in self._outboxes:
            self._outboxes.discard(outbox)
            self._deferred.discard(outbox)
            if isinstance(outbox, TraceOutbox):
                for other in self._unregister(outbox):  # an owner may have been waiting to complete the trace
                    self._schedule(other)
            self._done.notify_all()  # flush waiters
        if outbox.in_ready or not outbox.has_ready():
            return
        now = time.monotonic()
        self._start_workers()
        if outbox.not_before > now:
            self._delay(outbox)
            if outbox.not_before - now > LINGER and isinstance(outbox, TraceOutbox):
                outbox.held = False  # backing off: new records count against the bound as they come
        else:
            outbox.in_ready = True
            if outbox.priority:
                self._ready.appendleft(outbox)
            else:
                self._ready.append(outbox)
            self._notify(outbox)

    def _register(self, outbox: Outbox) -> None:
        """Count ``outbox`` among those with work (under the lock)."""
        self._outboxes.add(outbox)
        if isinstance(outbox, TraceOutbox):
            outbox.known = True
            entry = self._by_trace.get(outbox.trace_id)
            if entry is None:
                self._by_trace[outbox.trace_id] = outbox
            elif isinstance(entry, set):
                entry.add(outbox)
            elif entry is not outbox:
                self._by_trace[outbox.trace_id] = {entry, outbox}

    def _unregister(self, outbox: TraceOutbox) -> list[TraceOutbox]:
        """Forget idle ``outbox`` among its trace's outboxes (under the lock); returns the others left."""
        entry = self._by_trace.get(outbox.trace_id)
        if not isinstance(entry, set):
            if entry is outbox:
                del self._by_trace[outbox.trace_id]
            return []
        entry.discard(outbox)
        others = list(entry)
        if len(others) == 1:
            self._by_trace[outbox.trace_id] = others[0]
        elif not others:
            del self._by_trace[outbox.trace_id]
        return others

    def _delay(self, outbox: Outbox, *, wake: bool = True) -> None:
        """Have a worker look at ``outbox`` again at its ``not_before`` (under the lock); with ``wake``, tell
        one when that is sooner than what the workers wait for (without: the caller knows one looks)."""
        entry = (outbox.not_before, next(self._seq), outbox)
        heapq.heappush(self._delayed, entry)
        if wake and self._delayed[0] is entry:
            self._notify(outbox)

    def _notify(self, outbox: Outbox) -> None:
        """Wake a worker for ``outbox`` — unless one looks soon enough anyway: the worker settling an
        exchange (it looks for work next), or, while requests are in flight, a worker whose timer fires
        within :data:`YIELD_CAP` (a worker woken now would take the interpreter from a handler only to yield
        to it)."""
        if self._settling:  # the first work a settled exchange makes is this worker's own
            self._settling = False
            return
        if activity.active and not outbox.priority:
            now = time.monotonic()
            if now < self._timer_at <= now + YIELD_CAP:  # a worker wakes soon enough anyway
                self._quiet = True
                activity.holding = True
                return
        self._wake.notify()

    # -- workers -------------------------------------------------------------------------------------------
    def _yield(self, outbox: Outbox, now: float) -> bool:
        """Hold ``outbox`` back while this process serves requests (under the lock): while requests are in
        flight (released by the last one out), then until none ended for :data:`QUIET`; at most
        :data:`YIELD_CAP` in all. False: it may go now."""
        if not activity.active and now - activity.ended_at >= QUIET:
            return False
        if outbox.deferred_at is None:
            outbox.deferred_at = now
            self._deferred.add(outbox)
        until = outbox.deferred_at + YIELD_CAP
        if now >= until:
            return False
        if activity.active:
            self._yielding.add(outbox)
            activity.holding = True
        else:
            until = min(until, now + QUIET)
        outbox.not_before = until
        self._delay(outbox, wake=False)  # (this worker sets its timer from the heap)
        return True

    def _stop_yielding(self, outbox: Outbox) -> None:
        """``outbox`` goes now: it no longer yields to requests (under the lock). Under requests that never
        end, nothing else would let go of it."""
        if outbox.deferred_at is not None:
            outbox.deferred_at = None
            self._deferred.discard(outbox)
            self._yielding.discard(outbox)

    def _requests_idle(self) -> None:
        """The last request in flight ended (called by the middleware, on the thread that served it): what
        yielded to requests goes once no other came for :data:`QUIET`.

        The worker that sends it is woken QUIET later, by a timer on the event loop that served the request,
        and only if no request came meanwhile (else the next request out looks again): in a burst the next
        request is already waiting when one ends, and a worker woken then would preempt the event loop
        serving it. Nothing is woken when a worker looks within QUIET anyway; off an event loop (trio, a
        thread) a worker is woken at once.
        """
        with self._lock:
            activity.holding = False
            now = time.monotonic()
            if self._take_arrivals(wake=False, not_before=now + QUIET):  # as what yielded, below
                self._quiet = True
            held, self._yielding = self._yielding, set()
            for outbox in held:
                cap = None if outbox.deferred_at is None else outbox.deferred_at + YIELD_CAP
                if outbox.not_before == cap:  # (a backoff set meanwhile is kept)
                    outbox.not_before = min(cap, now + QUIET)
                    self._delay(outbox, wake=False)  # woken below, when owed
                    self._quiet = True
            if not self._quiet:
                return
            if now < self._timer_at <= now + QUIET:  # a worker looks by then anyway
                self._quiet = False
                return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._wake_quiet()
            return
        loop.call_later(QUIET, self._after_quiet)

    def _after_quiet(self) -> None:
        """QUIET after the last request out, on its event loop: wake a worker if no request came since."""
        if activity.active or time.monotonic() - activity.ended_at < QUIET:
            activity.holding = True  # not quiet yet: the next request out looks again
            return
        self._wake_quiet()

    def _wake_quiet(self) -> None:
        """Wake the workers owed a wake-up since requests held them back (see :meth:`_notify`)."""
        with self._lock:
            if self._quiet:
                self._quiet = False
                self._wake.notify(max(1, min(len(self._ready), self.workers)))

    def _start_workers(self) -> None:
        if self._threads or self._stopping:
            return
        for i in range(self.workers):
            thread = threading.Thread(
                target=self._work, args=(self._generation,), name=f"galileo-sender-{i}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _next(self, generation: int) -> tuple[Outbox, _Request] | None:
        """Wait for and take the next request (under the lock); None when stopping with nothing to do, or
        when :meth:`close` retired the workers of ``generation``."""
        while True:
            if generation != self._generation:
                return None
            self._take_arrivals(wake=False)  # (this worker sets its timer from the heap)
            now = time.monotonic()
            self._release_due(now)
            taken = self._take_ready(now)
            if taken is not None:
                return taken
            if self._stopping:
                return None
            timeout = self._delayed[0][0] - now if self._delayed else None
            if timeout is not None and activity.active and timeout < YIELD_CAP:
                # requests in flight: what falls due now would yield to them anyway; the last one out
                # wakes a worker (see _notify), and nothing waits longer than YIELD_CAP for it
                timeout = YIELD_CAP
                activity.holding = True
                self._quiet = True
            if self._unreported:  # a burst of drops ended: report the rest once the interval is over
                report_in = self._last_warning + WARN_INTERVAL - now
                if report_in <= 0:
                    self._last_warning = now
                    self._warn_dropped()
                    continue
                timeout = report_in if timeout is None else min(timeout, report_in)
            timer = self._timer_at if self._timer_at > now else math.inf
            if timeout is None and timer == math.inf and (activity.active or now - activity.ended_at < DUTY):
                timeout = YIELD_CAP  # on duty (see DUTY): what requests log needs no worker woken
            deadline = math.inf if timeout is None else now + timeout
            if deadline < timer:
                self._timer_at = deadline
            self._wake.wait(timeout)
            # ``_timer_at`` is when the first worker waiting with a timeout wakes: once this worker is up, the
            # time it set no longer holds (another worker's later time is lost: one extra wake-up at most).
            if self._timer_at == deadline or self._timer_at <= time.monotonic():
                self._timer_at = math.inf

    # Two steps of _next, methods of their own so that a worker waiting in _next holds no outbox in a local
    # variable (what was delivered is freed at once; see _work).
    def _release_due(self, now: float) -> None:
        """Move the outboxes whose time has come from the timers to the ready queue (under the lock)."""
        while self._delayed and self._delayed[0][0] <= now:
            _, _, outbox = heapq.heappop(self._delayed)
            outbox.intake()
            if outbox.idle:  # e.g. a new trace whose records the queue bound turned away
                self._schedule(outbox)
            elif not outbox.in_ready and outbox.not_before <= now and outbox.has_ready():
                outbox.in_ready = True
                self._ready.append(outbox)

    def _take_ready(self, now: float) -> tuple[Outbox, _Request] | None:
        """The next request of a ready outbox that may go now (under the lock); None when none may."""
        while self._ready:
            outbox = self._ready.popleft()
            outbox.in_ready = False
            outbox.intake()
            if outbox.not_before > now:
                self._delay(outbox, wake=False)  # (this worker sets its timer from the heap)
                continue
            if not outbox.priority and self._yield(outbox, now):
                continue
            health = self._health.get(outbox.client)
            if health is not None and health.blocks(now):
                self._wait_out(outbox, health, now)
                continue
            self._stop_yielding(outbox)  # it goes now (its cap, or the quiet moment)
            request = outbox.take()
            if request is None:
                self._schedule(outbox)
                continue
            if health is not None and health.down_since is not None:
                health.probing = True  # this request tells whether the API is back
            elif request.kind == "traces" and isinstance(outbox, TraceOutbox) and not outbox.solo:
                request = self._coalesce(outbox, request, now)
            self._schedule(outbox)  # more ready work of this outbox goes to another worker
            # This worker leaves for an exchange: another takes what is ready, or watches the time of what
            # waits (which may have arrived, without a wake-up of its own, while this one watched it).
            if self._ready:
                self._notify(self._ready[0])
            elif self._delayed and not now < self._timer_at <= self._delayed[0][0]:
                self._wake.notify()
            self._inflight += 1
            return outbox, request
        return None

    def _coalesce(self, first: TraceOutbox, request: _Request, now: float) -> _Request:
        """``request``, the ``POST /traces`` of ``first``'s trace, joined by the traces of other outboxes
        to the same API and target that may go now or only yield to requests (under the lock).

        Each joins with its subtree not sent yet, up to :data:`MAX_RECORDS_PER_REQUEST` records and
        :data:`MAX_TRACES_PER_REQUEST` traces. What stays apart: an outbox lingering (its request may still
        be logging), backing off or waiting out an outage, one that sends something else first, one whose
        trace was in a combined POST the API rejected (``solo``), and one whose trace goes complete when
        ``first``'s does not, or the other way round (``is_complete`` is the whole body's). Returns
        ``request`` itself when none joins; else a request whose ``parts`` are each outbox's own.
        """
        room = MAX_RECORDS_PER_REQUEST - len(request.nodes)
        parts: list[tuple[TraceOutbox, _Request]] = [(first, request)]
        from_ready: set[Outbox] = set()
        for outbox in [*self._ready, *self._deferred]:
            if len(parts) >= MAX_TRACES_PER_REQUEST or room <= 0:
                break
            if (
                outbox is first
                or not isinstance(outbox, TraceOutbox)
                or outbox.client is not first.client
                or outbox.target != first.target
                or not same_session(outbox.session, first.session)  # one session_id per body
                or (outbox.not_before > now and outbox.deferred_at is None)  # lingering or backing off
            ):
                continue
            outbox.intake()
            taken = outbox.take_trace(room, request.complete)
            if taken is None:
                continue
            room -= len(taken.nodes)
            parts.append((outbox, taken))
            if outbox.in_ready:
                outbox.in_ready = False
                from_ready.add(outbox)
            self._stop_yielding(outbox)
        if len(parts) == 1:
            return request
        if from_ready:
            self._ready = collections.deque(ob for ob in self._ready if ob not in from_ready)
        for outbox, _ in parts[1:]:
            self._schedule(outbox)
        # (complete: every part alike, see TraceOutbox.take_trace)
        return _Request("traces", [], [], parts=parts, complete=request.complete)

    def _settle(self, outbox: Outbox, request: _Request, result: Result, now: float) -> None:
        """Settle one exchange's outcome (under the lock), for each outbox of a combined POST."""
        if request.parts is None:
            outbox.settle(request, result, now)
            self._schedule(outbox)
            return
        if result.outcome is Outcome.REJECTED:  # maybe for one trace's sake: each goes again on its own
            for part_outbox, part in request.parts:
                part_outbox.inflight -= 1
                part_outbox.solo = True
                part_outbox._requeue(part)
                self._schedule(part_outbox)
            return
        for part_outbox, part in request.parts:
            part_outbox.settle(part, result, now)
            self._schedule(part_outbox)

    # -- the API's health -----------------------------------------------------------------------------------
    def _wait_out(self, outbox: Outbox, health: _ApiHealth, now: float) -> None:
        """``outbox``'s API is down: park it until the API answers (or its retry window ends)."""
        if outbox.expired(now):
            reason = "auth_failed" if health.reason == "auth" else "retry_window_exceeded"
            outbox.abandon(reason, None)
            self._schedule(outbox)
            return
        if health.probing:  # the probe's answer releases it, or sets the next pause
            health.waiting.add(outbox)
        else:  # paused: look again when the pause ends (or its retry window does, to give it up on time)
            outbox.not_before = max(outbox.not_before, self._pause_end(outbox, health))
            self._delay(outbox, wake=False)  # (this worker sets its timer from the heap)
        if isinstance(outbox, TraceOutbox):
            outbox.held = False  # waiting out an outage: new records count against the bound as they come

    def _pause_end(self, outbox: Outbox, health: _ApiHealth) -> float:
        """When ``outbox``, waiting out its API's pause, is looked at again: when the pause ends, or just
        after its retry window does if that is sooner (a pause grows to BACKOFF_MAX, Retry-After beyond)."""
        if outbox.first_failure is None:
            return health.paused_until
        return min(health.paused_until, outbox.first_failure + self.retry_window + 0.001)

    def _down(self, client: Client) -> bool:
        health = self._health.get(client)
        return health is not None and health.down_since is not None

    def _all_down(self, outboxes: Iterable[Outbox]) -> bool:
        return all(self._down(ob.client) for ob in outboxes)

    def _observe(self, client: Client, result: Result, now: float) -> None:
        """Learn from one exchange with ``client``'s API (under the lock)."""
        health = self._health.get(client)
        if health is None:
            if result.outcome is not Outcome.AUTH and not _api_trouble(result):
                return
            health = self._health[client] = _ApiHealth()
        if result.outcome is not Outcome.AUTH and not _api_trouble(result):  # it answered: it is up
            if health.down_since is not None:
                _log.log(
                    logging.INFO if health.announced else logging.DEBUG,
                    "galileo: the Galileo API at %s answers again after %.0f s: sending resumed",
                    client.api_url,
                    now - health.down_since,
                )
            del self._health[client]
            if health.down_since is None:
                return
            # Everything of this API waiting out the outage or its own backoff goes now.
            for outbox in [*health.waiting, *(ob for ob in self._outboxes if ob.client is client)]:
                if outbox.not_before > now:
                    outbox.not_before = now
                    outbox.first_failure = None
                self._schedule(outbox)
            return
        if health.probing:
            health.probing = False
            health.failed_probes += 1
        health.failures += 1
        if result.outcome is Outcome.AUTH:
            pause, reason = AUTH_PAUSE, "auth"
        elif health.failures >= OUTAGE_AFTER:
            pause = min(OUTAGE_PAUSE * 2**health.failed_probes, BACKOFF_MAX) * random.uniform(0.5, 1.0)
            reason = "unreachable"
        else:
            return  # a blip: the outbox retries on its own
        if result.retry_after is not None:
            pause = max(pause, min(result.retry_after, BACKOFF_MAX * 4))
        health.paused_until = now + pause
        if health.down_since is None or health.reason != reason:
            health.down_since = health.down_since or now
            health.reason = reason
            if reason == "auth":
                _log.error(
                    "galileo: the Galileo API at %s refused the API key (%s) even after a fresh login: check "
                    "GALILEO_API_KEY. Sending is paused (retried every %g s); records are kept for up to "
                    "%g s, then dropped and counted in galileo.stats()",
                    client.api_url,
                    result.detail or f"HTTP {result.status}",
                    AUTH_PAUSE,
                    self.retry_window,
                )
            else:
                # An API going down and up again (a server restarting, draining) is reported once per
                # WARN_INTERVAL; the drops it causes are reported (and counted) as always.
                health.announced = now - self._outage_said.get(client, -math.inf) >= WARN_INTERVAL
                if health.announced:
                    self._outage_said[client] = now
                _log.log(
                    logging.WARNING if health.announced else logging.DEBUG,
                    "galileo: the Galileo API at %s is unreachable (%s, %d failures in a row): sending is "
                    "paused and retried with backoff; records are kept for up to %.0f s (%d queued)",
                    client.api_url,
                    result.detail or f"HTTP {result.status}",
                    health.failures,
                    self.retry_window,
                    self._pending,
                )
        for outbox in health.waiting:  # look again when the pause ends: one of them probes
            outbox.not_before = max(outbox.not_before, self._pause_end(outbox, health))
            self._delay(outbox, wake=False)
        health.waiting.clear()
        self._wake.notify()

    def _work(self, generation: int) -> None:
        while True:
            with self._lock:
                taken = self._next(generation)
            if taken is None:
                return
            self._exchange(*taken)
            del taken  # an idle worker holds no outbox: what was delivered is freed at once

    def _exchange(self, outbox: Outbox, request: _Request) -> None:
        """Build and send one planned request (no lock held), then settle its outcome (under the lock)."""
        session = outbox.session if request.kind in ("traces", "batch") else None
        try:
            # A session still to be created is created (or found) before the first POST that names it.
            resolved = session.resolve(outbox.client, outbox.target) if session is not None else None
            if isinstance(resolved, Result):
                result = resolved  # not reached this time: retried with the traces, like a failed write
            else:
                method, path, body = outbox.build(request)
                data = outbox.client.encode(outbox.target, body)
                del body  # freed before the wait for the answer (see Client.encode)
                if isinstance(data, Result):
                    result = data
                else:
                    result = outbox.client.write(method, outbox.target, path, data)
        except Exception as exc:  # a bug in building a body must not kill the worker
            _log.debug("galileo: could not build a request", exc_info=True)
            result = Result(Outcome.REJECTED, detail=f"could not build the request: {type(exc).__name__}")
        with self._lock:
            self._inflight -= 1
            if self._awaiting_answers and not self._inflight:
                self._done.notify_all()
            now = time.monotonic()
            self._observe(outbox.client, result, now)
            if session is not None and session.failed and result.outcome is Outcome.OK:
                self._session_failed(session)
                traces = len(request.parts or ()) or (
                    len(outbox.traces) if isinstance(outbox, BatchOutbox) else 1
                )
                self._count("traces_without_session", traces)
            self._settling = True
            try:
                self._settle(outbox, request, result, now)
            finally:
                self._settling = False

    # -- waiting -------------------------------------------------------------------------------------------
    def wait(self, outboxes: Iterable[Outbox], timeout: float | None) -> int:
        """Wait until ``outboxes`` are idle or ``timeout`` passes; return the records still pending."""
        boxes = list(outboxes)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            if self._wait_until(lambda: all(ob.idle for ob in boxes), deadline):
                return 0
            return max(sum(ob.pending() for ob in boxes), 1)

    def _wait_until(self, done: Callable[[], bool], deadline: float | None) -> bool:
        """Wait (under the lock, on :attr:`_done`) until ``done()`` or ``deadline``; return ``done()``."""
        while not done():
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return False
            self._done.wait(remaining)
        return True

    def busy_pending(self, outboxes: Iterable[_O]) -> tuple[list[_O], int]:
        """The outboxes that still have something to send (the others can be forgotten) and their records
        not yet delivered nor given up, in one look under the lock."""
        with self._lock:
            busy = [ob for ob in outboxes if not ob.idle]
            return busy, sum(ob.pending() for ob in busy)

    def prune(self, outboxes: list[_O], floor: int) -> tuple[list[_O], int]:
        """Forget the delivered outboxes of a list kept to wait on later: (those still busy, the length at
        which to prune again). Callers prune only past that length, so the work is amortised, also while a
        dead backend keeps every outbox busy."""
        busy = self.busy_pending(outboxes)[0]
        return busy, max(floor, 2 * len(busy))

    def drain(self, timeout: float | None) -> int:
        """Wait until every outbox is idle (bounded); return the records still pending, then report.

        When every API with something pending is down (paused after failing again and again), nothing could
        go in time: what is pending is given up at once rather than after ``timeout``, so a service (or a
        test suite's app) does not wait at every shutdown for a backend that is not there. Only the requests
        already in flight are waited for (within ``timeout``; a refused connection answers at once): what
        they carry cannot be recalled, and is counted once answered, delivered or given up with the rest,
        rather than left queued with no worker to send it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            self._take_arrivals()
            boxes = list(self._outboxes)
            if boxes and self._all_down(boxes):
                self._await_answers(deadline)
                if self._all_down(boxes):  # (a probe in flight may have got through)
                    deadline = time.monotonic()  # the API is down: waiting would only delay the exit
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        pending = self.wait(boxes, remaining)
        with self._lock:
            if pending:  # what has not gone yet never will: say so (requests in flight stay "queued")
                self._last_warning = time.monotonic()  # in one report, below
                for outbox in boxes:
                    outbox.abandon("shutdown_timeout", None)
                    self._schedule(outbox)
            self._warn_dropped()
        return pending

    def _await_answers(self, deadline: float | None) -> None:
        """Wait (under the lock) until no request is in flight, or ``deadline`` passes."""
        self._awaiting_answers += 1
        try:
            self._wait_until(lambda: not self._inflight, deadline)
        finally:
            self._awaiting_answers -= 1

    def close(self, timeout: float | None) -> int:
        """Drain (bounded), then retire the worker threads; the counters stay, and new records start new
        workers (a worker still finishing a request exits once it is done)."""
        pending = self.drain(timeout)
        with self._lock:
            self._generation += 1
            self._threads = []
            self._wake.notify_all()
            self._done.notify_all()
        return pending


_sender_lock = threading.Lock()
_sender: Sender | None = None
_exit_registered = False


def get_sender(config: GalileoConfig) -> Sender:
    """The process-wide sender; created (without threads) by the first logger that needs it."""
    global _sender
    sender = _sender
    if sender is None:
        with _sender_lock:
            if _sender is None:
                _sender = Sender(
                    workers=config.sender_workers,
                    queue_size=config.queue_size,
                    retry_window=config.retry_window,
                )
                activity.on_idle = _sender._requests_idle
                _register_exit()
            sender = _sender
    return sender


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        atexit.register(_drain_at_exit)
        _exit_registered = True


def shutdown(timeout: float | None = EXIT_TIMEOUT) -> int:
    """Deliver what is pending, waiting at most ``timeout`` seconds; return the records left undelivered.

    Safe to call from a FastAPI/Starlette lifespan's shutdown (it blocks the calling thread, bounded);
    ``TracingMiddleware`` does it for its app when the server shuts the app down. The worker threads stop;
    the sender keeps its counters (:func:`stats`), accepts records afterwards and starts new workers when
    needed.
    """
    sender = _sender
    if sender is None:
        return 0
    return sender.close(timeout)


def reset(timeout: float | None = EXIT_TIMEOUT) -> int:
    """Shut the process sender down and forget it, counters included (tests; the next record starts anew)."""
    global _sender
    with _sender_lock:
        sender, _sender = _sender, None
    return 0 if sender is None else sender.close(timeout)


def stats() -> dict[str, Any]:
    """The sender's counters (see :meth:`Sender.stats`); zeros before the first record."""
    sender = _sender
    if sender is None:
        return Sender().stats()
    return sender.stats()


#: Called at interpreter exit before the drain (e.g. to hand over batch traces nobody flushed).
_exit_hooks: list[Callable[[], None]] = []


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit, before the sender's drain (once per hook; for this package)."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)
    _register_exit()


def _drain_at_exit() -> None:
    for hook in _exit_hooks:
        with contextlib.suppress(Exception):  # never fail interpreter exit
            hook()
    with contextlib.suppress(Exception):
        shutdown(EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    """The child of a fork gets a fresh sender and fresh clients: threads and sockets do not survive."""
    global _sender, _sender_lock
    _sender = None
    _sender_lock = threading.Lock()
    activity.active, activity.ended_at, activity.on_idle = 0, -math.inf, None
    reset_clients()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
