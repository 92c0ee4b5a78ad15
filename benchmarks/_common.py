"""Shared plumbing for the benchmarks: the tests' collector subprocess and uvicorn-in-a-thread, statistics.

Benchmarks print figures and ratios against a baseline measured in the same run; they never assert.
Everything runs on loopback, bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from collector_process import CollectorProcess
from sdk_helpers import serve

__all__ = [
    "complete_traces",
    "cpu_seconds",
    "last_record_seq",
    "median",
    "next_response",
    "percentile",
    "sender_settled",
    "serve",
    "start_collector",
    "stored_by_type",
    "stored_records",
]


@contextlib.contextmanager
def start_collector(latency_ms: float = 0.0) -> Iterator[CollectorProcess]:
    """The tests' collector subprocess, on a throw-away database, delaying writes by ``latency_ms``."""
    with tempfile.TemporaryDirectory() as tmp, CollectorProcess(Path(tmp) / "bench.db") as collector:
        if latency_ms:
            answer = requests.put(f"{collector.url}/api/faults", json={"latency_ms": latency_ms}, timeout=5)
            answer.raise_for_status()
        yield collector


def stored_records(collector: CollectorProcess, log_stream_name: str | None = None) -> int:
    """Records (traces and spans) in the collector's database, read directly (read-only), like a stored count.

    Works while the collector runs (WAL: readers never block its writes) and after it stopped; with
    ``log_stream_name``, only the records that arrived for that log stream.
    """
    db = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True, timeout=5)
    try:
        if log_stream_name is None:
            row = db.execute("SELECT COUNT(*) FROM records").fetchone()
        else:
            row = db.execute(
                "SELECT COUNT(*) FROM records"
                " WHERE log_stream_id IN (SELECT id FROM log_streams WHERE name = ?)",
                (log_stream_name,),
            ).fetchone()
        return int(row[0])
    finally:
        db.close()


def last_record_seq(collector: CollectorProcess) -> int:
    """The collector's last record sequence number, read directly: it grows by one per record stored.

    Cheap at any table size (the largest key), unlike a count: for sampling a delivery rate.
    """
    db = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT MAX(seq) FROM records").fetchone()
        return int(row[0] or 0)
    finally:
        db.close()


def complete_traces(collector: CollectorProcess) -> int:
    """Traces the collector holds marked complete, read directly (read-only): any number of them."""
    db = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute("SELECT COUNT(*) FROM records WHERE type = 'trace' AND is_complete = 1").fetchone()
        return int(row[0])
    finally:
        db.close()


def stored_by_type(collector: CollectorProcess, log_stream_name: str) -> dict[str, int]:
    """Records stored for a log stream, by type (``trace``, ``workflow``, ``tool``, ``llm``, ...)."""
    db = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True, timeout=5)
    try:
        rows = db.execute(
            "SELECT type, COUNT(*) FROM records"
            " WHERE log_stream_id IN (SELECT id FROM log_streams WHERE name = ?) GROUP BY type",
            (log_stream_name,),
        ).fetchall()
        return {str(kind): int(n) for kind, n in rows}
    finally:
        db.close()


def sender_settled() -> bool:
    """Whether the process's sender holds nothing: no record queued and no request in flight.

    Read from the sender's counters (``galileo.stats()``): a trace's ``is_complete`` PATCH is not a record,
    so one planned and not yet sent is not seen here; it goes as soon as the trace's records are answered,
    within a few milliseconds of ``queued`` reaching 0.
    """
    from galileo import _sender

    sender = _sender.current()
    if sender is None:
        return True
    stats = sender.stats()
    return stats["queued"] == 0 and stats["in_flight"] == 0


def cpu_seconds(pid: int | None = None) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` (this one when None); NaN when unknown."""
    if pid is None:
        times = os.times()
        return times.user + times.system
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)


def next_response(buffer: bytes) -> tuple[bool | None, bytes]:
    """The first whole HTTP/1.1 response in ``buffer`` (for the raw-socket load generators): whether its
    status is 200, and what follows it; ``(None, buffer)`` while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None, buffer
    match = _CONTENT_LENGTH.search(buffer, 0, end + 2)
    total = end + 4 + (int(match.group(1)) if match else 0)
    if len(buffer) < total:
        return None, buffer
    return buffer[9:12] == b"200", buffer[total:]
