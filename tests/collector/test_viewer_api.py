"""The trace viewer's JSON API and pages, in-process (Starlette's TestClient): what the page is drawn from.

Traces are written through the collector's real ingest routes, as a client would: a two-service trace
(gateway and retriever log streams of one project), traces in other projects, spans arriving late.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from galileo.collector import create_app
from galileo.collector.viewer import pages


def _id() -> str:
    return str(uuid.uuid4())


class _Writer:
    """A logged-in ingest client of the in-process collector."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        token = client.post("/login/api_key", json={"api_key": "k"}).json()["access_token"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def project(self, name: str) -> str:
        project_id: str = self.client.post("/projects", json={"name": name}, headers=self.headers).json()[
            "id"
        ]
        return project_id

    def stream(self, project_id: str, name: str) -> str:
        path = f"/projects/{project_id}/log_streams"
        stream_id: str = self.client.post(path, json={"name": name}, headers=self.headers).json()["id"]
        return stream_id

    def trace(self, project_id: str, stream_id: str, name: str, at: str, **fields: Any) -> str:
        trace = {"type": "trace", "id": _id(), "name": name, "input": "q", "created_at": at, **fields}
        body = {"log_stream_id": stream_id, "traces": [trace], "is_complete": False}
        response = self.client.post(f"/v2/projects/{project_id}/traces", json=body, headers=self.headers)
        assert response.status_code == 200, response.text
        trace_id: str = trace["id"]
        return trace_id

    def spans(self, project_id: str, stream_id: str, trace_id: str, parent_id: str, *spans: Any) -> None:
        body = {
            "log_stream_id": stream_id,
            "trace_id": trace_id,
            "parent_id": parent_id,
            "spans": list(spans),
        }
        response = self.client.post(f"/v2/projects/{project_id}/spans", json=body, headers=self.headers)
        assert response.status_code == 200, response.text


def _span(kind: str, name: str, at: str, duration_ns: int | None = None, **fields: Any) -> dict[str, Any]:
    span = {"type": kind, "id": _id(), "name": name, "input": "q", "created_at": at, **fields}
    if duration_ns is not None:
        span["metrics"] = {"duration_ns": duration_ns}
    return span


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(create_app(str(tmp_path / "viewer.db")), base_url="http://localhost") as test_client:
        yield test_client


@pytest.fixture
def writer(client: TestClient) -> _Writer:
    return _Writer(client)


class _TwoServices:
    def __init__(self, writer: _Writer) -> None:
        self.project = writer.project("demo")
        self.gateway = writer.stream(self.project, "gateway")
        self.retriever = writer.stream(self.project, "retriever")
        self.trace = writer.trace(
            self.project,
            self.gateway,
            "GET /ask",
            "2026-01-01T10:00:00.000000Z",
            metrics={"duration_ns": 9_000_000},
        )
        self.workflow = _span("workflow", "gateway-workflow", "2026-01-01T10:00:00.001000Z", 8_000_000)
        self.remote = _span("workflow", "retriever-service", "2026-01-01T10:00:00.002000Z", 2_000_000)
        self.search = _span("retriever", "vector-search", "2026-01-01T10:00:00.002500Z", 1_000_000)
        self.llm = _span(
            "llm",
            "compose-answer",
            "2026-01-01T10:00:00.005000Z",
            3_000_000,
            input=[{"role": "user", "content": "<script>window.__pwned = 1</script>"}],
            output={"role": "assistant", "content": "no"},
            model="demo-llm",
            status_code=500,
        )
        writer.spans(self.project, self.gateway, self.trace, self.trace, self.workflow)
        writer.spans(self.project, self.retriever, self.trace, self.workflow["id"], self.remote)
        writer.spans(self.project, self.retriever, self.trace, self.remote["id"], self.search)
        writer.spans(self.project, self.gateway, self.trace, self.workflow["id"], self.llm)


@pytest.fixture
def two_services(writer: _Writer) -> _TwoServices:
    return _TwoServices(writer)


# The trace list -------------------------------------------------------------------------------------------


