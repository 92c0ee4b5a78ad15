"""TracingMiddleware and get_request_logger through real Starlette and FastAPI apps, against the collector."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from collector_process import CollectorProcess
from fastapi import BackgroundTasks, FastAPI
from sdk_helpers import HttpSpy, tree_lines
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket

import galileo
from galileo import propagation
from galileo.middleware import TracingMiddleware, _request, get_request_logger

TRACE = str(uuid.uuid4())
PARENT = str(uuid.uuid4())


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GALILEO_PROJECT", "middleware")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "svc")
    monkeypatch.setattr(propagation, "_warn", propagation._RateLimitedWarning(0.0))
    _request.reset()
    yield
    _request.reset()


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    galileo.shutdown(timeout=10)
    tree = collector.trace(trace_id)
    assert tree is not None, f"trace {trace_id} was not stored"
    return tree


def writes_for(collector: CollectorProcess, trace_id: str) -> list[tuple[str, str]]:
    """(method, kind) of every write that concerned ``trace_id``."""
    out = []
    for r in collector.requests():
        body = r["body"]
        if not r["path"].startswith("/v2/"):
            continue
        ids = {t["id"] for t in body.get("traces", [])} | {body.get("trace_id")}
        if trace_id in ids:
            out.append((r["method"], r["path"].split("/")[4]))
    return out


def seed_app(seen: dict[str, Any], **middleware: Any) -> Starlette:
    """The seed's first example: add_workflow_span straight away."""

    async def ask(request: Request) -> JSONResponse:
        logger = get_request_logger()
        seen["trace_before"] = logger.trace_id
        logger.add_workflow_span(input=request.query_params.get("q", "q"), name="answer")
        seen["llm"] = logger.add_llm_span(input="q", output="the answer", model="m", name="llm")
        logger.conclude(output="the answer")
        logger.flush()
        seen["trace"] = logger.trace_id
        seen["logger"] = logger
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/items/{item_id}", ask)], middleware=[Middleware(TracingMiddleware, **middleware)]
    )


