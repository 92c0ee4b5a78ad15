"""Shutdown: a service stopped with SIGTERM, or a script that ends, delivers what is queued and exits in time.

A uvicorn service runs in a subprocess (``python -m uvicorn``, as deployed) against a collector whose writes
take 200 ms, so records are still queued when SIGTERM arrives right after the last response. The drain is
bounded by ``galileo._sender.EXIT_TIMEOUT`` (5 s, documented in the README): the process must exit within
that bound plus a margin, with every record in the collector; with the collector down it must still exit in
time, and say on stderr how many records it gave up. The README's way (``galileo.shutdown()`` in the app's
lifespan shutdown) is proven, and so is the default: uvicorn re-raises SIGTERM after its shutdown so that
atexit hooks never run, and TracingMiddleware drains at the app's lifespan shutdown instead. Scripts that end
without flushing are held to the same rules, batch-mode traces never flushed included.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess, free_port

from galileo._sender import EXIT_TIMEOUT

pytestmark = pytest.mark.slow

#: Time allowed from SIGTERM (or the script's last line) to exit: the drain's bound plus interpreter and
#: uvicorn shutdown on a loaded 2-CPU machine.
EXIT_BOUND = EXIT_TIMEOUT + 4.0
WRITE_LATENCY_MS = 200
REQUESTS = 20

_APP = """
import contextlib
import os

import galileo
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from galileo.middleware import TracingMiddleware, get_request_logger


async def work(request: Request) -> JSONResponse:
    tag = request.query_params["tag"]
    logger = get_request_logger()
    logger.add_workflow_span(input=tag, name="wf-" + tag)
    logger.add_tool_span(input=tag, output=tag, name="tool-" + tag)
    logger.conclude(output=tag)
    logger.flush()
    return JSONResponse({"trace": logger.trace_id})


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@contextlib.asynccontextmanager
async def lifespan(app):
    yield
    if os.environ.get("DRAIN_IN_LIFESPAN"):
        galileo.shutdown(timeout=5.0)  # the README's advice


app = Starlette(
    routes=[Route("/work", work), Route("/ready", ready)],
    middleware=[Middleware(TracingMiddleware)],
    lifespan=lifespan,
)
"""


def _env(collector: CollectorProcess, log_stream: str, *, drain_in_lifespan: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALILEO_")}
    env.update(
        GALILEO_API_URL=collector.url,
        GALILEO_API_KEY="test-api-key",
        GALILEO_PROJECT="faults",
        GALILEO_LOG_STREAM=log_stream,
        PYTHONUNBUFFERED="1",
    )
    if drain_in_lifespan:
        env["DRAIN_IN_LIFESPAN"] = "1"
    return env


class _Service:
    """``python -m uvicorn shutdown_app:app`` in a subprocess, stderr kept in a file."""

    def __init__(self, tmp_path: Path, env: dict[str, str]) -> None:
        (tmp_path / "shutdown_app.py").write_text(_APP)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.stderr_path = tmp_path / "service.stderr"
        command = [sys.executable, "-m", "uvicorn", "shutdown_app:app", "--app-dir", str(tmp_path)]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--no-access-log"]
        with self.stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 20
        while True:
            assert self.process.poll() is None, self.stderr()
            try:
                if requests.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the service did not start:\n{self.stderr()}"
            time.sleep(0.05)

    def stderr(self) -> str:
        return self.stderr_path.read_text("utf-8", "replace")

    def work(self, count: int) -> list[str]:
        """``count`` requests that log; the traces they opened, each answered within 0.5 s."""
        traces = []
        with requests.Session() as session:
            for i in range(count):
                started = time.perf_counter()
                answer = session.get(f"{self.url}/work", params={"tag": f"t{i}"}, timeout=10)
                assert answer.status_code == 200
                assert time.perf_counter() - started < 0.5, "a request waited for the backend"
                traces.append(answer.json()["trace"])
        return traces

    def terminate(self) -> float:
        """SIGTERM; the seconds until the process exited (killed, and the test failed, past the bound)."""
        started = time.perf_counter()
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=EXIT_BOUND + 10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            pytest.fail(f"the service did not exit after SIGTERM:\n{self.stderr()}")
        return time.perf_counter() - started


@pytest.fixture
def slow_collector(fresh_collector: CollectorProcess) -> CollectorProcess:
    answer = requests.put(
        f"{fresh_collector.url}/api/faults", json={"latency_ms": WRITE_LATENCY_MS}, timeout=10
    )
    assert answer.status_code == 200
    return fresh_collector


@pytest.fixture
def service_factory(tmp_path: Path) -> Iterator[Any]:
    services: list[_Service] = []

    def make(collector: CollectorProcess, log_stream: str, *, drain_in_lifespan: bool) -> _Service:
        services.append(_Service(tmp_path, _env(collector, log_stream, drain_in_lifespan=drain_in_lifespan)))
        return services[-1]

    yield make
    for service in services:
        if service.process.poll() is None:
            service.process.kill()
            service.process.wait()


def _complete(collector: CollectorProcess, trace_id: str, tag: str) -> bool:
    tree = collector.trace(trace_id)
    if tree is None or not tree["is_complete"] or len(tree["spans"]) != 1:
        return False
    workflow = tree["spans"][0]
    names = [workflow["name"]] + [s["name"] for s in workflow["spans"]]
    return names == [f"wf-{tag}", f"tool-{tag}"] and workflow["output"] == tag


def _sigterm_with_records_queued(collector: CollectorProcess, service: _Service) -> list[str]:
    """Requests that log, SIGTERM right away; exit within the bound; the traces not complete afterwards."""
    traces = service.work(REQUESTS)
    undelivered = [t for i, t in enumerate(traces) if not _complete(collector, t, f"t{i}")]
    assert undelivered, "records were still queued at SIGTERM (otherwise this proves nothing)"
    exit_seconds = service.terminate()
    print(f"\nSIGTERM with {len(undelivered)}/{REQUESTS} traces queued: exited in {exit_seconds:.2f} s")
    assert exit_seconds < EXIT_BOUND, service.stderr()
    return [t for i, t in enumerate(traces) if not _complete(collector, t, f"t{i}")]


def test_sigterm_with_a_lifespan_drain_delivers_what_is_queued_then_exits(
    slow_collector: CollectorProcess, service_factory: Any
) -> None:
    service = service_factory(slow_collector, "sigterm-lifespan", drain_in_lifespan=True)
    missing = _sigterm_with_records_queued(slow_collector, service)
    assert missing == [], f"{len(missing)} traces incomplete after exit:\n{service.stderr()}"
    assert "gave up" not in service.stderr()


def test_sigterm_without_a_lifespan_drain_delivers_what_is_queued(
    slow_collector: CollectorProcess, service_factory: Any
) -> None:
    service = service_factory(slow_collector, "sigterm-atexit", drain_in_lifespan=False)
    missing = _sigterm_with_records_queued(slow_collector, service)
    assert missing == [], (
        f"{len(missing)} traces incomplete after exit (return code {service.process.returncode})"
    )


def test_sigterm_with_the_backend_down_exits_in_time_and_says_what_it_gave_up(
    fresh_collector: CollectorProcess, service_factory: Any
) -> None:
    service = service_factory(fresh_collector, "down", drain_in_lifespan=True)
    fresh_collector.stop()  # refused connections from here on
    service.work(5)  # each request logs a trace, a workflow span and a tool span: 3 records
    exit_seconds = service.terminate()
    print(f"\nSIGTERM with the backend down: exited in {exit_seconds:.2f} s")
    assert exit_seconds < EXIT_BOUND, service.stderr()
    warnings = re.findall(r"galileo: gave up (\d+) record\(s\).*?(\d+) shutdown_timeout", service.stderr())
    assert warnings == [("15", "15")], service.stderr()


_SCRIPT = """
from galileo import GalileoLogger