def test_list_summarises_a_two_service_trace(client: TestClient, two_services: _TwoServices) -> None:
    page = client.get("/api/viewer/traces").json()
    assert page["next"] is None
    (summary,) = page["traces"]
    assert summary["id"] == two_services.trace
    assert (summary["name"], summary["created_at"]) == ("GET /ask", "2026-01-01T10:00:00.000000Z")
    assert (summary["duration_ns"], summary["status_code"], summary["is_complete"]) == (
        9_000_000,
        None,
        False,
    )
    assert summary["span_count"] == 4
    assert (summary["project_name"], summary["log_stream_name"]) == ("demo", "gateway")
    assert [(s["log_stream_name"], s["spans"]) for s in summary["services"]] == [
        ("gateway", 2),
        ("retriever", 2),
    ]


def test_list_is_newest_first_and_pages_through_every_trace_once(client: TestClient, writer: _Writer) -> None:
    project = writer.project("paging")
    stream = writer.stream(project, "svc")
    same_time = "2026-01-01T00:00:05Z"  # ties are ordered by arrival, newest first
    expected = [
        writer.trace(project, stream, f"t{i}", same_time if i >= 5 else f"2026-01-01T00:00:0{i}Z")
        for i in range(7)
    ]
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"before": cursor} if cursor else {})}
        page = client.get("/api/viewer/traces", params=params).json()
        seen += [t["name"] for t in page["traces"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["t6", "t5", "t4", "t3", "t2", "t1", "t0"]
    assert len(expected) == 7


def test_list_filters_by_project_and_log_stream(client: TestClient, writer: _Writer) -> None:
    first, second = writer.project("first"), writer.project("second")
    a, b, c = writer.stream(first, "a"), writer.stream(first, "b"), writer.stream(second, "a")
    writer.trace(first, a, "in-a", "2026-01-01T00:00:01Z")
    writer.trace(first, b, "in-b", "2026-01-01T00:00:02Z")
    writer.trace(second, c, "other", "2026-01-01T00:00:03Z")

    def names(**params: str) -> list[str]:
        return [t["name"] for t in client.get("/api/viewer/traces", params=params).json()["traces"]]

    assert names() == ["other", "in-b", "in-a"]
    assert names(project_id=first) == ["in-b", "in-a"]
    assert names(project_id=first, log_stream_id=a) == ["in-a"]
    assert names(log_stream_id=c) == ["other"]
    assert names(project_id=second, log_stream_id=a) == []
    locations = client.get("/api/viewer/locations").json()
    assert [(p["name"], [s["name"] for s in p["log_streams"]]) for p in locations] == [
        ("first", ["a", "b"]),
        ("second", ["a"]),
    ]


def test_search_by_name_trace_id_or_span_id(
    client: TestClient, writer: _Writer, two_services: _TwoServices
) -> None:
    other = writer.trace(
        two_services.project, two_services.gateway, "100% refund_check", "2026-01-02T00:00:00Z"
    )

    def found(term: str) -> list[str]:
        return [t["id"] for t in client.get("/api/viewer/traces", params={"q": term}).json()["traces"]]

    assert found("ASK") == [two_services.trace]  # a case-insensitive substring of the name
    assert found("100%") == [other]
    assert found("0%") == [other]
    assert found("%") == [other]  # % and _ are literal characters, not wildcards
    assert found("d_c") == [other]
    assert found("a_k") == []  # as a wildcard, _ would match "ask"
    assert found(two_services.trace.upper()) == [two_services.trace]
    assert found(two_services.search["id"]) == [two_services.trace]  # a span id finds its trace
    assert found(_id()) == []


def test_a_trace_whose_record_never_arrived_is_listed_found_and_shown(
    client: TestClient, writer: _Writer, two_services: _TwoServices
) -> None:
    missing = _id()  # the upstream service never sends this trace record
    remote = _span("workflow", "retriever-service", "2026-01-01T11:00:00.002000Z", 2_000_000)
    search = _span("retriever", "vector-search", "2026-01-01T11:00:00.003000Z", 1_000_000, status_code=503)
    lost = _span("tool", "lost", "2026-01-01T11:00:00.001000Z", 100)
    writer.spans(two_services.project, two_services.retriever, missing, missing, remote)
    writer.spans(two_services.project, two_services.retriever, missing, remote["id"], search)
    writer.spans(two_services.project, two_services.gateway, missing, _id(), lost)
    newer = writer.trace(two_services.project, two_services.gateway, "newer", "2026-01-01T12:00:00Z")

    def listed(**params: str) -> list[dict[str, Any]]:
        traces: list[dict[str, Any]] = client.get("/api/viewer/traces", params=params).json()["traces"]
        return traces

    assert [t["id"] for t in listed()] == [newer, missing, two_services.trace]  # by its earliest span
    summary = listed()[1]
    assert (summary["name"], summary["trace_record"], summary["is_complete"]) == (None, False, False)
    assert (summary["created_at"], summary["start"]) == ("2026-01-01T11:00:00.001000Z",) * 2
    assert (summary["span_count"], summary["error_count"], summary["status_code"]) == (3, 1, None)
    assert (summary["project_id"], summary["log_stream_id"]) == (None, None)
    assert [(s["log_stream_name"], s["spans"], s["errors"]) for s in summary["services"]] == [
        ("retriever", 2, 1),
        ("gateway", 1, 0),
    ]
    for term in (missing, missing.upper(), search["id"], lost["id"]):
        assert [t["id"] for t in listed(q=term)] == [missing], term
    assert [t["id"] for t in listed(log_stream_id=two_services.retriever)] == [missing]
    assert missing in [t["id"] for t in listed(log_stream_id=two_services.gateway)]
    assert [t["id"] for t in listed(q="retriever")] == []  # names are trace names: it has none
    first = client.get("/api/viewer/traces", params={"limit": 1}).json()
    second = client.get("/api/viewer/traces", params={"limit": 1, "before": first["next"]}).json()
    assert [t["id"] for t in second["traces"]] == [missing]

    answer = client.get(f"/api/viewer/traces/{missing}")
    assert answer.status_code == 200
    waterfall = answer.json()
    assert [(r["depth"], r["type"], r["name"], r["orphan"]) for r in waterfall["rows"]] == [
        (0, "trace", None, False),
        (1, "workflow", "retriever-service", False),
        (2, "retriever", "vector-search", False),
        (0, "tool", "lost", True),
    ]
    assert [r["offset_ns"] for r in waterfall["rows"]] == [0, 1_000_000, 2_000_000, 0]
    assert [r["boundary"] for r in waterfall["rows"]] == [False] * 4
    trace = waterfall["trace"]
    assert (trace["id"], trace["trace_record"], trace["is_complete"], trace["error_count"]) == (
        missing,
        False,
        False,
        1,
    )
    assert (trace["created_at"], trace["duration_ns"], trace["project_id"]) == (
        summary["created_at"],
        None,
        None,
    )
    assert client.get(f"/traces/{missing}").status_code == 200

    arrived = {
        "type": "trace",
        "id": missing,
        "name": "GET /late",
        "input": "q",
        "created_at": "2026-01-01T10:30:00Z",
    }
    path = f"/v2/projects/{two_services.project}/traces"
    body = {"log_stream_id": two_services.gateway, "traces": [arrived]}
    assert client.post(path, json=body, headers=writer.headers).status_code == 200
    assert [(t["id"], t["name"], t["trace_record"]) for t in listed()] == [
        (newer, "newer", True),
        (missing, "GET /late", True),  # once, at its own start
        (two_services.trace, "GET /ask", True),
    ]
    assert client.get(f"/api/viewer/traces/{missing}").json()["trace"]["name"] == "GET /late"


def test_error_counts_flag_the_trace_in_the_list_and_its_header(
    client: TestClient, writer: _Writer, two_services: _TwoServices
) -> None:
    def counts() -> tuple[int, int, list[int]]:
        (summary,) = client.get("/api/viewer/traces").json()["traces"]
        trace = client.get(f"/api/viewer/traces/{two_services.trace}").json()["trace"]
        return summary["error_count"], trace["error_count"], [s["errors"] for s in summary["services"]]

    assert counts() == (1, 1, [1, 0])  # compose-answer's 500
    path = f"/v2/projects/{two_services.project}/spans/{two_services.search['id']}"
    body = {"span_id": two_services.search["id"], "status_code": 504}
    assert client.patch(path, json=body, headers=writer.headers).status_code == 200
    assert counts() == (2, 2, [1, 1])
    path = f"/v2/projects/{two_services.project}/spans/{two_services.llm['id']}"
    body = {"span_id": two_services.llm["id"], "status_code": 200}
    assert client.patch(path, json=body, headers=writer.headers).status_code == 200
    assert counts() == (1, 1, [0, 1])


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/api/viewer/traces?limit=abc", "limit must be an integer between 1 and 200, got 'abc'"),
        ("/api/viewer/traces?limit=0", "limit must be an integer between 1 and 200, got '0'"),
        ("/api/viewer/traces?limit=201", "limit must be an integer between 1 and 200, got '201'"),
        ("/api/viewer/traces?project_id=nope", "project_id must be a UUID, got 'nope'"),
        ("/api/viewer/traces?log_stream_id=1", "log_stream_id must be a UUID, got '1'"),
        ("/api/viewer/traces?before=bm90IGEgY3Vyc29y", "before must be a 'next' value from this API"),
        ("/api/viewer/traces?q=" + "x" * 201, "q must be at most 200 characters, got 201"),
        ("/api/viewer/traces?q=a%00b", "q must not contain control characters"),
        ("/api/viewer/traces?limit=1&limit=2", "query parameter 'limit' is given more than once"),
        (
            "/api/viewer/traces?project=x",
            "unknown query parameter 'project' (this route takes: before, limit,",
        ),
        ("/api/viewer/traces/not-a-uuid", "trace id must be a UUID, got 'not-a-uuid'"),
        ("/api/viewer/records/123", "record id must be a UUID, got '123'"),
        ("/api/viewer/revision?x=1", "unknown query parameter 'x' (this route takes: none)"),
    ],
)
def test_bad_query_parameters_are_400_with_a_clear_message(
    client: TestClient, path: str, message: str
) -> None:
    response = client.get(path)
    assert response.status_code == 400
    assert response.json()["detail"].startswith(message)


