"""The SQLite store on its own: flattening, idempotence, updates, trees, listings, persistence, threads."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from galileo.collector.store import (
    RecordUpdate,
    Store,
    records_from_spans_request,
    records_from_traces_request,
)


def _id() -> str:
    return str(uuid.uuid4())


def _span(span_type: str, name: str, created_at: str, **fields: Any) -> dict[str, Any]:
    span: dict[str, Any] = {"type": span_type, "name": name, "created_at": created_at, "id": _id()}
    span.update(fields)
    return span


def _trace(name: str, created_at: str = "2026-01-01T00:00:00Z", **fields: Any) -> dict[str, Any]:
    return {"type": "trace", "name": name, "created_at": created_at, "id": _id(), "input": "q", **fields}


@pytest.fixture
def store(tmp_path: Path) -> Any:
    opened = Store(str(tmp_path / "store.db"))
    yield opened
    opened.close()


@pytest.fixture
def project(store: Store) -> str:
    return store.create_project("demo", "gen_ai")[0].id


def _names(nodes: list[dict[str, Any]]) -> list[str]:
    return [node["name"] for node in nodes]


def test_nested_spans_are_flattened_and_linked_to_their_container(store: Store, project: str) -> None:
    llm = _span("llm", "llm", "2026-01-01T00:00:02Z")
    workflow = _span("workflow", "wf", "2026-01-01T00:00:01Z", spans=[llm])
    trace = _trace("t", spans=[workflow])
    records = records_from_traces_request({"traces": [trace], "log_stream_id": None}, project)

    assert [(r.type, r.trace_id, r.parent_id) for r in records] == [
        ("trace", trace["id"], None),
        ("workflow", trace["id"], trace["id"]),
        ("llm", trace["id"], workflow["id"]),
    ]
    assert all("spans" not in r.body for r in records)
    assert store.add_records(records) == 3

    tree = store.trace_tree(trace["id"])
    assert tree is not None
    assert tree["is_complete"] is True  # the schema's default for a traces request
    assert _names(tree["spans"]) == ["wf"]
    assert _names(tree["spans"][0]["spans"]) == ["llm"]
    assert tree["spans"][0]["spans"][0]["parent_id"] == workflow["id"]
    assert tree["orphans"] == []


def test_top_level_spans_take_the_request_links(project: str) -> None:
    trace_id, parent_id = _id(), _id()
    child = _span("tool", "tool", "2026-01-01T00:00:00Z")
    body = {
        "trace_id": trace_id,
        "parent_id": parent_id,
        "spans": [_span("agent", "a", "2026-01-01T00:00:00Z")],
    }
    body["spans"][0]["spans"] = [child]
    first, second = records_from_spans_request(body, project)
    assert (first.trace_id, first.parent_id) == (trace_id, parent_id)
    assert (second.trace_id, second.parent_id) == (trace_id, first.id)


def test_missing_id_and_created_at_are_filled_in(project: str) -> None:
    (record,) = records_from_traces_request({"traces": [{"type": "trace", "input": "q"}]}, project)
    assert uuid.UUID(record.id).version == 4
    assert record.body["id"] == record.id
    assert record.body["created_at"].endswith("Z")


def test_a_stored_id_is_never_duplicated_and_the_first_write_wins(store: Store, project: str) -> None:
    trace = _trace("first")
    assert store.add_records(records_from_traces_request({"traces": [trace]}, project)) == 1
    retried = {**trace, "name": "second"}
    assert store.add_records(records_from_traces_request({"traces": [retried]}, project)) == 0
    tree = store.trace_tree(trace["id"])
    assert tree is not None and tree["name"] == "first"
    assert len(store.latest_traces()) == 1


def test_updates_set_fields_add_tags_and_put_duration_into_metrics(store: Store, project: str) -> None:
    trace = _trace("t", tags=["a"], metrics={"duration_ns": None, "custom": 1})
    body = {"traces": [trace], "is_complete": False}
    store.add_records(records_from_traces_request(body, project))

    update = RecordUpdate(
        output="done", status_code=200, tags=["b", "a", "b"], duration_ns=5, is_complete=True
    )
    record = store.update_record(trace["id"], update, trace=True)
    assert record is not None
    assert record.is_complete is True
    assert record.body["output"] == "done"
    assert record.body["input"] == "q"  # None leaves a field alone
    assert record.body["status_code"] == 200
    assert record.body["tags"] == ["a", "b"]
    assert record.body["metrics"] == {"duration_ns": 5, "custom": 1}

    # A later update saying is_complete=False does not reopen the trace.
    store.update_record(trace["id"], RecordUpdate(is_complete=False), trace=True)
    tree = store.trace_tree(trace["id"])
    assert tree is not None and tree["is_complete"] is True


def test_update_of_a_missing_record_or_the_wrong_kind_returns_none(store: Store, project: str) -> None:
    trace = _trace("t")
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    assert store.update_record(_id(), RecordUpdate(output="x"), trace=True) is None
    assert store.update_record(trace["id"], RecordUpdate(output="x"), trace=False) is None


def test_late_parent_moves_span_from_orphans_into_the_tree(store: Store, project: str) -> None:
    trace = _trace("t")
    workflow = _span("workflow", "wf", "2026-01-01T00:00:01Z")
    llm = _span("llm", "llm", "2026-01-01T00:00:02Z")
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    store.add_records(
        records_from_spans_request(
            {"trace_id": trace["id"], "parent_id": workflow["id"], "spans": [llm]}, project
        )
    )
    tree = store.trace_tree(trace["id"])
    assert tree is not None
    assert tree["spans"] == []
    assert _names(tree["orphans"]) == ["llm"]

    store.add_records(
        records_from_spans_request(
            {"trace_id": trace["id"], "parent_id": trace["id"], "spans": [workflow]}, project
        )
    )
    tree = store.trace_tree(trace["id"])
    assert tree is not None
    assert _names(tree["spans"]) == ["wf"]
    assert _names(tree["spans"][0]["spans"]) == ["llm"]
    assert tree["orphans"] == []


def test_children_are_ordered_by_created_at_across_timestamp_formats_then_arrival(
    store: Store, project: str
) -> None:
    trace = _trace("t")
    spans = [
        _span("tool", "third", "2026-01-01T01:00:00.5+01:00"),  # 00:00:00.5 UTC
        _span("tool", "first", "2026-01-01T00:00:00Z"),
        _span("tool", "fourth", "2026-01-01T00:00:00.500000Z"),  # same instant as "third", arrived later
        _span("tool", "second", "2026-01-01T00:00:00.1234567Z"),
    ]
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    store.add_records(
        records_from_spans_request(
            {"trace_id": trace["id"], "parent_id": trace["id"], "spans": spans}, project
        )
    )
    tree = store.trace_tree(trace["id"])
    assert tree is not None
    assert _names(tree["spans"]) == ["first", "second", "third", "fourth"]


def test_a_parent_cycle_does_not_hang_and_is_reported_as_orphans(store: Store, project: str) -> None:
    trace = _trace("t")
    a_id, b_id = _id(), _id()
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    for span_id, parent in ((a_id, b_id), (b_id, a_id)):
        span = {"type": "tool", "name": span_id[:4], "id": span_id, "created_at": "2026-01-01T00:00:00Z"}
        store.add_records(
            records_from_spans_request(
                {"trace_id": trace["id"], "parent_id": parent, "spans": [span]}, project
            )
        )
    tree = store.trace_tree(trace["id"])
    assert tree is not None
    assert len(tree["orphans"]) == 1
    assert len(tree["orphans"][0]["spans"]) == 1


def test_no_tree_without_any_record_of_the_trace(store: Store, project: str) -> None:
    store.add_records(records_from_traces_request({"traces": [_trace("other")]}, project))
    assert store.trace_tree(_id()) is None


def _spans(store: Store, project: str, trace_id: str, parent_id: str, *spans: Any, stream: str = "") -> None:
    body = {"trace_id": trace_id, "parent_id": parent_id, "spans": list(spans)}
    store.add_records(records_from_spans_request({**body, "log_stream_id": stream or None}, project))


def test_a_trace_without_its_record_stands_in_with_the_spans_that_arrived(store: Store, project: str) -> None:
    other = store.create_project("other", "gen_ai")[0].id
    trace_id = _id()
    workflow = _span("workflow", "wf", "2026-01-01T00:00:02Z")
    child = _span("tool", "child", "2026-01-01T00:00:01Z", status_code=500)
    lost = _span("tool", "lost", "2026-01-01T00:00:03Z")
    _spans(store, project, trace_id, trace_id, workflow)
    _spans(store, project, trace_id, workflow["id"], child)
    _spans(store, project, trace_id, _id(), lost)

    tree = store.trace_tree(trace_id)
    assert tree is not None
    assert (tree["type"], tree["id"], tree["name"]) == ("trace", trace_id, None)
    assert (tree["trace_record"], tree["is_complete"], tree["error_count"]) == (False, False, 1)
    assert (tree["project_id"], tree["log_stream_id"]) == (None, None)
    assert tree["created_at"] == "2026-01-01T00:00:01Z"  # its earliest span's
    assert _names(tree["spans"]) == ["wf"]
    assert _names(tree["spans"][0]["spans"]) == ["child"]
    assert _names(tree["orphans"]) == ["lost"]

    (summary,) = store.latest_traces()
    assert summary == {
        "id": trace_id,
        "name": None,
        "created_at": "2026-01-01T00:00:01Z",
        "project_id": None,
        "project_name": None,
        "log_stream_id": None,
        "log_stream_name": None,
        "session_id": None,
        "is_complete": False,
        "status_code": None,
        "duration_ns": None,
        "span_count": 3,
        "error_count": 1,
        "trace_record": False,
    }
    assert store.latest_traces(project_id=project) == [summary]  # listed where its spans were logged
    assert store.latest_traces(project_id=other) == []

    late = _trace("late", "2026-01-01T00:00:00Z", id=trace_id, status_code=200)
    store.add_records(records_from_traces_request({"traces": [late], "is_complete": True}, project))
    tree = store.trace_tree(trace_id)
    assert tree is not None
    assert (tree["name"], tree["trace_record"], tree["is_complete"]) == ("late", True, True)
    assert tree["project_id"] == project
    assert _names(tree["spans"]) == ["wf"] and _names(tree["orphans"]) == ["lost"]
    (summary,) = store.latest_traces()  # shown once, from its record
    assert (summary["name"], summary["trace_record"], summary["span_count"]) == ("late", True, 3)
    assert (summary["project_id"], summary["status_code"], summary["error_count"]) == (project, 200, 1)


def test_traces_without_records_are_listed_by_their_earliest_span_among_the_others(
    store: Store, project: str
) -> None:
    gateway = store.create_log_stream(project, "gateway")[0].id
    retriever = store.create_log_stream(project, "retriever")[0].id
    for name, at in (("one", "2026-01-01T00:00:01Z"), ("two", "2026-01-01T00:00:02Z")):
        trace = _trace(name, at)
        store.add_records(records_from_traces_request({"traces": [trace], "log_stream_id": gateway}, project))
    missing = _id()
    _spans(store, project, missing, missing, _span("workflow", "w", "2026-01-01T00:00:03Z"), stream=gateway)

    def listed(**filters: Any) -> list[str | None]:
        return [s["name"] if s["trace_record"] else s["id"] for s in store.latest_traces(**filters)]

    assert listed() == [missing, "two", "one"]
    # an earlier span, from another log stream: the trace moves back, and is listed once
    _spans(store, project, missing, _id(), _span("tool", "t", "2026-01-01T00:00:00.5Z"), stream=retriever)
    assert listed() == ["two", "one", missing]
    assert listed(project_id=project) == ["two", "one", missing]
    assert listed(log_stream_id=retriever) == [missing]
    assert listed(log_stream_id=gateway) == ["two", "one", missing]
    assert store.latest_traces()[2]["created_at"] == "2026-01-01T00:00:00.5Z"
    assert listed(limit=2) == ["two", "one"]


def test_error_counts_follow_spans_as_they_arrive_and_change(store: Store, project: str) -> None:
    trace = _trace("t", status_code=503)  # the trace's own status is not in the count
    ok, failed, plain = (
        _span("llm", "ok", "2026-01-01T00:00:01Z", status_code=200),
        _span("tool", "failed", "2026-01-01T00:00:02Z", status_code=500),
        _span("tool", "plain", "2026-01-01T00:00:03Z"),
    )
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    _spans(store, project, trace["id"], trace["id"], ok, failed, plain)
    _spans(store, project, trace["id"], trace["id"], failed)  # a retried POST counts once

    def errors() -> tuple[int, int]:
        tree = store.trace_tree(trace["id"])
        assert tree is not None
        return store.latest_traces()[0]["error_count"], tree["error_count"]

    assert errors() == (1, 1)
    assert store.latest_traces()[0]["status_code"] == 503
    assert store.update_record(plain["id"], RecordUpdate(status_code=404), trace=False) is not None
    assert errors() == (2, 2)
    assert store.update_record(failed["id"], RecordUpdate(status_code=200), trace=False) is not None
    assert errors() == (1, 1)
    assert store.update_record(plain["id"], RecordUpdate(output="still 404"), trace=False) is not None
    assert errors() == (1, 1)
    assert store.update_record(trace["id"], RecordUpdate(status_code=500), trace=True) is not None
    assert errors() == (1, 1)


def test_latest_traces_newest_first_with_filters_and_counts(store: Store, project: str) -> None:
    other_project = store.create_project("other", "gen_ai")[0].id
    stream = store.create_log_stream(project, "svc")[0]
    old = _trace("old", "2026-01-01T00:00:00Z", spans=[_span("llm", "l", "2026-01-01T00:00:00Z")])
    new = _trace("new", "2026-01-02T00:00:00Z")
    elsewhere = _trace("elsewhere", "2026-01-03T00:00:00Z")
    store.add_records(
        records_from_traces_request({"traces": [new, old], "log_stream_id": stream.id}, project)
    )
    store.add_records(records_from_traces_request({"traces": [elsewhere]}, other_project))

    summaries = store.latest_traces()
    assert [s["name"] for s in summaries] == ["elsewhere", "new", "old"]
    assert summaries[2]["span_count"] == 1
    assert summaries[2]["project_name"] == "demo"
    assert summaries[2]["log_stream_name"] == "svc"
    assert [s["name"] for s in store.latest_traces(limit=1)] == ["elsewhere"]
    assert [s["name"] for s in store.latest_traces(project_id=project)] == ["new", "old"]
    assert [s["name"] for s in store.latest_traces(log_stream_id=stream.id)] == ["new", "old"]


def test_projects_and_log_streams_converge_by_name(store: Store) -> None:
    first, created = store.create_project("demo", "gen_ai")
    again, created_again = store.create_project("demo", "gen_ai")
    assert created and not created_again and again == first
    assert store.find_projects(name="demo") == [first]
    assert store.find_projects(name="demo", project_type="other") == []
    assert store.find_projects(name="missing") == []

    streams = [store.create_log_stream(first.id, name)[0] for name in ("a", "b", "c")]
    assert store.create_log_stream(first.id, "a")[0] == streams[0]
    assert store.list_log_streams(first.id) == streams
    assert store.list_log_streams(first.id, offset=1, limit=1) == [streams[1]]


def test_data_secret_and_user_survive_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "reopen.db")
    store = Store(path)
    project = store.create_project("demo", "gen_ai")[0]
    trace = _trace("kept")
    store.add_records(records_from_traces_request({"traces": [trace]}, project.id))
    secret, user = store.secret, store.user_id
    store.close()

    reopened = Store(path)
    try:
        assert (reopened.secret, reopened.user_id) == (secret, user)
        assert reopened.get_project(project.id) == project
        tree = reopened.trace_tree(trace["id"])
        assert tree is not None and tree["name"] == "kept"
    finally:
        reopened.close()


def test_concurrent_writers_lose_nothing(store: Store, project: str) -> None:
    trace = _trace("busy")
    store.add_records(records_from_traces_request({"traces": [trace]}, project))
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for index in range(25):
                span = _span("tool", f"{worker}-{index}", "2026-01-01T00:00:00Z")
                body = {"trace_id": trace["id"], "parent_id": trace["id"], "spans": [span]}
                store.add_records(records_from_spans_request(body, project))
                store.create_project(f"p{index}", "gen_ai")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    tree = store.trace_tree(trace["id"])
    assert tree is not None and len(tree["spans"]) == 200
    assert len(store.find_projects()) == 26