def test_no_headers_opens_a_trace_named_after_the_route(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client:
        assert client.get("/items/7?q=what+did+galileo+see").status_code == 200
    assert seen["trace_before"] is None
    tree = stored(collector_env, seen["trace"])
    assert (tree["name"], tree["input"], tree["output"]) == (
        "GET /items/{item_id}",
        "what did galileo see",
        "the answer",
    )
    assert (tree["is_complete"], tree["status_code"]) == (True, 200)
    assert tree_lines(tree) == ["trace:GET /items/{item_id}", "  workflow:answer", "    llm:llm"]
    assert (tree["project_name"], tree["log_stream_name"]) == ("middleware", "svc")


def test_a_request_that_logs_and_returns_goes_in_one_exchange(collector_env: CollectorProcess) -> None:
    """The seed's request is over before the sender looks: its trace goes once, complete, with its spans
    nested and concluded (no span POST, no PATCH)."""
    seen: dict[str, Any] = {}
    collector_env.clear_requests()
    with TestClient(seed_app(seen)) as client:
        assert client.get("/items/7").status_code == 200
    tree = stored(collector_env, seen["trace"])
    assert writes_for(collector_env, seen["trace"]) == [("POST", "traces")]
    (body,) = [r["body"] for r in collector_env.requests() if r["path"].endswith("/traces")]
    assert body["is_complete"] is True
    assert (tree["is_complete"], tree["status_code"], tree["output"]) == (True, 200, "the answer")
    assert tree_lines(tree) == ["trace:GET /items/{item_id}", "  workflow:answer", "    llm:llm"]


def test_seed_second_example_starts_its_own_trace_without_headers(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        if logger.trace_id:
            logger.add_workflow_span(input="q", name="continued")
        else:
            logger.start_trace(input="q", name="my-own-trace")
        seen["trace"] = logger.trace_id
        logger.add_tool_span(input="x", output="y", name="tool")
        logger.conclude(output="done")
        logger.flush()
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
        first = seen["trace"]
        client.get("/", headers={"X-Galileo-Trace-ID": TRACE, "X-Galileo-Parent-ID": PARENT})
    tree = stored(collector_env, first)
    assert (tree["name"], tree["output"], tree["is_complete"]) == ("my-own-trace", "done", True)
    assert seen["trace"] == TRACE
    upstream = collector_env.trace(TRACE)  # the spans of this service only, under a stand-in
    assert upstream is None or upstream["trace_record"] is False, (
        "the upstream trace is not this service's to create"
    )


@pytest.mark.parametrize(
    ("headers", "parent"),
    [
        ({"X-Galileo-Trace-ID": TRACE, "X-Galileo-Parent-ID": PARENT}, PARENT),
        ({"X-Galileo-Trace-ID": TRACE, "X-Galileo-Parent-ID": TRACE}, TRACE),
        ({"X-Galileo-Trace-ID": TRACE}, TRACE),
        ({"X-Galileo-Trace-ID": TRACE.upper(), "X-Galileo-Parent-ID": PARENT.upper()}, PARENT),
    ],
)
def test_valid_headers_continue_the_upstream_trace(
    collector_env: CollectorProcess, headers: dict[str, str], parent: str
) -> None:
    collector_env.clear_requests()
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client:
        assert client.get("/items/1", headers=headers).status_code == 200
    galileo.shutdown(timeout=10)
    assert (seen["trace_before"], seen["trace"]) == (TRACE, TRACE)
    sent = [r for r in collector_env.requests() if r["path"].startswith("/v2/")]
    assert {(r["method"], r["path"].split("/")[4]) for r in sent} <= {("POST", "spans"), ("PATCH", "spans")}
    assert sent[0]["body"]["trace_id"] == TRACE and sent[0]["body"]["parent_id"] == parent
    assert not [w for w in writes_for(collector_env, TRACE) if w[1] == "traces"], (
        "no trace record, no completion"
    )


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Galileo-Trace-ID", "not-a-uuid")],
        [("X-Galileo-Parent-ID", PARENT)],
        [("X-Galileo-Trace-ID", TRACE + "0" * 60)],
        [("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Trace-ID", str(uuid.uuid4()))],
        [("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Parent-ID", "é")],
    ],
)
def test_malformed_headers_never_fail_the_request(
    collector_env: CollectorProcess, headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, Any] = {}
    raw = [(name.lower().encode(), value.encode()) for name, value in headers]
    with TestClient(seed_app(seen)) as client, caplog.at_level(logging.WARNING, logger="galileo"):
        response = client.get("/items/1", headers=raw)  # type: ignore[arg-type]
    assert response.status_code == 200
    assert any("ignoring the trace context" in r.getMessage() for r in caplog.records)
    assert seen["trace"] not in (None, TRACE), "a new trace"
    assert stored(collector_env, seen["trace"])["name"] == "GET /items/{item_id}"


def test_same_logger_across_awaits_tasks_and_threadpool() -> None:
    ids: list[list[int]] = []

    async def handler(request: Request) -> JSONResponse:
        first = get_request_logger()

        async def in_task() -> int:
            await asyncio.sleep(0)
            return id(get_request_logger())

        gathered = await asyncio.gather(in_task(), in_task())
        threaded = await run_in_threadpool(lambda: id(get_request_logger()))
        ids.append([id(first), *gathered, threaded, id(get_request_logger())])
        first.add_tool_span(input="x", output="y")
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
        client.get("/")
    assert len(set(ids[0])) == 1 and len(set(ids[1])) == 1
    assert ids[0][0] != ids[1][0], "each request has its own logger"


def test_fastapi_sync_and_async_endpoints(collector_env: CollectorProcess) -> None:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)
    traces: dict[str, str] = {}

    @app.get("/sync/{name}")
    def sync_endpoint(name: str) -> dict[str, str]:
        logger = get_request_logger()
        logger.add_tool_span(input=name, output="sync", name="sync-tool")
        traces["sync"] = logger.trace_id or ""
        return {"ok": name}

    @app.get("/async/{name}")
    async def async_endpoint(name: str) -> dict[str, str]:
        logger = get_request_logger()
        logger.add_tool_span(input=name, output="async", name="async-tool")
        traces["async"] = logger.trace_id or ""
        return {"ok": name}

    with TestClient(app) as client:
        assert client.get("/sync/a").json() == {"ok": "a"}
        assert client.get("/async/b").json() == {"ok": "b"}
    sync_tree = stored(collector_env, traces["sync"])
    assert (sync_tree["name"], tree_lines(sync_tree)[1:]) == ("GET /sync/{name}", ["  tool:sync-tool"])
    assert stored(collector_env, traces["async"])["spans"][0]["output"] == "async"


