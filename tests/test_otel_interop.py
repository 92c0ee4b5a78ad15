"""OpenTelemetry both ways, over uvicorn, with the real opentelemetry-sdk on the other side (issue 21, 1-3).

OTel-only services are Starlette apps wrapped in OpenTelemetry's ASGI middleware, calling out through
instrumented httpx clients; each has its own ``TracerProvider`` exporting to an in-memory list (its "sink").
Ours are Starlette apps with ``TracingMiddleware`` sending to the test collector. What is asserted is what
each side's user sees: the spans in the OTel sinks, the trees and metadata the collector stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
from collector_process import CollectorProcess
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sdk_helpers import serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo._w3c import otel_span_id, otel_trace_id, trace_uuid
from galileo.middleware import TracingMiddleware, _request, get_request_logger
from galileo.propagation import tracing_headers


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "otel-interop")
    _request.reset()


class OtelService:
    """An OTel-only service: ASGI instrumentation, an instrumented httpx client, spans kept in memory."""

    def __init__(self, name: str, downstream: str | None = None) -> None:
        self.sink = InMemorySpanExporter()
        self.provider = TracerProvider(resource=Resource.create({"service.name": name}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.sink))
        self.downstream = downstream

        async def handler(request: Request) -> JSONResponse:
            if self.downstream is None:
                return JSONResponse({"service": name})
            async with httpx.AsyncClient() as client:
                HTTPXClientInstrumentor.instrument_client(client, tracer_provider=self.provider)
                answer = await client.get(self.downstream, timeout=30)
            return JSONResponse({"service": name, "downstream": answer.json()})

        self.app = OpenTelemetryMiddleware(
            Starlette(routes=[Route("/", handler)]),
            tracer_provider=self.provider,
            exclude_spans=["receive", "send"],
        )

    def spans(self) -> list[ReadableSpan]:
        return list(self.sink.get_finished_spans())

    def one(self, kind: SpanKind) -> ReadableSpan:
        (span,) = [s for s in self.spans() if s.kind == kind]
        return span


def ours(name: str, downstream: str | None = None) -> Starlette:
    """A service of ours: a workflow span calling downstream with tracing_headers(), then an llm span."""

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        workflow = logger.add_workflow_span(input="q", name=f"{name}-workflow")
        headers = tracing_headers()
        below = None
        if downstream is not None:
            async with httpx.AsyncClient() as client:
                below = (await client.get(downstream, headers=headers, timeout=30)).json()
        logger.conclude(output="done")  # the workflow; the llm span goes next to it
        logger.add_llm_span(input="q", output="a", model="m", name=f"{name}-llm")
        return JSONResponse(
            {"trace": logger.trace_id, "workflow": workflow.id, "headers": headers, "below": below}
        )

    app = Starlette(routes=[Route("/", handler)])
    app.add_middleware(TracingMiddleware, log_stream=name)
    return app


def hexes(span: ReadableSpan) -> tuple[str, str, str | None]:
    """An OTel span's trace id, span id and parent span id, as hex."""
    context = span.get_span_context()
    parent = span.parent
    return (
        format(context.trace_id, "032x"),
        format(context.span_id, "016x"),
        None if parent is None else format(parent.span_id, "016x"),
    )


def stored(collector: CollectorProcess, trace_id: str, spans: int) -> dict[str, Any]:
    """The complete trace ``trace_id`` once the collector holds ``spans`` records under it."""

    def count(record: dict[str, Any]) -> int:
        return sum(1 + count(child) for child in record.get("spans") or ())

    def ready() -> dict[str, Any] | None:
        tree = collector.trace(trace_id)
        return tree if tree is not None and tree["is_complete"] and count(tree) >= spans else None

    return collector.wait_for(ready, timeout=15)


