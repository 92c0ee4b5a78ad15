"""Records as OTel span attributes and back (galileo._semconv): the one table the exporter and the
collector's OTLP endpoint share. Pure functions, no network."""

from __future__ import annotations

import json
from typing import Any

import pytest

from galileo import _semconv
from galileo.schema import AgentSpan, LlmSpan, RetrieverSpan, ToolSpan, Trace, WorkflowSpan


def _round_trip(wire: dict[str, Any]) -> dict[str, Any]:
    return _semconv.record_from_attributes(wire["name"], _semconv.span_attributes(wire))


def test_an_llm_span_goes_out_by_both_conventions_and_comes_back() -> None:
    span = LlmSpan(
        input=[{"role": "user", "content": "hi"}], output={"role": "assistant", "content": "hello"},
        model="gpt-4o", num_input_tokens=3, num_output_tokens=5, temperature=0.2, name="chat",
        user_metadata={"team": "search"}, tags=["beta"], status_code=200,
    )  # fmt: skip
    attributes = _semconv.span_attributes(span.to_wire(include_children=False))
    assert attributes["openinference.span.kind"] == "LLM" and attributes["gen_ai.operation.name"] == "chat"
    assert attributes["llm.model_name"] == attributes["gen_ai.request.model"] == "gpt-4o"
    assert attributes["llm.token_count.prompt"] == attributes["gen_ai.usage.input_tokens"] == 3
    assert attributes["llm.token_count.completion"] == attributes["gen_ai.usage.output_tokens"] == 5
    assert json.loads(attributes["input.value"])[0]["content"] == "hi"
    assert attributes["input.mime_type"] == "application/json"
    back = _semconv.record_from_attributes("chat", attributes)
    assert back["type"] == "llm" and back["model"] == "gpt-4o" and back["temperature"] == 0.2
    assert back["metrics"] == {"num_input_tokens": 3, "num_output_tokens": 5, "num_total_tokens": 8}
    assert [m["content"] for m in back["input"]] == ["hi"] and back["output"]["content"] == "hello"
    assert back["user_metadata"] == {"team": "search"} and back["tags"] == ["beta"]
    assert back["status_code"] == 200


@pytest.mark.parametrize(
    ("record", "kind"),
    [
        (Trace(input="q", name="GET /ask"), "workflow"),  # a trace's span comes back as a container
        (WorkflowSpan(input="q", output="a", name="plan"), "workflow"),
        (AgentSpan(input="q", output="a", name="planner", agent_type="planner"), "agent"),
        (RetrieverSpan(input="q", output=[{"content": "doc"}], name="search"), "retriever"),
        (ToolSpan(input="x", output="y", name="lookup", tool_call_id="call-1"), "tool"),
    ],
)
def test_each_kind_keeps_its_type_and_texts(record: Any, kind: str) -> None:
    back = _round_trip(record.to_wire(include_children=False))
    assert back["type"] == kind and back["name"] == record.name and back["input"] == record.input
    if kind == "tool":
        assert back["tool_call_id"] == "call-1"
    if kind == "agent":
        assert back["agent_type"] == "planner"


def test_redacted_texts_are_what_goes_out() -> None:
    span = WorkflowSpan(input="my card is 4111", redacted_input="my card is [card]", name="w")
    attributes = _semconv.span_attributes(span.to_wire(include_children=False))
    assert attributes["input.value"] == "my card is [card]"
    assert "4111" not in json.dumps(attributes)


def test_spans_of_other_instrumentations_read_well() -> None:
    # GenAI only (OpenLLMetry-style), and the published galileo.otel's messages
    genai = {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.usage.input_tokens": 7,
        "gen_ai.input.messages": json.dumps([{"role": "user", "content": "hi"}]),
        "http.method": "POST",
    }
    record = _semconv.record_from_attributes("chat m", genai)
    assert record["type"] == "llm" and record["model"] == "m" and record["metrics"] == {"num_input_tokens": 7}
    assert record["input"] == [{"role": "user", "content": "hi"}]
    assert record["user_metadata"] == {"http.method": "POST"}
    # an HTTP server span: a container; odd values never raise
    odd = {
        "http.route": "/x",
        "weird": object(),
        "metadata": "{not json",
        "gen_ai.usage.input_tokens": "lots",
    }
    record = _semconv.record_from_attributes("GET /x", odd)
    assert (
        record["type"] == "workflow"
        and record["input"] == ""
        and record["user_metadata"]["http.route"] == "/x"
    )


def test_metadata_read_from_attributes_is_bounded() -> None:
    attributes = {f"k{i}": "v" * 10_000 for i in range(500)}
    metadata = _semconv.record_from_attributes("s", attributes)["user_metadata"]
    assert len(metadata) == _semconv.MAX_METADATA
    assert all(len(v) == _semconv.MAX_VALUE_CHARS for v in metadata.values())
