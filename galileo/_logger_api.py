"""The published ``GalileoLogger``'s further surface, on our span tree and sender.

:class:`GalileoLogger` (galileo.logger) builds the tree; this mixin adds what the published SDK's logger
also offers and our core does not need: its attributes (``traces``, ``project_name``, ``project_id``,
``log_stream_name``, ``log_stream_id``, ``experiment_id``), ``previous_parent``, ``reset_parent_tracking``,
``add_trace``, ``add_child_span_to_parent``, ``add_protect_span``, ``add_control_span`` and
``ingest_traces``/``async_ingest_traces`` (which send on a batch an ``ingestion_hook`` received, see
:mod:`galileo._ingestion`).

Differences kept from the published SDK: ``project_id`` and ``log_stream_id`` are looked up by the sender,
off the request path, so they are None until the first delivery resolved them (or were given); ``add_trace``
with a trace open concludes it with a WARNING instead of raising; ``project_name`` and ``log_stream_name`` are
the names the logger was configured with, None when it was given an id alone (the published logger reports
the default name "default" there, which names no project of it). ``add_control_span`` takes the values of
galileo_core's Control* enums and ``ControlResult`` (or plain strings and a mapping) without depending on it;
a value the wire's schema does not admit is sent as null with a WARNING, never failing its request.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from galileo import _sender, _sessions, _transport, schema
from galileo._trace_state import Level, TraceState, now_ns

if TYPE_CHECKING:
    from galileo.config import GalileoConfig

__all__ = ["PublishedLoggerApi"]

_log = logging.getLogger("galileo")
_S = TypeVar("_S", bound=schema.Span)

#: How long ``ingest_traces`` waits for delivery off requests and event loops.
_INGEST_WAIT = 30.0


class PublishedLoggerApi:
    """Mixed into :class:`~galileo.logger.GalileoLogger`; see the module docstring."""

    _config: GalileoConfig
    _target: _transport.Target
    _lock: threading.RLock
    _disabled: bool

    if TYPE_CHECKING:  # provided by GalileoLogger

        def _state(self) -> TraceState: ...
        def _new_trace(self, *args: Any) -> schema.Trace: ...
        def _open_trace(self, trace: schema.Trace) -> None: ...
        def _place(
            self, span: schema.Span, duration_ns: int | None, created_at: Any, *, opens_level: bool
        ) -> tuple[Level, Level, int] | None: ...
        def _parent_entry(self) -> Level: ...
        def _add(self, span: _S, duration_ns: int | None, created_at: Any, *, opens_level: bool) -> _S: ...
        def _common(
            self, metadata: Mapping[str, Any] | None, tags: Any, status: int | None, step: int | None
        ) -> dict[str, Any]: ...
        def _payload(
            self, kind: str, input: Any, output: Any, redacted_input: Any, redacted_output: Any
        ) -> dict[str, Any]: ...

    # -- attributes --------------------------------------------------------------------------------------
    @property
    def project_name(self) -> str | None:
        """The project's name as configured (argument, then GALILEO_PROJECT, then "default"); None when the
        logger was given ``project_id`` alone."""
        return self._config.project

    @property
    def log_stream_name(self) -> str | None:
        """The log stream's name as configured; None when given ``log_stream_id`` alone, and for an
        experiment's logger."""
        return self._config.log_stream

    @property
    def traces(self) -> list[schema.Trace]:
        """The traces started since the last flush (batch mode: those a flush will send)."""
        return self._state().traces

    @property
    def experiment_id(self) -> str | None:
        return self._config.experiment_id

    @property
    def project_id(self) -> str | None:
        """The project's id: as given, or once the sender resolved it (off the request path); else None."""
        if self._config.project_id is not None:
            return self._config.project_id
        ids = self._resolved()
        return None if ids is None else ids.project_id

    @property
    def log_stream_id(self) -> str | None:
        """The log stream's id: as given, or once the sender resolved it; None for an experiment's logger."""
        if self._config.log_stream_id is not None or self._config.experiment_id is not None:
            return self._config.log_stream_id
        ids = self._resolved()
        return None if ids is None else ids.log_stream_id

    def _resolved(self) -> _transport.TargetIds | None:
        return _sender.get_sender(self._config).known_ids(self._config, self._target)

    # -- the parent stack --------------------------------------------------------------------------------
    def previous_parent(self) -> schema.Record | None:
        """The open record the current parent is under (None at a trace's root, or with nothing open)."""
        with self._lock:
            stack = self._state().stack
            if not stack:
                return None
            current = self._parent_entry()
            ids = [entry.id for entry in stack]
            index = ids.index(current.id) if current.id in ids else len(stack)
            return stack[index - 1].record if index >= 1 else None

    def reset_parent_tracking(self) -> None:
        """Forget the open levels without concluding them: the next span needs a new trace.

        What was logged stays where it is (batch mode: sent by the next flush, as it is).
        """
        with self._lock:
            state = self._state()
            del state.stack[:]
            state.outbox = None
            if state.upstream_trace_id is not None:  # a continuing logger keeps continuing its trace
                parent = state.upstream_parent_id or state.upstream_trace_id
                state.stack.append(Level(None, parent, now_ns()))

    # -- records built elsewhere -------------------------------------------------------------------------
    def add_trace(
        self,
        input: Any,
        redacted_input: Any = None,
        output: Any = None,
        redacted_output: Any = None,
        name: str | None = None,
        created_at: _dt.datetime | None = None,
        duration_ns: int | None = None,
        user_metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        dataset_input: str | None = None,
        dataset_output: str | None = None,
        dataset_metadata: dict[str, Any] | None = None,
        external_id: str | None = None,
        id: uuid.UUID | str | None = None,
    ) -> schema.Trace:
        """Open a trace with its output (and id) known; with a trace open, that one is concluded first."""
        trace = self._new_trace(
            input, redacted_input, name, duration_ns, created_at, user_metadata, tags, external_id
        )
        if id is not None:
            try:
                trace.id = str(uuid.UUID(str(id)))
            except ValueError:
                _log.warning("galileo: add_trace: id is not a UUID; a new id is used")
        if output is not None:
            policy = self._config.payload_policy
            trace.output = policy.output("trace", output)
            if redacted_output is not None:
                trace.redacted_output = policy.output("trace", redacted_output)
        _set_dataset(trace, dataset_input, dataset_output, dataset_metadata)
        self._open_trace(trace)
        return trace

    def add_child_span_to_parent(self, span: schema.Span) -> None:
        """Add a span record built by the caller (with its children) under the current parent."""
        if not isinstance(span, (*schema.SPAN_TYPES.values(), schema.ControlSpan)):
            _log.warning("galileo: add_child_span_to_parent: %s is not a span: ignored", type(span).__name__)
            return
        if self._disabled:
            return
        with self._lock:
            placed = self._place(span, span.duration_ns, span.created_at, opens_level=False)
            outbox = self._state().outbox
            if placed is not None and outbox is not None and isinstance(span, schema.ParentRecord):
                _hand_subtree(outbox, span)  # a span added whole is concluded: nothing opens under it

    def add_protect_span(
        self,
        payload: Any,
        redacted_payload: Any = None,
        response: Any = None,
        redacted_response: Any = None,
        created_at: _dt.datetime | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        status_code: int | None = None,
        step_number: int | None = None,
    ) -> schema.ToolSpan:
        """A Galileo Protect check as the published SDK logs it: a tool span named ``GalileoProtect`` whose
        input is the payload's JSON and output the response's; it lasts what the response says it took."""
        duration_ns = None
        meta = getattr(response, "trace_metadata", None)
        try:
            if meta is not None:
                duration_ns = int(meta.response_at - meta.received_at)
        except (AttributeError, TypeError, ValueError):
            pass
        return self.add_tool_span(  # type: ignore[attr-defined, no-any-return]
            schema.to_text(payload),
            None if redacted_payload is None else schema.to_text(redacted_payload),
            None if response is None else schema.to_text(response),
            None if redacted_response is None else schema.to_text(redacted_response),
            "GalileoProtect",
            duration_ns,
            created_at,
            metadata,
            tags,
            status_code,
            None,
            step_number,
        )

    def add_control_span(
        self,
        input: str = "",
        output: Any = None,
        name: str | None = None,
        created_at: _dt.datetime | None = None,
        duration_ns: int | None = None,
        metadata: dict[str, Any] | None = None,
        tags: list[str] | None = None,
        status_code: int | None = None,
        id: uuid.UUID | str | None = None,
        step_number: int | None = None,
        control_id: int | None = None,
        agent_name: str | None = None,
        check_stage: Any = None,
        applies_to: Any = None,
        evaluator_name: str | None = None,
        selector_path: str | None = None,
    ) -> schema.ControlSpan:
        """Add a control span (a leaf: one Agent Control check and its :class:`~galileo.schema.ControlResult`)
        under the current parent, as the published SDK does.

        ``output`` is a ``ControlResult`` (ours or galileo_core's) or a mapping with its fields;
        ``check_stage`` and ``applies_to`` are enum members or their values; ``id``, when given, is the span's
        id (an upstream control execution's, say). Values the wire does not admit are sent as null, with a
        WARNING (see the module docstring).
        """
        meta: Any = dict(metadata) if isinstance(metadata, Mapping) else {}
        stage = _enum_value("check_stage", check_stage, schema.CONTROL_CHECK_STAGES, meta)
        target = _enum_value("applies_to", applies_to, schema.CONTROL_APPLIES_TO, meta)
        span = schema.ControlSpan(
            **self._payload("control", input, output, None, None),
            name=name or "",
            control_id=_int_or_none("control_id", control_id),
            agent_name=_text_or_none(agent_name),
            check_stage=stage,
            applies_to=target,
            evaluator_name=_text_or_none(evaluator_name),
            selector_path=_text_or_none(selector_path),
            **self._common(meta if meta or metadata is None else metadata, tags, status_code, step_number),
        )
        if id is not None:
            try:
                span.id = str(uuid.UUID(str(id)))
            except ValueError:
                _log.warning("galileo: add_control_span: id is not a UUID; a new id is used")
        return self._add(span, duration_ns, created_at, opens_level=False)

    # -- sending a batch on -----------------------------------------------------------------------------
    def ingest_traces(self, ingest_request: Any) -> None:
        """Send a :class:`~galileo._ingestion.TracesIngestRequest`'s traces (e.g. from an ingestion hook).

        They go through the sender as a batch flush does, to the request's log stream or experiment when it
        names one (else this logger's); off requests and event loops this waits (bounded) for delivery.
        """
        outbox = self._submit_request(ingest_request)
        if outbox is None:
            return
        from galileo.logger import _must_not_block

        if not _must_not_block():
            _sender.get_sender(self._config).wait([outbox], _INGEST_WAIT)

    async def async_ingest_traces(self, ingest_request: Any) -> None:
        """:meth:`ingest_traces`, waiting for delivery without blocking the event loop."""
        outbox = self._submit_request(ingest_request)
        if outbox is None:
            return
        sender = _sender.get_sender(self._config)
        await asyncio.get_running_loop().run_in_executor(None, sender.wait, [outbox], _INGEST_WAIT)

    def _submit_request(self, request: Any) -> _sender.Handle | None:
        traces = [t for t in getattr(request, "traces", None) or () if isinstance(t, schema.Trace)]
        if not traces:
            _log.warning("galileo: ingest_traces: the request holds no traces of this SDK: nothing sent")
            return None
        if self._disabled:
            return None
        target = self._target
        log_stream_id = getattr(request, "log_stream_id", None)
        experiment_id = getattr(request, "experiment_id", None)
        if log_stream_id is not None or experiment_id is not None:
            log_stream_id = None if experiment_id else log_stream_id
            target = _transport.Target(target.project, target.project_id, None, log_stream_id, experiment_id)
        from galileo.logger import _count_records

        records = sum(_count_records(t) for t in traces)
        session = None
        session_id = getattr(request, "session_id", None)
        if session_id is not None:
            checked = _sessions.check_session_id(session_id)
            session = None if checked is None else _sessions.SessionRef(checked)
        return _sender.get_sender(self._config).submit_batch(self._config, target, traces, records, session)


