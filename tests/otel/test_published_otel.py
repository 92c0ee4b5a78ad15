"""``galileo.otel`` as the published SDK has it: an OpenTelemetry app's spans to Galileo (issue 21, point 5).

Used as the published SDK's users use it, against a real OTLP/HTTP receiver on loopback standing in for
Galileo's ``/otel/traces``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from otlp_sink import OtlpSink

import galileo
from galileo.otel import (
    GalileoOTLPExporter,
    GalileoSpanProcessor,
    add_galileo_span_processor,
    start_galileo_span,
)
from galileo.schema import LlmSpan, RetrieverSpan, ToolSpan, WorkflowSpan

SECRET = "sk-very-secret-key"


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, fresh_sdk: None) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith(("GALILEO_", "OTEL_")):
            monkeypatch.delenv(name)
    yield


@pytest.fixture
def galileo_at_sink(otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch) -> OtlpSink:
    monkeypatch.setenv("GALILEO_API_URL", otlp_sink.url)
    monkeypatch.setenv("GALILEO_API_KEY", SECRET)
    return otlp_sink


def test_the_published_usage_sends_spans_to_otel_traces_with_the_galileo_headers(
    galileo_at_sink: OtlpSink, caplog: pytest.LogCaptureFixture
) -> None:
    provider = TracerProvider()
    processor = GalileoSpanProcessor(project="p", logstream="s")
    add_galileo_span_processor(provider, processor)
    with caplog.at_level(logging.DEBUG):
        tracer = provider.get_tracer("t")
        with tracer.start_as_current_span("x"), tracer.start_as_current_span("y") as child:
            child.set_attribute("input.value", "hello")
        assert processor.force_flush() is True
        provider.shutdown()
    spans = {span.name: span for span in galileo_at_sink.received()}
    assert sorted(spans) == ["x", "y"]
    assert spans["y"].parent_span_id == spans["x"].span_id
    for span in spans.values():
        assert span.path == "/otel/traces"
        assert span.headers["galileo-api-key"] == SECRET
        assert (span.headers["project"], span.headers["logstream"]) == ("p", "s")
        assert span.attributes["galileo.project.name"] == "p"
        assert span.attributes["galileo.logstream.name"] == "s"
    assert spans["y"].attributes["input.value"] == "hello"
    shown = repr(processor) + repr(processor.exporter) + caplog.text
    assert SECRET not in shown


def test_project_and_log_stream_come_from_the_config_else_default(
    galileo_at_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "from-env")
    exporter = GalileoOTLPExporter()
    assert (exporter.project, exporter.logstream) == ("from-env", "default")
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("plain"):
        pass
    provider.shutdown()
    [span] = galileo_at_sink.received()
    assert (span.headers["project"], span.headers["logstream"]) == ("from-env", "default")


def test_without_url_or_key_it_sends_to_the_local_collector_without_a_key() -> None:
    exporter = GalileoOTLPExporter(project="p")
    assert "http://localhost:8088/otel/traces" in repr(exporter)
    exporter.shutdown()


def test_a_galileo_context_block_stamps_its_project_and_session_and_sends_them_in_their_own_request(
    galileo_at_sink: OtlpSink,
) -> None:
    provider = TracerProvider()
    add_galileo_span_processor(provider, GalileoSpanProcessor(project="outer", logstream="s"))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("outside"):
        pass
    session = str(uuid.uuid4())
    block = galileo.galileo_context(project="inner", log_stream="in-s", session_id=session)
    with block, tracer.start_as_current_span("inside"):
        pass
    provider.force_flush()
    provider.shutdown()
    spans = {span.name: span for span in galileo_at_sink.received()}
    assert (spans["outside"].headers["project"], spans["outside"].headers["logstream"]) == ("outer", "s")
    assert (spans["inside"].headers["project"], spans["inside"].headers["logstream"]) == ("inner", "in-s")
    assert spans["inside"].resource["galileo.project.name"] == "inner"
    assert spans["inside"].attributes["galileo.session.id"] == session
    assert spans["inside"].resource["galileo.session.id"] == session
    assert "galileo.session.id" not in spans["outside"].attributes


def test_a_custom_span_processor_class_is_used(galileo_at_sink: OtlpSink) -> None:
    processor = GalileoSpanProcessor(project="p", SpanProcessor=SimpleSpanProcessor)
    assert isinstance(processor.processor, SimpleSpanProcessor)
    assert isinstance(processor.exporter, GalileoOTLPExporter)
    provider = TracerProvider()
    add_galileo_span_processor(provider, processor)
    with provider.get_tracer("t").start_as_current_span("at-once"):
        pass
    assert [span.name for span in galileo_at_sink.received()] == ["at-once"]  # (simple: no flush needed)
    provider.shutdown()


def test_start_galileo_span_traces_our_records_with_the_conventions(galileo_at_sink: OtlpSink) -> None:
    provider = TracerProvider()
    add_galileo_span_processor(provider, GalileoSpanProcessor(project="p", logstream="s"))
    workflow = WorkflowSpan(name="answer", input="what is 2+2?")
    with start_galileo_span(workflow):
        tool = ToolSpan(name="calculator", input="2+2", tool_call_id="call-7")
        with start_galileo_span(tool):
            tool.output = "4"
        with start_galileo_span(RetrieverSpan(name="search", input="arithmetic")):
            pass
        with start_galileo_span(LlmSpan(name="think", input=[], model="m", num_input_tokens=3)):
            pass
        workflow.output = "4"
    provider.force_flush()
    provider.shutdown()
    spans = {span.name: span for span in galileo_at_sink.received()}
    assert sorted(spans) == ["answer", "calculator", "search", "think"]
    answer, calculator = spans["answer"], spans["calculator"]
    assert calculator.parent_span_id == answer.span_id
    assert calculator.attributes["gen_ai.tool.name"] == calculator.attributes["tool.name"] == "calculator"
    assert calculator.attributes["gen_ai.operation.name"] == "execute_tool"
    assert calculator.attributes["gen_ai.tool.call.id"] == "call-7"
    assert calculator.attributes["gen_ai.tool.call.result"] == "4"
    assert calculator.attributes["openinference.span.kind"] == "TOOL"
    assert answer.attributes["output.value"] == "4"
    assert answer.attributes["gen_ai.system"] == "galileo-otel"
    assert '"content": "what is 2+2?"' in answer.attributes["gen_ai.input.messages"]
    assert spans["search"].attributes["db.operation"] == "search"
    assert spans["think"].attributes["llm.token_count.prompt"] == 3
