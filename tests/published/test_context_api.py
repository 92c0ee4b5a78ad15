"""``galileo_context``'s published surface (init, flush, flush_all, get_current_*, reset_trace_context, log,
get_logger_instance), used as the published SDK's README shows it, run on ours against the collector."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from collector_process import CollectorProcess
from sdk_helpers import tree_lines
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from galileo import galileo_context, log
from galileo.middleware import TracingMiddleware, get_request_logger


@pytest.fixture(autouse=True)
def project(
    collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    monkeypatch.setenv("GALILEO_PROJECT", "from-the-environment")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "env-stream")
    galileo_context.reset()
    yield f"published-context-{uuid.uuid4().hex[:8]}"
    galileo_context.reset()


def stored(collector: CollectorProcess, project: str, count: int) -> list[dict[str, Any]]:
    """The project's stored trees, oldest first, once ``count`` are there."""

    def listed() -> list[dict[str, Any]]:
        mine = [t for t in collector.traces(limit=500) if t.get("project_name") == project]
        return mine if len(mine) >= count else []

    found = collector.wait_for(listed)
    trees = [collector.trace(t["id"]) for t in reversed(found)]
    return [tree for tree in trees if tree is not None]


@log(span_type="llm")
def call_openai(prompt: str = "Say this is a test", model: str = "gpt-4o") -> str:
    return "This is a test"


@log
def make_nested_call() -> str:
    call_openai()
    return call_openai()


def test_the_readme_flow_init_decorated_calls_flush(collector_env: CollectorProcess, project: str) -> None:
    galileo_context.init(project=project, log_stream="your-log-stream-name")
    assert galileo_context.get_current_project() == project
    assert galileo_context.get_current_log_stream() == "your-log-stream-name"
    assert galileo_context.get_current_mode() == "batch"

    call_openai()  # a single span trace
    make_nested_call()  # a workflow span with two llm spans
    assert galileo_context.flush() == 0

    single, nested = stored(collector_env, project, 2)
    assert tree_lines(single) == ["trace:call_openai", "  llm:call_openai"]
    assert tree_lines(nested) == [
        "trace:make_nested_call",
        "  workflow:make_nested_call",
        "    llm:call_openai",
        "    llm:call_openai",
    ]
    assert {t["log_stream_name"] for t in (single, nested)} == {"your-log-stream-name"}
    assert nested["spans"][0]["spans"][0]["model"] == "gpt-4o"


def test_a_block_names_where_its_calls_go_and_init_holds_outside_it(
    collector_env: CollectorProcess, project: str
) -> None:
    galileo_context.init(project=project, log_stream="outer")
    with galileo_context(project=project, log_stream="test2"):
        assert (galileo_context.get_current_project(), galileo_context.get_current_log_stream()) == (
            project,
            "test2",
        )
        make_nested_call()
    assert galileo_context.get_current_log_stream() == "outer"
    call_openai()
    galileo_context.flush_all()
    streams = [t["log_stream_name"] for t in stored(collector_env, project, 2)]
    assert streams == ["test2", "outer"]


def test_without_init_the_environment_decides_and_nothing_is_named(collector_env: CollectorProcess) -> None:
    assert (galileo_context.get_current_project(), galileo_context.get_current_log_stream()) == (None, None)
    assert galileo_context.get_current_mode() == "batch"
    assert galileo_context.get_logger_instance().config.project == "from-the-environment"


def test_current_trace_and_span_stack_inside_decorated_calls(
    collector_env: CollectorProcess, project: str
) -> None:
    galileo_context.init(project=project, log_stream="stack")
    seen: dict[str, Any] = {}

    @log(span_type="tool")
    def look() -> str:
        trace = galileo_context.get_current_trace()
        seen["trace_id"] = trace.id if trace is not None else None
        seen["stack"] = [span.name for span in galileo_context.get_current_span_stack()]
        return "looked"

    @log(span_type="agent")
    def inner() -> str:
        return look()

    @log
    def outer() -> str:
        return inner()

    assert galileo_context.get_current_trace() is None
    assert galileo_context.get_current_span_stack() == []
    outer()
    assert galileo_context.get_current_trace() is None, "the trace concluded with the outermost call"
    galileo_context.flush()
    (tree,) = stored(collector_env, project, 1)
    assert seen == {"trace_id": tree["id"], "stack": ["outer", "inner"]}


