"""Shared plumbing for the benchmarks: a collector subprocess, a uvicorn server in a thread, statistics.

Benchmarks print figures and ratios against a baseline measured in the same run; they never assert.
Everything runs on loopback, bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from typing import Any

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from sdk_helpers import serve

__all__ = ["Collector", "free_port", "percentile", "serve", "start_collector"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Collector:
    """A ``galileo-collector serve`` subprocess with a throw-away database."""

    def __init__(self, latency_ms: float = 0.0) -> None:
        self._tmp = tempfile.TemporaryDirectory()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, "-m", "galileo.collector", "serve", "--port", str(self.port)]
        command += ["--db", os.path.join(self._tmp.name, "bench.db"), "--latency", str(latency_ms)]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(f"{self.url}/healthcheck", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the collector did not start")
            time.sleep(0.05)

    def set_faults(self, **faults: Any) -> None:
        requests.put(f"{self.url}/api/faults", json=faults, timeout=5).raise_for_status()

    def traces(self, limit: int = 1000) -> list[dict[str, Any]]:
        answer = requests.get(f"{self.url}/api/traces", params={"limit": limit}, timeout=10)
        answer.raise_for_status()
        result: list[dict[str, Any]] = answer.json()
        return result

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self._tmp.cleanup()


@contextlib.contextmanager
def start_collector(latency_ms: float = 0.0) -> Iterator[Collector]:
    collector = Collector(latency_ms)
    try:
        yield collector
    finally:
        collector.close()


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")
