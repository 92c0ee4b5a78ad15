"""The collector's HTTP API, end to end against a real collector process (and a few in-process checks).

What a Galileo client sees: the WIRE.md flow, the published SDK's golden requests replayed into a tree,
401/404/422 answers, and the store semantics clients rely on (idempotent retries, late parents, spans for
complete or missing traces, one trace across log streams, restarts).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess, golden_writes
from starlette.testclient import TestClient

from galileo import __version__
from galileo.collector import _auth, create_app
from galileo.collector._validation import ROOTS, load_schema_document, validate
from galileo.collector.cli import format_tree

Headers = dict[str, str]


def _id() -> str:
    return str(uuid.uuid4())


def _jwt_payload(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return payload


class _Client:
    """A logged-in client of one collector, with its own project and log stream."""

    def __init__(self, collector: CollectorProcess, stream: str = "svc", project: str | None = None) -> None:
        self.url = collector.url
        self.headers: Headers = collector.auth_headers()
        project_name = project or f"project-{_id()}"
        self.project = self.post("/projects", {"name": project_name, "type": "gen_ai"}).json()
        self.stream = self.post(f"/projects/{self.project['id']}/log_streams", {"name": stream}).json()

    def request(self, method: str, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("headers", self.headers)
        return requests.request(method, f"{self.url}{path}", json=body, timeout=10, **kwargs)

    def post(self, path: str, body: Any) -> requests.Response:
        return self.request("POST", path, body)

    def patch(self, path: str, body: Any) -> requests.Response:
        return self.request("PATCH", path, body)

    def ingest_trace(self, trace: dict[str, Any], **fields: Any) -> requests.Response:
        body = {"log_stream_id": self.stream["id"], "traces": [trace], "is_complete": False, **fields}
        return self.post(f"/v2/projects/{self.project['id']}/traces", body)

    def ingest_spans(self, trace_id: str, parent_id: str, *spans: dict[str, Any]) -> requests.Response:
        body = {
            "log_stream_id": self.stream["id"],
            "trace_id": trace_id,
            "parent_id": parent_id,
            "spans": list(spans),
        }
        return self.post(f"/v2/projects/{self.project['id']}/spans", body)


def _trace(name: str = "trace", **fields: Any) -> dict[str, Any]:
    return {
        "type": "trace",
        "id": _id(),
        "name": name,
        "input": "q",
        "created_at": "2026-01-01T00:00:00Z",
        **fields,
    }


def _span(
    span_type: str = "workflow", name: str = "span", at: str = "2026-01-01T00:00:01Z", **fields: Any
) -> dict[str, Any]:
    return {"type": span_type, "id": _id(), "name": name, "input": "q", "created_at": at, **fields}


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["name"] for node in nodes]


# The flow WIRE.md describes ---------------------------------------------------------------------------------


def test_client_flow_from_healthcheck_to_log_stream(collector: CollectorProcess) -> None:
    health = requests.get(f"{collector.url}/healthcheck", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"api_version": "v2", "message": "ok", "version": __version__}

    probe = requests.get(f"{collector.url}/ingest/healthz", timeout=10)
    assert (probe.status_code, probe.json()) == (404, {"detail": "Not Found"})

    login = requests.post(f"{collector.url}/login/api_key", json={"api_key": "my-key"}, timeout=10)
    assert login.status_code == 200
    assert login.json()["token_type"] == "bearer"
    token = login.json()["access_token"]
    payload = _jwt_payload(token)
    assert set(payload) == {"sub", "exp", "iat"}
    assert payload["iat"] <= time.time() < payload["exp"]
    headers = {"Authorization": f"Bearer {token}", "X-Galileo-SDK": "test/1.0"}

    def get(path: str, **params: Any) -> requests.Response:
        return requests.get(f"{collector.url}{path}", params=params, headers=headers, timeout=10)

    def post(path: str, body: Any) -> requests.Response:
        return requests.post(f"{collector.url}{path}", json=body, headers=headers, timeout=10)

    user = get("/current_user").json()
    assert set(user) == {"id", "email", "role"}
    assert user["id"] == payload["sub"]

    name = f"flow-{_id()}"
    assert get("/projects", project_name=name, type="gen_ai").json() == []
    created = post(
        "/projects", {"name": name, "created_by": None, "type": "gen_ai", "create_example_templates": False}
    )
    assert created.status_code == 200
    project = created.json()
    assert uuid.UUID(project["id"]).version == 4
    assert (project["name"], project["type"]) == (name, "gen_ai")

    (found,) = get("/projects", project_name=name, type="gen_ai").json()
    assert found["id"] == project["id"]
    assert found["runs"] == []
    assert found["created_by_user"]["id"] == user["id"]
    assert get(f"/projects/{project['id']}").json()["id"] == project["id"]
    assert project["id"] in [p["id"] for p in get("/projects").json()]

    page_path = f"/projects/{project['id']}/log_streams/paginated"
    empty = get(page_path, include_counts="false", starting_token=0, limit=500).json()
    assert empty == {
        "log_streams": [],
        "starting_token": 0,
        "limit": 500,
        "paginated": True,
        "next_starting_token": None,
    }
    stream = post(f"/projects/{project['id']}/log_streams", {"name": "svc"}).json()
    assert (stream["name"], stream["project_id"]) == ("svc", project["id"])
    listed = get(page_path, include_counts="false", starting_token=0, limit=500).json()
    assert [s["id"] for s in listed["log_streams"]] == [stream["id"]]
    assert [s["id"] for s in get(f"/projects/{project['id']}/log_streams").json()] == [stream["id"]]

    # Creating an existing name returns the existing record.
    assert post("/projects", {"name": name, "type": "gen_ai"}).json()["id"] == project["id"]
    assert post(f"/projects/{project['id']}/log_streams", {"name": "svc"}).json()["id"] == stream["id"]


def test_golden_requests_of_the_published_sdk_build_the_trace_tree(collector: CollectorProcess) -> None:
    client = _Client(collector)
    golden = golden_writes(client.project["id"], client.stream["id"])
    response_schemas = {
        "traces_ingest": "LogTracesIngestResponse",
        "span_update": "LogSpanUpdateResponse",
        "trace_update": "LogTraceUpdateResponse",
    }
    for kind, method, path, body in golden.writes:
        response = client.request(method, path, body)
        assert response.status_code == 200, (kind, response.text)
        schema = response_schemas.get(kind, "LogSpansIngestResponse")
        assert validate(schema, response.json()) == [], kind

    tree = collector.trace(golden.trace_id)
    assert tree is not None
    v2 = client.request("GET", f"/v2/projects/{client.project['id']}/traces/{golden.trace_id}")
    assert v2.status_code == 200
    assert v2.json() == tree

    assert tree["is_complete"] is True  # from the trace_update
    assert tree["output"] == "answer based on 1 docs"
    assert tree["project_id"] == client.project["id"]
    assert tree["log_stream_id"] == client.stream["id"]
    assert tree["orphans"] == []
    (gateway,) = tree["spans"]
    assert gateway["id"] == golden.gateway_workflow_id
    assert {span["id"] for span in gateway["spans"]} == {golden.downstream_workflow_id, golden.llm_id}
    downstream = next(span for span in gateway["spans"] if span["id"] == golden.downstream_workflow_id)
    assert downstream["output"] == "1 docs"  # from the span_update
    assert [span["id"] for span in downstream["spans"]] == [golden.retriever_id]
    assert downstream["spans"][0]["output"] == [{"content": "He improved the telescope.", "metadata": {}}]
    assert all(span["log_stream_id"] == client.stream["id"] for span in gateway["spans"])


# Authentication ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "forged"],
    ids=["missing", "empty", "garbage", "basic", "other-secret"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/current_user"),
        ("GET", "/projects"),
        ("POST", "/projects"),
        ("POST", f"/v2/projects/{_id()}/traces"),
    ],
)
def test_routes_need_a_token_from_this_collector(
    collector: CollectorProcess, authorization: str | None, method: str, path: str
) -> None:
    if authorization == "forged":
        authorization = "Bearer " + _auth.issue_token(b"another secret", _id(), 60)
    headers = {} if authorization is None else {"Authorization": authorization}
    response = requests.request(method, f"{collector.url}{path}", json={}, headers=headers, timeout=10)
    assert response.status_code == 401
    assert isinstance(response.json()["detail"], str)


def test_an_expired_token_is_refused_and_a_new_login_works(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "ttl.db", token_ttl=1) as collector:
        token = collector.login()
        headers = {"Authorization": f"Bearer {token}"}
        assert requests.get(f"{collector.url}/current_user", headers=headers, timeout=10).status_code == 200
        time.sleep(max(0.0, _jwt_payload(token)["exp"] - time.time()) + 0.1)
        expired = requests.get(f"{collector.url}/current_user", headers=headers, timeout=10)
        assert expired.status_code == 401
        assert "expired" in expired.json()["detail"]
        assert requests.get(f"{collector.url}/current_user", headers=collector.auth_headers(), timeout=10).ok


def test_tokens_expire_and_reject_tampering() -> None:
    token = _auth.issue_token(b"secret", "user", 10, now=1000.0)
    assert _auth.verify_token(b"secret", token, now=1005.0)["sub"] == "user"
    with pytest.raises(_auth.InvalidTokenError, match="expired"):
        _auth.verify_token(b"secret", token, now=1010.0)
    with pytest.raises(_auth.InvalidTokenError, match="signature"):
        _auth.verify_token(b"other", token, now=1005.0)
    header, _, signature = token.split(".")
    tampered = base64.urlsafe_b64encode(b'{"sub":"admin","exp":9999999999}').rstrip(b"=").decode()
    with pytest.raises(_auth.InvalidTokenError, match="signature"):
        _auth.verify_token(b"secret", f"{header}.{tampered}.{signature}", now=1005.0)


@pytest.mark.parametrize("body", [{}, {"api_key": ""}, {"api_key": 5}, "not an object"])
def test_login_needs_a_non_empty_api_key(collector: CollectorProcess, body: Any) -> None:
    response = requests.post(f"{collector.url}/login/api_key", json=body, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "api_key"]


# Validation -------------------------------------------------------------------------------------------------


def _trace_request(client: _Client, **trace_fields: Any) -> tuple[str, dict[str, Any]]:
    body = {"log_stream_id": client.stream["id"], "traces": [_trace(**trace_fields)]}
    return f"/v2/projects/{client.project['id']}/traces", body


def _spans_request(client: _Client, span: dict[str, Any], **fields: Any) -> tuple[str, dict[str, Any]]:
    trace_id = _id()
    body = {
        "log_stream_id": client.stream["id"],
        "trace_id": trace_id,
        "parent_id": trace_id,
        "spans": [span],
    }
    return f"/v2/projects/{client.project['id']}/spans", {**body, **fields}


_BAD_BODIES = {
    "trace id is a uuid1": (
        lambda c: _trace_request(c, id="4a3ebdf0-544b-11a0-9336-fe0cd2a10e7a"),
        ["body", "traces", 0, "id"],
        "uuid4",
    ),
    "user_metadata value is not a string": (
        lambda c: _trace_request(c, user_metadata={"attempt": 1}),
        ["body", "traces", 0, "user_metadata", "attempt"],
        "is not of type 'string'",
    ),
    "trace input is a list of messages": (
        lambda c: _trace_request(c, input=[{"role": "user", "content": "hi"}]),
        ["body", "traces", 0, "input", 0, "type"],
        "'type' is a required property (one of: file, text)",
    ),
    "llm span input is a string": (
        lambda c: _spans_request(c, _span("llm", output={"role": "assistant", "content": "a"})),
        ["body", "spans", 0, "input"],
        "is not of type 'array'",
    ),
    "retriever output is a string": (
        lambda c: _spans_request(c, _span("retriever", output="docs")),
        ["body", "spans", 0, "output"],
        "is not of type 'array'",
    ),
    "span type is unknown": (
        lambda c: _spans_request(c, _span("chain")),
        ["body", "spans", 0, "type"],
        "is not a known type",
    ),
    "spans request without parent_id": (
        lambda c: _spans_request(c, _span(), parent_id=None),
        ["body", "parent_id"],
        "is not of type 'string'",
    ),
    "no traces": (
        lambda c: (f"/v2/projects/{c.project['id']}/traces", {"log_stream_id": c.stream["id"], "traces": []}),
        ["body", "traces"],
        "should be non-empty",
    ),
}


@pytest.mark.parametrize("case", list(_BAD_BODIES))
def test_bodies_that_break_the_schema_are_422_with_the_schema_error(
    collector: CollectorProcess, case: str
) -> None:
    client = _Client(collector)
    make, loc, message = _BAD_BODIES[case]
    path, body = make(client)
    response = client.post(path, body)
    assert response.status_code == 422, response.text
    problems = response.json()["detail"]
    assert any(p["loc"] == loc and message in p["msg"] and p["type"] == "schema" for p in problems), problems
    assert collector.traces(project_id=client.project["id"]) == []


@pytest.mark.parametrize(
    ("kind", "body", "loc"),
    [
        ("traces", {"trace_id": _id(), "output": ["not", "a", "string"]}, ["body", "output"]),
        ("spans", {"span_id": "not-a-uuid", "output": "x"}, ["body", "span_id"]),
        ("spans", {"span_id": _id(), "status_code": "200"}, ["body", "status_code"]),
    ],
)
def test_bad_update_bodies_are_422(
    collector: CollectorProcess, kind: str, body: dict[str, Any], loc: list[Any]
) -> None:
    client = _Client(collector)
    record_id = body.get("trace_id") or body.get("span_id")
    response = client.patch(f"/v2/projects/{client.project['id']}/{kind}/{record_id}", body)
    assert response.status_code == 422
    assert loc in [p["loc"] for p in response.json()["detail"]]


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"\xff\xfe", b'{"traces": [{"metrics": {"duration_ns": NaN}}]}']
)
def test_invalid_json_is_422(collector: CollectorProcess, raw: bytes) -> None:
    client = _Client(collector)
    headers = {**client.headers, "Content-Type": "application/json"}
    response = requests.post(
        f"{collector.url}/v2/projects/{client.project['id']}/traces", data=raw, headers=headers, timeout=10
    )
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["type"] == "json_invalid"


def test_packaged_schemas_have_every_write_root() -> None:
    schemas = load_schema_document()["components"]["schemas"]
    assert set(ROOTS) <= set(schemas)
    for root in ROOTS:
        # Every root has a required property, so an empty object names it.
        assert "is a required property" in validate(root, {})[0]["msg"]


# Not found --------------------------------------------------------------------------------------------------


def test_unknown_projects_traces_and_spans_are_404(collector: CollectorProcess) -> None:
    client = _Client(collector)
    pid, missing = client.project["id"], _id()
    assert client.request("GET", f"/projects/{missing}").status_code == 404
    assert client.request("GET", f"/projects/{missing}/log_streams/paginated").status_code == 404
    assert client.post(f"/projects/{missing}/log_streams", {"name": "x"}).status_code == 404
    assert client.post(f"/v2/projects/{missing}/traces", {"traces": [_trace()]}).status_code == 404

    trace_patch = client.patch(f"/v2/projects/{pid}/traces/{missing}", {"trace_id": missing, "output": "x"})
    assert trace_patch.status_code == 404
    assert missing in trace_patch.json()["detail"]
    span_patch = client.patch(f"/v2/projects/{pid}/spans/{missing}", {"span_id": missing, "output": "x"})
    assert span_patch.status_code == 404
    assert client.request("GET", f"/v2/projects/{pid}/traces/{missing}").status_code == 404
    assert collector.trace(missing) is None


def test_patch_path_and_body_ids_must_match(collector: CollectorProcess) -> None:
    client = _Client(collector)
    trace = _trace()
    assert client.ingest_trace(trace).ok
    response = client.patch(f"/v2/projects/{client.project['id']}/traces/{trace['id']}", {"trace_id": _id()})
    assert response.status_code == 422


def test_a_trace_is_not_found_under_another_project(collector: CollectorProcess) -> None:
    client, other = _Client(collector), _Client(collector)
    trace = _trace()
    assert client.ingest_trace(trace).ok
    assert (
        client.request("GET", f"/v2/projects/{other.project['id']}/traces/{trace['id']}").status_code == 404
    )


# Store semantics over HTTP ----------------------------------------------------------------------------------


def test_a_retried_post_never_makes_a_duplicate(collector: CollectorProcess) -> None:
    client = _Client(collector)
    trace, span = _trace("original"), _span(name="child")
    assert client.ingest_trace(trace).ok
    assert client.ingest_trace({**trace, "name": "retried"}).ok
    assert client.ingest_spans(trace["id"], trace["id"], span).ok
    assert client.ingest_spans(trace["id"], trace["id"], span).ok

    tree = collector.trace(trace["id"])
    assert tree is not None
    assert tree["name"] == "original"
    assert _names(tree["spans"]) == ["child"]
    (summary,) = collector.traces(project_id=client.project["id"])
    assert summary["span_count"] == 1


def test_a_span_before_its_parent_is_linked_when_the_parent_arrives(collector: CollectorProcess) -> None:
    client = _Client(collector)
    trace, workflow, llm = _trace(), _span(name="workflow"), _span("tool", "tool", at="2026-01-01T00:00:02Z")
    assert client.ingest_trace(trace).ok
    assert client.ingest_spans(trace["id"], workflow["id"], llm).status_code == 200

    early = collector.trace(trace["id"])
    assert early is not None
    assert early["spans"] == []
    assert _names(early["orphans"]) == ["tool"]

    assert client.ingest_spans(trace["id"], trace["id"], workflow).ok
    late = collector.trace(trace["id"])
    assert late is not None
    assert _names(late["spans"]) == ["workflow"]
    assert _names(late["spans"][0]["spans"]) == ["tool"]
    assert late["orphans"] == []


def test_spans_for_a_complete_trace_are_accepted(collector: CollectorProcess) -> None:
    client = _Client(collector)
    trace = _trace()
    assert client.ingest_trace(trace, is_complete=True).ok
    assert client.ingest_spans(trace["id"], trace["id"], _span(name="straggler")).ok
    tree = collector.trace(trace["id"])
    assert tree is not None
    assert tree["is_complete"] is True
    assert _names(tree["spans"]) == ["straggler"]


def test_a_span_before_its_trace_is_accepted_and_shown_once_the_trace_arrives(
    collector: CollectorProcess,
) -> None:
    client = _Client(collector)
    trace = _trace()
    assert client.ingest_spans(trace["id"], trace["id"], _span(name="early")).status_code == 200
    early = collector.trace(trace["id"])  # no trace record yet: a stand-in (see galileo.collector.store)
    assert early is not None
    assert (early["trace_record"], early["name"], _names(early["spans"])) == (False, None, ["early"])
    path = f"/v2/projects/{client.project['id']}/traces/{trace['id']}"
    assert client.request("GET", path).status_code == 404  # Galileo's route: the trace was not logged
    assert client.ingest_trace(trace).ok
    tree = collector.trace(trace["id"])
    assert tree is not None
    assert (tree["trace_record"], _names(tree["spans"])) == (True, ["early"])
    assert client.request("GET", path).status_code == 200


def test_one_trace_across_two_log_streams(collector: CollectorProcess) -> None:
    project_name = f"demo-{_id()[:8]}"
    gateway = _Client(collector, stream="gateway", project=project_name)
    retriever = _Client(collector, stream="retriever", project=project_name)
    assert gateway.project["id"] == retriever.project["id"]

    trace = _trace("gateway-ask", metrics={"duration_ns": 12_300_000}, status_code=200)
    workflow = _span(name="gateway-workflow", metrics={"duration_ns": 10_100_000})
    downstream = _span(
        name="retriever-service", at="2026-01-01T00:00:02Z", metrics={"duration_ns": 4_000_000}
    )
    search = _span(
        "retriever", "vector-search", at="2026-01-01T00:00:03Z", output=[], metrics={"duration_ns": 11637}
    )
    downstream["spans"] = [search]
    assert gateway.ingest_trace(trace, is_complete=True).ok
    assert gateway.ingest_spans(trace["id"], trace["id"], workflow).ok
    assert retriever.ingest_spans(trace["id"], workflow["id"], downstream).ok

    tree = gateway.request("GET", f"/v2/projects/{gateway.project['id']}/traces/{trace['id']}").json()
    (gateway_workflow,) = tree["spans"]
    (service,) = gateway_workflow["spans"]
    assert (tree["log_stream_name"], gateway_workflow["log_stream_name"]) == ("gateway", "gateway")
    assert (service["log_stream_id"], service["log_stream_name"]) == (retriever.stream["id"], "retriever")
    assert service["spans"][0]["log_stream_name"] == "retriever"
    assert format_tree(tree).splitlines() == [
        f"trace  gateway-ask  12.3 ms  200  complete  [{project_name} / gateway]",
        "└─ workflow  gateway-workflow  10.1 ms  ok",
        f"   └─ workflow  retriever-service  4.0 ms  ok  [{project_name} / retriever]",
        "      └─ retriever  vector-search  0.0 ms  ok",
    ]
    assert [t["id"] for t in collector.traces(log_stream_id=retriever.stream["id"])] == []
    assert [t["id"] for t in collector.traces(log_stream_id=gateway.stream["id"])] == [trace["id"]]


def test_updates_apply_to_the_stored_records(collector: CollectorProcess) -> None:
    client = _Client(collector)
    trace, span = _trace(tags=["a"]), _span()
    assert client.ingest_trace(trace).ok
    assert client.ingest_spans(trace["id"], trace["id"], span).ok
    pid = client.project["id"]
    span_update = {
        "span_id": span["id"],
        "output": "out",
        "status_code": 500,
        "duration_ns": 7,
        "tags": ["s"],
    }
    assert client.patch(f"/v2/projects/{pid}/spans/{span['id']}", span_update).ok
    trace_update = {
        "trace_id": trace["id"],
        "output": "done",
        "tags": ["b"],
        "duration_ns": 9,
        "is_complete": True,
    }
    assert client.patch(f"/v2/projects/{pid}/traces/{trace['id']}", trace_update).ok

    tree = collector.trace(trace["id"])
    assert tree is not None
    assert (tree["output"], tree["tags"], tree["metrics"]["duration_ns"], tree["is_complete"]) == (
        "done",
        ["a", "b"],
        9,
        True,
    )
    (stored,) = tree["spans"]
    assert (stored["output"], stored["status_code"], stored["metrics"]["duration_ns"], stored["tags"]) == (
        "out",
        500,
        7,
        ["s"],
    )


def test_data_and_tokens_survive_a_restart(fresh_collector: CollectorProcess) -> None:
    client = _Client(fresh_collector, project="kept")
    trace = _trace("survivor")
    assert client.ingest_trace(trace).ok
    assert client.ingest_spans(trace["id"], trace["id"], _span(name="child")).ok

    fresh_collector.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{fresh_collector.url}/healthcheck", timeout=2)
    fresh_collector.start()

    tree = fresh_collector.trace(trace["id"])
    assert tree is not None
    assert (tree["name"], _names(tree["spans"])) == ("survivor", ["child"])
    assert client.request("GET", "/current_user").status_code == 200  # the old token is still valid
    (project,) = client.request("GET", "/projects", params={"project_name": "kept"}).json()
    assert project["id"] == client.project["id"]
    assert "on http://127.0.0.1" in fresh_collector.log_text()


def test_concurrent_writers_converge_and_lose_nothing(collector: CollectorProcess) -> None:
    client = _Client(collector)
    name = f"race-{_id()}"
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = set(pool.map(lambda _: client.post("/projects", {"name": name}).json()["id"], range(16)))
    assert len(ids) == 1

    trace = _trace()
    assert client.ingest_trace(trace).ok
    spans = [_span("tool", f"tool-{index}") for index in range(40)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda span: client.ingest_spans(trace["id"], trace["id"], span).status_code, spans)
        )
    assert statuses == [200] * 40
    tree = collector.trace(trace["id"])
    assert tree is not None
    assert sorted(_names(tree["spans"])) == sorted(span["name"] for span in spans)


def test_log_streams_are_paginated(collector: CollectorProcess) -> None:
    client = _Client(collector, stream="s0")
    for index in range(1, 5):
        client.post(f"/projects/{client.project['id']}/log_streams", {"name": f"s{index}"})
    path = f"/projects/{client.project['id']}/log_streams/paginated"
    names, token = [], 0
    while token is not None:
        page = client.request("GET", path, params={"starting_token": token, "limit": 2}).json()
        assert page["paginated"] is True and page["limit"] == 2
        names += [s["name"] for s in page["log_streams"]]
        token = page["next_starting_token"]
    assert names == ["s0", "s1", "s2", "s3", "s4"]
    assert client.request("GET", path, params={"limit": "many"}).status_code == 422
    assert client.request("GET", path, params={"starting_token": -1}).status_code == 422


# The collector's own API ------------------------------------------------------------------------------------


def test_write_requests_are_recorded_in_arrival_order(collector: CollectorProcess) -> None:
    client = _Client(collector)
    collector.clear_requests()
    trace, parent, child = _trace(), _span(), _span("tool")
    parent["spans"] = [child]
    pid = client.project["id"]
    client.ingest_trace(trace)
    client.ingest_spans(trace["id"], trace["id"], parent)
    client.patch(f"/v2/projects/{pid}/spans/{parent['id']}", {"span_id": parent["id"], "output": "x"})
    client.post(f"/v2/projects/{pid}/traces", {"traces": "nope"})
    client.request("GET", "/current_user")  # reads are not recorded
    requests.post(
        f"{collector.url}/login/api_key", json={"api_key": "secret-key"}, timeout=10
    )  # neither is login

    entries = collector.requests()
    assert [(e["method"], e["path"], e["status"]) for e in entries] == [
        ("POST", f"/v2/projects/{pid}/traces", 200),
        ("POST", f"/v2/projects/{pid}/spans", 200),
        ("PATCH", f"/v2/projects/{pid}/spans/{parent['id']}", 200),
        ("POST", f"/v2/projects/{pid}/traces", 422),
    ]
    assert [e["record_ids"] for e in entries] == [
        [trace["id"]],
        [parent["id"], child["id"]],
        [parent["id"]],
        [],
    ]
    assert entries[0]["body"]["traces"][0]["id"] == trace["id"]
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == 4
    assert all(e["arrived"] <= e["received_at"] <= e["finished_at"] for e in entries)
    assert [(e["trace_id"], e["parent_id"], e["parent_refused"]) for e in entries] == [
        (None, None, False),
        (trace["id"], trace["id"], False),  # the links a spans POST names
        (None, None, False),
        (None, None, False),
    ]
    assert "secret-key" not in json.dumps(entries)

    collector.clear_requests()
    assert collector.requests() == []


def test_latest_traces_are_listed_newest_first(collector: CollectorProcess) -> None:
    client = _Client(collector)
    older, newer = _trace("older"), _trace("newer", created_at="2026-01-02T00:00:00Z")
    assert client.ingest_trace(older).ok
    assert client.ingest_trace(newer).ok
    assert client.ingest_spans(older["id"], older["id"], _span()).ok
    summaries = collector.traces(project_id=client.project["id"])
    assert [s["name"] for s in summaries] == ["newer", "older"]
    assert summaries[1] == {
        "id": older["id"],
        "name": "older",
        "created_at": "2026-01-01T00:00:00Z",
        "project_id": client.project["id"],
        "project_name": client.project["name"],
        "log_stream_id": client.stream["id"],
        "log_stream_name": "svc",
        "session_id": None,
        "is_complete": False,
        "status_code": None,
        "duration_ns": None,
        "span_count": 1,
        "error_count": 0,
        "trace_record": True,
    }
    assert len(collector.traces(project_id=client.project["id"], limit=1)) == 1


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/api/traces", {"limit": "abc"}),
        ("/api/traces", {"limit": 0}),
        ("/api/traces", {"limit": 100_000}),
        ("/api/traces", {"project_id": "nope"}),
        ("/api/traces", {"log_stream_id": "nope"}),
        ("/api/traces/not-a-uuid", {}),
    ],
)
def test_bad_api_parameters_are_400(collector: CollectorProcess, path: str, params: dict[str, Any]) -> None:
    response = requests.get(f"{collector.url}{path}", params=params, timeout=10)
    assert response.status_code == 400
    assert isinstance(response.json()["detail"], str)


# In-process checks (Starlette's TestClient) -----------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with TestClient(create_app(str(tmp_path / "app.db")), base_url="http://localhost") as test_client:
        yield test_client


def test_framework_errors_are_json(client: TestClient) -> None:
    assert client.get("/no/such/route").json() == {"detail": "Not Found"}
    wrong_method = client.put("/healthcheck")
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"detail": "Method Not Allowed"})


def test_create_app_refuses_a_non_positive_token_ttl(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="token_ttl"):
        create_app(str(tmp_path / "x.db"), token_ttl=0)


def test_missing_ids_are_assigned_by_the_collector(client: TestClient) -> None:
    token = client.post("/login/api_key", json={"api_key": "k"}).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    project = client.post("/projects", json={"name": "p"}, headers=headers).json()
    body = {"traces": [{"type": "trace", "input": "q", "spans": [{"type": "tool", "input": "x"}]}]}
    response = client.post(f"/v2/projects/{project['id']}/traces", json=body, headers=headers).json()
    (trace_id,) = response["trace_ids"]
    tree = client.get(f"/api/traces/{trace_id}").json()
    assert tree["is_complete"] is True  # the schema's default
    assert tree["log_stream_id"] is None
    (tool,) = tree["spans"]
    assert uuid.UUID(tool["id"]).version == 4
    assert tool["parent_id"] == trace_id
