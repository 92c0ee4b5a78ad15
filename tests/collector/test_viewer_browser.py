"""The trace viewer in a real headless Chromium: what a person debugging a distributed trace sees and does.

The two-service trace comes from the example services (``examples/two_services.py``: a FastAPI gateway calling
a Starlette retriever, each in its own log stream) traced by the SDK into the shared collector; other traces
are posted to the collector's ingest API like any client would. Waits are explicit (``WebDriverWait``).
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_helpers import wait_until
from collector_process import CollectorProcess
from sdk_helpers import serve

import galileo
from galileo import _sender, _transport

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
from two_services import make_gateway_app, make_retriever_app

pytestmark = pytest.mark.browser


def _visible(driver: Any, css: str) -> list[Any]:
    from selenium.webdriver.common.by import By

    return [node for node in driver.find_elements(By.CSS_SELECTOR, css) if node.is_displayed()]


def _one(driver: Any, css: str) -> Any:
    return wait_until(driver, lambda d: (_visible(d, css) or [None])[0])


def _row(driver: Any, name: str) -> Any:
    def find(d: Any) -> Any:
        rows = _visible(d, ".span-row")
        return next((r for r in rows if r.find_element("css selector", ".name").text == name), None)

    return wait_until(driver, find)


class TwoServiceTrace:
    def __init__(self, tree: dict[str, Any]) -> None:
        self.id: str = tree["id"]
        gateway = tree["spans"][0]
        self.ids = {"gateway-workflow": gateway["id"]}
        self.ids |= {span["name"]: span["id"] for span in gateway["spans"]}


@pytest.fixture(scope="module")
def two_service_trace(collector: CollectorProcess) -> Iterator[TwoServiceTrace]:
    """One request through the example gateway and retriever, traced into the shared collector."""
    with pytest.MonkeyPatch.context() as env:
        for name in list(os.environ):
            if name.startswith("GALILEO_"):
                env.delenv(name)
        env.setenv("GALILEO_API_URL", collector.url)
        env.setenv("GALILEO_API_KEY", "test-api-key")
        _sender.reset(timeout=5)
        _transport.reset_clients()
        try:
            with serve(make_retriever_app()) as retriever, serve(make_gateway_app(retriever)) as gateway:
                answer = requests.get(
                    f"{gateway}/ask", params={"q": "what moons did Galileo see"}, timeout=30
                )
            assert answer.status_code == 200
            galileo.shutdown(timeout=15)
        finally:
            _transport.reset_clients()
        tree = collector.wait_for(lambda: collector.trace(answer.json()["trace_id"]))
    yield TwoServiceTrace(tree)


def _ingest(collector: CollectorProcess, project_name: str, traces: list[dict[str, Any]]) -> str:
    headers = collector.auth_headers()
    project = requests.post(
        f"{collector.url}/projects", json={"name": project_name}, headers=headers, timeout=10
    )
    project_id: str = project.json()["id"]
    if traces:
        body = {"traces": traces, "is_complete": True}
        answer = requests.post(
            f"{collector.url}/v2/projects/{project_id}/traces", json=body, headers=headers, timeout=10
        )
        assert answer.status_code == 200, answer.text
    return project_id


def test_the_list_shows_the_trace_and_the_services_it_crossed(
    page: Any, collector: CollectorProcess, two_service_trace: TwoServiceTrace
) -> None:
    page.get(f"{collector.url}/?q={two_service_trace.id}")
    row = _one(page, f'tr[data-trace-id="{two_service_trace.id}"]')
    cells = [cell.text for cell in row.find_elements("css selector", "td")]
    assert cells[0].splitlines() == ["GET /ask", two_service_trace.id]
    assert cells[2].endswith("ms") and cells[3] == "4"
    assert cells[4] == "ok 200"
    assert cells[5] == "demo / gateway"
    chips = row.find_elements("css selector", "td.services .chip")
    assert [chip.text for chip in chips] == ["demo / gateway", "demo / retriever"]
    row.find_element("css selector", "a.trace-link").click()
    wait_until(page, lambda d: d.current_url.endswith(f"/traces/{two_service_trace.id}"))
    assert _one(page, ".trace-head h1").text.splitlines() == ["TRACE", "GET /ask"]


def test_the_waterfall_nests_spans_marks_the_boundary_and_collapses(
    page: Any, collector: CollectorProcess, two_service_trace: TwoServiceTrace
) -> None:
    page.get(f"{collector.url}/traces/{two_service_trace.id}")
    wait_until(page, lambda d: len(_visible(d, ".span-row")) == 5)
    rows = _visible(page, ".span-row")
    assert [(r.get_attribute("data-depth"), r.get_attribute("data-type")) for r in rows] == [
        ("0", "trace"),
        ("1", "workflow"),
        ("2", "workflow"),
        ("3", "retriever"),
        ("2", "llm"),
    ]
    boundary = _row(page, "retriever-service")
    assert "boundary" in boundary.get_attribute("class").split()
    assert boundary.find_element("css selector", ".chip.boundary").text == "⇢ demo / retriever"
    assert [r.get_attribute("data-span-id") for r in _visible(page, ".span-row.boundary")] == [
        two_service_trace.ids["retriever-service"]
    ]
    bars = [r.find_element("css selector", ".bar") for r in rows]
    assert all(bar.size["width"] >= 2 for bar in bars)
    assert bars[1].location["x"] >= bars[0].location["x"]  # the workflow starts after the trace

    gateway = _row(page, "gateway-workflow")
    gateway.find_element("css selector", ".toggle").click()
    wait_until(page, lambda d: len(_visible(d, ".span-row")) == 2)
    assert gateway.get_attribute("aria-expanded") == "false"
    gateway.find_element("css selector", ".toggle").click()
    wait_until(page, lambda d: len(_visible(d, ".span-row")) == 5)
    _row(page, "retriever-service").find_element("css selector", ".toggle").click()
    wait_until(page, lambda d: len(_visible(d, ".span-row")) == 4)
    assert "vector-search" not in page.find_element("css selector", ".waterfall").text


def test_an_llm_span_shows_its_messages_model_and_tokens_and_deep_links(
    page: Any, collector: CollectorProcess, two_service_trace: TwoServiceTrace
) -> None:
    page.get(f"{collector.url}/traces/{two_service_trace.id}")
    _row(page, "compose-answer").click()
    llm_id = two_service_trace.ids["compose-answer"]
    wait_until(page, lambda d: d.current_url.endswith(f"?span={llm_id}"))

    def details_shown(driver: Any) -> Any:
        panel = _one(driver, ".details")
        return panel if "Model" in panel.text and _visible(driver, ".details .message") else None

    panel = wait_until(page, details_shown)
    assert panel.find_element("css selector", "h2").text.splitlines() == ["LLM", "compose-answer"]
    assert "demo-llm" in panel.text and "40 in · 12 out · 52 total" in panel.text
    roles = [node.text for node in panel.find_elements("css selector", ".message .role")]
    assert roles == ["SYSTEM", "USER", "ASSISTANT"]
    assert llm_id in panel.text

    page.get(f"{collector.url}/traces/{two_service_trace.id}?span={llm_id}")  # the deep link
    panel = wait_until(page, details_shown)
    assert _one(page, ".span-row.selected").get_attribute("data-span-id") == llm_id


def test_span_text_holding_markup_is_shown_as_text_and_never_runs(
    page: Any, collector: CollectorProcess
) -> None:
    script = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">'
    trace_id, tool_id = str(uuid.uuid4()), str(uuid.uuid4())
    tool = {
        "type": "tool",
        "id": tool_id,
        "name": "<b>bold</b>",
        "input": script,
        "output": script,
        "created_at": "2026-01-01T00:00:01Z",
        "user_metadata": {"note": script},
        "tags": [script],
    }
    trace = {
        "type": "trace",
        "id": trace_id,
        "name": script,
        "input": script,
        "created_at": "2026-01-01T00:00:00Z",
        "spans": [tool],
    }
    _ingest(collector, f"xss-{trace_id}", [trace])

    page.get(f"{collector.url}/?q={trace_id}")
    link = _one(page, f'tr[data-trace-id="{trace_id}"] a.trace-link')
    assert link.text == script
    page.get(f"{collector.url}/traces/{trace_id}?span={tool_id}")
    _one(page, ".details .detail-input pre")
    panel = _one(page, ".details")
    assert _row(page, "<b>bold</b>").find_elements("css selector", ".name b") == []
    shown = [node.text for node in panel.find_elements("css selector", ".detail-input pre")]
    assert shown == [script]
    assert script in panel.find_element("css selector", ".detail-metadata").text
    assert page.execute_script("return typeof window.__pwned") == "undefined"
    assert page.find_elements("css selector", "#app img, #app script") == []


def _ingest_spans(
    collector: CollectorProcess, project_id: str, trace_id: str, parent_id: str, spans: list[dict[str, Any]]
) -> None:
    body = {"trace_id": trace_id, "parent_id": parent_id, "spans": spans}
    answer = requests.post(
        f"{collector.url}/v2/projects/{project_id}/spans",
        json=body,
        headers=collector.auth_headers(),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def _status_cell(row: Any) -> list[str]:
    return [node.text for node in row.find_elements("css selector", ".status, .error-flag")]


def test_a_trace_whose_spans_failed_is_flagged_with_the_count_in_the_list_and_its_header(
    page: Any, collector: CollectorProcess
) -> None:
    def tool(name: str, status: int) -> dict[str, Any]:
        at = "2026-01-01T00:00:01Z"
        return {
            "type": "tool",
            "id": str(uuid.uuid4()),
            "name": name,
            "created_at": at,
            "status_code": status,
        }

    one, two = str(uuid.uuid4()), str(uuid.uuid4())
    common = {"type": "trace", "input": "q", "status_code": 200, "metrics": {"duration_ns": 5_000_000}}
    traces = [
        {**common, "id": one, "name": "one failed", "created_at": "2026-01-01T00:00:00Z"},
        {**common, "id": two, "name": "two failed", "created_at": "2026-01-01T00:00:02Z"},
    ]
    traces[0]["spans"] = [tool("fine", 200), tool("<b>broken</b>", 500)]
    traces[1]["spans"] = [{**tool("workflow", 200), "spans": [tool("a", 502), tool("b", 429)]}]
    project_id = _ingest(collector, f"errors-{uuid.uuid4()}", traces)

    page.get(f"{collector.url}/?project_id={project_id}")
    first = _one(page, f'tr[data-trace-id="{one}"]')
    second = _one(page, f'tr[data-trace-id="{two}"]')
    assert _status_cell(first) == ["ok 200", "⚠ 1 error"]
    assert _status_cell(second) == ["ok 200", "⚠ 2 errors"]
    assert all("has-error" in row.get_attribute("class").split() for row in (first, second))

    first.find_element("css selector", "a.trace-link").click()
    wait_until(page, lambda d: d.current_url.endswith(f"/traces/{one}"))
    wait_until(page, lambda d: _status_cell(_one(d, ".trace-head")) == ["ok 200", "⚠ 1 error"])  # drawn after
    failed = _row(page, "<b>broken</b>")  # text, never markup
    assert failed.find_element("css selector", ".error-mark").text == "⚠ 500"
    assert failed.find_elements("css selector", ".name b") == []


def test_a_trace_whose_record_never_arrived_is_listed_found_by_a_span_id_and_shown(
    page: Any, collector: CollectorProcess
) -> None:
    project_id = _ingest(collector, f"missing-{uuid.uuid4()}", [])
    trace_id = str(uuid.uuid4())
    workflow = {
        "type": "workflow",
        "id": str(uuid.uuid4()),
        "name": "retriever-service",
        "input": "q",
        "created_at": "2026-01-01T00:00:01Z",
        "metrics": {"duration_ns": 4_000_000},
    }
    search = {**workflow, "type": "retriever", "id": str(uuid.uuid4()), "name": "vector-search"}
    search |= {"created_at": "2026-01-01T00:00:01.001Z", "status_code": 503, "output": []}
    _ingest_spans(collector, project_id, trace_id, trace_id, [workflow])
    _ingest_spans(collector, project_id, trace_id, workflow["id"], [search])

    page.get(f"{collector.url}/?project_id={project_id}")
    row = _one(page, f'tr[data-trace-id="{trace_id}"]')
    assert row.find_element("css selector", "a.trace-link").text == "(trace record missing)"
    assert _status_cell(row) == ["trace record missing", "⚠ 1 error"]
    assert "missing" in row.get_attribute("class").split()
    assert [cell.text for cell in row.find_elements("css selector", "td")][3] == "2"

    page.get(f"{collector.url}/")
    _one(page, "table.traces tbody tr[data-trace-id]")  # the newest page is drawn: now search
    box = _one(page, "input[name=q]")
    box.send_keys(search["id"])
    box.submit()
    wait_until(
        page,
        lambda d: (
            len(_visible(d, "table.traces tbody tr")) == 1 and _visible(d, f'tr[data-trace-id="{trace_id}"]')
        ),
    )
    _one(page, f'tr[data-trace-id="{trace_id}"] a.trace-link').click()

    wait_until(page, lambda d: d.current_url.endswith(f"/traces/{trace_id}"))
    assert _one(page, ".trace-head h1").text.splitlines() == ["TRACE", "(trace record missing)"]
    assert "has not arrived" in _one(page, ".trace-head .missing-note").text
    assert _status_cell(_one(page, ".trace-head")) == ["trace record missing", "⚠ 1 error"]
    wait_until(page, lambda d: len(_visible(d, ".span-row")) == 3)
    rows = _visible(page, ".span-row")
    assert [(r.get_attribute("data-depth"), r.find_element("css selector", ".name").text) for r in rows] == [
        ("0", "(trace record missing)"),
        ("1", "retriever-service"),
        ("2", "vector-search"),
    ]
    rows[0].click()
    note = "No trace record with this id has arrived"
    wait_until(page, lambda d: note in d.find_element("css selector", ".details").text)

    _ingest_into(collector, project_id, trace_id, "GET /late")
    wait_until(page, lambda d: _one(d, ".trace-head h1").text.splitlines() == ["TRACE", "GET /late"])
    assert _visible(page, ".trace-head .missing-note") == []
    page.get(f"{collector.url}/?project_id={project_id}")
    wait_until(page, lambda d: len(_visible(d, "table.traces tbody tr")) == 1)
    assert _one(page, "a.trace-link").text == "GET /late"


def test_a_new_trace_appears_without_a_reload(page: Any, collector: CollectorProcess) -> None:
    project_id = _ingest(collector, f"live-{uuid.uuid4()}", [])
    page.get(f"{collector.url}/?project_id={project_id}")
    wait_until(page, lambda d: _one(d, "table.traces tbody").text == "No trace matches.")
    page.execute_script("window.__sameDocument = true")

    trace_id = str(uuid.uuid4())
    _ingest_into(collector, project_id, trace_id)
    row = _one(page, f'tr[data-trace-id="{trace_id}"]')
    assert row.text.startswith("arrived live")
    assert page.execute_script("return window.__sameDocument") is True


def _ingest_into(
    collector: CollectorProcess, project_id: str, trace_id: str, name: str = "arrived live"
) -> None:
    trace = {
        "type": "trace",
        "id": trace_id,
        "name": name,
        "input": "q",
        "created_at": "2026-01-01T00:00:00Z",
    }
    answer = requests.post(
        f"{collector.url}/v2/projects/{project_id}/traces",
        json={"traces": [trace]},
        headers=collector.auth_headers(),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
