"""What a logger knows of its current trace: one object, reached through ``GalileoLogger._state()``.

A :class:`TraceState` holds the stack of open levels (:class:`Level`: the trace, workflow/agent spans, or an
upstream parent), the batch traces not flushed yet, the current trace's outbox at the sender and the outboxes
still worth waiting for, and the upstream trace and parent a continuing logger names. Nothing else of a
logger changes while it logs.

Who owns it: an ordinary logger (and a request's logger) has one, made with it; a process logger of ``@log``
and ``galileo_context`` (:class:`galileo._context_loggers.ContextLogger`) keeps one per context in a context
variable, so one logger object serves concurrent tasks and threads; the outermost decorated call gives its
context a fresh one for its duration (``by_call``). Every reader asks the logger's ``_state()`` once and uses
what it returns; no other module keeps a trace's state.

The logger's lock guards it: it is read and changed under ``GalileoLogger._lock``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from galileo import schema
from galileo._incoming import W3CJoin

if TYPE_CHECKING:
    from galileo._incoming import W3CContext
    from galileo.logger import Handed, TraceHandle

__all__ = ["PRUNE_OUTBOXES", "Level", "TraceState", "now_ns"]

#: The monotonic clock of durations (the C function itself: request paths call it several times).
now_ns: Callable[[], int] = time.perf_counter_ns

#: A list of outboxes handed over is pruned of delivered ones once it is longer than this (at least).
PRUNE_OUTBOXES = 64


class Level:
    """An open level of the tree: the trace, a workflow/agent span, or an upstream parent (record None)."""

    __slots__ = ("id", "last_ns", "last_wall", "record", "start_ns")

    def __init__(self, record: schema.Record | None, record_id: str, now: int) -> None:
        self.record = record
        self.id = record_id
        self.start_ns = now
        self.last_ns = now  # when the last event under this level happened (perf counter)...
        self.last_wall = record.created_at if record is not None else None  # ...and its wall-clock time


class TraceState:
    """One logger's (or one context's) current trace; see the module docstring."""

    __slots__ = (
        "by_call",
        "outbox",
        "outboxes",
        "owner",
        "prune_at",
        "stack",
        "traces",
        "upstream_parent_id",
        "upstream_trace_id",
        "w3c",
    )

    def __init__(
        self,
        trace_id: str | None = None,
        parent_id: str | None = None,
        w3c: W3CContext | None = None,
        *,
        owner: object = None,
        by_call: bool = False,
    ) -> None:
        self.stack: list[Level] = []  # the open levels, the trace (or upstream parent) first
        self.traces: list[schema.Trace] = []  # batch mode: traces not flushed yet
        self.outbox: TraceHandle | None = None  # distributed mode: the open trace's outbox
        self.outboxes: list[Handed] = []  # outboxes handed over that may still have work
        self.prune_at = PRUNE_OUTBOXES  # ``outboxes`` is pruned once longer than this (amortised)
        self.upstream_trace_id = trace_id  # a continuing logger's upstream trace...
        self.upstream_parent_id = parent_id or trace_id  # ...and the parent its top-level spans name
        self.owner = owner  # a context's: the task (else thread) that made it (see ContextLogger)
        self.by_call = by_call  # a context's: its trace was started by a decorated call, which concludes it
        #: The W3C context this trace joins (see galileo._incoming); None: no OpenTelemetry involved.
        self.w3c = None if w3c is None else W3CJoin(w3c, continuing=trace_id is not None)
        if trace_id is not None:
            self.stack.append(Level(None, self.upstream_parent_id or trace_id, now_ns()))

    def __repr__(self) -> str:
        return f"<TraceState levels={len(self.stack)} traces={len(self.traces)}>"

    def continue_upstream(self, trace_id: str) -> None:
        """Continue ``trace_id`` under its trace record, sending no record of it (nothing is open here)."""
        self.upstream_trace_id = self.upstream_parent_id = trace_id
        self.stack.append(Level(None, trace_id, now_ns()))
