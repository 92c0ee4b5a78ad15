"""The request's logger: created on first use, shared by everything in the request, finalised once.

:func:`get_request_logger` reads the :class:`~galileo._context.RequestState` that ``TracingMiddleware`` set
for the request. The first call creates the request's distributed-mode logger (continuing the trace named by
the request's headers, whatever GALILEO_MODE says) and stores it on the state; every later call in the same
request — after an ``await``, in a gathered task, in a threadpool call — returns that same object.

Never raises: a misconfiguration logs one ERROR line (naming the variable; the traceback at DEBUG) and hands
out a no-op logger, and so does a call outside a request (one WARNING): a handler keeps working whatever the
SDK's state.
"""

from __future__ import annotations

import logging
import threading
import time

import attrs

from galileo._context import RequestState, activity, request_state
from galileo.config import DEFAULT_LOCAL_URL, GalileoConfig
from galileo.exceptions import _describe
from galileo.logger import GalileoLogger

__all__ = ["distributed", "finalize_request", "get_request_logger", "noop_logger", "process_config", "reset"]

_log = logging.getLogger("galileo")
_create_lock = threading.Lock()
_said: set[str] = set()
_noop: GalileoLogger | None = None
_config: GalileoConfig | Exception | None = None


def _once(key: str, level: int, message: str, *args: object, exc: BaseException | None = None) -> None:
    """``message`` once per ``key`` (until :func:`reset`), one line; the traceback of ``exc`` at DEBUG."""
    if key not in _said:
        _said.add(key)
        _log.log(level, message, *args)
        if exc is not None:
            _log.debug("galileo: the traceback of the error above", exc_info=exc)


def noop_logger() -> GalileoLogger:
    """A logger whose every call is a no-op (one per process; it sends nothing and holds nothing)."""
    global _noop
    if _noop is None:
        _noop = GalileoLogger(
            config=GalileoConfig.resolve(environ={}, api_url=DEFAULT_LOCAL_URL, logging_disabled=True)
        )
    return _noop


def get_request_logger() -> GalileoLogger:
    """The current request's distributed-mode logger (the same object for the whole request).

    It continues the trace from the request's ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID`` headers (or
    from our ``galileo=`` tracestate member); with none it opens a trace of its own at the first span
    (``METHOD route``), which completes with the response: its id mapped from the OpenTelemetry trace id
    when a ``traceparent`` came in (or OpenTelemetry's current span is valid), else a new one.
    Project and log stream come from the environment (GALILEO_PROJECT / GALILEO_LOG_STREAM) or the
    middleware's arguments, never from headers. Outside a request served through ``TracingMiddleware``, or
    when the configuration is invalid, returns a no-op logger (logged once) instead of raising.
    """
    state = request_state.get()  # (current_request(), without a call: request paths)
    if state is None:
        _once(
            "outside",
            logging.WARNING,
            "galileo: get_request_logger() called outside a request served through TracingMiddleware: "
            "using a no-op logger (add app.add_middleware(TracingMiddleware))",
        )
        return noop_logger()
    logger = state.logger
    if logger is not None:
        return logger
    with _create_lock:
        if state.logger is None:
            if state.finalized:  # a task that outlived its request: its trace is complete
                _once(
                    "after",
                    logging.WARNING,
                    "galileo: get_request_logger() called after its request ended: using a no-op logger",
                )
                return noop_logger()
            state.logger = _create(state)
        return state.logger


def distributed(config: GalileoConfig) -> GalileoConfig:
    """``config`` in distributed mode: request loggers send as things happen, whatever GALILEO_MODE says."""
    return config if config.mode == "distributed" else attrs.evolve(config, mode="distributed")


def process_config() -> GalileoConfig:
    """The configuration of request loggers, from the environment: resolved once per process.

    A failure is cached too (and raised again), so a misconfigured service does not re-read its environment
    on every request.
    """
    global _config
    if _config is None:
        try:
            _config = distributed(GalileoConfig.resolve())
        except Exception as exc:
            _config = exc
    if isinstance(_config, Exception):
        raise _config
    return _config


def _create(state: RequestState) -> GalileoLogger:
    try:
        config = state.config() or process_config()
        return GalileoLogger._for_request(state, config)
    except Exception as exc:  # a misconfiguration must not fail the request
        cause = _describe(exc)
        _once(
            f"config:{cause}",
            logging.ERROR,
            "galileo: cannot trace requests: %s; using a no-op logger until the configuration is fixed",
            cause,
            exc=exc,
        )
        return noop_logger()


def finalize_request(state: RequestState, status_code: int) -> None:
    """Conclude and enqueue what the request's logger holds (once; never raises, never waits)."""
    with _create_lock:
        logger = state.logger
        if state.finalized and (logger is None or logger._finalized_request):
            return
        state.finalized = True
        if logger is not None:
            logger._finalized_request = True
    if logger is None:
        return
    # A request that logged ended: the sender waits for a quiet moment (see galileo._sender.QUIET). Requests
    # that log nothing are not timed: that would cost every request of the service, traced or not.
    activity.ended_at = time.monotonic()
    try:
        logger._finalize_request(status_code)
    except Exception as exc:
        _once(
            "finalize",
            logging.ERROR,
            "galileo: could not finalise a request's trace: %s",
            _describe(exc),
            exc=exc,
        )


def reset() -> None:
    """Forget the process configuration and the once-only messages (tests; after changing the environment)."""
    global _config
    _config = None
    _said.clear()