def records(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield tree
    for child in tree.get("spans") or ():
        yield from records(child)


def test_a_an_otel_service_calls_ours(collector_env: CollectorProcess) -> None:
    """(a) Our spans land under the OTel trace; the OTel sink holds one trace with the call to ours."""
    with serve(ours("first")) as ours_url:
        caller = OtelService("otel-caller", downstream=ours_url)
        with serve(caller.app) as caller_url:
            answer = requests.get(caller_url, timeout=30)
    assert answer.status_code == 200
    body = answer.json()["downstream"]
    galileo.shutdown(timeout=15)

    server, client = caller.one(SpanKind.SERVER), caller.one(SpanKind.CLIENT)
    otel_trace, _, _ = hexes(server)
    assert {hexes(span)[0] for span in caller.spans()} == {otel_trace}, "the OTel side is one trace"
    assert hexes(client)[2] == hexes(server)[1], "the outbound call to ours is in it"

    assert body["trace"] == trace_uuid(otel_trace), "our trace id is the OTel trace id, mapped"
    tree = stored(collector_env, body["trace"], 2)
    assert tree["user_metadata"]["otel.trace_id"] == otel_trace
    assert tree["user_metadata"]["otel.parent_span_id"] == hexes(client)[1], "parented on its client span"
    assert (tree["name"], tree["status_code"]) == ("GET /", 200), "we sent and completed the trace record"
    for record in records(tree):
        assert record["user_metadata"]["otel.trace_id"] == otel_trace
        assert record["user_metadata"]["otel.span_id"] == otel_span_id(record["id"])
    assert [span["name"] for span in tree["spans"]] == ["first-workflow", "first-llm"]


def test_b_ours_calls_an_otel_service(collector_env: CollectorProcess) -> None:
    """(b) The OTel service's spans continue our trace, parented on the record our headers name."""
    callee = OtelService("otel-callee")
    with serve(callee.app) as callee_url, serve(ours("caller", downstream=callee_url)) as ours_url:
        body = requests.get(ours_url, timeout=30).json()
    galileo.shutdown(timeout=15)

    server = callee.one(SpanKind.SERVER)
    trace_hex, _, parent_hex = hexes(server)
    assert trace_hex == otel_trace_id(body["trace"])
    assert parent_hex == otel_span_id(body["workflow"])
    tree = stored(collector_env, body["trace"], 2)
    assert all("otel.trace_id" not in record["user_metadata"] for record in records(tree)), (
        "no OpenTelemetry came in: our records are sent as they always were"
    )


def test_a_prime_otel_ours_otel_ours_is_one_trace(collector_env: CollectorProcess) -> None:
    """(a') The second service of ours continues the first one's Galileo trace through the OTel hop."""
    with serve(ours("second")) as second_url:
        middle = OtelService("otel-middle", downstream=second_url)
        with serve(middle.app) as middle_url, serve(ours("first", downstream=middle_url)) as first_url:
            front = OtelService("otel-front", downstream=first_url)
            with serve(front.app) as front_url:
                answer = requests.get(front_url, timeout=30)
    assert answer.status_code == 200
    first = answer.json()["downstream"]
    second = first["below"]["downstream"]
    galileo.shutdown(timeout=15)

    otel_trace = hexes(front.one(SpanKind.SERVER))[0]
    spans = front.spans() + middle.spans()
    assert {hexes(span)[0] for span in spans} == {otel_trace}, "one OTel trace end to end"
    assert hexes(middle.one(SpanKind.SERVER))[2] == otel_span_id(first["workflow"])
    assert first["trace"] == second["trace"] == trace_uuid(otel_trace)

    tree = stored(collector_env, first["trace"], 4)
    assert [span["name"] for span in tree["spans"]] == ["first-workflow", "first-llm"]
    (second_workflow, second_llm) = tree["spans"][0]["spans"]
    assert second_workflow["name"] == "second-workflow" and second_llm["name"] == "second-llm"
    meta = second_workflow["user_metadata"]
    assert meta["otel.trace_id"] == otel_trace
    assert meta["otel.parent_span_id"] == hexes(middle.one(SpanKind.CLIENT))[1]
    assert second_llm["user_metadata"]["otel.parent_span_id"] == meta["otel.parent_span_id"], "top-level too"
    assert "otel.parent_span_id" not in tree["spans"][1]["user_metadata"], "under our trace record: none"
    second_posts = [
        r
        for r in collector_env.requests()
        if r["method"] == "POST"
        and second_workflow["id"] in r.get("record_ids", ())
        and r["path"].endswith("/traces")
    ]
    assert second_posts == [], "the second service sent no trace record"
    assert tree["status_code"] == 200 and tree["name"] == "GET /"


def test_otel_asgi_middleware_outside_ours_names_one_trace(collector_env: CollectorProcess) -> None:
    """Point 3: OpenTelemetry's ASGI middleware around TracingMiddleware: its server span is our parent."""
    sink = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(sink))
    incoming_trace = uuid.uuid4().hex
    incoming = f"00-{incoming_trace}-b7ad6b7169203331-01"
    app = OpenTelemetryMiddleware(ours("both"), tracer_provider=provider, exclude_spans=["receive", "send"])
    with serve(app) as url:
        with_header = requests.get(url, headers={"traceparent": incoming}, timeout=30).json()
        without = requests.get(url, timeout=30).json()
    galileo.shutdown(timeout=15)

    servers = [span for span in sink.get_finished_spans() if span.kind == SpanKind.SERVER]
    assert len(servers) == 2
    by_trace = {hexes(span)[0]: span for span in servers}
    assert set(by_trace) >= {incoming_trace}
    for body in (with_header, without):
        (otel_trace,) = [t for t in by_trace if trace_uuid(t) == body["trace"]]
        server = by_trace[otel_trace]
        tree = stored(collector_env, body["trace"], 2)
        assert tree["user_metadata"]["otel.trace_id"] == otel_trace
        assert tree["user_metadata"]["otel.parent_span_id"] == hexes(server)[1], (
            "the server span, not the header"
        )
        assert body["headers"]["traceparent"].startswith(f"00-{otel_trace}-")
    assert hexes(by_trace[incoming_trace])[2] == "b7ad6b7169203331"
