"""The collector store's SQLite schema, its migrations, and the one query its list indexes are built for.

Tables (``SCHEMA`` creates the first four; ``MIGRATIONS`` bring an existing database up to date):

``meta``, ``projects``, ``log_streams``, ``records``
    see :mod:`galileo.collector.store`.
``trace_services`` (schema version 1; ``errors`` since version 2)
    per trace and per (project, log stream) its records arrived with: how many spans came from there, how
    many of those failed (a numeric ``status_code`` of 400 or more, the trace record itself not counted) and
    the ``seq`` of the first record from there. Triggers keep it current on every insert and on every update
    of a span's body (a PATCH may set a status code later).
``sessions`` (version 3)
    sessions created through ``POST /v2/projects/{pid}/sessions``, each in a log stream or an experiment
    (``location``: the one it was created in, ``''`` for neither), found again by ``external_id`` there.
    ``records.session_id`` (version 3) is the session a trace record's ingest body named.
``otel_waiting``, ``otel_stand_ins`` (version 4)
    OTLP spans waiting for their parent, and the trace records made for root OTel spans: see
    :mod:`galileo.collector._otlp_records`.
``missing_traces`` (version 2)
    the traces whose trace record has not arrived although some of their spans have: one row per such trace
    and per (project, log stream) its spans arrived with, each holding the trace's earliest span
    (``created_at`` then ``seq``), which stands in for the trace's start. Triggers add rows as spans arrive
    and delete the trace's rows when its trace record does.

A log stream id is ``''`` in both tables when the records came without one. The list of traces, newest first,
is read from covering partial indexes on ``records`` (trace records) and from ``missing_traces``, merged:
:func:`newest_traces` builds that query, so that each page costs a few index steps per trace shown,
whatever the store's size and however deep the page.

Migrations are append-only: a database whose ``PRAGMA user_version`` is below a migration's number runs it,
in one transaction, so an existing database is brought up to date when a newer collector opens it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["MIGRATIONS", "SCHEMA", "newest_traces"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS log_streams (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    created_by TEXT NOT NULL,
    UNIQUE (project_id, name)
);
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    trace_id TEXT NOT NULL,
    parent_id TEXT,
    project_id TEXT NOT NULL,
    log_stream_id TEXT,
    name TEXT,
    created_at TEXT NOT NULL,
    is_complete INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS records_trace_id ON records (trace_id);
"""


def _failed(body: str) -> str:
    """SQL that is 1 when the JSON text ``body`` holds a numeric ``status_code`` of 400 or more, else 0."""
    return (
        "(SELECT typeof(code) IN ('integer', 'real') AND code >= 400"
        f" FROM (SELECT json_extract({body}, '$.status_code') AS code))"
    )


def _earliest(column: str) -> str:
    """SQL for ``column`` of the earliest span (``created_at``, then ``seq``) of the trace ``t.trace_id``."""
    return (
        f"(SELECT {column} FROM records r WHERE r.trace_id = t.trace_id AND r.type != 'trace'"
        " ORDER BY r.created_at, r.seq LIMIT 1)"
    )


#: SQL: the waiting OTLP span's parent is the record ``NEW`` (by mapped id, uuid prefix or ``otel.span_id``).
_ADOPTS = (
    "(parent_id = NEW.id"
    " OR parent_span = substr(NEW.id, 1, 8) || substr(NEW.id, 10, 4) || substr(NEW.id, 15, 4)"
    " OR parent_span = json_extract(NEW.body, '$.user_metadata.\"otel.span_id\"'))"
)


