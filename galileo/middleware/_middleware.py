"""TracingMiddleware: the request's trace context in, the request's logger finalised after the response.

It subclasses Starlette's ``BaseHTTPMiddleware`` and implements :meth:`TracingMiddleware.dispatch`, the
documented, overridable contract. ``BaseHTTPMiddleware`` runs the app in a task group behind memory streams,
which costs about nine times a trivial request; so when ``dispatch`` is the stock one (no subclass overrides
it and no ``dispatch=`` was given), :meth:`__call__` takes a pure-ASGI fast path doing the same work: read
the headers from the scope, set the request state, run the app, finalise in ``finally``. A subclass that
overrides ``dispatch`` (or a ``dispatch=`` function) runs through ``BaseHTTPMiddleware`` as usual. Both paths
share one header parser and one way to build the request state; nothing per request is stored on ``self``.

At the app's lifespan shutdown (a server stopping, e.g. on SIGTERM) the middleware delivers what is queued
before the server is told the app is done, waiting at most ``galileo._sender.EXIT_TIMEOUT`` (5 s): uvicorn
ends the process with the signal's default action afterwards, so the interpreter's atexit drain never runs.

Finalisation concludes what the handler left open and completes the request's trace with the response's
status actually sent (500 when the app raised). On both paths it happens in :meth:`__call__` once the app
has returned: after the body, a stream's last chunk and the response's background tasks, so spans those
tasks log land in the trace. It only enqueues records, so it never delays a response. ``dispatch`` leaves the
request's state in the scope (under :data:`_STATE_KEY`) for ``__call__`` to finalise; ``__call__`` removes it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio.to_thread
from starlette.middleware.base import BaseHTTPMiddleware, DispatchFunction, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import galileo.propagation  # noqa: F401  (installs the header parser RequestState uses)
from galileo import _sender
from galileo._context import RequestState, activity, request_state
from galileo.config import GalileoConfig
from galileo.middleware._request import distributed, finalize_request

__all__ = ["TracingMiddleware"]

_log = logging.getLogger("galileo")

#: Where ``dispatch`` leaves the request's state for ``__call__`` to finalise (removed again there).
_STATE_KEY: Final = "galileo.request_state"


def _request_done() -> None:
    """One request fewer in flight; the last one out lets the sender go (it yields to requests)."""
    activity.active -= 1
    if activity.holding and not activity.active and activity.on_idle is not None:
        activity.on_idle()


def _drain_on_shutdown(send: Send) -> Send:
    """``send`` for a lifespan scope: before reporting the app's shutdown, drain the sender (bounded)."""

    async def lifespan_send(message: Message) -> None:
        if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
            try:
                await anyio.to_thread.run_sync(_sender.shutdown, _sender.EXIT_TIMEOUT)
            except Exception:  # never in the way of a shutdown
                _log.debug("galileo: draining at shutdown failed", exc_info=True)
        await send(message)

    return lifespan_send


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
    first request that logs. An invalid configuration never fails a request: it is logged once, as one ERROR
    line naming the setting (the traceback at DEBUG), and the request logger is a no-op.
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
        super().__init__(app)  # dispatch_func is self.dispatch, which runs a dispatch= function inside it
        self._dispatch_arg = dispatch
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
        if scope["type"] != "http":
            # Websockets pass through untouched; so does the lifespan, but for one thing: when the app has
            # shut down, what is queued is delivered (bounded) before the server hears so. uvicorn answers
            # SIGTERM by shutting the app down and then re-raising the signal with its default handler,
            # which ends the process without running atexit hooks: this is the last moment to send.
            await self.app(scope, receive, _drain_on_shutdown(send) if scope["type"] == "lifespan" else send)
            return
        activity.active += 1
        if not self._fast:
            await self._dispatch_path(scope, receive, send)
            return
        # The request's state notes the status sent (its bound method is the app's send: no closure).
        state = RequestState()  # RequestState.new(scope, self._config_source, send), inlined
        state.scope = scope
        state.config_source = self._config_source
        state._send = send
        state.status = 500
        state.logger = None
        state.finalized = False
        state._incoming = None
        token = request_state.set(state)
        try:
            await self.app(scope, receive, state.send_status)
        except BaseException:
            state.status = 500
            raise
        finally:
            request_state.reset(token)
            if state.logger is None:  # nothing to finalise: mark it done (later loggers are no-ops)
                state.finalized = True
                if state.logger is not None:  # read again: a thread may have created it meanwhile
                    finalize_request(state, state.status)
            else:
                finalize_request(state, state.status)
            activity.active -= 1  # _request_done(), inlined: this path is timed in microseconds
            if activity.holding and not activity.active and activity.on_idle is not None:
                activity.on_idle()

    async def _dispatch_path(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``BaseHTTPMiddleware.__call__`` (running :meth:`dispatch`), then finalisation with the status."""
        status = 500

        def send_status(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no extra coroutine per message.
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)

        try:
            await super().__call__(scope, receive, send_status)
        except BaseException:
            status = 500
            raise
        finally:
            state = scope.pop(_STATE_KEY, None)
            if state is not None:
                finalize_request(state, status)
            _request_done()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        """Set the request's trace context around ``call_next``; the logger is finalised after the response.

        Override it to add behaviour around the request; call ``await super().dispatch(request, call_next)``
        to keep the tracing. A ``dispatch=`` function given to the constructor runs here, in place of
        ``call_next``, inside the request's trace context. Finalisation happens in ``__call__`` once the
        response (and its background tasks) is done, with the status actually sent, whatever the override
        did to the response.
        """
        # The headers are parsed (by galileo.propagation's parser) when the request's logger is created.
        state = RequestState.new(request.scope, self._config_source)
        request.scope[_STATE_KEY] = state
        token = request_state.set(state)
        try:
            inner = self._dispatch_arg
            response = await (call_next(request) if inner is None else inner(request, call_next))
        finally:
            request_state.reset(token)
        return response
