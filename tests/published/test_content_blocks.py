"""Multimodal content blocks as the published SDK's docs use them (an llm span's user message with text and an
image URL, a workflow span whose input is content blocks, a decorated llm function receiving and returning
content blocks), run on ours against the collector: the stored records hold content parts, and every body the
SDK sends validates against Galileo's ingest schemas."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any, Literal

import pytest
from collector_process import CollectorProcess
from pydantic import BaseModel
from schema_validation import validate
from sdk_helpers import kind, validate_requests, writes

from galileo import GalileoLogger, galileo_context, log, schema
from galileo.schema import DataContentBlock, PayloadPolicy, TextContentBlock

IMAGE = "https://example.com/cat.png"
FILE_ID = str(uuid.uuid4())
QUESTION = [
    {"type": "text", "text": "What is in this image?"},
    {"type": "image_url", "image_url": {"url": IMAGE}},
]
QUESTION_PARTS = [
    {"type": "text", "text": "What is in this image?"},
    {"type": "text", "text": f"[image: {IMAGE}]"},
]


class GalileoCoreTextPart(BaseModel):
    """Stands for a pydantic content block of the published SDK / galileo_core (duck-typed by ours)."""

    type: Literal["text"] = "text"
    text: str


class GalileoCoreFilePart(BaseModel):
    type: Literal["file"] = "file"
    file_id: str


@pytest.fixture
def project(
    collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    name = f"published-blocks-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GALILEO_PROJECT", name)
    monkeypatch.setenv("GALILEO_LOG_STREAM", "blocks")
    collector_env.clear_requests()
    galileo_context.reset()
    yield name
    galileo_context.reset()


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    return collector.wait_for(lambda: collector.trace(trace_id))


def test_llm_span_with_a_multimodal_user_message(collector_env: CollectorProcess, project: str) -> None:
    logger = GalileoLogger(project=project, log_stream="blocks")
    trace = logger.start_trace(input="Describe the picture")
    logger.add_llm_span(
        input=[{"role": "user", "content": QUESTION}],
        output={"role": "assistant", "content": "A cat."},
        model="gpt-4o",
    )
    logger.conclude(output="A cat.")
    logger.flush()
    llm = stored(collector_env, trace.id)["spans"][0]
    assert llm["input"] == [
        {"role": "user", "content": QUESTION_PARTS, "tool_call_id": None, "tool_calls": None}
    ]
    assert llm["output"]["content"] == "A cat."
    assert validate_requests(writes(collector_env)) >= 1


def test_workflow_span_and_trace_take_content_blocks(collector_env: CollectorProcess, project: str) -> None:
    blocks = [
        TextContentBlock(text="Analyze this chart"),
        DataContentBlock(modality="image", url="data:image/png;base64,iVBORw0KGgo="),
        {"type": "file", "file_id": FILE_ID},
    ]
    expected = [
        {"type": "text", "text": "Analyze this chart"},
        {"type": "text", "text": "[image: image/png, 12 base64 characters]"},
        {"type": "file", "file_id": FILE_ID},
    ]
    logger = GalileoLogger(project=project, log_stream="blocks")
    trace = logger.start_trace(input=[{"type": "text", "text": "chart question"}])
    logger.add_workflow_span(input=blocks, name="analyze")
    logger.add_llm_span(input=[{"role": "user", "content": QUESTION}], output="A rising line.")
    logger.conclude(output=[TextContentBlock(text="done")])
    logger.conclude(output=[GalileoCoreTextPart(text="A rising line.")])
    logger.flush()
    got = stored(collector_env, trace.id)
    assert got["input"] == [{"type": "text", "text": "chart question"}]
    assert got["output"] == [{"type": "text", "text": "A rising line."}]
    workflow = got["spans"][0]
    assert (workflow["input"], workflow["output"]) == (expected, [{"type": "text", "text": "done"}])
    assert validate_requests(writes(collector_env)) >= 1


def test_a_trace_concluded_after_it_went_out_sends_its_parts_as_text(
    collector_env: CollectorProcess, project: str
) -> None:
    # A trace update (PATCH) takes text only: the parts arrive as their text, and the body stays valid.
    logger = GalileoLogger(project=project, log_stream="blocks", mode="distributed")
    trace = logger.start_trace(input=QUESTION)
    logger.add_workflow_span(input="step")
    logger.conclude(output=QUESTION)
    collector_env.wait_for(
        lambda: (t := collector_env.trace(trace.id)) and t["spans"] and t["spans"][0]["output"]
    )
    logger.conclude(output=[{"type": "text", "text": "final"}, {"type": "image_url", "image_url": IMAGE}])
    logger.flush(timeout=10)
    got = collector_env.wait_for(lambda: (t := collector_env.trace(trace.id)) and t.get("output") and t)
    assert got["input"] == QUESTION_PARTS
    assert got["output"] == f"final\n[image: {IMAGE}]"
    assert got["spans"][0]["output"] == QUESTION_PARTS
    sent = writes(collector_env)
    assert ("PATCH", "traces") in {kind(request) for request in sent}
    assert validate_requests(sent) >= 2


def test_decorated_llm_function_receiving_and_returning_content_blocks(
    collector_env: CollectorProcess, project: str
) -> None:
    @log(span_type="llm", name="vision")
    def describe(messages: list[dict[str, Any]], model: str = "gpt-4o") -> list[Any]:
        return [TextContentBlock(text="A cat"), GalileoCoreFilePart(file_id=FILE_ID)]

    @log(name="pipeline")
    def pipeline(question: list[dict[str, Any]]) -> list[Any]:
        describe([{"role": "user", "content": question}])
        return [GalileoCoreTextPart(text="It is a cat.")]

    @log(name="plain")
    def plain() -> list[dict[str, str]]:
        return [{"type": "text", "text": "dicts stay JSON text, as published"}]

    pipeline(QUESTION)
    plain()
    assert galileo_context.flush(timeout=10) == 0

    def listed() -> list[dict[str, Any]]:
        mine = [t for t in collector_env.traces(limit=500) if t.get("project_name") == project]
        return mine if len(mine) >= 2 else []

    found = {t["name"]: collector_env.trace(t["id"]) for t in collector_env.wait_for(listed)}
    workflow = found["pipeline"]["spans"][0]
    assert workflow["output"] == [{"type": "text", "text": "It is a cat."}]
    assert found["pipeline"]["output"] == [{"type": "text", "text": "It is a cat."}]  # as published
    llm = workflow["spans"][0]
    assert llm["type"] == "llm" and llm["model"] == "gpt-4o"
    assert "What is in this image?" in llm["input"][0]["content"]  # the arguments, as JSON (as published)
    assert llm["output"]["content"] == [
        {"type": "text", "text": "A cat"},
        {"type": "file", "file_id": FILE_ID},
    ]
    assert (
        found["plain"]["spans"][0]["output"]
        == '[{"type": "text", "text": "dicts stay JSON text, as published"}]'
    )
    assert validate_requests(writes(collector_env)) >= 2


@pytest.mark.parametrize(
    ("block", "part"),
    [
        ({"type": "image_url", "image_url": {"url": IMAGE}}, f"[image: {IMAGE}]"),
        ({"type": "image_url", "image_url": IMAGE}, f"[image: {IMAGE}]"),
        ({"type": "audio_url", "audio_url": {"url": "https://a/x.mp3"}}, "[audio: https://a/x.mp3]"),
        ({"type": "input_image", "image_url": IMAGE}, f"[image: {IMAGE}]"),
        (
            {"type": "input_audio", "input_audio": {"data": "UklGR", "format": "wav"}},
            "[audio: audio/wav, 5 base64 characters]",
        ),
        (
            {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBE"}},
            "[document: application/pdf, 4 base64 characters]",
        ),
        ({"type": "data", "modality": "video", "url": "https://v/x.mp4"}, "[video: https://v/x.mp4]"),
        ({"type": "image_url", "image_url": {}}, ""),
        ({"type": "file", "file_id": "not-a-uuid"}, "[file: not-a-uuid]"),
    ],
)
def test_media_blocks_become_text_parts_naming_them(block: dict[str, Any], part: str) -> None:
    policy = PayloadPolicy()
    shaped = policy.input("workflow", [{"type": "text", "text": "look"}, block])
    assert schema.wire_value("workflow", "input", shaped) == [
        {"type": "text", "text": "look"},
        {"type": "text", "text": part},
    ]


def test_text_only_and_non_block_shapes_are_unchanged() -> None:
    policy = PayloadPolicy()
    # A message's content of text parts only is their joined text, as before.
    joined = policy.input("llm", {"role": "user", "content": [{"type": "text", "text": "a"}, "b"]})
    assert joined == [schema.Message(content="ab", role="user")]
    joined = policy.input("llm", {"role": "user", "content": [TextContentBlock(text="a"), "b"]})
    assert joined == [schema.Message(content="ab", role="user")]
    # Lists of dicts that are not content blocks stay JSON text; messages stay messages.
    assert policy.input("trace", [{"role": "user", "content": "x"}]) == '[{"role": "user", "content": "x"}]'
    assert policy.input("workflow", [{"type": "custom", "x": 1}]) == '[{"type": "custom", "x": 1}]'
    assert policy.input("workflow", [{"role": "user", "content": "x"}]) == [schema.Message(content="x")]
    assert policy.input("tool", [{"type": "text", "text": "t"}]) == '[{"type": "text", "text": "t"}]'
    assert policy.output("trace", []) == "[]"


def test_size_policy_and_redaction_apply_to_text_parts() -> None:
    seen: list[Any] = []

    def redact(field: str, value: Any) -> Any:
        seen.append(value)
        return [{"type": "text", "text": "[redacted]"}, {"type": "file", "file_id": FILE_ID}]

    policy = PayloadPolicy(max_chars=5, redact=redact)
    blocks = [{"type": "text", "text": "0123456789"}, {"type": "image_url", "image_url": {"url": IMAGE}}]
    shaped = policy.input("agent", blocks)
    assert isinstance(shaped, list)
    texts = [part.to_wire()["text"] for part in shaped]
    assert texts == [
        "01234" + schema.TRUNCATION_MARKER.format(omitted=5),
        "[imag" + schema.TRUNCATION_MARKER.format(omitted=len(IMAGE) + 4),
    ]
    message = policy.input("llm", {"role": "user", "content": blocks})[0]
    assert isinstance(message.content, list) and len(message.content) == 2
    assert schema.wire_value("agent", "input", policy.redacted("agent", "input", blocks)) == [
        {"type": "text", "text": "[reda" + schema.TRUNCATION_MARKER.format(omitted=5)},
        {"type": "file", "file_id": FILE_ID},
    ]
    assert seen == [blocks]


def test_every_body_with_content_parts_validates() -> None:
    llm = schema.LlmSpan(
        input=PayloadPolicy().input("llm", [{"role": "user", "content": QUESTION}]),
        output=PayloadPolicy().output("llm", [TextContentBlock(text="A cat")]),
        name="vision",
    )
    workflow = schema.WorkflowSpan(input=PayloadPolicy().input("workflow", QUESTION), name="w", spans=[llm])
    workflow.output = PayloadPolicy().output("workflow", [GalileoCoreTextPart(text="out")])
    trace = schema.Trace(input=PayloadPolicy().input("trace", QUESTION), name="t", spans=[workflow])
    trace.output = PayloadPolicy().output("trace", [{"type": "file", "file_id": FILE_ID}])
    stream = str(uuid.uuid4())
    validate("LogTracesIngestRequest", schema.traces_ingest_body([trace], log_stream_id=stream))
    validate(
        "LogSpansIngestRequest",
        schema.spans_ingest_body([llm], trace_id=trace.id, parent_id=workflow.id, log_stream_id=stream),
    )
    validate("LogSpanUpdateRequest", schema.span_update_body(workflow, log_stream_id=stream))
    update = schema.trace_update_body(trace, log_stream_id=stream, include_input=True)
    validate("LogTraceUpdateRequest", update)
    assert update["input"] == f"What is in this image?\n[image: {IMAGE}]"
    assert update["output"] == f"[file: {FILE_ID}]"
