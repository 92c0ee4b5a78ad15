"""Ordering where it matters: two real services, nested workflows, a slow and strict backend.

The sender promises that, within one process, a record's POST starts only once the ingest that carried its
parent was answered (or travels nested in that ingest), that a span's PATCH follows its ingest's answer, and
that a trace's ``is_complete`` goes last. A lenient server hides a broken promise (it links records whatever
their order) and so does a log stamped after the server's latency, so this test's collector is neither:

* every write is held 300 ms (``latency_ms``), and ``/api/requests`` stamps ``arrived`` *before* that, so a
  request sent too early is seen as such: its arrival precedes the answer (``finished_at``) it should have
  waited for;
* ``strict_parents`` refuses a span whose parent is not stored yet (404 naming the parent), as a strict server
  may; the SDK retries it. Spans of the downstream service may race their upstream parent, which only the
  upstream service's logger knows to be in (they must still be stored, after retries): the test makes sure
  they do race. Spans never race a parent their own service logged.

Service A (FastAPI) answers several concurrent requests; each logs workflow > agent > llm/tool spans over
time, concludes spans after children were added, and calls service B (Starlette) mid-trace with
``get_tracing_headers()``; B logs its own nested spans under the span A's headers name. Both services run in
this process, so the trace's completion must also wait for B's records. Only public behaviour is read: what
the collector received and stored, and ``galileo.stats()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from fastapi import FastAPI
from sdk_helpers import serve, tree_lines
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo.config import GalileoConfig
from galileo.middleware import TracingMiddleware, get_request_logger

pytestmark = pytest.mark.usefixtures("fresh_sdk")

LATENCY_S = 0.3
CONCURRENT_REQUESTS = 6
#: Long enough that the first writes of a request are answered before the next ones are logged.
PAUSE_S = LATENCY_S + 0.05
#: Long enough for the traces' first ingest to leave (a new trace lingers 5 ms, and yields to requests 50 ms
#: at most), well short of its answer; :func:`_until_sending` also waits until the sender says so.
TRACE_GONE_S = 0.1
SERVICES = {"svc-a": "A", "svc-b": "B"}

EXPECTED_TREE = [
    "trace:GET /ask",
    "  workflow:a-workflow",
    "    agent:a-planner",
    "      llm:a-plan",
    "      tool:a-lookup",
    "      workflow:a-call-b",
    "        workflow:b-workflow",
    "          agent:b-agent",
    "            tool:b-search",
    "            llm:b-rank",
    "      workflow:a-inner",
    "        tool:a-inner-tool",
    "        llm:a-inner-llm",
    "    llm:a-answer",
]


def _config(collector: CollectorProcess, log_stream: str) -> GalileoConfig:
    return GalileoConfig.resolve(
        api_url=collector.url,
        api_key="test-api-key",
        project="ordering",
        log_stream=log_stream,
        mode="distributed",
        environ={},
    )


def _service_b(collector: CollectorProcess) -> Starlette:
    async def search(request: Request) -> JSONResponse:
        q = request.query_params["q"]
        logger = get_request_logger()  # continues A's trace under the span A's headers name
        logger.add_workflow_span(input=q, name="b-workflow")
        logger.add_agent_span(input=q, name="b-agent")
        logger.add_tool_span(input=q, output="3 hits", name="b-search")
        await asyncio.sleep(PAUSE_S)  # b-rank follows b-agent's ingest, or joins its retry
        logger.add_llm_span(input=q, output="ranked", name="b-rank")
        logger.conclude(output="b-agent done")  # concluded after its children: a PATCH
        logger.conclude(output="b done")
        return JSONResponse({"hits": 3})

    config = _config(collector, "svc-b")
    return Starlette(
        routes=[Route("/search", search)], middleware=[Middleware(TracingMiddleware, config=config)]
    )


async def _until_sending() -> None:
    """Wait until the sender has an exchange under way or done, as ``galileo.stats()`` says (10 s at most)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while loop.time() < deadline:
        stats = galileo.stats()
        if stats["in_flight"] or stats["sent"]:
            return
        await asyncio.sleep(0.005)


