"""What every outbox shares: requests, tallies, the retry schedule, and batch mode's outbox.

Outboxes are pure state machines: no threads, no locks, no clock of their own (``now`` is passed in), no
counters of the sender's. The dispatcher (:mod:`galileo._sender._dispatcher`) is their only user: it hands
them events, asks them for the next request (:meth:`Outbox.take`), and counts the :class:`Tally` each
outcome returns (:meth:`Outbox.settle`). Distributed mode's :class:`~galileo._sender._trace.TraceOutbox`
keeps the ordering rules (see its module); batch mode's :class:`BatchOutbox` sends one flush's traces in
one ``POST /traces``.

The retry rules every outbox keeps: a transient outcome (no answer, 408, 429, 5xx, a parent the server has
not stored yet, credentials refused) puts the request back, to go again after a backoff
(:data:`BACKOFF_BASE` doubling to :data:`BACKOFF_MAX`, times a random factor in [0.5, 1], at least
Retry-After, at least :data:`AUTH_PAUSE` after refused credentials) while the retry window lasts, counted
from the first failure since the last success; the last attempt goes when the window ends. Then the records
are given up (``retry_window_exceeded``, or ``auth_failed``). A permanent outcome (422, 413, other 4xx)
gives them up at once (:func:`reason_for`).
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
    "Node",
    "Outbox",
    "Request",
    "Tally",
    "reason_for",
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

    #: Records and updates given up, by reason: shared empty mappings until the first drop (a Tally is made
    #: per answer, and almost all answers give nothing up).
    dropped: Counter[str]
    updates_dropped: Counter[str]

    def __init__(self) -> None:
        self.sent = 0  #: records acknowledged
        self.updates_sent = 0  #: PATCHes of records already delivered, acknowledged
        self.retried = 0  #: requests put back to go again
        self.dropped = _NONE
        self.updates_dropped = _NONE
        self.detail = ""  #: the failure's description, when records were given up

    def drop(self, reason: str, n: int, result: Result | None = None, *, updates: bool = False) -> None:
        if not n:
            return
        if updates:
            if self.updates_dropped is _NONE:
                self.updates_dropped = Counter()
            self.updates_dropped[reason] += n
        else:
            if self.dropped is _NONE:
                self.dropped = Counter()
            self.dropped[reason] += n
        if result is not None and result.detail:
            self.detail = result.detail

    @property
    def given_up(self) -> int:
        return sum(self.dropped.values()) if self.dropped else 0

    def __repr__(self) -> str:
        return (
            f"Tally(sent={self.sent}, updates_sent={self.updates_sent}, retried={self.retried}, "
            f"dropped={dict(self.dropped)}, updates_dropped={dict(self.updates_dropped)})"
        )


_NONE: Counter[str] = Counter()  # (never written: see Tally)


class Node:
    """One record known to a trace outbox."""

    __slots__ = ("children", "concluded", "needs_patch", "parent_id", "record", "state")

    def __init__(self, record: schema.Record, parent_id: str | None) -> None:
        self.record = record
        self.parent_id = parent_id
        self.state = _NEW
        self.children: list[Node] = []
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
        nodes: Sequence[Node] = (),
        roots: Sequence[Node] = (),
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
        self.nested: dict[str, list[Node]] = {}
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

    def _wire(self, node: Node) -> dict[str, Any]:
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
            delay = max(delay, AUTH_PAUSE)  # (read at call time: tests shorten it)
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
