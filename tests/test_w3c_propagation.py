"""W3C Trace Context in and out of our services (issue 21, points 1, 2 and 7), through the public API.

Requests go through a real Starlette app with ``TracingMiddleware`` (the ASGI test client) and records to
the test collector; what is asserted is the trace a handler's logger names, the headers it sends on, and
what the collector stored. ``tests/test_otel_interop.py`` has the real OpenTelemetry services over uvicorn;
``tests/test_import_graph.py`` checks that :mod:`galileo.propagation` stays a leaf.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from collector_process import CollectorProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import galileo
from galileo import galileo_context, get_tracing_headers, log
from galileo._w3c import otel_span_id, otel_trace_id, trace_uuid
from galileo.middleware import TracingMiddleware, _request, get_request_logger
from galileo.propagation import parse_incoming, tracing_headers

#: For the tests that store nothing under it (each storing test makes its own: the collector is shared).
OTEL_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
OTEL_PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{OTEL_TRACE}-{OTEL_PARENT}-01"


def otel_context() -> tuple[str, str]:
    """A new OTel trace id and a traceparent naming it (parent span :data:`OTEL_PARENT`)."""
    trace_hex = uuid.uuid4().hex[::-1]  # (not a uuid4's own digits)
    return trace_hex, f"00-{trace_hex}-{OTEL_PARENT}-01"


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "w3c")
    _request.reset()


@pytest.fixture
def client() -> Iterator[TestClient]:
    """A service of ours whose handler logs a workflow span and answers its trace and outgoing headers
    (``/quiet`` logs nothing)."""

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        workflow = logger.add_workflow_span(input="q", name="wf")
        headers = tracing_headers()
        logger.conclude(output="a")
        return JSONResponse({"trace": logger.trace_id, "workflow": workflow.id, "headers": headers})

    async def quiet(request: Request) -> JSONResponse:
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", handler), Route("/quiet", quiet)], middleware=[Middleware(TracingMiddleware)]
    )
    with TestClient(app) as test_client:
        yield test_client


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    galileo.shutdown(timeout=15)
    return collector.wait_for(lambda: collector.trace(trace_id), timeout=15)


def records(tree: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield tree
    for child in tree.get("spans") or ():
        yield from records(child)


# -- in ----------------------------------------------------------------------------------------------------
def test_a_traceparent_alone_opens_the_mapped_trace(
    client: TestClient, collector_env: CollectorProcess
) -> None:
    otel_trace, traceparent = otel_context()
    body = client.get("/", headers={"traceparent": traceparent}).json()
    assert body["trace"] == trace_uuid(otel_trace) == trace_uuid(otel_trace.upper()), "deterministic"
    tree = stored(collector_env, body["trace"])
    assert (tree["name"], tree["is_complete"], tree["status_code"]) == ("GET /", True, 200)
    assert tree["user_metadata"] == {
        "otel.trace_id": otel_trace,
        "otel.span_id": otel_span_id(tree["id"]),
        "otel.parent_span_id": OTEL_PARENT,
    }
    (workflow,) = tree["spans"]
    assert workflow["user_metadata"] == {
        "otel.trace_id": otel_trace,
        "otel.span_id": otel_span_id(body["workflow"]),
    }
    # out: the OTel trace id as it came, our record as the parent, its flags; our tracestate member
    trace_hex, workflow_hex = body["trace"].replace("-", ""), body["workflow"].replace("-", "")
    assert body["headers"] == {
        "X-Galileo-Trace-ID": body["trace"],
        "X-Galileo-Parent-ID": body["workflow"],
        "traceparent": f"00-{otel_trace}-{workflow_hex[:16]}-01",
        "tracestate": f"galileo={trace_hex}-{workflow_hex}",
    }


def test_x_galileo_decides_and_the_traceparent_is_kept(
    client: TestClient, collector_env: CollectorProcess
) -> None:
    trace, parent = str(uuid.uuid4()), str(uuid.uuid4())
    headers = {
        "X-Galileo-Trace-ID": trace,
        "X-Galileo-Parent-ID": parent,
        "traceparent": f"00-{OTEL_TRACE}-{OTEL_PARENT}-00",
        "tracestate": "vendor=abc, other=1",
    }
    body = client.get("/", headers=headers).json()
    assert body["trace"] == trace
    out = body["headers"]
    assert out["traceparent"] == f"00-{OTEL_TRACE}-{otel_span_id(body['workflow'])}-00", "flags passed on"
    assert out["tracestate"].split(",")[1:] == ["vendor=abc", "other=1"], "ours first, then theirs"
    galileo.shutdown(timeout=15)
    posts = collector_env.wait_for(
        lambda: [r for r in collector_env.requests() if body["workflow"] in r.get("record_ids", ())]
    )
    assert all(not r["path"].endswith("/traces") for r in posts), "a continuing service sends no trace record"
    (span,) = posts[0]["body"]["spans"]
    assert span["user_metadata"] == {
        "otel.trace_id": OTEL_TRACE,
        "otel.span_id": otel_span_id(body["workflow"]),
        "otel.parent_span_id": OTEL_PARENT,
    }


def test_two_calls_of_one_otel_trace_share_its_galileo_trace(
    client: TestClient, collector_env: CollectorProcess
) -> None:
    """An OTel service calling ours twice in one trace: one mapped id, so one Galileo trace holding both
    requests' spans (ingest is idempotent: the first trace record stored stands); nothing is lost."""
    otel_trace, _ = otel_context()
    bodies = [
        client.get("/", headers={"traceparent": f"00-{otel_trace}-{parent}-01"}).json()
        for parent in ("1111111111111111", "2222222222222222")
    ]
    assert bodies[0]["trace"] == bodies[1]["trace"] == trace_uuid(otel_trace)
    galileo.shutdown(timeout=15)
    tree = collector_env.wait_for(
        lambda: (t := collector_env.trace(bodies[0]["trace"])) and len(t["spans"]) == 2 and t
    )
    assert {span["id"] for span in tree["spans"]} == {body["workflow"] for body in bodies}
    assert tree["is_complete"] and tree["orphans"] == []
    assert galileo.stats()["dropped"] == 0


