"""The viewer in headless Chromium shows OTLP spans and our SDK's records as one trace.

Our SDK logs a trace with a workflow span into the shared collector; an OpenTelemetry service's spans, whose
parent is that workflow (its OTel span id), are exported by the real ``OTLPSpanExporter`` *before* the SDK
flushes, so the collector has to move them under the workflow when it arrives.
"""

from __future__ import annotations

from typing import Any

import pytest
from browser_helpers import span_rows, wait_until
from collector_process import CollectorProcess
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from galileo import GalileoLogger
from galileo._w3c import otel_span_id, otel_trace_id

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_sdk")]


def test_an_otel_service_under_our_workflow_is_one_tree_in_the_viewer(
    page: Any, collector_env: CollectorProcess
) -> None:
    logger = GalileoLogger(project="otlp-viewer", log_stream="ours")
    ours = logger.start_trace(input="what moons did Galileo see", name="our request")
    workflow = logger.add_workflow_span(input="moons", name="our workflow")
    logger.conclude(output="four")
    logger.conclude(output="four")

    exporter = OTLPSpanExporter(endpoint=f"{collector_env.url}/v1/traces", timeout=10)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("otel-service")
    parent = SpanContext(
        int(otel_trace_id(ours.id), 16),
        int(otel_span_id(workflow.id), 16),
        is_remote=True,
        trace_flags=TraceFlags(1),
    )
    upstream = trace.set_span_in_context(NonRecordingSpan(parent))
    with (
        tracer.start_as_current_span("GET /moons", context=upstream),
        tracer.start_as_current_span("chat moons") as llm,
    ):
        llm.set_attribute("gen_ai.operation.name", "chat")
        llm.set_attribute("gen_ai.request.model", "moon-model")
    provider.shutdown()
    assert logger.flush(timeout=10)

    page.get(f"{collector_env.url}/traces/{ours.id}")
    expected = [
        ("0", "trace", "our request"),
        ("1", "workflow", "our workflow"),
        ("2", "workflow", "GET /moons"),
        ("3", "llm", "chat moons"),
    ]
    wait_until(page, lambda d: span_rows(d) == expected)
    assert not [chip for chip in page.find_elements("css selector", ".chip.orphan") if chip.is_displayed()]
