"""The rest of the published tracing surface, as its docs use it, run on ours against the local collector:
``add_control_span``, ``project_name``/``log_stream_name``, ``spans`` on leaf spans, ``StepType`` and the
module-level ``get_tracing_headers()``."""

from __future__ import annotations

import enum
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI
from starlette.testclient import TestClient

import galileo
from galileo import (
    GalileoLogger,
    RetrieverSpan,
    StepType,
    ToolSpan,
    galileo_context,
    get_tracing_headers,
    log,
    propagation,
)
from galileo.middleware import TracingMiddleware
from galileo.schema import ControlResult, ControlSpan


class ControlCheckStage(str, enum.Enum):  # the shape of galileo_core's enums (not a dependency of ours)
    pre = "pre"
    post = "post"


class ControlAppliesTo(str, enum.Enum):  # galileo.logger.control's, with values the wire's schema lacks
    llm_call = "llm_call"
    tool_call = "tool_call"
    trace_call = "trace_call"


class PydanticLikeResult:
    """What galileo_core's pydantic ``ControlResult`` offers the logger: ``model_dump()``."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def model_dump(self) -> dict[str, Any]:
        return dict(self._fields)


@pytest.fixture(autouse=True)
def _fresh(fresh_sdk: None) -> Iterator[None]:
    galileo_context.reset()
    yield
    galileo_context.reset()


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    return collector.wait_for(lambda: collector.trace(trace_id))


# -- add_control_span --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["batch", "distributed"])
def test_control_spans_are_stored_as_published(collector_env: CollectorProcess, mode: str) -> None:
    logger = GalileoLogger(project="published", log_stream=f"control-{mode}", mode=mode)
    trace = logger.start_trace("may I?")
    logger.add_llm_span("may I?", "yes", "gpt-x", name="answer")
    execution_id = str(uuid.uuid4())
    first = logger.add_control_span(
        "yes",
        ControlResult(action="observe", matched=False, confidence=0.25),
        "pii",
        duration_ns=1_500,
        metadata={"primary_evaluator": "regex"},
        tags=["agent-control"],
        id=execution_id,
        control_id=7,
        agent_name="helper",
        check_stage=ControlCheckStage.post,
        applies_to=ControlAppliesTo.llm_call,
        evaluator_name="regex",
        selector_path="output",
    )
    second = logger.add_control_span(
        input="rm -rf /",
        output=PydanticLikeResult(action="deny", matched=True, error_message=None),
        name="shell",
        check_stage="pre",
        applies_to="tool_call",
    )
    third = logger.add_control_span(output={"action": "steer", "matched": True})
    logger.conclude("yes")
    logger.flush(timeout=10)

    assert isinstance(first, ControlSpan) and first.id == execution_id
    assert first.type == "control" and not hasattr(first, "spans")  # as published: a leaf without children
    got = stored(collector_env, trace.id)
    llm, control, shell, bare = got["spans"]
    assert llm["type"] == "llm"
    assert [s["type"] for s in (control, shell, bare)] == ["control"] * 3
    assert control["id"] == execution_id
    assert (control["name"], control["input"], control["metrics"]["duration_ns"]) == ("pii", "yes", 1_500)
    assert control["output"] == {
        "action": "observe",
        "matched": False,
        "confidence": 0.25,
        "error_message": None,
    }
    assert (control["control_id"], control["agent_name"], control["check_stage"]) == (7, "helper", "post")
    assert (control["applies_to"], control["evaluator_name"], control["selector_path"]) == (
        "llm_call",
        "regex",
        "output",
    )
    assert (control["user_metadata"], control["tags"]) == ({"primary_evaluator": "regex"}, ["agent-control"])
    assert (shell["name"], shell["input"], shell["check_stage"], shell["applies_to"]) == (
        "shell",
        "rm -rf /",
        "pre",
        "tool_call",
    )
    assert shell["output"] == {"action": "deny", "matched": True, "confidence": None, "error_message": None}
    assert (bare["input"], bare["output"]["action"], bare["control_id"]) == ("", "steer", None)
    assert {second.id, third.id} == {shell["id"], bare["id"]}


def test_control_span_values_the_wire_lacks_never_fail_the_trace(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # The published ControlAppliesTo has values the API's schema does not: sent as null (kept in the
    # metadata), and an output that is no ControlResult is null too. The trace is stored; nothing raises.
    logger = GalileoLogger(project="published", log_stream="control-odd")
    trace = logger.start_trace("q")
    with caplog.at_level(logging.WARNING, logger="galileo"):
        logger.add_control_span(
            "q",
            {"action": "block", "matched": "yes"},
            "odd",
            applies_to=ControlAppliesTo.trace_call,
            check_stage="during",
            control_id="not a number",  # type: ignore[arg-type]
            id="not-a-uuid",
        )
    logger.conclude("a")
    logger.flush(timeout=10)
    (odd,) = stored(collector_env, trace.id)["spans"]
    assert (odd["type"], odd["output"], odd["applies_to"], odd["check_stage"], odd["control_id"]) == (
        "control",
        None,
        None,
        None,
        None,
    )
    assert odd["user_metadata"] == {"applies_to": "trace_call", "check_stage": "during"}
    assert uuid.UUID(odd["id"]).version == 4
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    for part in ("output needs action", "applies_to 'trace_call'", "control_id", "id is not a UUID"):
        assert part in warnings


def test_the_viewer_shows_control_spans(collector_env: CollectorProcess) -> None:
    css = requests.get(f"{collector_env.url}/viewer/static/viewer.css", timeout=10)
    assert css.status_code == 200
    assert ".type-control" in css.text and ".bar.type-control" in css.text
    logger = GalileoLogger(project="published", log_stream="control-viewer")
    trace = logger.start_trace("q")
    logger.add_control_span("q", {"action": "observe", "matched": False}, "check")
    logger.flush(timeout=10)
    stored(collector_env, trace.id)
    page = requests.get(f"{collector_env.url}/traces/{trace.id}", timeout=10)
    assert page.status_code == 200


# -- attributes and types ----------------------------------------------------------------------------------


def test_project_and_log_stream_names_as_published(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    named = GalileoLogger(project="shop", log_stream="checkout")
    assert (named.project_name, named.log_stream_name) == ("shop", "checkout")
    default = GalileoLogger()
    assert (default.project_name, default.log_stream_name) == ("default", "default")
    monkeypatch.setenv("GALILEO_PROJECT", "from-env")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "env-stream")
    assert (GalileoLogger().project_name, GalileoLogger().log_stream_name) == ("from-env", "env-stream")
    monkeypatch.delenv("GALILEO_PROJECT")
    monkeypatch.delenv("GALILEO_LOG_STREAM")
    by_id = GalileoLogger(project_id=str(uuid.uuid4()), log_stream_id=str(uuid.uuid4()))
    assert (by_id.project_name, by_id.log_stream_name) == (None, None)  # a documented difference
    experiment = GalileoLogger(project="shop", experiment_id=str(uuid.uuid4()))
    assert (experiment.project_name, experiment.log_stream_name) == ("shop", None)


def test_leaf_spans_have_no_children(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published", log_stream="leaves")
    trace = logger.start_trace("q")
    retriever = logger.add_retriever_span("q", ["doc"])
    tool = logger.add_tool_span("t", output="r")
    for span in (retriever, tool, RetrieverSpan(), ToolSpan()):
        assert len(span.spans) == 0 and not span.spans and list(span.spans) == []
    # Read-only and shared: constructing a leaf span costs what it did (no field, no slot for it).
    assert "spans" not in attrs.fields_dict(ToolSpan) and "spans" not in attrs.fields_dict(RetrieverSpan)
    logger.conclude("a")
    logger.flush(timeout=10)
    got = stored(collector_env, trace.id)
    assert [s["spans"] for s in got["spans"]] == [[], []]


def test_step_type_as_published() -> None:
    assert "StepType" in galileo.__all__
    assert {m.name: m.value for m in StepType} == {
        "llm": "llm",
        "retriever": "retriever",
        "tool": "tool",
        "workflow": "workflow",
        "agent": "agent",
        "control": "control",
        "trace": "trace",
        "session": "session",
    }
    assert StepType.llm == "llm" and StepType("tool") is StepType.tool
    assert galileo.LlmSpan.type == StepType.llm and ControlSpan.type == StepType.control
    assert galileo.Trace.type == StepType.trace


# -- get_tracing_headers() ---------------------------------------------------------------------------------


def test_get_tracing_headers_in_a_decorated_call(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The published docs' example: @log() orchestrator passing its context to a downstream service.
    monkeypatch.setenv("GALILEO_PROJECT", "published")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "headers")
    monkeypatch.setenv("GALILEO_MODE", "distributed")
    seen: dict[str, dict[str, str]] = {}

    @log(name="orchestrator")
    def orchestrator() -> str:
        seen["headers"] = get_tracing_headers()
        return "done"

    assert "get_tracing_headers" in galileo.__all__
    orchestrator()
    galileo_context.flush(timeout=10)
    headers = seen["headers"]
    trace = stored(collector_env, headers["X-Galileo-Trace-ID"])
    (workflow,) = trace["spans"]
    assert (workflow["name"], workflow["id"]) == ("orchestrator", headers["X-Galileo-Parent-ID"])


def test_get_tracing_headers_in_a_galileo_context_block(collector_env: CollectorProcess) -> None:
    with galileo_context(project="published", log_stream="headers-block"):
        logger = galileo_context.get_logger_instance()
        trace = logger.start_trace("q")
        workflow = logger.add_workflow_span("w")
        headers = get_tracing_headers()
        logger.conclude("w-out")
        logger.conclude("a")
    assert headers["X-Galileo-Trace-ID"] == trace.id and headers["X-Galileo-Parent-ID"] == workflow.id
    galileo_context.flush(timeout=10)


def test_get_tracing_headers_in_a_request(collector_env: CollectorProcess) -> None:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.get("/")
    async def endpoint() -> dict[str, str]:
        return get_tracing_headers()

    with TestClient(app) as client:
        headers = client.get("/").json()
    trace = stored(collector_env, headers["X-Galileo-Trace-ID"])
    assert headers["X-Galileo-Parent-ID"] == trace["id"]


def test_get_tracing_headers_with_nothing_open_warns_once(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    # Ours returns {} (the published one raises GalileoLoggerException): a kept, documented difference.
    propagation._warn_no_headers._last.clear()  # (the limit is per process: earlier tests may have used it)
    with caplog.at_level(logging.WARNING, logger="galileo"):
        assert [get_tracing_headers() for _ in range(5)] == [{}] * 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "get_tracing_headers()" in warnings[0]
