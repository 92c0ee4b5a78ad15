"""The collector's session routes and the trace API's session filter, through a real collector process.

``POST /v2/projects/{pid}/sessions`` and ``/sessions/search`` as WIRE.md "Sessions" and session_schemas.json
describe them (and as the published SDK 2.7 sends them), the ingest answer's ``session_id``, and
``GET /api/traces?session_id=`` / ``GET /api/viewer/traces?session_id=``.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess

from galileo.collector._schema import MIGRATIONS, SCHEMA
from galileo.collector._validation import validate
from galileo.collector.store import Store, records_from_traces_request


def _id() -> str:
    return str(uuid.uuid4())


class _Api:
    """A logged-in client of the collector with a project of its own and two log streams."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.url = collector.url
        self.headers = collector.auth_headers()
        self.project = self.post("/projects", {"name": f"sessions-{_id()}", "type": "gen_ai"}).json()
        self.pid = self.project["id"]
        self.stream = self.post(f"/projects/{self.pid}/log_streams", {"name": "a"}).json()["id"]
        self.other = self.post(f"/projects/{self.pid}/log_streams", {"name": "b"}).json()["id"]

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, headers=self.headers, timeout=10)

    def create(self, **fields: Any) -> requests.Response:
        return self.post(f"/v2/projects/{self.pid}/sessions", {"log_stream_id": self.stream, **fields})

    def search(self, external_id: str, **fields: Any) -> list[dict[str, Any]]:
        body = {
            "log_stream_id": self.stream,
            "filters": [{"type": "text", "column_id": "external_id", "operator": "eq", "value": external_id}],
            **fields,
        }
        answer = self.post(f"/v2/projects/{self.pid}/sessions/search", body)
        assert answer.status_code == 200, answer.text
        records: list[dict[str, Any]] = answer.json()["records"]
        return records

    def ingest(self, name: str, session_id: str | None) -> requests.Response:
        trace = {
            "type": "trace",
            "id": _id(),
            "name": name,
            "input": "q",
            "created_at": "2026-01-01T00:00:00Z",
        }
        body = {"log_stream_id": self.stream, "traces": [trace], "session_id": session_id}
        return self.post(f"/v2/projects/{self.pid}/traces", body)


def test_create_session_answers_a_session_create_response(collector: CollectorProcess) -> None:
    api = _Api(collector)
    previous = api.create(name="first").json()["id"]
    answer = api.create(
        name="chat", previous_session_id=previous, external_id="conv-1", user_metadata={"u": "1"}
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert validate("SessionCreateResponse", body) == []
    assert (body["name"], body["project_id"], body["project_name"]) == ("chat", api.pid, api.project["name"])
    assert (body["previous_session_id"], body["external_id"]) == (previous, "conv-1")
    (found,) = api.search("conv-1")
    assert (found["id"], found["type"], found["user_metadata"]) == (body["id"], "session", {"u": "1"})


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"previous_session_id": "not-a-uuid"}, "previous_session_id"),
        ({"user_metadata": {"n": 1}}, "user_metadata"),
        ({"name": 5}, "name"),
    ],
)
def test_create_session_validates_the_body(
    collector: CollectorProcess, fields: dict[str, Any], where: str
) -> None:
    answer = _Api(collector).create(**fields)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"][:2] == ["body", where]


def test_unknown_project_is_404(collector: CollectorProcess) -> None:
    api = _Api(collector)
    assert api.post(f"/v2/projects/{_id()}/sessions", {"name": "x"}).status_code == 404
    assert api.post(f"/v2/projects/{_id()}/sessions/search", {"filters": []}).status_code == 404


def test_sessions_need_a_token(collector: CollectorProcess) -> None:
    api = _Api(collector)
    answer = requests.post(f"{api.url}/v2/projects/{api.pid}/sessions", json={}, timeout=10)
    assert answer.status_code == 401