def test_forgotten_flush_and_open_spans_are_finalised(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input="q", name="left-open")
        logger.add_tool_span(input="x", output="last output")
        seen["trace"] = logger.trace_id
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
    tree = stored(collector_env, seen["trace"])
    assert tree["is_complete"] and tree["status_code"] == 200
    assert tree["spans"][0]["output"] == "last output"
    assert tree["spans"][0]["metrics"]["duration_ns"] is not None


def test_user_conclude_does_not_close_the_request_trace(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input="q")
        logger.conclude(output="mine")
        logger.conclude(output="for the trace")  # nothing of the user's is open: the trace stays open
        logger.add_tool_span(input="after", output="still in the trace")
        seen["trace"] = logger.trace_id
        return JSONResponse({}, status_code=201)

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
    tree = stored(collector_env, seen["trace"])
    assert [s["type"] for s in tree["spans"]] == ["workflow", "tool"]
    assert (tree["output"], tree["status_code"]) == ("for the trace", 201)


def test_streaming_response_completes_after_the_stream(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> StreamingResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input="q", name="stream")
        seen["trace"] = logger.trace_id

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                logger.add_tool_span(input=str(i), output=f"chunk {i}", name=f"chunk-{i}")
                yield f"chunk {i}\n".encode()

        return StreamingResponse(chunks())

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        assert client.get("/").text == "chunk 0\nchunk 1\nchunk 2\n"
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree)[1:] == [
        "  workflow:stream",
        "    tool:chunk-0",
        "    tool:chunk-1",
        "    tool:chunk-2",
    ]
    assert tree["is_complete"] and tree["output"] == "chunk 2"


def test_background_tasks_land_in_the_trace(collector_env: CollectorProcess) -> None:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)
    seen: dict[str, Any] = {}

    def later() -> None:
        get_request_logger().add_tool_span(input="bg", output="background work", name="background")

    @app.get("/")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, str]:
        logger = get_request_logger()
        logger.add_tool_span(input="fg", output="foreground", name="foreground")
        seen["trace"] = logger.trace_id
        tasks.add_task(later)
        return {}

    with TestClient(app) as client:
        client.get("/")
    tree = stored(collector_env, seen["trace"])
    assert [s["name"] for s in tree["spans"]] == ["foreground", "background"]


def _raising_app(middleware: list[Middleware], seen: dict[str, Any]) -> Starlette:
    async def boom(request: Request) -> Response:
        logger = get_request_logger()
        logger.add_tool_span(input="x", output="before the error")
        seen["trace"] = logger.trace_id
        raise ValueError("handler failed")

    return Starlette(routes=[Route("/", boom)], middleware=middleware)


def test_handler_raising_marks_the_trace_500_and_propagates_as_without_middleware(
    collector_env: CollectorProcess,
) -> None:
    seen: dict[str, Any] = {}
    plain = _raising_app([], {})
    traced = _raising_app([Middleware(TracingMiddleware)], seen)
    for app in (plain, traced):
        with TestClient(app) as client, pytest.raises(ValueError, match="handler failed"):
            client.get("/")
        with TestClient(app, raise_server_exceptions=False) as client:
            assert client.get("/").status_code == 500
    tree = stored(collector_env, seen["trace"])
    assert (tree["status_code"], tree["is_complete"]) == (500, True)


