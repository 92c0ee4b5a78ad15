"""Bounded memory: with the backend down under sustained traffic, the queue stays within its bound.

A Starlette app behind TracingMiddleware serves two thousand requests (through TestClient, one after the
other, as fast as it can) whose handler logs a workflow span and a tool span, while the collector is stopped.
The queue bound is set low (GALILEO_QUEUE_SIZE=200) so it is reached early: what the user sees is that
``galileo.stats()["queued"]`` never exceeds the bound, that the overflow is counted as ``queue_full`` and
logged, that every request still answers 200, and that the number of threads does not grow with the number
of requests.
"""

from __future__ import annotations

import logging
import threading

import pytest
from collector_process import CollectorProcess
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

import galileo
from galileo.middleware import TracingMiddleware, _request, get_request_logger

BOUND = 200
REQUESTS = 2000


@pytest.mark.slow
def test_queue_stays_bounded_overflow_is_counted_and_threads_stay_constant(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    monkeypatch.setenv("GALILEO_QUEUE_SIZE", str(BOUND))
    _request.reset()
    caplog.set_level(logging.WARNING, logger="galileo")
    fresh_collector.stop()  # refused connections from the start

    async def handler(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input="q", name="wf")
        logger.add_tool_span(input="x", output="y", name="tool")
        logger.conclude(output="a")
        logger.flush()
        return JSONResponse({})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    queued: list[int] = []
    threads: list[int] = []
    with TestClient(app) as client:
        for i in range(REQUESTS):
            assert client.get("/").status_code == 200
            if i % 50 == 49:
                queued.append(galileo.stats()["queued"])
                threads.append(threading.active_count())
    stats = galileo.stats()
    _request.reset()

    assert max(queued) <= BOUND, queued
    assert max(queued) >= BOUND * 0.9, "the bound was reached: this test tested it"
    logged = REQUESTS * 3  # the request's trace, its workflow span and its tool span
    assert stats["dropped_by_reason"].get("queue_full", 0) >= logged - BOUND
    assert stats["queued"] + stats["sent"] + stats["dropped"] == logged, stats
    assert any("queue_full" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert len(set(threads[1:])) == 1, f"threads grew with the requests: {threads}"
