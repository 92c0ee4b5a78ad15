"""The published SDK's ``galileo.otel``: OTel spans of an instrumented app to Galileo (or our collector).

Same names, parameters and behaviour as published; our own implementation, configured by
:class:`~galileo.config.GalileoConfig`:

- :class:`GalileoOTLPExporter` is an ``OTLPSpanExporter`` posting to ``{api_url}/otel/traces`` with the
  headers ``Galileo-API-Key`` (when a key is set: the local collector needs none), ``project`` and
  ``logstream`` (the arguments, else ``GALILEO_PROJECT`` / ``GALILEO_LOG_STREAM``, else ``default``), and the
  configured ``GALILEO_EXTRA_HEADERS``. Spans that a :class:`GalileoSpanProcessor` stamped with another
  project, log stream or experiment go in requests of their own with those headers (one exporter per
  destination, made when first needed), with the stamps copied into their resource as published.
- :class:`GalileoSpanProcessor` wraps a ``BatchSpanProcessor`` (or the ``SpanProcessor`` class given) around
  a :class:`GalileoOTLPExporter` and, as each span starts, sets ``galileo.project.name``,
  ``galileo.logstream.name`` (or ``galileo.experiment.id``) and ``galileo.session.id``: those of the
  ``galileo_context`` block around it, else its own.
- :func:`add_galileo_span_processor` adds a processor to a tracer provider, which :func:`start_galileo_span`
  then traces with (else the global one).
- :func:`start_galileo_span` starts an OTel span named after one of our records and, as the block ends, sets
  the conventions' attributes of :func:`galileo._semconv.span_attributes` plus the published
  ``gen_ai.input.messages`` / ``gen_ai.output.messages`` and tool attributes.

The API key is a header of the exporter's HTTP session only: never in a repr or a log line.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult

from galileo import _semconv, schema
from galileo.config import GalileoConfig

__all__ = ["GalileoOTLPExporter", "GalileoSpanProcessor", "add_galileo_span_processor", "start_galileo_span"]

_log = logging.getLogger("galileo")

PROJECT, LOGSTREAM, EXPERIMENT, SESSION = (
    _semconv.PROJECT,
    _semconv.LOG_STREAM,
    _semconv.EXPERIMENT,
    _semconv.SESSION,
)
_STAMPS = (PROJECT, LOGSTREAM, EXPERIMENT, SESSION)
_DEFAULT = "default"
_tracer_provider: Any = None  # what add_galileo_span_processor was last given


def _where(project: str | None, logstream: str | None) -> tuple[GalileoConfig, str, str]:
    config = GalileoConfig.resolve()
    return config, project or config.project or _DEFAULT, logstream or config.log_stream or _DEFAULT


class GalileoOTLPExporter(OTLPSpanExporter):
    """An OTLP/HTTP exporter to Galileo's ``/otel/traces`` (see the module docstring)."""

    def __init__(self, project: str | None = None, logstream: str | None = None, **kwargs: Any) -> None:
        config, self.project, self.logstream = _where(project, logstream)
        self._base_headers = dict(config.extra_headers)
        self._base_headers.update(kwargs.pop("headers", None) or {})
        if config.api_key:
            self._base_headers["Galileo-API-Key"] = config.api_key
        self._kwargs = kwargs
        self._endpoint_url = kwargs.pop("endpoint", None) or f"{config.api_url}/otel/traces"
        self._others: dict[tuple[str | None, ...], OTLPSpanExporter] = {}
        super().__init__(
            endpoint=self._endpoint_url, headers=self._headers(self.project, self.logstream, None), **kwargs
        )

    def __repr__(self) -> str:
        where = f"project={self.project!r} logstream={self.logstream!r}"
        return f"<GalileoOTLPExporter {self._endpoint_url} {where}>"

    def _headers(self, project: str, logstream: str | None, experiment: str | None) -> dict[str, str]:
        headers = {**self._base_headers, "project": project}
        if experiment:
            headers["experimentid"] = experiment
        elif logstream:
            headers["logstream"] = logstream
        return headers

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export ``spans``, one request per destination their stamps name (see the module docstring)."""
        groups: dict[tuple[str | None, ...], list[ReadableSpan]] = {}
        for span in spans:
            attributes = span.attributes or {}
            stamps = tuple(_text(attributes.get(name)) for name in _STAMPS)
            groups.setdefault(stamps, []).append(_with_stamps(span, stamps))
        result = SpanExportResult.SUCCESS
        for (project, logstream, experiment, _session), group in groups.items():
            key = (project or self.project, logstream or self.logstream, experiment)
            if key == (self.project, self.logstream, None):
                outcome = super().export(group)
            else:
                exporter = self._others.get(key)
                if exporter is None:
                    headers = self._headers(key[0] or self.project, key[1], key[2])
                    exporter = OTLPSpanExporter(endpoint=self._endpoint_url, headers=headers, **self._kwargs)
                    self._others[key] = exporter
                outcome = exporter.export(group)
            if outcome is not SpanExportResult.SUCCESS:
                result = outcome
        return result

    def shutdown(self) -> None:
        for exporter in self._others.values():
            exporter.shutdown()  # type: ignore[no-untyped-call]
        super().shutdown()  # type: ignore[no-untyped-call]


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _with_stamps(span: ReadableSpan, stamps: tuple[str | None, ...]) -> ReadableSpan:
    """``span`` with its Galileo stamps in its resource too (as the published exporter does)."""
    extra = {name: value for name, value in zip(_STAMPS, stamps, strict=True) if value}
    if not extra:
        return span
    if extra.get(EXPERIMENT):
        extra.pop(LOGSTREAM, None)
    return ReadableSpan(
        span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource.merge(Resource(extra)),
        attributes=span.attributes,
        events=span.events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class GalileoSpanProcessor(SpanProcessor):
    """A span processor exporting to Galileo (see the module docstring). Keyword arguments go to the
    :class:`GalileoOTLPExporter`."""

    def __init__(
        self,
        project: str | None = None,
        logstream: str | None = None,
        SpanProcessor: type | None = None,  # (the published parameter name)
        **kwargs: Any,
    ) -> None:
        self._exporter = GalileoOTLPExporter(project, logstream, **kwargs)
        self._project = self._exporter.project
        self._logstream = self._exporter.logstream
        self._experiment = GalileoConfig.resolve().experiment_id
        self._processor: Any = (SpanProcessor or BatchSpanProcessor)(self._exporter)

    def __repr__(self) -> str:
        return f"<GalileoSpanProcessor project={self._project!r} logstream={self._logstream!r}>"

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        """Stamp the span with where it goes (the current ``galileo_context`` block's, else ours)."""
        project, logstream, experiment, session = self._project, self._logstream, self._experiment, None
        try:
            from galileo.decorator import galileo_context

            project = galileo_context.get_current_project() or project
            logstream = galileo_context.get_current_log_stream() or logstream
            here = galileo_context._here()
            session = here.session_id if here is not None else None
        except Exception:  # never fail the app's span for a stamp
            _log.debug("galileo: no galileo_context to stamp the span with", exc_info=True)
        span.set_attribute(PROJECT, project)
        if experiment:
            span.set_attribute(EXPERIMENT, experiment)
        elif logstream:
            span.set_attribute(LOGSTREAM, logstream)
        if session:
            span.set_attribute(SESSION, session)
        self._processor.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        self._processor.on_end(span)

    def shutdown(self) -> None:
        self._processor.shutdown()

    def force_flush(self, timeout_millis: int = 40000) -> bool:
        return bool(self._processor.force_flush(timeout_millis))

    @property
    def exporter(self) -> GalileoOTLPExporter:
        return self._exporter

    @property
    def processor(self) -> Any:
        return self._processor


def add_galileo_span_processor(tracer_provider: Any, processor: GalileoSpanProcessor) -> None:
    """Add ``processor`` to ``tracer_provider``, which :func:`start_galileo_span` then traces with."""
    global _tracer_provider
    tracer_provider.add_span_processor(processor)
    _tracer_provider = tracer_provider


def _messages(role: str, value: Any) -> str:
    return json.dumps([{"role": role, "content": value}], ensure_ascii=False, default=str)


@contextmanager
def start_galileo_span(galileo_span: schema.Record) -> Iterator[trace.Span]:
    """Trace ``galileo_span`` (one of our records) as the current OTel span for the block; its attributes
    are set as the block ends, so the record may be completed inside it (its output, for one)."""
    provider = _tracer_provider or trace.get_tracer_provider()
    with provider.get_tracer("galileo-tracer").start_as_current_span(
        galileo_span.name or galileo_span.type
    ) as span:
        yield span
        wire = galileo_span.to_wire(include_children=False)
        span.set_attributes(_semconv.span_attributes(wire))
        span.set_attribute("gen_ai.system", "galileo-otel")
        for field in ("dataset_input", "dataset_output"):
            if wire.get(field) is not None:
                span.set_attribute(f"galileo.{field.replace('_', '.')}", wire[field])
        if wire.get("dataset_metadata"):
            span.set_attribute("galileo.dataset.metadata", json.dumps(wire["dataset_metadata"]))
        role = "tool" if wire["type"] == "tool" else "user"
        span.set_attribute("gen_ai.input.messages", _messages(role, wire["input"]))
        if wire.get("output") is not None:
            out_role = "tool" if wire["type"] == "tool" else "assistant"
            span.set_attribute("gen_ai.output.messages", _messages(out_role, wire["output"]))
        if wire["type"] == "tool":
            span.set_attribute("gen_ai.tool.call.arguments", _semconv_text(wire["input"]))
            if wire.get("output") is not None:
                span.set_attribute("gen_ai.tool.call.result", _semconv_text(wire["output"]))
        elif wire["type"] == "retriever":
            span.set_attribute("db.operation", "search")


def _semconv_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
