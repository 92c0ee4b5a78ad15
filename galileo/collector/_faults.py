"""Fault injection, for testing clients against a misbehaving backend on purpose.

A pure ASGI middleware in front of the collector's routes. Its settings live in one :class:`Faults` object,
changed at run time with ``PUT /api/faults`` (a JSON object with any of the fields below; ``DELETE`` resets
them) and read with ``GET /api/faults``; ``galileo-collector serve --latency MS`` sets the latency at start.
A bad setting is answered 400 with a ``detail`` naming it, and changes nothing.

* ``latency_ms``: every matching request waits this long before it is handled (on the event loop, so
  concurrent requests wait concurrently, as behind a slow network).
* ``fail_count``, ``fail_status``, ``retry_after``: the next ``fail_count`` matching requests are answered
  ``fail_status`` (default 503) without being handled, with a ``Retry-After`` header when set.
* ``body``, ``content_type``, ``body_size``: what an injected answer carries instead of the default
  ``{"detail": "injected fault: HTTP <status>"}`` (``application/json``). ``body`` is a string (sent
  UTF-8 encoded), ``content_type`` a header value (``text/html``; default ``application/json``, so
  ``{"body": "<html>", "fail_status": 200}`` is a 200 claiming JSON that is not), ``body_size`` a length
  in bytes (at most :data:`MAX_BODY_SIZE`): ``body`` (default ``x``) repeated and cut to exactly that
  many bytes. With ``fail_count`` > 0 they shape the next ``fail_count`` answers and are cleared with the
  last of them; set while ``fail_count`` is 0, they turn *every* matching request into such an answer,
  with status ``fail_status``, until reset (``DELETE``, or ``null`` for each of them). The status may be
  a success: ``{"fail_status": 200, "body": "<h1>hi</h1>", "content_type": "text/html"}`` is a proxy
  answering 200 without passing the request on (nothing is stored). A 1xx, 204 or 304 answer carries no
  body, whatever the settings (HTTP forbids one).
* ``paths``: path prefixes the faults apply to (default ``["/v2/"]``, the trace and span writes); add
  ``"/login"`` to make logins fail, ``"/projects"`` for project and log-stream look-ups.
* ``strict_parents`` (default false): behave as a strict server may (WIRE.md, Status codes) and refuse a
  spans POST whose parent is not stored yet: 404 ``{"detail": "Parent <id> not found in trace <id>"}``,
  nothing of the body stored. The parent is the trace record when ``parent_id`` is the trace's id, else a
  span stored in that trace (spans nested in one body are stored with their container, so only the
  request's top-level ``parent_id`` is looked up). The collector itself is lenient, as Galileo documents it:
  without this setting it stores spans in any order and links them when their parent arrives. Refusals are
  counted in ``parents_refused`` and marked ``parent_refused`` in ``/api/requests``
  (:mod:`galileo.collector._request_log`). ``paths`` does not narrow it.
* ``match``: a string (at most :data:`MAX_MATCH_CHARS` characters, or null for none): the faults apply only
  to requests whose raw body contains it (UTF-8 encoded, compared byte for byte; note that JSON escapes
  ``"`` and non-ASCII text, so a plain ASCII marker is what a test wants). Only then is the body read here,
  once, and handed on to the route as it arrived; the collector's front door
  (:mod:`galileo.collector._guard`) has already read it whole within the body limit, so this reads nothing
  unbounded. A request that does not match is handled as if no fault were set (no latency, no failure
  counted), which lets a test poison one record and leave the others of a shared request body to go on
  alone.

Injected answers are made without handling the request: nothing is stored and nothing enters
``/api/requests``. ``injected`` counts them. Latency is waited before the route handles the request, after
``/api/requests`` noted its arrival (``arrived``, see :mod:`galileo.collector._request_log`).

Refused connections and outages are not injected here: stop the collector (and start it again).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import attrs
from starlette.types import ASGIApp, Receive, Scope, Send

from galileo.collector._guard import replay

__all__ = ["MAX_BODY_SIZE", "MAX_MATCH_CHARS", "FaultInjector", "Faults"]

#: The largest ``body_size`` accepted (64 MiB): large enough for any client's limits, small enough to build.
MAX_BODY_SIZE = 64 * 1024 * 1024
#: The longest ``match`` accepted: a marker, not a document.
MAX_MATCH_CHARS = 1024
_CHUNK = 1024 * 1024
_NO_BODY = frozenset({*range(100, 200), 204, 304})


@attrs.frozen
class _Answer:
    """How one injected answer looks."""

    status: int
    retry_after: float | None
    body: str | None
    content_type: str | None
    body_size: int | None

    def encode(self) -> bytes:
        if self.body is None and self.body_size is None:
            return json.dumps({"detail": f"injected fault: HTTP {self.status}"}).encode()
        unit = (self.body if self.body is not None else "x").encode()
        if self.body_size is None:
            return unit
        if not unit:
            unit = b"x"
        return (unit * (self.body_size // len(unit) + 1))[: self.body_size]


@attrs.define
class Faults:
    """The collector's current fault settings (one per app; guarded by a lock)."""

    latency_ms: float = 0.0
    fail_count: int = 0
    fail_status: int = 503
    retry_after: float | None = None
    body: str | None = None
    content_type: str | None = None
    body_size: int | None = None
    paths: list[str] = attrs.field(factory=lambda: ["/v2/"])
    strict_parents: bool = False
    match: str | None = None
    injected: int = 0
    parents_refused: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, alias="_lock")

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "fail_count": self.fail_count,
                "fail_status": self.fail_status,
                "retry_after": self.retry_after,
                "body": self.body,
                "content_type": self.content_type,
                "body_size": self.body_size,
                "paths": list(self.paths),
                "strict_parents": self.strict_parents,
                "match": self.match,
                "injected": self.injected,
                "parents_refused": self.parents_refused,
            }

    def update(self, changes: dict[str, Any]) -> None:
        """Apply ``changes`` (validated: ValueError naming the field on a bad value)."""
        parsed: dict[str, Any] = {}
        for name, value in changes.items():
            if name in ("latency_ms", "retry_after"):
                if value is None and name == "retry_after":
                    parsed[name] = None
                    continue
                if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                    raise ValueError(f"{name} must be a number >= 0")
                parsed[name] = float(value)
            elif name == "fail_count":
                if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                    raise ValueError("fail_count must be an integer >= 0")
                parsed[name] = value
            elif name == "fail_status":
                if not isinstance(value, int) or isinstance(value, bool) or not 100 <= value <= 599:
                    raise ValueError("fail_status must be an HTTP status code")
                parsed[name] = value
            elif name in ("body", "content_type", "body_size"):
                parsed[name] = _answer_setting(name, value)
            elif name == "paths":
                if not isinstance(value, list) or not all(
                    isinstance(p, str) and p.startswith("/") for p in value
                ):
                    raise ValueError("paths must be a list of path prefixes starting with '/'")
                parsed[name] = list(value)
            elif name == "strict_parents":
                if not isinstance(value, bool):
                    raise ValueError("strict_parents must be true or false")
                parsed[name] = value
            elif name == "match":
                parsed[name] = _match_setting(value)
            else:
                raise ValueError(f"unknown fault setting {name!r}")
        with self._lock:
            for name, value in parsed.items():
                setattr(self, name, value)

    def reset(self) -> None:
        with self._lock:
            self.latency_ms, self.fail_count, self.fail_status = 0.0, 0, 503
            self.retry_after, self.paths, self.injected = None, ["/v2/"], 0
            self.body = self.content_type = self.body_size = self.match = None
            self.strict_parents, self.parents_refused = False, 0

    def refuses_parents(self) -> bool:
        """Whether a spans POST whose parent is not stored must be refused (``strict_parents``)."""
        with self._lock:
            return self.strict_parents

    def count_parent_refused(self) -> None:
        with self._lock:
            self.parents_refused += 1

    def _shaped(self) -> bool:
        return self.body is not None or self.content_type is not None or self.body_size is not None

    def _selects(self, path: str) -> tuple[bool, bytes | None]:
        """Whether a request to ``path`` may be faulted, and the marker its body must then contain."""
        with self._lock:
            if not any(path.startswith(p) for p in self.paths):
                return False, None
            return True, None if self.match is None else self.match.encode()

    def _decide(self, path: str, body: bytes | None = None) -> tuple[float, _Answer | None]:
        """(latency in seconds, the answer to inject or None) for one request; ``body`` is its body when
        ``match`` asked to read it."""
        with self._lock:
            if not any(path.startswith(p) for p in self.paths):
                return 0.0, None
            if self.match is not None and (body is None or self.match.encode() not in body):
                return 0.0, None
            if self.fail_count == 0 and not self._shaped():
                return self.latency_ms / 1000, None
            answer = _Answer(self.fail_status, self.retry_after, self.body, self.content_type, self.body_size)
            self.injected += 1
            if self.fail_count > 0:
                self.fail_count -= 1
                if self.fail_count == 0:  # the answer's shape belonged to the counted failures
                    self.body = self.content_type = self.body_size = None
            return self.latency_ms / 1000, answer


