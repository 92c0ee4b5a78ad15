"""Sessions as the published SDK's docs use them, run on ours against the collector.

User code as the docs show it: ``logger.start_session(...)`` then traces (batch and distributed mode),
reuse by ``external_id``, ``set_session`` / ``clear_session``, ``galileo.start_session`` and
``galileo_context``'s session functions, ``await logger.async_start_session(...)``, and a FastAPI handler
that starts a session inside the request (where ours returns None and does no I/O on the handler's thread).
What is asserted is what the collector stored: session rows, each trace's ``session_id``, and
``GET /api/traces?session_id=``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI
from sdk_helpers import HttpSpy
from starlette.testclient import TestClient

import galileo
from galileo import GalileoLogger, galileo_context, log
from galileo.middleware import TracingMiddleware, _request, get_request_logger


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GALILEO_PROJECT", "sessions")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "chat")
    galileo_context.reset()
    _request.reset()
    yield
    galileo_context.reset()
    _request.reset()
    requests.delete(f"{collector_env.url}/api/faults", timeout=5).raise_for_status()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    galileo.shutdown(timeout=10)
    tree = collector.trace(trace_id)
    assert tree is not None, f"trace {trace_id} was not stored"
    return tree


def _session_traces(collector: CollectorProcess, session_id: str) -> list[str]:
    """Names of the stored traces of ``session_id``, oldest first (``GET /api/traces?session_id=``)."""
    return [t["name"] for t in reversed(collector.traces(session_id=session_id))]


def _sessions(
    collector: CollectorProcess, external_id: str, log_stream: str = "chat"
) -> list[dict[str, Any]]:
    """The stored sessions of ``external_id`` in project "sessions", log stream ``log_stream``."""
    headers = collector.auth_headers()
    projects = requests.get(
        f"{collector.url}/projects", params={"project_name": "sessions"}, headers=headers, timeout=5
    ).json()
    project_id = projects[0]["id"]
    streams = requests.get(
        f"{collector.url}/projects/{project_id}/log_streams", headers=headers, timeout=5
    ).json()
    stream_id = next(s["id"] for s in streams if s["name"] == log_stream)
    body = {
        "log_stream_id": stream_id,
        "filters": [{"type": "text", "column_id": "external_id", "operator": "eq", "value": external_id}],
    }
    answer = requests.post(
        f"{collector.url}/v2/projects/{project_id}/sessions/search", json=body, headers=headers, timeout=5
    )
    answer.raise_for_status()
    records: list[dict[str, Any]] = answer.json()["records"]
    return records


def _is_uuid4(value: object) -> bool:
    return isinstance(value, str) and uuid.UUID(value).version == 4


# -- GalileoLogger -------------------------------------------------------------------------------------------
def test_batch_logger_start_session_then_traces(collector_env: CollectorProcess) -> None:
    """The docs' first example: start a session, log two traces, flush: both belong to it."""
    conversation = _unique("conv")
    logger = GalileoLogger(project="sessions", log_stream="chat")
    session_id = logger.start_session(name="support chat", external_id=conversation, metadata={"user": "u1"})
    assert _is_uuid4(session_id) and logger.session_id == session_id

    for question in ("first question", "second question"):
        logger.start_trace(input=question, name=question)
        logger.add_llm_span(input=question, output="answer", model="gpt-4o")
        logger.conclude(output="answer")
    logger.flush()

    assert session_id is not None
    assert _session_traces(collector_env, session_id) == ["first question", "second question"]
    (session,) = _sessions(collector_env, conversation)
    assert (session["id"], session["name"], session["user_metadata"]) == (
        session_id,
        "support chat",
        {"user": "u1"},
    )


def test_distributed_logger_traces_carry_the_session(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="sessions", log_stream="chat", mode="distributed")
    session_id = logger.start_session(name="distributed chat")
    assert _is_uuid4(session_id)
    traces = []
    for turn in ("turn 1", "turn 2"):
        traces.append(logger.start_trace(input=turn, name=turn).id)
        logger.add_tool_span(input="x", output="y", name="tool")
        logger.conclude(output="done")
    logger.flush()
    for trace_id in traces:
        assert _stored(collector_env, trace_id)["session_id"] == session_id
    assert session_id is not None
    assert _session_traces(collector_env, session_id) == ["turn 1", "turn 2"]


def test_external_id_reuses_the_session_of_the_same_log_stream(collector_env: CollectorProcess) -> None:
    conversation = _unique("conv")
    first = GalileoLogger(project="sessions", log_stream="chat").start_session(external_id=conversation)
    again = GalileoLogger(project="sessions", log_stream="chat").start_session(external_id=conversation)
    elsewhere = GalileoLogger(project="sessions", log_stream="other").start_session(external_id=conversation)
    assert _is_uuid4(first) and again == first
    assert _is_uuid4(elsewhere) and elsewhere != first  # another log stream: another session
    assert [s["id"] for s in _sessions(collector_env, conversation)] == [first]
    assert [s["id"] for s in _sessions(collector_env, conversation, "other")] == [elsewhere]