def _service_a(collector: CollectorProcess, b_url: str) -> FastAPI:
    app = FastAPI()
    app.add_middleware(TracingMiddleware, config=_config(collector, "svc-a"))

    @app.get("/ask")
    async def ask(q: str) -> dict[str, Any]:
        logger = get_request_logger()
        logger.add_workflow_span(input=q, name="a-workflow")
        logger.add_agent_span(input=q, name="a-planner")
        logger.add_llm_span(input=q, output="plan", name="a-plan")
        trace_id = logger.trace_id
        await asyncio.sleep(TRACE_GONE_S)
        await _until_sending()
        # The trace's ingest is on its way: what follows waits for its answer, 300 ms away ...
        logger.add_tool_span(input=q, output="found", name="a-lookup")
        logger.add_workflow_span(input=q, name="a-call-b")
        # ... while B, another sender, sends its spans under a-call-b at once: they race their parent.
        headers = logger.get_tracing_headers()
        answer = await run_in_threadpool(
            requests.get, f"{b_url}/search", params={"q": q}, headers=headers, timeout=30
        )
        assert answer.status_code == 200
        logger.conclude(output="B answered")
        logger.add_workflow_span(input=q, name="a-inner")
        logger.add_tool_span(input=q, output="inner", name="a-inner-tool")
        await asyncio.sleep(PAUSE_S)
        logger.add_llm_span(input=q, output="inner answer", name="a-inner-llm")
        logger.conclude(output="a-inner done")
        logger.conclude(output="a-planner done")  # concluded long after its children went
        logger.add_llm_span(input=q, output="answer", name="a-answer")
        logger.conclude(output="a done")
        return {"trace_id": trace_id, "parent_id": headers["X-Galileo-Parent-ID"]}

    return app


