"""GalileoLogger as the published SDK's docs use it: signatures, attributes, public types, flush results and
ingestion hooks, run on ours against the local collector."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import threading
from typing import Any

import pytest
from collector_process import CollectorProcess
from sdk_helpers import tree_lines

import galileo
from galileo import (
    AgentSpan,
    Document,
    GalileoLogger,
    GalileoLoggerException,
    LlmSpan,
    Message,
    MessageRole,
    RetrieverSpan,
    ToolSpan,
    Trace,
    WorkflowSpan,
)

# The attributes galileo_core's records have (galileo_core 2.7.0's model_fields), which ours carry too.
RECORD_FIELDS = [
    *("type", "input", "redacted_input", "output", "redacted_output", "name", "created_at", "user_metadata"),
    *("tags", "status_code", "metrics", "external_id", "dataset_input", "dataset_output", "dataset_metadata"),
    *("id", "session_id", "trace_id", "step_number", "parent_id"),
]
KIND_FIELDS = {
    Trace: ["spans"],
    WorkflowSpan: ["spans"],
    AgentSpan: ["spans", "agent_type"],
    LlmSpan: ["tools", "events", "model", "temperature", "finish_reason"],
    RetrieverSpan: [],
    ToolSpan: ["tool_call_id"],
}


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    return collector.wait_for(lambda: collector.trace(trace_id))


def test_constructor_takes_the_published_parameters_in_order(collector_env: CollectorProcess) -> None:
    # project, project_id, log_stream, log_stream_id, ...: the second positional is project_id now.
    logger = GalileoLogger("published", None, "positional")
    trace = logger.start_trace("q")
    logger.conclude("a")
    logger.flush(timeout=10)
    assert stored(collector_env, trace.id)["log_stream_name"] == "positional"
    with pytest.raises(GalileoLoggerException):
        hook = print
        GalileoLogger("published", None, "s", None, None, None, None, None, "distributed", hook)


def test_span_methods_take_the_published_positional_order(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published", log_stream="order")
    trace = logger.start_trace(
        "question", None, "root", None, None, {"k": "v"}, ["t"], "ds-in", "ds-out", {"row": "1"}, "ext-1"
    )
    logger.add_workflow_span("w-in", None, None, None, "wf", None, None, None, None, 2, 201)
    logger.add_llm_span(
        [Message(content="hi", role=MessageRole.user)],
        "hello",
        "gpt-x",
        None,
        None,
        None,
        "llm",
        step_number=3,
        events=[{"type": "message", "role": "assistant", "content": "thinking"}],
    )
    logger.add_retriever_span("query", ["doc one", Document("doc two")], None, None, "search")
    logger.add_tool_span("tool-in", None, "tool-out", None, "tool", tool_call_id="call-1")
    logger.conclude("wf-out")
    logger.add_agent_span("a-in", None, "a-out", None, "agent", agent_type="router", status_code=500)
    logger.conclude()
    logger.conclude("answer")
    logger.flush(timeout=10)

    got = stored(collector_env, trace.id)
    assert (got["name"], got["external_id"], got["dataset_input"], got["dataset_output"]) == (
        "root",
        "ext-1",
        "ds-in",
        "ds-out",
    )
    assert got["dataset_metadata"] == {"row": "1"}
    workflow, agent = got["spans"]
    assert (workflow["name"], workflow["input"], workflow["output"]) == ("wf", "w-in", "wf-out")
    assert (workflow["status_code"], workflow["step_number"]) == (201, 2)
    llm, retriever, tool = workflow["spans"]
    assert (llm["model"], llm["step_number"], llm["output"]["content"]) == ("gpt-x", 3, "hello")
    assert llm["events"] == [{"type": "message", "role": "assistant", "content": "thinking"}]
    assert [d["content"] for d in retriever["output"]] == ["doc one", "doc two"]
    assert (tool["input"], tool["output"], tool["tool_call_id"]) == ("tool-in", "tool-out", "call-1")
    assert (agent["agent_type"], agent["status_code"], agent["output"]) == ("router", 500, "a-out")


def test_single_llm_span_trace_as_published(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published", log_stream="single")
    trace = logger.add_single_llm_span_trace(
        "q", "a", "gpt-x", name="one", dataset_input="di", span_step_number=4, created_at=dt.datetime.now()
    )
    logger.flush(timeout=10)
    got = stored(collector_env, trace.id)
    llm = got["spans"][0]
    assert (got["dataset_input"], llm["step_number"], llm["model"]) == ("di", 4, "gpt-x")


def test_records_have_the_published_attributes(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published", log_stream="types")
    records = [
        logger.start_trace("q"),
        logger.add_workflow_span("w"),
        logger.add_agent_span("a"),
        logger.add_llm_span("q", "a", "m", num_input_tokens=3),
        logger.add_retriever_span("q", ["d"]),
        logger.add_tool_span("t"),
    ]
    for record in records:
        kind = type(record)
        missing = [f for f in RECORD_FIELDS + KIND_FIELDS[kind] if not hasattr(record, f)]
        assert missing == [], kind.__name__
    llm = records[3]
    assert isinstance(llm, LlmSpan)
    assert (llm.metrics.num_input_tokens, llm.metrics.duration_ns) == (3, llm.duration_ns)
    assert {"Trace", "LlmSpan", "Session", "Message", "MessageRole", "Document"} <= set(galileo.__all__)
    logger.terminate(timeout=10)


def test_attributes_and_parent_tracking_as_published(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published", log_stream="attrs")
    assert (logger.traces, logger.mode, logger.experiment_id, logger.span_id, logger.trace_id) == (
        [],
        "batch",
        None,
        None,
        None,
    )
    assert not logger.has_active_trace()
    trace = logger.start_trace("q")
    workflow = logger.add_workflow_span("w")
    assert (logger.current_parent(), logger.previous_parent(), logger.traces) == (workflow, trace, [trace])
    logger.add_child_span_to_parent(LlmSpan(input="q", output="built elsewhere", name="prebuilt"))
    logger.reset_parent_tracking()
    assert (logger.current_parent(), logger.has_active_trace()) == (None, False)
    again = logger.add_trace("second", output="done", id="6f1f7f1e-1111-4e55-9c1d-5bd0bdc1e0a1", tags=["x"])
    assert again.id == "6f1f7f1e-1111-4e55-9c1d-5bd0bdc1e0a1"
    logger.conclude()
    sent = logger.flush(timeout=10)
    assert [t.id for t in sent] == [trace.id, again.id]
    assert stored(collector_env, trace.id)["spans"][0]["spans"][0]["name"] == "prebuilt"
    assert stored(collector_env, again.id)["output"] == "done"
    # Resolved by the sender off the request path: known once it delivered something.
    assert logger.project_id is not None and logger.log_stream_id is not None


def test_span_id_is_the_one_the_logger_was_built_with(collector_env: CollectorProcess) -> None:
    upstream = GalileoLogger(project="published", log_stream="up", mode="distributed")
    trace = upstream.start_trace("q")
    workflow = upstream.add_workflow_span("w")
    downstream = GalileoLogger(
        project="published", log_stream="down", mode="distributed", trace_id=trace.id, span_id=workflow.id
    )
    assert (downstream.trace_id, downstream.span_id) == (trace.id, workflow.id)
    assert upstream.span_id is None and upstream.current_parent() is workflow
    downstream.flush(timeout=10)
    upstream.flush(timeout=10)


def test_flush_returns_as_published(collector_env: CollectorProcess) -> None:
    batch = GalileoLogger(project="published", log_stream="flush")
    first = batch.start_trace("one")
    batch.conclude("1")
    second = batch.start_trace("two")  # left open: flush concludes it
    sent = batch.flush(timeout=10)
    assert [t.id for t in sent] == [first.id, second.id] and sent.pending == 0
    assert batch.flush(timeout=10) == []

    distributed = GalileoLogger(project="published", log_stream="flush", mode="distributed")
    trace = distributed.start_trace("three")
    distributed.conclude("3")
    result = distributed.flush(timeout=10)
    assert result == [] and result.pending == 0
    assert stored(collector_env, trace.id)["output"] == "3"

    async def main() -> list[Trace]:
        logger = GalileoLogger(project="published", log_stream="flush")
        logger.start_trace("four")
        return await logger.async_flush()

    assert len(asyncio.run(main())) == 1


def test_ingestion_hook_gets_the_batch_and_ingest_traces_sends_it(collector_env: CollectorProcess) -> None:
    seen: list[tuple[Any, str]] = []

    def hook(request: Any) -> None:
        seen.append((request, threading.current_thread().name))
        for trace in request.traces:
            trace.output = "redacted by the hook"
        logger.ingest_traces(request)

    logger = GalileoLogger(project="published", log_stream="hook", ingestion_hook=hook)
    trace = logger.start_trace("secret question")
    logger.conclude("secret answer")
    sent = logger.flush(timeout=10)
    assert [t.id for t in sent] == [trace.id]
    ((request, thread),) = seen
    assert [t.id for t in request.traces] == [trace.id]
    assert (request.experiment_id, request.session_id, request.is_complete) == (None, None, True)
    assert request.model_dump()["traces"][0]["id"] == trace.id
    assert thread != threading.current_thread().name
    assert stored(collector_env, trace.id)["output"] == "redacted by the hook"


def test_async_ingestion_hook(collector_env: CollectorProcess) -> None:
    async def hook(request: Any) -> None:
        await asyncio.sleep(0)
        await logger.async_ingest_traces(request)

    logger = GalileoLogger(project="published", log_stream="hook", ingestion_hook=hook)
    trace = logger.start_trace("q")
    logger.flush(timeout=10)
    assert stored(collector_env, trace.id)["input"] == "q"


def test_a_failing_hook_never_reaches_the_caller(collector_env: CollectorProcess) -> None:
    errors: list[Exception] = []

    def hook(request: Any) -> None:
        raise RuntimeError("hook bug")

    before = galileo.stats()["dropped_by_reason"].get("ingestion_hook", 0)
    logger = GalileoLogger(project="published", log_stream="hook", ingestion_hook=hook)
    logger.start_trace("q")
    logger.add_llm_span("q", "a", "m")
    assert len(logger.flush(errors.append, timeout=10)) == 1
    assert [str(e) for e in errors] == ["hook bug"]
    assert galileo.stats()["dropped_by_reason"]["ingestion_hook"] == before + 2


def test_local_metrics_accepted(collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture) -> None:
    # Accepted as published; computing local scorers is not part of this SDK (documented): a WARNING says so.
    logger = GalileoLogger(project="published", log_stream="metrics", local_metrics=[object()])
    trace = logger.start_trace("q")
    logger.flush(timeout=10)
    assert stored(collector_env, trace.id)["input"] == "q"
    assert "local_metrics are accepted but not computed" in caplog.text
    assert "local_metrics are accepted but not computed" in caplog.text


def test_protect_span_as_published(collector_env: CollectorProcess) -> None:
    @dataclasses.dataclass
    class Payload:  # the shape of galileo_core's protect Payload
        input_: str
        output: str

    logger = GalileoLogger(project="published", log_stream="protect")
    trace = logger.start_trace("q")
    span = logger.add_protect_span(Payload(input_="user text", output="model text"), status_code=200)
    logger.conclude()
    logger.flush(timeout=10)
    got = stored(collector_env, trace.id)["spans"][0]
    assert (got["type"], got["name"], got["id"]) == ("tool", "GalileoProtect", span.id)
    assert json.loads(got["input"]) == {"input_": "user text", "output": "model text"}


@pytest.mark.parametrize("mode", ["batch", "distributed"])
def test_a_prebuilt_span_goes_with_its_children(collector_env: CollectorProcess, mode: str) -> None:
    # Spans built elsewhere, children included, and added whole: the stored tree holds every one of them.
    before = galileo.stats()
    logger = GalileoLogger(project="published", log_stream="prebuilt", mode=mode)
    trace = logger.start_trace("q", name="T")
    outer = WorkflowSpan(input="w", name="outer")
    outer.spans.append(LlmSpan(input="l", output="a", name="llm"))
    inner = WorkflowSpan(input="i", name="inner")
    inner.spans.append(ToolSpan(input="t", output="o", name="tool"))
    outer.spans.append(inner)
    logger.add_child_span_to_parent(outer)
    logger.conclude("done")
    assert logger.flush(timeout=10).pending == 0
    assert tree_lines(stored(collector_env, trace.id)) == [
        "trace:T",
        "  workflow:outer",
        "    llm:llm",
        "    workflow:inner",
        "      tool:tool",
    ]
    after = galileo.stats()
    assert after["sent"] - before["sent"] == 5 and after["dropped"] == before["dropped"]
