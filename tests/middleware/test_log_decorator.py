"""@log inside requests served through TracingMiddleware: the request's trace, with and without upstream
headers, mixed with get_request_logger(), two services on uvicorn, and 200 concurrent requests kept apart."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI
from sdk_helpers import serve, tree_lines
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import galileo
from galileo import galileo_context, log
from galileo.middleware import TracingMiddleware, _request, get_request_logger
from galileo.propagation import tracing_headers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from two_services import make_gateway_app


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GALILEO_PROJECT", "log-middleware")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "svc")
    _request.reset()
    galileo_context.reset()
    yield
    _request.reset()
    galileo_context.reset()


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    galileo.shutdown(timeout=10)
    tree = collector.trace(trace_id)
    assert tree is not None, f"trace {trace_id} was not stored"
    return tree


def posted_spans(collector: CollectorProcess) -> list[tuple[dict[str, Any], str, str]]:
    """Every span POSTed, as (span, parent id, trace id), nested children included."""
    out: list[tuple[dict[str, Any], str, str]] = []

    def walk(span: dict[str, Any], parent: str, trace: str) -> None:
        out.append((span, parent, trace))
        for child in span.get("spans", []):
            walk(child, span["id"], trace)

    for r in collector.requests():
        if r["method"] == "POST" and r["path"].endswith("/spans"):
            for span in r["body"]["spans"]:
                walk(span, r["body"]["parent_id"], r["body"]["trace_id"])
    return out


@log(span_type="retriever")
def search(query: str) -> list[str]:
    return [f"{query}: Jupiter has four large moons"]


@log(span_type="llm")
async def compose(query: str, documents: list[str]) -> str:
    await asyncio.sleep(0)
    return f"answer to {query}"


@log
async def answer(query: str) -> str:
    documents = await run_in_threadpool(search, query)
    return await compose(query, documents)


def log_only_app() -> Starlette:
    async def ask(request: Request) -> JSONResponse:
        reply = await answer(request.query_params["q"])
        return JSONResponse({"answer": reply, "trace_id": get_request_logger().trace_id})

    return Starlette(routes=[Route("/ask", ask)], middleware=[Middleware(TracingMiddleware)])


def test_decorated_calls_open_and_join_the_request_trace(collector_env: CollectorProcess) -> None:
    with TestClient(log_only_app()) as client:
        reply = client.get("/ask", params={"q": "moons"}).json()
    assert reply["answer"] == "answer to moons"
    tree = stored(collector_env, reply["trace_id"])
    assert tree_lines(tree) == [
        "trace:GET /ask",
        "  workflow:answer",
        "    retriever:search",
        "    llm:compose",
    ]
    assert (tree["input"], tree["is_complete"], tree["status_code"]) == ('{"query": "moons"}', True, 200)
    assert (tree["project_name"], tree["log_stream_name"]) == ("log-middleware", "svc")
    assert tree["spans"][0]["output"] == "answer to moons"


def test_decorated_calls_continue_the_upstream_trace(collector_env: CollectorProcess) -> None:
    trace_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
    collector_env.clear_requests()
    with TestClient(log_only_app()) as client:
        headers = {"X-Galileo-Trace-ID": trace_id, "X-Galileo-Parent-ID": parent_id}
        reply = client.get("/ask", params={"q": "moons"}, headers=headers).json()
    assert reply["trace_id"] == trace_id
    galileo.shutdown(timeout=10)
    spans = posted_spans(collector_env)
    assert {trace for _, _, trace in spans} == {trace_id}
    by_name = {span["name"]: (span, parent) for span, parent, _ in spans}
    assert set(by_name) == {"answer", "search", "compose"}
    assert by_name["answer"][1] == parent_id
    assert by_name["search"][1] == by_name["compose"][1] == by_name["answer"][0]["id"]
    assert not any("/traces" in r["path"] for r in collector_env.requests()), (
        "the upstream's trace is not ours"
    )


def test_mixed_with_the_request_logger(collector_env: CollectorProcess) -> None:
    """Spans of get_request_logger() inside a decorated call land under it, and decorated calls inside the
    logger's own open level land under that level."""

    @log(span_type="agent")
    async def plan(goal: str) -> str:
        get_request_logger().add_tool_span(input=goal, output="looked up", name="manual-tool")
        await asyncio.gather(step(goal, 1), step(goal, 2))
        return "planned"

    @log(span_type="tool")
    async def step(goal: str, i: int) -> str:
        await asyncio.sleep(0.001 * i)
        return f"step {i}"

    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.get("/plan")
    async def plan_route(goal: str) -> dict[str, Any]:
        logger = get_request_logger()
        logger.add_workflow_span(input=goal, name="manual-workflow")
        await plan(goal)
        logger.conclude(output="done")
        await plan(goal)  # after the logger's level closed: under the trace again
        return {"trace_id": logger.trace_id}

    @app.get("/sync")
    def sync_route(goal: str) -> dict[str, Any]:  # FastAPI runs it in a threadpool
        asyncio.run(plan(goal))
        return {"trace_id": get_request_logger().trace_id}

    with TestClient(app) as client:
        first = client.get("/plan", params={"goal": "moons"}).json()
        second = client.get("/sync", params={"goal": "rings"}).json()
    assert tree_lines(stored(collector_env, first["trace_id"])) == [
        "trace:GET /plan",
        "  workflow:manual-workflow",
        "    agent:plan",
        "      tool:manual-tool",
        "      tool:step",
        "      tool:step",
        "  agent:plan",
        "    tool:manual-tool",
        "    tool:step",
        "    tool:step",
    ]
    tree = stored(collector_env, second["trace_id"])
    assert tree_lines(tree) == [
        "trace:GET /sync",
        "  agent:plan",
        "    tool:manual-tool",
        "    tool:step",
        "    tool:step",
    ]
    assert tree["input"] == '{"goal": "rings"}'