def _hand_subtree(outbox: _sender.Handle, span: schema.ParentRecord) -> None:
    """Hand the children of ``span`` (a span the caller built whole, already handed over) to ``outbox``, each
    after its parent, and conclude every parent record after its children, as the logger does for its own."""
    levels: list[tuple[schema.ParentRecord, Iterator[schema.Span]]] = [(span, iter(span.spans))]
    while levels:
        parent, children = levels[-1]
        child = next(children, None)
        if child is None:
            levels.pop()
            outbox.conclude(parent.id)
            continue
        outbox.add(child, parent.id)
        if isinstance(child, schema.ParentRecord):
            levels.append((child, iter(child.spans)))


def _set_dataset(
    record: schema.Record,
    dataset_input: Any,
    dataset_output: Any,
    dataset_metadata: Mapping[str, Any] | None,
) -> None:
    """A record's published ``dataset_*`` fields (text; metadata values as text)."""
    if dataset_input is not None:
        record.dataset_input = _text(dataset_input)
    if dataset_output is not None:
        record.dataset_output = _text(dataset_output)
    if dataset_metadata is not None:
        try:
            record.dataset_metadata = {str(k): _text(v) for k, v in dict(dataset_metadata).items()}
        except (TypeError, ValueError):
            _log.warning("galileo: dataset_metadata is not a mapping: ignored")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else schema.to_text(value)


