"""Shared plumbing for the benchmarks: the tests' collector subprocess and uvicorn-in-a-thread, statistics.

Benchmarks print figures and ratios against a baseline measured in the same run; they never assert.
Everything runs on loopback, bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from collector_process import CollectorProcess
from sdk_helpers import serve

__all__ = ["median", "percentile", "serve", "start_collector"]


@contextlib.contextmanager
def start_collector(latency_ms: float = 0.0) -> Iterator[CollectorProcess]:
    """The tests' collector subprocess, on a throw-away database, delaying writes by ``latency_ms``."""
    with tempfile.TemporaryDirectory() as tmp, CollectorProcess(Path(tmp) / "bench.db") as collector:
        if latency_ms:
            answer = requests.put(f"{collector.url}/api/faults", json={"latency_ms": latency_ms}, timeout=5)
            answer.raise_for_status()
        yield collector


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
