"""Trace context across services: ``X-Galileo-*`` and W3C Trace Context headers, read and written.

A leaf: it parses and writes headers, and knows no logger, no middleware, no decorator (the test
``tests/test_import_graph.py`` checks its imports). Which logger is current is :mod:`galileo._current`'s
business, which hands this module its answer (:func:`_use_current`) when :mod:`galileo` is imported.

Incoming (``TracingMiddleware``, ``galileo_context(traceparent=...)``): :func:`parse_incoming` is the one
parser, run on the raw ASGI header list when a request's logger is created (a request that logs nothing
pays nothing). The rules:

- ``X-Galileo-Trace-ID`` names the root trace and ``X-Galileo-Parent-ID`` the trace or span to attach to. A
  Parent-ID equal to the Trace-ID, or a Trace-ID without a Parent-ID, attaches to the root trace. Ids are
  UUID version 4 strings (Galileo's schemas require it); they are normalised to lower case.
- ``traceparent`` / ``tracestate`` (W3C Trace Context, see :mod:`galileo._w3c`): with valid X-Galileo headers
  they are kept (the records' OpenTelemetry ids, and passed on downstream); without (or with malformed
  ones), a tracestate holding our ``galileo=`` member continues that Galileo trace, else the request opens
  a trace of its own whose id is mapped from the OTel trace id (see :mod:`galileo._incoming`). When
  OpenTelemetry is imported and a span is current (its ASGI instrumentation runs outside our middleware),
  that span's context stands for the traceparent.
- A malformed context never fails a request: a value that is not a uuid4, a Parent-ID without a Trace-ID,
  an oversized or non-ASCII value, a header sent twice, or a traceparent the W3C rules reject (version ff,
  all-zero ids, wrong lengths, upper case) is logged at WARNING (at most once per :data:`WARN_INTERVAL`
  seconds per kind of problem, with the count of those not logged) and that context is ignored: a new trace
  starts (or the valid traceparent next to a malformed X-Galileo is followed). A malformed tracestate is
  dropped (its traceparent still counts). Project and log stream never come from headers.

Outgoing: pass the current trace to the service you call, so its spans land under yours::

    requests.get(url, headers=tracing_headers())                 # the current request's logger
    await client.get(url, headers=tracing_headers(logger))       # or a logger of your own
    httpx.AsyncClient(event_hooks={"request": [async_httpx_hook]})

The headers (:func:`outgoing_headers`) are ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID``, a
``traceparent`` (the incoming OTel trace id when the trace came in with one, else our trace id's 32 hex
digits; the parent record's OTel span id; the incoming flags, else sampled) and a ``tracestate`` (our
``galileo=`` member first, then the incoming members): OpenTelemetry services after ours continue the same
trace, and a service of ours after them continues our Galileo trace.

:func:`tracing_headers` (and the hooks, which call it) never raise: on any problem they return no headers and
log at DEBUG. :func:`get_tracing_headers` is the published SDK's name for the same thing, without an argument:
it also finds a ``galileo_context`` block's logger, and with nothing open it returns ``{}`` with a WARNING (at
most one per :data:`WARN_INTERVAL` seconds) where the published one raises.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, MutableMapping
from typing import Any, Protocol

from galileo._context import RequestState, current_request  # noqa: F401  (tests find it here)
from galileo._incoming import NO_CONTEXT, Incoming, W3CContext, decide, otel_current
from galileo._w3c import (
    TRACEPARENT,
    TRACESTATE,
    format_traceparent,
    format_tracestate,
    otel_span_id,
    otel_trace_id,
    parse_traceparent,
    parse_tracestate,
)

__all__ = [
    "MAX_HEADER_BYTES",
    "PARENT_ID_HEADER",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_ID_HEADER",
    "WARN_INTERVAL",
    "HeaderSource",
    "async_httpx_hook",
    "get_tracing_headers",
    "httpx_hook",
    "inject_headers",
    "outgoing_headers",
    "parse_incoming",
    "parse_trace_headers",
    "tracing_headers",
    "w3c_context",
]

_log = logging.getLogger("galileo")

TRACE_ID_HEADER = "X-Galileo-Trace-ID"
PARENT_ID_HEADER = "X-Galileo-Parent-ID"
#: A header value longer than this is not looked at.
MAX_HEADER_BYTES = 64
#: Malformed-header warnings are logged at most once per this many seconds per kind of problem.
WARN_INTERVAL = 10.0

_TRACE = TRACE_ID_HEADER.lower().encode()
_PARENT = PARENT_ID_HEADER.lower().encode()
_TRACEPARENT = TRACEPARENT.encode()
_TRACESTATE = TRACESTATE.encode()
_UUID4 = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")

_IGNORED = "galileo: ignoring the trace context of a request: %s%s"
_NEW_TRACE = "; a new trace starts"
_FOLLOW_W3C = "; following its traceparent"


class _RateLimitedWarning:
    """At most one WARNING per interval per kind, saying how many were not logged in between."""

    def __init__(self, interval: float, template: str = _IGNORED) -> None:
        self.interval = interval
        self.template = template
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(kind, -self.interval) < self.interval:
                self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
                return
            self._last[kind] = now
            suppressed = self._suppressed.pop(kind, 0)
        more = f" ({suppressed} more like it not logged)" if suppressed else ""
        _log.warning(self.template, message, more)


_warn = _RateLimitedWarning(WARN_INTERVAL)
_warn_no_headers = _RateLimitedWarning(WARN_INTERVAL, "galileo: get_tracing_headers(): %s; no headers%s")


# -- incoming ----------------------------------------------------------------------------------------------
def _check(value: bytes, header: str, outcome: str) -> str | None:
    """The normalised id, or None after a warning."""
    if len(value) > MAX_HEADER_BYTES:
        _warn("oversized", f"{header} is {len(value)} bytes (more than {MAX_HEADER_BYTES}){outcome}")
        return None
    if _UUID4.fullmatch(value) is None:
        if not value.isascii():
            _warn("non-ascii", f"{header} is not ASCII{outcome}")
        else:
            _warn("not-uuid4", f"{header} {value.decode()!r} is not a UUID version 4{outcome}")
        return None
    return value.decode().lower()


def _galileo_ids(
    trace: bytes | None, parent: bytes | None, duplicated: str | None, outcome: str = _NEW_TRACE
) -> tuple[str | None, str | None]:
    """The X-Galileo rules on the values found (``duplicated``: the header sent twice, if any)."""
    if duplicated is not None:
        _warn("duplicated", f"{duplicated} was sent more than once{outcome}")
        return None, None
    if trace is None:
        if parent is not None:
            _warn("parent-without-trace", f"{PARENT_ID_HEADER} was sent without {TRACE_ID_HEADER}{outcome}")
        return None, None
    trace_id = _check(trace, TRACE_ID_HEADER, outcome)
    if trace_id is None:
        return None, None
    if parent is None:
        return trace_id, trace_id
    parent_id = _check(parent, PARENT_ID_HEADER, outcome)
    if parent_id is None:
        return None, None
    return trace_id, parent_id


def parse_trace_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``(trace_id, parent_id)`` from raw ASGI headers' X-Galileo-* (lower-case names), or ``(None, None)``.

    A valid Trace-ID without a Parent-ID (or with one equal to it) gives ``(trace_id, trace_id)``.
    """
    trace, parent, duplicated, _, _, _ = _scan(headers)
    return _galileo_ids(trace, parent, duplicated)


