"""The log of recent write requests behind ``GET|DELETE /api/requests``: a test endpoint, off by default.

The collector keeps it only when started with ``--test-endpoints`` (``create_app(test_endpoints=True)``), for
tests that check what a client sent and in which order. Each entry:

* ``seq``: the order in which requests were handed to their route, ``method``, ``path``, ``status`` (None
  until answered);
* times on the collector's monotonic clock: ``arrived``, when the request reached the collector (its headers
  read, before the guard reads its body and before any latency :mod:`galileo.collector._faults` injects),
  ``received_at``, when its route began handling it (after that latency: kept for compatibility, but only
  ``arrived`` says when a client sent something), and ``finished_at``, when it was answered;
* ``record_ids``: every trace/span id the body names, nested ones included, or the PATCHed id;
  ``trace_id``/``parent_id``: the links a spans POST names (None for other requests);
  ``parent_refused``: true when the collector refused the spans because it had not stored their parent
  (the ``strict_parents`` fault setting);
* ``body``: the parsed JSON of an accepted (2xx) request, None for any other.

The arrival is stamped by :class:`ArrivalStamp`, the outermost middleware of a collector with test endpoints,
so ordering checks can compare when a request was *sent* (``arrived``) with when the requests it depends on
were *answered* (``finished_at``) even when the collector holds every write for a while.

Memory is bounded by bytes, not only by count: bodies are kept as the bytes that arrived (far smaller than
their parsed form, parsed again when read), at most :data:`REQUEST_LOG_BYTES` of them and
:data:`REQUEST_LOG_SIZE` entries; the oldest entries go first. A rejected request (401, 413, 422, ...)
keeps no body at all.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from galileo.collector._body import BodyError, parse_json

__all__ = ["ARRIVED", "REQUEST_LOG_BYTES", "REQUEST_LOG_SIZE", "ArrivalStamp", "RequestLog"]

REQUEST_LOG_SIZE = 10_000
REQUEST_LOG_BYTES = 64 * 1024 * 1024
#: The ASGI scope key holding a request's arrival time (:func:`time.monotonic`), set by :class:`ArrivalStamp`.
ARRIVED = "galileo.arrived"


class ArrivalStamp:
    """ASGI middleware noting when each HTTP request arrived, in ``scope[ARRIVED]``: put it outermost."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[ARRIVED] = time.monotonic()
        await self.app(scope, receive, send)


def _record_ids(body: Any) -> list[str]:
    """The ids of the records a write body names: every (nested) trace/span id, or the PATCHed id."""
    if not isinstance(body, dict):
        return []
    if isinstance(body.get("span_id"), str):
        return [body["span_id"]]
    ids: list[str] = []
    stack = [item for key in ("traces", "spans") if isinstance(body.get(key), list) for item in body[key]]
    stack.reverse()
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("id"), str):
                ids.append(item["id"])
            if isinstance(item.get("spans"), list):
                stack.extend(reversed(item["spans"]))
    if not ids and "traces" not in body and "spans" not in body and isinstance(body.get("trace_id"), str):
        ids.append(body["trace_id"])
    return ids


def _links(body: Any) -> tuple[str | None, str | None]:
    """The ``trace_id`` and ``parent_id`` a spans POST names (None, None for any other body)."""
    if not isinstance(body, dict) or not isinstance(body.get("spans"), list):
        return None, None
    trace_id, parent_id = body.get("trace_id"), body.get("parent_id")
    return (
        trace_id if isinstance(trace_id, str) else None,
        parent_id if isinstance(parent_id, str) else None,
    )


class RequestLog:
    """A bounded ring of the write requests received, in arrival order. Entries are completed on finish."""

    def __init__(self, capacity: int = REQUEST_LOG_SIZE, max_bytes: int = REQUEST_LOG_BYTES) -> None:
        self._entries: collections.deque[dict[str, Any]] = collections.deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._seq = 0

    def begin(
        self, method: str, path: str, raw: bytes, body: Any, arrived: float | None = None
    ) -> dict[str, Any]:
        """Note a request that passed authentication; ``raw`` is kept until :meth:`finish` says 2xx.

        ``arrived`` is when the request reached the collector (``scope[ARRIVED]``); now when not given.
        """
        now = time.monotonic()
        trace_id, parent_id = _links(body)
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "method": method,
                "path": path,
                "status": None,
                "arrived": now if arrived is None else arrived,
                "received_at": now,
                "finished_at": None,
                "record_ids": _record_ids(body),
                "trace_id": trace_id,
                "parent_id": parent_id,
                "parent_refused": False,
                "raw": raw,
            }
            self._entries.append(entry)
            self._bytes += len(raw)
            self._trim()
            return entry

    def finish(self, entry: dict[str, Any], status: int, *, parent_refused: bool = False) -> None:
        """Note the answer: its status, and whether it refused spans for want of their parent."""
        with self._lock:
            entry["status"] = status
            entry["finished_at"] = time.monotonic()
            entry["parent_refused"] = parent_refused
            if not 200 <= status < 300 and entry["raw"]:
                self._bytes -= len(entry["raw"])
                entry["raw"] = b""

    def _trim(self) -> None:
        while self._entries and (len(self._entries) > self._capacity or self._bytes > self._max_bytes):
            evicted = self._entries.popleft()
            self._bytes -= len(evicted["raw"])
            evicted["raw"] = b""  # an entry still in flight: its finish() must not count these bytes again

    @property
    def size_bytes(self) -> int:
        """The bytes of the bodies kept."""
        with self._lock:
            return self._bytes

    def snapshot(self) -> list[dict[str, Any]]:
        """Every entry, bodies parsed (None for a rejected or unanswered request, and for a body that is
        not JSON: an OTLP export in protobuf, or compressed)."""
        with self._lock:
            entries = list(self._entries)
            copies = [{**entry} for entry in entries]
        for entry in copies:
            raw = entry.pop("raw")
            accepted = entry["status"] is not None and 200 <= entry["status"] < 300
            entry["body"] = _body(raw) if raw and accepted else None
        return copies

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count


def _body(raw: bytes) -> Any:
    try:
        return parse_json(raw)
    except BodyError:
        return None
