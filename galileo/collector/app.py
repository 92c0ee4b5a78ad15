"""The collector's HTTP routes: the slice of Galileo's API that clients use, plus a small ``/api`` of its own.

Galileo routes (answers shaped like Galileo's, errors as ``{"detail": ...}``):

* ``GET /healthcheck`` and ``POST /login/api_key`` need no token; every other Galileo route needs
  ``Authorization: Bearer <JWT issued by this collector>`` (or, with an API key, ``Galileo-API-Key``) and
  answers 401 without one, before its body is read. Without an API key any key logs in; with one, only it.
* ``GET /ingest/healthz`` is not served (404), which keeps the published SDK on the ``/v2`` routes.
* Projects and log streams: lookup, paginated listing, creation (creating an existing name returns it).
* Sessions: ``POST /v2/projects/{pid}/sessions`` (SessionCreateRequest, answered with a
  SessionCreateResponse) and ``POST /v2/projects/{pid}/sessions/search`` (LogRecordsQueryRequest; the
  filters it serves are ``eq`` on ``external_id`` or ``id``, in the body's log stream or experiment; a
  filter naming its column ``name`` instead of ``column_id``, as the published SDK 2.7 sends it, is read as
  ``column_id``). A trace ingest body's ``session_id`` is stored with its traces (and echoed in the answer).
* Writes: ``POST /v2/projects/{pid}/traces|spans`` and ``PATCH /v2/projects/{pid}/traces|spans/{id}``.
  Bodies are validated against Galileo's JSON Schemas (422 with the schema errors); an unknown project is
  404, a PATCH of a record that is not stored is 404. ``GET /v2/projects/{pid}/traces/{id}`` returns the
  trace as a tree (see :mod:`galileo.collector.store`).

OTLP/HTTP: ``POST /otel/traces`` (Galileo's path) and ``POST /v1/traces`` (OpenTelemetry's), protobuf or
JSON, mapped to records beside the native ones (:mod:`galileo.collector._otlp_routes`).

Collector routes (for the CLI and viewers; open without an API key, like the viewer): ``GET /api/traces``
(latest traces; ``project_id``, ``log_stream_id`` and ``session_id`` filter them), ``GET /api/traces/{id}`` (a
tree, across projects and log streams). Bad query parameters are 400. Test endpoints, served only with
``test_endpoints=True`` (``serve --test-endpoints``) and 404 otherwise: ``GET|DELETE /api/requests`` (the
recent write requests, :mod:`galileo.collector._request_log`, with the time each arrived) and
``GET|PUT|DELETE /api/faults`` (:mod:`galileo.collector._faults`: latency, failures, and ``strict_parents``,
which refuses spans whose parent is not stored yet, as a strict server may).

Before any route, :mod:`galileo.collector._guard` checks the Host, the Origin of writes, the credentials
(with an API key: every route but the health check and the logins) and the body's size and type; bodies
are parsed by :mod:`galileo.collector._body` (depth limit, lone surrogates stored as U+FFFD).

The trace viewer (:mod:`galileo.collector.viewer`) adds its pages (``/``, ``/traces/{id}``), their static
assets and its own JSON API under ``/api/viewer/``.

Endpoints are ``async`` and call the store directly: SQLite writes take microseconds in WAL mode, and the
store serialises access with its own lock, so the app is also safe when run from a threadpool.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from galileo._version import __version__
from galileo.collector import _auth, _validation
from galileo.collector._body import BodyError, parse_json
from galileo.collector._faults import FaultInjector, Faults
from galileo.collector._guard import Access, Guard
from galileo.collector._login import login_routes
from galileo.collector._otlp_routes import otlp_routes
from galileo.collector._request_log import ARRIVED, ArrivalStamp, RequestLog
from galileo.collector.store import (
    LogStream,
    Project,
    Record,
    RecordUpdate,
    Store,
    records_from_spans_request,
    records_from_traces_request,
)
from galileo.collector.viewer import viewer_routes

__all__ = ["build_app"]

logger = logging.getLogger("galileo.collector")

_MAX_PAGE = 1000
#: Bodies larger than this are parsed, validated and stored on a worker thread, so that one big batch does not
#: hold every other client (a 26 MB body took 18 s of the event loop); smaller ones stay on the loop, where
#: the thread hop would cost more than the work.
_OFF_LOOP_BYTES = 256 * 1024
_MAX_OFFSET = 10**9  # pagination offsets beyond it are nonsense (and overflow SQLite's integers)
_USER_EMAIL = "local-user@galileo-collector.local"

Endpoint = Callable[[Request], Awaitable[Response]]


def _error(status: int, detail: Any) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _problem(loc: list[str], message: str, kind: str) -> dict[str, Any]:
    """One FastAPI-style validation problem."""
    return {"loc": loc, "msg": message, "type": kind}


def _invalid(loc: list[str], message: str, kind: str) -> JSONResponse:
    """A 422 answer with one problem."""
    return _error(422, [_problem(loc, message, kind)])


def _canonical_uuid(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


class _Collector:
    """The route handlers, bound to one store, token lifetime, access rules and (test) request log."""

    def __init__(
        self, store: Store, token_ttl: float, access: Access, request_log: RequestLog | None
    ) -> None:
        self.store = store
        self.token_ttl = token_ttl
        self.access = access
        self.request_log = request_log
        self.faults = Faults()

    # Plumbing --------------------------------------------------------------------------------------------

    async def _json(self, request: Request) -> tuple[Any, JSONResponse | None]:
        """The request's JSON body (parsed once per request), or a 422 answer when it is not JSON."""
        cached: tuple[Any, JSONResponse | None] | None = getattr(request.state, "json_body", None)
        if cached is None:
            try:
                cached = (await self._sized(request, parse_json, await request.body()), None)
            except BodyError as exc:
                cached = (None, _error(422, [exc.problem]))
            request.state.json_body = cached
        return cached

    async def _validated(self, request: Request, root: str) -> tuple[Any, JSONResponse | None]:
        body, failure = await self._json(request)
        if failure is not None:
            return body, failure
        problems = await self._sized(request, _validation.validate, root, body)
        if problems:
            logger.info("rejected %s %s: %s", request.method, request.url.path, problems[0]["msg"])
            return body, _error(422, problems)
        return body, None

    async def _store_records(self, request: Request, records: list[Record]) -> int:
        stored: int = await self._sized(request, self.store.add_records, records)
        return stored

    @staticmethod
    async def _sized(request: Request, work: Callable[..., Any], *args: Any) -> Any:
        """``work(*args)`` for this request's body: on a worker thread when the body is over
        :data:`_OFF_LOOP_BYTES`, else on the event loop (where the thread hop would cost more)."""
        if len(await request.body()) > _OFF_LOOP_BYTES:
            return await run_in_threadpool(work, *args)
        return work(*args)

    def _authenticated(self, handler: Endpoint) -> Endpoint:
        challenge = {"WWW-Authenticate": "Bearer"}

        async def endpoint(request: Request) -> Response:
            refusal = self.access.refusal(request.headers)
            if refusal is not None:
                return JSONResponse({"detail": refusal}, status_code=401, headers=challenge)
            return await handler(request)

        return endpoint

    def _recorded(self, handler: Endpoint) -> Endpoint:
        log = self.request_log
        if log is None:
            return handler

        async def endpoint(request: Request) -> Response:
            assert log is not None
            body, _ = await self._json(request)
            raw = await request.body()
            entry = log.begin(request.method, request.url.path, raw, body, request.scope.get(ARRIVED))
            status = 500
            try:
                response = await handler(request)
                status = response.status_code
                return response
            finally:
                log.finish(entry, status, parent_refused=getattr(request.state, "parent_refused", False))

        return endpoint

    def _project(self, project_id: str) -> Project | None:
        canonical = _canonical_uuid(project_id)
        return None if canonical is None else self.store.get_project(canonical)

    def _project_json(self, project: Project) -> dict[str, Any]:
        return {
            "id": project.id,
            "name": project.name,
            "type": project.type,
            "created_by": project.created_by,
            "created_by_user": {
                "id": self.store.user_id,
                "email": _USER_EMAIL,
                "first_name": "Local",
                "last_name": "User",
            },
            "runs": [],
            "created_at": project.created_at,
            "updated_at": project.updated_at,
            "bookmark": False,
            "permissions": [],
        }

    @staticmethod
    def _log_stream_json(stream: LogStream) -> dict[str, Any]:
        return {
            "id": stream.id,
            "name": stream.name,
            "project_id": stream.project_id,
            "created_at": stream.created_at,
            "updated_at": stream.updated_at,
            "created_by": stream.created_by,
            "has_user_created_sessions": False,
        }

    @staticmethod
    def _project_not_found(project_id: str) -> JSONResponse:
        return _error(404, f"Project {project_id} not found")

    # Auth and identity -----------------------------------------------------------------------------------

    async def healthcheck(self, request: Request) -> Response:
        return JSONResponse({"api_version": "v2", "message": "ok", "version": __version__})

    async def login(self, request: Request) -> Response:
        body, failure = await self._json(request)
        if failure is not None:
            return failure
        api_key = body.get("api_key") if isinstance(body, dict) else None
        if not isinstance(api_key, str) or not api_key:
            return _invalid(["body", "api_key"], "api_key must be a non-empty string", "missing")
        if self.access.api_key is not None and not self.access.key_matches(api_key):
            return _error(401, "Invalid API key")
        token = _auth.issue_token(self.access.secret, self.store.user_id, self.token_ttl)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    async def current_user(self, request: Request) -> Response:
        return JSONResponse({"id": self.store.user_id, "email": _USER_EMAIL, "role": "admin"})

    # Projects and log streams ----------------------------------------------------------------------------

    async def list_projects(self, request: Request) -> Response:
        projects = self.store.find_projects(
            name=request.query_params.get("project_name"), project_type=request.query_params.get("type")
        )
        return JSONResponse([self._project_json(project) for project in projects])

    async def get_project(self, request: Request) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        return JSONResponse(self._project_json(project))

    async def create_project(self, request: Request) -> Response:
        body, failure = await self._json(request)
        if failure is not None:
            return failure
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _invalid(["body", "name"], "name must be a non-empty string", "missing")
        project_type = body.get("type") or "gen_ai"
        if not isinstance(project_type, str):
            return _invalid(["body", "type"], "type must be a string", "string_type")
        project, created = self.store.create_project(name, project_type)
        if created:
            logger.info("created project %r (%s)", project.name, project.id)
        return JSONResponse(self._project_json(project))

    async def list_log_streams(self, request: Request) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        return JSONResponse([self._log_stream_json(s) for s in self.store.list_log_streams(project.id)])

    async def log_streams_page(self, request: Request) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        problems: list[dict[str, Any]] = []
        bounds = {"starting_token": (0, 0, _MAX_OFFSET), "limit": (100, 1, _MAX_PAGE)}
        values: dict[str, int] = {}
        for name, (default, low, high) in bounds.items():
            raw = request.query_params.get(name)
            try:
                values[name] = default if raw is None else int(raw)
            except ValueError:
                values[name] = default
                problems.append(_problem(["query", name], f"{name} must be an integer", "int_parsing"))
                continue
            if values[name] < low or (high is not None and values[name] > high):
                limits = f"between {low} and {high}" if high is not None else f"at least {low}"
                problems.append(_problem(["query", name], f"{name} must be {limits}", "value_error"))
        if problems:
            return _error(422, problems)
        start, limit = values["starting_token"], values["limit"]
        streams = self.store.list_log_streams(project.id, offset=start, limit=limit + 1)
        return JSONResponse(
            {
                "log_streams": [self._log_stream_json(s) for s in streams[:limit]],
                "starting_token": start,
                "limit": limit,
                "paginated": True,
                "next_starting_token": start + limit if len(streams) > limit else None,
            }
        )

    async def create_log_stream(self, request: Request) -> Response:
        body, failure = await self._json(request)
        if failure is not None:
            return failure
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _invalid(["body", "name"], "name must be a non-empty string", "missing")
        stream, created = self.store.create_log_stream(project.id, name)
        if created:
            logger.info("created log stream %r (%s) in project %r", stream.name, stream.id, project.name)
        return JSONResponse(self._log_stream_json(stream))

    # Writes ----------------------------------------------------------------------------------------------

    async def ingest_traces(self, request: Request) -> Response:
        body, failure = await self._validated(request, "LogTracesIngestRequest")
        if failure is not None:
            return failure
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        records = records_from_traces_request(body, project.id)
        stored = await self._store_records(request, records)
        traces = [r.id for r in records if r.type == "trace"]
        logger.debug("traces POST: %d records, %d new", len(records), stored)
        return JSONResponse(
            {
                "project_id": project.id,
                "project_name": project.name,
                "records_count": len(records),
                "traces_count": len(traces),
                "spans_count": len(records) - len(traces),
                "log_stream_id": body.get("log_stream_id"),
                "experiment_id": body.get("experiment_id"),
                "session_id": body.get("session_id"),
                "trace_ids": traces,
            }
        )

    # Sessions --------------------------------------------------------------------------------------------

    @staticmethod
    def _location(body: dict[str, Any]) -> str:
        """Where a session lives: the body's experiment, else its log stream, else nowhere (``''``)."""
        return _canonical_uuid(body.get("experiment_id")) or _canonical_uuid(body.get("log_stream_id")) or ""

    async def create_session(self, request: Request) -> Response:
        body, failure = await self._validated(request, "SessionCreateRequest")
        if failure is not None:
            return failure
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        session = self.store.create_session(
            project.id,
            self._location(body),
            name=body.get("name"),
            previous_session_id=_canonical_uuid(body.get("previous_session_id")),
            external_id=body.get("external_id"),
            user_metadata=body.get("user_metadata"),
        )
        logger.info("created session %s in project %r", session["id"], project.name)
        return JSONResponse(
            {
                "id": session["id"],
                "name": session["name"],
                "project_id": project.id,
                "project_name": project.name,
                "previous_session_id": session["previous_session_id"],
                "external_id": session["external_id"],
                "log_stream_id": body.get("log_stream_id"),
                "experiment_id": body.get("experiment_id"),
            }
        )

    async def search_sessions(self, request: Request) -> Response:
        body, failure = await self._json(request)
        if failure is not None:
            return failure
        for item in body.get("filters") or () if isinstance(body, dict) else ():
            if isinstance(item, dict) and "column_id" not in item and "name" in item:
                item["column_id"] = item.pop("name")  # the published SDK 2.7's spelling
        body, failure = await self._validated(request, "LogRecordsQueryRequest")
        if failure is not None:
            return failure
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        wanted: dict[str, str] = {}
        for item in body.get("filters") or ():
            column, value = item.get("column_id"), item.get("value")
            if (
                column not in ("external_id", "id")
                or item.get("operator", "eq") != "eq"
                or not isinstance(value, str)
            ):
                return _error(
                    400, "the collector filters sessions only by external_id or id, with operator eq"
                )
            wanted[column] = value
        limit = body.get("limit", 100)
        start = body.get("starting_token", 0)
        if (
            not isinstance(limit, int)
            or not isinstance(start, int)
            or not 1 <= limit <= _MAX_PAGE
            or not 0 <= start <= _MAX_OFFSET
        ):
            return _error(
                400, f"limit must be between 1 and {_MAX_PAGE} and starting_token between 0 and {_MAX_OFFSET}"
            )
        found = self.store.find_sessions(
            project.id,
            self._location(body),
            external_id=wanted.get("external_id"),
            session_id=_canonical_uuid(wanted["id"]) or "" if "id" in wanted else None,
            limit=start + limit + 1,
        )
        page = found[start : start + limit]
        more = len(found) > start + limit
        return JSONResponse(
            {
                "starting_token": start,
                "limit": limit,
                "paginated": more,
                "next_starting_token": start + limit if more else None,
                "last_row_id": page[-1]["id"] if page else None,
                "records": [dict(s, type="session", run_id=self._location(body) or None) for s in page],
            }
        )

    async def ingest_spans(self, request: Request) -> Response:
        body, failure = await self._validated(request, "LogSpansIngestRequest")
        if failure is not None:
            return failure
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        refusal = self._unknown_parent(request, body)
        if refusal is not None:
            return refusal
        records = records_from_spans_request(body, project.id)
        stored = await self._store_records(request, records)
        logger.debug("spans POST: %d records, %d new", len(records), stored)
        return JSONResponse(
            {
                "project_id": project.id,
                "project_name": project.name,
                "records_count": len(records),
                "trace_id": _canonical_uuid(body["trace_id"]),
                "parent_id": _canonical_uuid(body["parent_id"]),
                "log_stream_id": body.get("log_stream_id"),
                "experiment_id": body.get("experiment_id"),
                "session_id": None,
            }
        )

    def _unknown_parent(self, request: Request, body: dict[str, Any]) -> Response | None:
        """With the ``strict_parents`` fault setting, a 404 naming the parent of spans whose parent is not
        stored in their trace (the trace record, or one of its spans); else None."""
        if not self.faults.refuses_parents():
            return None
        trace_id, parent_id = _canonical_uuid(body["trace_id"]), _canonical_uuid(body["parent_id"])
        parent = None if parent_id is None else self.store.get_record(parent_id)
        if parent is not None and parent.trace_id == trace_id:
            return None
        self.faults.count_parent_refused()
        request.state.parent_refused = True
        return _error(404, f"Parent {parent_id or body['parent_id']} not found in trace {trace_id}")

    async def _update(self, request: Request, *, trace: bool) -> Response:
        kind, id_key = ("trace", "trace_id") if trace else ("span", "span_id")
        root = "LogTraceUpdateRequest" if trace else "LogSpanUpdateRequest"
        body, failure = await self._validated(request, root)
        if failure is not None:
            return failure
        record_id = _canonical_uuid(request.path_params[id_key])
        if record_id is None or record_id != _canonical_uuid(body[id_key]):
            return _invalid(["body", id_key], f"{id_key} does not match the path", "value_error")
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        update = RecordUpdate.from_body(body, trace=trace)
        record = self.store.update_record(record_id, update, trace=trace, project_id=project.id)
        if record is None:
            return _error(404, f"{kind.capitalize()} {record_id} not found")
        return JSONResponse(
            {
                "project_id": project.id,
                "project_name": project.name,
                "records_count": 1,
                id_key: record_id,
                "log_stream_id": body.get("log_stream_id"),
                "experiment_id": body.get("experiment_id"),
                "session_id": None,
            }
        )

    async def update_trace(self, request: Request) -> Response:
        return await self._update(request, trace=True)

    async def update_span(self, request: Request) -> Response:
        return await self._update(request, trace=False)

    async def get_trace(self, request: Request) -> Response:
        project = self._project(request.path_params["project_id"])
        if project is None:
            return self._project_not_found(request.path_params["project_id"])
        trace_id = _canonical_uuid(request.path_params["trace_id"])
        tree = None if trace_id is None else self.store.trace_tree(trace_id)
        if tree is None or tree["project_id"] != project.id:
            return _error(404, f"Trace {request.path_params['trace_id']} not found")
        return _tree_response(tree)

    # Collector API ---------------------------------------------------------------------------------------

    async def api_traces(self, request: Request) -> Response:
        params = request.query_params
        try:
            limit = int(params.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= _MAX_PAGE:
            return _error(400, f"limit must be an integer between 1 and {_MAX_PAGE}")
        filters: dict[str, str | None] = {}
        for name in ("project_id", "log_stream_id", "session_id"):
            raw = params.get(name) or None
            filters[name] = _canonical_uuid(raw)
            if raw is not None and filters[name] is None:
                return _error(400, f"{name} must be a UUID, got {raw!r}")
        return JSONResponse(
            self.store.latest_traces(
                limit, filters["project_id"], filters["log_stream_id"], session_id=filters["session_id"]
            )
        )

    async def api_trace(self, request: Request) -> Response:
        raw = request.path_params["trace_id"]
        trace_id = _canonical_uuid(raw)
        if trace_id is None:
            return _error(400, f"trace id must be a UUID, got {raw!r}")
        tree = self.store.trace_tree(trace_id)
        if tree is None:
            return _error(404, f"Trace {trace_id} not found")
        return _tree_response(tree)

    async def api_requests(self, request: Request) -> Response:
        assert self.request_log is not None
        if request.method == "DELETE":
            return JSONResponse({"cleared": self.request_log.clear()})
        return JSONResponse(self.request_log.snapshot())

    async def api_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.faults.reset()
        elif request.method == "PUT":
            changes, failure = await self._json(request)
            if failure is not None:
                return failure
            try:
                if not isinstance(changes, dict):
                    raise ValueError("the body must be a JSON object of fault settings")
                self.faults.update(changes)
            except ValueError as exc:
                return _error(400, str(exc))
        return JSONResponse(self.faults.as_dict())

    # Routing ---------------------------------------------------------------------------------------------

    def routes(self) -> list[Route]:
        auth, write = self._authenticated, self._recorded  # auth first: nothing is read before it
        project = "/projects/{project_id}"
        v2 = "/v2/projects/{project_id}"
        return [
            Route("/healthcheck", self.healthcheck, methods=["GET"]),
            Route("/login/api_key", self.login, methods=["POST"]),
            Route("/current_user", auth(self.current_user), methods=["GET"]),
            Route("/projects", auth(self.list_projects), methods=["GET"]),
            Route("/projects", auth(write(self.create_project)), methods=["POST"]),
            Route(project, auth(self.get_project), methods=["GET"]),
            Route(f"{project}/log_streams", auth(self.list_log_streams), methods=["GET"]),
            Route(f"{project}/log_streams", auth(write(self.create_log_stream)), methods=["POST"]),
            Route(f"{project}/log_streams/paginated", auth(self.log_streams_page), methods=["GET"]),
            Route(f"{v2}/traces", auth(write(self.ingest_traces)), methods=["POST"]),
            Route(f"{v2}/spans", auth(write(self.ingest_spans)), methods=["POST"]),
            Route(f"{v2}/sessions", auth(write(self.create_session)), methods=["POST"]),
            Route(f"{v2}/sessions/search", auth(self.search_sessions), methods=["POST"]),
            Route(f"{v2}/traces/{{trace_id}}", auth(write(self.update_trace)), methods=["PATCH"]),
            Route(f"{v2}/spans/{{span_id}}", auth(write(self.update_span)), methods=["PATCH"]),
            Route(f"{v2}/traces/{{trace_id}}", auth(self.get_trace), methods=["GET"]),
            Route("/api/traces", self.api_traces, methods=["GET"]),
            Route("/api/traces/{trace_id}", self.api_trace, methods=["GET"]),
        ]

    def test_routes(self) -> list[Route]:
        """The test endpoints (see the module docstring)."""
        return [
            Route("/api/requests", self.api_requests, methods=["GET", "DELETE"]),
            Route("/api/faults", self.api_faults, methods=["GET", "PUT", "DELETE"]),
        ]


def _tree_response(tree: dict[str, Any]) -> Response:
    """A trace tree as JSON; a chain of spans too deep to nest in JSON (each span posted on its own can name
    the previous one as its parent, without limit) is answered 422, pointing at the viewer's flat rows."""
    try:
        return JSONResponse(tree)
    except RecursionError:
        detail = (
            f"trace {tree.get('id')} nests too deeply to send as a tree; /api/viewer/traces/ID lists it flat"
        )
        return _error(422, detail)


async def _server_error(request: Request, exc: Exception) -> Response:
    """Any unexpected failure as JSON, like every other answer (the traceback goes to the log)."""
    logger.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": "Internal Server Error"}, status_code=500)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Framework errors (unknown route, wrong method) as JSON, like every other answer."""
    assert isinstance(exc, HTTPException)
    return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)


def build_app(
    store: Store,
    *,
    token_ttl: float,
    access: Access,
    faults: Faults | None = None,
    test_endpoints: bool = False,
) -> Starlette:
    """The collector app over ``store``, behind ``access``; the app closes the store when it shuts down.

    With ``test_endpoints``, ``/api/requests`` and ``/api/faults`` are served (404 otherwise) and every
    write request is logged; ``faults`` (latency, for instance) apply either way.
    """
    collector = _Collector(store, token_ttl, access, RequestLog() if test_endpoints else None)
    collector.faults = faults if faults is not None else Faults()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    handlers: dict[Any, Any] = {HTTPException: _http_error, Exception: _server_error}
    routes = [
        *collector.routes(),
        *otlp_routes(store, access, collector._recorded),
        *(collector.test_routes() if test_endpoints else []),
        *login_routes(access, store.user_id, token_ttl),
        *viewer_routes(store),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers=handlers,
        lifespan=lifespan,
        middleware=[
            *([Middleware(ArrivalStamp)] if test_endpoints else []),  # outermost: before a body is read
            Middleware(Guard, access=access),
            Middleware(FaultInjector, faults=collector.faults),
        ],
    )
    app.state.faults = collector.faults
    app.state.store = store
    return app