def _match_setting(value: Any) -> str | None:
    """A validated ``match`` (None clears it); ValueError naming it."""
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_MATCH_CHARS:
        raise ValueError(f"match must be a string of 1 to {MAX_MATCH_CHARS} characters or null")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("match must be encodable as UTF-8 (no lone surrogates)") from None
    return value


def _answer_setting(name: str, value: Any) -> Any:
    """A validated ``body``, ``content_type`` or ``body_size`` (None clears it); ValueError naming it."""
    if value is None:
        return None
    if name == "body":
        if not isinstance(value, str):
            raise ValueError("body must be a string or null")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("body must be encodable as UTF-8 (no lone surrogates)") from None
        return value
    if name == "content_type":
        if not isinstance(value, str) or not value.strip() or not value.isprintable() or not value.isascii():
            raise ValueError("content_type must be a non-empty printable ASCII string or null")
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_BODY_SIZE:
        raise ValueError(f"body_size must be an integer between 0 and {MAX_BODY_SIZE} or null")
    return value


class FaultInjector:
    """ASGI middleware applying :class:`Faults` to HTTP requests."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        selected, marker = self.faults._selects(scope["path"])
        received: bytes | None = None
        if selected and marker is not None:  # the body decides: read it once, and hand it on as it came
            received = await _read_body(receive)
            if received is None:  # the client went away
                return
            receive = replay(received, receive)
        latency, answer = self.faults._decide(scope["path"], received)
        if latency:
            await asyncio.sleep(latency)
        if answer is None:
            await self.app(scope, receive, send)
            return
        if received is None:
            while (await receive()).get("more_body"):  # read the body, as a server that answered would
                pass
        content_type = answer.content_type if answer.content_type is not None else "application/json"
        headers = [(b"content-type", content_type.encode())]
        if answer.status in _NO_BODY:  # HTTP forbids a body here (the server would fail sending one)
            body = b""
        else:
            body = answer.encode()
            headers.append((b"content-length", str(len(body)).encode()))
        if answer.retry_after is not None:
            headers.append((b"retry-after", f"{answer.retry_after:g}".encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": headers})
        for start in range(0, len(body), _CHUNK):  # a huge body goes in chunks, as a server streams it
            await send(
                {"type": "http.response.body", "body": body[start : start + _CHUNK], "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None when the client went away first. Unbounded here: the collector's
    front door (:class:`galileo.collector._guard.Guard`) has read it whole, within the body limit, before."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