def _events(events: Any) -> list[dict[str, Any]] | None:
    """An llm span's published ``events`` as JSON objects (pydantic models dumped; others as given)."""
    out: list[dict[str, Any]] = []
    try:
        for event in events:
            dump = getattr(event, "model_dump", None)
            value = dump(mode="json", exclude_none=True) if callable(dump) else event
            if isinstance(value, Mapping):
                out.append(dict(value))
            else:
                _log.warning("galileo: an llm span event that is not an object was ignored")
    except Exception:
        _log.warning("galileo: llm span events could not be read: ignored")
        return None
    return out


def _enum_value(field: str, value: Any, allowed: tuple[str, ...], metadata: dict[str, Any]) -> str | None:
    """A control span's enum field as the wire's value, or None; a value the wire does not admit is logged and
    kept in ``metadata``."""
    if value is None:
        return None
    text = getattr(value, "value", value)
    if text in allowed:
        return str(text)
    _log.warning("galileo: add_control_span: %s %r is not one of %s: sent as null", field, text, allowed)
    metadata.setdefault(field, str(text))
    return None


def _int_or_none(field: str, value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    try:
        return int(str(value))
    except ValueError:
        _log.warning("galileo: add_control_span: %s is not an integer: sent as null", field)
        return None


def _text_or_none(value: Any) -> str | None:
    return None if value is None else _text(value)


def _agent_type(value: Any) -> str:
    """An agent span's type: an enum's value, "default" for None or (with a WARNING) an unknown type."""
    if value is None:
        return "default"
    text = getattr(value, "value", value)
    if text in schema.AGENT_TYPES:
        return str(text)
    _log.warning("galileo: unknown agent_type %r: sent as 'default'", text)
    return "default"
