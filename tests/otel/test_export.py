"""Our records as OTel spans, exported over OTLP/HTTP to a real receiver on loopback (issue 21, point 4)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI
from otlp_sink import OtlpSink, Received, wait_until
from starlette.testclient import TestClient

import galileo
from galileo import GalileoConfig, GalileoLogger
from galileo.exceptions import ConfigurationError
from galileo.middleware import TracingMiddleware, _request, get_request_logger


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in list(os.environ):
        if name.startswith("OTEL_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_PROJECT", "otel-export")
    monkeypatch.setenv("GALILEO_LOG_STREAM", f"s-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("OTEL_SERVICE_NAME", "checkout")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")  # (ms) the SDK's worker exports soon
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2")
    _request.reset()  # (the middleware's process configuration is read again, from this environment)
    yield
    _request.reset()


def _app(seen: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.get("/answer")
    def answer() -> dict[str, str]:
        started = time.monotonic()
        logger = get_request_logger()
        logger.add_workflow_span(input="question", name="plan")
        logger.add_llm_span(
            input=[{"role": "user", "content": "2+2?"}],
            output={"role": "assistant", "content": "4"},
            model="gpt-test",
            num_input_tokens=7,
            num_output_tokens=1,
            name="think",
        )
        logger.add_tool_span(input="2+2", output="4", name="calculator", tool_call_id="call-1")
        logger.conclude(output="4")
        seen["trace_id"] = logger.trace_id
        seen["handler_s"] = time.monotonic() - started
        return {"answer": "4"}

    return app


def _by_name(spans: list[Received]) -> dict[str, Received]:
    return {span.name: span for span in spans}


def _settled() -> bool:
    stats = galileo.stats()
    return stats["otlp_queued"] == 0 and stats["otlp_exported"] + stats["otlp_dropped"] > 0


def test_a_request_becomes_one_span_per_record_in_the_backend_and_the_collector_has_it_too(
    otlp_sink: OtlpSink, collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)  # exporter: both, by default
    seen: dict[str, Any] = {}
    with TestClient(_app(seen)) as client:
        assert client.get("/answer").status_code == 200
    trace_id = seen["trace_id"]
    spans = wait_until(lambda: len(otlp_sink.received()) >= 4 and otlp_sink.received())
    named = _by_name(spans)
    assert sorted(named) == ["GET /answer", "calculator", "plan", "think"], named
    assert {span.path for span in spans} == {"/v1/traces"}
    root, plan, llm, tool = named["GET /answer"], named["plan"], named["think"], named["calculator"]
    # One OTel trace: our trace's uuid; span ids are the records' first 16 hex digits; links as in our tree.
    assert {span.trace_id for span in spans} == {uuid.UUID(trace_id).hex}
    assert root.span_id == uuid.UUID(trace_id).hex[:16] and root.parent_span_id == ""
    assert plan.parent_span_id == root.span_id
    assert llm.parent_span_id == plan.span_id and tool.parent_span_id == plan.span_id
    # The conventions: OpenInference and OTel GenAI.
    assert llm.attributes["openinference.span.kind"] == "LLM"
    assert llm.attributes["gen_ai.operation.name"] == "chat"
    assert llm.attributes["llm.model_name"] == llm.attributes["gen_ai.request.model"] == "gpt-test"
    assert llm.attributes["gen_ai.usage.input_tokens"] == llm.attributes["llm.token_count.prompt"] == 7
    assert llm.attributes["gen_ai.usage.output_tokens"] == 1
    assert tool.attributes["openinference.span.kind"] == "TOOL"
    assert tool.attributes["gen_ai.tool.name"] == tool.attributes["tool.name"] == "calculator"
    assert tool.attributes["gen_ai.tool.call.id"] == "call-1"
    assert tool.attributes["input.value"] == "2+2" and tool.attributes["output.value"] == "4"
    assert plan.attributes["openinference.span.kind"] == "CHAIN"
    assert root.attributes["galileo.record.type"] == "trace"
    assert root.attributes["galileo.status_code"] == 200 and root.status == 0
    assert all(span.start <= span.end for span in spans)
    assert root.start <= plan.start <= llm.start
    assert root.resource["service.name"] == "checkout"
    assert root.resource["galileo.project.name"] == "otel-export"
    assert root.resource["galileo.logstream.name"] == os.environ["GALILEO_LOG_STREAM"]
    assert root.scope == "galileo"
    # both: Galileo (here the collector) has the trace as well.
    stored = collector_env.wait_for(lambda: collector_env.trace(trace_id))
    assert [child["name"] for child in stored["spans"]] == ["plan"]
    stats = galileo.stats()
    assert stats["otlp_exported"] == 4 and stats["otlp_dropped"] == 0 and stats["otlp_queued"] == 0


def test_a_trace_from_opentelemetry_keeps_its_otel_trace_id_and_parent(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    otel_trace, otel_parent = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    logger = GalileoLogger()
    logger.start_trace(
        input="from OTel",
        name="incoming",
        metadata={"otel.trace_id": otel_trace, "otel.parent_span_id": otel_parent},
    )
    logger.add_retriever_span(input="query", output=["doc"], name="search")
    logger.conclude(output="done")
    logger.flush(timeout=10)  # flushes the OTLP export too
    named = _by_name(otlp_sink.received())
    assert {span.trace_id for span in named.values()} == {otel_trace}
    assert named["incoming"].parent_span_id == otel_parent
    assert named["search"].parent_span_id == named["incoming"].span_id
    assert named["search"].attributes["openinference.span.kind"] == "RETRIEVER"


def test_decorated_calls_in_a_request_are_exported_under_their_callers(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)

    @galileo.log(span_type="tool")
    def lookup(city: str) -> str:
        return "sunny"

    @galileo.log(name="forecast")
    def forecast(city: str) -> str:
        get_request_logger().add_llm_span(input="weather?", output=lookup(city), model="m", name="llm")
        return "sunny"

    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.get("/weather")
    def weather() -> str:
        return forecast("Paris")

    with TestClient(app) as client:
        assert client.get("/weather").status_code == 200
    named = wait_until(lambda: len(otlp_sink.received()) >= 4 and _by_name(otlp_sink.received()))
    assert sorted(named) == ["GET /weather", "forecast", "llm", "lookup"]
    assert named["forecast"].parent_span_id == named["GET /weather"].span_id
    assert named["lookup"].parent_span_id == named["forecast"].span_id
    assert named["llm"].parent_span_id == named["forecast"].span_id
    assert named["forecast"].attributes["output.value"] == "sunny"


def test_otlp_only_sends_nothing_to_galileo(
    otlp_sink: OtlpSink, collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("GALILEO_EXPORTER", "otlp")
    for mode in ("batch", "distributed"):
        logger = GalileoLogger(mode=mode)
        trace = logger.start_trace(input="hi", name=f"only-otlp-{mode}")
        logger.add_llm_span(input="hi", output="hello", model="m", name="llm")
        logger.conclude(output="hello")
        logger.flush(timeout=10)
        assert collector_env.trace(trace.id) is None
    names = sorted(span.name for span in otlp_sink.received())
    assert names == ["llm", "llm", "only-otlp-batch", "only-otlp-distributed"]
    stats = galileo.stats()
    assert stats["sent"] == 0 and stats["queued"] == 0
    assert stats["otlp_exported"] == 4


@pytest.mark.parametrize("backend", ["answers 500", "unreachable"])
def test_spans_the_backend_refuses_are_counted_and_reported_and_requests_are_unaffected(
    backend: str, otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if backend == "answers 500":
        otlp_sink.status = 500
        url = otlp_sink.url
    else:
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            url = f"http://127.0.0.1:{closed.getsockname()[1]}"
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", url)
    monkeypatch.setenv("GALILEO_EXPORTER", "otlp")
    seen: dict[str, Any] = {}
    client = TestClient(_app(seen))
    with caplog.at_level(logging.WARNING, logger="galileo"):
        for _ in range(3):
            assert client.get("/answer").json() == {"answer": "4"}
        assert wait_until(_settled, timeout=20)
    stats = galileo.stats()
    assert stats["otlp_dropped_by_reason"] == {"export_failed": 12}, stats
    assert stats["otlp_dropped"] == 12 and stats["otlp_exported"] == 0
    warnings = [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "galileo"
    ]
    assert any("OTLP export dropped" in w and "export_failed" in w for w in warnings), warnings


def test_an_exporter_that_cannot_be_made_fails_no_request_and_its_records_are_counted(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("GALILEO_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER", "no-such-provider")
    client = TestClient(_app({}))
    with caplog.at_level(logging.WARNING, logger="galileo"):
        for _ in range(2):
            assert client.get("/answer").json() == {"answer": "4"}
    stats = galileo.stats()
    assert stats["otlp_dropped_by_reason"] == {"export_unavailable": 8}, stats
    assert stats["otlp_queued"] == 0 and otlp_sink.received() == []
    assert "the OTLP exporter could not be made (RuntimeError)" in caplog.text


def test_exports_happen_off_the_request_thread(otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    otlp_sink.delay = 2.0
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("GALILEO_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10")
    seen: dict[str, Any] = {}
    client = TestClient(_app(seen))
    client.get("/answer")  # (the first record makes the pipeline: imports, a thread)
    started = time.monotonic()
    for _ in range(3):
        assert client.get("/answer").status_code == 200
    elapsed = time.monotonic() - started
    assert elapsed < 1.0, f"3 requests took {elapsed:.2f}s against a sink answering in 2s"
    assert wait_until(lambda: galileo.stats()["otlp_exported"] == 16, timeout=20)


def test_a_flush_waits_its_timeout_once_for_both_destinations(
    otlp_sink: OtlpSink, fresh_collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both the OTLP backend and Galileo answer in 3 s: flush(timeout=1.5) returns after 1.5 s, not 3."""
    otlp_sink.delay = 3.0
    requests.put(f"{fresh_collector.url}/api/faults", json={"latency_ms": 3000}, timeout=5).raise_for_status()
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("GALILEO_EXPORTER", "both")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "10")
    logger = GalileoLogger(mode="distributed")
    logger.start_trace(input="slow everywhere", name="bounded")
    logger.add_tool_span(input="x", output="y", name="tool")
    logger.conclude(output="done")
    started = time.monotonic()
    result = logger.flush(timeout=1.5)
    elapsed = time.monotonic() - started
    assert elapsed < 2.5, f"flush(timeout=1.5) took {elapsed:.2f}s"
    assert result.pending > 0  # (Galileo had not answered yet)
    # both backends answer at once again: everything is delivered, and nothing slow is left for later tests
    otlp_sink.delay = 0.0
    requests.put(f"{fresh_collector.url}/api/faults", json={"latency_ms": 0}, timeout=5).raise_for_status()
    assert logger.flush(timeout=20).pending == 0
    assert wait_until(lambda: galileo.stats()["otlp_exported"] == 2 and galileo.stats()["otlp_queued"] == 0)


