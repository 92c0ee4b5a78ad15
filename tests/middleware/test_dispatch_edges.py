"""Edge cases of the dispatch path and of tracing_headers() found in review (run against the patched copy)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from collector_process import CollectorProcess
from fastapi import BackgroundTasks, FastAPI
from starlette.requests import Request
from starlette.responses import Response
from starlette.testclient import TestClient

import galileo
from galileo import propagation
from galileo.middleware import TracingMiddleware, _request, get_request_logger


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GALILEO_PROJECT", "review")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "edges")
    _request.reset()
    yield
    _request.reset()


class _StatusChanging(TracingMiddleware):
    async def dispatch(self, request: Request, call_next: Any) -> Response:
        response = await super().dispatch(request, call_next)
        response.status_code = 203
        return response


async def _passthrough(request: Request, call_next: Any) -> Response:
    response = await call_next(request)
    response.headers["X-Served-By"] = "function"
    return response


def _app(**middleware: Any) -> tuple[FastAPI, dict[str, Any]]:
    app = FastAPI()
    app.add_middleware(**middleware)  # type: ignore[arg-type]
    seen: dict[str, Any] = {}

    def later() -> None:
        logger = get_request_logger()
        logger.add_tool_span(input="bg", output="background work", name="background")
        seen["bg_trace"] = logger.trace_id

    @app.get("/")
    async def endpoint(tasks: BackgroundTasks) -> dict[str, str]:
        logger = get_request_logger()
        logger.add_tool_span(input="fg", output="foreground", name="foreground")
        seen["trace"] = logger.trace_id
        tasks.add_task(later)
        return {}

    return app, seen


@pytest.mark.parametrize(
    ("middleware", "status"),
    [
        ({"middleware_class": _StatusChanging}, 203),
        ({"middleware_class": TracingMiddleware, "dispatch": _passthrough}, 200),
    ],
)
def test_dispatch_path_traces_background_tasks_and_the_status_sent(
    collector_env: CollectorProcess, middleware: dict[str, Any], status: int
) -> None:
    app, seen = _app(**middleware)
    with TestClient(app) as client:
        response = client.get("/")
    assert response.status_code == status
    galileo.shutdown(timeout=10)
    assert seen["bg_trace"] == seen["trace"], "the background task's span is in the request's trace"
    tree = collector_env.trace(seen["trace"])
    assert tree is not None
    assert [s["name"] for s in tree["spans"]] == ["foreground", "background"]
    assert (tree["is_complete"], tree["status_code"]) == (True, status)


def test_dispatch_function_runs_inside_the_trace_context() -> None:
    app, seen = _app(middleware_class=TracingMiddleware, dispatch=_passthrough)
    trace = str(uuid.uuid4())
    with TestClient(app) as client:
        response = client.get("/", headers={"X-Galileo-Trace-ID": trace})
    assert response.headers["X-Served-By"] == "function"
    assert seen["trace"] == trace


def test_tracing_headers_of_a_noop_logger_are_quiet(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_MODE", "bogus")
    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.get("/")
    async def endpoint() -> dict[str, Any]:
        return {"headers": [propagation.tracing_headers() for _ in range(3)]}

    with TestClient(app) as client, caplog.at_level(logging.WARNING, logger="galileo"):
        assert client.get("/").json() == {"headers": [{}, {}, {}]}
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_span_after_the_request_ended_opens_no_new_trace(collector_env: CollectorProcess) -> None:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)
    kept: dict[str, Any] = {}

    @app.get("/")
    async def endpoint() -> dict[str, str]:
        logger = get_request_logger()
        logger.add_tool_span(input="in", output="in the request", name="in-request")
        kept["logger"], kept["trace"] = logger, logger.trace_id
        return {}

    with TestClient(app) as client:
        client.get("/")
    late = kept["logger"]
    late.add_tool_span(input="late", output="after the response")  # e.g. a task that outlived the request
    assert late.trace_id is None, "no second trace"
    assert galileo.stats()["dropped_by_reason"] == {"no_trace": 1}, "dropped, and counted"
    galileo.shutdown(timeout=10)
    tree = collector_env.trace(kept["trace"])
    assert tree is not None and [s["name"] for s in tree["spans"]] == ["in-request"]
