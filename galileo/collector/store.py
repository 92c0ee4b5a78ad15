"""The collector's SQLite store: projects, log streams and trace/span records.

One file database (stdlib :mod:`sqlite3`, WAL journal) holds four tables, plus the tables that triggers
derive from them for fast listing (their schema and migrations: :mod:`galileo.collector._schema`):

``meta``
    key/value pairs created once: the JWT signing secret and the local user's id, so tokens and ids
    survive a restart.
``projects``, ``log_streams``
    created by name; a name that already exists returns the existing row, so concurrent creators converge.
``records``
    every trace and span, one row each, keyed by ``id``. ``body`` keeps the record's wire dict as the client
    sent it (minus its nested ``spans``, plus an ``id``/``created_at`` when the client left them out, as
    Galileo does); indexed columns (``trace_id``, ``parent_id``, ``type``, ``project_id``,
    ``log_stream_id``, ``name``, normalised UTC ``created_at``, ``is_complete``) and ``seq`` (arrival order)
    sit beside it.

Semantics that clients rely on:

* **Idempotent writes.** A record whose id is already stored is ignored (``INSERT OR IGNORE``): the first
  POST wins, a retried POST never makes a duplicate, later changes arrive by PATCH.
* **Flattening.** Nested ``spans`` become rows of their own with ``parent_id`` = their container's id and
  the container's ``trace_id``. Top-level spans of a spans request take the request's ``trace_id`` and
  ``parent_id`` (inside record objects those are null on the wire).
* **Late and early arrivals.** Nothing is checked against what is already stored: a span may arrive before
  its parent, before its trace, or after the trace was marked complete. Links are resolved by id only when
  a tree is built, so a span appears under its parent as soon as the parent is stored.
* **Missing trace records.** A trace whose spans arrived but whose trace record has not (an upstream service
  that never sent it, spans naming an unknown trace id) is still a trace: its tree and its summary stand
  in for the record with ``"trace_record": false``, no name, no project or log stream of its own,
  ``is_complete`` false, and the ``created_at`` of its earliest span; it is listed at that span's place.
  Once the trace record arrives the trace is shown from it, once.
* **Across log streams.** Each record keeps the project and log stream it arrived with, but spans are found
  by ``trace_id`` alone, so a downstream service logging to its own log stream (or project) under an
  upstream trace shows up in that trace's tree.
* **Errors.** A span failed when its ``status_code`` is a number of 400 or more; ``error_count`` is how many
  of a trace's spans failed (the trace's own status is its ``status_code``, not counted), kept current by
  triggers as spans arrive and as PATCHes change their status.

:meth:`Store.trace_tree` returns the trace's wire dict (or the stand-in) plus ``project_id``/``project_name``,
``log_stream_id``/``log_stream_name``, ``trace_id``/``parent_id`` (the resolved links), ``spans`` (its
children: each a span's wire dict with the same links, location fields and ``spans`` of its own, ordered by
``created_at`` then arrival), ``is_complete``, ``trace_record``, ``error_count``, and ``orphans``: the
trace's spans whose parent is not stored (yet), each with its own subtree. :meth:`Store.latest_traces`
returns trace summaries, newest first.

All access goes through one connection guarded by one lock, so the store is safe to share between threads
(Starlette's threadpool, tests) as well as the event loop.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from galileo.collector._schema import MIGRATIONS, SCHEMA, newest_traces

__all__ = [
    "LogStream",
    "Project",
    "Record",
    "RecordUpdate",
    "Store",
    "records_from_spans_request",
    "records_from_traces_request",
]

logger = logging.getLogger("galileo.collector")

JSONDict = dict[str, Any]

_TIMESTAMP = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?\s*(Z|z|[+-]\d{2}:?\d{2})?$"
)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _iso(moment: datetime) -> str:
    """``2026-11-25T09:00:43.571169+00:00``, the timestamp format of Galileo's answers."""
    return moment.isoformat()


