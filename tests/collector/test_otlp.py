"""The collector's OTLP/HTTP endpoints, with the real opentelemetry-sdk exporter on the other side.

Spans are made by a real ``TracerProvider`` (kept in memory), then sent by the real ``OTLPSpanExporter``
(protobuf over HTTP) to the collector subprocess on loopback; JSON bodies (OTLP/JSON) are posted by hand.
What the collector stored is read back through its ``/api/traces/{id}``.
"""

from __future__ import annotations

import gzip
import json
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from google.protobuf import json_format
from google.rpc import status_pb2
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from galileo import GalileoLogger
from galileo._w3c import otel_span_id, otel_trace_id, span_uuid, trace_uuid

KEY = "otlp-test-key-0123456789"
PROTOBUF = {"Content-Type": "application/x-protobuf"}


class _Kept(SpanExporter):
    """Keeps finished spans in memory, for the real OTLP exporter to send afterwards."""

    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans.extend(spans)
        return SpanExportResult.SUCCESS


def make_spans(resource: dict[str, Any] | None = None) -> tuple[trace.Tracer, _Kept]:
    kept = _Kept()
    provider = TracerProvider(resource=Resource.create({"service.name": "otel-svc", **(resource or {})}))
    provider.add_span_processor(SimpleSpanProcessor(kept))
    return provider.get_tracer("test"), kept


def export(
    url: str, spans: Sequence[ReadableSpan], headers: dict[str, str] | None = None, **options: Any
) -> SpanExportResult:
    exporter = OTLPSpanExporter(endpoint=url, headers=headers, timeout=10, **options)
    try:
        return exporter.export(spans)
    finally:
        exporter.shutdown()


def hex_trace(span: ReadableSpan) -> str:
    assert span.context is not None
    return f"{span.context.trace_id:032x}"


def stored(process: CollectorProcess, trace_id: str, headers: dict[str, str] | None = None) -> Any:
    response = requests.get(f"{process.url}/api/traces/{trace_id}", headers=headers, timeout=10)
    return response.json() if response.status_code == 200 else None


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for child in node.get("spans", []):
        yield from walk(child)


