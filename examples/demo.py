"""The README's demo: two services, one trace, on the embedded default (the local collector).

No account and no configuration: with no GALILEO_API_URL, GALILEO_CONSOLE_URL or GALILEO_API_KEY set, the
SDK sends to the local collector at http://localhost:8088. This script starts one there (with a throw-away
database) unless one is already listening, serves the FastAPI gateway and the Starlette retriever of
``examples/two_services.py`` on uvicorn, asks the gateway a question, and prints the trace the collector
stored, as ``galileo-collector tree TRACE_ID`` would: the retriever's spans under the gateway's span.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import requests

import galileo
from galileo.collector.cli import format_tree
from galileo.config import DEFAULT_LOCAL_URL

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from two_services import make_gateway_app, make_retriever_app, serve


def _collector_running(url: str) -> bool:
    try:
        return requests.get(f"{url}/healthcheck", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _start_collector(url: str, db: str) -> subprocess.Popen[bytes]:
    port = url.rsplit(":", 1)[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "galileo.collector", "serve", "--port", port, "--db", db],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 15
    while not _collector_running(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the local collector did not start on {url}")
        time.sleep(0.1)
    return proc


@contextlib.contextmanager
def local_collector() -> Iterator[str]:
    """The collector the SDK sends to (GALILEO_API_URL, else the local default): the one running there, or
    one started for the block with a throw-away database. Yields its URL."""
    url = os.environ.get("GALILEO_API_URL", DEFAULT_LOCAL_URL)
    if _collector_running(url):
        yield url
        return
    with tempfile.TemporaryDirectory() as tmp:
        proc = _start_collector(url, os.path.join(tmp, "demo.db"))
        try:
            yield url
        finally:
            proc.terminate()
            proc.wait(10)


def print_trace(url: str, trace_id: str) -> None:
    """The trace as the collector at ``url`` stored it, as ``galileo-collector tree`` prints it."""
    tree = requests.get(f"{url}/api/traces/{trace_id}", timeout=5)
    tree.raise_for_status()
    print(f"trace {trace_id} as the collector at {url} stored it:\n")
    print(format_tree(tree.json()))


def main() -> int:
    with local_collector() as url:
        with serve(make_retriever_app()) as retriever, serve(make_gateway_app(retriever)) as gateway:
            question = "What moons did Galileo see?"
            answer = requests.get(f"{gateway}/ask", params={"q": question}, timeout=30).json()
        galileo.shutdown(timeout=15)  # deliver what the services queued
        print(f"gateway answered: {answer['answer']}")
        print_trace(url, answer["trace_id"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
