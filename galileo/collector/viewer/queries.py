"""The trace viewer's reads from the collector's store, shaped for the page and fast at any store size.

* :func:`trace_page`: one page of trace summaries, newest first (``created_at``, then arrival), filtered by
  project, log stream and a search term, continued with an opaque :class:`Cursor` (keyset pagination: the
  cost of a page does not grow with its depth). The store's list query
  (:func:`galileo.collector._schema.newest_traces`) merges two index scans, trace records and traces whose
  record is missing, without reading record bodies; only the page's rows have their duration and status
  extracted (``json_extract``), and their span and error counts and services come from the
  ``trace_services`` table the store's triggers maintain.
* :func:`waterfall`: one trace as a flat list of rows in tree order (depth first, children by start time),
  each with its depth, offset from the trace's start and duration, ready to draw as bars on a shared time
  axis. Bodies stay in the database: inputs and outputs come one record at a time from :func:`record`.
* :func:`record`: one trace or span with everything it carries, for the details panel.
* :func:`locations`: projects and their log streams, for the list's filters.

A trace whose trace record has not arrived (only spans did) is a trace all the same: listed at its earliest
span's start with ``trace_record`` false, no name, location, duration or status, under every project and log
stream its spans came from, and drawn with a stand-in for its record (see :func:`waterfall`). Once its
record arrives it is listed and drawn from it, once.

A search term that is a UUID finds the trace with that id, or the trace holding the span with that id,
whether or not its trace record arrived; any other term matches trace names (case-insensitive substring
for ASCII letters).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import uuid
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from galileo.collector._schema import newest_traces
from galileo.collector.store import Store

__all__ = ["Cursor", "Filters", "locations", "record", "trace_page", "waterfall"]

JSONDict = dict[str, Any]
_Row = Mapping[str, Any]  # a waterfall's row of ``records``, or the stand-in for a missing trace record

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
    session_id: str | None = None
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
    project_id: str | None, log_stream_id: str | None, names: tuple[dict[str, str], dict[str, str]]
) -> JSONDict:
    projects, streams = names
    return {
        "project_id": project_id,
        "project_name": projects.get(project_id) if project_id else None,
        "log_stream_id": log_stream_id or None,
        "log_stream_name": streams.get(log_stream_id) if log_stream_id else None,
    }


def _number(value: Any) -> int | None:
    """An integer metric as stored (JSON numbers only; booleans and text are not durations)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None  # a row stored before such numbers were refused
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
    term = filters.search.strip()
    record_id = _canonical(term) if term else None
    sql, params = newest_traces(
        limit=limit + 1,
        project_id=filters.project_id,
        log_stream_id=filters.log_stream_id,
        session_id=filters.session_id,
        record_id=record_id,
        name_like=f"%{_escape_like(term)}%" if term and record_id is None else None,
        before=(before.created_at, before.seq) if before is not None else None,
    )
    rows = store.query(sql, params)
    more, rows = len(rows) > limit, rows[:limit]
    services = _services(store, [row["id"] for row in rows])
    names = _names(store)
    traces = []
    for row in rows:
        own = bool(row["trace_record"])  # without its record, the trace has no name, location or status
        location = (row["project_id"], row["log_stream_id"] or "") if own else None
        crossed = _ordered(services.get(row["id"], []), location)
        traces.append(
            {
                "id": row["id"],
                "name": row["name"] if own else None,
                "created_at": row["wire_created_at"],
                "start": row["created_at"],
                "duration_ns": _number(row["duration_ns"]) if own else None,
                "status_code": _number(row["status_code"]) if own else None,
                "is_complete": own and bool(row["is_complete"]),
                "trace_record": own,
                "span_count": sum(s[2] for s in crossed),
                "error_count": sum(s[3] for s in crossed),
                **_location(row["project_id"] if own else None, row["log_stream_id"] if own else None, names),
                "services": _service_list(crossed, names),
            }
        )
    last = rows[-1] if rows and more else None
    return {"traces": traces, "next": Cursor(last["created_at"], last["seq"]).encode() if last else None}


_Service = tuple[str, str, int, int, int]  # project, log stream or "", spans, errors, first arrival


def _services(store: Store, trace_ids: list[str]) -> dict[str, list[_Service]]:
    """Where each trace's records came from, with span and error counts, from ``trace_services``."""
    found: dict[str, list[_Service]] = {}
    if not trace_ids:
        return found
    marks = ", ".join("?" * len(trace_ids))
    for row in store.query(
        "SELECT trace_id, project_id, log_stream_id, spans, errors, first_seq FROM trace_services"
        f" WHERE trace_id IN ({marks})",
        trace_ids,
    ):
        entry = (row["project_id"], row["log_stream_id"], row["spans"], row["errors"], row["first_seq"])
        found.setdefault(row["trace_id"], []).append(entry)
    return found


