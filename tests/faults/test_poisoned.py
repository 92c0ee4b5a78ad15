"""One poisoned trace cannot hold back the traces that shared its ``POST /traces``.

Traces concluded before the sender looks share one ``POST /traces`` (README, Performance). A 5xx answer to
that POST makes them share its fate; after a second 5xx the traces of the combined POST go on alone. The
collector answers 500 to every write whose body carries a marker (``/api/faults`` ``match``), and one of the
traces carries it. The others must be stored within a few seconds, well before the retry window (4 s here)
ends; the poisoned one must be given up when it ends, and counted. With ``Retry-After`` on the 500 every
retry comes due at the same moment (the API's pause is the client's), where traces could be combined again,
and the poisoned trace's failures, three in a row, could be taken for an outage that holds the others back.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from collector_process import CollectorProcess
from sdk_helpers import HttpSpy

import galileo
from galileo import GalileoLogger

pytestmark = pytest.mark.slow

MARKER = "POISON-6b1f0e"
RETRY_WINDOW = 4.0
TRACES = 5
#: By when the clean traces must be stored, from when they were logged: two failed attempts (backoff or
#: Retry-After) and a POST of their own on a loaded machine, well within the retry window.
CLEAN_BY = 3.0


def _poll(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def _traces_in(body: bytes | None) -> set[str]:
    return {trace["id"] for trace in json.loads(body or b"{}").get("traces", [])}


@pytest.mark.parametrize("retry_after", [None, 0.5])
def test_a_poisoned_trace_does_not_hold_back_the_traces_that_shared_its_post(
    sdk_backend: CollectorProcess,
    set_faults: Callable[..., dict[str, Any]],
    http_spy: HttpSpy,
    monkeypatch: pytest.MonkeyPatch,
    retry_after: float | None,
) -> None:
    monkeypatch.setenv("GALILEO_RETRY_WINDOW", str(RETRY_WINDOW))
    monkeypatch.setenv("GALILEO_SENDER_WORKERS", "1")  # one worker takes every trace ready at once
    logger = GalileoLogger(log_stream="poisoned", mode="distributed")
    logger.start_trace(input="warm")
    logger.conclude(output="warm")
    assert logger.flush(timeout=10).pending == 0, "logged in, project and log stream resolved"
    set_faults(sdk_backend, fail_count=10_000, fail_status=500, match=MARKER, retry_after=retry_after)
    time.sleep(0.2)  # the sender done with the warm-up's trace: idle when the traces come

    logged_at = time.monotonic()
    ids = []
    for i in range(TRACES):  # at one moment: they go together (the first may go before the others)
        text = f"carries {MARKER}" if i == 2 else f"clean {i}"
        ids.append(logger.start_trace(input=text).id)
        logger.add_tool_span(input=text, output="y")
        logger.conclude(output="done")
    poisoned, clean = ids[2], ids[:2] + ids[3:]
    stored = _poll(lambda: all(sdk_backend.trace(t) is not None for t in clean), CLEAN_BY)
    took = time.monotonic() - logged_at
    assert _poll(lambda: galileo.stats()["dropped"] > 0, RETRY_WINDOW + 6), "the poisoned one is given up"

    carried = [  # the traces of each POST that carried the poisoned one, in the order they were sent
        _traces_in(call.body)
        for call in sorted(http_spy.calls, key=lambda call: call.started)
        if call.method == "POST" and call.url.endswith("/traces") and MARKER.encode() in (call.body or b"")
    ]
    stats = galileo.stats()
    print(f"\nthe POSTs carrying the poisoned trace carried {[len(t) for t in carried]} traces; clean ones")
    print(f"stored: {stored}, {took:.2f} s after they were logged; stats {stats}")
    assert carried and len(carried[0]) > 1, f"the poisoned trace shared a POST: {carried} (else: no test)"
    assert all(traces == {poisoned} for traces in carried[2:]), f"alone after a second 5xx: {carried}"
    assert stored, f"the clean traces are not stored {CLEAN_BY:g} s after they were logged"
    assert sdk_backend.trace(poisoned) is None
    assert (stats["sent"], stats["dropped"], stats["queued"]) == (1 + 2 * (TRACES - 1), 2, 0), stats
