"""Distributed mode against the real collector: sent as it happens, exact order, coalescing, lifecycle."""

from __future__ import annotations

import asyncio
import atexit
import collections
import gc
import math
import os
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
import trio
from collector_process import CollectorProcess, free_port
from schema_validation import validate
from sdk_helpers import WRITE_ROOTS, HttpSpy, kind, tree_lines, writes

import galileo
from galileo import GalileoLogger, _sender, schema
from galileo._context import activity

pytestmark = pytest.mark.usefixtures("fresh_sdk")


def dlogger(**kwargs: Any) -> GalileoLogger:
    kwargs.setdefault("project", "distributed")
    kwargs.setdefault("log_stream", "svc")
    return GalileoLogger(mode="distributed", **kwargs)


def check_order(requests: list[dict[str, Any]], trace_ids: set[str]) -> None:
    """The ordering rules, from what the collector saw: every write started after what it depends on."""
    acked: dict[str, float] = {}  # record id -> when the request carrying it finished
    parents: dict[str, str] = {}
    for r in requests:
        body = r["body"]
        assert r["status"] == 200, r
        validate(WRITE_ROOTS[kind(r)], body)
        if kind(r) == ("POST", "spans"):
            # records of one request belong to one trace, and their parent was acknowledged before
            assert body["trace_id"] in trace_ids
            parent = body["parent_id"]
            if parent in acked:
                assert r["received_at"] >= acked[parent], "a span POST started before its parent was in"
            for rid in r["record_ids"]:
                parents[rid] = parent
        if kind(r) == ("PATCH", "spans"):
            span_id = body["span_id"]
            assert span_id in acked and r["received_at"] >= acked[span_id], "a PATCH before its ingest"
        if kind(r) == ("PATCH", "traces"):
            trace_id = body["trace_id"]
            mine = [x for x in requests if x is not r and trace_id in _trace_of(x, parents)]
            assert all(x["finished_at"] <= r["received_at"] for x in mine), "is_complete before its records"
        for rid in r["record_ids"]:
            acked.setdefault(rid, r["finished_at"])


def _trace_of(request: dict[str, Any], parents: dict[str, str]) -> set[str]:
    body = request["body"]
    if "traces" in body:
        return {t["id"] for t in body["traces"]}
    if "trace_id" in body:
        return {body["trace_id"]}
    return set()


def test_each_event_is_sent_as_it_happens(collector_env: CollectorProcess) -> None:
    collector_env.clear_requests()
    logger = dlogger()
    trace = logger.start_trace(input="q", name="live")
    collector_env.wait_for(lambda: collector_env.trace(trace.id))
    assert collector_env.trace(trace.id)["is_complete"] is False  # type: ignore[index]

    workflow = logger.add_workflow_span(input="q", name="wf")
    collector_env.wait_for(lambda: len(collector_env.trace(trace.id)["spans"]) == 1)  # type: ignore[index]
    logger.add_tool_span(input="x", output="y", name="tool")
    collector_env.wait_for(lambda: len(collector_env.trace(trace.id)["spans"][0]["spans"]) == 1)  # type: ignore[index]
    logger.conclude(output="wf done")
    collector_env.wait_for(lambda: collector_env.trace(trace.id)["spans"][0]["output"] == "wf done")  # type: ignore[index]
    logger.conclude(output="all done")
    stored = collector_env.wait_for(lambda: (t := collector_env.trace(trace.id)) and t["is_complete"] and t)

    assert stored["output"] == "all done"
    assert stored["spans"][0]["id"] == workflow.id
    assert [kind(r) for r in writes(collector_env)] == [
        ("POST", "traces"),
        ("POST", "spans"),
        ("POST", "spans"),
        ("PATCH", "spans"),
        ("PATCH", "traces"),
    ]
    first = writes(collector_env)[0]["body"]
    assert (first["is_complete"], first["reliable"]) == (False, True)
    check_order(writes(collector_env), {trace.id})


