"""GalileoLogger in batch mode against the real local collector: the tree, the wire, misuse, blocking."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from collector_process import CollectorProcess
from sdk_helpers import HttpSpy, sent_shape, strip_store_keys, tree_lines, validate_requests, writes

import galileo
from galileo import ConfigurationError, GalileoLogger, GalileoLoggerException
from galileo.schema import TRUNCATION_MARKER

pytestmark = pytest.mark.usefixtures("fresh_sdk")


def log_all_kinds(
    logger: GalileoLogger, question: str = "who improved the telescope?"
) -> galileo.schema.Trace:
    trace = logger.start_trace(input=question, name="ask", metadata={"user": 7, "beta": True}, tags=["t1"])
    logger.add_workflow_span(input=question, name="pipeline")
    logger.add_retriever_span(
        input=question,
        output=["doc one", {"content": "doc two", "metadata": {"page": 2, "score": 0.5}}],
        name="search",
        duration_ns=1_000,
    )
    logger.add_agent_span(input=[{"role": "user", "content": question}], name="planner", agent_type="planner")
    logger.add_tool_span(input='{"q": 1}', output="42", name="calc", tool_call_id="call-1", duration_ns=2_000)
    logger.conclude(output="planned")
    logger.add_llm_span(
        input=[{"role": "system", "content": "be brief"}, {"role": "user", "content": question}],
        output={"role": "assistant", "content": "Galileo"},
        model="fake-llm",
        num_input_tokens=12,
        num_output_tokens=3,
        total_tokens=15,
        temperature=0.2,
        name="answer",
    )
    logger.conclude()
    logger.conclude()
    return trace


def test_batch_round_trip_all_span_types(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="main")
    collector_env.clear_requests()
    trace = log_all_kinds(logger)

    assert writes(collector_env) == [], "batch mode sends nothing before flush"
    flushed = logger.flush(timeout=10)

    assert [t.id for t in flushed] == [trace.id]
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert stored["is_complete"] is True
    assert strip_store_keys(stored) == sent_shape(trace.to_wire()), (
        "the collector stored exactly what was built"
    )
    assert tree_lines(stored) == [
        "trace:ask",
        "  workflow:pipeline",
        "    retriever:search",
        "    agent:planner",
        "      tool:calc",
        "    llm:answer",
    ]
    requests = writes(collector_env)
    assert [(r["method"], r["path"].rsplit("/", 1)[1]) for r in requests] == [("POST", "traces")]
    assert validate_requests(requests) == 1


def test_concluded_records_inherit_last_child_output_as_text(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="inherit")
    trace = log_all_kinds(logger)
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    workflow = stored["spans"][0]
    # the workflow's last child is the llm span: its message is the workflow's output...
    assert workflow["output"] == {
        "content": "Galileo",
        "role": "assistant",
        "tool_call_id": None,
        "tool_calls": None,
    }
    # ...and the trace, whose output must be text, gets the message's text
    assert stored["output"] == "Galileo"
    assert workflow["spans"][1]["output"] == "planned"
    assert stored["user_metadata"] == {"user": "7", "beta": "True"}


def test_durations_are_measured_when_not_given(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="durations")
    trace = logger.start_trace(input="q")
    logger.add_workflow_span(input="q")
    logger.add_tool_span(input="x", output="y")
    logger.add_tool_span(input="x", output="y", duration_ns=5)
    logger.conclude()
    logger.conclude()
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    workflow = stored["spans"][0]
    measured, given = workflow["spans"]
    assert measured["metrics"]["duration_ns"] > 0
    assert given["metrics"]["duration_ns"] == 5
    assert workflow["metrics"]["duration_ns"] >= measured["metrics"]["duration_ns"]
    assert stored["metrics"]["duration_ns"] >= workflow["metrics"]["duration_ns"]


def test_explicit_duration_and_status_on_conclude(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="status")
    trace = logger.start_trace(input="q", name="failing")
    logger.conclude(output="boom", duration_ns=1234, status_code=500)
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert (stored["output"], stored["metrics"]["duration_ns"], stored["status_code"]) == ("boom", 1234, 500)


def test_several_traces_go_in_one_post(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="several")
    collector_env.clear_requests()
    ids = []
    for i in range(3):
        ids.append(logger.start_trace(input=f"q{i}").id)
        logger.add_llm_span(input=f"q{i}", output=f"a{i}", model="m")
        logger.conclude()
    assert len(logger.flush(timeout=10)) == 3
    requests = writes(collector_env)
    assert len(requests) == 1
    assert [t["id"] for t in requests[0]["body"]["traces"]] == ids
    assert logger.flush(timeout=10) == [], "a second flush has nothing left to send"


def test_single_llm_span_trace(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="single")
    trace = logger.add_single_llm_span_trace(
        input=[{"role": "user", "content": "hi"}], output="hello", model="m", num_input_tokens=1
    )
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert stored["input"] == "hi"
    assert stored["output"] == "hello"
    assert [s["type"] for s in stored["spans"]] == ["llm"]


def test_flush_concludes_what_is_open(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="open")
    trace = logger.start_trace(input="q")
    logger.add_workflow_span(input="q")
    logger.add_llm_span(input="q", output="a", model="m")
    logger.flush(timeout=10)
    assert not logger.has_active_trace()
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert stored["output"] == "a"
    assert stored["spans"][0]["metrics"]["duration_ns"] is not None


def test_payload_truncated_with_visible_marker(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="truncate", max_payload_chars=50)
    trace = logger.start_trace(input="x" * 1000)
    logger.add_llm_span(input="y" * 1000, output="short", model="m")
    logger.conclude()
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    marker = TRUNCATION_MARKER.format(omitted=950)
    assert stored["input"] == "x" * 50 + marker
    assert stored["spans"][0]["input"][0]["content"] == "y" * 50 + marker


def test_redaction_hook_fills_redacted_fields(collector_env: CollectorProcess) -> None:
    def redact(field: str, value: Any) -> Any:
        return f"[{field} redacted]"

    logger = GalileoLogger(project="batch-rt", log_stream="redact", redact=redact)
    trace = logger.start_trace(input="my card is 4111")
    logger.add_tool_span(input="4111", output="ok")
    logger.conclude(output="done")
    logger.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None
    assert (stored["input"], stored["redacted_input"]) == ("my card is 4111", "[input redacted]")
    assert stored["redacted_output"] == "[output redacted]"
    assert stored["spans"][0]["redacted_input"] == "[input redacted]"


def test_span_without_trace_warns_and_is_counted(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="misuse")
    with caplog.at_level(logging.WARNING, logger="galileo"):
        span = logger.add_llm_span(input="q", output="a", model="m")
        assert logger.conclude() is None
    assert span.type == "llm"
    messages = [r.getMessage() for r in caplog.records]
    assert any("no active trace" in m and "start_trace" in m for m in messages)
    assert any("conclude() with nothing open" in m for m in messages)
    assert galileo.stats()["dropped_by_reason"].get("no_trace") == 1
    assert logger.flush(timeout=10) == []


@pytest.mark.parametrize("mode", ["batch", "distributed"])
def test_start_trace_while_active_concludes_the_first(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream=f"twice-{mode}", mode=mode)
    first = logger.start_trace(input="one", name="first")
    logger.add_workflow_span(input="w", name="left-open")
    with caplog.at_level(logging.WARNING, logger="galileo"):
        second = logger.start_trace(input="two", name="second")
    assert any("concluding it first" in r.getMessage() for r in caplog.records)
    logger.add_tool_span(input="x", output="y", name="of-second")
    logger.conclude(output="second done")
    flushed = logger.flush(timeout=10)
    if mode == "batch":
        assert [t.id for t in flushed] == [first.id, second.id]
    galileo.shutdown(timeout=10)
    assert galileo.stats()["dropped"] == 0

    stored_first, stored_second = collector_env.trace(first.id), collector_env.trace(second.id)
    assert stored_first is not None and stored_second is not None
    assert tree_lines(stored_first) == ["trace:first", "  workflow:left-open"]
    assert tree_lines(stored_second) == ["trace:second", "  tool:of-second"]
    assert stored_first["is_complete"] is True, "the open trace was completed when the next one started"
    assert stored_first["spans"][0]["metrics"]["duration_ns"] is not None, "its open span was concluded"
    assert (stored_second["is_complete"], stored_second["output"]) == (True, "second done")


def test_properties(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="props")
    assert (logger.trace_id, logger.span_id, logger.current_parent(), logger.has_active_trace()) == (
        None,
        None,
        None,
        False,
    )
    trace = logger.start_trace(input="q")
    assert (logger.trace_id, logger.span_id, logger.current_parent()) == (trace.id, None, trace)
    span = logger.add_workflow_span(input="q")
    assert (logger.trace_id, logger.span_id, logger.current_parent()) == (trace.id, None, span)
    assert logger.conclude() is trace
    assert logger.mode == "batch"
    logger.terminate(timeout=10)
    assert collector_env.trace(trace.id) is not None


def test_all_network_io_runs_on_sender_threads_and_resolution_is_cached(
    collector_env: CollectorProcess, http_spy: HttpSpy
) -> None:
    for i in range(3):
        logger = GalileoLogger(project="batch-io", log_stream="cached")
        logger.start_trace(input=f"q{i}")
        logger.add_tool_span(input="x", output="y")
        assert http_spy.calls == [] if i == 0 else True
        logger.flush(timeout=10)
    threads = {call.thread for call in http_spy.calls}
    assert threads and all(name.startswith("galileo-sender-") for name in threads), threads
    assert http_spy.count("POST", "/login/api_key") == 1
    assert http_spy.count("GET", "/projects") == 1, "project looked up once per process"
    assert http_spy.count("GET", "/log_streams/paginated") == 1, "log stream looked up once per process"
    assert http_spy.count("POST", "/traces") == 3


def test_logging_disabled_sends_nothing(collector_env: CollectorProcess, http_spy: HttpSpy) -> None:
    logger = GalileoLogger(project="batch-rt", log_stream="disabled", logging_disabled=True)
    log_all_kinds(logger)
    assert logger.flush(timeout=10) == []
    assert http_spy.calls == []


def test_misconfiguration_raises_one_clear_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_MODE", "streaming")
    with pytest.raises(GalileoLoggerException, match="GALILEO_MODE"):
        GalileoLogger()
    monkeypatch.setenv("GALILEO_MODE", "batch")
    monkeypatch.setenv("GALILEO_EXTRA_HEADERS", "not json")
    with pytest.raises(ConfigurationError, match="GALILEO_EXTRA_HEADERS"):
        GalileoLogger()
    monkeypatch.delenv("GALILEO_EXTRA_HEADERS")
    monkeypatch.setenv("GALILEO_API_URL", "ftp://example.com")
    with pytest.raises(ConfigurationError, match="GALILEO_API_URL"):
        GalileoLogger()
    monkeypatch.delenv("GALILEO_API_URL")
    with pytest.raises(ConfigurationError, match="trace_id"):
        GalileoLogger(mode="distributed", trace_id="not-a-uuid")


def test_secrets_never_logged(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "sk-SECRET-do-not-log-1234"
    monkeypatch.setenv("GALILEO_API_KEY", secret)
    with caplog.at_level(logging.DEBUG):
        logger = GalileoLogger(project="batch-rt", log_stream="secret")
        log_all_kinds(logger)
        logger.flush(timeout=10)
        assert secret not in repr(logger) and secret not in repr(logger.config)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "logged in" in text
    assert secret not in text
    assert "Bearer" not in text
