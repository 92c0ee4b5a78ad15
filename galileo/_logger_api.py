"""The published ``GalileoLogger``'s further surface, on our span tree and sender.

:class:`GalileoLogger` (galileo.logger) builds the tree; this mixin adds what the published SDK's logger
also offers and our core does not need: its attributes (``traces``, ``project_id``, ``log_stream_id``,
``experiment_id``), ``previous_parent``, ``reset_parent_tracking``, ``add_trace``,
``add_child_span_to_parent`` and ``ingest_traces``/``async_ingest_traces`` (which send on a batch an
``ingestion_hook`` received, see :mod:`galileo._ingestion`).

Differences kept from the published SDK: ``project_id`` and ``log_stream_id`` are looked up by the sender,
off the request path, so they are None until the first delivery resolved them (or were given); ``add_trace``
with a trace open concludes it with a WARNING instead of raising.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from galileo import _sender, _transport, schema

if TYPE_CHECKING:
    from galileo.config import GalileoConfig
    from galileo.logger import _Open

__all__ = ["PublishedLoggerApi"]

_log = logging.getLogger("galileo")

#: How long ``ingest_traces`` waits for delivery off requests and event loops.
_INGEST_WAIT = 30.0


class PublishedLoggerApi:
    """Mixed into :class:`~galileo.logger.GalileoLogger`; see the module docstring."""

    _config: GalileoConfig
    _target: _transport.Target
    _lock: threading.RLock
    _stack: list[_Open]
    _traces: list[schema.Trace]
    _outbox: _sender.TraceOutbox | None
    _upstream_trace_id: str | None
    _upstream_parent_id: str | None
    _disabled: bool

    if TYPE_CHECKING:  # provided by GalileoLogger

        def _new_trace(self, *args: Any) -> schema.Trace: ...
        def _open_trace(self, trace: schema.Trace) -> None: ...
        def _place(
            self, span: schema.Span, duration_ns: int | None, created_at: Any, *, opens_level: bool
        ) -> tuple[_Open, _Open, int] | None: ...
        def _parent_entry(self) -> _Open: ...
        def _payload(
            self, kind: str, input: Any, output: Any, redacted_input: Any, redacted_output: Any
        ) -> dict[str, Any]: ...

    # -- attributes --------------------------------------------------------------------------------------
    @property
    def traces(self) -> list[schema.Trace]:
        """The traces started since the last flush (batch mode: those a flush will send)."""
        return self._traces

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
        return _transport.get_client(self._config)._ids.get(self._target)

    # -- the parent stack --------------------------------------------------------------------------------
    def previous_parent(self) -> schema.Record | None:
        """The open record the current parent is under (None at a trace's root, or with nothing open)."""
        with self._lock:
            stack = self._stack
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
            del self._stack[:]
            self._outbox = None
            if self._upstream_trace_id is not None:  # a continuing logger keeps continuing its trace
                from galileo.logger import _now_ns, _Open

                parent = self._upstream_parent_id or self._upstream_trace_id
                self._stack.append(_Open(None, parent, _now_ns()))

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
        if not isinstance(span, tuple(schema.SPAN_TYPES.values())):
            _log.warning("galileo: add_child_span_to_parent: %s is not a span: ignored", type(span).__name__)
            return
        if self._disabled:
            return
        with self._lock:
            placed = self._place(span, span.duration_ns, span.created_at, opens_level=False)
            outbox = self._outbox
            if placed is not None and outbox is not None and isinstance(span, schema.ParentRecord):
                outbox.conclude(span.id)  # a span added whole is concluded: nothing opens under it

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

    def _submit_request(self, request: Any) -> _sender.Outbox | None:
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
        client = _transport.get_client(self._config)
        return _sender.get_sender(self._config).submit_batch(client, target, traces, records)


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


def _agent_type(value: Any) -> str:
    """An agent span's type: an enum's value, "default" for None or (with a WARNING) an unknown type."""
    if value is None:
        return "default"
    text = getattr(value, "value", value)
    if text in schema.AGENT_TYPES:
        return str(text)
    _log.warning("galileo: unknown agent_type %r: sent as 'default'", text)
    return "default"
