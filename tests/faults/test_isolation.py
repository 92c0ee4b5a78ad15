"""Isolation under load: 300 concurrent requests with distinct trace contexts never mix their spans.

A FastAPI app behind ``TracingMiddleware`` on uvicorn has sync (``def``, run in the threadpool) and async
endpoints; the async ones log from ``asyncio.gather``-ed tasks and from ``run_in_threadpool``. 50 client
threads each open an upstream trace with a workflow span (a distributed-mode ``GalileoLogger``, as a calling
service would), send the request with that context, and conclude. In the collector every trace must then be
exactly: the upstream workflow, under it the request's one workflow, under that the request's own children,
each naming and carrying only its own request's tag; no orphan, no span of another request, none missing.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI, Request
from sdk_helpers import serve, tree_lines
from starlette.concurrency import run_in_threadpool

import galileo
from galileo import GalileoLogger
from galileo.middleware import TracingMiddleware, _request, get_request_logger

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_sdk")]

REQUESTS = 300
CLIENT_THREADS = 50


def _app() -> FastAPI:
    app = FastAPI()
    app.add_middleware(TracingMiddleware, project="faults", log_stream="isolation")

    @app.get("/async/{tag}")
    async def async_endpoint(tag: str) -> dict[str, Any]:
        logger = get_request_logger()
        logger.add_workflow_span(input=tag, name=f"wf-{tag}")

        async def child(i: int) -> None:
            await asyncio.sleep(0.001 * (i % 3))  # interleave with other requests' tasks
            get_request_logger().add_tool_span(input=tag, output=f"{tag}/{i}", name=f"gather-{tag}")

        await asyncio.gather(*(child(i) for i in range(3)))

        def in_pool() -> None:
            get_request_logger().add_retriever_span(input=tag, output=[tag], name=f"pool-{tag}")

        await run_in_threadpool(in_pool)
        logger.conclude(output=tag)
        logger.flush()
        return {"trace": logger.trace_id, "headers": logger.get_tracing_headers()}

    @app.get("/sync/{tag}")
    def sync_endpoint(tag: str, request: Request) -> dict[str, Any]:
        logger = get_request_logger()
        logger.add_workflow_span(input=tag, name=f"wf-{tag}")
        for i in range(3):
            time.sleep(0.0005 * (i % 2))  # let other threads run in between
            logger.add_tool_span(input=tag, output=f"{tag}/{i}", name=f"sync-{tag}")
        logger.add_llm_span(input=tag, output=tag, model="m", name=f"llm-{tag}")
        logger.conclude(output=tag)
        return {"trace": logger.trace_id, "headers": logger.get_tracing_headers()}

    return app


def test_concurrent_requests_with_distinct_contexts_never_mix(collector_env: CollectorProcess) -> None:
    _request.reset()
    local = threading.local()
    calls: list[dict[str, Any]] = []

    with serve(_app()) as url:

        def call(i: int) -> dict[str, Any]:
            session = getattr(local, "session", None)
            if session is None:
                session = local.session = requests.Session()
            tag = f"r{i:03d}"
            upstream = GalileoLogger(project="faults", log_stream="upstream", mode="distributed")
            trace = upstream.start_trace(input=tag, name=f"upstream-{tag}")
            upstream.add_workflow_span(input=tag, name=f"up-{tag}")
            headers = upstream.get_tracing_headers()
            path = "async" if i % 2 else "sync"
            answer = session.get(f"{url}/{path}/{tag}", headers=headers, timeout=30)
            upstream.conclude(output=tag, conclude_all=True)
            upstream.flush(timeout=0)
            body = answer.json() if answer.status_code == 200 else {}
            return {
                "tag": tag,
                "path": path,
                "trace": trace.id,
                "headers": headers,
                "status": answer.status_code,
                "body": body,
            }

        with ThreadPoolExecutor(max_workers=CLIENT_THREADS) as pool:
            calls = list(pool.map(call, range(REQUESTS)))
    assert [c["status"] for c in calls] == [200] * REQUESTS
    assert galileo.shutdown(timeout=60) == 0, "everything delivered"

    seen_span_ids: set[str] = set()
    for c in calls:
        tag, parent = c["tag"], c["headers"]["X-Galileo-Parent-ID"]
        assert c["body"]["trace"] == c["trace"], "the handler's logger continued its own request's trace"
        assert c["body"]["headers"] == c["headers"], "after conclude: the upstream context, nothing else"
        tree = collector_env.trace(c["trace"])
        assert tree is not None, tag
        assert tree["orphans"] == [], f"{tag}: spans whose parent is not in their trace"
        assert tree["is_complete"], tag
        children = ["tool", "tool", "tool", "retriever"] if c["path"] == "async" else ["tool"] * 3 + ["llm"]
        child_name = {
            "async": {"tool": f"gather-{tag}", "retriever": f"pool-{tag}"},
            "sync": {"tool": f"sync-{tag}", "llm": f"llm-{tag}"},
        }[c["path"]]
        assert sorted(tree_lines(tree)) == sorted(
            [f"trace:upstream-{tag}", f"  workflow:up-{tag}", f"    workflow:wf-{tag}"]
            + [f"      {kind}:{child_name[kind]}" for kind in children]
        ), tag
        (upstream_wf,) = tree["spans"]
        assert upstream_wf["id"] == parent
        (workflow,) = upstream_wf["spans"]
        assert (workflow["input"], workflow["output"]) == (tag, tag)
        inputs = [s["input"] if s["type"] != "llm" else s["input"][0]["content"] for s in workflow["spans"]]
        assert inputs == [tag] * 4, f"{tag}: a span of another request: {inputs}"
        outputs = sorted(str(s["output"]) for s in workflow["spans"] if s["type"] == "tool")
        assert outputs == [f"{tag}/{i}" for i in range(3)], outputs
        ids = {upstream_wf["id"], workflow["id"], *(s["id"] for s in workflow["spans"])}
        assert not ids & seen_span_ids, f"{tag}: a span stored under two traces"
        seen_span_ids |= ids
    assert len(seen_span_ids) == REQUESTS * 6, "none missing"
