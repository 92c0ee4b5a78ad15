"""What each kind of failed answer does to a record, against the collector's injected faults.

Transient answers (408, 429, 5xx) are retried with exponential backoff and jitter, scheduled by the sender;
429 and 503 honour Retry-After; a span whose parent the server has not seen (404, or 422 naming the parent)
is retried; a 422 schema error and a 413 are given up at once, counted, and logged with the error (and the
body's size). Timing is read from the HTTP calls the process made (``http_spy``), outcomes from the
collector's store and ``galileo.stats()``.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from sdk_helpers import HttpSpy

import galileo
from galileo import GalileoLogger, schema


def _inject(collector: CollectorProcess, **faults: Any) -> None:
    requests.put(f"{collector.url}/api/faults", json=faults, timeout=5).raise_for_status()


def _writes(spy: HttpSpy) -> list[tuple[float, int | None]]:
    """(start time, status) of each write to the ingest API, in order."""
    with spy.lock:
        return [
            (c.started, c.status)
            for c in spy.calls
            if "/v2/projects/" in c.url and c.method in ("POST", "PATCH")
        ]


@pytest.fixture
def sdk_env(
    fresh_collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch, fresh_sdk: None
) -> CollectorProcess:
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    return fresh_collector


def _one_trace(**kwargs: Any) -> tuple[GalileoLogger, schema.Trace]:
    logger = GalileoLogger(project="retries", log_stream="s", **kwargs)
    trace = logger.start_trace(input="q", name="t")
    logger.add_tool_span(input="x", output="y", name="tool")
    logger.conclude(output="done")
    return logger, trace


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried_with_growing_jittered_backoff(
    sdk_env: CollectorProcess, http_spy: HttpSpy, status: int
) -> None:
    _inject(sdk_env, fail_count=3, fail_status=status)
    logger, trace = _one_trace()
    assert logger.flush(timeout=15).pending == 0
    stored = sdk_env.trace(trace.id)
    assert stored is not None and [s["name"] for s in stored["spans"]] == ["tool"]
    attempts = _writes(http_spy)
    assert [s for _, s in attempts][:4] == [status, status, status, 200]
    gaps = [b - a for (a, _), (b, _) in itertools.pairwise(attempts[:4])]
    # base 0.25 s doubling, each scaled by a random factor in [0.5, 1]: [0.125, 0.25], [0.25, 0.5], [0.5, 1]
    for gap, (low, high) in zip(gaps, [(0.125, 0.25), (0.25, 0.5), (0.5, 1.0)], strict=True):
        assert low * 0.95 <= gap <= high + 0.25, gaps
    assert galileo.stats()["retried"] == 3


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_is_honoured(sdk_env: CollectorProcess, http_spy: HttpSpy, status: int) -> None:
    _inject(sdk_env, fail_count=1, fail_status=status, retry_after=1.5)
    logger, _ = _one_trace()
    assert logger.flush(timeout=15).pending == 0
    (first, _), (second, code) = _writes(http_spy)[:2]
    assert code == 200 and second - first >= 1.5 * 0.95, "the retry waited for Retry-After, not the backoff"


@pytest.mark.parametrize("status", [404])
def test_a_span_whose_parent_the_server_has_not_seen_is_retried(
    sdk_env: CollectorProcess, http_spy: HttpSpy, status: int
) -> None:
    # A service continuing an upstream trace sends span POSTs only; the injected answer names the parent.
    upstream = GalileoLogger(project="retries", log_stream="s")
    root = upstream.start_trace(input="q", name="upstream")
    upstream.flush(timeout=10)
    _inject(sdk_env, fail_count=2, fail_status=status)
    logger = GalileoLogger(project="retries", log_stream="s", mode="distributed", trace_id=root.id)
    logger.add_tool_span(input="x", output="y", name="downstream")
    assert logger.flush(timeout=15).pending == 0
    stored = sdk_env.trace(root.id)
    assert stored is not None and [s["name"] for s in stored["spans"]] == ["downstream"]
    assert [s for _, s in _writes(http_spy)][-3:] == [status, status, 200]


@pytest.mark.parametrize(
    ("status", "reason", "logged"),
    [(422, "schema_rejected", "HTTP 422"), (413, "too_large", "bytes was too large")],
)
def test_permanent_rejections_are_not_retried_but_counted_and_logged(
    sdk_env: CollectorProcess,
    http_spy: HttpSpy,
    caplog: pytest.LogCaptureFixture,
    status: int,
    reason: str,
    logged: str,
) -> None:
    caplog.set_level(logging.WARNING, logger="galileo")
    _inject(sdk_env, fail_count=1, fail_status=status)
    logger, trace = _one_trace()
    result = logger.flush(timeout=10)
    assert result.pending == 0
    assert [s for _, s in _writes(http_spy)] == [status], "given up at once, not retried"
    assert galileo.stats()["dropped_by_reason"] == {reason: 2}  # the trace (with its span) and is_complete
    assert sdk_env.trace(trace.id) is None
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert reason in warning and logged in warning


def test_a_timeout_is_retried_once_the_backend_answers_in_time(
    sdk_env: CollectorProcess, http_spy: HttpSpy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GALILEO_TIMEOUT", "0.5")
    logger, _ = _one_trace(mode="distributed")  # its first send logs in and looks up, with no latency yet
    sdk_env.wait_for(lambda: _writes(http_spy), timeout=10)
    logger.start_trace(input="q", name="late")
    logger.conclude(output="a")
    _inject(sdk_env, latency_ms=2000)  # writes answer after the client stopped waiting
    logger.flush(timeout=0)
    sdk_env.wait_for(lambda: any(s is None for _, s in _writes(http_spy)), timeout=10)
    _inject(sdk_env, latency_ms=0)
    assert logger.flush(timeout=15).pending == 0
    statuses = [s for _, s in _writes(http_spy)]
    assert None in statuses and statuses[-1] == 200, statuses  # None: no answer (the timeout)
    assert galileo.stats()["retried"] >= 1