class _HeaderMiddleware(TracingMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await super().dispatch(request, call_next)
        response.headers["X-Served-By"] = "subclass"
        return response


async def _dispatch_function(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers["X-Served-By"] = "function"
    return response


@pytest.mark.parametrize(
    ("middleware", "served_by"),
    [
        (Middleware(_HeaderMiddleware), "subclass"),
        (Middleware(TracingMiddleware, dispatch=_dispatch_function), "function"),
    ],
)
def test_overridden_dispatch_still_runs(
    collector_env: CollectorProcess, middleware: Middleware, served_by: str
) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_tool_span(input="x", output="y", name="in-handler")
        seen["trace"] = logger.trace_id
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[middleware])
    with TestClient(app) as client:
        response = client.get("/", headers={"X-Galileo-Trace-ID": TRACE, "X-Galileo-Parent-ID": PARENT})
    assert response.headers["X-Served-By"] == served_by
    if served_by == "subclass":  # super().dispatch() keeps the tracing
        assert seen["trace"] == TRACE
        galileo.shutdown(timeout=10)
        spans = [r for r in collector_env.requests() if r["body"].get("trace_id") == TRACE]
        assert spans and spans[0]["body"]["parent_id"] == PARENT


def test_subclass_dispatch_finalises_after_the_response(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> PlainTextResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input="q", name="left-open")
        seen["trace"] = logger.trace_id
        return PlainTextResponse("ok", background=BackgroundTask(lambda: seen.setdefault("own_bg", True)))

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(_HeaderMiddleware)])
    with TestClient(app) as client:
        assert client.get("/").text == "ok"
    assert seen["own_bg"] is True, "the response's own background task still runs"
    tree = stored(collector_env, seen["trace"])
    assert (tree["is_complete"], tree["status_code"], tree["spans"][0]["name"]) == (True, 200, "left-open")


def test_websocket_and_lifespan_pass_through() -> None:
    started: list[bool] = []

    async def ws(websocket: WebSocket) -> None:
        await websocket.accept()
        await websocket.send_text(f"state={propagation.current_request()}")
        await websocket.close()

    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started.append(True)
        yield

    import contextlib

    for middleware in (Middleware(TracingMiddleware), Middleware(_HeaderMiddleware)):
        app = Starlette(
            routes=[WebSocketRoute("/ws", ws)],
            middleware=[middleware],
            lifespan=contextlib.asynccontextmanager(lifespan),
        )
        with TestClient(app) as client, client.websocket_connect("/ws") as socket:
            assert socket.receive_text() == "state=None"
    assert started == [True, True]


def test_outside_a_request_a_noop_logger_and_one_warning(
    http_spy: HttpSpy, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="galileo"):
        first = get_request_logger()
        second = get_request_logger()
    assert first is second
    first.start_trace(input="q")
    first.add_tool_span(input="x", output="y")
    assert first.flush(timeout=1) == [] and http_spy.calls == []
    assert sum("outside a request" in r.getMessage() for r in caplog.records) == 1


def test_misconfiguration_logs_one_error_and_requests_still_succeed(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, http_spy: HttpSpy
) -> None:
    monkeypatch.setenv("GALILEO_MODE", "bogus")
    monkeypatch.setenv("GALILEO_API_KEY", "sk-do-not-print")
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client, caplog.at_level(logging.DEBUG, logger="galileo"):
        assert [client.get("/items/1").status_code for _ in range(3)] == [200, 200, 200]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and errors[0].levelno == logging.ERROR
    assert errors[0].exc_info is None, "one line: the traceback goes at DEBUG"
    assert errors[0].getMessage() == (
        "galileo: cannot trace requests: GALILEO_MODE: must be one of batch, distributed; got 'bogus'; "
        "using a no-op logger until the configuration is fixed"
    )
    tracebacks = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(tracebacks) == 1, "the traceback, once, at DEBUG"
    assert isinstance(tracebacks[0].exc_info[1], galileo.ConfigurationError)  # type: ignore[index]
    assert "sk-do-not-print" not in caplog.text
    assert seen["trace"] is None
    assert [c for c in http_spy.calls if "/v2/" in c.url] == []


def test_middleware_arguments_set_project_and_log_stream(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen, project="from-args", log_stream="args-stream")) as client:
        client.get("/items/1")
    tree = stored(collector_env, seen["trace"])
    assert (tree["project_name"], tree["log_stream_name"]) == ("from-args", "args-stream")


