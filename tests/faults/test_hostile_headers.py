"""Hostile trace headers, end to end through TracingMiddleware: always a 200, and spans where they belong.

Hypothesis generates raw ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID`` headers (any case of the names,
sent zero, one or several times, with valid uuid4 values in any letter case, other UUID versions, huge
values, non-ASCII and control bytes) and sends them to a real Starlette app through the ASGI test client.
Whatever arrives, the request answers 200 and the handler sees no exception. When the headers form one valid
uuid4 context (the oracle below uses :mod:`uuid`, not the SDK's parser) the spans arrive in the collector
under that trace and parent; otherwise the request opens a new trace of its own, stored with its span.
``tests/middleware/test_propagation.py`` covers the parser alone; this goes through the middleware.
"""

from __future__ import annotations

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

from galileo.middleware import TracingMiddleware, _request, get_request_logger

pytestmark = pytest.mark.slow

_TRACE, _PARENT = "x-galileo-trace-id", "x-galileo-parent-id"


def _case_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [name, name.upper(), name.title(), "X-Galileo-" + name[10:].title().replace("Id", "ID")]
    )


def _uuid4(draw: st.DrawFn) -> str:
    value = str(uuid.UUID(int=draw(st.integers(0, 2**128 - 1)), version=4))
    return draw(st.sampled_from([value, value.upper(), value[:9] + value[9:].upper()]))


@st.composite
def _values(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["uuid4", "uuid4", "uuid4", "uuid1", "braced", "huge", "bytes", "near"]))
    if kind == "uuid4":
        return _uuid4(draw).encode()
    if kind == "uuid1":
        return str(uuid.uuid1()).encode()
    if kind == "braced":  # accepted by uuid.UUID, but not the canonical form
        return ("{" + _uuid4(draw) + "}").encode()
    if kind == "huge":
        return (_uuid4(draw) * draw(st.integers(2, 400))).encode()
    if kind == "near":  # a uuid4 with one character changed to something else
        value = bytearray(_uuid4(draw).encode())
        value[draw(st.integers(0, len(value) - 1))] = draw(st.sampled_from(b"gZ-_ \t\xc3\xff0"))
        return bytes(value)
    return draw(st.binary(max_size=80).filter(lambda b: not set(b) & set(b"\r\n\0")))


@st.composite
def _headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    headers: list[tuple[bytes, bytes]] = []
    if draw(st.integers(0, 3)) == 0:  # a well-formed context, in any letter case
        names = (draw(_case_variants(_TRACE)), draw(_case_variants(_PARENT)))
        return [(names[0].encode(), _uuid4(draw).encode()), (names[1].encode(), _uuid4(draw).encode())]
    for name in (_TRACE, _PARENT):
        for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
            headers.append((draw(_case_variants(name)).encode(), draw(_values())))
    if draw(st.booleans()):  # the same context sent twice
        headers += headers
    headers.append((b"x-other", b"1"))
    return draw(st.permutations(headers))


def _expected(headers: list[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """The (trace, parent) a request continues: one trace header and at most one parent, each a uuid4."""

    def canonical(value: bytes) -> str | None:
        try:
            text = value.decode("ascii")
            parsed = uuid.UUID(text)
        except (UnicodeDecodeError, ValueError):
            return None
        ok = parsed.version == 4 and parsed.variant == uuid.RFC_4122 and str(parsed) == text.lower()
        return str(parsed) if ok else None

    traces = [v for n, v in headers if n.lower() == _TRACE.encode()]
    parents = [v for n, v in headers if n.lower() == _PARENT.encode()]
    if len(traces) != 1 or len(parents) > 1:
        return None
    trace = canonical(traces[0])
    parent = canonical(parents[0]) if parents else trace
    return (trace, parent) if trace is not None and parent is not None else None


class _Seen:
    def __init__(self) -> None:
        self.errors: list[BaseException] = []
        self.ids: dict[str, Any] = {}


@pytest.fixture
def client(collector_env: CollectorProcess, fresh_sdk: None) -> Iterator[tuple[TestClient, _Seen]]:
    _request.reset()
    seen = _Seen()

    async def handler(request: Request) -> JSONResponse:
        try:
            logger = get_request_logger()
            span = logger.add_tool_span(input="x", output="y", name="hostile-headers")
            seen.ids = {"trace": logger.trace_id, "span": span.id, "headers": logger.get_tracing_headers()}
            logger.flush()
        except BaseException as exc:
            seen.errors.append(exc)
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/", handler)],
        middleware=[Middleware(TracingMiddleware, project="faults", log_stream="headers")],
    )
    with TestClient(app) as test_client:
        yield test_client, seen
    _request.reset()


@settings(
    max_examples=50,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(headers=_headers())
def test_any_trace_headers_answer_200_and_spans_land_where_they_belong(
    collector_env: CollectorProcess, client: tuple[TestClient, _Seen], headers: list[tuple[bytes, bytes]]
) -> None:
    test_client, seen = client
    seen.errors.clear()
    answer = test_client.get("/", headers=headers)
    assert answer.status_code == 200
    assert seen.errors == [], "the handler saw no exception"
    expected = _expected(headers)

    def stored() -> dict[str, Any] | None:
        posts = [r for r in collector_env.requests() if seen.ids["span"] in r["record_ids"]]
        return posts[0] if posts and posts[0]["status"] == 200 else None

    post = collector_env.wait_for(stored, timeout=10)
    if expected is not None:
        trace, parent = expected
        assert seen.ids["trace"] == trace
        assert (post["method"], post["path"].rsplit("/", 1)[1]) == ("POST", "spans")
        assert (post["body"]["trace_id"], post["body"]["parent_id"]) == (trace, parent)
        galileo_headers = {k: v for k, v in seen.ids["headers"].items() if k.startswith("X-Galileo-")}
        assert galileo_headers == {"X-Galileo-Trace-ID": trace, "X-Galileo-Parent-ID": parent}
    else:
        new_trace = seen.ids["trace"]
        sent = {v.decode("latin-1").lower() for _, v in headers}
        assert new_trace is not None and new_trace not in sent, "a new trace, not one from the headers"
        tree = collector_env.trace(new_trace)
        assert tree is not None and [s["id"] for s in tree["spans"]] == [seen.ids["span"]]