def test_the_dispatch_path_reads_the_traceparent_too() -> None:
    """A subclass overriding ``dispatch`` runs through BaseHTTPMiddleware: the same parser, the same rules."""

    class Timed(TracingMiddleware):
        async def dispatch(self, request: Request, call_next: Any) -> Any:
            return await super().dispatch(request, call_next)

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_tool_span("q", "a")
        return JSONResponse({"trace": logger.trace_id})

    otel_trace, traceparent = otel_context()
    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(Timed)])
    with TestClient(app) as test_client:
        assert test_client.get("/", headers={"traceparent": traceparent}).json()["trace"] == trace_uuid(
            otel_trace
        )


def test_malformed_x_galileo_falls_back_to_the_traceparent(client: TestClient) -> None:
    otel_trace, traceparent = otel_context()
    body = client.get("/", headers={"X-Galileo-Trace-ID": "nope", "traceparent": traceparent}).json()
    assert body["trace"] == trace_uuid(otel_trace)


def test_our_tracestate_member_continues_our_trace(
    client: TestClient, collector_env: CollectorProcess
) -> None:
    """A service of ours reached through an OTel-only hop (which passed our tracestate member on)."""
    upstream = galileo.GalileoLogger(log_stream="upstream", mode="distributed")
    trace = upstream.start_trace(input="q", name="upstream")
    workflow = upstream.add_workflow_span(input="q", name="upstream-wf")
    sent = upstream.get_tracing_headers()
    hop_span = "aaaaaaaaaaaaaaaa"  # the OTel hop's span: a new parent id, the same trace, tracestate as is
    traceparent = sent["traceparent"][:36] + hop_span + "-01"
    body = client.get("/", headers={"traceparent": traceparent, "tracestate": sent["tracestate"]}).json()
    upstream.conclude(output="a", conclude_all=True)
    assert body["trace"] == trace.id
    tree = stored(collector_env, trace.id)
    (upstream_wf,) = tree["spans"]
    (ours,) = upstream_wf["spans"]
    assert ours["id"] == body["workflow"]
    assert ours["user_metadata"]["otel.parent_span_id"] == hop_span
    assert body["headers"]["traceparent"] == f"00-{otel_trace_id(trace.id)}-{otel_span_id(ours['id'])}-01"
    assert workflow.id == upstream_wf["id"]


