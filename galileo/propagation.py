"""Trace context across services: the ``X-Galileo-*`` headers, read on the way in and written on the way out.

Incoming (``TracingMiddleware``): :func:`parse_trace_headers` is the one parser, run on every request, on the
raw ASGI header list. The rules:

- ``X-Galileo-Trace-ID`` names the root trace and ``X-Galileo-Parent-ID`` the trace or span to attach to. A
  Parent-ID equal to the Trace-ID, or a Trace-ID without a Parent-ID, attaches to the root trace.
- Ids are UUID version 4 strings (Galileo's schemas require it); they are normalised to lower case.
- A malformed context never fails a request: a value that is not a uuid4, a Parent-ID without a Trace-ID, an
  oversized or non-ASCII value, or a header sent twice is logged at WARNING (at most once per
  :data:`WARN_INTERVAL` seconds per kind of problem, with the count of those not logged) and the whole
  context is ignored: the request starts a new trace. Project and log stream never come from headers.

Outgoing: pass the current trace to the service you call, so its spans land under yours::

    requests.get(url, headers=tracing_headers())                 # the current request's logger
    await client.get(url, headers=tracing_headers(logger))       # or a logger of your own
    httpx.AsyncClient(event_hooks={"request": [async_httpx_hook]})

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
from collections.abc import Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from galileo._context import RequestState, current_request, span_frame

if TYPE_CHECKING:
    from galileo.logger import GalileoLogger

__all__ = [
    "MAX_HEADER_BYTES",
    "PARENT_ID_HEADER",
    "TRACE_ID_HEADER",
    "WARN_INTERVAL",
    "async_httpx_hook",
    "get_tracing_headers",
    "httpx_hook",
    "inject_headers",
    "parse_trace_headers",
    "tracing_headers",
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
_UUID4 = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-4[0-9a-fA-F]{3}-[89abAB][0-9a-fA-F]{3}-[0-9a-fA-F]{12}")


_IGNORED = "galileo: ignoring the trace context of a request: %s; a new trace starts%s"


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


def _check(value: bytes, header: str) -> str | None:
    """The normalised id, or None after a warning."""
    if len(value) > MAX_HEADER_BYTES:
        _warn("oversized", f"{header} is {len(value)} bytes (more than {MAX_HEADER_BYTES})")
        return None
    if _UUID4.fullmatch(value) is None:
        if not value.isascii():
            _warn("non-ascii", f"{header} is not ASCII")
        else:
            _warn("not-uuid4", f"{header} {value.decode()!r} is not a UUID version 4")
        return None
    return value.decode().lower()


def parse_trace_headers(headers: Iterable[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
    """``(trace_id, parent_id)`` from raw ASGI headers (lower-case names), or ``(None, None)``.

    A valid Trace-ID without a Parent-ID (or with one equal to it) gives ``(trace_id, trace_id)``.
    """
    trace = parent = None
    for name, value in headers:
        # Two bytes comparisons (length first) cost half of a startswith() call per header.
        if name == _TRACE:
            if trace is not None:
                _warn("duplicated", f"{TRACE_ID_HEADER} was sent more than once")
                return None, None
            trace = value
        elif name == _PARENT:
            if parent is not None:
                _warn("duplicated", f"{PARENT_ID_HEADER} was sent more than once")
                return None, None
            parent = value
    if trace is None:
        if parent is not None:
            _warn("parent-without-trace", f"{PARENT_ID_HEADER} was sent without {TRACE_ID_HEADER}")
        return None, None
    trace_id = _check(trace, TRACE_ID_HEADER)
    if trace_id is None:
        return None, None
    if parent is None:
        return trace_id, trace_id
    parent_id = _check(parent, PARENT_ID_HEADER)
    if parent_id is None:
        return None, None
    return trace_id, parent_id


RequestState.parse_headers = staticmethod(parse_trace_headers)


def tracing_headers(logger: GalileoLogger | None = None) -> dict[str, str]:
    """The headers that continue the current trace in a service you call; {} when there is none.

    ``logger`` defaults to the logger of the ``@log``-decorated workflow or agent call running in this
    context (its span is the parent), else the current request's logger (through ``TracingMiddleware``).
    Never raises.
    """
    try:
        frame = span_frame.get() if logger is None else None
        if frame is not None:
            logger = frame.logger
        if logger is None:
            state = current_request()
            if state is None:
                return {}
            from galileo.middleware import get_request_logger

            logger = get_request_logger()
        if logger.config.logging_disabled:  # a no-op logger (disabled or misconfigured): nothing to continue
            _log.debug("galileo: no tracing headers: logging is disabled")
            return {}
        return logger.get_tracing_headers()
    except Exception:
        _log.debug("galileo: no tracing headers", exc_info=True)
        return {}


def get_tracing_headers() -> dict[str, str]:
    """The headers that continue the current trace in a service you call (the published SDK's function).

    Names the trace and parent of this context: the ``@log``-decorated workflow or agent call running here,
    else the current request's trace (through ``TracingMiddleware``), else the current ``galileo_context``
    block's logger's innermost open record. With none open: ``{}`` and a WARNING (rate limited) instead of the
    published ``GalileoLoggerException``. Never raises.
    """
    try:
        frame = span_frame.get()
        if frame is None and current_request() is not None:
            return tracing_headers()
        if frame is not None:
            logger = frame.logger
        else:
            import galileo

            logger = galileo.galileo_context.get_logger_instance()
        if logger.config.logging_disabled:
            return {}
        if not logger.has_active_trace():
            _warn_no_headers("nothing-open", "no trace is open in this context")
            return {}
        return logger.get_tracing_headers()
    except Exception:
        _log.debug("galileo: no tracing headers", exc_info=True)
        return {}


def inject_headers(
    headers: MutableMapping[str, str], logger: GalileoLogger | None = None
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
