"""Traces of several outboxes in one ``POST /traces``: the one way records of different traces share a body.

The API's ``traces`` list may hold several traces, so traces to one API and target that are ready at one
moment go together: up to :data:`MAX_TRACES_PER_REQUEST` traces and
:data:`~galileo._sender._outbox.MAX_RECORDS_PER_REQUEST` records. ``is_complete`` and ``session_id`` are
fields of the whole body, so complete traces share a POST only with complete ones, and traces of one
session only with that session's. What stays apart: an outbox that sends something else first, one backing
off, and one gone *solo* after a shared POST failed (rule 7 of :mod:`galileo._sender._outbox`).
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Callable
from typing import Any

from galileo._sender._outbox import MAX_RECORDS_PER_REQUEST, Request
from galileo._sender._trace import TraceOutbox
from galileo._sessions import same_session

__all__ = ["MAX_TRACES_PER_REQUEST", "plan"]

#: At most this many traces (of different outboxes) in one ``POST /traces``.
MAX_TRACES_PER_REQUEST = 64
#: How many ready outboxes are looked at for traces to join one POST (bounds a step's work).
_LOOK_AHEAD = 256


def plan(request: Request, ready: collections.deque[Any], others_busy: Callable[[Any], bool]) -> Request:
    """``request``, joined by the traces of outboxes in ``ready`` that may share its body; the joined
    outboxes stay in ``ready`` (their next request is planned when their turn comes)."""
    first = request.outbox
    if request.kind != "traces" or not isinstance(first, TraceOutbox) or first.solo:
        return request
    room = MAX_RECORDS_PER_REQUEST - len(request.nodes)
    parts = [request]
    for handle in list(itertools.islice(ready, _LOOK_AHEAD)):
        if len(parts) >= MAX_TRACES_PER_REQUEST or room <= 0:
            break
        outbox = handle.outbox
        if (
            not isinstance(outbox, TraceOutbox)
            or outbox.client is not first.client
            or outbox.target != first.target
            or not same_session(outbox.session, first.session)
        ):
            continue
        part = outbox.take_trace(room, request.complete, others_busy(handle))
        if part is None:
            continue
        part.owner = handle
        room -= len(part.nodes)
        parts.append(part)
    if len(parts) == 1:
        return request
    shared = Request(first, "traces", complete=request.complete)
    shared.parts = parts
    shared.owner = request.owner
    return shared