def test_reset_trace_context_lets_the_next_call_start_a_new_trace(
    collector_env: CollectorProcess, project: str
) -> None:
    galileo_context.init(project=project, log_stream="reset")
    logger = galileo_context.get_logger_instance()
    logger.start_trace(input="manual", name="manual")
    call_openai("joins the manual trace")
    assert galileo_context.get_current_trace() is not None
    galileo_context.reset_trace_context()
    assert galileo_context.get_current_trace() is None
    call_openai("a trace of its own")
    galileo_context.flush()
    manual, own = stored(collector_env, project, 2)
    assert tree_lines(manual) == ["trace:manual", "  llm:call_openai"]
    assert tree_lines(own) == ["trace:call_openai", "  llm:call_openai"]


def test_flush_names_one_logger_and_get_logger_instance_keys_by_project_stream_mode(
    collector_env: CollectorProcess, project: str
) -> None:
    logger = galileo_context.get_logger_instance(project=project, log_stream="manual")
    assert galileo_context.get_logger_instance(project=project, log_stream="manual") is logger
    assert (
        galileo_context.get_logger_instance(project=project, log_stream="manual", mode="distributed")
        is not logger
    )
    logger.start_trace(input="q", name="by hand")
    logger.add_llm_span(input="q", output="a", model="m")
    assert galileo_context.flush(project=project, log_stream="manual") == 0
    (tree,) = stored(collector_env, project, 1)
    assert tree_lines(tree) == ["trace:by hand", "  llm:"]


def test_galileo_context_log_is_log(collector_env: CollectorProcess, project: str) -> None:
    @galileo_context.log(span_type="tool", name="via the context")
    def tool_call(input: str = "tool call input") -> str:
        return "tool call output"

    with galileo_context(project=project, log_stream="log"):
        tool_call(input="question")
    galileo_context.flush()
    (tree,) = stored(collector_env, project, 1)
    assert tree_lines(tree) == ["trace:via the context", "  tool:via the context"]


def test_init_in_a_task_is_that_task_s_and_the_tasks_it_starts(
    collector_env: CollectorProcess, project: str
) -> None:
    async def worker(stream: str) -> None:
        galileo_context.init(project=project, log_stream=stream)
        await asyncio.gather(asyncio.to_thread(call_openai), asyncio.sleep(0))

    async def main() -> None:
        await asyncio.gather(worker("a"), worker("b"))

    asyncio.run(main())
    assert galileo_context.get_current_project() is None, "the tasks' init stayed in the tasks"
    galileo_context.flush()
    assert sorted(t["log_stream_name"] for t in stored(collector_env, project, 2)) == ["a", "b"]


def test_inside_a_request_get_logger_instance_is_the_request_logger(collector_env: CollectorProcess) -> None:
    async def handler(request: Request) -> JSONResponse:
        same = galileo_context.get_logger_instance() is get_request_logger()
        return JSONResponse({"same": same})

    app = Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])
    with TestClient(app) as client:
        assert client.get("/").json() == {"same": True}


PUBLISHED = {  # the published 2.7.0 parameter names, in order
    "init": ["project", "log_stream", "experiment_id", "local_metrics", "mode"],
    "flush": ["project", "log_stream", "experiment_id", "mode", "on_error"],
    "get_logger_instance": ["project", "log_stream", "experiment_id", "mode", "ingestion_hook"],
    "flush_all": [],
    "get_current_project": [],
    "get_current_log_stream": [],
    "get_current_mode": [],
    "get_current_trace": [],
    "get_current_span_stack": [],
    "reset_trace_context": [],
}


@pytest.mark.parametrize("method", sorted(PUBLISHED))
def test_the_published_methods_take_the_published_parameters_first(method: str) -> None:
    params = list(inspect.signature(getattr(galileo_context, method)).parameters.values())
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    assert positional == PUBLISHED[method], "ours may add keyword-only parameters after them"


def test_log_takes_the_published_keywords() -> None:
    params = inspect.signature(galileo_context.log).parameters
    assert {"name", "span_type", "params", "dataset_record"} <= set(params)
