"""The per-request state object and the context variable that carries it.

The middleware creates one :class:`RequestState` per HTTP request and sets it in :data:`request_state`
before the application runs; everything the SDK does on the request's behalf (``get_request_logger()``, the
logger's decision not to block, ``@log``) only reads and changes that object. Context variables are copied
into tasks (``asyncio.gather``, ``create_task``) and into threadpool calls (``run_in_threadpool``,
``asyncio.to_thread``), and since the copy holds the same *object*, all of them see one state: the logger
created in a threadpool call is the logger the middleware finalises.

The object is created on every request, so it is made as cheaply as Python allows (see
:class:`RequestState`); what can be derived from the ASGI scope (method, path, route template) is derived
when asked.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, MutableMapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from galileo._incoming import Incoming
    from galileo._trace_state import Level
    from galileo.config import GalileoConfig
    from galileo.logger import GalileoLogger

__all__ = [
    "Activity",
    "RequestState",
    "SpanFrame",
    "activity",
    "current_request",
    "request_state",
    "span_frame",
]


class RequestState:
    """What the SDK knows about one request: its upstream trace context and its logger (once created).

    The trace context (an :class:`~galileo._incoming.Incoming`: ``trace_id``, ``parent_id`` and the W3C
    context, from X-Galileo-*, traceparent/tracestate or OpenTelemetry's current span) is parsed the first
    time it is asked for — when the request's logger is created — so a request that logs nothing pays
    nothing for it (and a malformed header is reported only when it matters).

    Made with :meth:`new`. It is created on every request, and the middleware's fast path is timed in
    tenths of a microsecond: so the class has slots (fast to read) and no ``__init__`` (a type with none is
    called without a Python frame); :meth:`new`, and the middleware inline, fill in every slot.
    """

    __slots__ = ("_incoming", "_send", "config_source", "finalized", "logger", "scope", "status")

    #: The header parser, ``(raw ASGI headers) -> Incoming``; set by :mod:`galileo.propagation`.
    parse_headers: ClassVar[Callable[[Iterable[tuple[bytes, bytes]]], Incoming]]

    #: The ASGI scope (method, path, headers and, after routing, the matched route).
    scope: MutableMapping[str, Any]
    #: The app's ``send``, which :meth:`send_status` wraps.
    _send: Any
    #: Where the request logger's configuration comes from (the middleware's per-app settings).
    config_source: Any
    #: The response's status, once sent through :meth:`send_status` (500 until then).
    status: int
    logger: GalileoLogger | None
    finalized: bool
    _incoming: Incoming | None

    @classmethod
    def new(
        cls, scope: MutableMapping[str, Any], config_source: Any = None, send: Any = None
    ) -> RequestState:
        """The state of a request with this ``scope``; ``send`` is what :meth:`send_status` passes on to."""
        state = cls()
        state.scope = scope
        state.config_source = config_source
        state._send = send
        state.status = 500
        state.logger = None
        state.finalized = False
        state._incoming = None
        return state

    def __repr__(self) -> str:
        return f"<RequestState {self.method} {self.path}>"

    def send_status(self, message: MutableMapping[str, Any]) -> Any:
        """The ASGI ``send`` given to the app: notes the response's status, hands back send's awaitable."""
        if message["type"] == "http.response.start":
            self.status = message["status"]
        return self._send(message)

    def _context(self) -> Incoming:
        incoming = self._incoming
        if incoming is None:
            incoming = self._incoming = type(self).parse_headers(self.scope.get("headers", ()))
        return incoming

    @property
    def trace_id(self) -> str | None:
        """The upstream Galileo trace id (X-Galileo-* or our tracestate member), or None (a new trace)."""
        return self._context()[0]

    @property
    def parent_id(self) -> str | None:
        """The upstream parent (span or trace) to attach to, or None with no upstream trace."""
        return self._context()[1]

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


class SpanFrame:
    """Where spans go in this context while a ``@log``-decorated workflow or agent call runs.

    ``level`` is the open level of ``logger``'s tree the call opened (its span), ``outer`` the level that
    span sits in, and ``base`` the logger's innermost open level (the top of its stack) when the span opened.
    Frames are never changed once made: a decorated call sets a new one in :data:`span_frame` for its
    duration (a generator only while its body runs) and resets it after, so tasks and threadpool calls started
    inside it see it and nothing outside does. The logger's own ``add_*`` calls in that context nest under
    ``level`` too, as long as the logger's stack top is still ``base`` (levels the logger opened later win).
    """

    __slots__ = ("base", "level", "logger", "outer")

    def __init__(self, logger: GalileoLogger, level: Level, base: Level, outer: Level) -> None:
        self.logger = logger
        self.level = level
        self.base = base
        self.outer = outer

    def __repr__(self) -> str:
        return f"<SpanFrame {self.level.id}>"


span_frame: ContextVar[SpanFrame | None] = ContextVar("galileo_span_frame", default=None)


class Activity:
    """How many requests this process serves through ``TracingMiddleware`` right now; when one last ended.

    The sender yields to them: while requests are in flight, and until none has ended for a moment (a burst
    of requests is served one after another, with the event loop idle for an instant between two), it holds
    records back (briefly, see ``galileo._sender.YIELD_CAP`` and ``QUIET``); ``on_idle``, called by the
    middleware when the last request in flight ends while the sender holds records, lets it look again.
    A hint only: it is updated without a lock by the threads serving requests.
    """

    __slots__ = ("active", "ended_at", "holding", "on_idle")

    def __init__(self) -> None:
        self.active = 0
        #: When the last request that logged something ended (``time.monotonic()``).
        self.ended_at = -math.inf
        #: Set by the sender while it holds records back; the middleware calls ``on_idle`` only then.
        self.holding = False
        self.on_idle: Callable[[], None] | None = None


activity = Activity()