# Each migration is a tuple of statements; never edit one that was released, append a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: what the trace viewer lists fast at any size. ``trace_services`` keeps, per trace and per
    # (project, log stream) its records arrived with, how many spans came from there and when the first
    # record did; a trigger maintains it on every insert (``INSERT OR IGNORE`` skips are not inserts, so a
    # retried POST counts once). Covering partial indexes serve the newest-first trace list, filtered by
    # project or log stream and searched by name, without reading record bodies.
    (
        "CREATE TABLE IF NOT EXISTS trace_services ("
        " trace_id TEXT NOT NULL, project_id TEXT NOT NULL, log_stream_id TEXT NOT NULL,"
        " spans INTEGER NOT NULL, first_seq INTEGER NOT NULL,"
        " PRIMARY KEY (trace_id, project_id, log_stream_id)) WITHOUT ROWID",
        "INSERT OR IGNORE INTO trace_services (trace_id, project_id, log_stream_id, spans, first_seq)"
        " SELECT trace_id, project_id, COALESCE(log_stream_id, ''), SUM(type != 'trace'), MIN(seq)"
        " FROM records GROUP BY trace_id, project_id, COALESCE(log_stream_id, '')",
        "CREATE TRIGGER IF NOT EXISTS records_count_services AFTER INSERT ON records BEGIN"
        " INSERT INTO trace_services (trace_id, project_id, log_stream_id, spans, first_seq)"
        " VALUES (NEW.trace_id, NEW.project_id, COALESCE(NEW.log_stream_id, ''),"
        " NEW.type != 'trace', NEW.seq)"
        " ON CONFLICT DO UPDATE SET spans = spans + excluded.spans; END",
        "CREATE INDEX IF NOT EXISTS records_traces_newest"
        " ON records (created_at, seq, name) WHERE type = 'trace'",
        "CREATE INDEX IF NOT EXISTS records_traces_by_project"
        " ON records (project_id, created_at, seq, name) WHERE type = 'trace'",
        "CREATE INDEX IF NOT EXISTS records_traces_by_log_stream"
        " ON records (log_stream_id, created_at, seq, name) WHERE type = 'trace'",
        "DROP INDEX IF EXISTS records_trace_created_at",
    ),
    # 2: failed spans counted per trace and location (``trace_services.errors``), kept on insert and on
    # update; traces whose trace record is missing listed by their earliest span (``missing_traces``).
    (
        "ALTER TABLE trace_services ADD COLUMN errors INTEGER NOT NULL DEFAULT 0",
        "UPDATE trace_services SET errors = (SELECT COUNT(*) FROM records r"
        " WHERE r.trace_id = trace_services.trace_id AND r.project_id = trace_services.project_id"
        " AND COALESCE(r.log_stream_id, '') = trace_services.log_stream_id AND r.type != 'trace'"
        f" AND {_failed('r.body')})"
        f" WHERE trace_id IN (SELECT trace_id FROM records WHERE type != 'trace' AND {_failed('body')})",
        "DROP TRIGGER IF EXISTS records_count_services",
        "CREATE TRIGGER records_count_services AFTER INSERT ON records BEGIN"
        " INSERT INTO trace_services (trace_id, project_id, log_stream_id, spans, first_seq, errors)"
        " VALUES (NEW.trace_id, NEW.project_id, COALESCE(NEW.log_stream_id, ''),"
        f" NEW.type != 'trace', NEW.seq, NEW.type != 'trace' AND {_failed('NEW.body')})"
        " ON CONFLICT DO UPDATE SET spans = spans + excluded.spans, errors = errors + excluded.errors; END",
        "CREATE TRIGGER records_count_errors AFTER UPDATE OF body ON records"
        f" WHEN NEW.type != 'trace' AND {_failed('NEW.body')} != {_failed('OLD.body')} BEGIN"
        f" UPDATE trace_services SET errors = errors + {_failed('NEW.body')} - {_failed('OLD.body')}"
        " WHERE trace_id = NEW.trace_id AND project_id = NEW.project_id"
        " AND log_stream_id = COALESCE(NEW.log_stream_id, ''); END",
        "CREATE TABLE missing_traces ("
        " trace_id TEXT NOT NULL, project_id TEXT NOT NULL, log_stream_id TEXT NOT NULL,"
        " created_at TEXT NOT NULL, seq INTEGER NOT NULL,"
        " PRIMARY KEY (trace_id, project_id, log_stream_id)) WITHOUT ROWID",
        "INSERT INTO missing_traces (trace_id, project_id, log_stream_id, created_at, seq)"
        f" SELECT t.trace_id, t.project_id, t.log_stream_id, {_earliest('created_at')}, {_earliest('seq')}"
        " FROM trace_services t WHERE t.spans > 0"
        " AND NOT EXISTS (SELECT 1 FROM records r WHERE r.id = t.trace_id AND r.type = 'trace')",
        "CREATE INDEX missing_traces_newest ON missing_traces (created_at, seq)",
        "CREATE INDEX missing_traces_by_project ON missing_traces (project_id, created_at, seq)",
        "CREATE INDEX missing_traces_by_log_stream ON missing_traces (log_stream_id, created_at, seq)",
        # Every row of a trace holds the same (created_at, seq): an earlier span moves them all, a span from
        # a new location copies them.
        "CREATE TRIGGER records_missing_trace AFTER INSERT ON records WHEN NEW.type != 'trace'"
        " AND NOT EXISTS (SELECT 1 FROM records WHERE id = NEW.trace_id AND type = 'trace') BEGIN"
        " UPDATE missing_traces SET created_at = NEW.created_at, seq = NEW.seq"
        " WHERE trace_id = NEW.trace_id AND (created_at, seq) > (NEW.created_at, NEW.seq);"
        " INSERT OR IGNORE INTO missing_traces (trace_id, project_id, log_stream_id, created_at, seq)"
        " VALUES (NEW.trace_id, NEW.project_id, COALESCE(NEW.log_stream_id, ''),"
        " IFNULL((SELECT created_at FROM missing_traces WHERE trace_id = NEW.trace_id"
        " ORDER BY created_at, seq LIMIT 1), NEW.created_at),"
        " IFNULL((SELECT seq FROM missing_traces WHERE trace_id = NEW.trace_id"
        " ORDER BY created_at, seq LIMIT 1), NEW.seq)); END",
        "CREATE TRIGGER records_trace_arrived AFTER INSERT ON records WHEN NEW.type = 'trace' BEGIN"
        " DELETE FROM missing_traces WHERE trace_id = NEW.id; END",
    ),
    # 3: sessions, and the session of each trace record (listed newest first per session).
    (
        "CREATE TABLE sessions ("
        " id TEXT PRIMARY KEY, project_id TEXT NOT NULL, location TEXT NOT NULL, name TEXT,"
        " previous_session_id TEXT, external_id TEXT, user_metadata TEXT, created_at TEXT NOT NULL)",
        "CREATE INDEX sessions_by_external_id ON sessions (project_id, location, external_id)"
        " WHERE external_id IS NOT NULL",
        "ALTER TABLE records ADD COLUMN session_id TEXT",
        "CREATE INDEX records_traces_by_session"
        " ON records (session_id, created_at, seq, name) WHERE type = 'trace' AND session_id IS NOT NULL",
    ),
    # 4: OTLP spans' links (galileo.collector._otlp_records). A span whose OTel parent is not stored waits
    # under its trace; the record that arrives later and is that parent (its id is the parent's mapped id,
    # its uuid starts with the parent's span id, or its metadata names that span id) adopts it. A trace
    # record made for a root OTel span is a stand-in: a trace record sent with its id replaces it.
    (
        "CREATE TABLE otel_waiting ("
        " trace_id TEXT NOT NULL, parent_span TEXT NOT NULL, parent_id TEXT NOT NULL,"
        " record_id TEXT NOT NULL,"
        " PRIMARY KEY (trace_id, parent_span, record_id)) WITHOUT ROWID",
        "CREATE TABLE otel_stand_ins (id TEXT PRIMARY KEY) WITHOUT ROWID",
        "CREATE TRIGGER otel_adopt AFTER INSERT ON records"
        " WHEN EXISTS (SELECT 1 FROM otel_waiting WHERE trace_id = NEW.trace_id) BEGIN"
        " UPDATE records SET parent_id = NEW.id WHERE id IN (SELECT record_id FROM otel_waiting"
        f" WHERE trace_id = NEW.trace_id AND {_ADOPTS});"
        f" DELETE FROM otel_waiting WHERE trace_id = NEW.trace_id AND {_ADOPTS}; END",
        "CREATE TRIGGER otel_stand_in_replaced BEFORE INSERT ON records WHEN NEW.type = 'trace'"
        " AND EXISTS (SELECT 1 FROM otel_stand_ins WHERE id = NEW.id) BEGIN"
        " DELETE FROM records WHERE id = NEW.id; DELETE FROM otel_stand_ins WHERE id = NEW.id; END",
    ),
)