# One trace ------------------------------------------------------------------------------------------------


def test_waterfall_rows_in_tree_order_on_a_shared_time_axis(
    client: TestClient, two_services: _TwoServices
) -> None:
    answer = client.get(f"/api/viewer/traces/{two_services.trace}").json()
    rows = answer["rows"]
    assert [(r["depth"], r["type"], r["name"]) for r in rows] == [
        (0, "trace", "GET /ask"),
        (1, "workflow", "gateway-workflow"),
        (2, "workflow", "retriever-service"),
        (3, "retriever", "vector-search"),
        (2, "llm", "compose-answer"),
    ]
    assert [r["offset_ns"] for r in rows] == [0, 1_000_000, 2_000_000, 2_500_000, 5_000_000]
    assert [r["duration_ns"] for r in rows] == [9_000_000, 8_000_000, 2_000_000, 1_000_000, 3_000_000]
    assert answer["window_ns"] == 9_000_000
    assert [r["children"] for r in rows] == [1, 2, 1, 0, 0]
    # the retriever's workflow is where the trace crossed into another service; its child is not
    assert [r["boundary"] for r in rows] == [False, False, True, False, False]
    assert [r["log_stream_name"] for r in rows] == ["gateway", "gateway", "retriever", "retriever", "gateway"]
    assert [(r["error"], r["status_code"]) for r in rows][-1] == (True, 500)
    assert rows[-1]["model"] == "demo-llm"
    assert answer["trace"]["id"] == two_services.trace and answer["trace"]["is_complete"] is False
    assert answer["span_count"] == 4
    assert [s["log_stream_name"] for s in answer["services"]] == ["gateway", "retriever"]
    assert "input" not in rows[-1]  # bodies come one record at a time


