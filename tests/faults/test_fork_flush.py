"""After ``os.fork()``, the child's ``galileo_context.flush()`` waits for its own records, not the parent's.

The parent logs through ``@log`` against a backend that answers writes late, and forks while its trace is
still unanswered. The child logs a trace of its own and calls ``galileo_context.flush()`` (30 s by default):
it must return once the child's trace is delivered, not wait out its timeout for records that belong to the
parent (the child has none of the parent's threads to send them, and must not send them twice). The child
reports through a pipe and leaves with ``os._exit``; the parent kills it if it does not report in time.
"""

from __future__ import annotations

import os
import select
import signal
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
from collector_process import CollectorProcess

import galileo
from galileo import galileo_context, log

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork"),
]

LATENCY_MS = 1000
#: How long the child's flush may take: its own trace (a login, look-ups and a write answered 1 s late; 1.2 s
#: on an idle machine) on a loaded one, far below the flush's 30 s default.
FLUSH_BOUND = 5.0


@log(name="answer")
def _answer(question: str) -> str:
    trace = galileo_context.get_current_trace()
    return trace.id if trace is not None else ""


def _child(write: int) -> None:  # pragma: no cover - runs in the forked child
    code = 1
    try:
        trace_id = _answer("from the child")
        started = time.monotonic()
        pending = galileo_context.flush()
        took = time.monotonic() - started
        os.write(write, f"{took:.3f} {pending} {trace_id}".encode())
        code = 0
    finally:
        os._exit(code)


def _report(read: int, pid: int, timeout: float) -> str:
    """What the child wrote, or "" if it wrote nothing within ``timeout`` (then it is killed)."""
    ready, _, _ = select.select([read], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return ""
    report = os.read(read, 500).decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0, f"the child failed (status {status}): {report!r}"
    return report


def test_a_forked_childs_flush_waits_for_its_own_records_only(
    sdk_backend: CollectorProcess, set_faults: Callable[..., dict[str, Any]]
) -> None:
    assert galileo_context.flush(timeout=10) == 0 and _answer("warm") != ""  # logged in, look-ups done
    assert galileo_context.flush(timeout=10) == 0
    set_faults(sdk_backend, latency_ms=LATENCY_MS)
    parents = _answer("from the parent")  # handed to the sender, its write answered 1 s late
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork() with threads running: the point here
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read)
        _child(write)
    os.close(write)
    try:
        report = _report(read, pid, FLUSH_BOUND + 1)
    finally:
        os.close(read)
    print(f"\nthe child reported (seconds, pending, trace): {report!r}")
    assert report, f"the child's galileo_context.flush() had not returned after {FLUSH_BOUND + 1:g} s"
    took, pending, childs = report.split()
    assert float(took) < FLUSH_BOUND and pending == "0", report
    sdk_backend.wait_for(lambda: sdk_backend.trace(childs) is not None)
    assert galileo_context.flush(timeout=10) == 0, "the parent's records go from the parent"
    assert sdk_backend.trace(parents) is not None
    assert galileo.stats()["dropped"] == 0
