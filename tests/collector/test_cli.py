"""The ``galileo-collector`` command: ``format_tree``, and ``tree``/``traces`` against a running collector."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess, free_port

from galileo.collector.cli import format_tree, main


def _id() -> str:
    return str(uuid.uuid4())


def _node(
    record_type: str, name: str, duration_ns: int | None, stream: str = "gateway", **fields: Any
) -> dict[str, Any]:
    node = {
        "type": record_type,
        "name": name,
        "metrics": {"duration_ns": duration_ns},
        "status_code": None,
        "project_id": "p1",
        "project_name": "demo",
        "log_stream_id": f"id-{stream}",
        "log_stream_name": stream,
        "spans": [],
    }
    node.update(fields)
    return node


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "galileo.collector", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=30,
        env=env,
    )


def _location(collector: CollectorProcess) -> tuple[str, str]:
    """A new project with a log stream "svc": their ids."""
    headers = collector.auth_headers()
    project = requests.post(
        f"{collector.url}/projects", json={"name": f"cli-{_id()}"}, headers=headers, timeout=10
    )
    pid = project.json()["id"]
    stream = requests.post(
        f"{collector.url}/projects/{pid}/log_streams", json={"name": "svc"}, headers=headers, timeout=10
    )
    return pid, stream.json()["id"]


def _log_trace(collector: CollectorProcess, llm_status: int | None = None) -> dict[str, Any]:
    """Log a small trace (trace > workflow > llm) to the collector; return the trace body."""
    headers = collector.auth_headers()
    pid, stream_id = _location(collector)
    llm = {
        "type": "llm",
        "id": _id(),
        "name": "answer",
        "input": [{"role": "user", "content": "q"}],
        "output": {"role": "assistant", "content": "a"},
        "metrics": {"duration_ns": 2_500_000},
        "status_code": llm_status,
    }
    workflow = {"type": "workflow", "id": _id(), "name": "work", "input": "q", "spans": [llm]}
    trace = {
        "type": "trace",
        "id": _id(),
        "name": "ask",
        "input": "q",
        "spans": [workflow],
        "status_code": 200,
    }
    trace["metrics"] = {"duration_ns": 3_000_000}
    body = {"log_stream_id": stream_id, "traces": [trace], "is_complete": True}
    response = requests.post(
        f"{collector.url}/v2/projects/{pid}/traces", json=body, headers=headers, timeout=10
    )
    assert response.status_code == 200, response.text
    return trace


def test_format_tree_draws_connectors_durations_statuses_and_foreign_log_streams() -> None:
    search = _node("retriever", "vector-search", 11637, stream="retriever")
    service = _node("workflow", "retriever-service", 4_000_000, stream="retriever", spans=[search])
    llm = _node("llm", "", 1_000_000, status_code=429)
    gateway = _node("workflow", "gateway-workflow", None, spans=[service, llm])
    orphan = _node("tool", "lookup", 300_000, stream="retriever", parent_id=_id())
    trace = _node("trace", "gateway-ask", 12_345_678, status_code=200, is_complete=True, spans=[gateway])
    trace["orphans"] = [orphan]

    assert format_tree(trace) == "\n".join(
        [
            "trace  gateway-ask  12.3 ms  200  complete  [demo / gateway]",
            "└─ workflow  gateway-workflow  …  open",
            "   ├─ workflow  retriever-service  4.0 ms  ok  [demo / retriever]",
            "   │  └─ retriever  vector-search  0.0 ms  ok",
            "   └─ llm  (unnamed)  1.0 ms  429",
            "",
            "orphans (parent not stored yet):",
            "└─ tool  lookup  0.3 ms  ok  [demo / retriever]",
        ]
    )


def test_format_tree_of_an_open_trace_without_spans() -> None:
    trace = _node("trace", "t", None, is_complete=False, log_stream_id=None, orphans=[])
    assert format_tree(trace) == "trace  t  …  open  [demo]"


def _log_spans_without_their_trace(collector: CollectorProcess) -> str:
    """Log a workflow and a failed tool under a trace id whose trace record never arrives."""
    pid, stream_id = _location(collector)
    trace_id = _id()
    tool = {"type": "tool", "id": _id(), "name": "lookup", "input": "q", "status_code": 502}
    workflow = {"type": "workflow", "id": _id(), "name": "downstream", "input": "q", "spans": [tool]}
    body = {"log_stream_id": stream_id, "trace_id": trace_id, "parent_id": trace_id, "spans": [workflow]}
    response = requests.post(
        f"{collector.url}/v2/projects/{pid}/spans", json=body, headers=collector.auth_headers(), timeout=10
    )
    assert response.status_code == 200, response.text
    return trace_id


def test_format_tree_of_a_trace_whose_record_is_missing_and_whose_spans_failed() -> None:
    tool = _node("tool", "lookup", 300_000, stream="retriever", status_code=502)
    workflow = _node("workflow", "downstream", 1_000_000, stream="retriever", spans=[tool])
    orphan = _node("tool", "lost", None, stream="gateway")
    stand_in = _node("trace", "", None, project_id=None, log_stream_id=None, spans=[workflow])
    stand_in |= {"project_name": None, "log_stream_name": None, "is_complete": False, "trace_record": False}
    stand_in |= {"error_count": 1, "orphans": [orphan]}
    assert format_tree(stand_in).splitlines() == [
        "trace  (trace record missing)  …  incomplete  1 error",
        "└─ workflow  downstream  1.0 ms  ok  [demo / retriever]",
        "   └─ tool  lookup  0.3 ms  502",
        "",
        "orphans (parent not stored yet):",
        "└─ tool  lost  …  open  [demo / gateway]",
    ]
    trace = _node(
        "trace", "ask", 3_000_000, status_code=200, is_complete=True, trace_record=True, error_count=2
    )
    assert format_tree(trace) == "trace  ask  3.0 ms  200  complete  2 errors  [demo / gateway]"


def test_tree_command_prints_a_trace_whose_record_never_arrived(collector: CollectorProcess) -> None:
    trace_id = _log_spans_without_their_trace(collector)
    result = _run("tree", trace_id, "--url", collector.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "trace  (trace record missing)  …  incomplete  1 error"
    assert lines[1].startswith("└─ workflow  downstream  …  open  [cli-") and lines[1].endswith(" / svc]")
    assert lines[2:] == [
        "   └─ tool  lookup  …  502",
        "",
        f"in the trace viewer: {collector.url}/traces/{trace_id}",
    ]


def test_tree_command_prints_the_stored_trace(collector: CollectorProcess) -> None:
    trace = _log_trace(collector)
    result = _run("tree", trace["id"], "--url", collector.url)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("trace  ask  3.0 ms  200  complete  [cli-")
    assert lines[0].endswith(" / svc]")
    assert lines[1:] == [
        "└─ workflow  work  …  open",
        "   └─ llm  answer  2.5 ms  ok",
        "",
        f"in the trace viewer: {collector.url}/traces/{trace['id']}",
    ]
    page = requests.get(lines[-1].split(": ", 1)[1], timeout=10)
    assert page.status_code == 200 and f'data-trace-id="{trace["id"]}"' in page.text


def test_tree_command_reads_galileo_api_url(collector: CollectorProcess) -> None:
    trace = _log_trace(collector)
    env = {**os.environ, "GALILEO_API_URL": collector.url}
    result = _run("tree", trace["id"], env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("trace  ask")


@pytest.mark.parametrize("trace_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_tree_command_fails_with_exit_1_on_an_unknown_trace(
    collector: CollectorProcess, trace_id: str
) -> None:
    result = _run("tree", trace_id, "--url", collector.url)
    assert result.returncode == 1
    assert result.stdout == ""
    assert trace_id in result.stderr


def test_tree_command_reports_an_unreachable_collector(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tree", _id(), "--url", f"http://127.0.0.1:{free_port()}"]) == 1
    assert "cannot reach the collector" in capsys.readouterr().err


def test_traces_command_lists_the_latest_traces(collector: CollectorProcess) -> None:
    trace = _log_trace(collector)
    result = _run("traces", "--url", collector.url, "--limit", "1")
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.splitlines()
    assert header.split() == ["id", "name", "created_at", "spans", "errors", "status", "complete"]
    assert row.split()[:2] == [trace["id"], "ask"]
    assert row.split()[-4:] == ["2", "0", "200", "yes"]


def test_traces_command_counts_failed_spans_and_lists_traces_whose_record_is_missing(
    collector: CollectorProcess,
) -> None:
    failed = _log_trace(collector, llm_status=500)
    missing = _log_spans_without_their_trace(collector)
    result = _run("traces", "--url", collector.url, "--limit", "2")
    assert result.returncode == 0, result.stderr
    header, first, second = result.stdout.splitlines()
    assert header.split()[3:] == ["spans", "errors", "status", "complete"]
    assert first.split()[:4] == [missing, "(trace", "record", "missing)"]
    assert first.split()[5:] == ["2", "1", "no"]  # no status: the trace record carries it
    assert second.split()[:2] == [failed["id"], "ask"]
    assert second.split()[-4:] == ["2", "1", "200", "yes"]


def test_traces_command_on_an_empty_collector(
    fresh_collector: CollectorProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["traces", "--url", fresh_collector.url]) == 0
    assert capsys.readouterr().out == "no traces yet\n"


@pytest.mark.parametrize(
    "argv", [[], ["serve", "--token-ttl", "0"], ["serve", "--port", "x"], ["traces", "--limit", "0"]]
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert "usage: galileo-collector" in capsys.readouterr().err


def test_serve_prints_its_url_and_survives_a_restart_on_the_same_port(
    fresh_collector: CollectorProcess,
) -> None:
    assert f"on {fresh_collector.url} (db: {fresh_collector.db_path})" in fresh_collector.log_text()
    assert f"trace viewer: {fresh_collector.url}/" in fresh_collector.log_text()
    fresh_collector.stop()
    fresh_collector.start()
    assert requests.get(f"{fresh_collector.url}/healthcheck", timeout=10).status_code == 200
