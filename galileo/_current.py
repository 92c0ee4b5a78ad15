"""Which logger is current here: :func:`current_logger`, the one place that decides.

``@log`` (:mod:`galileo._log_call`), ``galileo_context`` (:mod:`galileo._galileo_context`) and the
propagation helpers (``tracing_headers()``, ``get_tracing_headers()``, ``inject_headers``, the httpx hooks,
through :func:`galileo.propagation._use_current`, set when this module is imported) all ask it. First match:

1. a logger given explicitly;
2. inside a ``@log``-decorated workflow or agent call: that call's logger (its span is the parent);
3. inside a ``galileo_context(...)`` block entered in the same request (or, outside any request, entered
   outside any request): the block's logger;
4. inside a request served through ``TracingMiddleware``: the request's logger (created now if need be);
5. elsewhere: the process's logger for what ``galileo_context.init(...)`` set in this context, each setting
   not given from the environment; or None, when the caller asks for no fallback.

The OpenTelemetry current span is not a logger: it is the W3C context a request's logger joins when the
logger is created (see :mod:`galileo._incoming`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, Literal, overload

from galileo import propagation
from galileo._context import current_request, span_frame
from galileo._context_loggers import context_logger, current_defaults, entered
from galileo.logger import GalileoLogger

__all__ = ["current_logger"]

_log = logging.getLogger("galileo")


@overload
def current_logger(
    logger: GalileoLogger | None = None, *, fallback: Literal[True] = True
) -> GalileoLogger: ...
@overload
def current_logger(logger: GalileoLogger | None = None, *, fallback: bool) -> GalileoLogger | None: ...
def current_logger(logger: GalileoLogger | None = None, *, fallback: bool = True) -> GalileoLogger | None:
    """The logger spans and headers go to in this context; see the module docstring for the rules."""
    if logger is not None:
        return logger
    frame = span_frame.get()
    if frame is not None:
        return frame.logger
    scope = entered.get()
    request = current_request()
    if scope is not None and scope.logger is not None and scope.request is request:
        return scope.logger
    if request is not None:
        return request.logger or _request_logger()()
    if not fallback:
        return None
    given = current_defaults()
    return context_logger(given.project, given.log_stream, given.mode, given.experiment_id)


@functools.cache
def _request_logger() -> Callable[[], GalileoLogger]:
    """``get_request_logger``, imported on first use (galileo.middleware imports Starlette)."""
    from galileo.middleware._request import get_request_logger

    return get_request_logger


def _headers(given: Any, published: bool) -> dict[str, str]:
    """The tracing headers of ``given`` (a logger) or of the current logger (see galileo.propagation).

    ``published``: ``get_tracing_headers()``, which falls back to the ``init`` logger and warns (rate
    limited) when nothing is open; else ``tracing_headers()``, which returns {} quietly then.
    """
    logger = current_logger(given, fallback=published)
    if logger is None:
        return {}
    if logger.config.logging_disabled:  # a no-op logger (disabled or misconfigured): nothing to continue
        _log.debug("galileo: no tracing headers: logging is disabled")
        return {}
    if given is None and logger._request is None and not logger.has_active_trace():
        if published:
            propagation._warn_no_headers("nothing-open", "no trace is open in this context")
        return {}
    return logger.get_tracing_headers()


propagation._use_current(_headers)
