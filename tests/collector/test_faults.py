"""Fault injection of the collector: latency, N failures with a status and Retry-After, reset."""

from __future__ import annotations

import time

import requests
from collector_process import CollectorProcess

from galileo import schema


def _post_trace(collector: CollectorProcess, project_id: str) -> requests.Response:
    body = schema.traces_ingest_body([schema.Trace(input="q")], log_stream_id=None)
    return requests.post(
        f"{collector.url}/v2/projects/{project_id}/traces",
        json=body,
        headers=collector.auth_headers(),
        timeout=10,
    )


def _project(collector: CollectorProcess) -> str:
    answer = requests.post(
        f"{collector.url}/projects",
        json={"name": "faults", "type": "gen_ai"},
        headers=collector.auth_headers(),
    )
    return str(answer.json()["id"])


def test_failures_then_recovery(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    set_faults = requests.put(
        f"{fresh_collector.url}/api/faults", json={"fail_count": 2, "fail_status": 429, "retry_after": 3}
    )
    assert set_faults.status_code == 200 and set_faults.json()["fail_count"] == 2
    first, second, third = (_post_trace(fresh_collector, project_id) for _ in range(3))
    assert (first.status_code, first.headers["retry-after"]) == (429, "3")
    assert second.status_code == 429
    assert third.status_code == 200
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["injected"] == 2
    assert requests.get(f"{fresh_collector.url}/healthcheck").status_code == 200, "only /v2/ by default"


def test_latency_applies_to_writes_only(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    requests.put(f"{fresh_collector.url}/api/faults", json={"latency_ms": 300})
    started = time.perf_counter()
    assert _post_trace(fresh_collector, project_id).status_code == 200
    waited = time.perf_counter() - started
    assert waited >= 0.3, "the write was held for the injected latency (a lower bound: cannot flake)"
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["latency_ms"] == 300
    requests.delete(f"{fresh_collector.url}/api/faults")
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["latency_ms"] == 0


def test_bad_settings_are_400(collector: CollectorProcess) -> None:
    for bad in ({"latency_ms": -1}, {"fail_status": 42}, {"nope": 1}, [1], {"paths": ["v2"]}):
        answer = requests.put(f"{collector.url}/api/faults", json=bad)
        assert answer.status_code == 400, bad
        assert answer.json()["detail"]
