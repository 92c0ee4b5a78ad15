"""``flush()`` against an API known to be down returns as soon as the sender knows it is down.

Nothing listens on the API's port, so every connection is refused; after three transient failures in a row
the sender treats the API as down. A flush (``GalileoLogger.flush()`` in batch mode and
``galileo_context.flush()``, with their 30 s default) must then return with what is pending instead of
waiting out its timeout, and the records stay counted: pending (retried within the retry window), then
given up at shutdown, never lost silently. ``len(logger.flush())`` is the number of traces handed over (the
published SDK documents "the list of uploaded traces"; ours hands them to a background sender), not the
number delivered.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from collector_process import free_port

import galileo
from galileo import GalileoLogger, galileo_context, log

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("fresh_sdk")]

TRACES = 3
RECORDS = 2 * TRACES  # a trace and one span each
#: How long a flush may take against an API that refuses connections: three refusals (about 1 s of backoff)
#: on a loaded machine, far below the flushes' 30 s default.
FLUSH_BOUND = 6.0


@pytest.fixture(autouse=True)
def down_api(monkeypatch: pytest.MonkeyPatch) -> str:
    """The SDK pointed at a loopback port nothing listens on."""
    for name in [n for n in os.environ if n.startswith("GALILEO_")]:
        monkeypatch.delenv(name)
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("GALILEO_API_URL", url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    monkeypatch.setenv("GALILEO_PROJECT", "faults")
    return url


def _batch_logger() -> GalileoLogger:
    logger = GalileoLogger(log_stream="down", mode="batch")
    for i in range(TRACES):
        logger.start_trace(input=f"q{i}")
        logger.add_tool_span(input="x", output="y")
        logger.conclude(output=f"a{i}")
    return logger


def _bounded(flush: Callable[[], Any]) -> tuple[Any, float]:
    """``flush()`` on a thread of its own (where a flush waits); (what it returned, seconds). If it has not
    returned within :data:`FLUSH_BOUND`, the sender is shut down to release it, and the test fails."""
    returned: list[Any] = []
    started = time.monotonic()
    thread = threading.Thread(target=lambda: returned.append(flush()), name="flush", daemon=True)
    thread.start()
    thread.join(FLUSH_BOUND)
    took = time.monotonic() - started
    if thread.is_alive():
        galileo.shutdown(timeout=1)  # gives up what is pending: the flush returns
        thread.join(10)
        pytest.fail(f"flush() against an API known to be down had not returned after {took:.1f} s")
    return returned[0], took


def _given_up_at_shutdown() -> dict[str, Any]:
    galileo.shutdown(timeout=1)
    stats = galileo.stats()
    assert (stats["sent"], stats["queued"], stats["in_flight"], stats["dropped"]) == (0, 0, 0, RECORDS), stats
    return stats


def test_a_batch_flush_returns_once_the_api_is_known_down() -> None:
    logger = _batch_logger()
    result, took = _bounded(logger.flush)
    stats = galileo.stats()
    print(f"\nflush() returned after {took:.2f} s: {len(result)} traces, {result.pending} pending; {stats}")
    assert (len(result), result.pending) == (TRACES, RECORDS)
    assert (stats["queued"], stats["dropped"]) == (RECORDS, 0), "still pending: retried within the window"
    print(f"after shutdown: {_given_up_at_shutdown()}")


def test_galileo_context_flush_returns_once_the_api_is_known_down() -> None:
    @log(name="work")
    def work(i: int) -> int:
        return i

    for i in range(TRACES):  # each call a trace with its workflow span, handed over as the call returns
        work(i)
    pending, took = _bounded(galileo_context.flush)
    stats = galileo.stats()
    print(f"\ngalileo_context.flush() returned {pending} after {took:.2f} s; stats {stats}")
    assert pending == RECORDS
    assert (stats["queued"], stats["dropped"]) == (RECORDS, 0), "still pending: retried within the window"
    print(f"after shutdown: {_given_up_at_shutdown()}")


def test_a_batch_flush_returns_the_traces_handed_over_not_those_delivered() -> None:
    logger = _batch_logger()
    result = logger.flush(timeout=0.5)
    assert len(result) == TRACES and [t.output for t in result] == [f"a{i}" for i in range(TRACES)]
    assert result.pending == RECORDS and galileo.stats()["sent"] == 0, "handed over, none delivered"
    assert len(logger.flush(timeout=0.5)) == 0, "a flush returns what it handed over, once"
    _given_up_at_shutdown()
