"""The log of recent write requests behind ``GET|DELETE /api/requests``: a test endpoint, off by default.

The collector keeps it only when started with ``--test-endpoints`` (``create_app(test_endpoints=True)``), for
tests that check what a client sent and in which order. Each entry: ``seq`` (arrival order), ``method``,
``path``, ``status`` (None until answered), ``received_at``/``finished_at`` (the collector's monotonic
clock), ``record_ids`` (every trace/span id the body names, nested ones included, or the PATCHed id) and
``body``: the parsed JSON of an accepted (2xx) request, None for any other.

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

from galileo.collector._body import parse_json

__all__ = ["REQUEST_LOG_BYTES", "REQUEST_LOG_SIZE", "RequestLog"]

REQUEST_LOG_SIZE = 10_000
REQUEST_LOG_BYTES = 64 * 1024 * 1024


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


class RequestLog:
    """A bounded ring of the write requests received, in arrival order. Entries are completed on finish."""

    def __init__(self, capacity: int = REQUEST_LOG_SIZE, max_bytes: int = REQUEST_LOG_BYTES) -> None:
        self._entries: collections.deque[dict[str, Any]] = collections.deque()
        self._capacity = capacity
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()
        self._seq = 0

    def begin(self, method: str, path: str, raw: bytes, body: Any) -> dict[str, Any]:
        """Note a request that passed authentication; ``raw`` is kept until :meth:`finish` says 2xx."""
        with self._lock:
            self._seq += 1
            entry = {
                "seq": self._seq,
                "method": method,
                "path": path,
                "status": None,
                "received_at": time.monotonic(),
                "finished_at": None,
                "record_ids": _record_ids(body),
                "raw": raw,
            }
            self._entries.append(entry)
            self._bytes += len(raw)
            self._trim()
            return entry

    def finish(self, entry: dict[str, Any], status: int) -> None:
        with self._lock:
            entry["status"] = status
            entry["finished_at"] = time.monotonic()
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
        """Every entry, bodies parsed (None for a rejected or unanswered request)."""
        with self._lock:
            entries = list(self._entries)
            copies = [{**entry} for entry in entries]
        for entry in copies:
            raw = entry.pop("raw")
            accepted = entry["status"] is not None and 200 <= entry["status"] < 300
            entry["body"] = parse_json(raw) if raw and accepted else None
        return copies

    def clear(self) -> int:
        with self._lock:
            count = len(self._entries)
            self._entries.clear()
            self._bytes = 0
            return count