def test_continuing_logger_sends_no_trace_record(collector_env: CollectorProcess) -> None:
    upstream = dlogger(log_stream="gateway")
    trace = upstream.start_trace(input="q", name="gateway-trace")
    gateway_wf = upstream.add_workflow_span(input="q", name="gateway-wf")
    headers = upstream.get_tracing_headers()
    assert headers == {"X-Galileo-Trace-ID": trace.id, "X-Galileo-Parent-ID": gateway_wf.id}

    collector_env.wait_for(lambda: (t := collector_env.trace(trace.id)) and len(t["spans"]) == 1)
    collector_env.clear_requests()
    downstream = dlogger(
        log_stream="retriever", trace_id=headers["X-Galileo-Trace-ID"], span_id=headers["X-Galileo-Parent-ID"]
    )
    assert (downstream.trace_id, downstream.span_id) == (trace.id, gateway_wf.id)
    downstream.add_workflow_span(input="q", name="retriever-wf")
    downstream.add_retriever_span(input="q", output=["doc"], name="search")
    downstream.conclude(output="1 doc")
    assert downstream.conclude() is None, "the upstream trace is not this logger's to conclude"
    assert downstream.flush(timeout=10).pending == 0
    sent = writes(collector_env)
    # no trace record, no trace update: only spans (and the PATCH of the retriever's workflow, unless it
    # went out already concluded), all naming the upstream trace, the first the upstream parent
    assert {kind(r) for r in sent} <= {("POST", "spans"), ("PATCH", "spans")}
    assert all(r["body"]["trace_id"] == trace.id for r in sent if kind(r) == ("POST", "spans"))
    assert sent[0]["body"]["parent_id"] == headers["X-Galileo-Parent-ID"]

    upstream.conclude()
    upstream.conclude(output="answer")
    upstream.flush(timeout=10)
    stored = collector_env.trace(trace.id)
    assert stored is not None and stored["is_complete"] and stored["name"] == "gateway-trace"
    assert tree_lines(stored) == [
        "trace:gateway-trace",
        "  workflow:gateway-wf",
        "    workflow:retriever-wf",
        "      retriever:search",
    ]
    assert stored["spans"][0]["spans"][0]["log_stream_name"] == "retriever"


def test_continuing_with_trace_id_only_attaches_to_the_root(collector_env: CollectorProcess) -> None:
    trace_id = schema.new_id()
    logger = dlogger(trace_id=trace_id.upper())
    assert (logger.trace_id, logger.span_id) == (trace_id, None)
    collector_env.clear_requests()
    logger.add_tool_span(input="x", output="y")
    logger.flush(timeout=10)
    (sent,) = writes(collector_env)
    assert (sent["body"]["trace_id"], sent["body"]["parent_id"]) == (trace_id, trace_id)


def test_loggers_share_one_sender_and_cost_nothing_to_create(
    collector_env: CollectorProcess, http_spy: HttpSpy
) -> None:
    threads_before = set(threading.enumerate())
    callbacks_before = atexit._ncallbacks()
    loggers = [dlogger(trace_id=schema.new_id()) for _ in range(500)]
    assert set(threading.enumerate()) - threads_before == set(), "creating loggers starts no thread"
    assert atexit._ncallbacks() <= callbacks_before + 1
    assert http_spy.calls == []
    for logger in loggers[:50]:
        logger.add_tool_span(input="x", output="y")
    dropped_before = galileo.stats()["dropped"]
    galileo.shutdown(timeout=10)
    assert galileo.stats()["dropped"] == dropped_before
    started = {t.name for t in set(threading.enumerate()) - threads_before}
    assert len(started) <= loggers[0].config.sender_workers


def _traces_in_threads(count: int, log_one: Callable[[int], str]) -> set[str]:
    """Run ``log_one(i)`` for i in range(count), each in a thread of its own, all at once; the trace ids."""
    trace_ids: set[str] = set()
    lock = threading.Lock()

    def run(i: int) -> None:
        trace_id = log_one(i)
        with lock:
            trace_ids.add(trace_id)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(trace_ids) == count
    return trace_ids


def test_exact_order_and_coalescing_under_concurrency(collector_env: CollectorProcess) -> None:
    """Twenty threads log nested traces at once; every ordering rule holds for every request."""
    collector_env.clear_requests()

    def one(i: int) -> str:
        logger = dlogger(log_stream=f"order-{i % 3}")
        trace = logger.start_trace(input=f"q{i}", name=f"t{i}")
        for w in range(3):
            logger.add_workflow_span(input="w", name=f"wf{w}")
            for leaf in range(4):
                logger.add_tool_span(input="x", output=str(leaf), name=f"tool{leaf}")
            logger.add_agent_span(input="a", name="agent")
            logger.add_llm_span(input="q", output="a", model="m")
            logger.conclude()
            logger.conclude()
        logger.conclude(output="done")
        logger.flush(timeout=30)
        return trace.id

    trace_ids = _traces_in_threads(20, one)
    requests = writes(collector_env)
    check_order(requests, trace_ids)
    for trace_id in trace_ids:
        stored = collector_env.trace(trace_id)
        assert stored is not None and stored["is_complete"]
        assert len(tree_lines(stored)) == 1 + 3 * (1 + 4 + 1 + 1)
        assert stored.get("orphans", []) == []
    records = sum(len(r["record_ids"]) for r in requests if r["method"] == "POST")
    posts = sum(1 for r in requests if r["method"] == "POST")
    assert records == 20 * 22
    assert posts < records, "siblings and subtrees were coalesced"