def test_headers_never_choose_the_project(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client:
        client.get("/items/1", headers={"X-Galileo-Project": "evil", "X-Galileo-Log-Stream": "evil"})
    assert stored(collector_env, seen["trace"])["project_name"] == "middleware"


def test_no_network_call_on_the_request_path(collector_env: CollectorProcess, http_spy: HttpSpy) -> None:
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client:
        for _ in range(5):
            client.get("/items/1")
    galileo.shutdown(timeout=10)
    sdk_calls = [c for c in http_spy.calls if c.url.startswith(collector_env.url)]
    assert sdk_calls and all(c.thread.startswith("galileo-sender-") for c in sdk_calls)


def test_tracing_headers_helper_names_the_current_parent() -> None:
    seen: dict[str, Any] = {}

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        span = logger.add_workflow_span(input="q")
        seen["headers"] = propagation.tracing_headers()
        trace_hex, span_hex = logger.trace_id.replace("-", ""), span.id.replace("-", "")
        seen["expected"] = {
            "X-Galileo-Trace-ID": logger.trace_id,
            "X-Galileo-Parent-ID": span.id,
            "traceparent": f"00-{trace_hex}-{span_hex[:16]}-01",
            "tracestate": f"galileo={trace_hex}-{span_hex}",
        }
        seen["injected"] = propagation.inject_headers({"accept": "*/*"})
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
    assert seen["headers"] == seen["expected"]
    assert seen["injected"] == {"accept": "*/*", **seen["expected"]}


def test_httpx_hooks_add_the_headers_to_outgoing_calls() -> None:
    import httpx

    seen: dict[str, Any] = {}

    def downstream(request: httpx.Request) -> httpx.Response:
        seen.setdefault("sent", []).append(
            {k: v for k, v in request.headers.items() if k.startswith("x-galileo")}
        )
        return httpx.Response(200)

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        span = logger.add_workflow_span(input="q")
        with httpx.Client(
            transport=httpx.MockTransport(downstream), event_hooks={"request": [propagation.httpx_hook]}
        ) as c:
            c.get("http://downstream/search")
        seen["expected"] = {"x-galileo-trace-id": logger.trace_id, "x-galileo-parent-id": span.id}
        async with httpx.AsyncClient(
            transport=httpx.MockTransport(downstream), event_hooks={"request": [propagation.async_httpx_hook]}
        ) as ac:
            await ac.get("http://downstream/search")
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
    assert seen["sent"] == [seen["expected"], seen["expected"]], "sync and async clients alike"


def test_requests_in_flight_are_counted_and_released(collector_env: CollectorProcess) -> None:
    from galileo._context import activity

    seen: dict[str, Any] = {}
    during: list[int] = []

    async def handler(request: Request) -> JSONResponse:
        during.append(activity.active)
        return JSONResponse({})

    before = activity.active
    for middleware in (Middleware(TracingMiddleware), Middleware(_HeaderMiddleware)):
        ok = Starlette(routes=[Route("/", handler)], middleware=[middleware])
        with TestClient(ok) as client:
            client.get("/")
        with TestClient(_raising_app([middleware], seen), raise_server_exceptions=False) as client:
            assert client.get("/").status_code == 500
    assert during == [before + 1, before + 1], "one request in flight while each ran"
    assert activity.active == before, "released on success and on error, on both paths"


def test_a_finished_request_leaves_no_garbage_for_the_collector(collector_env: CollectorProcess) -> None:
    """Once a request is over, its logger (and with it the request's state and ASGI scope) is freed by
    reference counting, at once, and its records once delivered: no reference cycle is left for Python's
    garbage collector, whose pauses would land in some later request."""
    seen: dict[str, Any] = {}
    with TestClient(seed_app(seen)) as client:
        gc.collect()
        gc.disable()
        try:
            for _ in range(3):
                assert client.get("/items/1").status_code == 200
                record = weakref.ref(seen.pop("llm"))
                logger = weakref.ref(seen.pop("logger"))
                assert logger() is None, "the request's logger outlived its request"
                # and the sender lets go of the trace's records once they are delivered
                collector_env.wait_for(lambda: record() is None)  # noqa: B023
        finally:
            gc.enable()
    assert stored(collector_env, seen["trace"])["is_complete"]
