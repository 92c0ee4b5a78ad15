"""OpenTelemetry spans as Galileo records, stored beside the SDK's and joined with them into one tree.

Each OTel span (:class:`galileo.collector._otlp.OtelSpan`) becomes one record:

* **Fields** from :func:`galileo._semconv.record_from_attributes` (OpenInference and GenAI conventions: type,
  input, output, model, token counts, tags, metadata); ``created_at`` is the span's start, ``metrics.
  duration_ns`` its end minus its start; a span whose status is ERROR gets ``status_code`` 500 unless its
  attributes give one. Metadata also holds ``otel.trace_id``, ``otel.span_id``, ``otel.parent_span_id``
  (:mod:`galileo._w3c`'s keys), the resource's ``service.name`` and the status message.
* **Ids** by :mod:`galileo._w3c`: the record's trace id is ``trace_uuid(otel trace id)``, its id
  ``span_uuid(otel trace id, otel span id)``. So a retried export stores nothing twice.
* **Where**: the project named by the span's ``galileo.project.name`` attribute, else its resource's, else
  the ``project`` header (``POST /otel/traces``), else ``default``; the log stream likewise from
  ``galileo.logstream.name`` and the ``logstream`` header, else ``default``, or none when the request names
  an experiment (``experimentid`` header, ``galileo.experiment.id``) and no log stream. ``service.name`` does
  *not* pick a log stream: spans of a default-configured OTel service land where a default-configured SDK
  logs. Missing projects and log streams are created; a blank name, or one over 256 characters, is skipped.
* Not kept: span events and links, the span kind, and resource attributes other than ``service.name``.

**Parents**, decided when a span is stored, in this order: (1) the record whose id is the mapped id of the
span's OTel parent (an OTel span, in this request or stored before); else (2) a record of our SDK in that
trace whose OTel span id is the parent span id: the first 16 hex digits of its uuid
(:func:`galileo._w3c.otel_span_id`), or its ``otel.span_id`` metadata; else (3) the trace record. In case
(3) the span *waits* (table ``otel_waiting``, :mod:`galileo.collector._schema` migration 4): when a record
arrives later, by OTLP or through the SDK's ingest, that is its parent by (1) or (2), an SQLite trigger
moves the span under it. So spans may arrive in any order and in any number of requests, a child before its
parent, and the tree is one as soon as both are stored; a parent that never arrives leaves the span under
the trace (never an orphan).

**The trace record.** A root OTel span (no parent) in a trace that has no trace record gets one made for it
(the span's name, input, output, start, duration and status; complete), and stays a record of its own below
it. When a trace record with that id is stored already (our SDK's, for a trace that came in to our service
as W3C trace context: see :mod:`galileo._w3c`), OTel spans join it. When our SDK's trace record arrives
*after* one was made (table ``otel_stand_ins``), the SDK's replaces it (a trigger): our service's own record
of the trace is the better one, and its later PATCHes find it.
"""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Final

from galileo import _semconv
from galileo._semconv import MAX_VALUE_CHARS, record_from_attributes
from galileo._w3c import PARENT_SPAN_ID_KEY, SPAN_ID_KEY, TRACE_ID_KEY, otel_span_id, span_uuid, trace_uuid
from galileo.collector._otlp import OtelSpan
from galileo.collector.store import Record, Store

__all__ = [
    "DEFAULT_LOG_STREAM",
    "DEFAULT_PROJECT",
    "store_spans",
]

logger = logging.getLogger("galileo.collector")

DEFAULT_PROJECT: Final = "default"
DEFAULT_LOG_STREAM: Final = "default"
MAX_NAME_CHARS: Final = 256

_WAIT = "INSERT OR IGNORE INTO otel_waiting (trace_id, parent_span, parent_id, record_id) VALUES (?, ?, ?, ?)"
_STAND_IN = "INSERT OR IGNORE INTO otel_stand_ins (id) VALUES (?)"

_Location = tuple[str, "str | None"]  # (project id, log stream id)


def _name(*candidates: Any) -> str | None:
    for value in candidates:
        if isinstance(value, str) and value.strip() and len(value) <= MAX_NAME_CHARS:
            return value.strip()
    return None


class _Locations:
    """Project and log stream ids by name, created when missing, looked up once per request."""

    def __init__(self, store: Store, project: str | None, log_stream: str | None, experiment: bool) -> None:
        self.store = store
        self.project, self.log_stream, self.experiment = project, log_stream, experiment
        self._ids: dict[tuple[str, str | None], _Location] = {}

    def of(self, span: OtelSpan) -> _Location:
        attributes, resource = span.attributes, span.resource
        project = _name(attributes.get(_semconv.PROJECT), resource.get(_semconv.PROJECT), self.project)
        stream = _name(
            attributes.get(_semconv.LOG_STREAM), resource.get(_semconv.LOG_STREAM), self.log_stream
        )
        experiment = self.experiment or _semconv.EXPERIMENT in attributes or _semconv.EXPERIMENT in resource
        key = (project or DEFAULT_PROJECT, stream or (None if experiment else DEFAULT_LOG_STREAM))
        if key not in self._ids:
            found, _ = self.store.create_project(key[0], "gen_ai")
            stream_id = None if key[1] is None else self.store.create_log_stream(found.id, key[1])[0].id
            self._ids[key] = (found.id, stream_id)
        return self._ids[key]


