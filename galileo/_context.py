"""The per-request state object and the context variable that carries it.

The middleware creates one :class:`RequestState` per HTTP request and sets it in :data:`request_state`
before the application runs; everything the SDK does on the request's behalf (``get_request_logger()``, the
logger's decision not to block, ``@log``) only reads and changes that object. Context variables are copied
into tasks (``asyncio.gather``, ``create_task``) and into threadpool calls (``run_in_threadpool``,
``asyncio.to_thread``), and since the copy holds the same *object*, all of them see one state: the logger
created in a threadpool call is the logger the middleware finalises.

The object is created on every request, so it is a plain slotted class doing no work in ``__init__``; what
can be derived from the ASGI scope (method, path, route template) is derived when asked.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galileo.config import GalileoConfig
    from galileo.logger import GalileoLogger

__all__ = ["RequestState", "current_request", "request_state"]


class RequestState:
    """What the SDK knows about one request: its upstream trace context and its logger (once created)."""

    __slots__ = ("config_source", "finalized", "logger", "parent_id", "scope", "status_code", "trace_id")

    def __init__(
        self,
        scope: dict[str, Any],
        trace_id: str | None = None,
        parent_id: str | None = None,
        config_source: Any = None,
    ) -> None:
        #: The ASGI scope (method, path and, after routing, the matched route).
        self.scope = scope
        #: Trace id and parent id from valid X-Galileo-* headers, or None (the request opens a new trace).
        self.trace_id = trace_id
        self.parent_id = parent_id
        #: Where the request logger's configuration comes from (the middleware's per-app settings).
        self.config_source = config_source
        self.logger: GalileoLogger | None = None
        self.status_code: int | None = None
        self.finalized = False

    def __repr__(self) -> str:
        return f"<RequestState {self.method} {self.path} trace_id={self.trace_id} parent_id={self.parent_id}>"

    @property
    def method(self) -> str:
        return str(self.scope.get("method", "GET"))

    @property
    def path(self) -> str:
        return str(self.scope.get("path", "/"))

    def route_path(self) -> str:
        """The matched route's template (``/items/{item_id}``) when routing found one, else the raw path."""
        route = self.scope.get("route")
        template = getattr(route, "path", None)
        return template if isinstance(template, str) else self.path

    def config(self) -> GalileoConfig | None:
        """The configuration for this request's logger (None: the process's, from the environment)."""
        source = self.config_source
        config: GalileoConfig | None = source() if callable(source) else source
        return config


request_state: ContextVar[RequestState | None] = ContextVar("galileo_request_state", default=None)


def current_request() -> RequestState | None:
    """The state of the request being handled in this context, or None outside any request."""
    return request_state.get()