def _traces_while_a_request_runs(
    count: int,
    collector: CollectorProcess,
    monkeypatch: pytest.MonkeyPatch,
    before_the_end: Callable[[], None] | None = None,
) -> list[str]:
    """``count`` small traces, each concluded, logged by as many loggers while a request is in flight (as
    TracingMiddleware counts them), held back for it however slow this machine is; then one more trace whose
    ``get_tracing_headers()`` sends it at once (another service is about to point at it); ``before_the_end``
    runs, and the request ends. Once the others were delivered, that trace is concluded. Returns the ids,
    that trace's last, once every logger's flush has waited for delivery."""
    monkeypatch.setattr(_sender, "YIELD_CAP", 30.0)
    loggers, trace_ids = [], []
    activity.active += 1
    try:
        for i in range(count):
            logger = dlogger()
            trace = logger.start_trace(input=f"q{i}", name=f"busy{i}")
            logger.add_tool_span(input="x", output=f"y{i}", name="tool")
            logger.conclude(output=f"done {i}")
            loggers.append(logger)
            trace_ids.append(trace.id)
        time.sleep(0.2)  # well past the linger: now they only wait for the request
        assert not writes(collector), "nothing goes while the request runs"
        calling = dlogger()
        trace = calling.start_trace(input="q", name="calling")
        calling.add_tool_span(input="x", output=f"y{count}", name="tool")
        assert calling.get_tracing_headers()
        collector.wait_for(lambda: collector.trace(trace.id))
        trace_ids.append(trace.id)
        if before_the_end is not None:
            before_the_end()
    finally:  # what the middleware does when the request ends
        activity.active -= 1
        activity.ended_at = time.monotonic()
        if activity.on_idle is not None:
            activity.on_idle()
    for logger in loggers:
        assert logger.flush(timeout=10).pending == 0
    calling.conclude(output=f"done {count}")
    assert calling.flush(timeout=10).pending == 0
    return trace_ids


