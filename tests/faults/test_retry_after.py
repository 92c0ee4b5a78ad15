"""Retry-After speaks for the client: after a 429 or 503 saying ``Retry-After: 2`` no write goes to that API
for 2 s, whichever record it carries; then everything is delivered.

The collector answers the first trace write with the fault and notes when each later write *arrived*
(``/api/requests``, its monotonic clock: the same clock as this process's on one machine). Writes are logged
before and after the fault was answered, spread over the window, so a sender that holds back only the record
that got the answer (and sends the others 0.2 s later) is caught.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess

import galileo
from galileo import GalileoLogger
from galileo.config import GalileoConfig

pytestmark = pytest.mark.slow

RETRY_AFTER = 2.0
#: Traces logged while the API's Retry-After runs, after the one that got the fault.
LATER_TRACES = 4


def _log_trace(logger: GalileoLogger, tag: str) -> str:
    """One concluded trace with a tool span (two records); its id."""
    trace = logger.start_trace(input=tag, name=tag)
    logger.add_tool_span(input=tag, output=tag, name=f"tool-{tag}")
    logger.conclude(output=tag)
    return trace.id


def _stored(collector: CollectorProcess, trace_id: str) -> bool:
    tree = collector.trace(trace_id)
    return tree is not None and tree["is_complete"] and len(tree["spans"]) == 1


def _writes(collector: CollectorProcess) -> list[dict[str, Any]]:
    return [r for r in collector.requests() if r["path"].startswith("/v2/")]


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_holds_every_write_to_the_api(
    sdk_backend: CollectorProcess, set_faults: Callable[..., dict[str, Any]], status: int
) -> None:
    logger = GalileoLogger(log_stream="retry-after", mode="distributed")
    warm = _log_trace(logger, "warm")  # logged in, project and log stream resolved
    sdk_backend.wait_for(lambda: _stored(sdk_backend, warm))
    sdk_backend.clear_requests()
    set_faults(sdk_backend, fail_count=1, fail_status=status, retry_after=RETRY_AFTER)

    before_fault = time.monotonic()  # the fault cannot have been answered before this
    traces = [_log_trace(logger, "got-the-fault")]
    sdk_backend.wait_for(
        lambda: requests.get(f"{sdk_backend.url}/api/faults", timeout=10).json()["injected"] == 1,
        interval=0.01,
    )
    fault_seen = time.monotonic() - before_fault
    # A write the sender started before the answer reached it cannot honour it: the answer left the collector
    # (``injected``), and reaches the sender's thread a moment later on a busy machine. 0.2 s later it has.
    time.sleep(0.2)
    for i in range(LATER_TRACES):  # new writes while Retry-After runs, spread over its first second
        traces.append(_log_trace(logger, f"later-{i}"))
        time.sleep(0.25)
    sdk_backend.wait_for(lambda: all(_stored(sdk_backend, t) for t in traces), timeout=20, interval=0.1)

    arrivals = [round(w["received_at"] - before_fault, 3) for w in _writes(sdk_backend)]
    print(f"\n{status} answered within {fault_seen:.2f} s; the writes arrived at {sorted(arrivals)} s")
    early = [a for a in arrivals if a < RETRY_AFTER]
    assert not early, f"{len(early)} writes arrived within the {RETRY_AFTER:g} s Retry-After: {arrivals}"
    logged = 2 * (1 + len(traces))  # the warm-up's trace too; a trace and a tool span each
    sdk_backend.wait_for(lambda: galileo.stats()["sent"] == logged)  # (counted once the answers are read)
    stats = galileo.stats()
    assert (stats["sent"], stats["dropped"], stats["queued"]) == (logged, 0, 0), stats


def test_an_api_told_to_wait_holds_back_no_other_api(
    sdk_backend: CollectorProcess, collector: CollectorProcess, set_faults: Callable[..., dict[str, Any]]
) -> None:
    """Retry-After holds back the API that said it, and no other: a record for another API (another
    GALILEO_API_URL in the same process) goes as soon as it is logged, not when the pause ends."""
    paused = GalileoLogger(log_stream="retry-after", mode="distributed")
    warm = _log_trace(paused, "warm")
    sdk_backend.wait_for(lambda: _stored(sdk_backend, warm))
    set_faults(sdk_backend, fail_count=100, fail_status=503, retry_after=30)  # every write from now on
    _log_trace(paused, "told-to-wait")
    sdk_backend.wait_for(
        lambda: requests.get(f"{sdk_backend.url}/api/faults", timeout=10).json()["injected"] >= 1,
        interval=0.01,
    )
    time.sleep(0.2)  # the answer has reached the sender: it waits 30 s for that API
    other_api = GalileoConfig.resolve(api_url=collector.url, api_key="test-api-key", mode="distributed")
    elsewhere = GalileoLogger(log_stream="elsewhere", config=other_api)
    logged = time.monotonic()
    trace_id = _log_trace(elsewhere, "elsewhere")
    collector.wait_for(lambda: _stored(collector, trace_id), timeout=10, interval=0.02)
    took = time.monotonic() - logged
    print(f"\nthe other API's trace was stored {took:.2f} s after it was logged")
    assert took < 2.0, "held back behind another API's pause"