def by_name(tree: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {node["name"]: node for node in walk(tree) if node["type"] != "trace"}


def llm_trace(tracer: trace.Tracer) -> None:
    with tracer.start_as_current_span("agent-run") as root:
        root.set_attribute("input.value", "what is the capital of France?")
        root.set_attribute("output.value", "Paris")
        with tracer.start_as_current_span("chat gpt-x") as llm:
            llm.set_attribute("openinference.span.kind", "LLM")
            llm.set_attribute("llm.model_name", "gpt-x")
            llm.set_attribute("llm.token_count.prompt", 11)
            llm.set_attribute("llm.token_count.completion", 2)
            llm.set_attribute("input.value", json.dumps([{"role": "user", "content": "capital?"}]))
            llm.set_attribute("input.mime_type", "application/json")
            llm.set_attribute("output.value", "Paris")


# -- the real exporter, both paths ------------------------------------------------------------------------


def test_the_otel_exporter_stores_a_trace_on_the_otel_path_where_its_resource_says(
    collector: CollectorProcess,
) -> None:
    tracer, kept = make_spans({"galileo.project.name": "otlp-p", "galileo.logstream.name": "otlp-ls"})
    llm_trace(tracer)

    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS

    tree = stored(collector, trace_uuid(hex_trace(kept.spans[0])))
    assert tree is not None and tree["trace_record"] and tree["is_complete"]
    assert (tree["name"], tree["input"], tree["output"]) == (
        "agent-run",
        "what is the capital of France?",
        "Paris",
    )
    assert (tree["project_name"], tree["log_stream_name"]) == ("otlp-p", "otlp-ls")
    [root] = tree["spans"]
    assert (root["name"], root["type"]) == ("agent-run", "workflow")
    [llm] = root["spans"]
    assert llm["type"] == "llm" and llm["model"] == "gpt-x"
    assert llm["metrics"]["num_input_tokens"] == 11 and llm["metrics"]["num_output_tokens"] == 2
    assert llm["input"] == [{"role": "user", "content": "capital?"}] and llm["output"] == "Paris"
    assert llm["metrics"]["duration_ns"] > 0 and llm["created_at"].endswith("Z")
    context = kept.spans[0].context
    assert context is not None
    assert llm["id"] == span_uuid(hex_trace(kept.spans[0]), f"{context.span_id:016x}")
    assert llm["user_metadata"]["otel.span_id"] == f"{context.span_id:016x}"
    assert llm["user_metadata"]["otel.parent_span_id"] == root["user_metadata"]["otel.span_id"]
    assert llm["user_metadata"]["service.name"] == "otel-svc"


def test_the_galileo_path_takes_project_and_log_stream_from_headers(collector: CollectorProcess) -> None:
    tracer, kept = make_spans()
    llm_trace(tracer)
    headers = {"Galileo-API-Key": "any", "project": "otlp-headers", "logstream": "from-headers"}

    assert export(f"{collector.url}/otel/traces", kept.spans, headers) is SpanExportResult.SUCCESS

    tree = stored(collector, trace_uuid(hex_trace(kept.spans[0])))
    assert (tree["project_name"], tree["log_stream_name"]) == ("otlp-headers", "from-headers")
    assert {node["log_stream_name"] for node in walk(tree)} == {"from-headers"}

    tracer, kept = make_spans()
    llm_trace(tracer)
    experiment = {"Galileo-API-Key": "any", "project": "otlp-headers", "experimentid": str(uuid.uuid4())}
    assert export(f"{collector.url}/otel/traces", kept.spans, experiment) is SpanExportResult.SUCCESS
    tree = stored(collector, trace_uuid(hex_trace(kept.spans[0])))
    assert (tree["project_name"], tree["log_stream_id"]) == ("otlp-headers", None)


def test_a_span_attribute_names_its_project_before_the_resource_and_the_headers(
    collector: CollectorProcess,
) -> None:
    tracer, kept = make_spans({"galileo.project.name": "otlp-resource"})
    with tracer.start_as_current_span("root"), tracer.start_as_current_span("elsewhere") as span:
        span.set_attribute("galileo.project.name", "otlp-span-attribute")
    headers = {"project": "otlp-header", "logstream": "h"}
    assert export(f"{collector.url}/otel/traces", kept.spans, headers) is SpanExportResult.SUCCESS
    spans = by_name(stored(collector, trace_uuid(hex_trace(kept.spans[0]))))
    assert (spans["root"]["project_name"], spans["root"]["log_stream_name"]) == ("otlp-resource", "h")
    assert spans["elsewhere"]["project_name"] == "otlp-span-attribute"


def test_without_any_location_spans_go_to_the_default_project_and_log_stream(
    collector: CollectorProcess,
) -> None:
    tracer, kept = make_spans()
    with tracer.start_as_current_span("lonely"):
        pass
    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    tree = stored(collector, trace_uuid(hex_trace(kept.spans[0])))
    assert (tree["project_name"], tree["log_stream_name"]) == ("default", "default")


@pytest.mark.parametrize("compression", [Compression.Gzip, Compression.Deflate])
def test_compressed_exports_are_stored(collector: CollectorProcess, compression: Compression) -> None:
    tracer, kept = make_spans()
    llm_trace(tracer)
    result = export(f"{collector.url}/v1/traces", kept.spans, compression=compression)
    assert result is SpanExportResult.SUCCESS
    assert len(list(walk(stored(collector, trace_uuid(hex_trace(kept.spans[0])))))) == 3
    # the test endpoint listing writes still answers, the export's body (not JSON) left out
    (entry,) = [r for r in collector.requests() if r["path"] == "/v1/traces" and r["status"] == 200][-1:]
    assert entry["body"] is None


def test_an_error_status_is_a_500_unless_the_attributes_say_otherwise(collector: CollectorProcess) -> None:
    tracer, kept = make_spans()
    with tracer.start_as_current_span("root"):
        with tracer.start_as_current_span("boom") as failing:
            failing.set_status(Status(StatusCode.ERROR, "it broke"))
        with tracer.start_as_current_span("teapot") as teapot:
            teapot.set_status(Status(StatusCode.ERROR))
            teapot.set_attribute("galileo.status_code", 418)
    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    tree = stored(collector, trace_uuid(hex_trace(kept.spans[0])))
    spans = by_name(tree)
    assert spans["boom"]["status_code"] == 500
    assert spans["boom"]["user_metadata"]["otel.status_message"] == "it broke"
    assert spans["teapot"]["status_code"] == 418 and spans["root"]["status_code"] is None
    assert tree["error_count"] == 2


def test_openinference_and_genai_spans_become_the_right_record_types(collector: CollectorProcess) -> None:
    tracer, kept = make_spans()
    with tracer.start_as_current_span("workflow"):
        with tracer.start_as_current_span("search") as span:
            span.set_attribute("openinference.span.kind", "RETRIEVER")
            span.set_attribute("input.value", "telescope")
        with tracer.start_as_current_span("calculator") as span:
            span.set_attribute("openinference.span.kind", "TOOL")
            span.set_attribute("output.value", "42")
        with tracer.start_as_current_span("planner") as span:
            span.set_attribute("gen_ai.operation.name", "invoke_agent")
        with tracer.start_as_current_span("chat claude") as span:
            span.set_attribute("gen_ai.operation.name", "chat")
            span.set_attribute("gen_ai.request.model", "claude-x")
            span.set_attribute("gen_ai.usage.input_tokens", 7)
            span.set_attribute("gen_ai.usage.output_tokens", 5)
            span.set_attribute("gen_ai.request.temperature", 0.3)
        with tracer.start_as_current_span("GET /health") as span:
            span.set_attribute("http.request.method", "GET")
    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    spans = by_name(stored(collector, trace_uuid(hex_trace(kept.spans[0]))))
    assert {name: node["type"] for name, node in spans.items()} == {
        "workflow": "workflow",
        "search": "retriever",
        "calculator": "tool",
        "planner": "agent",
        "chat claude": "llm",
        "GET /health": "workflow",
    }
    assert spans["search"]["input"] == "telescope" and spans["calculator"]["output"] == "42"
    chat = spans["chat claude"]
    assert chat["model"] == "claude-x" and chat["temperature"] == 0.3
    assert chat["metrics"]["num_input_tokens"] == 7 and chat["metrics"]["num_total_tokens"] == 12
    assert spans["GET /health"]["user_metadata"]["http.request.method"] == "GET"


# -- authentication ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    db = tmp_path_factory.mktemp("otlp-keyed") / "c.db"
    with CollectorProcess(db, args=("--api-key", KEY)) as process:
        yield process


@pytest.mark.parametrize("path", ["/v1/traces", "/otel/traces"])
def test_a_collector_with_a_key_stores_nothing_without_it(keyed: CollectorProcess, path: str) -> None:
    tracer, kept = make_spans()
    llm_trace(tracer)
    trace_id = trace_uuid(hex_trace(kept.spans[0]))
    readable = {"Galileo-API-Key": KEY}

    assert export(f"{keyed.url}{path}", kept.spans) is SpanExportResult.FAILURE
    assert export(f"{keyed.url}{path}", kept.spans, {"Galileo-API-Key": "wrong"}) is SpanExportResult.FAILURE
    assert (
        export(f"{keyed.url}{path}", kept.spans, {"Authorization": "Bearer wrong"})
        is SpanExportResult.FAILURE
    )
    assert stored(keyed, trace_id, readable) is None
    # Credentials are checked before the body is read: garbage without them is 401, not 400.
    refused = requests.post(f"{keyed.url}{path}", data=b"\xff" * 100, headers=PROTOBUF, timeout=10)
    assert refused.status_code == 401

    assert export(f"{keyed.url}{path}", kept.spans, readable) is SpanExportResult.SUCCESS
    assert len(list(walk(stored(keyed, trace_id, readable)))) == 3


def test_a_bearer_token_of_the_key_or_of_a_login_is_accepted(keyed: CollectorProcess) -> None:
    token = keyed.login(KEY)
    for credential in (KEY, token):
        tracer, kept = make_spans()
        llm_trace(tracer)
        headers = {"Authorization": f"Bearer {credential}"}
        assert export(f"{keyed.url}/v1/traces", kept.spans, headers) is SpanExportResult.SUCCESS
        assert stored(keyed, trace_uuid(hex_trace(kept.spans[0])), {"Galileo-API-Key": KEY}) is not None


# -- OTLP/JSON by hand ------------------------------------------------------------------------------------


def json_request(trace_id: str, spans: list[dict[str, Any]], **resource: str) -> dict[str, Any]:
    attributes = [{"key": k, "value": {"stringValue": v}} for k, v in resource.items()]
    for span in spans:
        span.setdefault("traceId", trace_id)
        span.setdefault("startTimeUnixNano", "1767225600000000000")
        span.setdefault("endTimeUnixNano", "1767225600500000000")
    return {"resourceSpans": [{"resource": {"attributes": attributes}, "scopeSpans": [{"spans": spans}]}]}


TRUE, TWO = {"boolValue": True}, {"intValue": "2"}


def new_trace_hex() -> str:
    return uuid.uuid4().hex


def test_otlp_json_with_hex_ids_is_stored_and_answered_in_json(collector: CollectorProcess) -> None:
    trace_hex, root, child = new_trace_hex(), "1111111111111111", "2222222222222222"
    body = json_request(
        trace_hex,
        [
            {"spanId": child, "parentSpanId": root, "name": "tool call", "kind": 1, "attributes": [
                {"key": "openinference.span.kind", "value": {"stringValue": "TOOL"}},
                {"key": "tags", "value": {"arrayValue": {"values": [{"stringValue": "a"}, TWO]}}},
                {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "k", "value": TRUE}]}}},
            ]},
            {"spanId": root, "name": "root", "status": {"code": "STATUS_CODE_OK"}},
        ],
        **{"galileo.project.name": "otlp-json"},
    )  # fmt: skip
    response = requests.post(f"{collector.url}/v1/traces", json=body, timeout=10)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json") and response.json() == {}
    tree = stored(collector, trace_uuid(trace_hex))
    assert tree["project_name"] == "otlp-json"
    [root_node] = tree["spans"]
    assert (
        root_node["id"] == span_uuid(trace_hex, root) and root_node["user_metadata"]["otel.span_id"] == root
    )
    [tool] = root_node["spans"]
    assert tool["type"] == "tool" and tool["name"] == "tool call"
    assert (
        tool["created_at"] == "2026-01-01T00:00:00.000000Z" and tool["metrics"]["duration_ns"] == 500_000_000
    )
    assert json.loads(tool["user_metadata"]["tags"]) == ["a", 2]
    assert json.loads(tool["user_metadata"]["nested"]) == {"k": True}


