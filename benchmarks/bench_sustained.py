"""Sustained delivery: records delivered per second by one traced uvicorn service, against a naive ceiling.

One uvicorn server (a thread of this process, which also runs the SDK's sender) serves a Starlette app behind
``TracingMiddleware``. Every request carries fresh trace headers (``X-Galileo-Trace-ID`` = a new uuid4,
``X-Galileo-Parent-ID`` = the same id: the upstream service's trace), and its handler continues that trace
with ``get_request_logger()``: one workflow span with ``--children`` child spans (tool and llm spans in
turn; 8 by default), ``conclude``, ``flush``: ``1 + children`` records per request. The collector accepts
spans under a trace it has not stored (tests/test_transport.py::test_span_under_unknown_trace_is_accepted),
so the upstream traces are not created first.

A load generator in another process (this file with ``--loadgen``: stdlib asyncio, raw HTTP/1.1 keep-alive,
``--connections`` connections with one request in flight each, every request naming a new upstream trace)
loads the service for ``--warmup`` + ``--duration`` seconds, in two phases, each with a fresh sender:

- ``paced``: ``--offered`` (5) times the ceiling's records/s, in requests/s (or ``--rate``): more records
  than the goal asks for, without saturating the service, so the sender is what is measured;
- ``back-to-back``: the connections send as fast as the service answers (skip with ``--no-overload``): an
  overloaded service, where the queue bound and the drop accounting are what is shown.

Meanwhile this process samples every half second the records stored by the collector (its SQLite database,
read directly), ``galileo.stats()["queued"]`` and ``threading.active_count()``. Printed per phase:

- delivered rec/s: records stored during the measuring window (after the warm-up) ÷ its length, and its
  ratio to the ceiling (goal ≥ 3x). The ceiling: one thread, one ``requests.Session`` (with the SDK's
  body shapes; the SDK's client only logs in and resolves the ids), one span per ``POST /spans``, to the
  same collector, for ``--ceiling`` seconds, measured before and after the paced
  phase (the ratio is against the higher of the two);
- the largest ``queued`` sampled against the configured bound (GALILEO_QUEUE_SIZE, default 10000), how
  long the sender took to settle after the load, records stored in all (by type) against records logged,
  drops by reason;
- CPU used over the window by the service's process and by the collector (share of one CPU), to tell which
  side limits delivery; threads in the middle and at the end of the window and once the sender settled.

When cores allow (and BENCH_SHARED_CPUS is unset) the service gets half the CPUs and the collector and the
load generator the other half, as in bench_request_path.py: the collector stands in for servers that run
elsewhere. The ceiling's thread runs on the service's CPUs.

Run: ``python benchmarks/bench_sustained.py [--duration S] [--connections C] [--children N] [--ceiling S]
[--offered X | --rate RPS] [--no-overload]`` (about 2-3 minutes by default, mostly the overloaded phase's
drain). Loopback only; bounded; prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import (
    cpu_seconds,
    last_record_seq,
    next_response,
    sender_settled,
    serve,
    start_collector,
    stored_by_type,
)
from bench_request_path import _other_cpus, _split_cpus

import galileo
from galileo import _sender, schema
from galileo._transport import Client, Target
from galileo.middleware import TracingMiddleware, _request, get_request_logger
from galileo.propagation import PARENT_ID_HEADER, TRACE_ID_HEADER

_SDK_STREAM = "sustained-sdk"
_CEILING_STREAM = "sustained-ceiling"
_SAMPLE_EVERY = 0.5
_QUESTION = "Which moons of Jupiter did Galileo see in January 1610, and how did he tell them from stars?"
_ANSWER = "Io, Europa, Ganymede and Callisto: they moved with Jupiter from night to night."


# ---------------------------------------------------------------------------------------------------------
# The service


def _app(children: int) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        logger = get_request_logger()
        logger.add_workflow_span(input=_QUESTION, name="agent")
        for i in range(children):
            if i % 2:
                logger.add_llm_span(
                    input=[{"role": "user", "content": _QUESTION}],
                    output={"role": "assistant", "content": _ANSWER},
                    model="gpt-4o-mini",
                    name=f"llm-{i}",
                    num_input_tokens=24,
                    num_output_tokens=18,
                    total_tokens=42,
                )
            else:
                logger.add_tool_span(input=f"ephemeris(jupiter, step={i})", output=_ANSWER, name=f"tool-{i}")
        logger.conclude(output=_ANSWER)
        logger.flush()
        return JSONResponse({"answer": _ANSWER})

    return Starlette(routes=[Route("/answer", answer)], middleware=[Middleware(TracingMiddleware)])


# ---------------------------------------------------------------------------------------------------------
# The load generator (a subprocess running this file with --loadgen; stdlib asyncio)


class _Client(asyncio.Protocol):
    """One keep-alive connection, one request in flight, each naming a new upstream trace; paced or not."""

    def __init__(self, head: bytes, interval: float, first_at: float, counts: dict[str, int]) -> None:
        self.head = head
        self.interval = interval  # seconds between this connection's requests; 0: back to back
        self.next_at = first_at
        self.counts = counts
        self.buffer = b""
        self.stopping = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._schedule()

    def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        if self.interval:
            at, self.next_at = self.next_at, max(self.next_at + self.interval, loop.time() - self.interval)
            loop.call_at(at, self._send)
        else:
            self._send()

    def _send(self) -> None:
        if self.stopping or self.transport is None or self.transport.is_closing():
            return
        trace_id = str(uuid.uuid4()).encode()
        self.transport.write(
            self.head
            + TRACE_ID_HEADER.lower().encode()
            + b": "
            + trace_id
            + b"\r\n"
            + PARENT_ID_HEADER.lower().encode()
            + b": "
            + trace_id
            + b"\r\n\r\n"
        )

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            ok, self.buffer = next_response(self.buffer)
            if ok is None:
                return
            self.counts["done" if ok else "errors"] += 1
            self._schedule()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.stopping:
            self.counts["errors"] += 1


async def _generate(port: int, connections: int, seconds: float, rate: float) -> dict[str, Any]:
    head = f"GET /answer HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: keep-alive\r\n".encode()
    loop = asyncio.get_running_loop()
    counts = {"done": 0, "errors": 0}
    interval = connections / rate if rate else 0.0
    first = loop.time() + 0.2  # after every connection is up
    clients: list[_Client] = []
    for i in range(connections):
        client = _Client(head, interval, first + i * interval / connections, counts)
        await loop.create_connection(lambda c=client: c, "127.0.0.1", port)  # type: ignore[misc]
        clients.append(client)
    await asyncio.sleep(max(0.0, first - loop.time()))
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    result: dict[str, Any] = dict(
        counts, seconds=time.perf_counter() - started, cpu=time.process_time() - cpu
    )
    for client in clients:
        client.stopping = True
        if client.transport is not None:
            client.transport.close()
    await asyncio.sleep(0.05)
    return result


def _loadgen_main(port: int, connections: int, seconds: float, rate: float) -> None:
    print(json.dumps(asyncio.run(_generate(port, connections, seconds, rate))), flush=True)


# ---------------------------------------------------------------------------------------------------------
# The ceiling: one thread, one session, one span per POST


def _ceiling(client: Client, seconds: float) -> tuple[float, int, int]:
    """(records/s delivered, POSTs acknowledged, POSTs failed) over ``seconds``, one span per POST, sent by
    one thread through one ``requests.Session`` (the SDK's client only logs in and resolves the ids)."""
    target = Target(project="bench", project_id=None, log_stream=_CEILING_STREAM, log_stream_id=None)
    trace_id = schema.new_id()
    ids = client.resolve(target)
    url = f"{client.api_url}/v2/projects/{ids.project_id}/spans"
    session = requests.Session()
    session.headers.update(
        {"Authorization": f"Bearer {client._current_token()}", "Content-Type": "application/json"}
    )

    def post() -> bool:
        span = schema.ToolSpan(input="ephemeris(jupiter, step=0)", output=_ANSWER, name="tool-0")
        body = schema.spans_ingest_body(
            [span], trace_id=trace_id, parent_id=trace_id, log_stream_id=ids.log_stream_id
        )
        return session.post(url, data=json.dumps(body, default=str).encode(), timeout=10).ok

    post()
    ok = failed = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        if post():
            ok += 1
        else:
            failed += 1
    session.close()
    return ok / (time.perf_counter() - started), ok, failed


# ---------------------------------------------------------------------------------------------------------
# The run


@dataclass
class Sample:
    at: float
    stored: int
    queued: int
    threads: int


@dataclass
class Phase:
    """One load phase against the service: paced (``rate`` requests/s) or back to back (``rate`` 0)."""

    name: str
    rate: float
    samples: list[Sample] = field(default_factory=list)
    load: dict[str, Any] = field(default_factory=dict)
    window: tuple[Sample, Sample] | None = None
    threads_mid: int = 0
    threads_end: int = 0
    threads_drained: int = 0
    drained_after: float | None = None
    drain_waited: float = 0.0
    stats: dict[str, Any] = field(default_factory=dict)
    by_type: dict[str, int] = field(default_factory=dict)
    orphans: int = 0
    service_cpu: float = 0.0  # share of one CPU over the window
    collector_cpu: float = 0.0

    @property
    def delivered_rate(self) -> float:
        if self.window is None:
            return float("nan")
        first, last = self.window
        return (last.stored - first.stored) / (last.at - first.at)


@dataclass
class Figures:
    ceilings: list[float] = field(default_factory=list)
    ceiling_failed: int = 0
    phases: list[Phase] = field(default_factory=list)
    threads_start: int = 0
    threads_end: int = 0
    queue_bound: int = 0


def _sample(collector: Any, since: float) -> Sample:
    return Sample(
        time.monotonic() - since,
        last_record_seq(collector),
        int(galileo.stats()["queued"]),
        threading.active_count(),
    )


def _phase(phase: Phase, collector: Any, port: int, args: argparse.Namespace) -> None:
    """Load the service, sample while it runs, then wait (bounded) for the sender to settle."""
    _sender.reset(timeout=5)  # a fresh sender: counters and queue of this phase only
    stream = f"sustained-{phase.name}"
    os.environ["GALILEO_LOG_STREAM"] = stream
    _request.reset()
    seconds = args.warmup + args.duration
    command = [sys.executable, os.path.abspath(__file__), "--loadgen", str(port), str(args.connections)]
    command += [str(seconds), str(phase.rate)]
    loadgen = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, preexec_fn=_other_cpus)
    started = time.monotonic()
    cpu: dict[str, tuple[float, float]] = {}
    try:
        while loadgen.poll() is None and time.monotonic() - started < seconds + 30:
            phase.samples.append(_sample(collector, started))
            if "start" not in cpu and phase.samples[-1].at >= args.warmup:
                cpu["start"] = (cpu_seconds(), cpu_seconds(collector.pid))
            if "end" not in cpu and phase.samples[-1].at >= seconds - _SAMPLE_EVERY:
                cpu["end"] = (cpu_seconds(), cpu_seconds(collector.pid))
            time.sleep(_SAMPLE_EVERY)
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
        out, _ = loadgen.communicate(timeout=10)
    load_end = time.monotonic()
    phase.samples.append(_sample(collector, started))
    phase.load = json.loads(out) if out.strip() else {}
    in_window = [s for s in phase.samples if args.warmup <= s.at <= seconds]
    if len(in_window) >= 2:
        phase.window = (in_window[0], in_window[-1])
        phase.threads_mid = in_window[len(in_window) // 2].threads
        if "start" in cpu and "end" in cpu:
            span = in_window[-1].at - in_window[0].at
            phase.service_cpu = (cpu["end"][0] - cpu["start"][0]) / span
            phase.collector_cpu = (cpu["end"][1] - cpu["start"][1]) / span
    phase.threads_end = phase.samples[-1].threads
    while time.monotonic() - load_end < args.drain:
        if sender_settled():
            phase.drained_after = time.monotonic() - load_end
            break
        time.sleep(0.1)
    phase.drain_waited = time.monotonic() - load_end
    phase.threads_drained = threading.active_count()
    phase.stats = galileo.stats()
    phase.by_type = stored_by_type(collector, stream)
    phase.orphans = _orphans(collector, stream)
    galileo.shutdown(
        timeout=1
    )  # what is left is given up (shutdown_timeout): the next measurement starts clean
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(
        t.name.startswith("galileo-sender-") for t in threading.enumerate()
    ):
        time.sleep(0.05)


def _orphans(collector: Any, stream: str) -> int:
    """Spans stored whose parent is neither stored nor the (upstream) trace: children of a dropped span."""
    db = sqlite3.connect(f"file:{collector.db_path}?mode=ro", uri=True, timeout=5)
    try:
        row = db.execute(
            "SELECT COUNT(*) FROM records r WHERE r.parent_id IS NOT NULL AND r.parent_id != r.trace_id"
            " AND r.log_stream_id IN (SELECT id FROM log_streams WHERE name = ?)"
            " AND NOT EXISTS (SELECT 1 FROM records p WHERE p.id = r.parent_id)",
            (stream,),
        ).fetchone()
        return int(row[0])
    finally:
        db.close()


def run(args: argparse.Namespace) -> Figures:
    figures = Figures(threads_start=threading.active_count())
    galileo.shutdown(timeout=5)
    split = _split_cpus()
    with start_collector() as collector:
        if split is not None:
            assert collector.pid is not None
            os.sched_setaffinity(collector.pid, split[1])
            os.sched_setaffinity(0, split[0])
        _request.reset()
        os.environ.update(GALILEO_API_URL=collector.url, GALILEO_API_KEY="bench", GALILEO_PROJECT="bench")
        figures.queue_bound = _request.process_config().queue_size
        ceiling_client = Client(collector.url, "bench")
        rate, _, failed = _ceiling(ceiling_client, args.ceiling)
        figures.ceilings.append(rate)
        figures.ceiling_failed += failed
        print(f"ceiling (before): {rate:.0f} records/s", flush=True)

        per_request = 1 + args.children
        paced = Phase("paced", args.rate or round(args.offered * rate / per_request))
        with serve(_app(args.children)) as url:
            port = int(url.rsplit(":", 1)[1])
            _phase(paced, collector, port, args)
            figures.phases.append(paced)
            print(f"paced: {paced.delivered_rate:.0f} records/s delivered", flush=True)
            rate, _, failed = _ceiling(ceiling_client, args.ceiling)  # the service idle, its sender stopped
            figures.ceilings.append(rate)
            figures.ceiling_failed += failed
            print(f"ceiling (after): {rate:.0f} records/s", flush=True)
            if not args.no_overload:
                overload = Phase("back-to-back", 0.0)
                _phase(overload, collector, port, args)
                figures.phases.append(overload)
                print(f"back-to-back: {overload.delivered_rate:.0f} records/s delivered", flush=True)
        galileo.shutdown(timeout=5)
        figures.threads_end = threading.active_count()
    return figures


def _report(figures: Figures, args: argparse.Namespace) -> None:
    per_request = 1 + args.children
    ceiling = max(figures.ceilings) if figures.ceilings else float("nan")
    ceilings = " / ".join(f"{c:.0f}" for c in figures.ceilings)
    print()
    print(
        f"one uvicorn process (app + SDK sender); {args.connections} keep-alive connections (another "
        f"process), fresh trace headers per request; {per_request} records per request (workflow + "
        f"{args.children} children); per phase {args.warmup:g} s warm-up + {args.duration:g} s window, "
        "a fresh sender"
    )
    print(
        f"ceiling: 1 thread, 1 requests.Session, 1 span per POST, same collector (before / after the paced "
        "phase): "
        f"{ceilings} records/s; ratios against {ceiling:.0f}"
    )
    print()
    print(
        "| load | req/s served | records logged/s | **delivered/s (window)** | **÷ ceiling** (goal ≥ 3x) | "
        "queued max / bound | settled after load | delivered in all / logged | stored by type | dropped "
        "(by reason) | CPU: service / collector | threads mid / end / settled |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for p in figures.phases:
        done = int(p.load.get("done", 0))
        load_s = float(p.load.get("seconds", float("nan")))
        load = f"paced {p.rate:.0f} req/s" if p.rate else "back to back"
        queued = max((s.queued for s in p.samples), default=0)
        settled = (
            f"{p.drained_after:.1f} s"
            if p.drained_after is not None
            else f"NOT within {p.drain_waited:.0f} s"
        )
        stored = sum(p.by_type.values())
        types = ", ".join(f"{n} {kind}" for kind, n in sorted(p.by_type.items()))
        types += f"; {p.orphans} orphaned"
        reasons = ", ".join(f"{n} {r}" for r, n in sorted(p.stats.get("dropped_by_reason", {}).items()))
        dropped = f"{p.stats.get('dropped', 0)}{f' ({reasons})' if reasons else ''}"
        print(
            f"| {load} | {done / load_s:.0f} | {done * per_request / load_s:.0f} | "
            f"**{p.delivered_rate:.0f}** | **{p.delivered_rate / ceiling:.2f}x** | "
            f"{queued} / {figures.queue_bound} | {settled} | "
            f"{stored} / {done * per_request} | {types} | {dropped} | "
            f"{p.service_cpu:.0%} / {p.collector_cpu:.0%} | "
            f"{p.threads_mid} / {p.threads_end} / {p.threads_drained} |"
        )
    print()
    print(f"threads: {figures.threads_start} at start, {figures.threads_end} at the end (servers stopped)")
    if figures.ceiling_failed:
        print(f"ceiling POSTs that failed: {figures.ceiling_failed}")


def main() -> int:
    if len(sys.argv) == 6 and sys.argv[1] == "--loadgen":
        _loadgen_main(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=15.0, help="measuring window per phase, s (default 15)"
    )
    parser.add_argument("--warmup", type=float, default=4.0, help="load before the window, s (default 4)")
    parser.add_argument("--connections", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument("--children", type=int, default=8, help="child spans per workflow span (default 8)")
    parser.add_argument("--ceiling", type=float, default=8.0, help="each ceiling measurement, s (default 8)")
    parser.add_argument(
        "--offered",
        type=float,
        default=5.0,
        help="paced phase: records logged per second as a multiple of the ceiling (default 5)",
    )
    parser.add_argument(
        "--rate", type=float, default=0.0, help="paced phase: requests/s (overrides --offered)"
    )
    parser.add_argument("--no-overload", action="store_true", help="skip the back-to-back phase")
    parser.add_argument("--drain", type=float, default=60.0, help="wait for the sender after each load, s")
    args = parser.parse_args()
    _report(run(args), args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
