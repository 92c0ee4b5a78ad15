"""The viewer's JSON API under ``/api/viewer/``: read-only and without auth, like the collector's ``/api``.

``GET /api/viewer/traces?project_id=&log_stream_id=&session_id=&q=&limit=50&before=``
    ``{"traces": [...], "next": cursor or null, "revision": n}``: trace summaries newest first (id, name,
    ``created_at`` as sent, ``start`` normalised UTC, ``duration_ns``, ``status_code``, ``is_complete``,
    ``trace_record`` (false while only spans of the trace arrived: see
    :mod:`galileo.collector.viewer.queries`), ``span_count``, ``error_count`` (spans with a status code of
    400 or more), project and log stream ids and names, and ``services``: every (project, log stream) its
    records arrived with, the trace's own first, with ``spans`` and ``errors`` counts each). ``q`` searches
    names, or finds a trace by its id or the id of one of its spans; ``session_id`` keeps the traces of that
    session; ``limit`` is 1-200; pass ``next`` as
    ``before`` for the following page.
``GET /api/viewer/traces/{trace_id}``
    ``{"trace", "rows", "span_count", "window_ns", "services", "revision"}``: the waterfall of one trace
    (see :func:`galileo.collector.viewer.queries.waterfall`), ``trace`` with ``trace_record`` and
    ``error_count``; 404 when no record of the trace is stored.
``GET /api/viewer/records/{record_id}``
    One trace or span with its input, output, metadata, tags and metrics, plus project and log stream names.
``GET /api/viewer/locations``
    ``[{"id", "name", "log_streams": [{"id", "name"}]}]``: projects and log streams, for filters.
``GET /api/viewer/revision``
    ``{"revision": n}``: changes whenever a record is stored or updated; pages poll it to refresh.

A bad query parameter (unknown name, not an integer, not a UUID, a cursor this API did not write) is a 400
``{"detail": message}``; so is a malformed id in a path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from galileo.collector.store import Store
from galileo.collector.viewer import _params, queries
from galileo.collector.viewer._params import BadParameter

__all__ = ["MAX_LIMIT", "api_routes"]

MAX_LIMIT = 200
_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}

Endpoint = Callable[[Request], Awaitable[Response]]


def _answer(content: object, status: int = 200) -> JSONResponse:
    return JSONResponse(content, status_code=status, headers=_NO_STORE)


def _checked(handler: Callable[[Request], Response]) -> Endpoint:
    """An endpoint answering 400 with the message of any :class:`BadParameter` the handler raises."""

    async def endpoint(request: Request) -> Response:
        try:
            return handler(request)
        except BadParameter as exc:
            return _answer({"detail": str(exc)}, 400)

    return endpoint


def _cursor(raw: str | None) -> queries.Cursor | None:
    if raw is None:
        return None
    try:
        return queries.Cursor.decode(raw)
    except ValueError:
        raise BadParameter(f"before must be a 'next' value from this API, got {raw[:100]!r}") from None


class _ViewerApi:
    def __init__(self, store: Store) -> None:
        self.store = store

    def traces(self, request: Request) -> Response:
        params = request.query_params
        _params.check_names(params, ("project_id", "log_stream_id", "session_id", "q", "limit", "before"))
        filters = queries.Filters(
            project_id=_params.uuid_param(params, "project_id"),
            log_stream_id=_params.uuid_param(params, "log_stream_id"),
            session_id=_params.uuid_param(params, "session_id"),
            search=_params.search_text(params, "q"),
        )
        limit = _params.integer(params, "limit", 50, 1, MAX_LIMIT)
        before = _cursor(_params.cursor_text(params, "before"))
        revision = self.store.revision  # read first: a write racing the query shows on the next poll
        page = queries.trace_page(self.store, filters, limit=limit, before=before)
        return _answer({**page, "revision": revision})

    def trace(self, request: Request) -> Response:
        _params.check_names(request.query_params, ())
        trace_id = _params.uuid_value("trace id", request.path_params["trace_id"])
        revision = self.store.revision
        found = queries.waterfall(self.store, trace_id)
        if found is None:
            return _answer({"detail": f"Trace {trace_id} not found"}, 404)
        return _answer({**found, "revision": revision})

    def record(self, request: Request) -> Response:
        _params.check_names(request.query_params, ())
        record_id = _params.uuid_value("record id", request.path_params["record_id"])
        found = queries.record(self.store, record_id)
        if found is None:
            return _answer({"detail": f"Record {record_id} not found"}, 404)
        return _answer(found)

    def locations(self, request: Request) -> Response:
        _params.check_names(request.query_params, ())
        return _answer(queries.locations(self.store))

    def revision(self, request: Request) -> Response:
        _params.check_names(request.query_params, ())
        return _answer({"revision": self.store.revision})


def api_routes(store: Store) -> list[Route]:
    """The ``/api/viewer/`` routes over ``store``."""
    api = _ViewerApi(store)
    return [
        Route("/api/viewer/traces", _checked(api.traces), methods=["GET"]),
        Route("/api/viewer/traces/{trace_id}", _checked(api.trace), methods=["GET"]),
        Route("/api/viewer/records/{record_id}", _checked(api.record), methods=["GET"]),
        Route("/api/viewer/locations", _checked(api.locations), methods=["GET"]),
        Route("/api/viewer/revision", _checked(api.revision), methods=["GET"]),
    ]