def test_gzipped_json_is_stored(collector: CollectorProcess) -> None:
    trace_hex = new_trace_hex()
    body = json.dumps(json_request(trace_hex, [{"spanId": "3333333333333333", "name": "zipped"}])).encode()
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = requests.post(
        f"{collector.url}/v1/traces", data=gzip.compress(body), headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text
    assert stored(collector, trace_uuid(trace_hex))["name"] == "zipped"


def _span_pb(trace_id: bytes, span_id: bytes, name: str, parent: bytes = b"") -> trace_pb2.Span:
    return trace_pb2.Span(
        trace_id=trace_id,
        span_id=span_id,
        parent_span_id=parent,
        name=name,
        start_time_unix_nano=1_767_225_600_000_000_000,
        end_time_unix_nano=1_767_225_601_000_000_000,
    )


def _request_pb(*spans: trace_pb2.Span) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.extend(spans)
    return request


def test_some_spans_rejected_is_a_partial_success_in_the_requests_encoding(
    collector: CollectorProcess,
) -> None:
    trace_hex = new_trace_hex()
    good = _span_pb(bytes.fromhex(trace_hex), b"\x01" * 8, "good")
    short = _span_pb(bytes.fromhex(trace_hex)[:8], b"\x02" * 8, "short trace id")
    response = requests.post(
        f"{collector.url}/v1/traces",
        data=_request_pb(good, short).SerializeToString(),
        headers=PROTOBUF,
        timeout=10,
    )
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-protobuf"
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1
    assert "trace_id must be 16 bytes" in answer.partial_success.error_message
    assert stored(collector, trace_uuid(trace_hex))["name"] == "good"

    as_json = json_request(new_trace_hex(), [{"spanId": "0102030405060708", "name": "ok"}])
    as_json["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        {"traceId": "ab" * 16, "spanId": "0102", "name": "x"}
    )
    response = requests.post(f"{collector.url}/v1/traces", json=as_json, timeout=10)
    assert response.status_code == 200
    assert response.json()["partialSuccess"]["rejectedSpans"] == "1"  # int64 in proto3 JSON: a string
    assert "span_id must be 8 bytes" in response.json()["partialSuccess"]["errorMessage"]


# -- hostile bodies ---------------------------------------------------------------------------------------


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (the message is built by hand: the library refuses to nest it)."""
    size, length = len(payload), b""
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            return bytes([number << 3 | 2]) + length + payload


def _deep_attribute(levels: int) -> bytes:
    """A span attribute (Span.attributes, field 9) whose value nests ``levels`` arrays deep."""
    value = _field(1, b"bottom")  # AnyValue.string_value
    for _ in range(levels):
        value = _field(5, _field(1, value))  # AnyValue.array_value.values
    return _field(9, _field(1, b"deep") + _field(2, value))


def _hostile() -> list[tuple[str, dict[str, str], bytes, int]]:
    trace_id = bytes.fromhex(new_trace_hex())
    good = _request_pb(_span_pb(trace_id, b"\x07" * 8, "fine")).SerializeToString()
    deep_span = _span_pb(trace_id, b"\x08" * 8, "deep").SerializeToString() + _deep_attribute(150)
    deep = _field(1, _field(2, _field(2, deep_span)))  # resource_spans.scope_spans.spans
    wrong_ids = [
        _span_pb(trace_id[:15], b"\x01" * 8, "short trace"),
        _span_pb(trace_id, b"\x01" * 9, "long span"),
        _span_pb(trace_id, b"\x01" * 8, "odd parent", parent=b"\x02" * 3),
        _span_pb(b"\x00" * 16, b"\x01" * 8, "zero trace"),
        _span_pb(trace_id, b"\x03" * 8, "own parent", parent=b"\x03" * 8),
    ]
    gzip_json = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    gzip_pb = {**PROTOBUF, "Content-Encoding": "gzip"}
    json_type = {"Content-Type": "application/json"}
    deflate_pb = {**PROTOBUF, "Content-Encoding": "deflate"}
    not_hex = json.dumps(json_request("zz" * 16, [{"spanId": "ab" * 8}])).encode()
    bad_time = b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"startTimeUnixNano": "x"}]}]}]}'
    return [
        ("garbage bytes", PROTOBUF, b"\xff\xfe\x00garbage" * 50, 400),
        ("truncated protobuf", PROTOBUF, good[: len(good) // 2], 400),
        ("huge declared length", PROTOBUF, b"\x0a\xff\xff\xff\xff\x07" + b"\x00" * 10, 400),
        ("attribute nested 150 deep", PROTOBUF, deep, 400),
        ("every span with a bad id", PROTOBUF, _request_pb(*wrong_ids).SerializeToString(), 400),
        ("gzip bomb", gzip_pb, gzip.compress(b"\x00" * (40 * 1024 * 1024)), 413),
        ("truncated gzip", gzip_pb, gzip.compress(good)[:-10], 400),
        ("not gzip at all", gzip_pb, good, 400),
        ("deflate bomb", deflate_pb, zlib.compress(b"{" * (40 << 20), 9), 413),
        ("brotli", {**PROTOBUF, "Content-Encoding": "br"}, good, 415),
        ("plain text", {"Content-Type": "text/plain"}, good, 415),
        ("no content type", {}, good, 415),
        ("json garbage", json_type, b"{not json", 400),
        ("json array", json_type, b"[1, 2]", 400),
        ("json nested 500 deep", json_type, b'{"resourceSpans": ' + b"[" * 500 + b"]" * 500 + b"}", 400),
        ("json spans not a list", json_type, b'{"resourceSpans": [{"scopeSpans": [{"spans": "x"}]}]}', 400),
        ("json id not hex", json_type, not_hex, 400),
        ("json bad number", json_type, bad_time, 400),
        ("gzipped json garbage", gzip_json, gzip.compress(b"\x00\x01"), 400),
    ]  # fmt: skip


HOSTILE = _hostile()


@pytest.mark.parametrize(("label", "headers", "body", "status"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_a_hostile_body_is_refused_with_its_reason_never_a_500(
    collector: CollectorProcess, label: str, headers: dict[str, str], body: bytes, status: int
) -> None:
    response = requests.post(f"{collector.url}/v1/traces", data=body, headers=headers, timeout=30)

    assert response.status_code == status, (label, response.status_code, response.content[:300])
    if response.headers["content-type"] == "application/x-protobuf":
        reason = status_pb2.Status.FromString(response.content).message
    else:
        reason = json_format.Parse(response.text, status_pb2.Status()).message
    assert reason, label
    assert requests.get(f"{collector.url}/healthcheck", timeout=10).status_code == 200


def test_the_collector_still_stores_after_the_hostile_corpus(collector: CollectorProcess) -> None:
    for _, headers, body, _ in HOSTILE:
        requests.post(f"{collector.url}/v1/traces", data=body, headers=headers, timeout=30)
    tracer, kept = make_spans()
    llm_trace(tracer)
    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    assert stored(collector, trace_uuid(hex_trace(kept.spans[0]))) is not None
    assert "Traceback" not in collector.log_text()


def test_odd_attribute_values_are_stored_and_every_listing_still_works(collector: CollectorProcess) -> None:
    """Attributes that are numbers JSON or SQLite cannot hold (NaN, infinities) or JSON text nested 10 000
    deep are kept as text; a time past 2**63 ns (a duration SQLite cannot hold) is a rejected span."""
    trace_hex = new_trace_hex()
    odd = _span_pb(bytes.fromhex(trace_hex), b"\x05" * 8, "odd")
    values: dict[str, Any] = {
        "openinference.span.kind": "LLM",
        "llm.token_count.prompt": float("inf"),
        "gen_ai.usage.output_tokens": float("nan"),
        "gen_ai.request.temperature": float("-inf"),
        "llm.model_name": float("nan"),
        "galileo.status_code": 1e300,
        "gen_ai.prompt": float("inf"),
        "output.value": "[NaN, 1e400, " + "[" * 10_000 + "]" * 10_000 + "]",
        "output.mime_type": "application/json",
    }
    for key, value in values.items():
        attribute = odd.attributes.add(key=key)
        if isinstance(value, str):
            attribute.value.string_value = value
        else:
            attribute.value.double_value = value
    late = _span_pb(bytes.fromhex(trace_hex), b"\x06" * 8, "late")
    late.end_time_unix_nano = 2**64 - 1
    body = _request_pb(odd, late).SerializeToString()

    response = requests.post(f"{collector.url}/v1/traces", data=body, headers=PROTOBUF, timeout=10)

    assert response.status_code == 200
    answer = trace_service_pb2.ExportTraceServiceResponse.FromString(response.content)
    assert answer.partial_success.rejected_spans == 1 and "2262" in answer.partial_success.error_message
    tree = stored(collector, trace_uuid(trace_hex))
    [llm] = tree["spans"]
    assert llm["type"] == "llm" and llm["metrics"] == {"duration_ns": 1_000_000_000}
    assert llm["input"] == "inf" and llm["output"].startswith("[NaN, 1e400, [[[")
    assert "temperature" not in llm and llm["status_code"] is None
    for path in ("/api/traces", f"/api/viewer/traces/{trace_uuid(trace_hex)}", "/api/viewer/traces"):
        assert requests.get(f"{collector.url}{path}", timeout=10).status_code == 200, path


def test_a_body_over_the_limit_is_413_before_decompression(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "c.db", args=("--max-body-mb", "1")) as small:
        big = requests.post(f"{small.url}/v1/traces", data=b"\x00" * (2 << 20), headers=PROTOBUF, timeout=30)
        assert big.status_code == 413
        bomb = gzip.compress(b"\x00" * (2 << 20))  # 2 KiB on the wire, 2 MiB inflated
        inflated = requests.post(
            f"{small.url}/v1/traces", data=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}, timeout=30
        )
        assert inflated.status_code == 413
        assert "1 MiB" in status_pb2.Status.FromString(inflated.content).message


# -- one tree with our SDK's records ----------------------------------------------------------------------


def _otel_child_of(tracer: trace.Tracer, trace_hex: str, parent_hex: str, name: str) -> None:
    parent = SpanContext(int(trace_hex, 16), int(parent_hex, 16), is_remote=True, trace_flags=TraceFlags(1))
    context = trace.set_span_in_context(NonRecordingSpan(parent))
    with tracer.start_as_current_span(name, context=context) as span:
        span.set_attribute("openinference.span.kind", "LLM")
        span.set_attribute("llm.model_name", "remote-model")
        with tracer.start_as_current_span(f"{name} inner"):
            pass


def _sdk_trace(log_stream: str) -> tuple[GalileoLogger, str, str]:
    logger = GalileoLogger(project="otlp-join", log_stream=log_stream)
    trace_record = logger.start_trace(input="question", name="our request")
    workflow = logger.add_workflow_span(input="question", name="our workflow")
    return logger, trace_record.id, workflow.id


@pytest.mark.usefixtures("fresh_sdk")
@pytest.mark.parametrize("sdk_first", [True, False], ids=["sdk-first", "otel-first"])
def test_an_otel_child_of_our_record_is_stored_under_that_record(
    collector_env: CollectorProcess, sdk_first: bool
) -> None:
    logger, trace_id, workflow_id = _sdk_trace(f"join-{sdk_first}")
    logger.conclude(output="done")
    logger.conclude(output="done")
    tracer, kept = make_spans()
    _otel_child_of(tracer, otel_trace_id(trace_id), otel_span_id(workflow_id), "downstream call")
    if sdk_first:
        assert logger.flush(timeout=10)
    assert export(f"{collector_env.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    if not sdk_first:
        assert logger.flush(timeout=10)

    tree = stored(collector_env, trace_id)
    assert tree["name"] == "our request" and tree["orphans"] == []
    [workflow] = tree["spans"]
    assert workflow["id"] == workflow_id
    [downstream] = workflow["spans"]
    assert (downstream["name"], downstream["type"], downstream["model"]) == (
        "downstream call",
        "llm",
        "remote-model",
    )
    assert downstream["user_metadata"]["otel.parent_span_id"] == otel_span_id(workflow_id)
    assert [child["name"] for child in downstream["spans"]] == ["downstream call inner"]


def _native_trace(process: CollectorProcess, trace_id: str, name: str) -> None:
    headers = process.auth_headers()
    project = requests.post(
        f"{process.url}/projects", json={"name": "otlp-native"}, headers=headers, timeout=10
    )
    body = {
        "traces": [
            {
                "type": "trace",
                "id": trace_id,
                "name": name,
                "input": "q",
                "created_at": "2026-01-01T00:00:00Z",
            }
        ],
    }
    path = f"{process.url}/v2/projects/{project.json()['id']}/traces"
    response = requests.post(path, json=body, headers=headers, timeout=10)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("ours_first", [True, False], ids=["ours-first", "otel-root-first"])
def test_a_root_otel_span_joins_our_trace_record_and_ours_replaces_one_made_for_it(
    collector: CollectorProcess, ours_first: bool
) -> None:
    tracer, kept = make_spans()
    llm_trace(tracer)
    trace_hex = hex_trace(kept.spans[0])
    if ours_first:
        _native_trace(collector, trace_uuid(trace_hex), "ours")
    assert export(f"{collector.url}/v1/traces", kept.spans) is SpanExportResult.SUCCESS
    if not ours_first:
        assert stored(collector, trace_uuid(trace_hex))["name"] == "agent-run"  # made for the root span
        _native_trace(collector, trace_uuid(trace_hex), "ours")

    tree = stored(collector, trace_uuid(trace_hex))
    assert tree["name"] == "ours" and tree["project_name"] == "otlp-native"
    assert [node["name"] for node in walk(tree)] == ["ours", "agent-run", "chat gpt-x"]


def test_spans_arriving_child_first_in_several_requests_make_one_tree(collector: CollectorProcess) -> None:
    trace_hex, root, middle, leaf = new_trace_hex(), "a1" * 8, "b2" * 8, "c3" * 8
    for span in (
        {"spanId": leaf, "parentSpanId": middle, "name": "leaf"},
        {"spanId": middle, "parentSpanId": root, "name": "middle"},
        {"spanId": root, "name": "root"},
    ):
        response = requests.post(
            f"{collector.url}/v1/traces", json=json_request(trace_hex, [span]), timeout=10
        )
        assert response.status_code == 200
    tree = stored(collector, trace_uuid(trace_hex))
    assert tree["trace_record"] and tree["name"] == "root" and tree["orphans"] == []
    assert [(node["name"], len(node["spans"])) for node in walk(tree)] == [
        ("root", 1),
        ("root", 1),
        ("middle", 1),
        ("leaf", 0),
    ]
    again = requests.post(
        f"{collector.url}/v1/traces",
        json=json_request(trace_hex, [{"spanId": leaf, "name": "leaf"}]),
        timeout=10,
    )
    assert again.status_code == 200 and len(list(walk(stored(collector, trace_uuid(trace_hex))))) == 4
