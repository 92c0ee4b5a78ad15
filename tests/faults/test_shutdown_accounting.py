"""Every record handed over is accounted for by the time ``galileo.shutdown(timeout)`` returns.

Against a backend that answers 8 s late, a shutdown bounded to 2 s cannot deliver: what never went is given
up as ``shutdown_timeout``, and a write still unanswered is counted under its own reason,
``shutdown_in_flight`` (the server may have stored it). Nothing is left ``queued`` or ``in_flight``, and
``sent + dropped`` is what was logged: in ``galileo.stats()`` in-process, and in the last line a service
stopped with SIGTERM logs.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess, free_port

import galileo
from galileo import GalileoLogger

pytestmark = pytest.mark.slow

LATE_MS = 8000
#: The drain's bound at SIGTERM (``TracingMiddleware`` at lifespan shutdown), documented in the README.
EXIT_DRAIN = 5.0
#: From SIGTERM to exit: the drain's bound plus uvicorn's and the interpreter's shutdown on a loaded VM.
EXIT_BOUND = EXIT_DRAIN + 2.5


def _no_record_left(stats: dict[str, Any], logged: int) -> None:
    assert (stats["queued"], stats["in_flight"]) == (0, 0), stats
    assert stats["sent"] + stats["dropped"] == logged, stats
    assert sum(stats["dropped_by_reason"].values()) == stats["dropped"], stats
    assert stats["dropped_by_reason"].get("shutdown_in_flight", 0) > 0, stats


@pytest.fixture
def late_backend(
    sdk_backend: CollectorProcess, set_faults: Callable[..., dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[CollectorProcess]:
    """``sdk_backend`` with the SDK logged in and the project resolved, then answering writes 8 s late.

    Killed afterwards: its requests sleep out the latency, and a graceful stop would wait for them."""
    monkeypatch.setenv("GALILEO_SENDER_WORKERS", "1")  # one write in flight at a time (see the test)
    logger = GalileoLogger(log_stream="late", mode="distributed")
    logger.start_trace(input="warm")
    logger.conclude(output="warm")
    assert logger.flush(timeout=10).pending == 0, "logged in, project and log stream resolved"
    set_faults(sdk_backend, latency_ms=LATE_MS)
    yield sdk_backend
    if sdk_backend.pid is not None:
        os.kill(sdk_backend.pid, signal.SIGKILL)


def test_shutdown_accounts_for_every_record_when_the_backend_answers_late(
    late_backend: CollectorProcess,
) -> None:
    logger = GalileoLogger(log_stream="late", mode="distributed")
    for batch in range(2):  # the first goes out, the second waits: one worker (GALILEO_SENDER_WORKERS=1)
        for i in range(50):
            logger.start_trace(input=f"q{batch}-{i}")
            logger.add_tool_span(input="x", output="y")
            logger.conclude(output=f"a{i}")
        time.sleep(0.5)
    logged = 1 + 100 * 2  # the warm-up's trace; a trace and a tool span each
    started = time.perf_counter()
    galileo.shutdown(timeout=2)
    took = time.perf_counter() - started
    stats = galileo.stats()
    print(f"\nshutdown(timeout=2) with the backend 8 s late took {took:.2f} s; stats {stats}")
    assert took < 3.5, "shutdown returns within its timeout (plus a margin)"
    _no_record_left(stats, logged)
    assert stats["dropped_by_reason"].get("shutdown_timeout", 0) > 0, f"what never went: {stats}"


_APP = """
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo.middleware import TracingMiddleware, get_request_logger


async def work(request: Request) -> JSONResponse:
    logger = get_request_logger()
    logger.add_workflow_span(input="q", name="wf")
    logger.add_tool_span(input="q", output="a", name="tool")
    logger.conclude(output="a")
    return JSONResponse({"trace": logger.trace_id})


async def stats(request: Request) -> JSONResponse:
    return JSONResponse(galileo.stats())


app = Starlette(
    routes=[Route("/work", work), Route("/stats", stats)],
    middleware=[Middleware(TracingMiddleware, log_stream="sigterm-late")],
)
"""


@pytest.fixture
def service(
    tmp_path: Path, sdk_backend: CollectorProcess
) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    """``python -m uvicorn`` serving :data:`_APP` against ``late_backend``: (process, URL, stderr file)."""
    (tmp_path / "late_app.py").write_text(_APP)
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the GALILEO_* variables set by sdk_backend
    command = [sys.executable, "-m", "uvicorn", "late_app:app", "--app-dir", str(tmp_path)]
    command += ["--host", "127.0.0.1", "--port", str(port), "--no-access-log"]
    stderr_path = tmp_path / "service.stderr"
    with stderr_path.open("wb") as stderr:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, stderr_path.read_text()
            try:
                if requests.get(f"{url}/stats", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, f"the service did not start:\n{stderr_path.read_text()}"
            time.sleep(0.05)
        yield process, url, stderr_path
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def _last_line(stderr: str) -> str:
    """The service's last ``galileo`` log line."""
    lines = [line for line in stderr.splitlines() if "galileo" in line]
    assert lines, f"the service logged nothing about its records:\n{stderr}"
    return lines[-1]


def _totals(line: str) -> dict[str, int]:
    """The counters a log line reports (``name: N`` or ``name=N``, names quoted or not), first of each."""
    totals: dict[str, int] = {}
    for name, value in re.findall(
        r"""(?<!\w)['"]?(queued|in_flight|sent|dropped)['"]?\s*[:=]\s*(\d+)""", line
    ):
        totals.setdefault(name, int(value))
    return totals


def test_sigterm_with_the_backend_late_says_what_became_of_every_record(
    late_backend: CollectorProcess, service: tuple[subprocess.Popen[bytes], str, Path]
) -> None:
    process, url, stderr_path = service
    requests_made = 10
    with requests.Session() as session:
        for _ in range(requests_made):
            assert session.get(f"{url}/work", timeout=10).status_code == 200
    logged = 3 * requests_made  # a trace, a workflow span and a tool span each

    def in_flight() -> bool:
        stats = requests.get(f"{url}/stats", timeout=10).json()
        return bool(stats["in_flight"])

    late_backend.wait_for(in_flight)  # writes under way, answered 8 s late: past the drain at SIGTERM
    started = time.perf_counter()
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=EXIT_BOUND + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the service did not exit after SIGTERM:\n{stderr_path.read_text()}")
    took = time.perf_counter() - started
    stderr = stderr_path.read_text("utf-8", "replace")
    line = _last_line(stderr)
    totals = _totals(line)
    print(f"\nSIGTERM with the backend 8 s late: exited in {took:.2f} s; {logged} records; last line: {line}")
    assert took < EXIT_BOUND, stderr
    assert (totals.get("queued"), totals.get("in_flight")) == (0, 0), stderr
    assert totals.get("sent", 0) + totals.get("dropped", 0) == logged, stderr
    assert "shutdown_in_flight" in line, stderr
