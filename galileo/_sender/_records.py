"""The records of one trace from one logger, and the state of each: the data behind a trace outbox.

:class:`TraceRecords` takes the logger's events (a record added, concluded, the trace completed), knows which
records are not sent yet, in flight, delivered or given up, and keeps rule 5 of :mod:`galileo._sender._trace`
(failure spreads down, never up). What goes next and what an answer means is
:class:`~galileo._sender._trace.TraceOutbox`'s, built on it. Pure: no threads, no clock, no counters of the
sender's; what it gives up is returned in a :class:`~galileo._sender._outbox.Tally`.
"""

from __future__ import annotations

from collections.abc import Sequence

from galileo import schema
from galileo._sender._outbox import _ACKED, _FAILED, _NEW, _SENDING, Node, Outbox, Tally
from galileo._transport import Client, Result, Target

__all__ = ["TraceRecords"]


class TraceRecords(Outbox):
    """One logger's records of one trace, by state."""

    completion: schema.Trace | None = None
    completion_sent = False
    inflight = 0  #: requests of this outbox under way
    updating = 0  #: ... of which updates (PATCHes)
    solo = False  #: goes alone from now on (rule 7)
    shared_failures = 0

    def __init__(
        self, client: Client, target: Target, retry_window: float, trace_id: str, *, owned: bool
    ) -> None:
        super().__init__(client, target, retry_window)
        self.trace_id = trace_id
        self.owned = owned  # this logger started the trace (else it continues one: no trace record here)
        self.nodes: dict[str, Node] = {}
        self._new: dict[str, None] = {}  # ids of NEW nodes, in arrival order
        self._patches: dict[str, None] = {}  # ids of ACKED nodes needing a PATCH

    # -- events --------------------------------------------------------------------------------------------
    def add(self, record: schema.Record, parent_id: str | None) -> Tally | None:
        """A new record; a Tally when it was given up at once (its parent was)."""
        node = Node(record, parent_id)
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
        root = self.nodes.get(self.trace_id)
        if root is None or root.state != _FAILED:
            return None
        tally = Tally()
        self._complete_failed(tally)
        return tally

    def idle(self) -> bool:
        if self.inflight or self._new or self._patches:
            return False
        return self.completion is None or self.completion_sent

    def pending(self) -> int:
        sending = sum(1 for n in self.nodes.values() if n.state == _SENDING)
        return len(self._new) + sending

    def _fail(self, nodes: Sequence[Node], reason: str, result: Result | None, tally: Tally) -> None:
        """Give up ``nodes`` for ``reason`` and every record below them not delivered as ``parent_failed``
        (rule 5)."""
        below: list[Node] = []
        failed = self._give_up(nodes, below)
        tally.drop(reason, failed, result)
        orphans = 0
        while below:
            orphans += self._give_up([below.pop()], below)
        tally.drop("parent_failed", orphans)
        self._complete_failed(tally)

    def _give_up(self, nodes: Sequence[Node], below: list[Node]) -> int:
        """Mark ``nodes`` given up (those not settled yet: how many), and add their children not sent to
        ``below``."""
        failed = 0
        for node in nodes:
            if node.state in (_ACKED, _FAILED):
                continue
            node.state = _FAILED
            node.needs_patch = False
            self._new.pop(node.record.id, None)
            failed += 1
            below.extend(c for c in node.children if c.state == _NEW)
        return failed

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
            tally.drop(in_flight_reason, self.updating, updates=True)
            self.inflight = self.updating = 0
        updates = len(self._patches)
        for record_id in self._patches:
            self.nodes[record_id].needs_patch = False
        self._patches.clear()
        if self.completion is not None and not self.completion_sent:
            self.completion_sent = True
            updates += 1
        tally.drop(reason, updates, updates=True)
        return tally
