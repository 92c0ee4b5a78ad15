"""The viewer ships inside the package (templates and static files are package data, found where installed),
and a store written by an earlier collector is migrated for it."""

from __future__ import annotations

import configparser
import fnmatch
import json
import sqlite3
import uuid
from importlib import resources
from pathlib import Path
from typing import Any

from galileo.collector._schema import MIGRATIONS
from galileo.collector.store import Store, records_from_spans_request, records_from_traces_request
from galileo.collector.viewer import pages, queries

ROOT = Path(__file__).resolve().parents[2]
VIEWER = ROOT / "galileo" / "collector" / "viewer"


def test_templates_and_static_files_are_found_from_the_installed_package() -> None:
    package = resources.files("galileo.collector.viewer")
    for name in ("templates/page.html", "static/viewer.js", "static/viewer.css", "static/dom.js"):
        assert package.joinpath(name).is_file(), name
    assert pages.templates_dir() == Path(str(package.joinpath("templates")))
    assert '<main id="app"' in pages.render(
        "page.html", title="t", view="list", trace_id="", version="v", static=pages.STATIC_PATH
    )


def test_every_template_and_static_file_is_package_data_in_setup_cfg() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["galileo.collector.viewer"].split(",")]
    shipped = sorted(
        path.relative_to(VIEWER).as_posix()
        for folder in ("templates", "static")
        for path in (VIEWER / folder).rglob("*")
        if path.is_file()
    )
    assert shipped, "the viewer has templates and static files"
    missing = [name for name in shipped if not any(fnmatch.fnmatch(name, p) for p in patterns)]
    assert missing == [], "add them to [options.package_data] in setup.cfg, or the wheel lacks them"


_SCHEMA_V0 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE projects (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, created_by TEXT NOT NULL);
CREATE TABLE log_streams (id TEXT PRIMARY KEY, project_id TEXT NOT NULL, name TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, created_by TEXT NOT NULL, UNIQUE (project_id, name));
CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, type TEXT NOT NULL,
    trace_id TEXT NOT NULL, parent_id TEXT, project_id TEXT NOT NULL, log_stream_id TEXT, name TEXT,
    created_at TEXT NOT NULL, is_complete INTEGER, body TEXT NOT NULL);
CREATE INDEX records_trace_id ON records (trace_id);
CREATE INDEX records_trace_created_at ON records (created_at) WHERE type = 'trace';
"""


def test_a_store_of_an_earlier_collector_is_migrated_for_the_viewer(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    project, gateway, retriever = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    trace_id, span_id = str(uuid.uuid4()), str(uuid.uuid4())
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V0)
        db.execute("INSERT INTO projects VALUES (?, 'old', 'gen_ai', 'x', 'x', 'u')", (project,))
        db.executemany(
            "INSERT INTO log_streams VALUES (?, ?, ?, 'x', 'x', 'u')",
            [(gateway, project, "gateway"), (retriever, project, "retriever")],
        )
        rows = [
            (trace_id, "trace", trace_id, None, gateway, 1),
            (span_id, "workflow", trace_id, trace_id, gateway, None),
            (str(uuid.uuid4()), "retriever", trace_id, span_id, retriever, None),
        ]
        db.executemany(
            "INSERT INTO records (id, type, trace_id, parent_id, project_id, log_stream_id, name, created_at,"
            " is_complete, body) VALUES (?, ?, ?, ?, ?, ?, 'n', '2026-01-01T00:00:00.000000Z', ?, ?)",
            [(i, t, tr, p, project, s, c, json.dumps({"id": i, "type": t})) for i, t, tr, p, s, c in rows],
        )
    store = Store(str(path))
    try:
        page = queries.trace_page(store, queries.Filters(), limit=10)
        (summary,) = page["traces"]
        assert summary["span_count"] == 2
        assert [(s["log_stream_name"], s["spans"]) for s in summary["services"]] == [
            ("gateway", 1),
            ("retriever", 1),
        ]
        assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        indexes = {row["name"] for row in store.query("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "records_trace_created_at" not in indexes and "records_traces_newest" in indexes
    finally:
        store.close()
    reopened = Store(str(path))  # opening again changes nothing
    try:
        assert queries.trace_page(reopened, queries.Filters(), limit=10)["traces"][0]["span_count"] == 2
    finally:
        reopened.close()


# What schema version 1 (the first viewer release) added to version 0, as such databases hold it.
_SCHEMA_V1 = """
CREATE TABLE trace_services (trace_id TEXT NOT NULL, project_id TEXT NOT NULL, log_stream_id TEXT NOT NULL,
    spans INTEGER NOT NULL, first_seq INTEGER NOT NULL, PRIMARY KEY (trace_id, project_id, log_stream_id))
    WITHOUT ROWID;
