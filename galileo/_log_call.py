"""One ``@log`` call: the span (or level) it opens, the trace it starts when it is the outermost, its outcome.

:func:`begin` finds where the call goes (see "Where spans go" in :mod:`galileo.decorator`), starts a trace
when there is none in this context (an outermost call of a process logger: a fresh
:class:`~galileo._trace_state.TraceState` for the call's duration, ``by_call``), and opens the call's span:
a workflow or agent span as a level, made current through :data:`galileo._context.span_frame`; a leaf is
recorded when the call ends. :meth:`Call.end` records the outcome and, for the outermost call, concludes the
trace and hands it over (:func:`galileo._context_loggers.hand_over`). Everything goes through the logger's
record building and lock (``_add_under``, ``_conclude_record``, ``_state()``); nothing here waits, sends or
raises: a failure is one WARNING and the call runs untraced.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from contextvars import Token
from datetime import datetime, timedelta, timezone
from typing import Any, cast

from galileo import schema
from galileo._context import SpanFrame, span_frame
from galileo._context_loggers import ContextLogger, hand_over, new_state
from galileo._current import current_logger
from galileo._log_fields import MAX_CHARS, LogSpec, clip, output_value, to_text, warn_once
from galileo._trace_state import TraceState
from galileo._trace_state import now_ns as _now_ns
from galileo.logger import GalileoLogger

__all__ = ["Call", "Items", "begin"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Call:
    """A decorated call in progress: its span (or level), and the trace it started if it is the outermost."""

    __slots__ = (
        "fields",
        "frame",
        "input",
        "logger",
        "name",
        "spec",
        "start_ns",
        "start_wall",
        "tokens",
        "tree",
    )

    def __init__(
        self, spec: LogSpec, logger: GalileoLogger, input_text: str, fields: dict[str, Any] | None
    ) -> None:
        self.spec = spec
        self.logger = logger
        self.input = input_text
        self.fields = fields  # span fields from the arguments (None: none)
        self.name = fields.get("name", spec.name) if fields else spec.name
        self.frame: SpanFrame | None = None
        self.tree: TraceState | None = None  # set when this call started the trace
        self.tokens: tuple[Token[SpanFrame | None] | None, Token[TraceState | None] | None] = (None, None)
        self.start_ns = 0
        self.start_wall: datetime | None = None  # a leaf's start (a level's span records its own)

    def activate(self) -> None:
        """Make this call's span (and trace) current in this context."""
        tree = self.tree
        frame = self.frame
        self.tokens = (
            span_frame.set(frame) if frame is not None else None,
            cast(ContextLogger, self.logger)._use_state(tree) if tree is not None else None,
        )

    def deactivate(self) -> None:
        frame_token, tree_token = self.tokens
        self.tokens = (None, None)
        if tree_token is not None:
            cast(ContextLogger, self.logger)._restore_state(tree_token)
        if frame_token is not None:
            span_frame.reset(frame_token)

    def end(self, output: Any, error: BaseException | None) -> None:
        """Record the outcome (this call must not be active); never raises."""
        try:
            self._end(output, error)
        except Exception:
            warn_once(
                "end", "galileo: could not record a @log call's outcome (%s); the call was not affected"
            )

    def _end(self, output: Any, error: BaseException | None) -> None:
        logger = self.logger
        tree = self.tree
        fields = self.fields or {}
        token = cast(ContextLogger, logger)._use_state(tree) if tree is not None else None
        try:
            status = fields.get("status_code")
            if error is not None:
                status = 500
                output = clip(f"{type(error).__name__}: {_error_text(error)}")
            elif "output" in fields:
                output = output_value(self.spec.kind, fields["output"])
            if self.frame is not None:
                logger._conclude_record(self.frame, output, status, fields.get("redacted_output"))
            else:
                spec = self.spec
                elapsed = _now_ns() - self.start_ns
                created_at = self.start_wall or _utcnow() - timedelta(microseconds=elapsed // 1000)
                kind = spec.kind
                if fields:
                    payload = logger._payload(
                        kind, self.input, output, fields.get("redacted_input"), fields.get("redacted_output")
                    )
                    extra = _leaf_fields(logger, kind, fields)
                else:  # the common case: no metadata nor tags, the attrs defaults as _common would give
                    payload = logger._payload(kind, self.input, output, None, None)
                    extra = {}
                span = spec.cls(**payload, name=self.name, status_code=status, created_at=created_at, **extra)
                logger._add_under(span, elapsed, created_at, opens_level=False)
            if tree is not None:
                with logger._lock:
                    _conclude_trace(logger, status)
                hand_over(logger)
        finally:
            if token is not None:
                cast(ContextLogger, logger)._restore_state(token)


def _leaf_fields(logger: GalileoLogger, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The record keywords of an llm, retriever or tool span's fields (other than input/output/name)."""
    extra = logger._common(fields.get("metadata"), fields.get("tags"), None, fields.get("step_number"))
    if kind == "llm":
        for field in (
            "model",
            "tools",
            "temperature",
            "num_input_tokens",
            "num_output_tokens",
            "finish_reason",
        ):
            if field in fields:
                extra[field] = fields[field]
        if "time_to_first_token_ns" in fields:
            extra["time_to_first_token_ns"] = fields["time_to_first_token_ns"]
        if "total_tokens" in fields:
            extra["num_total_tokens"] = fields["total_tokens"]
    elif kind == "tool" and "tool_call_id" in fields:
        extra["tool_call_id"] = fields["tool_call_id"]
    return extra


def _level_fields(logger: GalileoLogger, kind: str, fields: dict[str, Any] | None) -> dict[str, Any]:
    """The record keywords of a workflow or agent span's fields given when it opens."""
    if not fields:
        return {}
    extra = logger._common(fields.get("metadata"), fields.get("tags"), None, fields.get("step_number"))
    if kind == "agent" and "agent_type" in fields:
        extra["agent_type"] = fields["agent_type"]
    return extra


def _conclude_trace(logger: GalileoLogger, status: int | None) -> None:
    """Before a trace a decorated call started is handed over: an error's status on every open level, and
    the output the trace takes from its last child when that is a message or documents, as their JSON (the
    published SDK's trace output)."""
    if status == 500:
        logger._conclude_all(None, None, None, status)
    stack = logger._state().stack
    trace = stack[0].record if stack else None
    if not isinstance(trace, schema.Trace) or trace.output is not None or not trace.spans:
        return
    last = trace.spans[-1].output
    if isinstance(last, schema.Message):
        trace.output = json.dumps(
            {k: v for k, v in last.to_wire().items() if v is not None}, ensure_ascii=False
        )
    elif isinstance(last, list) and last and all(isinstance(d, schema.Document) for d in last):
        trace.output = json.dumps([d.to_wire() for d in last], ensure_ascii=False)


def _error_text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return ""


def _dataset(record: Any) -> dict[str, Any]:
    """``start_trace`` keywords of a ``dataset_record`` (an object or mapping with input/output/metadata),
    those the logger takes."""
    if record is None:
        return {}
    values = {
        f"dataset_{key}": record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)
        for key in ("input", "output", "metadata")
    }
    return {k: v for k, v in values.items() if v is not None}


def begin(spec: LogSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Call | None:
    """Open the span of a call (and its trace, for an outermost call), left active; None: run untraced."""
    try:
        frame = span_frame.get()
        logger = current_logger()  # (the frame's logger, when a decorated workflow/agent call runs here)
        if logger._disabled:
            return None
        call = Call(spec, logger, spec.input_text(args, kwargs), spec.fields(args, kwargs))
        request = logger._request
        if request is not None and not logger._state().stack:  # a request's trace opens at its first span
            with logger._lock:
                if not logger._state().stack and not request.finalized:
                    logger._open_request_trace(call.input)
        if frame is None and isinstance(logger, ContextLogger):
            here = logger._state_here()
            if here is None or not here.stack:  # no trace in this context: this call is the outermost
                call.tree = new_state(by_call=True)
                if here is not None:  # a galileo_context(traceparent=...) block's W3C context (see _incoming)
                    call.tree.w3c = here.w3c
                token = logger._use_state(call.tree)
                try:
                    logger.start_trace(input=call.input, name=call.name, **_dataset(spec.dataset))
                finally:
                    logger._restore_state(token)
        if call.tree is not None:
            call.activate()  # the trace this call started (its span frame is set below)
        if spec.opens_level:
            now = _utcnow()
            kind = spec.kind  # a level opens without an output: only the input to shape
            given = call.fields.get("redacted_input") if call.fields else None
            span = spec.cls(
                input=logger._policy.input(kind, call.input),
                redacted_input=logger._redacted(kind, "input", call.input, given),
                name=call.name,
                created_at=now,
                **_level_fields(logger, kind, call.fields),
            )
            call.frame = logger._add_under(span, None, now, opens_level=True)
            if call.frame is not None:
                call.tokens = (span_frame.set(call.frame), call.tokens[1])
        else:
            call.start_wall = _utcnow()
        call.start_ns = _now_ns()
        return call
    except Exception:
        warn_once("begin", "galileo: @log could not trace a call (%s); running it untraced")
        return None


class Items:
    """A generator's yielded items, as the text its span's output shows (clipped at MAX_CHARS)."""

    __slots__ = ("omitted", "parts", "size", "texts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.texts = True  # every item a string: concatenate them as they are
        self.size = 0
        self.omitted = 0

    def add(self, item: Any) -> None:
        if self.size > MAX_CHARS:
            self.omitted += 1
            return
        if isinstance(item, str):
            text = item
        else:
            self.texts = False
            text = to_text(item)
        self.parts.append(text)
        self.size += len(text) + 1

    def text(self) -> str | None:
        if not self.parts:
            return None
        text = ("" if self.texts else "\n").join(self.parts)
        if self.omitted:
            text += f"\n…[{self.omitted} more items]"
        return clip(text)
