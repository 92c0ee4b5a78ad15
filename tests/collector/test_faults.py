"""Fault injection of the collector: latency, N failures with a status and Retry-After, garbage answers,
strict parents, faults aimed at the requests whose body carries a marker; and the request log's arrival
times, taken before the latency."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess

from galileo import schema
from galileo.collector._faults import MAX_BODY_SIZE, MAX_MATCH_CHARS


def _post_trace(collector: CollectorProcess, project_id: str, text: str = "q") -> requests.Response:
    body = schema.traces_ingest_body([schema.Trace(input=text)], log_stream_id=None)
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
    before = requests.get(f"{collector.url}/api/faults").json()
    bad_settings: list[tuple[Any, str]] = [
        ({"latency_ms": -1}, "latency_ms"),
        ({"fail_status": 42}, "fail_status"),
        ({"nope": 1}, "nope"),
        ([1], "JSON object"),
        ({"paths": ["v2"]}, "paths"),
        ({"body": 3}, "body"),
        ({"body": ["<html>"]}, "body"),
        ({"content_type": ""}, "content_type"),
        ({"content_type": "text/html\r\nX-Injected: 1"}, "content_type"),
        ({"content_type": "text/html; charset=é"}, "content_type"),
        ({"body_size": -1}, "body_size"),
        ({"body_size": 1.5}, "body_size"),
        ({"body_size": True}, "body_size"),
        ({"body_size": MAX_BODY_SIZE + 1}, "body_size"),
        ({"fail_count": 1, "body_size": "big"}, "body_size"),  # nothing applied, not even fail_count
        ({"strict_parents": 1}, "strict_parents"),
        ({"strict_parents": "yes"}, "strict_parents"),
        ({"match": ""}, "match"),
        ({"match": 3}, "match"),
        ({"match": ["poison"]}, "match"),
        ({"match": "x" * (MAX_MATCH_CHARS + 1)}, "match"),
    ]
    for bad, named in bad_settings:
        answer = requests.put(f"{collector.url}/api/faults", json=bad)
        assert answer.status_code == 400, bad
        assert named in answer.json()["detail"], (bad, answer.json())
    not_json = requests.put(f"{collector.url}/api/faults", data=b'{"latency_ms": 5}')  # no Content-Type
    assert not_json.status_code == 415
    assert requests.get(f"{collector.url}/api/faults").json() == before, "a refused change changes nothing"


def _set(collector: CollectorProcess, **settings: Any) -> None:
    answer = requests.put(f"{collector.url}/api/faults", json=settings)
    assert answer.status_code == 200, answer.text
    assert all(answer.json()[name] == value for name, value in settings.items())


@pytest.mark.parametrize(
    ("settings", "status", "content_type", "body"),
    [
        ({"fail_status": 200, "body": "garbage \u2603"}, 200, "application/json", "garbage \u2603".encode()),
        ({"fail_status": 200, "body": "{not json"}, 200, "application/json", b"{not json"),
        (
            {"fail_status": 201, "body": "<h1>hello</h1>", "content_type": "text/html"},
            201,
            "text/html",
            b"<h1>hello</h1>",
        ),
        ({"fail_status": 200, "body": ""}, 200, "application/json", b""),
        ({"fail_status": 502, "body": "ab", "body_size": 5}, 502, "application/json", b"ababa"),
        ({"fail_status": 200, "content_type": "text/plain"}, 200, "text/plain", b'{"detail": "injected'),
    ],
)
def test_garbage_answers_for_the_next_fail_count_requests(
    fresh_collector: CollectorProcess, settings: dict[str, Any], status: int, content_type: str, body: bytes
) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, fail_count=2, **settings)
    first, second, third = (_post_trace(fresh_collector, project_id) for _ in range(3))
    for answer in (first, second):
        assert (answer.status_code, answer.headers["content-type"]) == (status, content_type)
        assert answer.content.startswith(body) and answer.headers["content-length"] == str(
            len(answer.content)
        )
    assert third.status_code == 200 and third.json()["traces_count"] == 1, "a real answer again"
    faults = requests.get(f"{fresh_collector.url}/api/faults").json()
    assert (faults["injected"], faults["body"], faults["content_type"], faults["body_size"]) == (
        2,
        None,
        None,
        None,
    )
    stored = [r for r in fresh_collector.requests() if r["path"].startswith("/v2/")]
    assert len(stored) == 1, "injected answers are made without handling the request"


def test_answers_that_cannot_have_a_body_get_none(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, fail_count=2, fail_status=204, body="garbage", content_type="text/html")
    for _ in range(2):
        answer = _post_trace(fresh_collector, project_id)
        assert (answer.status_code, answer.content, answer.headers["content-type"]) == (204, b"", "text/html")
    assert _post_trace(fresh_collector, project_id).status_code == 200


def test_garbage_answers_every_request_while_set(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, fail_status=500, body_size=5 * 1024 * 1024, content_type="text/html")
    for _ in range(3):
        answer = _post_trace(fresh_collector, project_id)
        assert (answer.status_code, answer.headers["content-type"]) == (500, "text/html")
        assert len(answer.content) == 5 * 1024 * 1024 and set(answer.content) == {ord("x")}
    assert requests.get(f"{fresh_collector.url}/healthcheck").json()["message"] == "ok", (
        "only /v2/ by default"
    )
    _set(fresh_collector, body_size=None, content_type=None)
    assert _post_trace(fresh_collector, project_id).status_code == 200, "cleared field by field"
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["injected"] == 3


def test_garbage_answers_on_logins_and_lookups(fresh_collector: CollectorProcess) -> None:
    _set(
        fresh_collector,
        fail_status=200,
        body="<html>login</html>",
        content_type="text/html",
        paths=["/login"],
    )
    login = requests.post(f"{fresh_collector.url}/login/api_key", json={"api_key": "k"}, timeout=10)
    assert (login.status_code, login.text) == (200, "<html>login</html>")
    requests.delete(f"{fresh_collector.url}/api/faults")
    headers = fresh_collector.auth_headers()
    _set(fresh_collector, fail_count=1, fail_status=200, body="[{", paths=["/projects"])
    lookup = requests.get(f"{fresh_collector.url}/projects", headers=headers, timeout=10)
    assert (lookup.status_code, lookup.text) == (200, "[{")
    assert requests.get(f"{fresh_collector.url}/projects", headers=headers, timeout=10).json() == []


def _post(collector: CollectorProcess, path: str, body: dict[str, Any]) -> requests.Response:
    return requests.post(f"{collector.url}{path}", json=body, headers=collector.auth_headers(), timeout=10)


def test_arrival_is_stamped_before_the_injected_latency(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, latency_ms=300)
    fresh_collector.clear_requests()
    before = time.monotonic()  # the collector's clock is this machine's monotonic clock, as ours
    assert _post_trace(fresh_collector, project_id).status_code == 200
    (entry,) = fresh_collector.requests()
    assert before <= entry["arrived"], "stamped when the request arrived"
    assert entry["arrived"] + 0.3 <= entry["received_at"] <= entry["finished_at"], (
        "arrived before the latency, handled after it (lower bounds: cannot flake)"
    )


def test_strict_parents_refuse_spans_whose_parent_is_not_stored(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    spans_path = f"/v2/projects/{project_id}/spans"
    trace, workflow = schema.Trace(input="q"), schema.WorkflowSpan(input="q", name="wf")
    tool = schema.ToolSpan(input="x", name="tool")
    workflow.spans.append(tool)
    under_trace = schema.spans_ingest_body(
        [workflow], trace_id=trace.id, parent_id=trace.id, log_stream_id=None
    )
    assert _post(fresh_collector, spans_path, under_trace).status_code == 200, "lenient by default"

    _set(fresh_collector, strict_parents=True)
    fresh_collector.clear_requests()
    orphan_trace = schema.Trace(input="q")
    early = schema.spans_ingest_body(
        [schema.ToolSpan(input="x")], trace_id=orphan_trace.id, parent_id=orphan_trace.id, log_stream_id=None
    )
    refused = _post(fresh_collector, spans_path, early)
    assert refused.status_code == 404
    assert refused.json() == {"detail": f"Parent {orphan_trace.id} not found in trace {orphan_trace.id}"}
    elsewhere = schema.spans_ingest_body(  # a stored span, but of another trace
        [schema.ToolSpan(input="x")], trace_id=orphan_trace.id, parent_id=workflow.id, log_stream_id=None
    )
    assert _post(fresh_collector, spans_path, elsewhere).status_code == 404

    body = schema.traces_ingest_body([orphan_trace], log_stream_id=None, is_complete=False)
    assert _post(fresh_collector, f"/v2/projects/{project_id}/traces", body).status_code == 200
    assert _post(fresh_collector, spans_path, early).status_code == 200, "its parent is stored now"
    nested = schema.spans_ingest_body(  # a span that arrived nested in its container is stored with it
        [schema.LlmSpan(input="x", output="y")], trace_id=trace.id, parent_id=tool.id, log_stream_id=None
    )
    assert _post(fresh_collector, spans_path, nested).status_code == 200

    faults = requests.get(f"{fresh_collector.url}/api/faults").json()
    assert (faults["strict_parents"], faults["parents_refused"]) == (True, 2)
    entries = [e for e in fresh_collector.requests() if e["path"] == spans_path]
    assert [(e["status"], e["parent_refused"], e["parent_id"]) for e in entries] == [
        (404, True, orphan_trace.id),
        (404, True, workflow.id),
        (200, False, orphan_trace.id),
        (200, False, tool.id),
    ]
    assert (entries[0]["trace_id"], entries[0]["record_ids"]) == (orphan_trace.id, [early["spans"][0]["id"]])
    requests.delete(f"{fresh_collector.url}/api/faults")
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["parents_refused"] == 0


def test_match_faults_only_requests_whose_body_carries_the_marker(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, fail_count=2, fail_status=500, match="poison-1f2e")
    clean = _post_trace(fresh_collector, project_id, "a clean trace")
    assert clean.status_code == 200, "no marker: handled as if no fault were set"
    assert requests.get(f"{fresh_collector.url}/api/faults").json()["fail_count"] == 2, "nor counted"
    poisoned = [_post_trace(fresh_collector, project_id, "carries poison-1f2e here") for _ in range(3)]
    assert [answer.status_code for answer in poisoned] == [500, 500, 200], "the count is the matching ones'"
    assert poisoned[0].json() == {"detail": "injected fault: HTTP 500"}
    stored = [r for r in fresh_collector.requests() if r["path"].startswith("/v2/")]
    inputs = [r["body"]["traces"][0]["input"] for r in stored]
    assert inputs == ["a clean trace", "carries poison-1f2e here"], "bodies read here reach the route whole"
    faults = requests.get(f"{fresh_collector.url}/api/faults").json()
    assert (faults["match"], faults["injected"]) == ("poison-1f2e", 2), "the marker stays until reset"
    assert requests.delete(f"{fresh_collector.url}/api/faults").json()["match"] is None


def test_match_with_latency_delays_only_the_matching_requests(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, latency_ms=2000, match="slow-marker")
    started = time.perf_counter()
    assert _post_trace(fresh_collector, project_id, "fast").status_code == 200
    assert time.perf_counter() - started < 1.5, "a request without the marker is not held"
    started = time.perf_counter()
    assert _post_trace(fresh_collector, project_id, "slow-marker").status_code == 200
    assert time.perf_counter() - started >= 2.0, "the marked one is (a lower bound: cannot flake)"


def test_match_reads_a_chunked_body(fresh_collector: CollectorProcess) -> None:
    project_id = _project(fresh_collector)
    _set(fresh_collector, fail_count=1, fail_status=503, match="chunked-marker")
    trace = schema.Trace(input="x" * 100_000 + "chunked-marker")
    body = schema.traces_ingest_body([trace], log_stream_id=None)
    raw = json.dumps(body).encode()
    url = f"{fresh_collector.url}/v2/projects/{project_id}/traces"
    headers = {**fresh_collector.auth_headers(), "Content-Type": "application/json"}
    chunks = (raw[i : i + 7000] for i in range(0, len(raw), 7000))  # no Content-Length: sent chunked
    assert requests.post(url, data=chunks, headers=headers, timeout=10).status_code == 503
    chunks = (raw[i : i + 7000] for i in range(0, len(raw), 7000))
    assert requests.post(url, data=chunks, headers=headers, timeout=10).status_code == 200
    stored = [r for r in fresh_collector.requests() if r["path"].startswith("/v2/")]
    assert [r["body"] for r in stored] == [body]