def test_search_is_scoped_to_the_log_stream_or_experiment(collector: CollectorProcess) -> None:
    api = _Api(collector)
    here = api.create(external_id="conv").json()["id"]
    there = api.post(f"/v2/projects/{api.pid}/sessions", {"log_stream_id": api.other, "external_id": "conv"})
    experiment = _id()
    in_experiment = api.post(
        f"/v2/projects/{api.pid}/sessions", {"experiment_id": experiment, "external_id": "conv"}
    )
    assert [s["id"] for s in api.search("conv")] == [here]
    assert [s["id"] for s in api.search("conv", log_stream_id=api.other)] == [there.json()["id"]]
    assert [s["id"] for s in api.search("conv", log_stream_id=None, experiment_id=experiment)] == [
        in_experiment.json()["id"]
    ]
    assert api.search("another conversation") == []


def test_search_reads_the_published_sdks_filter_spelling(collector: CollectorProcess) -> None:
    """The published SDK 2.7 dumps its filter with ``name`` where the schema has ``column_id``."""
    api = _Api(collector)
    session_id = api.create(external_id="published").json()["id"]
    body = {
        "log_stream_id": api.stream,
        "experiment_id": None,
        "filters": [{"type": "text", "name": "external_id", "value": "published", "operator": "eq"}],
    }
    answer = api.post(f"/v2/projects/{api.pid}/sessions/search", body)
    assert answer.status_code == 200, answer.text
    assert [s["id"] for s in answer.json()["records"]] == [session_id]


def test_search_refuses_filters_it_does_not_serve(collector: CollectorProcess) -> None:
    api = _Api(collector)
    body = {"filters": [{"type": "text", "column_id": "name", "operator": "contains", "value": "x"}]}
    answer = api.post(f"/v2/projects/{api.pid}/sessions/search", body)
    assert answer.status_code == 400
    assert "external_id" in answer.json()["detail"]
    bad = api.post(f"/v2/projects/{api.pid}/sessions/search", {"filters": [{"type": "text"}]})
    assert bad.status_code == 422


def test_traces_keep_their_session_and_the_trace_api_filters_by_it(collector: CollectorProcess) -> None:
    api = _Api(collector)
    session_id = api.create(name="chat").json()["id"]
    answer = api.ingest("in session", session_id)
    assert answer.status_code == 200 and answer.json()["session_id"] == session_id
    assert api.ingest("no session", None).json()["session_id"] is None

    listed = requests.get(f"{api.url}/api/traces", params={"session_id": session_id}, timeout=10).json()
    assert [(t["name"], t["session_id"]) for t in listed] == [("in session", session_id)]
    tree = requests.get(f"{api.url}/api/traces/{listed[0]['id']}", timeout=10).json()
    assert tree["session_id"] == session_id
    viewer = requests.get(
        f"{api.url}/api/viewer/traces", params={"session_id": session_id}, timeout=10
    ).json()
    assert [t["name"] for t in viewer["traces"]] == ["in session"]
    for path in ("/api/traces", "/api/viewer/traces"):
        bad = requests.get(f"{api.url}{path}", params={"session_id": "nope"}, timeout=10)
        assert bad.status_code == 400 and "session_id" in bad.text


def test_a_database_of_schema_version_2_gains_sessions(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(SCHEMA)
    for version, statements in enumerate(MIGRATIONS[:2], start=1):
        for statement in statements:
            db.execute(statement)
        db.execute(f"PRAGMA user_version = {version}")
    db.close()
    store = Store(path)
    try:
        assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        project = store.create_project("p", "gen_ai")[0].id
        session = store.create_session(
            project, "", name="s", previous_session_id=None, external_id="e", user_metadata=None
        )
        trace = {"type": "trace", "id": _id(), "name": "t", "created_at": "2026-01-01T00:00:00Z"}
        store.add_records(
            records_from_traces_request({"traces": [trace], "session_id": session["id"]}, project)
        )
        assert [t["session_id"] for t in store.latest_traces(session_id=session["id"])] == [session["id"]]
        assert [s["id"] for s in store.find_sessions(project, "", external_id="e")] == [session["id"]]
    finally:
        store.close()
