"""Fault injection, for testing clients against a misbehaving backend on purpose.

A pure ASGI middleware in front of the collector's routes. Its settings live in one :class:`Faults` object,
changed at run time with ``PUT /api/faults`` (a JSON object with any of the fields below; ``DELETE`` resets
them) and read with ``GET /api/faults``; ``galileo-collector serve --latency MS`` sets the latency at start.

* ``latency_ms``: every matching request waits this long before it is handled (on the event loop, so
  concurrent requests wait concurrently, as behind a slow network).
* ``fail_count``, ``fail_status``, ``retry_after``: the next ``fail_count`` matching requests are answered
  ``fail_status`` (default 503) without being handled, with a ``Retry-After`` header when set.
* ``paths``: path prefixes the faults apply to (default ``["/v2/"]``, the trace and span writes); add
  ``"/login"`` to make logins fail, ``"/projects"`` for project and log-stream look-ups.

Refused connections and outages are not injected here: stop the collector (and start it again).
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import attrs
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["FaultInjector", "Faults"]


@attrs.define
class Faults:
    """The collector's current fault settings (one per app; guarded by a lock)."""

    latency_ms: float = 0.0
    fail_count: int = 0
    fail_status: int = 503
    retry_after: float | None = None
    paths: list[str] = attrs.field(factory=lambda: ["/v2/"])
    injected: int = 0
    _lock: threading.Lock = attrs.field(factory=threading.Lock, repr=False, alias="_lock")

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "latency_ms": self.latency_ms,
                "fail_count": self.fail_count,
                "fail_status": self.fail_status,
                "retry_after": self.retry_after,
                "paths": list(self.paths),
                "injected": self.injected,
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
            elif name == "paths":
                if not isinstance(value, list) or not all(
                    isinstance(p, str) and p.startswith("/") for p in value
                ):
                    raise ValueError("paths must be a list of path prefixes starting with '/'")
                parsed[name] = list(value)
            else:
                raise ValueError(f"unknown fault setting {name!r}")
        with self._lock:
            for name, value in parsed.items():
                setattr(self, name, value)

    def reset(self) -> None:
        with self._lock:
            self.latency_ms, self.fail_count, self.fail_status = 0.0, 0, 503
            self.retry_after, self.paths, self.injected = None, ["/v2/"], 0

    def _decide(self, path: str) -> tuple[float, int | None, float | None]:
        """(latency in seconds, status to fail with or None, retry-after) for one request."""
        with self._lock:
            if not any(path.startswith(p) for p in self.paths):
                return 0.0, None, None
            if self.fail_count > 0:
                self.fail_count -= 1
                self.injected += 1
                return self.latency_ms / 1000, self.fail_status, self.retry_after
            return self.latency_ms / 1000, None, None


class FaultInjector:
    """ASGI middleware applying :class:`Faults` to HTTP requests."""

    def __init__(self, app: ASGIApp, faults: Faults) -> None:
        self.app = app
        self.faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        latency, status, retry_after = self.faults._decide(scope["path"])
        if latency:
            await asyncio.sleep(latency)
        if status is None:
            await self.app(scope, receive, send)
            return
        while (await receive()).get("more_body"):  # read the body, as a server that answered would
            pass
        body = json.dumps({"detail": f"injected fault: HTTP {status}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if retry_after is not None:
            headers.append((b"retry-after", f"{retry_after:g}".encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
