"""A ``galileo_context(...)`` block (:class:`Scope`): where the decorated calls in it go.

Entering a block sets it in :data:`galileo._context_loggers.entered`, leaves any decorated call's span frame
(the block's calls start at its logger's root) and gives the block's logger a fresh
:class:`~galileo._trace_state.TraceState` in this context, continuing ``trace_id``/``span_id`` when given,
joined to the W3C context of ``traceparent``/``tracestate`` when given (the rules of
:mod:`galileo._incoming`, as for a request's headers: ``trace_id``/``span_id`` first, else our ``galileo=``
tracestate member, else the block's first trace takes the id mapped from the OTel trace id).
Leaving it concludes what the block left open and hands it over (:func:`galileo._context_loggers.hand_over`),
then restores all three. What the block does not name comes from ``galileo_context.init(...)``, else the
environment. A block that cannot be set up (a bad configuration) is ignored with one WARNING.
"""

from __future__ import annotations

import logging
from contextvars import Token
from types import TracebackType

from galileo import _sessions, propagation
from galileo._context import RequestState, SpanFrame, current_request, span_frame
from galileo._context_loggers import (
    ContextLogger,
    context_logger,
    current_defaults,
    entered,
    hand_over,
    new_state,
)
from galileo._incoming import Incoming, W3CJoin, decide
from galileo._log_fields import warn_once as _warn_once
from galileo._trace_state import TraceState
from galileo.logger import _check_uuid

__all__ = ["Scope"]

_log = logging.getLogger("galileo")

#: What entering a block set: its scope, no span frame, a fresh trace state.
_Tokens = tuple[Token["Scope | None"], Token[SpanFrame | None], Token[TraceState | None]]


class Scope:
    """One ``galileo_context(...)`` block."""

    __slots__ = (
        "_tokens",
        "experiment_id",
        "log_stream",
        "logger",
        "mode",
        "own_session",
        "project",
        "request",
        "session",
        "span_id",
        "trace_id",
        "w3c",
    )

    def __init__(
        self,
        project: str | None,
        log_stream: str | None,
        trace_id: str | None,
        span_id: str | None,
        mode: str | None,
        experiment_id: str | None = None,
        w3c: tuple[str | None, str | None] = (None, None),
    ) -> None:
        given = current_defaults()  # what the block does not name comes from galileo_context.init(...)
        self.project = project if project is not None else given.project
        self.log_stream = log_stream if log_stream is not None else given.log_stream
        self.experiment_id = experiment_id if experiment_id is not None else given.experiment_id
        if mode is None:
            mode = given.mode
        self.trace_id = trace_id
        self.span_id = span_id
        self.w3c = w3c  # (traceparent, tracestate) as given
        self.mode = mode
        self.logger: ContextLogger | None = None
        self.request: RequestState | None = None
        self._tokens: _Tokens | None = None
        #: galileo_context(session_id=...): the block's own session (``own_session``), which its logger's
        #: traces in this context belong to instead of the logger's (see ContextLogger._session).
        self.own_session = False
        self.session: _sessions.SessionRef | None = None

    def __repr__(self) -> str:
        return f"<galileo_context project={self.project!r} log_stream={self.log_stream!r}>"

    def __enter__(self) -> Scope:
        if self._tokens is not None:
            raise RuntimeError("this galileo_context(...) block is already entered")
        try:
            (trace_id, parent_id, w3c), mode = self._ids()
            self.logger = context_logger(self.project, self.log_stream, mode, self.experiment_id)
            self.request = current_request()
            state = new_state(trace_id, parent_id)
            if w3c is not None:
                state.w3c = W3CJoin(w3c, continuing=trace_id is not None)
        except Exception:
            _warn_once("scope", "galileo: galileo_context(...) ignored: cannot set it up (%s)")
            return self
        self._tokens = (entered.set(self), span_frame.set(None), self.logger._use_state(state))
        return self

    def _ids(self) -> tuple[Incoming, str | None]:
        """What the block continues (and joins) and its mode; what is malformed is ignored with a WARNING."""
        mode = self.mode
        traceparent, tracestate = self.w3c
        w3c = propagation.w3c_context(traceparent, tracestate)
        galileo: tuple[str | None, str | None] = (None, None)
        if self.trace_id is not None or self.span_id is not None:
            try:
                trace_id = _check_uuid("trace_id", self.trace_id)
                parent_id = _check_uuid("span_id", self.span_id)
                if trace_id is None:
                    raise ValueError("span_id without trace_id")
                if mode not in (None, "distributed"):
                    raise ValueError("continuing a trace needs mode='distributed'")
                galileo = (trace_id, parent_id)
            except Exception as exc:
                _log.warning("galileo: galileo_context(trace_id=..., span_id=...) ignored: %s", exc)
        incoming = decide(galileo, w3c)
        if incoming.trace_id is None:
            return incoming, mode
        if mode not in (None, "distributed"):  # our tracestate member, in batch mode: a trace of its own
            return Incoming(None, None, w3c), mode
        return incoming, "distributed"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is None or self.logger is None:
            return
        try:
            hand_over(self.logger)  # what the block left open, concluded and queued
        except Exception:
            _warn_once("scope-exit", "galileo: could not hand over a galileo_context block's records (%s)")
        finally:
            self.logger._restore_state(tokens[2])
            span_frame.reset(tokens[1])
            entered.reset(tokens[0])

    async def __aenter__(self) -> Scope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)
