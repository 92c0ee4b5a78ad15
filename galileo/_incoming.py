"""A trace's incoming context: the Galileo trace and parent it continues, and the W3C context it joins.

A leaf (it imports :mod:`galileo._w3c` and, only when the application imported it already, the
OpenTelemetry API). :mod:`galileo.propagation` builds an :class:`Incoming` from a request's headers (or a
``galileo_context(traceparent=...)`` block's arguments); a logger's :class:`~galileo._trace_state.TraceState`
keeps its W3C part as a :class:`W3CJoin`, which tags every record of the trace with its OpenTelemetry ids.

The rules (issue 21), applied by :func:`decide`:

- Galileo ids (valid ``X-Galileo-*`` headers, or ``trace_id=``/``span_id=``) name the trace and parent to
  continue; a valid W3C context next to them is kept for metadata and passed on downstream (unless it only
  restates them: see :func:`decide`).
- Without them, a valid W3C context whose ``tracestate`` has our ``galileo=`` member (a service of ours
  upstream, reached through an OpenTelemetry-only hop) continues that Galileo trace under that record.
- Otherwise a W3C context makes the first trace opened here take the id ``trace_uuid(otel trace id)``
  (deterministic: every service derives the same one); that trace record names the W3C parent span in
  ``otel.parent_span_id``. In distributed mode, only the first request of a process to open that trace
  sends its record; later ones of the same OTel trace continue it (see :func:`_claim`).

Records of a trace joined to OpenTelemetry carry ``otel.trace_id`` (the original OTel trace id) and
``otel.span_id`` (``otel_span_id(record id)``); the top-level ones (the trace record a request opened, and
spans directly under an upstream parent) also ``otel.parent_span_id``. Traces with no W3C context get none.

**The OpenTelemetry current span.** When ``opentelemetry.trace`` is already imported and a span with a valid
context is current when a request's logger is created (OpenTelemetry's ASGI instrumentation running outside
``TracingMiddleware``: its server span, unless the handler made a span of its own current first),
:func:`otel_current` gives its context, which stands for the raw ``traceparent`` header: so the request's
records and that span name one trace. A service that never imported OpenTelemetry pays one dict lookup,
at the creation of a request's logger only.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, NamedTuple

from galileo._w3c import (
    PARENT_SPAN_ID_KEY,
    SPAN_ID_KEY,
    STATE_KEY,
    TRACE_ID_KEY,
    galileo_member,
    otel_span_id,
    otel_trace_id,
    parse_tracestate,
    trace_uuid,
)

if TYPE_CHECKING:
    from galileo import schema

__all__ = ["NO_CONTEXT", "Incoming", "W3CContext", "W3CJoin", "decide", "otel_current"]

_log = logging.getLogger("galileo")
_OTEL_TRACE = "opentelemetry.trace"


class W3CContext(NamedTuple):
    """A valid W3C context: OTel trace id (32 hex), parent span id (16 hex), flags, tracestate members."""

    trace_id: str
    span_id: str
    flags: int = 1
    members: tuple[tuple[str, str], ...] = ()


class Incoming(NamedTuple):
    """What a trace continues: Galileo ``trace_id`` and ``parent_id`` (None: a new trace), and ``w3c``."""

    trace_id: str | None
    parent_id: str | None
    w3c: W3CContext | None = None


NO_CONTEXT = Incoming(None, None, None)


def decide(galileo: tuple[str | None, str | None], w3c: W3CContext | None) -> Incoming:
    """The rules of the module docstring: Galileo ids first, else our tracestate member, else a new trace.

    A W3C context that only restates the Galileo ids (what a service of ours sends next to X-Galileo-*: the
    trace's own digits, the parent's span id, sampled, no tracestate member but ours) involves no
    OpenTelemetry: it is dropped, so calls between our services send the records they always sent.
    """
    trace_id, parent_id = galileo
    if w3c is None:
        return Incoming(trace_id, parent_id, None)
    if trace_id is None:
        member = galileo_member(list(w3c.members))
        if member is not None:
            trace_id, parent_id = member
    elif _restates(trace_id, parent_id or trace_id, w3c):
        return Incoming(trace_id, parent_id, None)
    return Incoming(trace_id, parent_id, w3c)


def _restates(trace_id: str, parent_id: str, w3c: W3CContext) -> bool:
    return (
        w3c.trace_id == otel_trace_id(trace_id)
        and w3c.span_id == otel_span_id(parent_id)
        and w3c.flags == 1
        and all(key == STATE_KEY for key, _ in w3c.members)
    )


class W3CJoin:
    """The W3C context of one logger's (or one context's) trace state: tags records, names the root once."""

    __slots__ = ("context", "root_id")

    def __init__(self, context: W3CContext, continuing: bool) -> None:
        self.context = context
        #: The id the next trace opened here takes (once): the OTel trace's own, mapped (None: continuing).
        self.root_id = None if continuing else trace_uuid(context.trace_id)

    def __repr__(self) -> str:
        return f"<W3CJoin {self.context.trace_id}>"

    def begin_trace(self, trace: schema.Trace, claim: bool) -> bool:
        """Before ``trace`` goes out: the first one takes the mapped id; all carry the OTel ids.

        With ``claim`` (distributed mode), False when this process opened the mapped trace already (see
        :func:`claim`): the caller then continues it instead of sending a second record of it.
        """
        if self.root_id is not None:
            trace.id, self.root_id = self.root_id, None
            if claim and not _claim(trace.id):
                return False
        self.tag(trace, top_level=True)
        return True

    def tag(self, record: schema.Record, top_level: bool) -> None:
        """Give ``record`` its OTel ids (``top_level``: also the W3C parent span's) in its metadata."""
        context = self.context
        metadata = record.user_metadata
        metadata[TRACE_ID_KEY] = context.trace_id
        metadata[SPAN_ID_KEY] = otel_span_id(record.id)
        if top_level:
            metadata[PARENT_SPAN_ID_KEY] = context.span_id


#: Mapped trace ids this process opened a trace record for, the most recent last, :data:`MAX_OPENED` at most.
_opened: OrderedDict[str, None] = OrderedDict()
_opened_lock = threading.Lock()
MAX_OPENED = 4096


def _claim(trace_id: str) -> bool:
    """Whether this process is the first here to open the mapped trace ``trace_id`` (recently).

    Two requests of one OTel trace (an OTel service calling ours twice) map to one trace id. The first opens
    and completes the trace record; the others continue it, as a service reached through X-Galileo would:
    two owners of one trace in one process would each wait for the other to finish before completing it.
    Across processes, each one's first request sends the record; ingest keeps the first stored.
    """
    with _opened_lock:
        if trace_id in _opened:
            _opened.move_to_end(trace_id)
            return False
        _opened[trace_id] = None
        if len(_opened) > MAX_OPENED:
            _opened.popitem(last=False)
        return True


def otel_current() -> W3CContext | None:
    """The current OpenTelemetry span's context, if OpenTelemetry is imported and it is valid; no raise."""
    otel_trace: Any = sys.modules.get(_OTEL_TRACE)
    if otel_trace is None:
        return None
    try:
        context = otel_trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        state = context.trace_state
        members = parse_tracestate(state.to_header()) if state else None
        return W3CContext(
            format(context.trace_id, "032x"),
            format(context.span_id, "016x"),
            int(context.trace_flags),
            tuple(members or ()),
        )
    except Exception:  # an odd OpenTelemetry: as if no span were current
        _log.debug("galileo: could not read OpenTelemetry's current span", exc_info=True)
        return None
