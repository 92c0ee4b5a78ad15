"""Distributed mode's outbox: which request of a trace may go next, and what an answer means for it.

A pure state machine, like every outbox (:mod:`galileo._sender._outbox`). A :class:`TraceOutbox` holds the
records of one trace from one logger, and keeps these rules:

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
6. **Transient failures wait, permanent ones do not** (the retry rules of :mod:`galileo._sender._outbox`).
   A record put back goes again as it would have gone the first time.
7. **Shared fate, once.** A trace may share a ``POST /traces`` with other outboxes' traces
   (:meth:`TraceOutbox.take_trace`). When that POST fails, each trace retries on its own backoff and joins no
   other body until it is delivered; after a second failure of a shared POST, or a rejection of one (which
   gives nothing up: each trace is tried again alone, at once), the outbox goes *solo* for good. So one
   poisoned record never holds the others back.
"""

from __future__ import annotations

from typing import Any

from galileo import schema
from galileo._sender._outbox import (
    _ACKED,
    _LEVELS,
    _NEW,
    _SENDING,
    _TRANSIENT,
    MAX_RECORDS_PER_REQUEST,
    Node,
    Request,
    Tally,
    reason_for,
)
from galileo._sender._records import TraceRecords
from galileo._transport import Outcome, Result

__all__ = ["TraceOutbox"]


class TraceOutbox(TraceRecords):
    """Distributed mode: what of one logger's trace goes next, and what an answer means for it (see the
    module docstring's rules; the records and their states are :class:`TraceRecords`'s)."""

    # -- planning ------------------------------------------------------------------------------------------
    def _is_ready(self, node: Node) -> bool:
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

    def take(self, others_busy: bool = False) -> Request | None:
        ready = next((self.nodes[i] for i in self._new if self._is_ready(self.nodes[i])), None)
        if ready is not None:
            if ready.parent_id is None:
                return self._take_subtree(ready, others_busy)
            request = Request(self, "spans", parent_id=ready.parent_id)
            nodes: list[Node] = []
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
            self.updating += 1
            return Request(self, "span_update", roots=[node])
        if self._completion_ready(others_busy):
            self.completion_sent = True
            self.inflight += 1
            self.updating += 1
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
        nodes: list[Node] = []
        self._subtree(root, nodes, request)
        if len(nodes) > room or self._goes_complete(root, nodes, others_busy) != complete:
            return None
        request.complete = complete
        return self._taken(request, [root], nodes)

    def _take_subtree(self, root: Node, others_busy: bool) -> Request:
        request = Request(self, "traces")
        nodes: list[Node] = []
        self._subtree(root, nodes, request)
        request.complete = self._goes_complete(root, nodes, others_busy)
        return self._taken(request, [root], nodes)

    def _subtree(self, root: Node, into: list[Node], request: Request) -> None:
        """Add ``root`` and the records below it not sent yet to ``into`` (up to the body's limit)."""
        stack = [root]
        while stack and len(into) < MAX_RECORDS_PER_REQUEST:
            node = stack.pop()
            into.append(node)
            if node is not root:
                assert node.parent_id is not None
                request.nested.setdefault(node.parent_id, []).append(node)
            stack.extend(c for c in reversed(node.children) if c.state == _NEW)

    def _goes_complete(self, root: Node, nodes: list[Node], others_busy: bool) -> bool:
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

    def _taken(self, request: Request, roots: list[Node], nodes: list[Node]) -> Request:
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
        if kind in ("trace_update", "span_update"):
            self.updating -= 1
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
