"""``galileo_context``: where ``@log`` calls go, and the process's loggers.

The published SDK's surface, on our loggers::

    galileo_context.init(project="p", log_stream="s")   # this context's defaults (later tasks inherit)
    with galileo_context(project="p", log_stream="s"):  # or ``async with``; trace_id=/span_id= continue
        answer(question)
    galileo_context.get_logger_instance()               # the logger decorated calls here go to
    galileo_context.flush()                             # hand everything over, wait (bounded) where safe

``get_current_project()`` / ``get_current_log_stream()`` / ``get_current_mode()`` name what the innermost
block (else ``init``) set (None: not set here; the logger then reads the environment);
``get_current_trace()`` is the trace decorated calls here join, ``get_current_span_stack()`` the decorated
workflow/agent spans open here, outermost first; ``reset_trace_context()`` concludes and hands over what this
context holds and lets the next decorated call start a new trace. ``galileo_context.log`` is :func:`log`.

Differences from the published SDK, kept: inside a request served through ``TracingMiddleware`` (and no block
entered in it) ``get_logger_instance()`` returns the request's logger; ``flush()`` returns the number of
records still pending instead of None and, without arguments, flushes every process logger; a block leaves
what it did not name to ``init`` (else the environment) instead of resetting it.

``start_session`` / ``set_session`` / ``clear_session`` act on :meth:`GalileoContext.get_logger_instance`'s
logger (see :mod:`galileo._sessions`); ``galileo.start_session`` is the first, bound to ``galileo_context``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from galileo import _context_loggers as _registry
from galileo import _ingestion, _sessions, schema
from galileo._context import current_request, span_frame
from galileo._current import current_logger
from galileo._log_fields import forget_warnings, warn_once
from galileo._scope import Scope
from galileo.logger import DEFAULT_FLUSH_TIMEOUT, GalileoLogger, _must_not_block

__all__ = ["GalileoContext", "galileo_context", "start_session"]


class GalileoContext:
    """The type of :data:`galileo_context` (one per process): call it for a ``with`` block."""

    def __call__(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        *,
        experiment_id: str | None = None,
        mode: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        session_id: str | None = None,
        traceparent: str | None = None,
        tracestate: str | None = None,
    ) -> Scope:
        """A block (``with`` or ``async with``) in which decorated calls go to ``project``/``log_stream`` (or
        ``experiment_id``; None: from ``init``, else the environment), continuing ``trace_id``/``span_id``
        when given (distributed mode), their traces in the existing session ``session_id`` when given: the
        block's own, for the traces its context starts (other tasks and threads keep theirs; a malformed id
        is ignored with a WARNING).

        ``traceparent``/``tracestate`` (W3C Trace Context, e.g. from a message's headers) join the block's
        traces to that OpenTelemetry trace, by the rules a request's headers follow: ``trace_id``/``span_id``
        decide the Galileo parent when given; else our ``galileo=`` tracestate member continues that trace
        (distributed mode); else the block's first trace takes the id mapped from the OTel trace id
        (``galileo._w3c.trace_uuid``). The records carry their OTel ids in metadata (``otel.trace_id``,
        ``otel.span_id``, ``otel.parent_span_id``), and the tracing headers sent from the block continue
        the OTel trace. A malformed traceparent is ignored with a WARNING."""
        scope = Scope(project, log_stream, trace_id, span_id, mode, experiment_id, (traceparent, tracestate))
        if session_id is not None:
            checked = _sessions.check_session_id(session_id)
            if checked is not None:
                scope.own_session, scope.session = True, _sessions.SessionRef(checked)
        return scope

    def __enter__(self) -> GalileoContext:
        """``with galileo_context:`` as published: nothing to set up; the block's end flushes."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Flush this context's logger at the end of a bare ``with galileo_context:`` block (without waiting
        inside a request or on an event loop, as every flush; never raises)."""
        try:
            self.get_logger_instance().flush()
        except Exception:
            warn_once("exit-flush", "galileo: galileo_context could not flush at the end of a block (%s)")

    def init(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        experiment_id: str | None = None,
        local_metrics: list[Any] | None = None,
        mode: str | None = None,
    ) -> None:
        """Send this context's decorated calls (outside blocks) to ``project``/``log_stream`` (or
        ``experiment_id``) in ``mode``, with a fresh logger: the previous one's records are handed over."""
        _registry.forget((project, log_stream, experiment_id, mode))
        extra: dict[str, Any] = {"local_metrics": local_metrics} if local_metrics is not None else {}
        _registry.context_logger(project, log_stream, mode, experiment_id, **extra)
        _registry.defaults.set(_registry.Defaults(project, log_stream, experiment_id, mode))
        span_frame.set(None)

    @property
    def log(self) -> Callable[..., Any]:
        """:func:`galileo.log`, as ``galileo_context.log``."""
        from galileo.decorator import log

        return log

    def get_logger_instance(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        experiment_id: str | None = None,
        mode: str | None = None,
        ingestion_hook: Callable[..., Any] | None = None,
    ) -> GalileoLogger:
        """The process's logger for ``project``/``log_stream``/``experiment_id``/``mode`` (what is not given:
        from the block in force, else ``init``, else the environment), its trace and stack per context;
        inside a request served through ``TracingMiddleware`` (and no block entered in it), the request's
        logger. ``ingestion_hook`` makes a new logger for the key that hands records to the hook, unless the
        key's logger already has that very hook: then it is that logger, its open trace kept. Raises
        :class:`~galileo.exceptions.ConfigurationError` on an invalid configuration."""
        scope = _registry.active_scope()
        named = (project, log_stream, experiment_id, mode, ingestion_hook) != (None,) * 5
        if not named or (scope is None and current_request() is not None):
            return current_logger()
        where = _current_key(scope)
        extra = {"ingestion_hook": ingestion_hook} if ingestion_hook is not None else {}
        return _registry.context_logger(
            project if project is not None else where[0],
            log_stream if log_stream is not None else where[1],
            mode if mode is not None else where[3],
            experiment_id if experiment_id is not None else where[2],
            **extra,
        )

    def get_current_project(self) -> str | None:
        """The project the block in force (else ``init``) names; None: not set here."""
        return _current_key(_registry.active_scope())[0]

    def get_current_log_stream(self) -> str | None:
        """The log stream the block in force (else ``init``) names; None: not set here."""
        return _current_key(_registry.active_scope())[1]

    def get_current_mode(self) -> str | None:
        """The mode decorated calls here are logged in (``"batch"`` or ``"distributed"``)."""
        try:
            return current_logger().mode
        except Exception:
            return _current_key(_registry.active_scope())[3]

    def get_current_trace(self) -> schema.Trace | None:
        """The trace decorated calls here join (None: none is open, or it continues an upstream trace)."""
        logger = self._here()
        if logger is None:
            return None
        with logger._lock:
            stack = logger._state().stack
            record = stack[0].record if stack else None
        return record if isinstance(record, schema.Trace) else None

    def get_current_span_stack(self) -> list[schema.Span]:
        """The workflow and agent spans of decorated calls open here, outermost first."""
        frame = span_frame.get()
        trace = self.get_current_trace()
        if frame is None or frame.level.record is None or trace is None:
            return []
        path = _path_to(trace, frame.level.record)
        return [record for record in path if isinstance(record, (schema.WorkflowSpan, schema.AgentSpan))]

    def reset_trace_context(self) -> None:
        """Conclude what this context holds (handed to the sender) and start afresh: the next decorated call
        starts a new trace. Inside a request, the request's trace is left to the middleware."""
        span_frame.set(None)
        logger = self._here()
        if isinstance(logger, _registry.ContextLogger):
            _registry.hand_over(logger)
            logger._use_state(None)

    def flush(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        experiment_id: str | None = None,
        mode: str | None = None,
        on_error: Callable[[Exception], None] | None = None,
        *,
        timeout: float | None = DEFAULT_FLUSH_TIMEOUT,
    ) -> int:
        """Hand over what the process's loggers hold here (only the one for ``project``/``log_stream``/
        ``experiment_id``/``mode`` when one is named) and wait (bounded, and only where waiting is safe: not
        in a request nor on an event loop's thread) for everything decorated calls handed over; return the
        records still pending. ``on_error`` is called with what their ``ingestion_hook`` raised (when it
        waited for the hook) and with a :class:`TimeoutError` when some records are still pending."""
        if (project, log_stream, experiment_id, mode) == (None,) * 4:
            loggers: list[GalileoLogger] = list(_registry.all_loggers())
        else:
            loggers = [self.get_logger_instance(project, log_stream, experiment_id, mode)]
        jobs: list[_ingestion.HookJob] = []
        for logger in loggers:
            _registry.hand_over(logger)
            jobs.extend(logger._take_hook_jobs())  # handed to an ingestion_hook: waited for as flush does
        started = time.monotonic()
        pending = GalileoLogger._wait_handed(_registry.take_handed(), timeout)
        if jobs:
            if _must_not_block():
                pending += _ingestion.wait(jobs, 0)
            else:
                left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
                pending += _ingestion.wait(jobs, left)
                _ingestion.report(jobs, on_error)
        if pending and on_error is not None and not _must_not_block():
            try:
                on_error(TimeoutError(f"{pending} records not yet delivered after {timeout} s"))
            except Exception:
                _registry._log.warning("galileo: a flush(on_error=...) callback raised; ignored")
        return pending

    def flush_all(self) -> int:
        """:meth:`flush` of every process logger; return the records still pending."""
        return self.flush()

    def reset(self) -> None:
        """Forget the process's loggers (the next use reads the environment again), ``init``'s settings here
        and what was handed over; records already handed to the sender still go."""
        _registry.forget()
        _registry.forget_handed()
        _registry.defaults.set(_registry.Defaults())
        forget_warnings()

    # -- sessions (see galileo._sessions) ------------------------------------------------------------------
    def start_session(
        self,
        name: str | None = None,
        previous_session_id: str | None = None,
        external_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """:meth:`GalileoLogger.start_session` on :meth:`get_logger_instance`'s logger: the session's id,
        or None inside a request handler or on an event loop (the traces carry the session all the same)."""
        try:
            logger = self.get_logger_instance()
        except Exception:
            warn_once("session", "galileo: galileo_context.start_session() ignored: no logger (%s)")
            return None
        return logger.start_session(name, previous_session_id, external_id, metadata)

    def set_session(self, session_id: str) -> None:
        """:meth:`GalileoLogger.set_session` on :meth:`get_logger_instance`'s logger."""
        try:
            self.get_logger_instance().set_session(session_id)
        except Exception:
            warn_once("session", "galileo: galileo_context.set_session() ignored: no logger (%s)")

    def clear_session(self) -> None:
        """:meth:`GalileoLogger.clear_session` on :meth:`get_logger_instance`'s logger."""
        try:
            self.get_logger_instance().clear_session()
        except Exception:
            warn_once("session", "galileo: galileo_context.clear_session() ignored: no logger (%s)")

    def _here(self) -> GalileoLogger | None:
        try:
            return current_logger()
        except Exception:
            return None

    def __repr__(self) -> str:
        return "galileo_context"


def _current_key(scope: Scope | None) -> _registry.Key:
    if scope is not None:
        return (scope.project, scope.log_stream, scope.experiment_id, scope.mode)
    given = _registry.current_defaults()
    return (given.project, given.log_stream, given.experiment_id, given.mode)


def _path_to(root: schema.Record, target: schema.Record) -> list[schema.Record]:
    """The records from under ``root`` down to ``target`` (included); [] when it is not in the tree."""
    for child in getattr(root, "spans", None) or ():
        if child is target:
            return [child]
        below = _path_to(child, target)
        if below:
            return [child, *below]
    return []


#: Scopes decorated calls and hands out the process's loggers; see the module docstring.
galileo_context = GalileoContext()
#: ``galileo.start_session(...)``, as published: :meth:`GalileoContext.start_session`.
start_session = galileo_context.start_session