def newest_traces(
    *,
    limit: int,
    project_id: str | None = None,
    log_stream_id: str | None = None,
    session_id: str | None = None,
    record_id: str | None = None,
    name_like: str | None = None,
    before: tuple[str, int] | None = None,
) -> tuple[str, list[Any]]:
    """SQL and parameters for up to ``limit`` traces, newest first (stored ``created_at``, then ``seq``).

    Filters: ``project_id``/``log_stream_id`` (a trace record's own; for a trace without one, any location of
    its spans), ``session_id`` (a trace record's session), ``record_id`` (the trace with that id, or holding
    the span with that id), ``name_like`` (a LIKE pattern with ``\\`` escapes, on trace names: a trace without
    its record has no name), ``before`` (a ``(created_at, seq)`` key: the traces after it). Each row: ``id``,
    ``seq``, ``created_at`` (the sort key), ``trace_record`` (1, or 0 for a trace whose record is missing)
    and, from the trace record or else from the trace's earliest span, ``name``, ``project_id``,
    ``log_stream_id``, ``is_complete``, ``wire_created_at`` (as sent), ``status_code`` and ``duration_ns``
    (JSON values, unchecked).
    """
    # Two streams of (created_at, seq) keys, each read in order from its own index and merged: trace
    # records, and the traces whose record is missing (DISTINCT: one row per location of their spans).
    present, present_params = ["type = 'trace'"], list[Any]()
    missing, missing_params = ["1"], list[Any]()
    for column, value in (("project_id", project_id), ("log_stream_id", log_stream_id)):
        if value is not None:
            present.append(f"{column} = ?")
            missing.append(f"{column} = ?")
            present_params.append(value)
            missing_params.append(value)
    if session_id is not None:  # a trace's session is its record's: a trace without one has none
        present.append("session_id = ?")
        present_params.append(session_id)
        missing.append("0")
    if record_id is not None:
        present.append("id IN (SELECT trace_id FROM records WHERE id = ?)")
        missing.append("trace_id IN (SELECT trace_id FROM records WHERE id = ? UNION ALL SELECT ?)")
        present_params.append(record_id)
        missing_params += [record_id, record_id]
    if name_like is not None:
        present.append("name LIKE ? ESCAPE '\\'")
        present_params.append(name_like)
    if before is not None:
        present.append("(created_at, seq) < (?, ?)")
        missing.append("(created_at, seq) < (?, ?)")
        present_params += [*before]
        missing_params += [*before]
    keys = f"SELECT id, seq, created_at, 1 AS trace_record FROM records WHERE {' AND '.join(present)}"
    params = present_params
    if name_like is None:  # a trace without its record has no name to match
        keys += " UNION ALL SELECT DISTINCT trace_id, seq, created_at, 0 FROM missing_traces"
        keys += f" WHERE {' AND '.join(missing)}"
        params += missing_params
    sql = (
        "SELECT k.id, k.seq, k.created_at, k.trace_record, r.name, r.project_id, r.log_stream_id,"
        " r.is_complete, r.session_id, json_extract(r.body, '$.created_at') AS wire_created_at,"
        " json_extract(r.body, '$.status_code') AS status_code,"
        " json_extract(r.body, '$.metrics.duration_ns') AS duration_ns"
        f" FROM ({keys} ORDER BY created_at DESC, seq DESC LIMIT ?) k JOIN records r ON r.seq = k.seq"
        " ORDER BY k.created_at DESC, k.seq DESC"
    )
    return sql, [*params, limit]