def test_traces_ready_together_share_one_post(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Traces of different loggers ready at one moment go in one ``POST /traces`` (its ``traces`` is a
    list). Those concluded before they went go complete (``is_complete: true``, no PATCH); one that went
    open, on its own (``is_complete`` is the whole body's), gets its is_complete PATCH after its records."""
    collector_env.clear_requests()
    trace_ids = _traces_while_a_request_runs(12, collector_env, monkeypatch)
    *concluded, calling = trace_ids
    sent = writes(collector_env)
    check_order(sent, set(trace_ids))
    posts = [r for r in sent if kind(r) == ("POST", "traces")]
    assert len(posts) == 2
    assert [t["id"] for t in posts[0]["body"]["traces"]] == [calling]
    assert posts[0]["body"]["is_complete"] is False
    assert posts[1]["body"]["is_complete"] is True
    assert sorted(t["id"] for t in posts[1]["body"]["traces"]) == sorted(concluded)
    assert [len(t["spans"]) for t in posts[1]["body"]["traces"]] == [1] * 12  # each with its own subtree
    patched = [r["body"]["trace_id"] for r in sent if kind(r) == ("PATCH", "traces")]
    assert patched == [calling]
    for i, trace_id in enumerate(trace_ids):
        stored = collector_env.trace(trace_id)
        assert stored is not None and stored["is_complete"] and stored["output"] == f"done {i}"
        assert [s["output"] for s in stored["spans"]] == [f"y{i}"]
    stats = galileo.stats()
    assert stats["dropped"] == 0 and stats["sent"] == 2 * 13 and stats["updates_sent"] == 1


def test_a_trace_concluded_before_it_went_goes_once_complete(collector_env: CollectorProcess) -> None:
    """A trace concluded (with its spans) before the sender took it goes in one POST that carries it
    complete, with its output, status and duration; a trace another logger of this process still adds to
    waits for those records and completes with a PATCH."""
    collector_env.clear_requests()
    logger = dlogger()
    trace = logger.start_trace(input="q", name="quick")
    logger.add_workflow_span(input="q", name="wf")
    logger.add_llm_span(input="q", output="a", model="m", name="llm")
    logger.conclude(output="wf done")
    logger.conclude(output="all done", status_code=201)
    assert logger.flush(timeout=10).pending == 0
    sent = writes(collector_env)
    assert [kind(r) for r in sent] == [("POST", "traces")]
    body = sent[0]["body"]
    assert body["is_complete"] is True
    wire = body["traces"][0]
    assert wire["output"] == "all done" and wire["status_code"] == 201 and wire["metrics"]["duration_ns"] > 0
    assert wire["spans"][0]["output"] == "wf done" and wire["spans"][0]["spans"][0]["name"] == "llm"
    stored = collector_env.trace(trace.id)
    assert stored is not None and stored["is_complete"] and stored["output"] == "all done"

    collector_env.clear_requests()
    owner = dlogger()
    shared = owner.start_trace(input="q", name="shared")
    other = dlogger(trace_id=shared.id, span_id=shared.id)  # another logger continuing it here
    other.add_tool_span(input="x", output="y", name="elsewhere")
    owner.conclude(output="done")
    assert owner.flush(timeout=10).pending == 0 and other.flush(timeout=10).pending == 0
    sent = writes(collector_env)
    check_order(sent, {shared.id})
    assert [kind(r) for r in sent][-1] == ("PATCH", "traces")
    assert all(r["body"]["is_complete"] is False for r in sent if kind(r) == ("POST", "traces"))


def test_a_shared_post_the_api_rejects_goes_again_trace_by_trace(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One bad trace must not sink the traces it shared a POST with: when the API rejects a combined POST
    outright (here a 422), each trace goes again on its own."""
    collector_env.clear_requests()
    faults = f"{collector_env.url}/api/faults"

    def fail_the_next_write() -> None:
        requests.put(faults, json={"fail_count": 1, "fail_status": 422}, timeout=5).raise_for_status()

    try:
        trace_ids = _traces_while_a_request_runs(5, collector_env, monkeypatch, fail_the_next_write)
    finally:
        requests.delete(faults, timeout=5).raise_for_status()
    posts = [r for r in writes(collector_env) if kind(r) == ("POST", "traces")]
    assert sorted(t["id"] for r in posts for t in r["body"]["traces"]) == sorted(trace_ids)
    assert [len(r["body"]["traces"]) for r in posts] == [1] * 6, "after the rejection, one trace per POST"
    for trace_id in trace_ids:
        stored = collector_env.trace(trace_id)
        assert stored is not None and stored["is_complete"]
    assert galileo.stats()["dropped"] == 0


def test_records_handed_over_while_the_sender_lets_go_are_never_lost(
    collector_env: CollectorProcess,
) -> None:
    """Loggers hand records over without the sender's lock while it holds their outbox; the moment it lets
    an idle outbox go races with the next record. Spread events around that moment: none is left behind."""
    collector_env.clear_requests()

    def one(i: int) -> str:
        logger = dlogger(log_stream=f"handover-{i % 2}")
        trace = logger.start_trace(input=f"q{i}", name=f"h{i}")
        for n in range(12):
            logger.add_workflow_span(input="w", name=f"wf{n}")
            time.sleep((i * 7 + n * 3) % 11 / 1000)  # 0-10 ms: before, during and after each send
            logger.add_tool_span(input="x", output=str(n), name=f"tool{n}")
            logger.conclude(output=f"wf{n} done")
        logger.conclude(output="done")
        logger.flush(timeout=30)
        return trace.id

    trace_ids = _traces_in_threads(16, one)
    requests = writes(collector_env)
    check_order(requests, trace_ids)
    for trace_id in trace_ids:
        stored = collector_env.trace(trace_id)
        assert stored is not None and stored["is_complete"]
        assert len(tree_lines(stored)) == 1 + 12 * 2
        assert [s["output"] for s in stored["spans"]] == [f"wf{n} done" for n in range(12)]
    assert galileo.stats()["dropped"] == 0


def test_subtree_not_yet_sent_travels_nested_and_concluded(collector_env: CollectorProcess) -> None:
    """With the backend paused, a whole concluded subtree queues up and goes as one nested body."""
    collector_env.clear_requests()
    logger = dlogger()
    trace = logger.start_trace(input="q")
    collector_env.wait_for(lambda: collector_env.trace(trace.id))
    outbox = logger._state().outbox
    assert outbox is not None
    sender = _sender.get_sender(logger.config)
    with sender._lock:
        outbox.not_before = time.monotonic() + 3600  # set aside: nothing of this trace goes until released
    logger.add_workflow_span(input="q", name="outer")
    logger.add_workflow_span(input="q", name="inner")
    logger.add_tool_span(input="x", output="y", name="leaf")
    logger.conclude(output="inner done")
    logger.conclude(output="outer done")
    with sender._lock:
        outbox.not_before = 0
        sender._schedule(outbox)
    logger.conclude()
    logger.flush(timeout=10)
    requests = writes(collector_env)
    assert [kind(r) for r in requests] == [("POST", "traces"), ("POST", "spans"), ("PATCH", "traces")]
    (outer,) = requests[1]["body"]["spans"]
    assert (outer["name"], outer["output"]) == ("outer", "outer done")
    (inner,) = outer["spans"]
    assert (inner["name"], inner["output"]) == ("inner", "inner done")
    assert [s["name"] for s in inner["spans"]] == ["leaf"]
    check_order(requests, {trace.id})


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_flush_on_an_event_loop_returns_at_once(collector_env: CollectorProcess, loop: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    logger = dlogger(api_url=dead)
    queued_before = galileo.stats()["queued"]

    async def handler() -> galileo.logger.FlushResult:
        logger.start_trace(input="q")
        logger.add_tool_span(input="x", output="y")
        return logger.flush(timeout=None)  # no bound: would hang forever if it waited

    result = asyncio.run(handler()) if loop == "asyncio" else trio.run(handler)
    assert result.pending == 2
    assert galileo.stats()["queued"] == queued_before + 2


def test_flush_elsewhere_waits_bounded_and_reports_pending(collector_env: CollectorProcess) -> None:
    logger = dlogger(api_url=f"http://127.0.0.1:{free_port()}")
    logger.start_trace(input="q")
    logger.add_tool_span(input="x", output="y")
    result = logger.flush(timeout=0.5)
    assert result.pending == 2
    healthy = dlogger()
    healthy.start_trace(input="q")
    assert healthy.flush(timeout=10).pending == 0


def test_async_flush_waits_without_blocking_the_loop(collector_env: CollectorProcess) -> None:
    logger = dlogger()

    async def main() -> tuple[int, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        trace = logger.start_trace(input="q")
        for _ in range(20):
            logger.add_tool_span(input="x", output="y")
        result = await logger.async_flush(timeout=10)
        task.cancel()
        assert collector_env.trace(trace.id)["is_complete"]  # type: ignore[index]
        return result.pending, ticks

    pending, ticks = asyncio.run(main())
    assert pending == 0
    assert ticks > 0


def test_terminate_releases_only_its_logger(collector_env: CollectorProcess) -> None:
    first = dlogger()
    first.start_trace(input="q")
    first.terminate(timeout=10)
    second = dlogger()
    trace = second.start_trace(input="q")
    second.flush(timeout=10)
    assert collector_env.trace(trace.id)["is_complete"]  # type: ignore[index]


def test_headers_move_the_named_records_to_the_front(collector_env: CollectorProcess) -> None:
    logger = dlogger()
    client = _sender.get_client(logger.config)
    sender = _sender.Sender(workers=1)
    sender._stopping = True  # no worker starts: the queue stays as built, for inspection
    outboxes = []
    for _ in range(5):
        outbox = sender.open_trace(client, logger._target, schema.new_id(), owned=True)
        assert outbox.not_before > 0, "a new trace lingers a moment"
        outbox.not_before = 0  # past its linger: ready
        outbox.add(schema.Trace(input="backlog"), None)
        outboxes.append(outbox)
    assert list(sender._ready) == outboxes
    sender.prioritize(outboxes[3])
    assert list(sender._ready) == [outboxes[3], *outboxes[:3], outboxes[4]]
    lingering = sender.open_trace(client, logger._target, schema.new_id(), owned=True)
    lingering.add(schema.Trace(input="new"), None)
    assert lingering not in sender._ready
    sender.prioritize(lingering)  # headers end the linger: straight to the front
    assert sender._ready[0] is lingering

    trace = logger.start_trace(input="q")
    workflow = logger.add_workflow_span(input="q")
    headers = logger.get_tracing_headers()
    assert headers == {"X-Galileo-Trace-ID": trace.id, "X-Galileo-Parent-ID": workflow.id}
    outbox = logger._state().outbox
    assert outbox is not None and outbox.priority
    logger.flush(timeout=10)
    assert collector_env.trace(trace.id) is not None


def test_shutdown_drains_and_sender_restarts(collector_env: CollectorProcess) -> None:
    logger = dlogger()
    trace = logger.start_trace(input="q")
    logger.conclude(output="a")
    assert galileo.shutdown(timeout=10) == 0
    assert collector_env.trace(trace.id)["is_complete"]  # type: ignore[index]
    again = dlogger()
    trace2 = again.start_trace(input="q")
    again.flush(timeout=10)
    assert collector_env.trace(trace2.id) is not None


def test_interpreter_exit_delivers_what_is_queued(collector_env: CollectorProcess, tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text(
        textwrap.dedent(
            """
            from galileo import GalileoLogger
            logger = GalileoLogger(project="distributed", log_stream="exit", mode="distributed")
            trace = logger.start_trace(input="q")
            for i in range(20):
                logger.add_tool_span(input="x", output=str(i))
            logger.conclude(output="bye")
            print(trace.id)
            """
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=True
    )
    trace_id = out.stdout.strip()
    stored = collector_env.trace(trace_id)
    assert stored is not None and stored["is_complete"] and len(stored["spans"]) == 20


def test_forked_child_gets_a_fresh_sender(collector_env: CollectorProcess) -> None:
    parent_logger = dlogger()
    parent_logger.start_trace(input="parent")
    parent_sender = _sender.get_sender(parent_logger.config)
    read, write = os.pipe()
    with warnings.catch_warnings():  # Python 3.12+ warns about fork with threads; that is what we test
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            child = dlogger()
            fresh = _sender.get_sender(child.config) is not parent_sender
            trace = child.start_trace(input="child")
            child.conclude(output="from child")
            pending = child.flush(timeout=10).pending
            os.write(write, f"{int(fresh)} {pending} {trace.id}".encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    fresh, pending, trace_id = os.read(read, 200).decode().split()
    os.close(read)
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert (fresh, pending) == ("1", "0")
    assert collector_env.trace(trace_id)["output"] == "from child"  # type: ignore[index]
    parent_logger.conclude()
    assert parent_logger.flush(timeout=10).pending == 0


def test_trace_completes_after_other_loggers_of_this_process(collector_env: CollectorProcess) -> None:
    """Two services in one process: the gateway's is_complete waits for the retriever's records."""
    collector_env.clear_requests()
    gateway = dlogger(log_stream="gateway")
    trace = gateway.start_trace(input="q")
    gateway.add_workflow_span(input="q")
    headers = gateway.get_tracing_headers()
    retriever = dlogger(
        log_stream="retriever", trace_id=headers["X-Galileo-Trace-ID"], span_id=headers["X-Galileo-Parent-ID"]
    )
    retriever.add_retriever_span(input="q", output=["doc"])
    sender = _sender.get_sender(gateway.config)
    held = retriever._state().outbox
    assert held is not None
    with sender._lock:
        held.not_before = time.monotonic() + 3600  # the retriever's span cannot go yet
    gateway.conclude()
    gateway.conclude(output="answer")
    assert gateway.flush(timeout=0.5).pending > 0, "the completion waits for the retriever's span"
    with sender._lock:
        held.not_before = 0
        sender._schedule(held)
    assert retriever.flush(timeout=10).pending == 0
    assert gateway.flush(timeout=10).pending == 0
    requests = writes(collector_env)
    assert kind(requests[-1]) == ("PATCH", "traces")
    check_order(requests, {trace.id})
    assert collector_env.trace(trace.id)["is_complete"]  # type: ignore[index]


def test_after_a_burst_of_requests_the_sender_waits_for_a_quiet_moment(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    from galileo._context import activity

    # Wide margins for a loaded machine: quiet means no request ended for 50 ms, and the cap is far away.
    monkeypatch.setattr(_sender, "QUIET", 0.05)
    monkeypatch.setattr(_sender, "YIELD_CAP", 10.0)
    stop = threading.Event()

    def burst() -> None:  # requests served one after another: none is in flight when the sender looks
        while not stop.is_set():
            activity.ended_at = time.monotonic()
            time.sleep(0.002)

    serving = threading.Thread(target=burst)
    serving.start()
    try:
        logger = dlogger()
        trace = logger.start_trace(input="q")
        logger.conclude(output="a")
        time.sleep(0.5)
        assert collector_env.trace(trace.id) is None, "held back while requests keep being served"
    finally:
        stop.set()
        serving.join()
    collector_env.wait_for(lambda: (collector_env.trace(trace.id) or {}).get("is_complete"), timeout=5)


def test_records_logged_during_requests_wake_no_worker(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the service serves requests that log, one worker is on duty (waiting with a short timeout), so a
    record logged during a request never wakes a worker: on the request's CPU that would preempt the handler.
    Nor does the request's end (the next request of a burst may be waiting): the event loop that served it
    wakes one QUIET later, when no other request came meanwhile."""
    # The worker on duty wakes every YIELD_CAP: make that rare, so that it does not happen to wake (and be
    # between two timers) just while the request below logs, however slow this machine is.
    monkeypatch.setattr(_sender, "YIELD_CAP", 5.0)
    logger = dlogger()
    first = logger.start_trace(input="warm-up")
    logger.conclude(output="a")
    activity.ended_at = time.monotonic()  # as if a request that logged had just ended
    assert logger.flush(timeout=10).pending == 0  # the workers send it and go idle, one on duty
    sender = _sender.get_sender(logger.config)
    time.sleep(0.2)  # the workers settle into their waits
    wakes: list[float] = []
    real_notify = sender._wake.notify
    sender._wake.notify = lambda n=1: (wakes.append(time.monotonic()), real_notify(n))  # type: ignore[method-assign]

    async def request() -> tuple[str, float]:
        activity.active += 1  # as TracingMiddleware does while a request is served
        trace = logger.start_trace(input="q")
        logger.add_tool_span(input="x", output="y")
        logger.conclude(output="done")
        assert wakes == [], "a worker was woken in the middle of a request"
        await asyncio.sleep(0.1)  # the records now wait for the request
        activity.active -= 1  # the request ends, as the middleware ends it
        activity.ended_at = ended = time.monotonic()
        if activity.holding and activity.on_idle is not None:
            activity.on_idle()
        assert wakes == [], "a worker was woken as the request ended"
        await asyncio.sleep(0.2)  # the loop stays idle: quiet
        return trace.id, ended

    try:
        trace_id, ended = asyncio.run(request())
    finally:
        activity.active = max(0, activity.active)
        del sender._wake.notify
    # (none at all when the worker on duty looked within QUIET anyway)
    assert all(wake - ended >= _sender.QUIET for wake in wakes), "woken only once the loop was quiet"
    stored = collector_env.wait_for(lambda: (t := collector_env.trace(trace_id)) and t["is_complete"] and t)
    assert stored["output"] == "done" and collector_env.trace(first.id) is not None


class _LockUsers:
    """Stands in for the sender's lock in its ``with`` statements (its conditions keep the real one, the
    same lock): notes which threads took it."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.threads: list[str] = []

    def __enter__(self) -> Any:
        self.threads.append(threading.current_thread().name)
        return self.lock.__enter__()

    def __exit__(self, *exc: object) -> Any:
        return self.lock.__exit__(*exc)


def test_a_request_opens_its_trace_without_the_senders_lock(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a worker's timer runs (one is on duty while requests log), a request's new trace is handed to
    the sender without its lock, so a request never waits for a worker holding it; the last request out
    registers it, and it goes QUIET later."""
    monkeypatch.setattr(_sender, "YIELD_CAP", 5.0)  # the duty timer fires after the request, however slow
    logger = dlogger()
    logger.start_trace(input="warm-up")
    logger.conclude(output="a")
    activity.ended_at = time.monotonic()  # as if a request that logged had just ended: a worker on duty
    assert logger.flush(timeout=10).pending == 0
    sender = _sender.get_sender(logger.config)
    collector_env.wait_for(lambda: math.isfinite(sender._timer_at), timeout=5)
    users = _LockUsers(sender._lock)
    monkeypatch.setattr(sender, "_lock", users)
    me = threading.current_thread().name
    activity.active += 1  # as TracingMiddleware does while a request is served
    try:
        trace = logger.start_trace(input="q")
        logger.add_tool_span(input="x", output="y")
        logger.conclude(output="done")
        assert me not in users.threads, "the request took the sender's lock"
    finally:
        activity.active -= 1
    activity.ended_at = time.monotonic()
    assert activity.holding and activity.on_idle is not None
    activity.on_idle()  # the last request out, as the middleware ends it
    stored = collector_env.wait_for(lambda: (t := collector_env.trace(trace.id)) and t["is_complete"] and t)
    assert stored["output"] == "done"


class _CountedDeque(collections.deque[Any]):
    appended = 0

    def append(self, item: Any) -> None:
        self.appended += 1
        super().append(item)


def test_traces_handed_over_without_the_lock_all_arrive(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many threads open traces during requests while the worker on duty wakes every 2 ms: whatever
    the interleaving of a worker's look at the new outboxes and a thread's hand-over, none is left behind,
    and none goes twice."""
    monkeypatch.setattr(_sender, "YIELD_CAP", 0.002)  # traces go either way: with the lock and without
    warm = dlogger()
    warm.start_trace(input="warm-up")
    warm.conclude(output="a")
    activity.ended_at = time.monotonic()
    assert warm.flush(timeout=10).pending == 0
    collector_env.clear_requests()
    sender = _sender.get_sender(warm.config)
    arrivals = _CountedDeque()
    monkeypatch.setattr(sender, "_arrivals", arrivals)
    ids: list[str] = []

    def serve(n: int) -> None:
        for i in range(n):
            logger = dlogger()
            ids.append(logger.start_trace(input=f"q{i}").id)
            logger.add_tool_span(input="x", output="y")
            logger.conclude(output="done")

    activity.active += 1
    try:
        threads = [threading.Thread(target=serve, args=(150,)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        activity.active -= 1
    activity.ended_at = time.monotonic()
    if activity.holding and activity.on_idle is not None:
        activity.on_idle()
    assert arrivals.appended > 0, "no trace took the way without the lock"
    collector_env.wait_for(
        lambda: sender.stats()["queued"] == 0 and not sender.stats()["in_flight"], timeout=30
    )
    stats = sender.stats()
    assert stats["dropped"] == 0, stats
    sent = writes(collector_env)
    assert all(r["status"] == 200 for r in sent)
    posted = [t["id"] for r in sent if kind(r) == ("POST", "traces") for t in r["body"]["traces"]]
    assert sorted(posted) == sorted(ids), "a trace went twice, or not at all"
    for trace_id in ids[::50]:
        assert collector_env.trace(trace_id)["is_complete"]


def test_a_worker_leaving_for_a_slow_exchange_hands_its_watch_over(collector_env: CollectorProcess) -> None:
    """Records that arrive while a worker watches the clock for others need no wake-up of their own; when
    that worker leaves to send (here for a second), another one watches: the second trace's records go when
    their linger ends, not after the first trace's exchange."""
    warm = dlogger()
    warm.start_trace(input="warm-up")
    warm.conclude(output="a")
    assert warm.flush(timeout=10).pending == 0  # logged in, project and log stream resolved
    collector_env.clear_requests()
    faults = f"{collector_env.url}/api/faults"
    requests.put(faults, json={"latency_ms": 1000}, timeout=5).raise_for_status()
    try:
        first = dlogger()
        a = first.start_trace(input="a")
        first.conclude(output="a")
        time.sleep(_sender.LINGER * 0.6)  # within a's linger (a worker waits for its end), ending before b's
        upstream = schema.new_id()
        second = dlogger(trace_id=upstream)  # its span POST cannot share a's trace POST
        second.add_tool_span(input="x", output="y")
        assert first.flush(timeout=10).pending == 0 and second.flush(timeout=10).pending == 0
    finally:
        requests.delete(faults, timeout=5).raise_for_status()
    sent = writes(collector_env)
    (post_a,) = [r for r in sent if kind(r) == ("POST", "traces") and r["body"]["traces"][0]["id"] == a.id]
    (post_b,) = [r for r in sent if kind(r) == ("POST", "spans") and r["body"]["trace_id"] == upstream]
    assert post_b["received_at"] - post_a["received_at"] < 0.5, "the second waited for the first's exchange"


def test_a_request_waiting_for_its_answer_holds_its_body_as_bytes_only(
    collector_env: CollectorProcess,
) -> None:
    """While an exchange waits for the API's answer (here a second), the JSON objects its body was made of
    are gone: the garbage collector has no dict or list of it to scan, however long the wait."""
    warm = dlogger()
    warm.start_trace(input="warm-up")
    warm.conclude(output="a")
    assert warm.flush(timeout=10).pending == 0  # logged in, project and log stream resolved
    faults = f"{collector_env.url}/api/faults"
    requests.put(faults, json={"latency_ms": 1000}, timeout=5).raise_for_status()
    try:
        logger = dlogger()
        trace = logger.start_trace(input="on its way")
        span = logger.add_tool_span(input="x", output="y")
        logger.conclude(output="done")
        sender = _sender.get_sender(logger.config)
        collector_env.wait_for(lambda: sender.stats()["in_flight"] == 1, timeout=5)
        gc.collect()
        ids = {trace.id, span.id}
        wire = [
            o for o in gc.get_objects() if type(o) is dict and type(o.get("id")) is str and o["id"] in ids
        ]
        assert sender.stats()["in_flight"] == 1, "measured while the POST waited"
        assert wire == [], "the body's JSON objects lived through the wait"
        assert logger.flush(timeout=10).pending == 0
    finally:
        requests.delete(faults, timeout=5).raise_for_status()
    assert collector_env.trace(trace.id)["is_complete"]


def test_a_trace_waiting_to_go_holds_its_events_without_an_object_each(
    collector_env: CollectorProcess,
) -> None:
    """While requests are in flight a trace's records wait (up to YIELD_CAP) in its outbox's inbox: the
    events are kept there flat, not as a tuple each that the garbage collector would count and scan."""
    logger = dlogger()
    sender = _sender.get_sender(logger.config)
    activity.active += 1  # as TracingMiddleware does while a request is served
    try:
        trace = logger.start_trace(input="q")
        outbox = logger._state().outbox
        logger.add_workflow_span(input="w")
        logger.add_tool_span(input="x", output="y")
        logger.conclude(output="done", conclude_all=True)
        assert outbox is not None and outbox.inbox, "measured while the events wait"
        held = [type(o).__name__ for o in gc.get_referents(outbox.inbox) if gc.is_tracked(o)]
        assert "tuple" not in held and {"WorkflowSpan", "ToolSpan", "Trace"} <= set(held), held
    finally:
        activity.active -= 1
        activity.ended_at = time.monotonic()
        sender._requests_idle()
    assert logger.flush(timeout=10).pending == 0
    assert collector_env.trace(trace.id)["is_complete"]


def test_the_sender_yields_to_requests_in_flight_but_never_long(
    collector_env: CollectorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sender, "YIELD_CAP", 5.0)  # held while "in flight", however slow this machine is
    logger = dlogger()
    sender = _sender.get_sender(logger.config)
    saved = activity.active
    activity.active += 1  # as TracingMiddleware does while a request is served
    try:
        trace = logger.start_trace(input="q")
        outbox = logger._state().outbox
        assert outbox is not None
        collector_env.wait_for(lambda: outbox in sender._yielding, timeout=5)
        assert collector_env.trace(trace.id) is None, "held back while a request is in flight"
        # the last request ends: what yielded goes at once
        activity.active -= 1
        sender._requests_idle()
        collector_env.wait_for(lambda: collector_env.trace(trace.id))
        # a request that never ends delays records by YIELD_CAP at most; and lets go of them once sent
        monkeypatch.setattr(_sender, "YIELD_CAP", 0.2)
        activity.active += 1
        other = dlogger()
        other_trace = other.start_trace(input="q")
        other_outbox = other._state().outbox
        other.conclude(output="a")
        assert other.flush(timeout=10).pending == 0
        assert collector_env.trace(other_trace.id)["is_complete"]  # type: ignore[index]
        assert other_outbox not in sender._yielding
    finally:
        activity.active = saved
