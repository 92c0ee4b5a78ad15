"""Test helpers: the collector as a real subprocess, and the published SDK's golden requests.

``CollectorProcess`` runs ``python -m galileo.collector serve`` on a free loopback port with its own SQLite
file, exactly as a user would (with ``--test-endpoints`` unless told otherwise, plus any ``args``), and
waits until ``GET /healthcheck`` answers. Its helpers read the collector's
own ``/api`` (no auth): ``trace(id)``, ``traces(...)``, ``requests()``, ``clear_requests()``, plus
``wait_for(predicate)`` for asynchronous senders and ``auth_headers()`` for Galileo routes.

``golden_writes(project_id, log_stream_id)`` returns the write requests the published SDK 2.7.0 made
(``tests/data/galileo-api/golden``, a copy of the team's shared API reference), re-targeted at a project and
log stream and with fresh record ids, so each call replays a new trace.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import requests

__all__ = [
    "GOLDEN_DIR",
    "REPO_ROOT",
    "CollectorProcess",
    "GoldenTrace",
    "free_port",
    "golden_writes",
]

T = TypeVar("T")

REPO_ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = REPO_ROOT / "tests" / "data" / "galileo-api" / "golden"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
_HTTP_TIMEOUT = 10.0
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class CollectorProcess:
    """``python -m galileo.collector serve`` as a subprocess on a free port, with its own database."""

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        *,
        port: int | None = None,
        token_ttl: float | None = None,
        test_endpoints: bool = True,
        args: tuple[str, ...] = (),
        env: dict[str, str] | None = None,
    ):
        self.db_path = Path(db_path)
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token_ttl = token_ttl
        self.test_endpoints = test_endpoints
        self.args = args
        self.env = env
        self.log_path = self.db_path.with_name(self.db_path.name + ".log")
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"CollectorProcess(url={self.url!r}, db_path={str(self.db_path)!r})"

    # Lifecycle -------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The collector process's id while it runs."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> CollectorProcess:
        """Start (or restart) the collector on the same port and database; return once it answers."""
        if self.running:
            return self
        command = [
            sys.executable,
            "-m",
            "galileo.collector",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--db",
            str(self.db_path),
        ]
        if self.token_ttl is not None:
            command += ["--token-ttl", str(self.token_ttl)]
        if self.test_endpoints:
            command.append("--test-endpoints")
        command += self.args
        env = None if self.env is None else {**os.environ, **self.env}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"collector exited with {self._process.returncode}:\n{self.log_text()}")
            try:
                if requests.get(f"{self.url}/healthcheck", timeout=1.0).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"collector did not answer within {START_TIMEOUT} s:\n{self.log_text()}")

    def stop(self) -> None:
        """Terminate the collector and wait for it (kill it if it does not stop in time)."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def __enter__(self) -> CollectorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        """Everything the process printed (stdout and stderr), across restarts."""
        return self.log_path.read_text("utf-8", "replace") if self.log_path.exists() else ""

    # HTTP helpers ----------------------------------------------------------------------------------------

    def _get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(f"{self.url}{path}", params=params or None, timeout=_HTTP_TIMEOUT)

    def trace(self, trace_id: str) -> dict[str, Any] | None:
        """The trace tree from ``GET /api/traces/{id}``, or None when the collector has no such trace."""
        response = self._get(f"/api/traces/{trace_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        tree: dict[str, Any] = response.json()
        return tree

    def traces(self, **params: Any) -> list[dict[str, Any]]:
        """``GET /api/traces`` (params: limit, project_id, log_stream_id, session_id): newest first."""
        response = self._get("/api/traces", **params)
        response.raise_for_status()
        traces: list[dict[str, Any]] = response.json()
        return traces

    def requests(self) -> list[dict[str, Any]]:
        """The write requests the collector received, in arrival order."""
        response = self._get("/api/requests")
        response.raise_for_status()
        entries: list[dict[str, Any]] = response.json()
        return entries

    def clear_requests(self) -> None:
        requests.delete(f"{self.url}/api/requests", timeout=_HTTP_TIMEOUT).raise_for_status()

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
        """Poll ``predicate`` until it returns something truthy, and return that; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout} s (last result: {result!r})")
            time.sleep(interval)

    def login(self, api_key: str = "test-api-key") -> str:
        """A fresh access token from ``POST /login/api_key``."""
        response = requests.post(
            f"{self.url}/login/api_key", json={"api_key": api_key}, timeout=_HTTP_TIMEOUT
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    def auth_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login()}"}


# Golden requests -----------------------------------------------------------------------------------------

_GOLDEN_WRITES = (
    "traces_ingest",
    "spans_ingest_workflow_gateway",
    "spans_ingest_llm",
    "spans_ingest_workflow_downstream_retriever",
    "spans_ingest_retriever",
    "span_update",
    "trace_update",
)


@dataclass
class GoldenTrace:
    """The published SDK's golden writes for one trace, re-targeted; ids name the records they carry."""

    trace_id: str
    gateway_workflow_id: str
    downstream_workflow_id: str
    retriever_id: str
    llm_id: str
    writes: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    """(kind, method, path, body) in the order the SDK sent them."""


def golden_writes(project_id: str, log_stream_id: str) -> GoldenTrace:
    """The golden write requests aimed at ``project_id``/``log_stream_id``, with fresh record ids."""
    recorded = {kind: json.loads((GOLDEN_DIR / f"{kind}.json").read_text("utf-8")) for kind in _GOLDEN_WRITES}
    traces_ingest = recorded["traces_ingest"]
    mapping = {
        traces_ingest["path"].split("/")[3]: project_id,
        traces_ingest["body"]["log_stream_id"]: log_stream_id,
    }

    def retarget(text: str) -> str:
        return _UUID.sub(lambda m: mapping.setdefault(m.group(0), str(uuid.uuid4())), text)

    writes = [
        (kind, entry["method"], retarget(entry["path"]), json.loads(retarget(json.dumps(entry["body"]))))
        for kind, entry in recorded.items()
    ]
    bodies = {kind: body for kind, _, _, body in writes}
    return GoldenTrace(
        trace_id=bodies["traces_ingest"]["traces"][0]["id"],
        gateway_workflow_id=bodies["spans_ingest_workflow_gateway"]["spans"][0]["id"],
        downstream_workflow_id=bodies["spans_ingest_workflow_downstream_retriever"]["spans"][0]["id"],
        retriever_id=bodies["spans_ingest_retriever"]["spans"][0]["id"],
        llm_id=bodies["spans_ingest_llm"]["spans"][0]["id"],
        writes=writes,
    )
