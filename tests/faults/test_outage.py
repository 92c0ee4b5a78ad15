"""An outage with refused connections: requests stay fast, and what they logged arrives once it is over.

A Starlette app behind ``TracingMiddleware`` on uvicorn serves requests while the collector is stopped (every
connection refused) for about 3 s, then started again on the same port and database. Every request answers
200 in under 0.5 s during the outage, and every record logged during it arrives after the restart, within
the retry window (``GALILEO_RETRY_WINDOW``, 120 s by default; the test allows 30 s and prints the time).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import requests
from collector_process import CollectorProcess
from sdk_helpers import serve
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo.middleware import TracingMiddleware, _request, get_request_logger

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_sdk")]

OUTAGE_SECONDS = 3.0


@pytest.fixture
def backend(fresh_collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[CollectorProcess]:
    for name in [n for n in os.environ if n.startswith("GALILEO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    _request.reset()
    yield fresh_collector
    _request.reset()


def _app() -> Starlette:
    async def work(request: Request) -> JSONResponse:
        tag = request.query_params["tag"]
        logger = get_request_logger()
        logger.add_workflow_span(input=tag, name=f"wf-{tag}")
        logger.add_tool_span(input=tag, output=tag, name=f"tool-{tag}")
        logger.conclude(output=tag)
        logger.flush()
        return JSONResponse({"trace": logger.trace_id})

    return Starlette(
        routes=[Route("/work", work)],
        middleware=[Middleware(TracingMiddleware, project="faults", log_stream="outage")],
    )


def _complete(collector: CollectorProcess, trace_id: str, tag: str) -> bool:
    tree = collector.trace(trace_id)
    if tree is None or not tree["is_complete"] or len(tree["spans"]) != 1:
        return False
    workflow = tree["spans"][0]
    return [workflow["name"], *(s["name"] for s in workflow["spans"])] == [f"wf-{tag}", f"tool-{tag}"]


def test_records_logged_during_an_outage_arrive_after_it(backend: CollectorProcess) -> None:
    with serve(_app()) as url, requests.Session() as session:

        def call(tag: str) -> str:
            started = time.perf_counter()
            answer = session.get(f"{url}/work", params={"tag": tag}, timeout=10)
            elapsed = time.perf_counter() - started
            assert answer.status_code == 200 and elapsed < 0.5, (answer.status_code, elapsed)
            trace: str = answer.json()["trace"]
            return trace

        warm = call("before")  # logged in, project and log stream resolved
        backend.wait_for(lambda: _complete(backend, warm, "before"))
        backend.stop()
        during: dict[str, str] = {}
        outage_started = time.monotonic()
        while time.monotonic() - outage_started < OUTAGE_SECONDS:
            tag = f"during-{len(during)}"
            during[tag] = call(tag)
            time.sleep(0.1)
        backend.start()  # the same port and database
        restarted = time.monotonic()
        backend.wait_for(
            lambda: all(_complete(backend, t, tag) for tag, t in during.items()), timeout=30, interval=0.1
        )
        delivered_after = time.monotonic() - restarted
    print(
        f"\n{len(during)} traces logged during a {OUTAGE_SECONDS:g} s outage: "
        f"delivered {delivered_after:.2f} s after the restart; stats {galileo.stats()}"
    )
    assert len(during) >= 10
    stats = galileo.stats()
    assert stats["dropped"] == 0 and stats["retried"] > 0, stats