def test_waterfall_lists_spans_whose_parent_has_not_arrived(
    client: TestClient, writer: _Writer, two_services: _TwoServices
) -> None:
    late = _span("tool", "late-tool", "2026-01-01T10:00:00.004000Z", 100)
    writer.spans(two_services.project, two_services.retriever, two_services.trace, _id(), late)
    rows = client.get(f"/api/viewer/traces/{two_services.trace}").json()["rows"]
    assert (rows[-1]["name"], rows[-1]["depth"], rows[-1]["orphan"]) == ("late-tool", 0, True)
    assert not any(r["orphan"] for r in rows[:-1])


def test_unknown_trace_and_record_are_404(client: TestClient) -> None:
    missing = _id()
    assert client.get(f"/api/viewer/traces/{missing}").json() == {"detail": f"Trace {missing} not found"}
    assert client.get(f"/api/viewer/records/{missing}").status_code == 404


def test_record_details_carry_the_span_as_sent(client: TestClient, two_services: _TwoServices) -> None:
    llm = client.get(f"/api/viewer/records/{two_services.llm['id']}").json()
    assert llm["input"] == [{"role": "user", "content": "<script>window.__pwned = 1</script>"}]
    assert llm["output"] == {"role": "assistant", "content": "no"}
    assert (llm["model"], llm["status_code"], llm["metrics"]) == ("demo-llm", 500, {"duration_ns": 3_000_000})
    assert (llm["trace_id"], llm["parent_id"]) == (two_services.trace, two_services.workflow["id"])
    assert (llm["project_name"], llm["log_stream_name"]) == ("demo", "gateway")
    trace = client.get(f"/api/viewer/records/{two_services.trace}").json()
    assert (trace["type"], trace["is_complete"]) == ("trace", False)