def test_galileo_context_hands_over_to_the_request_logger(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    async def route(request: Request) -> JSONResponse:
        seen["logger"] = galileo_context.get_logger_instance()
        seen["request_logger"] = get_request_logger()
        return JSONResponse({})

    app = Starlette(routes=[Route("/", route)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        client.get("/")
    assert seen["logger"] is seen["request_logger"]


def test_a_galileo_context_block_in_a_request_sends_elsewhere(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    @log(span_type="tool")
    def side_job(x: int) -> int:
        seen.setdefault("traces", []).append(galileo_context.get_logger_instance().trace_id)
        return x

    async def route(request: Request) -> JSONResponse:
        side_job(1)  # the request's trace
        with galileo_context(project="side", log_stream="jobs"):
            side_job(2)  # a trace of its own, in side / jobs
        return JSONResponse({"trace_id": get_request_logger().trace_id})

    app = Starlette(routes=[Route("/", route)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        request_trace = client.get("/").json()["trace_id"]
    in_request, in_block = seen["traces"]
    assert in_request == request_trace and in_block != request_trace
    assert tree_lines(stored(collector_env, request_trace)) == ["trace:GET /", "  tool:side_job"]
    block_tree = stored(collector_env, in_block)
    assert tree_lines(block_tree) == ["trace:side_job", "  tool:side_job"]
    assert (block_tree["project_name"], block_tree["log_stream_name"], block_tree["output"]) == (
        "side",
        "jobs",
        "2",
    )


# -- on uvicorn ---------------------------------------------------------------------------------------------
@log
async def retriever_service(q: str) -> str:
    found = await vector_search(q)
    return f"{len(found)} docs"


@log(span_type="retriever")
async def vector_search(q: str) -> list[str]:
    await asyncio.sleep(0)
    return [f"doc about {q}", "another doc"]


def log_only_retriever() -> Starlette:
    async def route(request: Request) -> JSONResponse:
        return JSONResponse({"documents": [await retriever_service(request.query_params.get("q", ""))]})

    return Starlette(
        routes=[Route("/search", route)],
        middleware=[Middleware(TracingMiddleware, project="demo", log_stream="log-retriever")],
    )


def test_two_services_where_the_downstream_only_uses_log(collector_env: CollectorProcess) -> None:
    with serve(log_only_retriever()) as retriever_url, serve(make_gateway_app(retriever_url)) as gateway_url:
        reply = requests.get(f"{gateway_url}/ask", params={"q": "moons"}, timeout=30)
    assert reply.status_code == 200
    tree = stored(collector_env, reply.json()["trace_id"])
    assert tree_lines(tree) == [
        "trace:GET /ask",
        "  workflow:gateway-workflow",
        "    workflow:retriever_service",
        "      retriever:vector_search",
        "    llm:compose-answer",
    ]
    downstream = tree["spans"][0]["spans"][0]
    assert (downstream["project_name"], downstream["log_stream_name"]) == ("demo", "log-retriever")
    assert (downstream["input"], downstream["output"]) == ('{"q": "moons"}', "2 docs")
    assert (tree["is_complete"], tree["status_code"]) == (True, 200)


@log(name="gateway-flow")
def gateway_flow(retriever_url: str, q: str) -> str:
    reply = requests.get(f"{retriever_url}/search", params={"q": q}, headers=tracing_headers(), timeout=10)
    return str(reply.json()["documents"][0])


def test_two_services_where_both_only_use_log(collector_env: CollectorProcess) -> None:
    """The upstream passes tracing_headers() from inside a decorated call: the downstream lands under it."""

    def make_gateway(retriever_url: str) -> FastAPI:
        app = FastAPI()
        app.add_middleware(TracingMiddleware, project="demo", log_stream="log-gateway")

        @app.get("/ask")
        def ask(q: str) -> dict[str, Any]:
            return {"answer": gateway_flow(retriever_url, q), "trace_id": get_request_logger().trace_id}

        return app

    with serve(log_only_retriever()) as retriever_url, serve(make_gateway(retriever_url)) as gateway_url:
        reply = requests.get(f"{gateway_url}/ask", params={"q": "moons"}, timeout=30).json()
    assert reply["answer"] == "2 docs"
    tree = stored(collector_env, reply["trace_id"])
    assert tree_lines(tree) == [
        "trace:GET /ask",
        "  workflow:gateway-flow",
        "    workflow:retriever_service",
        "      retriever:vector_search",
    ]
    assert tree["spans"][0]["spans"][0]["log_stream_name"] == "log-retriever"
    assert (tree["is_complete"], tree["output"]) == (True, "2 docs")


@log
async def handle(tag: str) -> str:
    parts = await asyncio.gather(*(part(tag, i) for i in range(3)))
    await run_in_threadpool(lookup, tag)
    return ",".join(parts)


@log(span_type="tool")
async def part(tag: str, i: int) -> str:
    await asyncio.sleep(0.001 * (i % 3))
    return f"{tag}-{i}"


@log(span_type="retriever")
def lookup(tag: str) -> list[str]:
    return [tag]


@log(name="sync-handle")
def handle_sync(tag: str) -> str:
    return asyncio.run(handle(tag))  # a loop of its own, in the threadpool thread: gathered tasks too


def concurrent_app() -> Starlette:
    async def async_route(request: Request) -> JSONResponse:
        return JSONResponse({"result": await handle(request.query_params["tag"])})

    def sync_route(request: Request) -> JSONResponse:
        return JSONResponse({"result": handle_sync(request.query_params["tag"])})

    return Starlette(
        routes=[Route("/async", async_route), Route("/sync", sync_route)],
        middleware=[Middleware(TracingMiddleware)],
    )


def test_200_concurrent_requests_never_mix_spans(collector_env: CollectorProcess) -> None:
    calls = [
        {
            "tag": f"r{i}",
            "path": "/async" if i % 2 else "/sync",
            "trace": str(uuid.uuid4()),
            "parent": str(uuid.uuid4()),
        }
        for i in range(200)
    ]
    collector_env.clear_requests()
    with serve(concurrent_app()) as url:

        def call(c: dict[str, str]) -> str:
            headers = {"X-Galileo-Trace-ID": c["trace"], "X-Galileo-Parent-ID": c["parent"]}
            reply = requests.get(f"{url}{c['path']}", params={"tag": c["tag"]}, headers=headers, timeout=60)
            assert reply.status_code == 200
            result: str = reply.json()["result"]
            return result

        with ThreadPoolExecutor(max_workers=50) as pool:
            results = list(pool.map(call, calls))
    assert results == [",".join(f"{c['tag']}-{i}" for i in range(3)) for c in calls]
    galileo.shutdown(timeout=30)

    by_trace: dict[str, list[tuple[dict[str, Any], str]]] = {}
    for span, parent, trace in posted_spans(collector_env):
        by_trace.setdefault(trace, []).append((span, parent))
    assert set(by_trace) == {c["trace"] for c in calls}
    for c in calls:
        spans = by_trace[c["trace"]]
        tag = c["tag"]
        assert all(tag in (span["input"] or "") for span, _ in spans), "a span of another request"
        ids = {span["name"]: span["id"] for span, _ in spans if span["name"] != "part"}
        parents = sorted((span["name"], parent) for span, parent in spans)
        handle_parent = ids["sync-handle"] if c["path"] == "/sync" else c["parent"]
        expected = [("handle", handle_parent), ("lookup", ids["handle"])]
        expected += [("part", ids["handle"])] * 3
        if c["path"] == "/sync":
            expected.append(("sync-handle", c["parent"]))
        assert parents == sorted(expected), tag
