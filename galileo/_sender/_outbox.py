"""Outboxes: which request of a trace may go next, and what an answer means for its records.

Pure state machines: no threads, no locks, no clock of their own (``now`` is passed in), no counters of the
sender's. The dispatcher (:mod:`galileo._sender._dispatcher`) is their only user: it hands them events,
asks them for the next request, and counts the :class:`Tally` each outcome returns.

A :class:`TraceOutbox` holds the records of one trace from one logger, and keeps these rules:

1. **Parents first.** A record's POST starts only after its parent's ingest was acknowledged (2xx), or it
   travels nested in its parent's body. A parent this outbox never saw (an upstream service's span, or the
   trace of a logger continuing one) counts as acknowledged.
2. **Coalescing.** A record not sent yet travels nested in its nearest ancestor not sent yet; ready
   siblings of one parent share one ``POST /spans``. At most :data:`MAX_RECORDS_PER_REQUEST` records go in
   one body.
3. **Concluded once.** A record concluded before its POST goes once, concluded. A workflow or agent span
   concluded after its POST started gets one PATCH, once that POST is acknowledged.
4. **Complete last.** The trace's ``is_complete`` PATCH goes only after every other record of the trace
   from this process was acknowledged or given up (``others_busy`` tells of other loggers' outboxes of the
   trace). A trace concluded before its POST, with every record of it in that POST and all of them
   concluded, goes in that POST with ``is_complete: true`` and no PATCH follows.
5. **Failure spreads down, never up.** A record given up takes every record below it not yet delivered
   with it (``parent_failed``); a child added under a record given up is given up at once.
6. **Transient failures wait, permanent ones do not.** A transient outcome (no answer, 408, 429, 5xx,
   a parent the server has not stored yet, credentials refused) puts the request's records back, to go
   again after a backoff (:data:`BACKOFF_BASE` doubling to :data:`BACKOFF_MAX`, times a random factor in
   [0.5, 1], at least Retry-After) while the retry window lasts, counted from the first failure since the
   last success; then they are given up (``retry_window_exceeded``, or ``auth_failed``). A permanent one
   (422, 413, other 4xx) gives them up at once.
7. **Shared fate, twice at most.** A trace may share a ``POST /traces`` with other outboxes' traces
   (:meth:`TraceOutbox.take_trace`). When such a POST is rejected outright, or fails transiently a second
   time, the outbox goes *solo*: from then on its trace travels alone, so one poisoned record cannot hold
   the others back. A rejection of a shared POST gives nothing up: each trace is tried again alone.

A :class:`BatchOutbox` holds one flush's traces, sent as one ``POST /traces`` with the same retry rules.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from typing import Any

from galileo import schema
from galileo._sessions import SessionRef
from galileo._transport import Client, Outcome, Result, Target

__all__ = [
    "AUTH_PAUSE",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "MAX_RECORDS_PER_REQUEST",
    "BatchOutbox",
    "Outbox",
    "Request",
    "Tally",
    "TraceOutbox",
]

#: First retry delay; doubled per attempt up to BACKOFF_MAX, then scaled by a random factor in [0.5, 1].
BACKOFF_BASE = 0.25
BACKOFF_MAX = 30.0
#: The least wait after the API refused our credentials even after a fresh login.
AUTH_PAUSE = 30.0
#: At most this many records in one request body.
MAX_RECORDS_PER_REQUEST = 500

_NEW, _SENDING, _ACKED, _FAILED = range(4)
#: Records that open a level and are concluded later (a leaf is added concluded).
_LEVELS = (schema.WorkflowSpan, schema.AgentSpan)
_TRANSIENT = frozenset({Outcome.RETRY, Outcome.PARENT_MISSING, Outcome.AUTH})


class Tally:
    """What one step of an outbox did to its records, for the dispatcher to count."""

    __slots__ = ("detail", "dropped", "retried", "sent", "updates_dropped", "updates_sent")

    def __init__(self) -> None:
        self.sent = 0  #: records acknowledged
        self.updates_sent = 0  #: PATCHes of records already delivered, acknowledged
        self.retried = 0  #: requests put back to go again
        self.dropped: Counter[str] = Counter()  #: records given up, by reason
        self.updates_dropped: Counter[str] = Counter()  #: updates given up, by reason
        self.detail = ""  #: the failure's description, when records were given up

    def drop(self, reason: str, n: int, result: Result | None = None, *, updates: bool = False) -> None:
        if n:
            (self.updates_dropped if updates else self.dropped)[reason] += n
            if result is not None and result.detail:
                self.detail = result.detail

    def __repr__(self) -> str:
        return (
            f"Tally(sent={self.sent}, updates_sent={self.updates_sent}, retried={self.retried}, "
            f"dropped={dict(self.dropped)}, updates_dropped={dict(self.updates_dropped)})"
        )


class _Node:
    """One record known to a trace outbox."""

    __slots__ = ("children", "concluded", "needs_patch", "parent_id", "record", "state")

    def __init__(self, record: schema.Record, parent_id: str | None) -> None:
        self.record = record
        self.parent_id = parent_id
        self.state = _NEW
        self.children: list[_Node] = []
        self.concluded = False
        self.needs_patch = False


class Request:
    """One planned exchange. Everything :meth:`body` reads was fixed when it was planned, so it is built on
    an I/O thread while the dispatcher goes on changing the outbox."""

    __slots__ = ("complete", "kind", "nested", "nodes", "outbox", "owner", "parent_id", "parts", "roots")

    def __init__(
        self,
        outbox: Outbox,
        kind: str,
        nodes: Sequence[_Node] = (),
        roots: Sequence[_Node] = (),
        parent_id: str | None = None,
        *,
        complete: bool = False,
    ) -> None:
        self.outbox = outbox
        self.kind = kind  # "traces", "spans", "span_update", "trace_update" or "batch"
        self.nodes = nodes
        self.roots = roots
        self.parent_id = parent_id
        self.complete = complete
        #: record id -> its children that travel nested in this body (the rest went, or go, on their own)
        self.nested: dict[str, list[_Node]] = {}
        #: A ``POST /traces`` shared by several outboxes' traces: each one's own request, this one first.
        self.parts: list[Request] | None = None
        #: Whom the dispatcher sends it for (its tag; the outbox never reads it).
        self.owner: object = None

    @property
    def records(self) -> int:
        return sum(len(p.nodes) for p in self.parts) if self.parts else len(self.nodes)

    def body(self) -> tuple[str, str, dict[str, Any]]:
        """Method, path relative to the project, and JSON body."""
        return self.outbox.build(self)

    def wires(self) -> list[dict[str, Any]]:
        """The JSON of the roots, each with the records of this request below it nested."""
        return [self._wire(root) for root in self.roots]

    def _wire(self, node: _Node) -> dict[str, Any]:
        data = node.record.to_wire(include_children=False)
        if "spans" in data:
            data["spans"] = [self._wire(child) for child in self.nested.get(node.record.id, ())]
        return data


class Outbox:
    """What trace and batch outboxes share: where they go, and the retry schedule of their requests."""

    session: SessionRef | None = None
    attempts = 0
    first_failure: float | None = None
    #: The earliest time the next request may go (a retry's backoff, or a new trace's linger).
    not_before = 0.0

    def __init__(self, client: Client, target: Target, retry_window: float) -> None:
        self.client = client
        self.target = target
        self.retry_window = retry_window

    def expired(self, now: float) -> bool:
        """Whether the retry window, counted from the first failure since the last success, is spent."""
        if self.first_failure is None:
            self.first_failure = now
        return now - self.first_failure > self.retry_window

    def retry_later(self, result: Result, now: float) -> bool:
        """Set the next attempt's time; False when the retry window is spent (the caller gives up)."""
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
        window_left = self.first_failure + self.retry_window - now
        self.not_before = max(self.not_before, now + min(delay, window_left + 0.001))
        return True

    def succeeded(self) -> None:
        self.attempts = 0
        self.first_failure = None

    # What each kind of outbox implements.
    def idle(self) -> bool:
        raise NotImplementedError

    def pending(self) -> int:
        """Records neither delivered nor given up."""
        raise NotImplementedError

    def has_ready(self, others_busy: bool = False) -> bool:
        raise NotImplementedError

    def take(self, others_busy: bool = False) -> Request | None:
        raise NotImplementedError

    def settle(self, request: Request, result: Result, now: float, *, shared: bool = False) -> Tally:
        raise NotImplementedError

    def abandon(self, reason: str, in_flight_reason: str | None = None) -> Tally:
        """Give up everything not delivered: what waits under ``reason``, what is in flight under
        ``in_flight_reason`` (if given; else it is left to its answer)."""
        raise NotImplementedError

    def build(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        raise NotImplementedError

    def _session_fields(self) -> dict[str, Any]:
        session = self.session
        if session is None or session.id is None:
            return {}
        return {"session_id": session.id, "session_external_id": session.external_id}


def reason_for(result: Result) -> str:
    """The reason records are given up after ``result``."""
    if result.outcome in _TRANSIENT:
        return "auth_failed" if result.outcome is Outcome.AUTH else "retry_window_exceeded"
    if result.status == 413:
        return "too_large"
    if result.status == 422:
        return "schema_rejected"
    return f"rejected_{result.status}" if result.status else "rejected"


class TraceOutbox(Outbox):
    """Distributed mode: the records of one trace from one logger (see the module docstring's rules)."""

    completion: schema.Trace | None = None
    completion_sent = False
    inflight = 0  #: requests of this outbox under way
    solo = False  #: goes alone from now on (rule 7)
    shared_failures = 0

    def __init__(
        self, client: Client, target: Target, retry_window: float, trace_id: str, *, owned: bool
    ) -> None:
        super().__init__(client, target, retry_window)
        self.trace_id = trace_id
        self.owned = owned  # this logger started the trace (else it continues one: no trace record here)
        self.nodes: dict[str, _Node] = {}
        self._new: dict[str, None] = {}  # ids of NEW nodes, in arrival order
        self._patches: dict[str, None] = {}  # ids of ACKED nodes needing a PATCH

    # -- events --------------------------------------------------------------------------------------------
    def add(self, record: schema.Record, parent_id: str | None) -> Tally | None:
        """A new record; a Tally when it was given up at once (its parent was)."""
        node = _Node(record, parent_id)
        self.nodes[record.id] = node
        self._new[record.id] = None
        parent = self.nodes.get(parent_id) if parent_id else None
        if parent is None:
            return None
        parent.children.append(node)
        if parent.state != _FAILED:
            return None
        tally = Tally()
        self._fail([node], "parent_failed", None, tally)
        return tally

    def conclude(self, record_id: str) -> None:
        """The record was concluded: its final state goes with its POST, or in a PATCH after it."""
        node = self.nodes.get(record_id)
        if node is None or node.concluded:
            return
        node.concluded = True
        if node.state == _SENDING:
            node.needs_patch = True
        elif node.state == _ACKED:
            node.needs_patch = True
            self._patches[record_id] = None

    def complete(self, trace: schema.Trace) -> Tally | None:
        """The trace was concluded: rule 4. A Tally when the trace record was given up already."""
        if not self.owned:
            return None
        self.completion = trace
        tally = Tally()
        self._complete_failed(tally)
        return tally if tally.updates_dropped else None

    # -- planning ------------------------------------------------------------------------------------------
    def _is_ready(self, node: _Node) -> bool:
        if node.parent_id is None:
            return True
        parent = self.nodes.get(node.parent_id)
        return parent is None or parent.state == _ACKED

    def _completion_ready(self, others_busy: bool) -> bool:
        return (
            self.completion is not None
            and not self.completion_sent
            and not self._new
            and not self._patches
            and self.inflight == 0
            and not others_busy
        )

    def has_ready(self, others_busy: bool = False) -> bool:
        if self._patches or self._completion_ready(others_busy):
            return True
        return any(self._is_ready(self.nodes[i]) for i in self._new)

    def idle(self) -> bool:
        if self.inflight or self._new or self._patches:
            return False
        return self.completion is None or self.completion_sent

    def pending(self) -> int:
        sending = sum(1 for n in self.nodes.values() if n.state == _SENDING)
        return len(self._new) + sending

    def take(self, others_busy: bool = False) -> Request | None:
        ready = next((self.nodes[i] for i in self._new if self._is_ready(self.nodes[i])), None)
        if ready is not None:
            if ready.parent_id is None:
                return self._take_subtree(ready, others_busy)
            request = Request(self, "spans", parent_id=ready.parent_id)
            nodes: list[_Node] = []
            roots = []
            for i in list(self._new):
                node = self.nodes[i]
                if node.parent_id == ready.parent_id and node.state == _NEW:
                    if len(nodes) >= MAX_RECORDS_PER_REQUEST:
                        break
                    roots.append(node)
                    self._subtree(node, nodes, request)
            return self._taken(request, roots, nodes)
        if self._patches:
            record_id = next(iter(self._patches))
            del self._patches[record_id]
            node = self.nodes[record_id]
            node.needs_patch = False
            self.inflight += 1
            return Request(self, "span_update", roots=[node])
        if self._completion_ready(others_busy):
            self.completion_sent = True
            self.inflight += 1
            return Request(self, "trace_update")
        return None

    def take_trace(self, room: int, complete: bool, others_busy: bool) -> Request | None:
        """The trace record with its subtree not sent yet, if that is what would go next, holds at most
        ``room`` records, and goes ``complete`` or not as asked: to share a ``POST /traces`` (rule 7)."""
        root = self.nodes.get(self.trace_id)
        if (
            root is None
            or root.state != _NEW
            or not self.owned
            or self.solo
            or self.first_failure is not None
        ):
            return None
        request = Request(self, "traces")
        nodes: list[_Node] = []
        self._subtree(root, nodes, request)
        if len(nodes) > room or self._goes_complete(root, nodes, others_busy) != complete:
            return None
        request.complete = complete
        return self._taken(request, [root], nodes)

    def _take_subtree(self, root: _Node, others_busy: bool) -> Request:
        request = Request(self, "traces")
        nodes: list[_Node] = []
        self._subtree(root, nodes, request)
        request.complete = self._goes_complete(root, nodes, others_busy)
        return self._taken(request, [root], nodes)

    def _subtree(self, root: _Node, into: list[_Node], request: Request) -> None:
        """Add ``root`` and the records below it not sent yet to ``into`` (up to the body's limit)."""
        stack = [root]
        while stack and len(into) < MAX_RECORDS_PER_REQUEST:
            node = stack.pop()
            into.append(node)
            if node is not root:
                assert node.parent_id is not None
                request.nested.setdefault(node.parent_id, []).append(node)
            stack.extend(c for c in reversed(node.children) if c.state == _NEW)

    def _goes_complete(self, root: _Node, nodes: list[_Node], others_busy: bool) -> bool:
        """Rule 4: the POST of the trace record ``root`` with ``nodes`` can say ``is_complete``."""
        return (
            root.record.id == self.trace_id
            and self.completion is not None
            and not self.completion_sent
            and self.inflight == 0
            and not self._patches
            and not others_busy
            and len(nodes) == len(self._new)
            and all(node.concluded or not isinstance(node.record, _LEVELS) for node in nodes)
        )

    def _taken(self, request: Request, roots: list[_Node], nodes: list[_Node]) -> Request:
        for node in nodes:
            node.state = _SENDING
            node.needs_patch = False
            del self._new[node.record.id]
        self.inflight += 1
        request.roots = roots
        request.nodes = nodes
        return request

    def build(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        if request.kind == "span_update":
            span = request.roots[0].record
            assert isinstance(span, _LEVELS)  # only they conclude after going out
            return "PATCH", f"/spans/{span.id}", schema.span_update_body(span, log_stream_id=None)
        if request.kind == "trace_update":
            assert self.completion is not None
            body = schema.trace_update_body(self.completion, log_stream_id=None, is_complete=True)
            return "PATCH", f"/traces/{self.trace_id}", body
        if request.kind == "traces":
            wires = [w for part in request.parts or [request] for w in part.wires()]
            fields = self._session_fields()
            return (
                "POST",
                "/traces",
                schema.traces_ingest_body(wires, log_stream_id=None, is_complete=request.complete, **fields),
            )
        assert request.parent_id is not None
        body = schema.spans_ingest_body(
            request.wires(), trace_id=self.trace_id, parent_id=request.parent_id, log_stream_id=None
        )
        return "POST", "/spans", body

    # -- outcomes ------------------------------------------------------------------------------------------
    def settle(self, request: Request, result: Result, now: float, *, shared: bool = False) -> Tally:
        """Learn the outcome of ``request`` (``shared``: a POST it shared with other traces, rule 7)."""
        tally = Tally()
        self.inflight -= 1
        kind = request.kind
        if result.outcome is Outcome.OK:
            self.succeeded()
            if kind in ("trace_update", "span_update"):
                tally.updates_sent += 1
                return tally
            for node in request.nodes:
                if node.state == _SENDING:
                    node.state = _ACKED
                    tally.sent += 1
                if node.needs_patch:  # concluded while its POST was in flight
                    self._patches[node.record.id] = None
            if request.complete:
                self.completion_sent = True
            return tally
        if shared:
            self.shared_failures += 1
            if result.outcome is Outcome.REJECTED or self.shared_failures >= 2:
                self.solo = True
            if result.outcome is Outcome.REJECTED:  # maybe for another trace's sake: try alone, at once
                self._requeue(request)
                return tally
        if result.outcome in _TRANSIENT and self.retry_later(result, now):
            tally.retried += 1
            self._requeue(request)
            return tally
        reason = reason_for(result)
        if kind in ("trace_update", "span_update"):
            tally.drop(reason, 1, result, updates=True)
        else:
            self._fail(request.nodes, reason, result, tally)
        return tally

    def _requeue(self, request: Request) -> None:
        if request.kind == "trace_update":
            self.completion_sent = False
        elif request.kind == "span_update":
            node = request.roots[0]
            if node.state == _ACKED:
                node.needs_patch = True
                self._patches[node.record.id] = None
        else:
            for node in request.nodes:
                if node.state == _SENDING:
                    node.state = _NEW
                    self._new[node.record.id] = None

    def _fail(self, nodes: Sequence[_Node], reason: str, result: Result | None, tally: Tally) -> None:
        """Give up ``nodes`` and every record below them not delivered (rule 5)."""
        failed = 0
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if node.state in (_ACKED, _FAILED):
                continue
            node.state = _FAILED
            node.needs_patch = False
            self._new.pop(node.record.id, None)
            failed += 1
            stack.extend(c for c in node.children if c.state == _NEW)
        tally.drop(reason, failed, result)
        self._complete_failed(tally)

    def _complete_failed(self, tally: Tally) -> None:
        """A completion whose trace record was given up never goes: count it (rule 5)."""
        root = self.nodes.get(self.trace_id)
        if (
            root is not None
            and root.state == _FAILED
            and self.completion is not None
            and not self.completion_sent
        ):
            self.completion_sent = True
            tally.drop("parent_failed", 1, None, updates=True)

    def abandon(self, reason: str, in_flight_reason: str | None = None) -> Tally:
        tally = Tally()
        self._fail([self.nodes[i] for i in list(self._new)], reason, None, tally)
        if in_flight_reason is not None:
            sending = [n for n in self.nodes.values() if n.state == _SENDING]
            for node in sending:
                node.state = _FAILED
            tally.drop(in_flight_reason, len(sending))
            self.inflight = 0
        updates = len(self._patches)
        for record_id in self._patches:
            self.nodes[record_id].needs_patch = False
        self._patches.clear()
        if self.completion is not None and not self.completion_sent:
            self.completion_sent = True
            updates += 1
        tally.drop(reason, updates, updates=True)
        return tally


class BatchOutbox(Outbox):
    """Batch mode: the traces of one flush, sent in one ``POST /traces`` (complete)."""

    def __init__(
        self,
        client: Client,
        target: Target,
        retry_window: float,
        traces: Sequence[schema.Trace],
        records: int,
        session: SessionRef | None = None,
    ) -> None:
        super().__init__(client, target, retry_window)
        self.session = session
        self.traces = list(traces)
        self.records = records
        self.state = _NEW

    def has_ready(self, others_busy: bool = False) -> bool:
        return self.state == _NEW

    def idle(self) -> bool:
        return self.state in (_ACKED, _FAILED)

    def pending(self) -> int:
        return self.records if self.state in (_NEW, _SENDING) else 0

    def take(self, others_busy: bool = False) -> Request | None:
        if self.state != _NEW:
            return None
        self.state = _SENDING
        return Request(self, "batch")

    def build(self, request: Request) -> tuple[str, str, dict[str, Any]]:
        fields = self._session_fields()
        return (
            "POST",
            "/traces",
            schema.traces_ingest_body(self.traces, log_stream_id=None, is_complete=True, **fields),
        )

    def settle(self, request: Request, result: Result, now: float, *, shared: bool = False) -> Tally:
        tally = Tally()
        if result.outcome is Outcome.OK:
            self.state = _ACKED
            tally.sent = self.records
            return tally
        if result.outcome in (Outcome.RETRY, Outcome.AUTH) and self.retry_later(result, now):
            tally.retried += 1
            self.state = _NEW
            return tally
        self.state = _FAILED
        tally.drop(reason_for(result), self.records, result)
        return tally

    def abandon(self, reason: str, in_flight_reason: str | None = None) -> Tally:
        tally = Tally()
        if self.state == _NEW:
            self.state = _FAILED
            tally.drop(reason, self.records)
        elif self.state == _SENDING and in_flight_reason is not None:
            self.state = _FAILED
            tally.drop(in_flight_reason, self.records)
        return tally