def test_a_full_queue_drops_records_and_counts_every_one(
    otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    otlp_sink.delay = 0.5
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("GALILEO_EXPORTER", "otlp")
    monkeypatch.setenv("OTEL_BSP_MAX_QUEUE_SIZE", "4")
    monkeypatch.setenv("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4")
    logger = GalileoLogger()
    logger.start_trace(input="many", name="burst")
    for i in range(40):
        logger.add_tool_span(input=str(i), output="ok", name=f"tool-{i}")
    logger.conclude(output="done")
    logger.flush(timeout=20)
    stats = galileo.stats()
    assert stats["otlp_dropped_by_reason"].get("queue_full", 0) > 0, stats
    assert stats["otlp_exported"] + stats["otlp_dropped"] == 41 and stats["otlp_queued"] == 0
    assert len(otlp_sink.received()) == stats["otlp_exported"]


def test_shutdown_exports_what_is_queued(otlp_sink: OtlpSink, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_OTLP_ENDPOINT", otlp_sink.url)
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # only a flush sends
    logger = GalileoLogger(mode="distributed")
    logger.start_trace(input="x", name="at-shutdown")
    logger.conclude(output="y")
    assert galileo.shutdown(timeout=10) == 0
    assert [span.name for span in otlp_sink.received()] == ["at-shutdown"]
    assert galileo.stats()["otlp_exported"] == 1


_AT_EXIT = textwrap.dedent(
    """
    import uuid
    from galileo import GalileoLogger

    batch = GalileoLogger()
    batch.start_trace(input="never flushed", name="batch-trace")
    batch.add_tool_span(input="a", output="b", name="batch-tool")
    upstream = str(uuid.uuid4())
    continuing = GalileoLogger(mode="distributed", trace_id=upstream, span_id=upstream)
    continuing.add_tool_span(input="a", output="b", name="continuing-tool")
    print(upstream)
    """
)


def test_the_exit_drain_exports_what_is_left(otlp_sink: OtlpSink) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GALILEO_"))}
    env.update(GALILEO_OTLP_ENDPOINT=otlp_sink.url, GALILEO_EXPORTER="otlp", OTEL_BSP_SCHEDULE_DELAY="60000")
    result = subprocess.run(
        [sys.executable, "-c", _AT_EXIT], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    upstream = uuid.UUID(result.stdout.strip()).hex
    named = _by_name(otlp_sink.received())
    assert sorted(named) == ["batch-tool", "batch-trace", "continuing-tool"]
    assert named["continuing-tool"].trace_id == upstream
    assert named["continuing-tool"].parent_span_id == upstream[:16]


def test_exporter_setting() -> None:
    resolve = GalileoConfig.resolve
    assert resolve(environ={}).exporter == "galileo"
    both = resolve(environ={"GALILEO_OTLP_ENDPOINT": "http://otel:4318"})
    assert (both.exporter, both.otlp_endpoint) == ("both", "http://otel:4318/v1/traces")
    assert resolve(environ={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://otel:4318"}).exporter == "both"
    given = resolve(otlp_endpoint="http://otel:4318/custom/path", exporter="OTLP", environ={})
    assert (given.exporter, given.otlp_endpoint) == ("otlp", "http://otel:4318/custom/path")
    with pytest.raises(ConfigurationError, match="GALILEO_EXPORTER"):
        resolve(environ={"GALILEO_EXPORTER": "jaeger"})
    with pytest.raises(ConfigurationError, match="GALILEO_OTLP_ENDPOINT"):
        resolve(environ={"GALILEO_OTLP_ENDPOINT": "http://user:secret@otel:4318"})


_WITHOUT_OTEL = textwrap.dedent(
    """
    import sys

    class _NoOtel:
        def find_spec(self, name, path=None, target=None):
            if name == "opentelemetry" or name.startswith("opentelemetry."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, _NoOtel())
    import galileo
    import galileo.otel
    from galileo.exceptions import ConfigurationError

    logger = galileo.GalileoLogger(logging_disabled=True)
    assert galileo.stats()["otlp_exported"] == 0
    assert galileo.otel.OTEL_AVAILABLE is False
    for kwargs in ({"otlp_endpoint": "http://otel:4318"}, {"exporter": "both"}):
        try:
            galileo.GalileoLogger(**kwargs)
        except ConfigurationError as error:
            assert "pip install 'galileo[otel]'" in str(error), error
        else:
            raise AssertionError("no error")
    try:
        from galileo.otel import GalileoSpanProcessor
    except ImportError as error:
        assert "pip install 'galileo[otel]'" in str(error), error
    else:
        raise AssertionError("no error")
    assert not any(name.startswith("opentelemetry") for name in sys.modules)
    print("ok")
    """
)


def test_import_galileo_works_without_opentelemetry_and_asking_for_export_says_what_to_install() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "GALILEO_"))}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL], capture_output=True, text=True, timeout=60, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
