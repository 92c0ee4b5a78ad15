"""The OTLP export pipeline: concluded records become OTel spans and go out on opentelemetry-sdk's worker.

Built on the SDK's own parts, with nothing re-invented: a
:class:`~opentelemetry.sdk.trace.export.BatchSpanProcessor` (its bounded queue and its worker thread,
configured by the standard ``OTEL_BSP_*`` variables) feeds an
:class:`~opentelemetry.exporter.otlp.proto.http.trace_exporter.OTLPSpanExporter` (the OTLP/HTTP protobuf
encoder, its retries and the ``OTEL_EXPORTER_OTLP_*`` variables: headers, timeout, compression,
certificates). Between the two sits :class:`_RecordExporter`, which the worker thread calls with a batch.

What a caller's thread does (:meth:`Pipeline.offer`): it wraps the record and its OTel ids in a
:class:`_Concluded` (a ``ReadableSpan`` carrying them, with placeholder fields, made in about a microsecond)
and hands it to the processor's queue, after a check, under a lock, that the queue has room: the SDK's queue
drops its oldest item when full without a count, so the pipeline never lets it fill and counts the record
it turns away (``queue_full``). What the worker thread does: it turns each record into a real
``ReadableSpan`` (the attributes of :func:`galileo._semconv.span_attributes` on the record's wire form, its
times, status and ids, the resource of its project and log stream) and exports the batch, counting what was
exported and what failed (see :mod:`galileo.otel._hook`).

A record is read on the worker thread after it concluded: by then the logger no longer changes it.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import threading
from collections.abc import Sequence
from typing import Final

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from galileo import _semconv, _w3c, schema
from galileo._version import __version__
from galileo.otel._hook import Counts

__all__ = ["Pipeline", "base_resource"]

_log = logging.getLogger("galileo")

#: Who made the spans (the OTLP ``scope``).
SCOPE: Final = InstrumentationScope("galileo", __version__)
_SAMPLED: Final = TraceFlags(TraceFlags.SAMPLED)
_PLACEHOLDER: Final = SpanContext(1, 1, is_remote=False, trace_flags=_SAMPLED)
_NO_RESOURCE: Final = Resource({})
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_MICROSECOND: Final = _dt.timedelta(microseconds=1)
_DEFAULT_QUEUE: Final = 2048

Destination = tuple[str | None, str | None, str | None]  # project, log stream, experiment id


class _Concluded(ReadableSpan):
    """A concluded record on its way to the worker thread (only the processor's sampled check reads it)."""

    def __init__(
        self,
        record: schema.Record,
        trace_hex: str,
        parent_hex: str | None,
        remote_parent: bool,
        destination: Destination,
    ) -> None:
        super().__init__(record.name, context=_PLACEHOLDER, resource=_NO_RESOURCE)
        self.record = record
        self.trace_hex = trace_hex
        self.parent_hex = parent_hex
        self.remote_parent = remote_parent
        self.destination = destination


class _RecordExporter(SpanExporter):
    """Turns the worker thread's batches of records into spans and exports them (and counts the outcome)."""

    def __init__(self, inner: SpanExporter, counts: Counts) -> None:
        self._base = base_resource()
        self._inner = inner
        self._counts = counts
        self._resources: dict[Destination, Resource] = {}
        self.closed = False  # set when the pipeline was given up: later outcomes are counted already

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        built: list[ReadableSpan] = []
        invalid = 0
        for item in spans:
            try:
                assert isinstance(item, _Concluded)
                built.append(self._build(item))
            except Exception:  # a record that cannot be a span: counted, the others still go
                _log.debug("galileo: a record could not be made into an OTel span", exc_info=True)
                invalid += 1
        if invalid and not self.closed:
            self._counts.settle(reason="invalid_record", dropped=invalid)
        result = SpanExportResult.FAILURE
        detail = ""
        if built:
            try:
                result = self._inner.export(built)
            except Exception as error:  # the SDK's exporter reports failures by result; be safe anyway
                detail = type(error).__name__
            if not self.closed:
                if result is SpanExportResult.SUCCESS:
                    self._counts.settle(exported=len(built))
                else:
                    self._counts.settle(reason="export_failed", dropped=len(built), detail=detail)
        self._counts.report()
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _resource(self, destination: Destination) -> Resource:
        resource = self._resources.get(destination)
        if resource is None:
            project, log_stream, experiment = destination
            attributes: dict[str, str] = {}
            if project:
                attributes[_semconv.PROJECT] = project
            if experiment:
                attributes[_semconv.EXPERIMENT] = experiment
            elif log_stream:
                attributes[_semconv.LOG_STREAM] = log_stream
            resource = self._resources[destination] = self._base.merge(Resource(attributes))
        return resource

    def _build(self, item: _Concluded) -> ReadableSpan:
        record = item.record
        trace_id = int(item.trace_hex, 16)
        context = SpanContext(trace_id, int(_w3c.otel_span_id(record.id), 16), False, _SAMPLED)
        parent = None
        if item.parent_hex:
            parent = SpanContext(trace_id, int(item.parent_hex, 16), item.remote_parent, _SAMPLED)
        start = (record.created_at - _EPOCH) // _MICROSECOND * 1000
        code = record.status_code
        status = Status(StatusCode.ERROR, f"status_code {code}") if code and code >= 400 else Status()
        return ReadableSpan(
            record.name or record.type,
            context=context,
            parent=parent,
            resource=self._resource(item.destination),
            attributes=_semconv.span_attributes(record.to_wire(include_children=False)),
            kind=SpanKind.INTERNAL,
            status=status,
            start_time=start,
            end_time=start + (record.duration_ns or 0),
            instrumentation_scope=SCOPE,
        )


_base: Resource | None = None


def base_resource() -> Resource:
    """The resource of every span: ``service.name`` and the rest, from ``OTEL_SERVICE_NAME`` /
    ``OTEL_RESOURCE_ATTRIBUTES`` and OTel's detectors (made once: its detectors run on a thread pool, which
    cannot start while the interpreter exits, when the exit drain exports)."""
    global _base
    if _base is None:
        _base = Resource.create()
    return _base


class Pipeline:
    """One OTLP endpoint's processor and exporter (``endpoint`` None: the ``OTEL_EXPORTER_OTLP_*`` variables
    decide, else OTel's default ``http://localhost:4318/v1/traces``)."""

    def __init__(self, endpoint: str | None, counts: Counts) -> None:
        self._counts = counts
        self._exporter = _RecordExporter(OTLPSpanExporter(endpoint=endpoint), counts)
        self._capacity = _queue_size()
        self._processor = BatchSpanProcessor(self._exporter, max_queue_size=self._capacity)

    def offer(
        self,
        record: schema.Record,
        trace_hex: str,
        parent_hex: str | None,
        remote_parent: bool,
        destination: Destination,
    ) -> None:
        """Queue one record (any thread; never blocks on I/O), or count it dropped when the queue is full.

        The count of records queued is taken before the SDK's queue sees the record, and includes the batch
        being exported: the SDK's queue (which would drop its oldest item unseen) never overflows.
        """
        counts = self._counts
        if self._exporter.closed:
            counts.hand()
            counts.settle(reason="shutdown", dropped=1)
        elif counts.admit(self._capacity):
            self._processor.on_end(_Concluded(record, trace_hex, parent_hex, remote_parent, destination))
        else:
            counts.settle(reason="queue_full", dropped=1)

    def kick(self) -> None:
        """Export what is queued now, on a thread of its own (the SDK's flush blocks until it is done)."""
        flush = self._processor.force_flush
        try:
            threading.Thread(target=flush, name="galileo-otlp-flush", daemon=True).start()
        except RuntimeError:  # no new thread while the interpreter exits (3.12+): export here, then
            flush()

    def close(self) -> None:
        """Stop counting outcomes (what is left is counted by the caller) and stop the worker, unwaited."""
        self._exporter.closed = True
        threading.Thread(target=self._processor.shutdown, name="galileo-otlp-shutdown", daemon=True).start()

    def __repr__(self) -> str:
        return f"<Pipeline capacity={self._capacity}>"


def _queue_size() -> int:
    """The processor's queue size: ``OTEL_BSP_MAX_QUEUE_SIZE`` (a positive integer), else OTel's 2048."""
    try:
        size = int(os.environ.get("OTEL_BSP_MAX_QUEUE_SIZE", "") or _DEFAULT_QUEUE)
    except ValueError:
        _log.warning("galileo: OTEL_BSP_MAX_QUEUE_SIZE is not an integer: %d is used", _DEFAULT_QUEUE)
        return _DEFAULT_QUEUE
    return size if size > 0 else _DEFAULT_QUEUE