def _scan(
    headers: Iterable[tuple[bytes, bytes]],
) -> tuple[bytes | None, bytes | None, str | None, bytes | None, list[bytes], int]:
    """One pass over raw ASGI headers: X-Galileo Trace-ID and Parent-ID, the X-Galileo header sent twice
    (if any), the (last) traceparent, the tracestate fields, and how many traceparents were sent."""
    trace = parent = traceparent = None
    states: list[bytes] = []
    duplicated: str | None = None
    traceparents = 0
    for name, value in headers:
        # Bytes comparisons (length first) cost half of a startswith() call per header.
        if name == _TRACE:
            if trace is not None:
                duplicated = TRACE_ID_HEADER
            trace = value
        elif name == _PARENT:
            if parent is not None:
                duplicated = PARENT_ID_HEADER
            parent = value
        elif name == _TRACEPARENT:
            traceparents += 1
            traceparent = value
        elif name == _TRACESTATE:
            states.append(value)  # several tracestate fields are one list (RFC 9110 5.3)
    return trace, parent, duplicated, traceparent, states, traceparents


def w3c_context(
    traceparent: str | bytes | None, tracestate: str | bytes | None, *, duplicated: bool = False
) -> W3CContext | None:
    """The W3C context of a ``traceparent`` and ``tracestate``; None (after a WARNING) when the traceparent
    is malformed or ``duplicated``; a malformed tracestate is dropped (a WARNING), the traceparent kept."""
    if traceparent is None:
        return None
    if duplicated:
        _warn("traceparent-duplicated", f"{TRACEPARENT} was sent more than once{_NEW_TRACE}")
        return None
    parent = parse_traceparent(traceparent)
    if parent is None:
        _warn("traceparent", f"{TRACEPARENT} {_shown(traceparent)} is malformed (W3C rules){_NEW_TRACE}")
        return None
    members: list[tuple[str, str]] | None = None
    if tracestate is not None:
        members = parse_tracestate(tracestate)
        if members is None:
            _warn("tracestate", f"{TRACESTATE} {_shown(tracestate)} is malformed; dropped, traceparent kept")
    return W3CContext(parent.trace_id, parent.span_id, parent.flags, tuple(members or ()))


