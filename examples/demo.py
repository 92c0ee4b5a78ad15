"""The README's demo: log a nested trace to the embedded default (the local collector) and print it back.

No account and no configuration: with no GALILEO_API_URL, GALILEO_CONSOLE_URL or GALILEO_API_KEY set, the
SDK sends to the local collector at http://localhost:8088. This script starts one there (with a throw-away
database) unless one is already listening, logs a trace holding all five span types, flushes, and prints
the tree the collector stored, as ``galileo-collector tree TRACE_ID`` would.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import requests

from galileo import GalileoLogger
from galileo.collector.cli import format_tree
from galileo.config import DEFAULT_LOCAL_URL


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


def log_example_trace() -> str:
    """One question answered by a small agent: the shape of trace the SDK is for.

    The sleeps stand in for real work; no duration is passed, so the logger measures each span.
    """
    logger = GalileoLogger(project="demo", log_stream="quickstart")
    question = "Who improved the telescope in 1609?"
    trace = logger.start_trace(input=question, name="ask", tags=["demo"])
    logger.add_workflow_span(input=question, name="answer-question")
    time.sleep(0.02)  # a vector search
    logger.add_retriever_span(
        input=question,
        output=[
            "Galileo built a 20x telescope in 1609.",
            {"content": "He observed Jupiter's moons.", "metadata": {"page": 4}},
        ],
        name="vector-search",
    )
    logger.add_agent_span(input=question, name="planner")
    time.sleep(0.01)  # a tool call
    logger.add_tool_span(input='{"year": 1609}', output="Galileo Galilei", name="lookup-year")
    logger.conclude(output="Galileo Galilei")
    time.sleep(0.05)  # the model answers
    logger.add_llm_span(
        input=[
            {"role": "system", "content": "Answer from the documents."},
            {"role": "user", "content": question},
        ],
        output={"role": "assistant", "content": "Galileo Galilei improved the telescope in 1609."},
        model="demo-llm",
        num_input_tokens=42,
        num_output_tokens=11,
        total_tokens=53,
        name="compose-answer",
    )
    logger.conclude()  # the workflow takes the llm's answer as its output
    logger.conclude()  # the trace too, as text
    logger.flush(timeout=15)
    return trace.id


def main() -> int:
    url = os.environ.get("GALILEO_API_URL", DEFAULT_LOCAL_URL)
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if not _collector_running(url):
            proc = _start_collector(url, os.path.join(tmp, "demo.db"))
        try:
            trace_id = log_example_trace()
            tree = requests.get(f"{url}/api/traces/{trace_id}", timeout=5)
            tree.raise_for_status()
            print(f"trace {trace_id} as the collector at {url} stored it:\n")
            print(format_tree(tree.json()))
        finally:
            if proc is not None:
                proc.terminate()
                proc.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
