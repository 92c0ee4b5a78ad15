"""After ``fork()``, ``@log`` and ``galileo_context`` in the child start afresh: the child's
``galileo_context.flush()`` waits for the child's records, never for those the parent handed over."""

from __future__ import annotations

import os
import select
import signal
import time
import warnings
from collections.abc import Iterator

import pytest
from collector_process import CollectorProcess, free_port

from galileo import galileo_context, log

#: How long the child's flush may wait: far more than delivering one trace to a local collector takes.
CHILD_FLUSH_TIMEOUT = 20.0
#: The child's flush must return well within its timeout (it waited the whole timeout before the fix).
QUICK = 10.0


@pytest.fixture
def fresh_context(fresh_sdk: None) -> Iterator[None]:
    galileo_context.reset()
    yield
    galileo_context.reset()  # the parent's undeliverable records: not for later tests' flushes to wait on


@log
def work(question: str) -> str:
    trace = galileo_context.get_current_trace()
    assert trace is not None
    return f"{question} answered in trace {trace.id}"


def _child(write: int, collector_url: str) -> None:  # pragma: no cover - runs in the child
    code = 1
    try:
        os.environ["GALILEO_API_URL"] = collector_url  # the child's loggers read the environment anew
        answer = work("from the child")
        trace_id = answer.rsplit(" ", 1)[1]
        started = time.monotonic()
        pending = galileo_context.flush(timeout=CHILD_FLUSH_TIMEOUT)
        elapsed = time.monotonic() - started
        os.write(write, f"{pending} {elapsed:.3f} {trace_id}".encode())
        code = 0
    finally:
        os._exit(code)


def _read_child(read: int, pid: int, timeout: float) -> str:
    """What the child wrote; the child is killed if it says nothing in time (a flush stuck for good)."""
    ready, _, _ = select.select([read], [], [], timeout)
    if not ready:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail(f"the child's galileo_context.flush() did not return within {timeout} s")
    text = os.read(read, 500).decode()
    _, status = os.waitpid(pid, 0)
    assert status == 0, text
    return text


def test_a_forked_childs_flush_waits_for_its_own_records_only(
    collector_env: CollectorProcess, fresh_context: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_PROJECT", "fork")
    # The parent's records cannot be delivered (nothing listens there): they stay pending, retried.
    monkeypatch.setenv("GALILEO_API_URL", f"http://127.0.0.1:{free_port()}")
    work("from the parent")

    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork with threads; that is what we test
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        os.close(read)
        _child(write, collector_env.url)
    os.close(write)
    try:
        pending, elapsed, trace_id = _read_child(read, pid, CHILD_FLUSH_TIMEOUT + 30).split()
    finally:
        os.close(read)

    assert pending == "0", "the child's flush counted records that are not the child's"
    assert float(elapsed) < QUICK, f"the child's flush took {elapsed} s"
    stored = collector_env.wait_for(lambda: collector_env.trace(trace_id))
    assert stored["name"] == "work"
    assert stored["output"] == f"from the child answered in trace {trace_id}"
    # The parent still has its own records to wait for: its flush counts them.
    assert galileo_context.flush(timeout=0.2) > 0
