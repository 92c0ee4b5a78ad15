"""Real services on uvicorn: two services sharing one trace, and many concurrent requests kept apart."""

from __future__ import annotations

import asyncio
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from sdk_helpers import serve, tree_lines
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo.middleware import TracingMiddleware, _request, get_request_logger

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from two_services import make_gateway_app, make_retriever_app


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None) -> None:
    _request.reset()


def test_retriever_spans_land_under_the_gateway_span(collector_env: CollectorProcess) -> None:
    collector_env.clear_requests()
    with serve(make_retriever_app()) as retriever_url, serve(make_gateway_app(retriever_url)) as gateway_url:
        answer = requests.get(f"{gateway_url}/ask", params={"q": "what moons did Galileo see"}, timeout=30)
    assert answer.status_code == 200
    trace_id = answer.json()["trace_id"]
    galileo.shutdown(timeout=15)
    tree = collector_env.trace(trace_id)
    assert tree is not None
    assert tree_lines(tree) == [
        "trace:GET /ask",
        "  workflow:gateway-workflow",
        "    workflow:retriever-service",
        "      retriever:vector-search",
        "    llm:compose-answer",
    ]
    gateway_wf = tree["spans"][0]
    retriever_wf = gateway_wf["spans"][0]
    assert (tree["is_complete"], tree["status_code"]) == (True, 200)
    assert (tree["project_name"], tree["log_stream_name"]) == ("demo", "gateway")
    assert (retriever_wf["project_name"], retriever_wf["log_stream_name"]) == ("demo", "retriever")
    assert retriever_wf["output"] == "2 docs" and gateway_wf["output"].startswith("Galileo: ")
    assert all(s["metrics"]["duration_ns"] is not None for s in (gateway_wf, retriever_wf))
    # the retriever sent no trace record and never completed the gateway's trace
    retriever_writes = [
        r for r in collector_env.requests() if r["body"].get("log_stream_id") == retriever_wf["log_stream_id"]
    ]
    assert retriever_writes and all("/spans" in r["path"] for r in retriever_writes)


def _concurrent_app() -> Starlette:
    async def async_endpoint(request: Request) -> JSONResponse:
        logger = get_request_logger()
        tag = request.query_params["tag"]
        logger.add_workflow_span(input=tag, name=f"wf-{tag}")

        async def child(i: int) -> None:
            await asyncio.sleep(0.001 * (i % 3))
            get_request_logger().add_tool_span(input=tag, output=f"{tag}-{i}", name=f"tool-{tag}")

        await asyncio.gather(*(child(i) for i in range(3)))
        await run_in_threadpool(
            lambda: get_request_logger().add_tool_span(input=tag, output=tag, name=f"tool-{tag}")
        )
        logger.conclude(output=tag)
        logger.flush()
        return JSONResponse({"tag": tag})

    def sync_endpoint(request: Request) -> JSONResponse:
        logger = get_request_logger()
        tag = request.query_params["tag"]
        logger.add_workflow_span(input=tag, name=f"wf-{tag}")
        for i in range(4):
            logger.add_tool_span(input=tag, output=f"{tag}-{i}", name=f"tool-{tag}")
        logger.conclude(output=tag)
        return JSONResponse({"tag": tag})

    return Starlette(
        routes=[Route("/async", async_endpoint), Route("/sync", sync_endpoint)],
        middleware=[Middleware(TracingMiddleware)],
    )


def test_concurrent_requests_never_mix_traces(collector_env: CollectorProcess) -> None:
    calls: list[dict[str, Any]] = []
    for i in range(120):
        trace_id, parent_id = str(uuid.uuid4()), str(uuid.uuid4())
        calls.append(
            {"tag": f"r{i}", "path": "/async" if i % 2 else "/sync", "trace": trace_id, "parent": parent_id}
        )

    with serve(_concurrent_app()) as url:

        def call(c: dict[str, Any]) -> int:
            headers = {"X-Galileo-Trace-ID": c["trace"], "X-Galileo-Parent-ID": c["parent"]}
            return requests.get(
                f"{url}{c['path']}", params={"tag": c["tag"]}, headers=headers, timeout=30
            ).status_code

        with ThreadPoolExecutor(max_workers=60) as pool:
            assert set(pool.map(call, calls)) == {200}
    galileo.shutdown(timeout=20)

    by_trace: dict[str, list[dict[str, Any]]] = {}
    for r in collector_env.requests():
        if r["path"].endswith("/spans") and r["method"] == "POST":
            by_trace.setdefault(r["body"]["trace_id"], []).append(r["body"])
    for c in calls:
        bodies = by_trace.get(c["trace"])
        assert bodies, f"nothing arrived for {c['tag']}"
        roots = [s for b in bodies if b["parent_id"] == c["parent"] for s in b["spans"]]
        assert [s["name"] for s in roots] == [f"wf-{c['tag']}"], "one workflow under the upstream parent"
        workflow_id = roots[0]["id"]
        children = [s for b in bodies if b["parent_id"] == workflow_id for s in b["spans"]]
        children += roots[0]["spans"]
        assert len(children) == 4 and {s["name"] for s in children} == {f"tool-{c['tag']}"}
        assert all(s["input"] == c["tag"] for s in children), "no span of another request"
