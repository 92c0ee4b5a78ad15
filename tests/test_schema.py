"""galileo.schema: records, their exact JSON, the four request bodies and the payload policy.

Every body built here is checked against its root in the published ingest schemas (``schema_validation``) and
must serialise as strict JSON (no NaN), as the transport sends it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schema_validation import SchemaViolation, validate

from galileo import schema
from galileo.schema import (
    KINDS,
    MESSAGE_ROLES,
    REDACTION_FAILED,
    SPAN_TYPES,
    TRUNCATION_MARKER,
    AgentSpan,
    Document,
    LlmSpan,
    Message,
    PayloadPolicy,
    Record,
    RetrieverSpan,
    Span,
    ToolCall,
    ToolCallFunction,
    ToolSpan,
    Trace,
    WorkflowSpan,
    new_id,
    span_update_body,
    spans_ingest_body,
    to_text,
    trace_update_body,
    traces_ingest_body,
)

GOLDEN = Path(__file__).resolve().parent / "data" / "galileo-api" / "golden"  # see its README
LOG_STREAM = "c3d9d849-691f-4f2f-b88b-062f4bd73128"
POLICY = PayloadPolicy()
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")


def check(root: str, body: dict[str, Any]) -> dict[str, Any]:
    """Valid against ``root`` and encodable as strict JSON; returns the body."""
    validate(root, body)
    json.dumps(body, allow_nan=False)
    return body


def make(kind: str, **fields: Any) -> Any:
    return Trace(**fields) if kind == "trace" else SPAN_TYPES[kind](**fields)


def filled(kind: str, value_in: Any, value_out: Any, policy: PayloadPolicy = POLICY, **fields: Any) -> Any:
    """A record of ``kind`` whose input/output went through the policy, as the logger does it."""
    return make(kind, input=policy.input(kind, value_in), output=policy.output(kind, value_out), **fields)


def check_record(record: Any) -> None:
    """Every body ``record`` can appear in validates."""
    if isinstance(record, Trace):
        for complete in (True, False):
            check(
                "LogTracesIngestRequest",
                traces_ingest_body([record], log_stream_id=LOG_STREAM, is_complete=complete),
            )
        check(
            "LogTraceUpdateRequest", trace_update_body(record, log_stream_id=LOG_STREAM, include_input=True)
        )
        check("LogTraceUpdateRequest", trace_update_body(record, log_stream_id=LOG_STREAM))
    else:
        for children in (True, False):
            body = spans_ingest_body(
                [record],
                trace_id=new_id(),
                parent_id=new_id(),
                log_stream_id=LOG_STREAM,
                include_children=children,
            )
            check("LogSpansIngestRequest", body)
        check("LogSpanUpdateRequest", span_update_body(record, log_stream_id=LOG_STREAM))


def tree() -> Trace:
    """A trace holding all five span kinds: workflow > agent > (llm, retriever, tool), and each at the top."""
    llm = LlmSpan(
        name="llm",
        input=POLICY.input("llm", [{"role": "system", "content": "be brief"}, "who improved the telescope?"]),
        output=POLICY.output("llm", "Galileo"),
        model="fake-llm",
        temperature=0.2,
        num_input_tokens=12,
        num_output_tokens=6,
        num_total_tokens=18,
        tools=[{"type": "function", "function": {"name": "search"}}],
        duration_ns=1_000_000,
    )
    retriever = RetrieverSpan(
        name="retriever",
        input=POLICY.input("retriever", "telescope"),
        output=POLICY.output("retriever", [{"content": "He improved it.", "metadata": {"score": 0.9}}]),
    )
    tool = ToolSpan(name="tool", input=POLICY.input("tool", {"q": 1}), output="42", tool_call_id="call_1")
    agent = AgentSpan(name="agent", agent_type="react", spans=[llm, retriever, tool], input="plan")
    workflow = WorkflowSpan(name="workflow", spans=[agent], input="who improved the telescope?")
    top: list[Span] = [
        workflow,
        LlmSpan(input=POLICY.input("llm", "hi"), output=POLICY.output("llm", None)),
        RetrieverSpan(input="q", output=POLICY.output("retriever", "doc")),
        ToolSpan(input="x", output=None),
        AgentSpan(spans=[WorkflowSpan(spans=[ToolSpan()])]),
    ]
    return Trace(name="trace", input="who improved the telescope?", output="Galileo", spans=top, tags=["t"])


def walk(obj: dict[str, Any]) -> list[dict[str, Any]]:
    out = [obj]
    for child in obj.get("spans", []):
        out.extend(walk(child))
    return out


def golden(name: str) -> dict[str, Any]:
    body: dict[str, Any] = json.loads((GOLDEN / f"{name}.json").read_text(encoding="utf-8"))["body"]
    return body


# --- the validator itself -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "root"),
    [
        ("traces_ingest", "LogTracesIngestRequest"),
        ("spans_ingest_llm", "LogSpansIngestRequest"),
        ("spans_ingest_retriever", "LogSpansIngestRequest"),
        ("spans_ingest_workflow_gateway", "LogSpansIngestRequest"),
        ("spans_ingest_workflow_downstream_retriever", "LogSpansIngestRequest"),
        ("trace_update", "LogTraceUpdateRequest"),
        ("span_update", "LogSpanUpdateRequest"),
    ],
)
def test_golden_bodies_validate(name: str, root: str) -> None:
    validate(root, golden(name))


def test_validator_checks_uuid_version_and_timestamps() -> None:
    body = golden("spans_ingest_llm")
    validate("LogSpansIngestRequest", body)
    for where in ("trace_id", "parent_id"):
        bad = json.loads(json.dumps(body))
        bad[where] = str(uuid.uuid1())
        with pytest.raises(SchemaViolation, match=where):
            validate("LogSpansIngestRequest", bad)
    bad = json.loads(json.dumps(body))
    bad["spans"][0]["id"] = str(uuid.uuid1())
    with pytest.raises(SchemaViolation, match=r"spans\[0\]\.id"):
        validate("LogSpansIngestRequest", bad)
    bad = json.loads(json.dumps(body))
    bad["spans"][0]["created_at"] = "24/11/2026"
    with pytest.raises(SchemaViolation, match="date-time"):
        validate("LogSpansIngestRequest", bad)


def test_validator_rejects_the_easy_mistakes() -> None:
    body = golden("spans_ingest_llm")
    mistakes = [
        ("user_metadata", {"n": 1}),
        ("output", None),
        ("input", "a string"),
        ("output", [{"content": "x", "role": "assistant"}]),
    ]
    for field, value in mistakes:
        bad = json.loads(json.dumps(body))
        bad["spans"][0][field] = value
        with pytest.raises(SchemaViolation, match=field):
            validate("LogSpansIngestRequest", bad)
    update = golden("trace_update")
    update["output"] = {"content": "x", "role": "assistant"}
    with pytest.raises(SchemaViolation):
        validate("LogTraceUpdateRequest", update)


# --- records and bodies -------------------------------------------------------------------------------------


def test_traces_ingest_nested_tree_validates() -> None:
    trace = tree()
    body = check("LogTracesIngestRequest", traces_ingest_body([trace], log_stream_id=LOG_STREAM))
    objects = walk(body["traces"][0])
    assert {o["type"] for o in objects} == {"trace", *KINDS}
    assert len(objects) == 1 + 5 + (1 + 3) + (
        1 + 1
    )  # trace, top spans, workflow>agent>3, agent>workflow>tool
    workflow = body["traces"][0]["spans"][0]
    agent = workflow["spans"][0]
    assert [s["type"] for s in agent["spans"]] == ["llm", "retriever", "tool"]
    assert agent["agent_type"] == "react"
    for obj in objects:
        assert obj["trace_id"] is None
        assert obj["parent_id"] is None
        assert obj["session_id"] is None
        assert obj["dataset_metadata"] == {}
        assert uuid.UUID(obj["id"]).version == 4
        assert TIMESTAMP.fullmatch(obj["created_at"])
    assert body["is_complete"] is True
    assert body["reliable"] is True
    assert body["logging_method"] == "api_direct"
    assert body["session_id"] is None
    assert body["session_external_id"] is None


def test_traces_ingest_without_children_and_incomplete() -> None:
    trace = tree()
    body = check(
        "LogTracesIngestRequest",
        traces_ingest_body(
            [trace, Trace()], log_stream_id=LOG_STREAM, is_complete=False, include_children=False
        ),
    )
    assert [t["spans"] for t in body["traces"]] == [[], []]
    assert body["is_complete"] is False
    experiment = traces_ingest_body([trace], log_stream_id=None, experiment_id=new_id())
    check("LogTracesIngestRequest", experiment)


@pytest.mark.parametrize("kind", sorted(SPAN_TYPES))
def test_spans_ingest_each_kind_alone(kind: str) -> None:
    span = SPAN_TYPES[kind]()
    trace_id, parent_id = new_id(), new_id()
    body = check(
        "LogSpansIngestRequest",
        spans_ingest_body([span], trace_id=trace_id, parent_id=parent_id, log_stream_id=LOG_STREAM),
    )
    assert (body["trace_id"], body["parent_id"]) == (trace_id, parent_id)
    wire = body["spans"][0]
    assert wire["type"] == kind
    assert ("spans" in wire) == (kind != "llm")


def test_spans_ingest_siblings_and_subtree() -> None:
    trace = tree()
    siblings = trace.spans
    kwargs: dict[str, Any] = {"trace_id": trace.id, "parent_id": trace.id, "log_stream_id": LOG_STREAM}
    body = check("LogSpansIngestRequest", spans_ingest_body(siblings, **kwargs))
    assert [s["type"] for s in body["spans"]] == ["workflow", "llm", "retriever", "tool", "agent"]
    assert body["spans"][0]["spans"][0]["type"] == "agent"
    flat = check("LogSpansIngestRequest", spans_ingest_body(siblings, include_children=False, **kwargs))
    assert all(s.get("spans", []) == [] for s in flat["spans"])
    subtree = siblings[0]
    body = check("LogSpansIngestRequest", spans_ingest_body([subtree], **kwargs))
    assert len(walk(body["spans"][0])) == 5


def test_update_bodies() -> None:
    trace = tree()
    trace.status_code = 200
    trace.duration_ns = 5
    body = check("LogTraceUpdateRequest", trace_update_body(trace, log_stream_id=LOG_STREAM))
    assert body["trace_id"] == trace.id
    assert (body["input"], body["output"], body["status_code"], body["duration_ns"]) == (
        None,
        "Galileo",
        200,
        5,
    )
    assert body["is_complete"] is True
    body = check(
        "LogTraceUpdateRequest", trace_update_body(trace, log_stream_id=LOG_STREAM, include_input=True)
    )
    assert body["input"] == "who improved the telescope?"
    for span in walk_records(trace):
        body = check("LogSpanUpdateRequest", span_update_body(span, log_stream_id=LOG_STREAM))
        assert body["span_id"] == span.id
        assert body["input"] is None


def walk_records(record: Record) -> list[Any]:
    out: list[Any] = []
    for child in getattr(record, "spans", []):
        out.append(child)
        out.extend(walk_records(child))
    return out


def test_empty_bodies_are_refused() -> None:
    with pytest.raises(ValueError):
        traces_ingest_body([], log_stream_id=LOG_STREAM)
    with pytest.raises(ValueError):
        spans_ingest_body([], trace_id=new_id(), parent_id=new_id(), log_stream_id=LOG_STREAM)


@pytest.mark.parametrize(
    ("name", "build"),
    [
        (
            "spans_ingest_llm",
            lambda: spans_ingest_body(
                [LlmSpan(input=POLICY.input("llm", "q"), output=POLICY.output("llm", "a"), model="m")],
                trace_id=new_id(),
                parent_id=new_id(),
                log_stream_id=LOG_STREAM,
            ),
        ),
        (
            "spans_ingest_retriever",
            lambda: spans_ingest_body(
                [RetrieverSpan(input="q", output=POLICY.output("retriever", "d"))],
                trace_id=new_id(),
                parent_id=new_id(),
                log_stream_id=LOG_STREAM,
            ),
        ),
        (
            "spans_ingest_workflow_gateway",
            lambda: spans_ingest_body(
                [WorkflowSpan(input="q")], trace_id=new_id(), parent_id=new_id(), log_stream_id=LOG_STREAM
            ),
        ),
        ("traces_ingest", lambda: traces_ingest_body([Trace(input="q")], log_stream_id=LOG_STREAM)),
        ("trace_update", lambda: trace_update_body(Trace(output="a"), log_stream_id=LOG_STREAM)),
        ("span_update", lambda: span_update_body(WorkflowSpan(output="a"), log_stream_id=LOG_STREAM)),
    ],
)
def test_same_keys_as_the_published_sdk(name: str, build: Any) -> None:
    ours, theirs = build(), golden(name)

    def keys(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            assert set(a) == set(b), where
            for key in a:
                keys(a[key], b[key], f"{where}.{key}")
        elif isinstance(a, list) and isinstance(b, list) and a and b:
            keys(a[0], b[0], f"{where}[0]")

    keys(ours, theirs, name)
    assert list(ours) == list(theirs)  # same order too


def test_llm_span_metrics_and_fields() -> None:
    span = LlmSpan(
        input=POLICY.input("llm", "q"),
        num_input_tokens=3,
        num_output_tokens=4,
        num_total_tokens=7,
        time_to_first_token_ns=9,
        duration_ns=11,
        temperature=math.nan,
        tools=[{"name": "t", "weight": math.inf, "obj": object(), "nested": ({"x": 1},)}],
        finish_reason="stop",
    )
    wire = check(
        "LogSpansIngestRequest",
        spans_ingest_body([span], trace_id=new_id(), parent_id=new_id(), log_stream_id=LOG_STREAM),
    )["spans"][0]
    assert wire["metrics"]["num_input_tokens"] == 3
    assert wire["metrics"]["num_total_tokens"] == 7
    assert wire["metrics"]["time_to_first_token_ns"] == 9
    assert wire["metrics"]["duration_ns"] == 11
    assert wire["temperature"] is None  # NaN is not JSON
    assert wire["tools"][0]["weight"] == "inf"
    assert wire["tools"][0]["nested"] == [{"x": 1}]
    assert wire["finish_reason"] == "stop"
    assert wire["events"] is None


def test_created_at_is_utc_with_microseconds() -> None:
    naive = datetime(2026, 11, 24, 23, 27, 50)
    assert Trace(created_at=naive).to_wire()["created_at"] == "2026-11-24T23:27:50.000000Z"
    paris = datetime(2026, 11, 24, 23, 27, 50, 998618, tzinfo=timezone(timedelta(hours=1)))
    assert Trace(created_at=paris).to_wire()["created_at"] == "2026-11-24T22:27:50.998618Z"
    now = Trace().created_at
    assert now.tzinfo is not None
    assert abs(datetime.now(timezone.utc) - now) < timedelta(seconds=5)


def test_records_are_mutable_and_kinds_are_validated() -> None:
    span = WorkflowSpan()
    span.output = "done"
    span.status_code = 500
    assert span.to_wire()["output"] == "done"
    with pytest.raises(AttributeError):
        span.not_a_field = 1  # type: ignore[attr-defined]
    with pytest.raises(ValueError):
        AgentSpan(agent_type="wizard")
    assert AgentSpan().agent_type == "default"
    with pytest.raises(ValueError):
        Message(content="x", role="human")
    assert {cls.type for cls in SPAN_TYPES.values()} == set(KINDS) - {"trace"}
    assert Trace.type == "trace"


# --- the easy-to-get-wrong shapes ---------------------------------------------------------------------------


def test_ids_are_uuid4() -> None:
    assert all(uuid.UUID(new_id()).version == 4 for _ in range(50))
    assert len({new_id() for _ in range(1000)}) == 1000
    for kind in ("trace", *SPAN_TYPES):
        assert uuid.UUID(make(kind).id).version == 4
    stale = Trace(id=str(uuid.uuid1()))
    with pytest.raises(SchemaViolation):
        validate("LogTracesIngestRequest", traces_ingest_body([stale], log_stream_id=LOG_STREAM))


def test_ids_are_valid_uuid4_strings_and_a_forked_child_draws_its_own() -> None:
    for _ in range(2000):
        value = new_id()
        parsed = uuid.UUID(value)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, value)
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python 3.12+: fork() with threads running
        pid = os.fork()
    if pid == 0:  # the child: what would the parent draw next?
        os.write(write, new_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read) as pipe:
        childs = pipe.read()
    assert uuid.UUID(childs).version == 4
    assert childs != new_id(), "a worker process forked from another must not repeat its ids"


def test_user_metadata_values_are_strings() -> None:
    meta = POLICY.metadata({"n": 1, "f": 1.5, "b": True, "none": None, "d": {"k": [1, "x"]}, 3: "three"})
    assert meta == {"n": "1", "f": "1.5", "b": "True", "none": "None", "d": '{"k": [1, "x"]}', "3": "three"}
    assert POLICY.metadata(None) == {}
    record = Trace(user_metadata={"raw": 1, "nested": {"a": 1}})  # type: ignore[dict-item]
    wire = check("LogTracesIngestRequest", traces_ingest_body([record], log_stream_id=LOG_STREAM))
    assert wire["traces"][0]["user_metadata"] == {"raw": "1", "nested": '{"a": 1}'}


def test_metadata_that_is_not_a_mapping_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="galileo"):
        assert POLICY.metadata(["a", "b"]) == {}  # type: ignore[arg-type]
    assert "mapping" in caplog.text


def test_tags() -> None:
    assert POLICY.tags(None) == []
    assert POLICY.tags("one") == ["one"]
    assert POLICY.tags(["a", 1, "a", None]) == ["a", "1", "None"]
    assert POLICY.tags(("x", "y")) == ["x", "y"]
    assert POLICY.tags(7) == ["7"]


def test_trace_input_and_output_are_text() -> None:
    messages = [Message(content="be brief", role="system"), Message(content="hi", role="user")]
    assert POLICY.input("trace", messages) == "system: be brief\nuser: hi"
    assert POLICY.input("trace", messages[1]) == "hi"
    assert POLICY.input("trace", [messages[1]]) == "hi"
    assert POLICY.output("trace", Message(content="answer", role="assistant")) == "answer"
    documents = [Document(content="one"), Document(content="two")]
    assert POLICY.output("trace", documents) == "one\n\ntwo"
    assert POLICY.input("trace", {"q": "x", "n": [1, 2]}) == '{"q": "x", "n": [1, 2]}'
    assert POLICY.input("trace", None) == ""
    assert POLICY.output("trace", None) is None
    assert POLICY.input("trace", 3) == "3"
    assert POLICY.input("trace", "héllo ✓") == "héllo ✓"
    # Even when a record holds an llm message (a logger copying its last child's output), the wire has text.
    trace = Trace(input=messages, output=Message(content="answer", role="assistant"))
    body = check("LogTracesIngestRequest", traces_ingest_body([trace], log_stream_id=LOG_STREAM))
    assert (body["traces"][0]["input"], body["traces"][0]["output"]) == (
        "system: be brief\nuser: hi",
        "answer",
    )
    update = check(
        "LogTraceUpdateRequest", trace_update_body(trace, log_stream_id=LOG_STREAM, include_input=True)
    )
    assert (update["input"], update["output"]) == ("system: be brief\nuser: hi", "answer")
    trace.output = documents
    assert trace_update_body(trace, log_stream_id=LOG_STREAM)["output"] == "one\n\ntwo"


def test_llm_input_is_a_list_of_messages_and_output_one_message() -> None:
    assert POLICY.input("llm", "hi") == [Message(content="hi", role="user")]
    assert POLICY.input("llm", None) == []
    assert POLICY.input("llm", {"role": "system", "content": "s"}) == [Message(content="s", role="system")]
    assert POLICY.input(
        "llm", ["a", {"role": "human", "content": "b"}, Message(content="c", role="tool")]
    ) == [
        Message(content="a"),
        Message(content="b", role="user"),
        Message(content="c", role="tool"),
    ]
    assert POLICY.input("llm", {"question": "q"}) == [Message(content='{"question": "q"}', role="user")]
    parts = {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    assert POLICY.input("llm", parts) == [Message(content="ab", role="user")]
    assert POLICY.output("llm", "answer") == Message(content="answer", role="assistant")
    assert POLICY.output("llm", None) == Message(content="", role="assistant")
    assert POLICY.output("llm", []) == Message(content="", role="assistant")
    assert POLICY.output("llm", ["first", {"role": "assistant", "content": "last"}]) == Message(
        content="last", role="assistant"
    )
    tool_calls = {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": {"x": 1}}}],
    }
    out = POLICY.output("llm", tool_calls)
    assert out == Message(
        content=None,
        role="assistant",
        tool_calls=[ToolCall(id="c1", function=ToolCallFunction(name="f", arguments='{"x": 1}'))],
    )
    span = LlmSpan(input=POLICY.input("llm", "q"), output=out)
    wire = check(
        "LogSpansIngestRequest",
        spans_ingest_body([span], trace_id=new_id(), parent_id=new_id(), log_stream_id=LOG_STREAM),
    )["spans"][0]
    assert wire["output"]["content"] == ""
    assert wire["output"]["tool_calls"] == [{"id": "c1", "function": {"name": "f", "arguments": '{"x": 1}'}}]
    # Raw values placed on the record directly are still sent in the right shape.
    raw = LlmSpan(input="q", output=None)
    wire = raw.to_wire()
    assert wire["input"] == [{"content": "q", "role": "user", "tool_call_id": None, "tool_calls": None}]
    assert wire["output"] == {"content": "", "role": "assistant", "tool_call_id": None, "tool_calls": None}


def test_retriever_output_is_documents() -> None:
    assert POLICY.output("retriever", "doc") == [Document(content="doc")]
    assert POLICY.output("retriever", None) == []
    given = {"content": 42, "metadata": {"s": "x", "i": 1, "f": 0.5, "b": False, "l": [1], "nan": math.nan}}
    assert POLICY.output("retriever", given) == [
        Document(content="42", metadata={"s": "x", "i": 1, "f": 0.5, "b": False, "l": "[1]", "nan": "NaN"})
    ]
    assert POLICY.output("retriever", {"content": "c", "score": 0.7}) == [
        Document(content="c", metadata={"score": 0.7})
    ]

    @dataclasses.dataclass
    class LangChainDoc:
        page_content: str
        metadata: dict[str, Any]

    mixed = ["a", Document(content="b"), {"page_content": "c"}, LangChainDoc("d", {"src": "x"}), {"k": 1}, 5]
    assert POLICY.output("retriever", mixed) == [
        Document(content="a"),
        Document(content="b"),
        Document(content="c"),
        Document(content="d", metadata={"src": "x"}),
        Document(content='{"k": 1}'),
        Document(content="5"),
    ]
    assert POLICY.input("retriever", {"query": "q"}) == '{"query": "q"}'
    span = RetrieverSpan(input="q", output=POLICY.output("retriever", mixed))
    check(
        "LogSpansIngestRequest",
        spans_ingest_body([span], trace_id=new_id(), parent_id=new_id(), log_stream_id=None),
    )


def test_tool_and_workflow_shapes() -> None:
    assert POLICY.input("tool", {"a": 1}) == '{"a": 1}'
    assert POLICY.output("tool", None) is None
    assert POLICY.output("tool", [1, 2]) == "[1, 2]"
    messages = [{"role": "user", "content": "hi"}, Message(content="yo", role="assistant")]
    for kind in ("workflow", "agent"):
        assert POLICY.input(kind, messages) == [
            Message(content="hi"),
            Message(content="yo", role="assistant"),
        ]
        assert POLICY.input(kind, Message(content="m")) == [Message(content="m")]
        assert POLICY.input(kind, [{"a": 1}]) == '[{"a": 1}]'
        assert POLICY.input(kind, None) == ""
        assert POLICY.output(kind, None) is None
        assert POLICY.output(kind, Message(content="m", role="assistant")) == Message(
            content="m", role="assistant"
        )
        assert POLICY.output(kind, [Document(content="d")]) == [Document(content="d")]
        assert POLICY.output(kind, Document(content="d")) == [Document(content="d")]
        assert (
            POLICY.output(kind, {"role": "assistant", "content": "x"})
            == '{"role": "assistant", "content": "x"}'
        )
        assert POLICY.output(kind, [Message(content="a"), Message(content="b")]) == "user: a\nuser: b"


def test_unknown_kind_or_field_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="kind"):
        POLICY.input("session", "x")
    with pytest.raises(ValueError, match="field"):
        PayloadPolicy(redact=lambda f, v: v).redacted("trace", "metadata", "x")
    with pytest.raises(ValueError):
        PayloadPolicy(max_chars=0)


def test_to_text_never_raises() -> None:
    circular: dict[str, Any] = {}
    circular["self"] = circular
    assert "self" in to_text(circular)

    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("boom")

    assert to_text(Broken()) == "<unprintable Broken>"
    assert to_text([Broken()]) == '["<unprintable Broken>"]'
    assert to_text({(1, 2): "tuple key"})  # json refuses the key; str() does not
    assert to_text(b"bytes \xff") == "bytes \ufffd"
    assert to_text({1, 2}) in ("[1, 2]", "[2, 1]")

    @dataclasses.dataclass
    class Point:
        x: int

    @attrs.define
    class Box:
        point: Point

    assert to_text(Point(1)) == '{"x": 1}'
    assert to_text(Box(Point(2))) == '{"point": {"x": 2}}'
    assert to_text(datetime(2026, 1, 2)) == "2026-01-02T00:00:00"
    assert to_text({"when": datetime(2026, 1, 2)}) == '{"when": "2026-01-02T00:00:00"}'
    assert to_text(True) == "true"
    assert to_text(None) == ""


# --- truncation and redaction -------------------------------------------------------------------------------


def marker(omitted: int) -> str:
    return TRUNCATION_MARKER.format(omitted=omitted)


def test_truncation_marker_and_bound() -> None:
    policy = PayloadPolicy(max_chars=100)
    huge = "é" * 250
    text = policy.input("trace", huge)
    assert isinstance(text, str)
    assert text == "é" * 100 + marker(150)
    assert "truncated 150 chars" in text
    assert len(text) <= 100 + len(marker(10**9))
    assert policy.input("trace", "x" * 100) == "x" * 100  # at the limit: untouched
    llm_in = policy.input("llm", ["y" * 101, Message(content="z" * 300, role="system")])
    assert [m.content for m in llm_in] == ["y" * 100 + marker(1), "z" * 100 + marker(200)]  # type: ignore[union-attr]
    docs = policy.output("retriever", {"content": "d" * 500, "metadata": {"long": "m" * 500}})
    assert docs == [Document(content="d" * 100 + marker(400), metadata={"long": "m" * 100 + marker(400)})]
    call = policy.output(
        "llm", {"role": "assistant", "tool_calls": [{"id": "1", "name": "f", "arguments": "a" * 200}]}
    )
    assert isinstance(call, Message)
    assert call.tool_calls is not None
    assert call.tool_calls[0].function.arguments == "a" * 100 + marker(100)
    assert policy.metadata({"k": "v" * 200}) == {"k": "v" * 100 + marker(100)}
    assert policy.tags(["t" * 200]) == ["t" * 100 + marker(100)]
    assert POLICY.max_chars == 100_000


def test_huge_payloads_validate_with_default_limit() -> None:
    huge = "🔭" * 250_000
    for kind in KINDS:
        record = filled(kind, huge, {"content": huge} if kind == "retriever" else huge)
        check_record(record)
        wire = record.to_wire()
        assert len(json.dumps(wire, ensure_ascii=False)) < 250_000


def test_redaction_hook_fills_redacted_fields() -> None:
    seen: list[tuple[str, Any]] = []

    def hook(field: str, value: Any) -> Any:
        seen.append((field, value))
        return "[REDACTED]" if field == "input" else None

    policy = PayloadPolicy(redact=hook)
    for kind in KINDS:
        record = filled(
            kind,
            "my ssn is 123",
            "ok",
            redacted_input=policy.redacted(kind, "input", "my ssn is 123"),
            redacted_output=policy.redacted(kind, "output", "ok"),
        )
        check_record(record)
        wire = record.to_wire()
        expected = (
            [{"content": "[REDACTED]", "role": "user", "tool_call_id": None, "tool_calls": None}]
            if kind == "llm"
            else "[REDACTED]"
        )
        assert wire["redacted_input"] == expected
        assert wire["redacted_output"] is None
    assert ("input", "my ssn is 123") in seen
    assert PayloadPolicy().redacted("trace", "input", "x") is None
    assert policy.redacted("trace", "output", None) is None  # nothing to redact


def test_redaction_result_is_coerced_per_kind() -> None:
    policy = PayloadPolicy(redact=lambda field, value: {"content": "***"} if field == "output" else "***")
    assert policy.redacted("llm", "output", "secret") == Message(content="***", role="assistant")
    assert policy.redacted("retriever", "output", "secret") == [Document(content="***")]
    assert policy.redacted("trace", "output", "secret") == '{"content": "***"}'
    assert policy.redacted("llm", "input", "secret") == [Message(content="***")]


def test_failing_redaction_hook_gives_marker_and_warning(caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-live-4111-1111-1111-1111"

    def hook(field: str, value: Any) -> Any:
        raise ValueError(f"cannot redact {value}")

    policy = PayloadPolicy(redact=hook)
    with caplog.at_level(logging.WARNING, logger="galileo"):
        results = {kind: policy.redacted(kind, "output", secret) for kind in KINDS}
        redacted_input = policy.redacted("llm", "input", secret)
    assert results["trace"] == REDACTION_FAILED
    assert results["tool"] == REDACTION_FAILED
    assert results["llm"] == Message(content=REDACTION_FAILED, role="assistant")
    assert results["retriever"] == [Document(content=REDACTION_FAILED)]
    assert redacted_input == [Message(content=REDACTION_FAILED)]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "galileo"]
    assert len(warnings) == len(KINDS) + 1
    assert "ValueError" in warnings[0].getMessage()
    assert secret not in caplog.text
    assert all(r.exc_info is None for r in warnings)
    for kind in KINDS:
        check_record(make(kind, redacted_output=results[kind]))


# --- arbitrary inputs ---------------------------------------------------------------------------------------

_leaf = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()
    | st.text(max_size=30)
    | st.binary(max_size=10)
)
jsonish = st.recursive(
    _leaf,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=4)
    ),
    max_leaves=15,
)
messages = st.builds(Message, content=st.none() | st.text(max_size=30), role=st.sampled_from(MESSAGE_ROLES))
documents = st.builds(
    Document,
    content=st.text(max_size=30),
    metadata=st.dictionaries(
        st.text(max_size=5), st.text(max_size=5) | st.integers() | st.booleans(), max_size=3
    ),
)
message_dicts = st.fixed_dictionaries(
    {
        "role": st.sampled_from([*MESSAGE_ROLES, "human", "ai", "narrator", ""]) | jsonish,
        "content": st.none() | st.text(max_size=30) | jsonish,
    },
    optional={
        "tool_call_id": jsonish,
        "tool_calls": st.lists(
            st.fixed_dictionaries({"id": jsonish, "function": st.dictionaries(st.text(max_size=10), jsonish)})
            | jsonish,
            max_size=2,
        ),
    },
)
document_dicts = st.fixed_dictionaries(
    {"content": jsonish}, optional={"metadata": jsonish, "score": jsonish, "page_content": jsonish}
)
user_value = st.recursive(
    jsonish | messages | documents | message_dicts | document_dicts,
    lambda inner: st.lists(inner, max_size=3),
    max_leaves=8,
)


@settings(deadline=None, max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(KINDS),
    value_in=user_value,
    value_out=user_value,
    metadata=st.dictionaries(st.text(max_size=10) | st.integers(), jsonish, max_size=4) | st.none(),
    tags=st.lists(st.text(max_size=10) | st.integers(), max_size=4) | st.text(max_size=10) | st.none(),
    max_chars=st.integers(min_value=1, max_value=50),
)
def test_any_user_value_gives_valid_bodies(
    kind: str, value_in: Any, value_out: Any, metadata: Any, tags: Any, max_chars: int
) -> None:
    policy = PayloadPolicy(max_chars=max_chars, redact=lambda field, value: value)
    record = filled(
        kind,
        value_in,
        value_out,
        policy,
        redacted_input=policy.redacted(kind, "input", value_in),
        redacted_output=policy.redacted(kind, "output", value_out),
        user_metadata=policy.metadata(metadata),
        tags=policy.tags(tags),
    )
    check_record(record)
    parent = make(kind if kind in ("trace", "workflow", "agent") else "workflow", spans=[make("workflow")])
    parent.spans[0].spans.append(record if kind != "trace" else make("llm"))
    check_record(parent)


@settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(KINDS), value_in=user_value, value_out=user_value, redacted=user_value)
def test_raw_values_on_records_still_give_valid_bodies(
    kind: str, value_in: Any, value_out: Any, redacted: Any
) -> None:
    """A record whose fields bypassed the policy (a bug elsewhere) still serialises to a valid body."""
    record = make(kind, input=value_in, output=value_out, redacted_input=redacted, redacted_output=redacted)
    check_record(record)


@settings(deadline=None, max_examples=100)
@given(value=user_value)
def test_to_text_always_gives_a_string(value: Any) -> None:
    assert isinstance(to_text(value), str)
    assert isinstance(schema.to_text(value), str)


def test_timestamps_are_utc_with_microseconds_whatever_the_zone() -> None:
    """``created_at`` goes as RFC 3339 in UTC with microseconds: from the SDK's own clock (aware UTC), a
    naive datetime (taken as UTC) or one in another zone (converted)."""
    moment = datetime(2026, 12, 7, 6, 30, 0, 0, tzinfo=timezone.utc)
    other_zone = moment.astimezone(timezone(timedelta(hours=2), "CEST"))
    for created_at in (moment, moment.replace(tzinfo=None), other_zone):
        span = WorkflowSpan(input="q", created_at=created_at)
        assert span.to_wire()["created_at"] == "2026-12-07T06:30:00.000000Z", created_at
    now = Trace(input="q").to_wire()["created_at"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", now), now
