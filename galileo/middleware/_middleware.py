"""TracingMiddleware: the request's trace context in, the request's logger finalised after the response.

It subclasses Starlette's ``BaseHTTPMiddleware`` and implements :meth:`TracingMiddleware.dispatch`, the
documented, overridable contract. ``BaseHTTPMiddleware`` runs the app in a task group behind memory streams,
which costs about nine times a trivial request; so when ``dispatch`` is the stock one (no subclass overrides
it and no ``dispatch=`` was given), :meth:`__call__` takes a pure-ASGI fast path doing the same work: read
the headers from the scope, set the request state, run the app, finalise in ``finally``. A subclass that
overrides ``dispatch`` (or a ``dispatch=`` function) runs through ``BaseHTTPMiddleware`` as usual. Both paths
share one header parser and one way to build the request state; nothing per request is stored on ``self``.

Finalisation concludes what the handler left open and completes the request's trace with the response's
status (500 when the handler raised). It happens after the response was sent: on the fast path when the app
returns (after the body, a stream's last chunk and background tasks); in ``dispatch`` as a background task
chained after the response's own. It only enqueues records, so it never delays a response.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.background import BackgroundTask
from starlette.middleware.base import BaseHTTPMiddleware, DispatchFunction, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from galileo._context import RequestState, request_state
from galileo.config import GalileoConfig
from galileo.middleware._request import distributed, finalize_request
from galileo.propagation import parse_trace_headers

__all__ = ["TracingMiddleware"]


def _new_state(scope: Scope, config_source: Any) -> RequestState:
    trace_id, parent_id = parse_trace_headers(scope.get("headers", ()))
    return RequestState(scope, trace_id, parent_id, config_source)  # type: ignore[arg-type]


class TracingMiddleware(BaseHTTPMiddleware):
    """Continue the caller's trace in this service; see the module docstring for how.

    FastAPI and Starlette alike::

        app = FastAPI()
        app.add_middleware(TracingMiddleware)

        app = Starlette(routes=routes, middleware=[Middleware(TracingMiddleware)])  # not the bare class

    A Starlette endpoint returns a ``Response`` (``JSONResponse({...})``), not a dict; FastAPI converts dicts.
    In a handler, ``get_request_logger()`` returns the request's logger.

    ``project``, ``log_stream`` (or ``config=GalileoConfig.resolve(...)``) set where this app's spans go;
    by default GALILEO_PROJECT / GALILEO_LOG_STREAM and the rest of the environment, resolved once, at the
    first request that logs. An invalid configuration never fails a request: it is logged once at ERROR and
    the request logger is a no-op.
    """

    def __init__(
        self,
        app: ASGIApp,
        dispatch: DispatchFunction | None = None,
        *,
        project: str | None = None,
        log_stream: str | None = None,
        config: GalileoConfig | None = None,
    ) -> None:
        super().__init__(app, dispatch)
        self._fast = dispatch is None and type(self).dispatch is TracingMiddleware.dispatch
        self._settings = (project, log_stream)
        self._config: GalileoConfig | Exception | None = distributed(config) if config is not None else None
        self._config_source: Callable[[], GalileoConfig | None] | None = (
            None if project is None and log_stream is None and config is None else self._app_config
        )

    def _app_config(self) -> GalileoConfig | None:
        """This app's configuration (per app, resolved once; a failure is raised again on each use)."""
        if self._config is None:
            project, log_stream = self._settings
            try:
                self._config = distributed(GalileoConfig.resolve(project=project, log_stream=log_stream))
            except Exception as exc:
                self._config = exc
        if isinstance(self._config, Exception):
            raise self._config
        return self._config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self._fast:
            await super().__call__(scope, receive, send)  # passes websocket and lifespan through
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = _new_state(scope, self._config_source)
        token = request_state.set(state)
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = 500
            raise
        finally:
            request_state.reset(token)
            if state.logger is not None:
                finalize_request(state, status)

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Set the request's trace context, call the app, finalise the request's logger after the response.

        Override it to add behaviour around the request; call ``await super().dispatch(request, call_next)``
        to keep the tracing.
        """
        state = _new_state(request.scope, self._config_source)
        token = request_state.set(state)
        try:
            try:
                response = await call_next(request)
            except BaseException:
                finalize_request(state, 500)
                raise
            response.background = _then(response.background, finalize_request, state, response.status_code)
            return response
        finally:
            request_state.reset(token)


def _then(first: BackgroundTask | None, func: Callable[..., Any], *args: Any) -> BackgroundTask:
    """A background task running ``first`` (the response's own, if any), then ``func(*args)``."""

    async def run() -> None:
        try:
            if first is not None:
                await first()
        finally:
            result = func(*args)
            if isinstance(result, Awaitable):
                await result

    return BackgroundTask(run)
