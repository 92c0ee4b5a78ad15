"""The trace viewer's reads from the collector's store, shaped for the page and fast at any store size.

* :func:`trace_page`: one page of trace summaries, newest first (``created_at``, then arrival), filtered by
  project, log stream and a search term, continued with an opaque :class:`Cursor` (keyset pagination: the
  cost of a page does not grow with its depth). The covering partial indexes of the store's schema version 1
  serve it without reading record bodies; only the page's rows have their duration and status extracted
  (``json_extract``), and their span counts and services come from the ``trace_services`` table the store
  maintains on insert.
* :func:`waterfall`: one trace as a flat list of rows in tree order (depth first, children by start time),
  each with its depth, offset from the trace's start and duration, ready to draw as bars on a shared time
  axis. Bodies stay in the database: inputs and outputs come one record at a time from :func:`record`.
* :func:`record`: one trace or span with everything it carries, for the details panel.
* :func:`locations`: projects and their log streams, for the list's filters.

A search term that is a UUID finds the trace with that id, or the trace holding the span with that id;
any other term matches trace names (case-insensitive substring for ASCII letters).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from galileo.collector.store import Store

__all__ = ["Cursor", "Filters", "locations", "record", "trace_page", "waterfall"]

JSONDict = dict[str, Any]

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SORTABLE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page of the trace list ends: the last trace's stored ``created_at`` and arrival ``seq``."""

    created_at: str
    seq: int

    def encode(self) -> str:
        return base64.urlsafe_b64encode(f"{self.created_at}|{self.seq}".encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor :meth:`encode` wrote; ValueError for anything else."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            raise ValueError("not a cursor") from None
        created_at, _, seq = raw.partition("|")
        if not _SORTABLE.match(created_at) or not seq.isdigit():
            raise ValueError("not a cursor")
        return cls(created_at, int(seq))


@dataclass(frozen=True, slots=True)
class Filters:
    """What the trace list shows: every field None or empty means every trace."""

    project_id: str | None = None
    log_stream_id: str | None = None
    search: str = ""


def _micros(sortable: str) -> int:
    """Microseconds since the epoch of a stored (normalised UTC) ``created_at``."""
    moment = datetime.fromisoformat(sortable[:-1]).replace(tzinfo=timezone.utc)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _names(store: Store) -> tuple[dict[str, str], dict[str, str]]:
    """Project and log-stream names by id (small tables, read whole)."""
    projects = {row["id"]: row["name"] for row in store.query("SELECT id, name FROM projects")}
    streams = {row["id"]: row["name"] for row in store.query("SELECT id, name FROM log_streams")}
    return projects, streams


def _location(
    project_id: str, log_stream_id: str | None, names: tuple[dict[str, str], dict[str, str]]
) -> JSONDict:
    projects, streams = names
    return {
        "project_id": project_id,
        "project_name": projects.get(project_id),
        "log_stream_id": log_stream_id or None,
        "log_stream_name": streams.get(log_stream_id) if log_stream_id else None,
    }


def _number(value: Any) -> int | None:
    """An integer metric as stored (JSON numbers only; booleans and text are not durations)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


def _escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _canonical(text: str) -> str | None:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return None


# The trace list -------------------------------------------------------------------------------------------


def trace_page(store: Store, filters: Filters, *, limit: int, before: Cursor | None = None) -> JSONDict:
    """Up to ``limit`` trace summaries after ``before``, newest first, and the cursor of the next page."""
    where, params = ["r.type = 'trace'"], list[Any]()
    if filters.project_id is not None:
        where.append("r.project_id = ?")
        params.append(filters.project_id)
    if filters.log_stream_id is not None:
        where.append("r.log_stream_id = ?")
        params.append(filters.log_stream_id)
    term = filters.search.strip()
    if term:
        record_id = _canonical(term)
        if record_id is not None:
            where.append("r.id IN (SELECT trace_id FROM records WHERE id = ?)")
            params.append(record_id)
        else:
            where.append("r.name LIKE ? ESCAPE '\\'")
            params.append(f"%{_escape_like(term)}%")
    if before is not None:
        where.append("(r.created_at, r.seq) < (?, ?)")
        params += [before.created_at, before.seq]
    rows = store.query(
        "SELECT r.id, r.seq, r.name, r.created_at, r.project_id, r.log_stream_id, r.is_complete,"
        " json_extract(r.body, '$.created_at') AS wire_created_at,"
        " json_extract(r.body, '$.status_code') AS status_code,"
        " json_extract(r.body, '$.metrics.duration_ns') AS duration_ns"
        f" FROM records r WHERE {' AND '.join(where)} ORDER BY r.created_at DESC, r.seq DESC LIMIT ?",
        [*params, limit + 1],
    )
    more, rows = len(rows) > limit, rows[:limit]
    services = _services(store, [row["id"] for row in rows])
    names = _names(store)
    traces = []
    for row in rows:
        own = (row["project_id"], row["log_stream_id"] or "")
        crossed = sorted(services.get(row["id"], []), key=lambda s: (s[:2] != own, s[3]))
        traces.append(
            {
                "id": row["id"],
                "name": row["name"],
                "created_at": row["wire_created_at"],
                "start": row["created_at"],
                "duration_ns": _number(row["duration_ns"]),
                "status_code": _number(row["status_code"]),
                "is_complete": bool(row["is_complete"]),
                "span_count": sum(s[2] for s in crossed),
                **_location(row["project_id"], row["log_stream_id"], names),
                "services": [{**_location(p, s, names), "spans": n} for p, s, n, _ in crossed],
            }
        )
    last = rows[-1] if rows and more else None
    return {"traces": traces, "next": Cursor(last["created_at"], last["seq"]).encode() if last else None}


def _services(store: Store, trace_ids: list[str]) -> dict[str, list[tuple[str, str, int, int]]]:
    """(project, log stream or "", spans, first arrival) per trace, from the ``trace_services`` table."""
    found: dict[str, list[tuple[str, str, int, int]]] = {}
    if not trace_ids:
        return found
    marks = ", ".join("?" * len(trace_ids))
    for row in store.query(
        "SELECT trace_id, project_id, log_stream_id, spans, first_seq FROM trace_services"
        f" WHERE trace_id IN ({marks})",
        trace_ids,
    ):
        entry = (row["project_id"], row["log_stream_id"], row["spans"], row["first_seq"])
        found.setdefault(row["trace_id"], []).append(entry)
    return found


def locations(store: Store) -> list[JSONDict]:
    """Every project (by name) with its log streams (by name), for the list's filters."""
    projects: dict[str, JSONDict] = {}
    for row in store.query("SELECT id, name FROM projects ORDER BY name, id"):
        projects[row["id"]] = {"id": row["id"], "name": row["name"], "log_streams": []}
    for row in store.query("SELECT id, project_id, name FROM log_streams ORDER BY name, id"):
        if row["project_id"] in projects:
            projects[row["project_id"]]["log_streams"].append({"id": row["id"], "name": row["name"]})
    return list(projects.values())


# One trace ------------------------------------------------------------------------------------------------


def waterfall(store: Store, trace_id: str) -> JSONDict | None:
    """The trace's records as waterfall rows (see the module docstring); None when the trace is not stored.

    Each row: ``id``, ``parent_id``, ``type``, ``name``, ``model``, ``depth``, ``offset_ns`` (start after the
    trace's start), ``duration_ns`` (None while open), ``status_code``, ``error`` (status 400 or more),
    ``project_id``/``log_stream_id`` and names, ``boundary`` (logged to another project or log stream than
    its parent: a service boundary), ``children`` (how many) and ``orphan`` (its parent is not stored yet;
    such rows follow the tree at depth 0). The first row is the trace itself.
    """
    rows = store.query(
        "SELECT id, type, parent_id, name, created_at, project_id, log_stream_id, is_complete,"
        " json_extract(body, '$.metrics.duration_ns') AS duration_ns,"
        " json_extract(body, '$.status_code') AS status_code,"
        " json_extract(body, '$.model') AS model,"
        " json_extract(body, '$.created_at') AS wire_created_at"
        " FROM records WHERE trace_id = ? ORDER BY created_at, seq",
        (trace_id,),
    )
    root = next((row for row in rows if row["id"] == trace_id and row["type"] == "trace"), None)
    if root is None:
        return None
    spans = [row for row in rows if row["type"] != "trace"]
    children: dict[str, list[sqlite3.Row]] = {}
    for row in spans:
        children.setdefault(row["parent_id"] or "", []).append(row)
    known = {trace_id} | {row["id"] for row in spans}
    ordered: list[tuple[sqlite3.Row, int, sqlite3.Row | None, bool]] = []
    placed: set[str] = set()
    _walk(root, None, False, children, placed, ordered)
    for row in spans:  # spans whose parent has not arrived, then any left on a parent cycle
        if row["parent_id"] not in known:
            _walk(row, None, True, children, placed, ordered)
    for row in spans:
        if row["id"] not in placed:
            _walk(row, None, True, children, placed, ordered)

    names = _names(store)
    below = Counter(parent["id"] for _, _, parent, _ in ordered if parent is not None)
    starts = {row["id"]: _micros(row["created_at"]) for row in rows}
    origin = min(starts.values())
    out_rows = []
    end_ns = 0
    for row, depth, parent, orphan in ordered:
        offset_ns = (starts[row["id"]] - origin) * 1000
        duration = _number(row["duration_ns"])
        end_ns = max(end_ns, offset_ns + (duration or 0))
        status = _number(row["status_code"])
        moved = parent is not None and (row["project_id"], row["log_stream_id"]) != (
            parent["project_id"],
            parent["log_stream_id"],
        )
        out_rows.append(
            {
                "id": row["id"],
                "parent_id": row["parent_id"],
                "type": row["type"],
                "name": row["name"],
                "model": row["model"] if isinstance(row["model"], str) else None,
                "depth": depth,
                "created_at": row["wire_created_at"],
                "offset_ns": offset_ns,
                "duration_ns": duration,
                "status_code": status,
                "error": status is not None and status >= 400,
                **_location(row["project_id"], row["log_stream_id"], names),
                "boundary": moved,
                "children": below[row["id"]],
                "orphan": orphan,
            }
        )
    services = _services(store, [trace_id]).get(trace_id, [])
    own = (root["project_id"], root["log_stream_id"] or "")
    services.sort(key=lambda s: (s[:2] != own, s[3]))
    return {
        "trace": out_rows[0] | {"is_complete": bool(root["is_complete"])},
        "rows": out_rows,
        "span_count": len(spans),
        "window_ns": max(end_ns, 1),
        "services": [{**_location(p, s, names), "spans": n} for p, s, n, _ in services],
    }


def _walk(
    start: sqlite3.Row,
    parent: sqlite3.Row | None,
    orphan: bool,
    children: Mapping[str, list[sqlite3.Row]],
    placed: set[str],
    out: list[tuple[sqlite3.Row, int, sqlite3.Row | None, bool]],
) -> None:
    """Append ``start`` and its not yet placed descendants, depth first (iterative: depth is unbounded)."""
    if start["id"] in placed:
        return
    placed.add(start["id"])
    stack: list[tuple[sqlite3.Row, int, sqlite3.Row | None]] = [(start, 0, parent)]
    while stack:
        row, depth, above = stack.pop()
        out.append((row, depth, above, orphan and depth == 0))
        below = [child for child in children.get(row["id"], ()) if child["id"] not in placed]
        placed.update(child["id"] for child in below)
        stack.extend((child, depth + 1, row) for child in reversed(below))


# One record -----------------------------------------------------------------------------------------------


def record(store: Store, record_id: str) -> JSONDict | None:
    """One trace or span: its wire dict plus links, location names and, for traces, completeness."""
    rows = store.query("SELECT * FROM records WHERE id = ?", (record_id,))
    if not rows:
        return None
    row = rows[0]
    body: JSONDict = json.loads(row["body"])
    body.update(
        type=row["type"],
        trace_id=row["trace_id"],
        parent_id=row["parent_id"],
        **_location(row["project_id"], row["log_stream_id"], _names(store)),
    )
    if row["type"] == "trace":
        body["is_complete"] = bool(row["is_complete"])
    return body