def _sortable_time(value: object, default: datetime) -> str:
    """A wire timestamp normalised to ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (UTC) so that text order is time order.

    Works on Python 3.10, whose ``fromisoformat`` rejects ``Z`` and odd fraction lengths. A value that is not
    a timestamp sorts as ``default`` (the arrival time).
    """
    moment = default
    match = _TIMESTAMP.match(value) if isinstance(value, str) else None
    if match is not None:
        year, month, day, hour, minute, second, fraction, zone = match.groups()
        offset = timedelta(0)
        if zone and zone not in ("Z", "z"):
            sign = -1 if zone[0] == "-" else 1
            digits = zone[1:].replace(":", "")
            offset = sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
        try:
            moment = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute),
                int(second),
                int((fraction or "0")[:6].ljust(6, "0")),
                tzinfo=timezone(offset),
            )
        except ValueError:
            moment = default
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _canonical_id(value: object) -> str | None:
    """``value`` as a canonical lowercase UUID string, or None when it is not a UUID."""
    if not isinstance(value, str):
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Project:
    id: str
    name: str
    type: str
    created_at: str
    updated_at: str
    created_by: str


@dataclass(frozen=True, slots=True)
class LogStream:
    id: str
    project_id: str
    name: str
    created_at: str
    updated_at: str
    created_by: str


@dataclass(frozen=True, slots=True)
class Record:
    """One trace or span as stored: links and indexed fields beside the wire dict (``body``)."""

    id: str
    type: str
    trace_id: str
    parent_id: str | None
    project_id: str
    log_stream_id: str | None
    name: str | None
    created_at: str
    is_complete: bool | None
    body: JSONDict
    session_id: str | None = None  #: a trace's session (the ingest body's ``session_id``)


@dataclass(frozen=True, slots=True)
class RecordUpdate:
    """The fields a PATCH may set; None leaves a field unchanged."""

    input: Any = None
    output: Any = None
    status_code: int | None = None
    tags: Sequence[str] | None = None
    duration_ns: int | None = None
    is_complete: bool | None = None

    @classmethod
    def from_body(cls, body: Mapping[str, Any], *, trace: bool) -> RecordUpdate:
        """The update a validated LogTraceUpdateRequest (``trace=True``) or LogSpanUpdateRequest carries."""
        return cls(
            input=body.get("input"),
            output=body.get("output"),
            status_code=body.get("status_code"),
            tags=body.get("tags"),
            duration_ns=body.get("duration_ns"),
            is_complete=body.get("is_complete") if trace else None,
        )

    def apply(self, body: JSONDict) -> JSONDict:
        """A copy of ``body`` with this update applied. Tags are added; ``duration_ns`` goes into metrics."""
        updated = dict(body)
        for key in ("input", "output", "status_code"):
            value = getattr(self, key)
            if value is not None:
                updated[key] = value
        if self.tags:
            existing = [tag for tag in updated.get("tags") or [] if isinstance(tag, str)]
            updated["tags"] = existing + [tag for tag in dict.fromkeys(self.tags) if tag not in existing]
        if self.duration_ns is not None:
            metrics = updated.get("metrics")
            updated["metrics"] = {**(metrics or {}), "duration_ns": self.duration_ns}
        return updated


def _flatten(
    items: Iterable[Any],
    *,
    trace_id: str | None,
    parent_id: str | None,
    project_id: str,
    log_stream_id: str | None,
    is_complete: bool | None,
    arrival: datetime,
    session_id: str | None = None,
) -> list[Record]:
    """Records for ``items`` and, depth first, their nested ``spans``, parents before children.

    With ``trace_id=None`` each top-level item is a trace: its own id is the trace id of its subtree.
    """
    records: list[Record] = []
    stack: list[tuple[Any, str | None, str | None]] = [(item, trace_id, parent_id) for item in items][::-1]
    while stack:
        item, item_trace_id, item_parent_id = stack.pop()
        if not isinstance(item, dict):
            continue
        record_id = _canonical_id(item.get("id")) or str(uuid.uuid4())
        body = {key: value for key, value in item.items() if key != "spans"}
        body["id"] = record_id
        body.setdefault("created_at", arrival.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))
        record_type = str(item.get("type") or "span")
        own_trace_id = item_trace_id or record_id
        if record_type == "trace" and session_id is not None:
            body["session_id"] = session_id  # as the API stores it: the trace names its session
        records.append(
            Record(
                id=record_id,
                type=record_type,
                trace_id=own_trace_id,
                parent_id=item_parent_id,
                project_id=project_id,
                log_stream_id=log_stream_id,
                name=item.get("name") if isinstance(item.get("name"), str) else None,
                created_at=_sortable_time(body["created_at"], arrival),
                is_complete=is_complete if record_type == "trace" else None,
                body=body,
                session_id=session_id if record_type == "trace" else None,
            )
        )
        children = item.get("spans")
        if isinstance(children, list):
            stack.extend((child, own_trace_id, record_id) for child in reversed(children))
    return records