def test_set_session_and_clear_session(collector_env: CollectorProcess) -> None:
    starter = GalileoLogger(project="sessions", log_stream="chat")
    session_id = starter.start_session(name="resumed later")
    assert session_id is not None

    logger = GalileoLogger(project="sessions", log_stream="chat", mode="distributed")
    assert logger.session_id is None
    logger.set_session(session_id)
    assert logger.session_id == session_id
    inside = logger.start_trace(input="in the session", name="in").id
    logger.conclude(output="ok")
    logger.clear_session()
    assert logger.session_id is None
    outside = logger.start_trace(input="after clear_session", name="out").id
    logger.conclude(output="ok")
    logger.flush()

    assert _stored(collector_env, inside)["session_id"] == session_id
    assert _stored(collector_env, outside)["session_id"] is None
    assert _session_traces(collector_env, session_id) == ["in"]


def test_set_session_with_a_malformed_id_is_ignored_with_a_warning(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    logger = GalileoLogger(project="sessions", log_stream="chat")
    with caplog.at_level(logging.WARNING, logger="galileo"):
        logger.set_session("not-a-session")
    assert logger.session_id is None
    assert "not a UUID" in caplog.text
    trace_id = logger.start_trace(input="q", name="still logged").id
    logger.conclude(output="a")
    logger.flush()
    assert _stored(collector_env, trace_id)["session_id"] is None  # the trace was not lost to a 422


def test_async_start_session_returns_the_id_without_blocking_the_loop(
    collector_env: CollectorProcess,
) -> None:
    async def main() -> tuple[str | None, str]:
        logger = GalileoLogger(project="sessions", log_stream="chat", mode="distributed")
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        task = asyncio.create_task(ticker())
        session_id = await logger.async_start_session(name="async chat")
        task.cancel()
        assert ticks > 0  # the loop kept running while the session was created
        trace_id = logger.start_trace(input="q", name="async turn").id
        logger.conclude(output="a")
        await logger.async_flush()
        return session_id, trace_id

    session_id, trace_id = asyncio.run(main())
    assert _is_uuid4(session_id)
    assert _stored(collector_env, trace_id)["session_id"] == session_id


def test_start_session_on_an_event_loop_does_not_wait_and_the_traces_carry_it(
    collector_env: CollectorProcess, http_spy: HttpSpy
) -> None:
    conversation = _unique("loop")

    async def main() -> tuple[str | None, str]:
        logger = GalileoLogger(project="sessions", log_stream="chat", mode="distributed")
        returned = logger.start_session(name="on the loop", external_id=conversation)
        trace_id = logger.start_trace(input="q", name="loop turn").id
        logger.conclude(output="a")
        return returned, trace_id

    returned, trace_id = asyncio.run(main())
    assert returned is None  # a blocking wait would stall the loop: await async_start_session for the id
    stored = _stored(collector_env, trace_id)
    (session,) = _sessions(collector_env, conversation)
    assert stored["session_id"] == session["id"]
    assert all(c.thread.startswith("galileo-sender-") for c in http_spy.calls)


def test_traces_of_different_sessions_never_share_a_post(collector_env: CollectorProcess) -> None:
    """The sender puts traces ready together in one POST /traces; the body names one session."""
    collector_env.clear_requests()
    loggers = [GalileoLogger(project="sessions", log_stream="chat", mode="distributed") for _ in range(4)]
    sessions = [loggers[0].start_session(name="a"), loggers[1].start_session(name="b")]
    loggers[2].set_session(str(sessions[0]))  # same session as loggers[0]: may share its POST
    trace_session = {}
    for i, logger in enumerate(loggers):
        trace_session[logger.start_trace(input="q", name=f"t{i}").id] = logger.session_id
        logger.conclude(output="a")
    galileo.shutdown(timeout=10)
    posts = [r["body"] for r in collector_env.requests() if r["path"].endswith("/traces")]
    seen = set()
    for body in posts:
        for trace in body["traces"]:
            assert trace_session[trace["id"]] == body["session_id"]
            seen.add(trace["id"])
    assert seen == set(trace_session)
    for trace_id, session_id in trace_session.items():
        assert _stored(collector_env, trace_id)["session_id"] == session_id


# -- galileo.start_session and galileo_context ---------------------------------------------------------------
def test_galileo_start_session_and_decorated_calls(collector_env: CollectorProcess) -> None:
    @log(span_type="llm")
    def call_llm(prompt: str) -> str:
        return "answer to " + prompt

    @log
    def chat(prompt: str) -> str:
        return call_llm(prompt)

    with galileo_context(project="sessions", log_stream="chat"):
        session_id = galileo.start_session(name="decorated chat")
        chat("hello")
        chat("again")
    galileo_context.flush()
    assert _is_uuid4(session_id)
    assert session_id is not None
    assert _session_traces(collector_env, session_id) == ["chat", "chat"]


def test_galileo_context_session_functions(collector_env: CollectorProcess) -> None:
    @log
    def step(x: str) -> str:
        return x

    existing = GalileoLogger(project="sessions", log_stream="chat").start_session(name="existing")
    assert existing is not None
    started = galileo_context.start_session(name="context session")
    step("in the started session")
    galileo_context.flush()
    galileo_context.set_session(existing)
    step("in the existing session")
    galileo_context.flush()
    galileo_context.clear_session()
    step("in no session")
    galileo_context.flush()
    with galileo_context(session_id=existing):
        assert galileo_context.get_logger_instance().session_id == existing
        step("in a block's session")
    galileo_context.flush()

    assert started is not None
    assert _session_traces(collector_env, started) == ["step"]
    assert _session_traces(collector_env, existing) == ["step", "step"]
    assert galileo_context.get_logger_instance().session_id is None  # the block's session ended with it


def test_galileo_context_session_blocks_of_concurrent_tasks_stay_apart(
    collector_env: CollectorProcess,
) -> None:
    """Two requests' worth of ``galileo_context(session_id=...)`` blocks at once: each trace keeps its own."""
    first, second = (GalileoLogger(project="sessions", log_stream="chat").start_session() for _ in range(2))

    @log
    async def answer(question: str) -> str:
        await asyncio.sleep(0.01)  # the other task's block is open meanwhile
        return question

    async def conversation(session_id: str | None, question: str) -> None:
        with galileo_context(project="sessions", log_stream="chat", session_id=session_id):
            await answer(question)

    async def main() -> None:
        await asyncio.gather(conversation(first, "one"), conversation(second, "two"))

    asyncio.run(main())
    galileo_context.flush()
    assert first is not None and second is not None
    for session_id, question in ((first, "one"), (second, "two")):
        (summary,) = collector_env.traces(session_id=session_id)
        assert question in _stored(collector_env, summary["id"])["input"]


# -- inside a request handler --------------------------------------------------------------------------------
def _chat_app(seen: dict[str, Any]) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.post("/chat/{conversation}")
    async def chat(conversation: str) -> dict[str, str]:
        logger = get_request_logger()
        seen.setdefault("returned", []).append(
            logger.start_session(name="web chat", external_id=conversation)
        )
        logger.add_llm_span(input="hi", output="hello", model="gpt-4o", name="llm")
        seen.setdefault("traces", []).append(logger.trace_id)
        return {"ok": "yes"}

    return app


def test_start_session_in_a_request_handler_returns_none_and_the_traces_carry_it(
    collector_env: CollectorProcess, http_spy: HttpSpy
) -> None:
    conversation = _unique("web")
    seen: dict[str, Any] = {}
    with TestClient(_chat_app(seen)) as client:
        for _ in range(2):
            assert client.post(f"/chat/{conversation}").status_code == 200
    first, second = (_stored(collector_env, trace_id) for trace_id in seen["traces"])

    assert seen["returned"] == [None, None]  # no waiting inside a request: see async_start_session
    (session,) = _sessions(collector_env, conversation)  # created once, then found by its external id
    assert first["session_id"] == second["session_id"] == session["id"]
    assert _session_traces(collector_env, session["id"]) == ["POST /chat/{conversation}"] * 2
    sdk_calls = http_spy.calls
    assert any(c.url.endswith("/sessions") for c in sdk_calls)
    assert all(c.thread.startswith("galileo-sender-") for c in sdk_calls), "network I/O on a handler's thread"


def test_a_session_the_api_refuses_loses_no_trace(collector_env: CollectorProcess) -> None:
    """A 4xx to POST /sessions: the traces still go, without a session, counted and reported."""
    seen: dict[str, Any] = {}
    with TestClient(_chat_app(seen)) as client:
        assert client.post("/chat/warm-up").status_code == 200  # resolves the project
        galileo.shutdown(timeout=10)
        project_id = collector_env.trace(seen["traces"][0])["project_id"]  # type: ignore[index]
        faults = {"fail_count": 2, "fail_status": 422, "paths": [f"/v2/projects/{project_id}/sessions"]}
        requests.put(f"{collector_env.url}/api/faults", json=faults, timeout=5).raise_for_status()
        before = galileo.stats()
        assert client.post("/chat/refused").status_code == 200
    tree = _stored(collector_env, seen["traces"][1])
    assert tree["session_id"] is None
    after = galileo.stats()
    assert after["sessions_failed"] - before["sessions_failed"] == 1
    assert after["traces_without_session"] - before["traces_without_session"] == 1


def test_a_session_the_api_cannot_create_yet_is_retried_with_its_traces(
    collector_env: CollectorProcess,
) -> None:
    seen: dict[str, Any] = {}
    with TestClient(_chat_app(seen)) as client:
        assert client.post("/chat/warm-up-2").status_code == 200
        galileo.shutdown(timeout=10)
        project_id = collector_env.trace(seen["traces"][0])["project_id"]  # type: ignore[index]
        faults = {"fail_count": 2, "fail_status": 503, "paths": [f"/v2/projects/{project_id}/sessions"]}
        requests.put(f"{collector_env.url}/api/faults", json=faults, timeout=5).raise_for_status()
        conversation = _unique("retry")
        assert client.post(f"/chat/{conversation}").status_code == 200
    tree = _stored(collector_env, seen["traces"][1])
    (session,) = _sessions(collector_env, conversation)
    assert tree["session_id"] == session["id"]
