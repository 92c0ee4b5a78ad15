"""When the API itself is in trouble: an outage is probed, not stormed; a refused API key is one ERROR.

Against a real collector subprocess: stopped (refused connections) and started again on the same port and
database, or answering every login with 401. What a user sees is checked: how many HTTP calls the process
made, what it logged, what arrived, and what ``galileo.stats()`` counted.
"""

from __future__ import annotations

import logging
import time

import pytest
import requests
from collector_process import CollectorProcess
from sdk_helpers import HttpSpy

import galileo
from galileo import GalileoLogger, _sender

TRACES = 30


def _log_traces(project: str, count: int = TRACES, pause: float = 0.0) -> list[str]:
    """``count`` distributed-mode traces of a workflow and a tool span each, flushed without waiting,
    ``pause`` seconds apart."""
    ids = []
    for i in range(count):
        time.sleep(pause)
        logger = GalileoLogger(project=project, log_stream="outage", mode="distributed")
        trace = logger.start_trace(input=f"q{i}", name=f"t{i}")
        logger.add_workflow_span(input="w", name="wf")
        logger.add_tool_span(input="x", output="y", name="tool")
        logger.conclude(output="done", conclude_all=True)
        logger.flush(timeout=0)
        ids.append(trace.id)
    return ids


@pytest.mark.slow
def test_an_unreachable_api_is_probed_not_stormed_and_gets_everything_when_back(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    http_spy: HttpSpy,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    caplog.set_level(logging.INFO, logger="galileo")
    fresh_collector.stop()

    ids = _log_traces("outage")
    time.sleep(3.0)
    attempts = len(http_spy.calls)
    # Each of the 30 traces retrying on its own (backoff 0.25 s, doubling) would make well over 100 calls
    # in 3 s; paused and probed, the API sees the first workers' failures and a probe per pause (~13).
    assert attempts <= 30, f"{attempts} calls to an API that is down"
    unreachable = [r for r in caplog.records if "is unreachable" in r.getMessage()]
    assert len(unreachable) == 1 and unreachable[0].levelno == logging.WARNING

    fresh_collector.start()
    back = time.monotonic()
    fresh_collector.wait_for(
        lambda: all((t := fresh_collector.trace(i)) and t["is_complete"] for i in ids), timeout=20
    )
    recovered_in = time.monotonic() - back
    assert recovered_in < 10, "a probe finds the API back within the current pause (here at most ~4 s)"
    assert any("answers again" in r.getMessage() for r in caplog.records)
    for trace_id in ids:
        stored = fresh_collector.trace(trace_id)
        assert stored is not None and [s["name"] for s in stored["spans"]] == ["wf"]
    assert galileo.stats()["dropped"] == 0


@pytest.mark.slow
def test_a_refused_api_key_is_one_error_no_login_storm_and_counted_drops(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    http_spy: HttpSpy,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "sk-very-secret-key-123"
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", secret)
    monkeypatch.setenv("GALILEO_RETRY_WINDOW", "1.5")
    # (refused credentials pause sending for AUTH_PAUSE, 30 s: the records are given up when their retry
    # window ends, within the pause)
    requests.put(
        f"{fresh_collector.url}/api/faults",
        json={"fail_count": 10**6, "fail_status": 401, "paths": ["/login"]},
        timeout=5,
    ).raise_for_status()
    caplog.set_level(logging.DEBUG, logger="galileo")

    _log_traces("bad-key")
    fresh_collector.wait_for(lambda: galileo.stats()["queued"] == 0, timeout=15)

    stats = galileo.stats()
    records = TRACES * 3  # a trace and its two spans each (and an is_complete update, counted apart)
    assert stats["dropped_by_reason"] == {"auth_failed": records}, stats
    assert stats["sent"] == 0
    logins = http_spy.count("POST", "/login/api_key")
    assert logins <= 12, f"{logins} logins with a refused key"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "GALILEO_API_KEY" in errors[0].getMessage() and "401" in errors[0].getMessage()
    assert all(secret not in r.getMessage() for r in caplog.records)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("auth_failed" in w and "'dropped_by_reason'" in w for w in warnings), warnings


def _said_unreachable(caplog: pytest.LogCaptureFixture) -> bool:
    """Whether the SDK said the API is unreachable: it is then marked down (not just some requests retried:
    traces sharing a POST count a retry each for one failure)."""
    return any("is unreachable" in r.getMessage() for r in caplog.records)


def test_a_shutdown_gives_up_at_once_when_the_api_is_down(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    fresh_collector.stop()
    _log_traces("down-at-exit")
    fresh_collector.wait_for(lambda: _said_unreachable(caplog), timeout=10)
    started = time.monotonic()
    undelivered = galileo.shutdown(timeout=30)
    assert time.monotonic() - started < 2, "no waiting for an API known to be down"
    assert undelivered == galileo.stats()["dropped"] == TRACES * 3
    assert galileo.stats()["dropped_by_reason"] == {"shutdown_timeout": TRACES * 3}


def test_a_shutdown_while_the_down_api_is_probed_counts_what_the_probe_carried(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API answering every write 503 after 400 ms: marked down, then probed. A shutdown while a request
    is in flight waits for its answer (not for the pause), so that every record is counted as given up when
    it returns, none left queued with no worker to send it."""
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    faults = {"fail_count": 10**6, "fail_status": 503, "latency_ms": 400}
    requests.put(f"{fresh_collector.url}/api/faults", json=faults, timeout=5).raise_for_status()
    _log_traces("down-while-probed")
    fresh_collector.wait_for(lambda: _said_unreachable(caplog) and galileo.stats()["in_flight"], timeout=10)
    started = time.monotonic()
    undelivered = galileo.shutdown(timeout=30)
    assert time.monotonic() - started < 2, "no waiting for an API known to be down"
    stats = galileo.stats()
    assert undelivered == stats["dropped"] == TRACES * 3
    assert stats["queued"] == stats["in_flight"] == 0


def test_an_api_going_down_again_soon_after_is_reported_once(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A server restarting or draining can fail, answer, and fail again: one WARNING (and one INFO when it
    answers) per 10 s, the repeats at DEBUG; nothing is lost."""
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    caplog.set_level(logging.DEBUG, logger="galileo")
    ids = []
    for flap in range(2):
        faults = {"fail_count": _sender.OUTAGE_AFTER + 2, "fail_status": 503}
        requests.put(f"{fresh_collector.url}/api/faults", json=faults, timeout=5).raise_for_status()
        ids += _log_traces(f"flap-{flap}", pause=0.03)  # POSTs of their own: failures in a row
        fresh_collector.wait_for(
            lambda: all((fresh_collector.trace(i) or {}).get("is_complete") for i in ids),  # noqa: B023
            timeout=20,
        )

    def said(text: str) -> list[int]:
        return [r.levelno for r in caplog.records if text in r.getMessage()]

    # (a flap may go down and up more than once, as the injected failures and the retries interleave)
    unreachable, answers = said("is unreachable"), said("answers again")
    assert unreachable[0] == logging.WARNING and logging.DEBUG in unreachable[1:], unreachable
    assert unreachable.count(logging.WARNING) == 1, unreachable
    assert answers[0] == logging.INFO and answers.count(logging.INFO) == 1, answers
    assert galileo.stats()["dropped"] == 0


def test_records_waiting_out_an_outage_are_given_up_when_their_retry_window_ends(
    fresh_collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    fresh_sdk: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An API that answers every write 503 with ``Retry-After: 60`` is treated as down and paused for 60 s
    (Retry-After is honoured up to 120 s). Records logged meanwhile wait the pause out, but those whose
    retry window (here 1.5 s) ends first are given up when it ends, not when the pause does."""
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    monkeypatch.setenv("GALILEO_RETRY_WINDOW", "1.5")
    faults = {"fail_count": 10**6, "fail_status": 503, "retry_after": 60}
    requests.put(f"{fresh_collector.url}/api/faults", json=faults, timeout=5).raise_for_status()
    # traces far enough apart to go in POSTs of their own: the failures in a row that mark the API down
    _log_traces("long-pause", count=_sender.OUTAGE_AFTER + 1, pause=0.05)
    fresh_collector.wait_for(lambda: _said_unreachable(caplog), timeout=10)  # down, paused for 60 s
    started = time.monotonic()
    _log_traces("long-pause")  # these wait the outage out
    fresh_collector.wait_for(lambda: galileo.stats()["queued"] == 0, timeout=30)
    settled = time.monotonic() - started
    stats = galileo.stats()
    assert stats["dropped_by_reason"] == {"retry_window_exceeded": (TRACES + _sender.OUTAGE_AFTER + 1) * 3}
    assert settled < 10, f"given up after {settled:.1f} s, for a retry window of 1.5 s"