def _ordered(services: list[_Service], own: tuple[str, str] | None) -> list[_Service]:
    """The trace's own location first (when it has one), then the others by first arrival."""
    return sorted(services, key=lambda s: (s[:2] != own, s[4]))


def _service_list(services: list[_Service], names: tuple[dict[str, str], dict[str, str]]) -> list[JSONDict]:
    return [{**_location(p, s, names), "spans": n, "errors": e} for p, s, n, e, _ in services]


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
    """The trace's records as waterfall rows (see the module docstring); None when none of them is stored.

    Each row: ``id``, ``parent_id``, ``type``, ``name``, ``model``, ``depth``, ``offset_ns`` (start after the
    trace's start), ``duration_ns`` (None while open), ``status_code``, ``error`` (status 400 or more),
    ``project_id``/``log_stream_id`` and names, ``boundary`` (logged to another project or log stream than
    its parent: a service boundary), ``children`` (how many) and ``orphan`` (its parent is not stored yet;
    such rows follow the tree at depth 0). The first row is the trace itself; while its trace record is
    missing, a stand-in: no name, location, duration or status, starting with the earliest span, holding the
    spans whose parent is the trace. ``trace`` repeats the first row with ``is_complete``, ``trace_record``
    and ``error_count`` (how many spans failed).
    """
    rows: list[_Row] = [
        dict(row)
        for row in store.query(
            "SELECT id, type, parent_id, name, created_at, project_id, log_stream_id, is_complete,"
            " json_extract(body, '$.metrics.duration_ns') AS duration_ns,"
            " json_extract(body, '$.status_code') AS status_code,"
            " json_extract(body, '$.model') AS model,"
            " json_extract(body, '$.created_at') AS wire_created_at"
            " FROM records WHERE trace_id = ? ORDER BY created_at, seq",
            (trace_id,),
        )
    ]
    root: _Row | None = next((row for row in rows if row["id"] == trace_id and row["type"] == "trace"), None)
    spans = [row for row in rows if row["type"] != "trace"]
    if root is None and not spans:
        return None
    has_record = root is not None
    if root is None:
        root = _stand_in(trace_id, spans[0])
    children: dict[str, list[_Row]] = {}
    for row in spans:
        children.setdefault(row["parent_id"] or "", []).append(row)
    known = {trace_id} | {row["id"] for row in spans}
    ordered: list[tuple[_Row, int, _Row | None, bool]] = []
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
    starts = {row["id"]: _micros(row["created_at"]) for row, _, _, _ in ordered}
    origin = min(starts.values())
    out_rows = []
    end_ns = 0
    for row, depth, parent, orphan in ordered:
        offset_ns = (starts[row["id"]] - origin) * 1000
        duration = _number(row["duration_ns"])
        end_ns = max(end_ns, offset_ns + (duration or 0))
        status = _number(row["status_code"])
        moved = (
            parent is not None
            and parent["project_id"] is not None  # under a stand-in, no span crossed a boundary
            and (row["project_id"], row["log_stream_id"]) != (parent["project_id"], parent["log_stream_id"])
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
    own = (root["project_id"], root["log_stream_id"] or "") if has_record else None
    services = _ordered(_services(store, [trace_id]).get(trace_id, []), own)
    trace = {
        "is_complete": bool(root["is_complete"]),
        "trace_record": has_record,
        "error_count": sum(row["error"] for row in out_rows[1:]),
    }
    return {
        "trace": out_rows[0] | trace,
        "rows": out_rows,
        "span_count": len(spans),
        "window_ns": max(end_ns, 1),
        "services": _service_list(services, names),
    }


def _stand_in(trace_id: str, earliest: _Row) -> _Row:
    """A waterfall row for a trace record that has not arrived: the trace's id, its earliest span's start."""
    return {
        "id": trace_id,
        "type": "trace",
        "parent_id": None,
        "name": None,
        "created_at": earliest["created_at"],
        "wire_created_at": earliest["wire_created_at"],
        "project_id": None,
        "log_stream_id": None,
        "is_complete": 0,
        "duration_ns": None,
        "status_code": None,
        "model": None,
    }


def _walk(
    start: _Row,
    parent: _Row | None,
    orphan: bool,
    children: Mapping[str, list[_Row]],
    placed: set[str],
    out: list[tuple[_Row, int, _Row | None, bool]],
) -> None:
    """Append ``start`` and its not yet placed descendants, depth first (iterative: depth is unbounded)."""
    if start["id"] in placed:
        return
    placed.add(start["id"])
    stack: list[tuple[_Row, int, _Row | None]] = [(start, 0, parent)]
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