def test_between_our_services_the_records_are_unchanged(
    client: TestClient, collector_env: CollectorProcess
) -> None:
    """X-Galileo with the traceparent we derive from it: no OpenTelemetry involved, no otel.* metadata."""
    upstream = galileo.GalileoLogger(log_stream="upstream", mode="distributed")
    trace = upstream.start_trace(input="q", name="upstream")
    body = client.get("/", headers=upstream.get_tracing_headers()).json()
    upstream.conclude(output="a", conclude_all=True)
    assert body["trace"] == trace.id
    tree = stored(collector_env, trace.id)
    assert all(record["user_metadata"] == {} for record in records(tree))


def test_galileo_context_takes_a_w3c_context(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_MODE", "distributed")
    seen: dict[str, Any] = {}
    otel_trace, traceparent = otel_context()

    @log(name="job")
    def job() -> str:
        seen["headers"] = get_tracing_headers()
        return "done"

    with galileo_context(log_stream="jobs", traceparent=traceparent, tracestate="vendor=1"):
        job()
    galileo_context.flush(timeout=10)
    trace_id = trace_uuid(otel_trace)
    tree = collector_env.wait_for(lambda: collector_env.trace(trace_id), timeout=15)
    (span,) = tree["spans"]
    assert tree["user_metadata"]["otel.parent_span_id"] == OTEL_PARENT
    assert span["user_metadata"]["otel.trace_id"] == otel_trace
    assert seen["headers"]["traceparent"] == f"00-{otel_trace}-{otel_span_id(span['id'])}-01"
    assert seen["headers"]["tracestate"].endswith(",vendor=1")

    # Our member in it: the block continues that trace (no trace record of its own).
    with galileo_context(
        log_stream="jobs", traceparent=traceparent, tracestate=seen["headers"]["tracestate"]
    ):
        job()
    galileo_context.flush(timeout=10)
    tree = collector_env.wait_for(
        lambda: (t := collector_env.trace(trace_id)) and len(t["spans"][0]["spans"]) == 1 and t
    )
    assert tree["spans"][0]["spans"][0]["name"] == "job"


# -- malformed: never fails a request, a new trace, rate-limited warnings -----------------------------------
_VALID_STATE = "vendor=1"
CORPUS: list[list[tuple[bytes, bytes]]] = [
    [(b"traceparent", value.encode() if isinstance(value, str) else value)]
    for value in [
        f"ff-{OTEL_TRACE}-{OTEL_PARENT}-01",  # version ff
        f"00-{'0' * 32}-{OTEL_PARENT}-01",  # all-zero trace id
        f"00-{OTEL_TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{OTEL_TRACE.upper()}-{OTEL_PARENT}-01",  # upper case
        f"00-{OTEL_TRACE[:-1]}-{OTEL_PARENT}-01",  # wrong lengths
        f"00-{OTEL_TRACE}-{OTEL_PARENT}0-01",
        f"00-{OTEL_TRACE}-{OTEL_PARENT}-1",
        f"0-{OTEL_TRACE}-{OTEL_PARENT}-01",
        f"00-{OTEL_TRACE}-{OTEL_PARENT}-01-",  # version 00 with more fields
        f"00_{OTEL_TRACE}_{OTEL_PARENT}_01",
        f"00-{OTEL_TRACE[:-1]}g-{OTEL_PARENT}-01",  # not hex
        "",
        "garbage",
        "00-" + "a" * 100_000,  # huge
        "\t00-\x01-\x7f",
        "é".encode() * 30,  # not ASCII
        b"\xff" * 55,
    ]
]
CORPUS.append([(b"traceparent", TRACEPARENT.encode()), (b"traceparent", TRACEPARENT.encode())])  # duplicated


@pytest.mark.parametrize("rounds", [3])
def test_malformed_traceparents_never_fail_a_request(
    client: TestClient, caplog: pytest.LogCaptureFixture, rounds: int
) -> None:
    traces = set()
    with caplog.at_level(logging.WARNING, logger="galileo"):
        for _ in range(rounds):
            for headers in CORPUS:
                answer = client.get("/", headers=[*headers, (b"tracestate", _VALID_STATE.encode())])
                assert answer.status_code == 200
                body = answer.json()
                assert uuid.UUID(body["trace"]).version == 4
                traces.add(body["trace"])
                assert body["headers"]["traceparent"].startswith(f"00-{body['trace'].replace('-', '')}-")
                assert "vendor" not in body["headers"]["tracestate"], (
                    "the tracestate went with its traceparent"
                )
    assert len(traces) == rounds * len(CORPUS), "each request a new trace of its own"
    assert trace_uuid(OTEL_TRACE) not in traces
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert 1 <= len(warnings) <= 2, "rate limited: one per kind of problem (malformed, duplicated)"
    assert all("traceparent" in w and "a new trace starts" in w and len(w) < 300 for w in warnings)


@pytest.mark.parametrize(
    "tracestate",
    [
        "a=1,a=2",
        "UPPER=1",
        "k=",
        "=v",
        ",".join(f"k{i}=v" for i in range(33)),
        "k=" + "v" * 10_000,
        "k=v\x00",
    ],
)
def test_a_malformed_tracestate_is_dropped_and_its_traceparent_kept(
    client: TestClient, tracestate: str
) -> None:
    otel_trace, traceparent = otel_context()
    answer = client.get("/", headers={"traceparent": traceparent, "tracestate": tracestate})
    assert answer.status_code == 200
    body = answer.json()
    assert body["trace"] == trace_uuid(otel_trace)
    assert body["headers"]["tracestate"].count("=") == 1, "ours only"


def test_a_request_that_logs_nothing_never_parses(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="galileo"):
        for _ in range(3):
            assert (
                client.get(
                    "/quiet", headers={"traceparent": "ff-bad", "X-Galileo-Trace-ID": "bad"}
                ).status_code
                == 200
            )
    assert caplog.records == []


@st.composite
def _w3c_values(draw: st.DrawFn) -> bytes:
    """A traceparent or tracestate value: well formed, one character off, or any bytes."""
    trace, span = (
        draw(st.binary(min_size=16, max_size=16)).hex(),
        draw(st.binary(min_size=8, max_size=8)).hex(),
    )
    version, flags = (
        draw(st.sampled_from(["00", "01", "ff", "cc"])),
        draw(st.sampled_from(["00", "01", "ff"])),
    )
    ours = uuid.UUID(trace, version=4).hex
    value = draw(
        st.sampled_from(
            [
                f"{version}-{trace}-{span}-{flags}",
                f"galileo={ours}-{ours},vendor=x",
                f"galileo={trace}-{span},k=v",
            ]
        )
    ).encode()
    kind = draw(st.sampled_from(["as is", "one off", "bytes"]))
    if kind == "one off":
        spot = draw(st.integers(0, len(value) - 1))
        return value[:spot] + bytes([draw(st.integers(0, 255))]) + value[spot + 1 :]
    return value if kind == "as is" else draw(st.binary(max_size=120))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(
                [b"traceparent", b"tracestate", b"x-galileo-trace-id", b"x-galileo-parent-id", b"x-a"]
            ),
            _w3c_values(),
        ),
        max_size=6,
    )
)
def test_any_headers_parse_to_a_valid_context_or_none(headers: list[tuple[bytes, bytes]]) -> None:
    trace_id, parent_id, w3c = parse_incoming(headers)
    assert (trace_id is None) == (parent_id is None)
    for value in (trace_id, parent_id):
        assert value is None or (uuid.UUID(value).version == 4 and value == value.lower())
    if w3c is not None:
        assert len(w3c.trace_id) == 32 and w3c.trace_id == w3c.trace_id.lower() and set(w3c.trace_id) != {"0"}
        assert len(w3c.span_id) == 16 and w3c.span_id == w3c.span_id.lower() and set(w3c.span_id) != {"0"}
        assert 0 <= w3c.flags <= 255 and len(w3c.members) <= 32


_WITHOUT_OTEL = """
import sys
sys.modules["opentelemetry"] = None  # as if not installed: importing it raises ImportError
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from galileo.middleware import TracingMiddleware, get_request_logger

async def handler(request):
    logger = get_request_logger()
    logger.add_tool_span("q", "a")
    return JSONResponse({"trace": logger.trace_id, "headers": logger.get_tracing_headers()})

app = Starlette(routes=[Route("/", handler)])
app.add_middleware(TracingMiddleware)
with TestClient(app) as client:
    body = client.get("/", headers={"traceparent": sys.argv[1]}).json()
print(body["trace"], body["headers"]["traceparent"])
"""


def test_the_w3c_path_needs_no_opentelemetry(collector_env: CollectorProcess) -> None:
    otel_trace, incoming = otel_context()
    out = subprocess.run(
        [sys.executable, "-c", _WITHOUT_OTEL, incoming],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    trace, traceparent = out.stdout.split()
    assert trace == trace_uuid(otel_trace) and traceparent.startswith(f"00-{otel_trace}-")