@pytest.fixture
def strict_collector(fresh_collector: CollectorProcess) -> Iterator[CollectorProcess]:
    """The collector slow (300 ms on every write) and strict about parents; its request log cleared."""
    answer = requests.put(
        f"{fresh_collector.url}/api/faults",
        json={"latency_ms": LATENCY_S * 1000, "strict_parents": True},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    fresh_collector.clear_requests()
    yield fresh_collector


def _nodes(tree: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every record of a stored tree with its parent's id (None for the trace)."""
    stack: list[tuple[dict[str, Any], str | None]] = [(tree, None)]
    while stack:
        node, parent = stack.pop()
        yield node, parent
        stack.extend((child, node["id"]) for child in node["spans"])


class _Seen:
    """What the collector stored and received, indexed for the ordering checks."""

    def __init__(self, trees: list[dict[str, Any]], entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self.service: dict[str, str] = {}  # record id -> "A" | "B"
        self.trace_of: dict[str, str] = {}
        self.name: dict[str, str] = {}
        for tree in trees:
            for node, _ in _nodes(tree):
                self.service[node["id"]] = SERVICES[node["log_stream_name"]]
                self.trace_of[node["id"]] = tree["id"]
                self.name[node["id"]] = f"{node['type']}:{node['name']}"
        self.answered: dict[str, float] = {}  # record id -> when the first ingest carrying it was answered
        for entry in entries:
            if entry["method"] == "POST" and entry["status"] == 200:
                for record_id in entry["record_ids"]:
                    self.answered.setdefault(record_id, entry["finished_at"])

    def describe(self, entry: dict[str, Any]) -> str:
        names = [self.name.get(r, r) for r in entry["record_ids"]]
        return f"{entry['method']} {entry['path'].split('/')[4]} {names} (status {entry['status']})"

    def sender_of(self, entry: dict[str, Any]) -> str:
        """The service that sent a write: the one that logged the records it carries."""
        services = {self.service[r] for r in entry["record_ids"]}
        assert len(services) == 1, f"{self.describe(entry)} carries records of both services"
        return services.pop()

    def depends_on(self, entry: dict[str, Any]) -> str | None:
        """The record whose ingest must be answered before this write is sent: a span POST's parent, the
        record a PATCH updates; None for a trace POST."""
        needed: str | None = entry["record_ids"][0] if entry["method"] == "PATCH" else entry["parent_id"]
        return needed


def test_children_wait_for_their_parents_answer_across_two_services(
    strict_collector: CollectorProcess,
) -> None:
    with serve(_service_b(strict_collector)) as b_url, serve(_service_a(strict_collector, b_url)) as a_url:

        def ask(i: int) -> dict[str, Any]:
            answer = requests.get(f"{a_url}/ask", params={"q": f"question {i}"}, timeout=30)
            assert answer.status_code == 200, answer.text
            result: dict[str, Any] = answer.json()
            return result

        with ThreadPoolExecutor(CONCURRENT_REQUESTS) as pool:
            results = list(pool.map(ask, range(CONCURRENT_REQUESTS)))
        undelivered = galileo.shutdown(timeout=20)

    stats = galileo.stats()
    assert (undelivered, stats["dropped"], stats["updates_dropped"]) == (0, 0, 0), stats

    # (c) every tree complete and correctly parented, each service's records in its own log stream
    trees = []
    for result in results:
        tree = strict_collector.trace(result["trace_id"])
        assert tree is not None, f"trace {result['trace_id']} not stored"
        assert tree_lines(tree) == EXPECTED_TREE
        assert tree["orphans"] == [] and tree["is_complete"] is True and tree["status_code"] == 200
        planner = tree["spans"][0]["spans"][0]
        call_b = planner["spans"][2]
        assert call_b["id"] == result["parent_id"], "B's spans hang under the span A named in its headers"
        assert (planner["output"], call_b["output"]) == ("a-planner done", "B answered")
        assert call_b["spans"][0]["spans"][0]["output"] == "b-agent done"
        streams = {f"{node['type']}:{node['name']}": node["log_stream_name"] for node, _ in _nodes(tree)}
        assert {name for name, stream in streams.items() if stream == "svc-b"} == {
            "workflow:b-workflow",
            "agent:b-agent",
            "tool:b-search",
            "llm:b-rank",
        }
        trees.append(tree)
    seen = _Seen(trees, [e for e in strict_collector.requests() if e["path"].startswith("/v2/")])

    # (a) within each service, no write arrived before the ingest carrying what it depends on was answered
    early = []
    for entry in seen.entries:
        needed = seen.depends_on(entry)
        if needed is None or seen.service[needed] != seen.sender_of(entry):
            continue  # a trace POST, or spans under the other service's span (its logger's to send)
        answered = seen.answered.get(needed)
        if answered is None or entry["arrived"] < answered:
            waited = (
                "never answered"
                if answered is None
                else f"answered {answered - entry['arrived']:.3f} s later"
            )
            early.append(
                f"{seen.describe(entry)} arrived before the ingest of {seen.name[needed]} ({waited})"
            )
    assert not early, "writes sent before their parent's ingest was answered:\n" + "\n".join(early)

    # (b) the strict server refused no span for want of a parent of its own service
    refused = [e for e in seen.entries if e["parent_refused"]]
    own = [
        f"{seen.describe(e)} refused: parent {seen.name[e['parent_id']]} not stored yet"
        for e in refused
        if seen.service[e["parent_id"]] == seen.sender_of(e)
    ]
    assert not own, "spans refused for want of a parent their own service logged:\n" + "\n".join(own)
    faults = requests.get(f"{strict_collector.url}/api/faults", timeout=10).json()
    assert faults["parents_refused"] == len(refused)
    assert refused, (
        "the race this test sets up did not happen: B sent nothing before A stored B's parent (did A's trace"
        f" take longer than TRACE_GONE_S={TRACE_GONE_S} s to leave?)"
    )

    # (d) each trace's completion arrived after every other exchange of the trace from this process ended
    for tree in trees:
        trace_id = tree["id"]
        exchanges = [e for e in seen.entries if any(seen.trace_of[r] == trace_id for r in e["record_ids"])]
        completing = [e for e in exchanges if e["status"] == 200 and e["body"].get("is_complete") is True]
        assert len(completing) == 1, [seen.describe(e) for e in completing]
        last = completing[0]
        late = [seen.describe(e) for e in exchanges if e is not last and e["finished_at"] > last["arrived"]]
        assert not late, f"{seen.describe(last)} arrived before these were answered: {late}"