def records_from_traces_request(body: Mapping[str, Any], project_id: str) -> list[Record]:
    """The records of a validated LogTracesIngestRequest: each trace, then its spans, flattened."""
    return _flatten(
        body.get("traces") or [],
        trace_id=None,
        parent_id=None,
        project_id=project_id,
        log_stream_id=_canonical_id(body.get("log_stream_id")),
        is_complete=bool(body.get("is_complete", True)),
        arrival=_utc_now(),
        session_id=_canonical_id(body.get("session_id")),
    )


def records_from_spans_request(body: Mapping[str, Any], project_id: str) -> list[Record]:
    """The records of a validated LogSpansIngestRequest, linked to the request's trace_id and parent_id."""
    return _flatten(
        body.get("spans") or [],
        trace_id=_canonical_id(body.get("trace_id")),
        parent_id=_canonical_id(body.get("parent_id")),
        project_id=project_id,
        log_stream_id=_canonical_id(body.get("log_stream_id")),
        is_complete=None,
        arrival=_utc_now(),
    )


class Store:
    """The SQLite database behind one collector. Thread-safe; call :meth:`close` when done."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(SCHEMA)
        self._migrate()
        self._revision = time.time_ns() // 1_000_000
        self.secret = bytes.fromhex(self._meta("jwt_secret", lambda: secrets.token_hex(32)))
        self.user_id = self._meta("user_id", lambda: str(uuid.uuid4()))
        logger.debug("collector store opened at %s", path)

    def _migrate(self) -> None:
        """Bring the schema up to ``len(MIGRATIONS)`` (see :mod:`galileo.collector._schema`)."""
        for version, statements in enumerate(MIGRATIONS, start=1):
            with self._transaction() as db:
                if db.execute("PRAGMA user_version").fetchone()[0] >= version:
                    continue
                for statement in statements:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {version}")
                logger.info("collector store %s migrated to schema version %d", self.path, version)

    @property
    def revision(self) -> int:
        """A number that changes whenever a record is stored or updated (viewers poll it to refresh)."""
        with self._lock:
            return self._revision

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """The rows of one read-only ``sql`` statement, run under the store's lock (the viewer's reads)."""
        return self._query(sql, params)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the store's lock (reentrant): no other thread reads or writes until the block ends."""
        with self._lock:
            yield

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _meta(self, key: str, make: Any) -> str:
        with self._transaction() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            if row is not None:
                return str(row["value"])
            value = str(make())
            db.execute("INSERT INTO meta (key, value) VALUES (?, ?)", (key, value))
            return value

    # Projects and log streams ----------------------------------------------------------------------------

    def find_projects(self, name: str | None = None, project_type: str | None = None) -> list[Project]:
        """Projects (all, or the one called ``name``), optionally of one type, oldest first."""
        sql, params = "SELECT * FROM projects WHERE 1 = 1", list[str]()
        if name is not None:
            sql, params = sql + " AND name = ?", [*params, name]
        if project_type is not None:
            sql, params = sql + " AND type = ?", [*params, project_type]
        return [Project(**dict(row)) for row in self._query(sql + " ORDER BY created_at, id", params)]

    def get_project(self, project_id: str) -> Project | None:
        rows = self._query("SELECT * FROM projects WHERE id = ?", (project_id,))
        return Project(**dict(rows[0])) if rows else None

    def create_project(self, name: str, project_type: str) -> tuple[Project, bool]:
        """The project called ``name``, created if missing; the flag says whether it was created now."""
        now = _iso(_utc_now())
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO projects (id, name, type, created_at, updated_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), name, project_type, now, now, self.user_id),
            )
            row = db.execute("SELECT * FROM projects WHERE name = ?", (name,)).fetchone()
        return Project(**dict(row)), cursor.rowcount == 1

    def get_log_stream(self, log_stream_id: str) -> LogStream | None:
        rows = self._query("SELECT * FROM log_streams WHERE id = ?", (log_stream_id,))
        return LogStream(**dict(rows[0])) if rows else None

    def list_log_streams(self, project_id: str, offset: int = 0, limit: int = -1) -> list[LogStream]:
        """The project's log streams, oldest first; ``limit=-1`` means all."""
        rows = self._query(
            "SELECT * FROM log_streams WHERE project_id = ? ORDER BY created_at, id LIMIT ? OFFSET ?",
            (project_id, limit, offset),
        )
        return [LogStream(**dict(row)) for row in rows]

    def create_log_stream(self, project_id: str, name: str) -> tuple[LogStream, bool]:
        """The project's log stream called ``name``, created if missing, and whether it was created now."""
        now = _iso(_utc_now())
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT OR IGNORE INTO log_streams (id, project_id, name, created_at, updated_at, created_by)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (str(uuid.uuid4()), project_id, name, now, now, self.user_id),
            )
            row = db.execute(
                "SELECT * FROM log_streams WHERE project_id = ? AND name = ?", (project_id, name)
            ).fetchone()
        return LogStream(**dict(row)), cursor.rowcount == 1

    # Sessions --------------------------------------------------------------------------------------------

    def create_session(
        self,
        project_id: str,
        location: str,
        *,
        name: str | None,
        previous_session_id: str | None,
        external_id: str | None,
        user_metadata: Mapping[str, str] | None,
    ) -> JSONDict:
        """Store a new session in ``location`` (a log stream or experiment id, ``''`` for neither)."""
        session: JSONDict = {
            "id": str(uuid.uuid4()),
            "project_id": project_id,
            "location": location,
            "name": name,
            "previous_session_id": previous_session_id,
            "external_id": external_id,
            "user_metadata": None if user_metadata is None else json.dumps(dict(user_metadata)),
            "created_at": _iso(_utc_now()),
        }
        with self._transaction() as db:
            db.execute(
                "INSERT INTO sessions (id, project_id, location, name, previous_session_id, external_id,"
                " user_metadata, created_at) VALUES (:id, :project_id, :location, :name,"
                " :previous_session_id, :external_id, :user_metadata, :created_at)",
                session,
            )
            self._revision += 1
        return _session(session)

    def find_sessions(
        self,
        project_id: str,
        location: str,
        *,
        external_id: str | None = None,
        session_id: str | None = None,
        limit: int = 100,
    ) -> list[JSONDict]:
        """Sessions of ``location`` in the project, oldest first, with ``external_id`` and ``session_id``
        when given."""
        sql = "SELECT * FROM sessions WHERE project_id = ? AND location = ?"
        params: list[Any] = [project_id, location]
        if external_id is not None:
            sql += " AND external_id = ?"
            params.append(external_id)
        if session_id is not None:
            sql += " AND id = ?"
            params.append(session_id)
        rows = self._query(sql + " ORDER BY created_at, rowid LIMIT ?", [*params, limit])
        return [_session(dict(row)) for row in rows]

    # Records ---------------------------------------------------------------------------------------------

    def add_records(
        self, records: Iterable[Record], *, extra: Iterable[tuple[str, Sequence[Sequence[Any]]]] = ()
    ) -> int:
        """Store ``records``, skipping ids already stored; return how many were new. ``extra``: statements run
        over their rows in the same transaction (the OTLP ingest's links, :mod:`._otlp_records`)."""
        rows = [
            (
                r.id,
                r.type,
                r.trace_id,
                r.parent_id,
                r.project_id,
                r.log_stream_id,
                r.name,
                r.created_at,
                None if r.is_complete is None else int(r.is_complete),
                json.dumps(r.body, separators=(",", ":"), ensure_ascii=False),
                r.session_id,
            )
            for r in records
        ]
        with self._transaction() as db:
            cursor = db.executemany(
                "INSERT OR IGNORE INTO records (id, type, trace_id, parent_id, project_id, log_stream_id,"
                " name, created_at, is_complete, body, session_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            stored = cursor.rowcount  # direct inserts only: not the trigger's, not the ignored duplicates
            for statement, params in extra:
                db.executemany(statement, params)
            if stored:
                self._revision += 1
            return stored

    def update_record(
        self, record_id: str, update: RecordUpdate, *, trace: bool, project_id: str | None = None
    ) -> Record | None:
        """Apply ``update`` to the stored trace (``trace=True``) or span; None when there is no such record
        (in ``project_id``, when given: a PATCH names its project, and reaches no other's records).

        ``is_complete`` only ever turns a trace complete: a trace once complete stays complete.
        """
        kind = "type = 'trace'" if trace else "type != 'trace'"
        sql, params = f"SELECT * FROM records WHERE id = ? AND {kind}", [record_id]
        if project_id is not None:
            sql, params = sql + " AND project_id = ?", [*params, project_id]
        with self._transaction() as db:
            row = db.execute(sql, params).fetchone()
            if row is None:
                return None
            body = update.apply(json.loads(row["body"]))
            complete = row["is_complete"]
            if trace and update.is_complete:
                complete = 1
            db.execute(
                "UPDATE records SET body = ?, is_complete = ? WHERE id = ?",
                (json.dumps(body, separators=(",", ":"), ensure_ascii=False), complete, record_id),
            )
            row = db.execute("SELECT * FROM records WHERE id = ?", (record_id,)).fetchone()
            self._revision += 1
        return _record(row)

    def get_record(self, record_id: str) -> Record | None:
        rows = self._query("SELECT * FROM records WHERE id = ?", (record_id,))
        return _record(rows[0]) if rows else None

    def trace_tree(self, trace_id: str) -> JSONDict | None:
        """The trace as a tree (see the module docstring), or None when none of its records is stored."""
        with self._lock:
            rows = self._db.execute(
                "SELECT r.*, p.name AS project_name, l.name AS log_stream_name,"
                " json_extract(r.body, '$.status_code') AS status_code FROM records r"
                " LEFT JOIN projects p ON p.id = r.project_id"
                " LEFT JOIN log_streams l ON l.id = r.log_stream_id"
                " WHERE r.trace_id = ? ORDER BY r.created_at, r.seq",
                (trace_id,),
            ).fetchall()
        root = next((row for row in rows if row["type"] == "trace" and row["id"] == trace_id), None)
        spans = [row for row in rows if row["type"] != "trace"]
        if root is None and not spans:
            return None
        children: dict[str, list[sqlite3.Row]] = {}
        for row in spans:
            children.setdefault(row["parent_id"] or "", []).append(row)
        placed: set[str] = {trace_id}
        if root is not None:
            tree = _node(root, children, placed)
        else:
            tree = _stand_in(trace_id, spans[0])
            below = children.get(trace_id, [])
            tree["spans"] = [_node(row, children, placed) for row in below if row["id"] not in placed]
        tree["is_complete"] = root is not None and bool(root["is_complete"])
        tree["trace_record"] = root is not None
        tree["error_count"] = sum(_failed(row["status_code"]) for row in spans)
        known = {trace_id} | {row["id"] for row in spans}
        orphans = [_node(row, children, placed) for row in spans if row["parent_id"] not in known]
        # Spans on a parent cycle are reachable from nowhere: list them as orphans too.
        orphans += [_node(row, children, placed) for row in spans if row["id"] not in placed]
        tree["orphans"] = orphans
        return tree

    def latest_traces(
        self,
        limit: int = 50,
        project_id: str | None = None,
        log_stream_id: str | None = None,
        session_id: str | None = None,
    ) -> list[JSONDict]:
        """Summaries of the newest traces (by created_at, then arrival), newest first.

        A filter matches a trace's own project or log stream; a trace without its trace record has none, and
        matches those of any of its spans. ``session_id`` matches a trace record's session.
        """
        sql, params = newest_traces(
            limit=limit, project_id=project_id, log_stream_id=log_stream_id, session_id=session_id
        )
        rows = self._query(
            "SELECT n.*, p.name AS project_name, l.name AS log_stream_name,"
            " (SELECT SUM(spans) FROM trace_services s WHERE s.trace_id = n.id) AS span_count,"
            " (SELECT SUM(errors) FROM trace_services s WHERE s.trace_id = n.id) AS error_count"
            f" FROM ({sql}) n LEFT JOIN projects p ON p.id = n.project_id"
            " LEFT JOIN log_streams l ON l.id = n.log_stream_id ORDER BY n.created_at DESC, n.seq DESC",
            params,
        )
        summaries = []
        for row in rows:
            own = bool(row["trace_record"])  # without its record, the trace has no name or location
            summaries.append(
                {
                    "id": row["id"],
                    "name": row["name"] if own else None,
                    "created_at": row["wire_created_at"],
                    "project_id": row["project_id"] if own else None,
                    "project_name": row["project_name"] if own else None,
                    "log_stream_id": row["log_stream_id"] if own else None,
                    "log_stream_name": row["log_stream_name"] if own else None,
                    "session_id": row["session_id"] if own else None,
                    "is_complete": own and bool(row["is_complete"]),
                    "status_code": row["status_code"] if own else None,
                    "duration_ns": row["duration_ns"] if own else None,
                    "span_count": row["span_count"] or 0,
                    "error_count": row["error_count"] or 0,
                    "trace_record": own,
                }
            )
        return summaries


def _record(row: sqlite3.Row) -> Record:
    return Record(
        id=row["id"],
        type=row["type"],
        trace_id=row["trace_id"],
        parent_id=row["parent_id"],
        project_id=row["project_id"],
        log_stream_id=row["log_stream_id"],
        name=row["name"],
        created_at=row["created_at"],
        is_complete=None if row["is_complete"] is None else bool(row["is_complete"]),
        body=json.loads(row["body"]),
        session_id=row["session_id"],
    )


def _session(row: Mapping[str, Any]) -> JSONDict:
    """A stored session as the API shows it (``user_metadata`` as a dict; its location named)."""
    session = {key: value for key, value in row.items() if key != "location"}
    metadata = row.get("user_metadata")
    session["user_metadata"] = json.loads(metadata) if isinstance(metadata, str) else None
    return session


def _failed(status: object) -> bool:
    """Whether a span's ``status_code`` says it failed: a number (not a boolean) of 400 or more."""
    return isinstance(status, (int, float)) and not isinstance(status, bool) and status >= 400


def _stand_in(trace_id: str, earliest: sqlite3.Row) -> JSONDict:
    """The node standing in for a trace record that has not arrived: its id and its earliest span's start."""
    started = json.loads(earliest["body"]).get("created_at")
    return {
        "type": "trace",
        "id": trace_id,
        "name": None,
        "created_at": started,
        "trace_id": trace_id,
        "parent_id": None,
        "project_id": None,
        "project_name": None,
        "log_stream_id": None,
        "log_stream_name": None,
        "spans": [],
    }


def _node(row: sqlite3.Row, children: Mapping[str, list[sqlite3.Row]], placed: set[str]) -> JSONDict:
    """``row`` and its not yet placed descendants as a tree node (iterative, so depth is unbounded)."""
    placed.add(row["id"])
    root = _node_dict(row)
    stack = [(row, root)]
    while stack:
        parent, parent_node = stack.pop()
        for child in children.get(parent["id"], []):
            if child["id"] in placed:
                continue
            placed.add(child["id"])
            child_node = _node_dict(child)
            parent_node["spans"].append(child_node)
            stack.append((child, child_node))
    return root


def _node_dict(row: sqlite3.Row) -> JSONDict:
    node: JSONDict = json.loads(row["body"])
    node.update(
        trace_id=row["trace_id"],
        parent_id=row["parent_id"],
        project_id=row["project_id"],
        project_name=row["project_name"],
        log_stream_id=row["log_stream_id"],
        log_stream_name=row["log_stream_name"],
        spans=[],
    )
    return node