def _shown(value: str | bytes) -> str:
    """A header value for a log line: its repr, cut at 80 characters."""
    text = repr(value[:80])
    return text + "…" if len(value) > 80 else text


def parse_incoming(headers: Iterable[tuple[bytes, bytes]]) -> Incoming:
    """The incoming context of raw ASGI headers (lower-case names): X-Galileo-*, traceparent, tracestate,
    or OpenTelemetry's current span in place of the traceparent; see the module docstring for the rules."""
    trace, parent, duplicated, traceparent, states, traceparents = _scan(headers)
    w3c = otel_current()
    if w3c is None and traceparent is not None:
        w3c = w3c_context(traceparent, b",".join(states) if states else None, duplicated=traceparents > 1)
    outcome = _FOLLOW_W3C if w3c is not None else _NEW_TRACE
    if trace is None and parent is None and duplicated is None:
        galileo: tuple[str | None, str | None] = (None, None)
    else:
        galileo = _galileo_ids(trace, parent, duplicated, outcome)
    if w3c is None:
        return Incoming(*galileo) if galileo[0] is not None else NO_CONTEXT
    return decide(galileo, w3c)


RequestState.parse_headers = staticmethod(parse_incoming)


# -- outgoing ----------------------------------------------------------------------------------------------
def outgoing_headers(trace_id: str, parent_id: str, w3c: W3CContext | None = None) -> dict[str, str]:
    """The headers naming ``parent_id`` in ``trace_id`` downstream, in the W3C context ``w3c`` (if any)."""
    if w3c is None:
        traceparent = format_traceparent(otel_trace_id(trace_id), otel_span_id(parent_id))
        members = None
    else:
        traceparent = format_traceparent(w3c.trace_id, otel_span_id(parent_id), w3c.flags)
        members = list(w3c.members)
    return {
        TRACE_ID_HEADER: trace_id,
        PARENT_ID_HEADER: parent_id,
        TRACEPARENT: traceparent,
        TRACESTATE: format_tracestate(trace_id, parent_id, members),
    }


class HeaderSource(Protocol):
    """What the helpers below take as ``logger``: a :class:`~galileo.GalileoLogger` (not imported here)."""

    def get_tracing_headers(self) -> dict[str, str]: ...


#: ``(logger or None, published) -> headers``: the current logger's headers (see galileo._current, which
#: sets it when galileo is imported); ``published``: get_tracing_headers()'s rules.
_current_headers: Callable[[Any, bool], dict[str, str]] | None = None


def _use_current(find: Callable[[Any, bool], dict[str, str]]) -> None:
    """Set how the helpers below find the current logger's headers (galileo._current does, at import)."""
    global _current_headers
    _current_headers = find


def tracing_headers(logger: HeaderSource | None = None) -> dict[str, str]:
    """The headers that continue the current trace in a service you call; {} when there is none.

    ``logger`` (a :class:`~galileo.GalileoLogger`) defaults to the current one (see :mod:`galileo._current`):
    the logger of the ``@log``-decorated workflow or agent call running in this context (its span is the
    parent), else the ``galileo_context`` block's, else the current request's (through ``TracingMiddleware``).
    Never raises.
    """
    try:
        find = _current_headers
        if find is None:  # (galileo._current not imported: cannot happen once galileo is)
            return {} if logger is None else logger.get_tracing_headers()
        return find(logger, False)
    except Exception:
        _log.debug("galileo: no tracing headers", exc_info=True)
        return {}


def get_tracing_headers() -> dict[str, str]:
    """The headers that continue the current trace in a service you call (the published SDK's function).

    Names the trace and parent of this context: the ``@log``-decorated workflow or agent call running here,
    else the current ``galileo_context`` block's logger's innermost open record, else the current request's
    trace (through ``TracingMiddleware``), else that of the logger ``galileo_context.init`` names. With none
    open: ``{}`` and a WARNING (rate limited) instead of the published ``GalileoLoggerException``. Never
    raises.
    """
    try:
        find = _current_headers
        return {} if find is None else find(None, True)
    except Exception:
        _log.debug("galileo: no tracing headers", exc_info=True)
        return {}


def inject_headers(
    headers: MutableMapping[str, str], logger: HeaderSource | None = None
) -> MutableMapping[str, str]:
    """Add :func:`tracing_headers` to ``headers`` (a dict, ``requests``' or ``httpx``' headers); return it."""
    headers.update(tracing_headers(logger))
    return headers


def httpx_hook(request: Any) -> None:
    """An ``httpx.Client`` request event hook adding the current request's tracing headers."""
    inject_headers(request.headers)


async def async_httpx_hook(request: Any) -> None:
    """An ``httpx.AsyncClient`` request event hook adding the current request's tracing headers."""
    inject_headers(request.headers)