distributed = GalileoLogger(project="faults", log_stream="script", mode="distributed")
trace = distributed.start_trace(input="q", name="distributed-exit")
distributed.add_workflow_span(input="q", name="wf")
for i in range(10):
    distributed.add_tool_span(input="x", output=str(i), name="tool")
distributed.conclude(output="done", conclude_all=True)
print(trace.id)

batch = GalileoLogger(project="faults", log_stream="script", mode="batch")
for name in ("batch-flushed", "batch-unflushed"):
    trace = batch.start_trace(input="q", name=name)
    batch.add_tool_span(input="x", output="y", name="tool")
    batch.conclude(output="done")
    if name == "batch-flushed":
        batch.flush(timeout=0)  # handed to the sender, not waited for
    print(trace.id)
"""


def _run_script(
    collector: CollectorProcess, tmp_path: Path, text: str = _SCRIPT
) -> tuple[list[str], float, str]:
    """Run ``text`` as a script against ``collector``: (what it printed, split; seconds; its stderr)."""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(text))
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script)],
        env=_env(collector, "script"),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split(), time.perf_counter() - started, done.stderr


def test_a_script_that_ends_without_flushing_delivers_what_is_queued(
    slow_collector: CollectorProcess, tmp_path: Path
) -> None:
    (distributed, flushed, _), seconds, stderr = _run_script(slow_collector, tmp_path)
    print(f"\nscript with queued records: ran and exited in {seconds:.2f} s")
    assert seconds < EXIT_BOUND + 3, "start-up, the work, and the bounded drain"  # Python start-up included
    tree = slow_collector.trace(distributed)
    assert tree is not None and tree["is_complete"] and len(tree["spans"][0]["spans"]) == 10, stderr
    tree = slow_collector.trace(flushed)
    assert tree is not None and tree["name"] == "batch-flushed" and len(tree["spans"]) == 1, stderr


def test_a_script_that_ends_without_flushing_delivers_its_batch_traces(
    collector_env: CollectorProcess, tmp_path: Path
) -> None:
    (_, _, unflushed), _, stderr = _run_script(collector_env, tmp_path)
    assert collector_env.trace(unflushed) is not None, f"the unflushed batch trace is lost:\n{stderr}"


_NO_THREADS_AT_EXIT = """
import atexit
import threading

from galileo import GalileoLogger


def _as_python_312_does() -> None:
    # Python 3.12+ refuses to start a thread once the interpreter exits; this 3.11 is told to do the same.
    # Registered after the SDK's hook (atexit runs hooks last in, first out), so it runs before it.
    def refuse(self: threading.Thread) -> None:
        raise RuntimeError("can't create new thread at interpreter shutdown")

    threading.Thread.start = refuse  # type: ignore[method-assign]


batch = GalileoLogger(project="faults", log_stream="script", mode="batch")
trace = batch.start_trace(input="q", name="batch-unflushed-no-threads")
batch.add_tool_span(input="x", output="y", name="tool")
batch.conclude(output="done")
atexit.register(_as_python_312_does)
print(trace.id)
"""


def test_an_exit_that_can_start_no_thread_still_delivers_unflushed_batch_traces(
    collector_env: CollectorProcess, tmp_path: Path
) -> None:
    (trace_id,), _, stderr = _run_script(collector_env, tmp_path, _NO_THREADS_AT_EXIT)
    tree = collector_env.trace(trace_id)
    assert tree is not None and tree["name"] == "batch-unflushed-no-threads", stderr
    assert "shutdown_timeout" not in stderr, stderr
