"""Values of the wrong type given to the logger's typed parameters: each costs its field alone (left out with
one WARNING naming the parameter, never the value), never raises into the caller, and never costs the other
records of the batch; run against the collector."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from collector_process import CollectorProcess
from sdk_helpers import tree_lines

import galileo
from galileo import GalileoLogger, galileo_context

pytestmark = pytest.mark.usefixtures("fresh_sdk")


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    galileo_context.reset()  # warnings are said once per field until reset
    with caplog.at_level(logging.WARNING, logger="galileo"):
        yield caplog


def test_values_of_the_wrong_type_cost_their_field_not_the_call_nor_the_batch(
    collector_env: CollectorProcess, warnings: pytest.LogCaptureFixture
) -> None:
    logger = GalileoLogger(project="misused-fields", log_stream="main")
    dropped_before = galileo.stats()["dropped"]
    trace = logger.start_trace("question", duration_ns="1")  # type: ignore[arg-type]
    logger.add_workflow_span("steps", step_number="one", status_code="ok")  # type: ignore[arg-type]
    logger.add_llm_span(
        "prompt",
        "answer",
        model="m",
        tools=[1, 2],  # type: ignore[list-item]
        temperature="hot",  # type: ignore[arg-type]
        num_input_tokens="3",  # type: ignore[arg-type]
        num_output_tokens=4,
        time_to_first_token_ns=[5],  # type: ignore[arg-type]
    )
    logger.add_llm_span("prompt", "answer", tools="abc")  # type: ignore[arg-type]
    logger.add_tool_span("call", output="result", duration_ns="3", status_code="200")  # type: ignore[arg-type]
    logger.add_retriever_span("query", ["doc"], step_number=True)  # type: ignore[arg-type]
    logger.conclude(output="done", duration_ns="9", status_code="x")  # type: ignore[arg-type]
    logger.conclude(output="done")
    flushed = logger.flush(timeout=10)

    assert [t.id for t in flushed] == [trace.id]
    assert galileo.stats()["dropped"] == dropped_before
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert tree_lines(stored) == [
        "trace:",
        "  workflow:",
        "    llm:",
        "    llm:",
        "    tool:",
        "    retriever:",
    ]
    workflow = stored["spans"][0]
    llm, bare_llm, tool, retriever = workflow["spans"]
    assert (workflow["step_number"], workflow["status_code"]) == (None, None)
    assert (llm["model"], llm["tools"], llm["temperature"]) == ("m", None, None)
    metrics = llm["metrics"]
    assert (metrics["num_input_tokens"], metrics["num_output_tokens"]) == (None, 4)
    assert metrics["time_to_first_token_ns"] is None
    assert bare_llm["tools"] is None
    assert (tool["output"], tool["status_code"], retriever["step_number"]) == ("result", None, None)
    assert tool["metrics"]["duration_ns"] >= 0  # timed as if no duration was given
    assert stored["metrics"]["duration_ns"] >= 0

    said = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    for field in (
        "duration_ns",
        "step_number",
        "status_code",
        "tools",
        "temperature",
        "num_input_tokens",
        "time_to_first_token_ns",
    ):
        assert sum(f" {field} of type " in m for m in said) == 1, (field, said)
    assert not any(value in m for m in said for value in ("'200'", "'hot'", "'abc'", "'one'"))


def test_an_empty_tools_list_is_sent_as_given(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="misused-fields", log_stream="main")
    trace = logger.start_trace("question")
    logger.add_llm_span("prompt", "answer", tools=[])
    logger.conclude(output="done")
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert stored["spans"][0]["tools"] == []


def test_a_status_code_the_schema_refuses_costs_that_field_not_the_batch(
    collector_env: CollectorProcess, warnings: pytest.LogCaptureFixture
) -> None:
    logger = GalileoLogger(project="misused-fields", log_stream="main")
    dropped_before = galileo.stats()["dropped"]
    good = logger.start_trace("first")
    logger.add_tool_span("call", output="result", status_code=200)
    logger.conclude(output="done")
    bad = logger.start_trace("second")
    logger.add_tool_span("call", output="result", status_code="200")  # type: ignore[arg-type]
    logger.conclude(output="done")
    assert [t.id for t in logger.flush(timeout=10)] == [good.id, bad.id]

    assert galileo.stats()["dropped"] == dropped_before
    stored = [collector_env.trace(t.id) for t in (good, bad)]
    assert [s and s["spans"][0]["status_code"] for s in stored] == [200, None]
    assert [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING] == [
        "galileo: status_code of type str is not a valid value; left out"
    ]


def test_text_fields_of_the_wrong_type_cost_that_field_not_the_batch(
    collector_env: CollectorProcess, warnings: pytest.LogCaptureFixture
) -> None:
    logger = GalileoLogger(project="misused-fields", log_stream="main")
    dropped_before = galileo.stats()["dropped"]
    trace = logger.start_trace("question", name=5, external_id=6)  # type: ignore[arg-type]
    logger.add_llm_span("prompt", "answer", name="chat", model=7, finish_reason=8)  # type: ignore[arg-type]
    logger.add_tool_span("call", output="result", name=9, tool_call_id=10)  # type: ignore[arg-type]
    logger.conclude(output="done")
    assert [t.id for t in logger.flush(timeout=10)] == [trace.id]

    assert galileo.stats()["dropped"] == dropped_before
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert tree_lines(stored) == ["trace:", "  llm:chat", "  tool:"]
    llm, tool = stored["spans"]
    assert (stored["external_id"], llm["model"], llm["finish_reason"], tool["tool_call_id"]) == (
        None,
        None,
        None,
        None,
    )
    said = [r.getMessage() for r in warnings.records if r.levelno == logging.WARNING]
    for field in ("name", "external_id", "model", "finish_reason", "tool_call_id"):
        assert sum(f" {field} of type int " in m for m in said) == 1, (field, said)