def _timestamp(unix_ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.ffffffZ``: the store's sortable form, and a wire timestamp."""
    moment = datetime.fromtimestamp(unix_ns // 10**9, timezone.utc)
    return moment.replace(microsecond=unix_ns % 10**9 // 1000).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _storable(value: Any) -> Any:
    """``value`` with what JSON cannot hold as SQLite reads it (NaN, infinities, integers beyond 64 bits:
    an attribute's raw value may be any of them) as text. Attribute values nest a few levels at most."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
        return str(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {key: _storable(item) for key, item in value.items()}
    return value


def _fields(span: OtelSpan) -> dict[str, Any]:
    """The record's wire dict (without id) from the span: conventions, times, status, OTel ids."""
    fields: dict[str, Any] = _storable(record_from_attributes(span.name, span.attributes))
    metadata: dict[str, str] = fields["user_metadata"]
    metadata[TRACE_ID_KEY] = span.trace_id
    metadata[SPAN_ID_KEY] = span.span_id
    if span.parent_span_id is not None:
        metadata[PARENT_SPAN_ID_KEY] = span.parent_span_id
    service = span.resource.get("service.name")
    if isinstance(service, str) and service:
        metadata.setdefault("service.name", service[:MAX_VALUE_CHARS])
    if span.status_message:
        metadata.setdefault("otel.status_message", span.status_message[:MAX_VALUE_CHARS])
    if span.failed and fields["status_code"] is None:
        fields["status_code"] = 500
    fields["metrics"] = {**(fields.get("metrics") or {}), "duration_ns": span.end_ns - span.start_ns}
    fields["created_at"] = _timestamp(span.start_ns)
    return fields


def _record(
    body: dict[str, Any], trace_id: str, parent_id: str | None, where: _Location, **extra: Any
) -> Record:
    return Record(
        id=body["id"],
        type=body["type"],
        trace_id=trace_id,
        parent_id=parent_id,
        project_id=where[0],
        log_stream_id=where[1],
        name=body["name"],
        created_at=body["created_at"],
        is_complete=extra.pop("is_complete", None),
        body=body,
        **extra,
    )


def _trace_record(span: OtelSpan, fields: Mapping[str, Any], trace_id: str, where: _Location) -> Record:
    """The trace record made for a root span whose trace has none."""
    body: dict[str, Any] = {
        "type": "trace",
        "id": trace_id,
        "name": span.name,
        "input": fields["input"],
        "output": fields["output"],
        "created_at": fields["created_at"],
        "user_metadata": {TRACE_ID_KEY: span.trace_id},
        "tags": [],
        "status_code": fields["status_code"],
        "metrics": {"duration_ns": span.end_ns - span.start_ns},
    }
    session = span.attributes.get(_semconv.SESSION) or span.resource.get(_semconv.SESSION)
    session_id = _uuid(session)
    if session_id is not None:
        body["session_id"] = session_id
    return _record(body, trace_id, None, where, is_complete=True, session_id=session_id)


def _uuid(value: Any) -> str | None:
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) else None
    except ValueError:
        return None


class _Trace:
    """What is stored of one trace: whether its trace record is, and its records by OTel span id."""

    def __init__(self, store: Store, trace_id: str) -> None:
        rows = store.query(
            "SELECT id, type, json_extract(body, '$.user_metadata.\"otel.span_id\"') AS otel_span"
            " FROM records WHERE trace_id = ?",
            (trace_id,),
        )
        self.has_record = any(row["id"] == trace_id and row["type"] == "trace" for row in rows)
        self.ids = {row["id"] for row in rows}
        self.by_span: dict[str, str] = {}
        for row in rows:  # the uuid's prefix first, so that a record's own metadata wins
            self.by_span.setdefault(otel_span_id(row["id"]), row["id"])
        for row in rows:
            if isinstance(row["otel_span"], str):
                self.by_span[row["otel_span"]] = row["id"]


def store_spans(
    store: Store,
    spans: Iterable[OtelSpan],
    *,
    project: str | None = None,
    log_stream: str | None = None,
    experiment: bool = False,
) -> int:
    """Store ``spans`` as records (see the module docstring), with the request's ``project`` and
    ``log_stream`` names (headers) as defaults; return how many records were new."""
    spans = list(spans)
    locations = _Locations(store, project, log_stream, experiment)
    where = [locations.of(span) for span in spans]
    with store.locked():  # nothing else is stored between reading the traces and storing these spans
        traces: dict[str, _Trace] = {}
        for span in spans:
            if span.trace_id not in traces:
                traces[span.trace_id] = _Trace(store, trace_uuid(span.trace_id))
        batch = {span_uuid(span.trace_id, span.span_id) for span in spans}
        records: list[Record] = []
        waiting: list[tuple[str, str, str, str]] = []
        stand_ins: list[tuple[str]] = []
        for span, location in zip(spans, where, strict=True):
            trace_id, record_id = trace_uuid(span.trace_id), span_uuid(span.trace_id, span.span_id)
            trace = traces[span.trace_id]
            fields = _fields(span)
            parent_id = trace_id
            if span.parent_span_id is None:
                if not trace.has_record:
                    records.append(_trace_record(span, fields, trace_id, location))
                    stand_ins.append((trace_id,))
                    trace.has_record = True
            else:
                mapped = span_uuid(span.trace_id, span.parent_span_id)
                if mapped in batch or mapped in trace.ids:
                    parent_id = mapped
                elif span.parent_span_id in trace.by_span:
                    parent_id = trace.by_span[span.parent_span_id]
                else:
                    waiting.append((trace_id, span.parent_span_id, mapped, record_id))
            records.append(_record({"id": record_id, **fields}, trace_id, parent_id, location))
        stored = store.add_records(records, extra=((_WAIT, waiting), (_STAND_IN, stand_ins)))
    logger.debug("OTLP: %d spans, %d new records, %d waiting for a parent", len(spans), stored, len(waiting))
    return stored
