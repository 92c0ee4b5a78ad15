"""``examples/otel_interop.py`` (OpenTelemetry → ours → OpenTelemetry) makes one trace, in the tree it prints
and in the viewer (headless Chromium): the two OpenTelemetry services' spans reach the collector through its
OTLP endpoint, ours through Galileo's API, and the collector joins them by id."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import span_rows, wait_until
from collector_process import CollectorProcess

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.browser
def test_three_services_two_tracing_worlds_one_trace(collector: CollectorProcess, page: Any) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GALILEO_", "OTEL_"))}
    env["GALILEO_API_URL"] = collector.url  # the example reuses a running collector
    out = subprocess.run(
        [sys.executable, "examples/otel_interop.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    trace_id = re.search(r"^trace (\S+) as the collector", out.stdout, flags=re.M)
    assert trace_id is not None, out.stdout
    tree = [re.sub(r"\s+[\d.]+ ms", "", line) for line in out.stdout.splitlines()[3:8]]
    assert tree == [
        "trace  GET /ask  200  complete  [otel-demo / answerer]",
        "├─ workflow  GET /ask  ok  [otel-demo / frontend]",
        "└─ workflow  answer  ok",
        "   ├─ llm  compose  ok",
        "   └─ workflow  POST /rank  ok  [otel-demo / ranker]",
    ]

    page.get(f"{collector.url}/traces/{trace_id.group(1)}")
    wait_until(page, lambda d: len(span_rows(d)) == 5)
    assert sorted(span_rows(page)) == sorted(
        [
            ("0", "trace", "GET /ask"),
            ("1", "workflow", "GET /ask"),
            ("1", "workflow", "answer"),
            ("2", "llm", "compose"),
            ("2", "workflow", "POST /rank"),
        ]
    )
    text = page.find_element("css selector", "body").text
    assert all(service in text for service in ("frontend", "answerer", "ranker")), text
    assert not [chip for chip in page.find_elements("css selector", ".chip.orphan") if chip.is_displayed()]