CREATE TRIGGER records_count_services AFTER INSERT ON records BEGIN
    INSERT INTO trace_services (trace_id, project_id, log_stream_id, spans, first_seq)
    VALUES (NEW.trace_id, NEW.project_id, COALESCE(NEW.log_stream_id, ''), NEW.type != 'trace', NEW.seq)
    ON CONFLICT DO UPDATE SET spans = spans + excluded.spans; END;
CREATE INDEX records_traces_newest ON records (created_at, seq, name) WHERE type = 'trace';
CREATE INDEX records_traces_by_project ON records (project_id, created_at, seq, name) WHERE type = 'trace';
CREATE INDEX records_traces_by_log_stream ON records (log_stream_id, created_at, seq, name)
    WHERE type = 'trace';
DROP INDEX records_trace_created_at;
PRAGMA user_version = 1;
"""


def test_a_store_of_schema_version_1_lists_missing_traces_and_counts_errors_once_migrated(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v1.db"
    project, gateway, retriever = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    trace_id, missing_id, workflow_id = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())

    def record(record_id: str, kind: str, trace: str, stream: str, second: int, status: int | None) -> Any:
        at = f"2026-01-01T00:00:0{second}Z"
        body = json.dumps({"id": record_id, "type": kind, "created_at": at, "status_code": status})
        return (record_id, kind, trace, stream, f"{at[:-1]}.000000Z", body)

    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA_V0 + _SCHEMA_V1)
        db.execute("INSERT INTO projects VALUES (?, 'old', 'gen_ai', 'x', 'x', 'u')", (project,))
        db.executemany(
            "INSERT INTO log_streams VALUES (?, ?, ?, 'x', 'x', 'u')",
            [(gateway, project, "gateway"), (retriever, project, "retriever")],
        )
        rows = [
            record(trace_id, "trace", trace_id, gateway, 1, 200),
            record(str(uuid.uuid4()), "tool", trace_id, gateway, 2, 500),
            record(str(uuid.uuid4()), "tool", trace_id, retriever, 3, 404),
            record(workflow_id, "workflow", missing_id, retriever, 5, None),
            record(str(uuid.uuid4()), "tool", missing_id, gateway, 4, 502),
        ]
        db.executemany(
            "INSERT INTO records (id, type, trace_id, parent_id, project_id, log_stream_id, name, created_at,"
            " is_complete, body) VALUES (?, ?, ?, NULL, ?, ?, 'n', ?, 1, ?)",
            [(i, kind, trace, project, stream, at, body) for i, kind, trace, stream, at, body in rows],
        )
    store = Store(str(path))
    try:
        assert store.query("PRAGMA user_version")[0][0] == len(MIGRATIONS)
        summaries = store.latest_traces()
        assert [(s["id"], s["trace_record"]) for s in summaries] == [(missing_id, False), (trace_id, True)]
        assert [(s["span_count"], s["error_count"]) for s in summaries] == [(2, 1), (2, 2)]
        assert summaries[0]["created_at"] == "2026-01-01T00:00:04Z"  # its earliest span's
        assert [s["id"] for s in store.latest_traces(log_stream_id=retriever)] == [missing_id]

        late = {
            "id": str(uuid.uuid4()),
            "type": "tool",
            "created_at": "2026-01-01T00:00:06Z",
            "status_code": 500,
        }
        store.add_records(records_from_spans_request({"trace_id": trace_id, "spans": [late]}, project))
        page = queries.trace_page(store, queries.Filters(), limit=10)["traces"]
        assert [(t["id"], t["span_count"], t["error_count"]) for t in page] == [
            (missing_id, 2, 1),
            (trace_id, 3, 3),
        ]
        trace = {"id": missing_id, "type": "trace", "name": "arrived", "created_at": "2026-01-01T00:00:07Z"}
        store.add_records(records_from_traces_request({"traces": [trace]}, project))
        assert [(s["name"], s["trace_record"]) for s in store.latest_traces()] == [
            ("arrived", True),
            ("n", True),
        ]
    finally:
        store.close()
