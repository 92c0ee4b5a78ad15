"""The per-request state object and the context variable that carries it.

The middleware creates one :class:`RequestState` per HTTP request and sets it in :data:`request_state`
before the application runs; everything the SDK does on the request's behalf (``get_request_logger()``, the
logger's decision not to block, ``@log``) only reads and changes that object. Context variables are copied
into tasks (``asyncio.gather``, ``create_task``) and into threadpool calls (``run_in_threadpool``,
``asyncio.to_thread``), and since the copy holds the same *object*, all of them see one state: the logger
created in a threadpool call is the logger the middleware finalises.
"""

from __future__ import annotations

import threading
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from galileo.logger import GalileoLogger

__all__ = ["RequestState", "current_request", "request_state"]


@attrs.define(eq=False)
class RequestState:
    """What the SDK knows about one request: its upstream trace context and its logger (once created)."""

    method: str
    path: str
    #: Trace id and parent id from valid X-Galileo-* headers, or None (a new trace then).
    trace_id: str | None = None
    parent_id: str | None = None
    #: The ASGI scope, for the route template (known only after routing).
    scope: dict[str, Any] | None = attrs.field(default=None, repr=False)
    logger: GalileoLogger | None = attrs.field(default=None, repr=False)
    status_code: int | None = None
    finalized: bool = False
    lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False)

    def route_path(self) -> str:
        """The matched route's template (``/items/{item_id}``) when routing found one, else the raw path."""
        route = (self.scope or {}).get("route")
        template = getattr(route, "path", None)
        return template if isinstance(template, str) else self.path


request_state: ContextVar[RequestState | None] = ContextVar("galileo_request_state", default=None)


def current_request() -> RequestState | None:
    """The state of the request being handled in this context, or None outside any request."""
    return request_state.get()
