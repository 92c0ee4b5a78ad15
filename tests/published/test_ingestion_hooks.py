"""``ingestion_hook`` as the published SDK's docs use it (a hook that changes a batch and sends it on with
``ingest_traces``; ``galileo_context.get_logger_instance(ingestion_hook=...)`` and ``galileo_context.flush``),
run on ours against the local collector: sessions, the same logger for the same hook, flushes that wait for
hooks, the hook thread's bound, and a batch nobody flushed at interpreter exit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess

import galileo
from galileo import GalileoLogger, galileo_context, log

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def project(collector_env: CollectorProcess, fresh_sdk: None) -> Iterator[str]:
    galileo_context.reset()
    yield f"published-hooks-{uuid.uuid4().hex[:8]}"
    galileo_context.reset()


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    return collector.wait_for(lambda: collector.trace(trace_id))


def dropped_by_hook() -> int:
    return int(galileo.stats()["dropped_by_reason"].get("ingestion_hook", 0))


def test_the_hook_s_request_names_the_logger_s_session(project: str) -> None:
    seen: list[Any] = []
    logger = GalileoLogger(project=project, log_stream="hook", ingestion_hook=seen.append)
    session_id = logger.start_session(name="conversation")
    assert session_id is not None and logger.session_id == session_id
    logger.start_trace("q")
    logger.conclude("a")
    logger.flush(timeout=10)
    ((request,),) = [seen]
    assert request.session_id == session_id
    assert request.model_dump()["session_id"] == session_id


def test_ingest_traces_sends_the_request_s_session(collector_env: CollectorProcess, project: str) -> None:
    forward = GalileoLogger(project=project, log_stream="forward")
    session_id = forward.start_session(name="conversation")
    assert session_id is not None
    given = iter([session_id, "not-a-uuid"])

    def hook(request: Any) -> None:
        request.session_id = next(given)  # set by the hook, as published recipes do
        forward.ingest_traces(request)

    logger = GalileoLogger(project=project, log_stream="forward", ingestion_hook=hook)
    in_session = logger.start_trace("q")
    logger.conclude("a")
    logger.flush(timeout=10)
    without = logger.start_trace("q2")
    logger.conclude("a2")
    logger.flush(timeout=10)
    assert stored(collector_env, in_session.id)["session_id"] == session_id
    assert stored(collector_env, without.id)["session_id"] is None  # an id the API would refuse: left out


def test_the_same_hook_gives_the_same_logger(project: str) -> None:
    seen: list[Any] = []

    def hook(request: Any) -> None:
        seen.append(request)

    first = galileo_context.get_logger_instance(project=project, log_stream="hook", ingestion_hook=hook)
    first.start_trace("q")
    again = galileo_context.get_logger_instance(project=project, log_stream="hook", ingestion_hook=hook)
    assert again is first
    again.add_llm_span("q", "a")
    again.flush(timeout=10)
    assert [[len(trace.spans) for trace in request.traces] for request in seen] == [[1]]
    other = galileo_context.get_logger_instance(project=project, log_stream="hook", ingestion_hook=print)
    assert other is not first


def test_galileo_context_flush_waits_for_hooks_and_reports_their_errors(project: str) -> None:
    release = threading.Event()

    def hook(request: Any) -> None:
        release.wait(10)
        raise RuntimeError("hook bug")

    galileo_context.init(project=project, log_stream="hook")
    galileo_context.get_logger_instance(ingestion_hook=hook)

    @log
    def step(x: int) -> int:
        return x

    before = dropped_by_hook()
    errors: list[Exception] = []
    step(1)
    started = time.monotonic()
    try:
        assert galileo_context.flush(on_error=errors.append, timeout=0.3) == 2  # bounded: the hook still runs
        assert time.monotonic() - started >= 0.25
        assert [type(e) for e in errors] == [TimeoutError]
    finally:
        release.set()
    errors.clear()
    step(2)
    assert galileo_context.flush(on_error=errors.append, timeout=10) == 0
    assert [str(e) for e in errors] == ["hook bug"]
    assert dropped_by_hook() == before + 4  # a trace and its span, twice


def test_the_hook_thread_s_queue_is_bounded(
    project: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_QUEUE_SIZE", "2")
    release = threading.Event()
    seen: list[Any] = []

    def hook(request: Any) -> None:
        release.wait(10)
        seen.append(request)

    logger = GalileoLogger(project=project, log_stream="hook", ingestion_hook=hook)
    before = dropped_by_hook()
    try:
        for n in range(4):
            logger.start_trace(f"q{n}")
            logger.add_llm_span("q", "a")
            logger.flush(timeout=0)  # two batches wait for the hook; the two past the bound are refused
        assert dropped_by_hook() == before + 4
        # (the sender's thread reports drops counted elsewhere: soon, not at once)
        deadline = time.monotonic() + 10
        while "ingestion_hook" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "ingestion_hook" in caplog.text
    finally:
        release.set()  # (else a failure here would hold the hook thread, and the next tests' hooks, 10 s)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [[trace.input for trace in request.traces] for request in seen] == [["q0"], ["q1"]]


EXIT_SCRIPT = """
from galileo import GalileoLogger

def hook(request):
    print("hook got", [trace.name for trace in request.traces], flush=True)

logger = GalileoLogger(project="p", log_stream="s", ingestion_hook=hook)
logger.start_trace("q", name="unflushed")
logger.conclude("a")
"""
# The interpreters to run it with: this one, and another named by GALILEO_TEST_EXIT_PYTHON (Python 3.12+
# refuses new threads at exit: there the hook must run on the exiting thread). GALILEO_TEST_EXIT_PYTHONPATH
# names where that one finds this package's dependencies.
EXIT_PYTHONS = [sys.executable, *filter(None, [os.environ.get("GALILEO_TEST_EXIT_PYTHON")])]
EXIT_PYTHONPATH = os.environ.get("GALILEO_TEST_EXIT_PYTHONPATH", "")  # (read before collector_env clears it)


@pytest.mark.parametrize("python", EXIT_PYTHONS)
def test_a_batch_nobody_flushed_reaches_the_hook_at_exit(python: str) -> None:
    paths = [str(ROOT), EXIT_PYTHONPATH] if python != sys.executable else []
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    done = subprocess.run(
        [python, "-c", EXIT_SCRIPT], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "hook got ['unflushed']" in done.stdout, done.stderr
