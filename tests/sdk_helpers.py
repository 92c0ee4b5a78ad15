"""Helpers for SDK tests: a spy on the SDK's HTTP exchanges, trees compared with what the collector stored."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import pytest
import urllib3

import galileo
from galileo import _sender, _transport

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
from two_services import serve

__all__ = [
    "Call",
    "HttpSpy",
    "called_by_the_sdk",
    "fresh_sdk",
    "http_spy",
    "sent_shape",
    "serve",
    "strip_store_keys",
    "tree_lines",
]

# Keys the collector adds to each stored record, or that it fills from the request envelope.
_STORE_KEYS = {"project_id", "log_stream_id", "is_complete", "orphans", "project_name", "log_stream_name"}
_STORE_KEYS |= {"trace_record", "error_count"}  # the trace's: did its record arrive, how many spans failed


@attrs.define
class Call:
    thread: str
    method: str
    url: str
    status: int | None
    started: float = 0.0  # time.monotonic() when the call began
    headers: dict[str, str] = attrs.field(factory=dict)
    body: bytes | None = None


@attrs.define
class HttpSpy:
    """Records every HTTP exchange the SDK makes (delegating to the real thing)."""

    calls: list[Call] = attrs.field(factory=list)
    lock: threading.Lock = attrs.field(factory=threading.Lock)

    def paths(self, method: str | None = None) -> list[str]:
        with self.lock:
            return [
                c.url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
                for c in self.calls
                if method is None or c.method == method
            ]

    def count(self, method: str, path_suffix: str) -> int:
        return sum(1 for p in self.paths(method) if ("/" + p).endswith(path_suffix))


def called_by_the_sdk(caller: FrameType | None) -> bool:
    """Whether a connection pool's ``urlopen`` called from ``caller`` is one of the SDK's exchanges.

    The SDK's transport calls the API host's ``HTTPConnectionPool.urlopen`` once per exchange, itself or
    through its ``PoolManager`` (a ``ProxyManager`` behind a proxy), whose ``urlopen`` calls the pool's.
    The other callers are urllib3 retrying inside the same exchange (the pool's ``urlopen`` calls itself
    again) and ``requests``, which the tests and benchmarks use to talk to the collector: neither is an
    exchange of the SDK.
    """
    while caller is not None and caller.f_globals.get("__name__") == "urllib3.poolmanager":
        caller = caller.f_back
    return caller is not None and caller.f_globals.get("__name__") == "galileo._transport"


def _url(pool: urllib3.HTTPConnectionPool, url: str) -> str:
    """The absolute URL of a request target given to ``pool.urlopen`` (a path, or already absolute)."""
    if not url.startswith("/"):
        return url
    host = f"[{pool.host}]" if ":" in pool.host else pool.host
    return f"{pool.scheme}://{host}:{pool.port}{url}"


@pytest.fixture
def http_spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[HttpSpy]:
    """Every HTTP exchange the SDK makes, once each (immediate retries inside it are not counted apart).

    It wraps ``urllib3.HTTPConnectionPool.urlopen`` (HTTPS pools inherit it), which the SDK's transport
    calls for each exchange, and delegates to the real thing.
    """
    spy = HttpSpy()
    real = urllib3.HTTPConnectionPool.urlopen

    def urlopen(
        self: urllib3.HTTPConnectionPool, method: str, url: str, *args: Any, **kwargs: Any
    ) -> urllib3.BaseHTTPResponse:
        if not called_by_the_sdk(sys._getframe(1)):
            return real(self, method, url, *args, **kwargs)
        status = None
        started = time.monotonic()
        try:
            response = real(self, method, url, *args, **kwargs)
            status = response.status
            return response
        finally:
            body = kwargs.get("body", args[0] if args else None)
            headers = kwargs.get("headers", args[1] if len(args) > 1 else None)
            with spy.lock:
                spy.calls.append(
                    Call(
                        threading.current_thread().name,
                        method,
                        _url(self, url),
                        status,
                        started,
                        dict(headers or {}),
                        body,
                    )
                )

    monkeypatch.setattr(urllib3.HTTPConnectionPool, "urlopen", urlopen)
    yield spy


@pytest.fixture
def fresh_sdk() -> Iterator[None]:
    """A fresh process-wide sender, client cache and ``galileo_context`` (its process loggers read the
    environment again) for the test, drained afterwards."""
    _sender.reset(timeout=5)
    _transport.reset_clients()
    galileo.galileo_context.reset()
    yield
    _sender.reset(timeout=1)  # tests that point at a dead backend leave records that cannot go
    _transport.reset_clients()


def strip_store_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """The stored tree without what the collector adds, children sorted like the logger's order."""
    out = {k: v for k, v in tree.items() if k not in _STORE_KEYS}
    out["trace_id"] = None
    out["parent_id"] = None
    if "spans" in out:
        out["spans"] = [strip_store_keys(child) for child in out["spans"]]
    return out


def sent_shape(wire: dict[str, Any]) -> dict[str, Any]:
    """A record as sent, in the tree shape the collector answers (every record has a ``spans`` list)."""
    out = dict(wire)
    out["spans"] = [sent_shape(child) for child in out.get("spans", [])]
    return out


def tree_lines(tree: dict[str, Any], depth: int = 0) -> list[str]:
    """``type:name`` per record, indented by depth: a compact picture of a stored tree."""
    lines = ["  " * depth + f"{tree.get('type')}:{tree.get('name')}"]
    for child in tree.get("spans", []):
        lines.extend(tree_lines(child, depth + 1))
    return lines


#: The JSON Schema root each write validates against, by (method, kind of record).
WRITE_ROOTS = {
    ("POST", "traces"): "LogTracesIngestRequest",
    ("POST", "spans"): "LogSpansIngestRequest",
    ("PATCH", "traces"): "LogTraceUpdateRequest",
    ("PATCH", "spans"): "LogSpanUpdateRequest",
}


def writes(collector: Any) -> list[dict[str, Any]]:
    """The trace and span writes a collector received (project and log stream set-up left out)."""
    return [r for r in collector.requests() if r["path"].startswith("/v2/")]


def kind(request: dict[str, Any]) -> tuple[str, str]:
    """``(method, "traces" | "spans")`` of a write the collector received."""
    return request["method"], request["path"].split("/")[4]


def validate_requests(requests: list[dict[str, Any]]) -> int:
    """Validate every write body against its root schema; return how many were checked."""
    from schema_validation import validate

    for request in requests:
        validate(WRITE_ROOTS[kind(request)], request["body"])
    return len(requests)
