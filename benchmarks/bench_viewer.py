"""The trace viewer's server time at scale: the list with 100,000 traces stored, and a trace of 2,000 spans.

Fills a throw-away store directly (``Store.add_records`` in batches, not HTTP): 100,000 traces of three
records each (a trace and two spans, the second in another log stream, as a two-service trace) spread over
two projects, plus one trace with 2,000 spans nested up to eight deep. One trace in 100 arrives without its
trace record (its two spans only, as when the upstream service never sends it), and one in 50 has a failed
span (status 500). Then times, in-process through Starlette's TestClient, the requests the page makes: the
newest page of the list, the same page filtered by project, by log stream, searched by name or id, and a
page deep in the list (by cursor); the trace's waterfall; one span's details; the list page's HTML; and the
collector's own ``/api/traces`` (the CLI's list) and ``/api/traces/{id}``. Prints the fill time and the
median and p95 of each request against the goal (100 ms).

    python benchmarks/bench_viewer.py [--traces 100000] [--spans 2000] [--repeat 30] [--missing-every 100]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timedelta, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, percentile

from galileo.collector import create_app
from galileo.collector.store import Record, Store

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

GOAL_MS = 100.0
_BATCH = 5_000


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _record(
    kind: str, trace_id: str, parent: str | None, where: tuple[str, str], at: datetime, **body: Any
) -> Record:
    record_id = trace_id if kind == "trace" else str(uuid.uuid4())
    name = body.pop("name", kind)
    wire = {
        "type": kind,
        "id": record_id,
        "name": name,
        "input": "question",
        "output": "answer",
        "created_at": _stamp(at),
        "metrics": {"duration_ns": 1_500_000},
        **body,
    }
    return Record(
        id=record_id,
        type=kind,
        trace_id=trace_id,
        parent_id=parent,
        project_id=where[0],
        log_stream_id=where[1],
        name=name,
        created_at=_stamp(at),
        is_complete=True if kind == "trace" else None,
        body=wire,
    )


def fill(store: Store, traces: int, spans: int, missing_every: int) -> dict[str, str]:
    projects = [store.create_project(f"bench-{i}", "gen_ai")[0].id for i in range(2)]
    streams = {
        p: [store.create_log_stream(p, name)[0].id for name in ("gateway", "retriever")] for p in projects
    }
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    batch: list[Record] = []
    missing = ""
    for index in range(traces):
        project = projects[index % 2]
        gateway, retriever = ((project, s) for s in streams[project])
        at = start + timedelta(milliseconds=37 * index)
        trace_id = str(uuid.uuid4())
        trace = _record("trace", trace_id, None, gateway, at, name=f"GET /ask/{index % 500}", status_code=200)
        workflow = _record("workflow", trace_id, trace_id, gateway, at + timedelta(microseconds=50))
        failed = {"status_code": 500} if index % 50 == 7 else {}
        search = _record(
            "retriever", trace_id, workflow.id, retriever, at + timedelta(microseconds=90), **failed
        )
        if index // 2 % missing_every == missing_every - 1:  # no trace record, in both projects
            batch += [workflow, search]
            missing = trace_id
        else:
            batch += [trace, workflow, search]
        if len(batch) >= _BATCH:
            store.add_records(batch)
            batch = []
    store.add_records(batch)

    project = projects[0]
    gateway, retriever = ((project, s) for s in streams[project])
    big = str(uuid.uuid4())
    at = start + timedelta(days=30)
    records = [_record("trace", big, None, gateway, at, name="big trace")]
    parents = [big]
    for index in range(spans):
        kind = ("workflow", "llm", "retriever", "tool")[index % 4]
        parent = parents[min(len(parents) - 1, index % 8)]
        where = retriever if index % 3 == 0 else gateway
        extra = (
            {"model": "bench-llm", "input": [{"role": "user", "content": "q" * 200}]} if kind == "llm" else {}
        )
        record = _record(kind, big, parent, where, at + timedelta(microseconds=10 * (index + 1)), **extra)
        records.append(record)
        if kind == "workflow" and len(parents) < 8:
            parents.append(record.id)
    store.add_records(records)
    return {
        "project": project,
        "stream": streams[project][1],
        "big": big,
        "span": records[2].id,
        "missing": missing,
    }


def timed(client: TestClient, path: str, repeat: int) -> list[float]:
    assert client.get(path).status_code == 200, path  # warm up, and check
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        response = client.get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--traces", type=int, default=100_000)
    parser.add_argument("--spans", type=int, default=2_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--missing-every", type=int, default=100, help="one trace in N lacks its record")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.db")
        started = time.perf_counter()
        store = Store(path)
        ids = fill(store, args.traces, args.spans, args.missing_every)
        store.close()
        took = time.perf_counter() - started
        print(f"filled {args.traces:,} traces and a {args.spans:,}-span trace in {took:.1f} s")
        with TestClient(create_app(path), base_url="http://localhost") as client:
            deep = client.get("/api/viewer/traces", params={"limit": 200}).json()["next"]
            for _ in range(40):
                deep = client.get("/api/viewer/traces", params={"limit": 200, "before": deep}).json()["next"]
            cases = [
                ("list: newest 50", "/api/viewer/traces?limit=50"),
                ("list: by project", f"/api/viewer/traces?project_id={ids['project']}"),
                ("list: by log stream (retriever)", f"/api/viewer/traces?log_stream_id={ids['stream']}"),
                ("list: search by name", "/api/viewer/traces?q=ask/499"),
                ("list: search, no match", "/api/viewer/traces?q=nothing-matches"),
                ("list: search by span id", f"/api/viewer/traces?q={ids['span']}"),
                ("list: search by id, record missing", f"/api/viewer/traces?q={ids['missing']}"),
                ("list: page 8,000 traces deep", f"/api/viewer/traces?before={deep}"),
                ("list page HTML", "/"),
                (f"trace: {args.spans:,}-span waterfall", f"/api/viewer/traces/{ids['big']}"),
                ("span details", f"/api/viewer/records/{ids['span']}"),
                ("/api/traces: newest 50", "/api/traces?limit=50"),
                ("/api/traces: by project", f"/api/traces?project_id={ids['project']}"),
                (f"/api/traces/ID: {args.spans:,} spans", f"/api/traces/{ids['big']}"),
            ]
            print(f"\n{'request':<36} {'median ms':>10} {'p95 ms':>8}   goal {GOAL_MS:.0f} ms")
            for label, request in cases:
                times = timed(client, request, args.repeat)
                verdict = "met" if median(times) < GOAL_MS else "MISSED"
                print(f"{label:<36} {median(times):>10.1f} {percentile(times, 95):>8.1f}   {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
