"""OpenTelemetry, both ways out: our records into any OTel backend, and OTel spans into Galileo.

Needs the optional packages: ``pip install 'galileo[otel]'`` (opentelemetry-sdk and
opentelemetry-exporter-otlp-proto-http). Without them ``import galileo`` and ``import galileo.otel`` still
work; asking for export raises :class:`~galileo.exceptions.ConfigurationError` (the configuration) or
:class:`ImportError` (the names below) with that install line.

**Our records as OTel spans.** With an OTLP endpoint set, every record (trace, workflow, agent, llm,
retriever, tool, control) becomes one OTel span when it concludes, with our ids (the trace's uuid is the OTel
trace id, unless the trace came in from OpenTelemetry: then its original id; a record's span id is the first
16 hex digits of its uuid, see :mod:`galileo._w3c`), its parent, times, status (ERROR from status code 400)
and the OpenInference and OTel GenAI attributes of :mod:`galileo._semconv`. Spans are built and exported on
opentelemetry-sdk's worker thread, never on the request's, and counted in ``galileo.stats()``
(``otlp_exported``, ``otlp_queued``, ``otlp_dropped``, ``otlp_dropped_by_reason``). Settings (arguments of
``GalileoLogger`` / ``GalileoConfig.resolve`` over the environment):

- ``otlp_endpoint`` / ``GALILEO_OTLP_ENDPOINT``: the OTLP/HTTP endpoint (``http://otel-collector:4318`` gets
  ``/v1/traces``; a URL with a path is used as it is). Without it, the standard ``OTEL_EXPORTER_OTLP_TRACES_
  ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` apply, and ``OTEL_EXPORTER_OTLP_HEADERS``, ``..._TIMEOUT``,
  ``..._COMPRESSION`` and the certificates always do; the ``OTEL_BSP_*`` variables size the queue and batches.
- ``exporter`` / ``GALILEO_EXPORTER``: ``galileo`` (records go to Galileo only), ``otlp`` (to the OTLP
  endpoint only: nothing is sent to Galileo), ``both``. Default: ``both`` when an OTLP endpoint is set (any of
  the three variables), else ``galileo``.
- The spans' resource: ``service.name`` and the rest from ``OTEL_SERVICE_NAME`` /
  ``OTEL_RESOURCE_ATTRIBUTES``, plus ``galileo.project.name`` and ``galileo.logstream.name`` (or
  ``galileo.experiment.id``).

``logger.flush()``, ``galileo.shutdown()`` and the exit drain export what is queued, bounded by their timeout.

**OTel spans into Galileo** (the published SDK's ``galileo.otel``): :class:`GalileoOTLPExporter` posts
OTLP/HTTP to ``{api_url}/otel/traces`` with the ``Galileo-API-Key``, ``project`` and ``logstream`` headers;
:class:`GalileoSpanProcessor` wraps a ``BatchSpanProcessor`` around one and stamps each span with its project
and log stream; :func:`add_galileo_span_processor` adds one to a ``TracerProvider``;
:func:`start_galileo_span` traces one of our records as an OTel span. Where they send comes from
:class:`~galileo.config.GalileoConfig` (``GALILEO_API_URL``, ``GALILEO_API_KEY``, ...): with nothing set,
the local collector, without a key::

    from opentelemetry.sdk.trace import TracerProvider
    from galileo.otel import GalileoSpanProcessor, add_galileo_span_processor

    provider = TracerProvider()
    add_galileo_span_processor(provider, GalileoSpanProcessor(project="my-project", logstream="prod"))
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from galileo.otel._hook import INSTALL_HINT

if TYPE_CHECKING:
    from galileo.otel._published import (
        GalileoOTLPExporter,
        GalileoSpanProcessor,
        add_galileo_span_processor,
        start_galileo_span,
    )

__all__ = [
    "INSTALL_ERR_MSG",
    "OTEL_AVAILABLE",
    "GalileoOTLPExporter",
    "GalileoSpanProcessor",
    "add_galileo_span_processor",
    "start_galileo_span",
]

#: The published name of the message an ImportError carries when the packages are missing.
INSTALL_ERR_MSG = INSTALL_HINT
_PUBLISHED = frozenset(
    {"GalileoOTLPExporter", "GalileoSpanProcessor", "add_galileo_span_processor", "start_galileo_span"}
)


def __getattr__(name: str) -> Any:
    if name == "OTEL_AVAILABLE":
        from galileo.config import _otlp_installed

        return _otlp_installed()
    if name not in _PUBLISHED:
        raise AttributeError(f"module 'galileo.otel' has no attribute {name!r}")
    try:
        module = importlib.import_module("galileo.otel._published")
    except ImportError as error:
        raise ImportError(INSTALL_HINT) from error
    return getattr(module, name)