def test_revision_changes_on_every_write(
    client: TestClient, writer: _Writer, two_services: _TwoServices
) -> None:
    before = client.get("/api/viewer/revision").json()["revision"]
    assert client.get("/api/viewer/revision").json()["revision"] == before
    body = {"trace_id": two_services.trace, "is_complete": True}
    path = f"/v2/projects/{two_services.project}/traces/{two_services.trace}"
    assert client.patch(path, json=body, headers=writer.headers).status_code == 200
    patched = client.get("/api/viewer/revision").json()["revision"]
    assert patched != before
    writer.trace(two_services.project, two_services.gateway, "another", "2026-01-03T00:00:00Z")
    assert client.get("/api/viewer/traces").json()["revision"] not in (before, patched)


# Pages and escaping ---------------------------------------------------------------------------------------


def test_pages_are_the_shell_with_a_strict_content_security_policy(
    client: TestClient, two_services: _TwoServices
) -> None:
    listing = client.get("/")
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in listing.headers["content-security-policy"]
    assert 'data-view="list"' in listing.text
    trace = client.get(f"/traces/{two_services.trace}", params={"span": two_services.llm["id"]})
    assert trace.status_code == 200
    assert f'data-trace-id="{two_services.trace}"' in trace.text
    assert client.get(f"/traces/{_id()}").status_code == 404
    script = client.get("/viewer/static/viewer.js")
    assert script.status_code == 200
    assert "javascript" in script.headers["content-type"]


def test_a_path_holding_markup_is_escaped_in_the_page(client: TestClient) -> None:
    response = client.get('/traces/"><img src=x onerror="window.__pwned=1">')
    assert response.status_code == 404
    assert "<img" not in response.text
    assert 'data-trace-id="&quot;&gt;&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;"' in response.text


def test_span_text_reaches_the_page_only_as_json(client: TestClient, two_services: _TwoServices) -> None:
    page = client.get(f"/traces/{two_services.trace}").text
    assert "__pwned" not in page  # user data is never rendered on the server
    record = client.get(f"/api/viewer/records/{two_services.llm['id']}")
    assert record.headers["content-type"] == "application/json"
    assert record.headers["x-content-type-options"] == "nosniff"


def test_the_page_script_never_parses_data_as_html() -> None:
    sources = {path.name: path.read_text("utf-8") for path in pages.static_dir().glob("*.js")}
    assert sources, "the viewer ships its scripts"
    for name, source in sources.items():
        for sink in (
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "eval(",
            "new Function",
        ):
            assert sink not in source, f"{name} uses {sink}"
    # every element is built by the one DOM helper, whose text goes in as text nodes
    assert re.search(r"document\.createTextNode", sources["dom.js"])
