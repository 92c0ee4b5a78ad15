"""What the SDK costs a request handler, with the backend healthy and with 300 ms of added latency.

The seed handler (``get_request_logger()`` + ``add_workflow_span`` + ``conclude`` + ``flush``) runs in a
Starlette app behind ``TracingMiddleware`` on uvicorn, against the local collector. For each backend it
prints:

- µs spent inside the SDK calls per request (median and p99, timed in the handler);
- network calls made on a request's thread (the event loop or a threadpool thread; goal 0);
- 20 concurrent clients (in another process; it and the collector run on other CPUs than the app), paced (100
  requests/s in all), in bursts (all 20 at once, 4 bursts a second) and saturating (back to back): request
  latency p50/p99 as the clients see it, and the ratio against the same app without the SDK, measured in the
  same run, interleaved (goal ≤ 1.2x). The clients are lean (stdlib asyncio, raw HTTP/1.1 on keep-alive
  connections, some 30 µs of CPU per request), so that the latency is the server's: with ``requests`` in 20
  threads each request cost the client about as much CPU as the server, which hid part of what the SDK
  adds (the ratios measured that way were 0.1-0.3 lower);
- the control's p50 ratio: the app without the SDK is served twice (two instances on two ports, the same
  code), and the second is measured as the SDK's app is, against the first (an A/A test). How far it lands
  from 1.00 is how far this machine's noise alone moves a ratio in that row (on the 2-CPU development VM,
  over one day's runs: 0.90-1.08x under paced load and bursts, 0.81-1.29x saturating): a ratio within
  that distance of its goal does not tell whether the goal is met;
- the server's CPU per request, without and with the SDK: this process's CPU time (the servers' threads
  and the sender's; the clients and the collector are other processes) over each load's window, which
  closes :data:`_SETTLE` after the load, once the sender has sent what the load made: the steadier figure
  of what the SDK costs the service, where the latency ratio moves with how requests queue;
- time spent in the garbage collector per request in the app's process, in the same windows, and how many
  full collections ran with the SDK: records waiting to go, and the bodies of requests in flight, are
  objects the collector scans, and a full collection scans every object of the process (tens of ms for a
  web service's heap), on whichever thread happens to allocate — often a request's;
- how long after the SDK app's last load every record had arrived at the collector (goal: within 30 s at
  300 ms; checked every 0.1 s, after that load's window).

A calibration line follows the table: how much slower straight-line Python runs in a handler under the
spread load than back to back, on this machine, in this run. It times a plain-Python reference snippet (no
SDK code) both ways, and the seed's SDK calls back to back: when the CPU idles between requests (10 ms apart
at 100 requests/s), caches and branch predictors go cold and every instruction is slower, which is what the
spread rows' "SDK µs" include.

Saturating load measures throughput more than overhead: a trivial handler costs ~0.3 ms of CPU, and each
traced request's records cost the sender CPU of their own on the same cores, so the ratio there shows how
much CPU the SDK adds per request rather than what a request waits for.

With ``--traceparent`` every request (to each app alike) carries a W3C ``traceparent`` naming a new
OpenTelemetry trace, as when an OpenTelemetry-traced service calls ours: the SDK's app parses it when the
request's logger is created, opens the trace mapped from it and tags each record with its OpenTelemetry ids
(see :mod:`galileo._incoming`). Without it (the default, and the figures quoted in the docs) requests carry
no trace context and each opens a trace of its own.

With ``--otlp`` every record is also exported as an OpenTelemetry span (``GALILEO_EXPORTER=both``, see
:mod:`galileo.otel`) to a second collector's OTLP endpoint, which runs where the first does; the last column
adds what the export delivered and dropped.

Run: ``python benchmarks/bench_request_path.py [--requests N] [--clients C] [--rounds R] [--rate RPS]
[--traceparent] [--otlp]``. Loopback only; bounded.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any, NamedTuple

import urllib3
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, os.path.dirname(__file__))
from _common import complete_traces, median, percentile, serve, start_collector
from collector_process import CollectorProcess
from sdk_helpers import called_by_the_sdk

import galileo
from galileo import _sender
from galileo._context import RequestState, request_state
from galileo.middleware import TracingMiddleware, _request, get_request_logger

_SENDER_PREFIX = "galileo-sender-"
#: How long after a load its garbage-collection window stays open: longer than the sender holds records
#: back while requests are in flight (YIELD_CAP), so what a load's records cost is counted with it.
_SETTLE = 0.12
#: Threads that serve requests: uvicorn's event loop thread and the threadpool of sync endpoints.
_REQUEST_PREFIXES = ("uvicorn-", "AnyIO worker")


class _NetworkSpy:
    """Counts the SDK's HTTP exchanges (its urllib3 pool's ``urlopen``) per thread kind (delegating to the
    real thing; the tests' ``http_spy`` tells them from urllib3's retries and from ``requests``)."""

    def __init__(self) -> None:
        self.on_request_path = 0
        self.on_sender = 0
        self._lock = threading.Lock()
        self._real = urllib3.HTTPConnectionPool.urlopen

    def install(self) -> None:
        spy = self
        real = self._real

        def request(
            pool: urllib3.HTTPConnectionPool, method: str, url: str, *args: Any, **kwargs: Any
        ) -> Any:
            if called_by_the_sdk(sys._getframe(1)):
                name = threading.current_thread().name
                with spy._lock:
                    if name.startswith(_SENDER_PREFIX):
                        spy.on_sender += 1
                    elif name.startswith(_REQUEST_PREFIXES):
                        spy.on_request_path += 1
            return real(pool, method, url, *args, **kwargs)

        urllib3.HTTPConnectionPool.urlopen = request  # type: ignore[method-assign]

    def uninstall(self) -> None:
        urllib3.HTTPConnectionPool.urlopen = self._real  # type: ignore[method-assign]


class _GcClock:
    """Time spent in garbage collections of this process (all threads), and full collections run."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.full = 0
        self._started = 0.0

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started
            self.full += info["generation"] == 2

    def __enter__(self) -> _GcClock:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def window(self, fn: Callable[[], list[float]]) -> _Window:
        """Run ``fn`` (a load) and wait :data:`_SETTLE` (see :class:`_Window`)."""
        seconds, full, cpu = self.seconds, self.full, time.process_time()
        result = fn()
        ended = time.monotonic()
        time.sleep(_SETTLE)
        return _Window(result, self.seconds - seconds, self.full - full, time.process_time() - cpu, ended)


class _Window(NamedTuple):
    """One load and the :data:`_SETTLE` after it."""

    latencies: list[float]  # ms, as the clients saw them
    gc_seconds: float  # in garbage collections of this process
    full: int  # full collections among them
    cpu_seconds: float  # this process's CPU time: the servers' and the sender's (clients, collector apart)
    ended: float  # when the load ended (time.monotonic())


def _seed_calls() -> None:
    """The seed handler's SDK calls."""
    logger = get_request_logger()
    logger.add_workflow_span(input="What did Galileo see?", name="answer")
    logger.conclude(output="Jupiter's moons")
    logger.flush()


def _apps(sdk_ns: list[int]) -> tuple[Starlette, Starlette, Starlette]:
    """The seed app, the same app without the SDK, and the control: that app again, its own instance."""

    async def seed(request: Request) -> JSONResponse:
        started = time.perf_counter_ns()
        _seed_calls()
        sdk_ns.append(time.perf_counter_ns() - started)
        return JSONResponse({"answer": "Jupiter's moons"})

    async def bare(request: Request) -> JSONResponse:
        return JSONResponse({"answer": "Jupiter's moons"})

    with_sdk = Starlette(routes=[Route("/ask", seed)], middleware=[Middleware(TracingMiddleware)])
    return with_sdk, Starlette(routes=[Route("/ask", bare)]), Starlette(routes=[Route("/ask", bare)])


_LOAD_SCRIPT = """
import asyncio, json, os, re, sys, time
url, clients, per_client = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
interval = float(sys.argv[4])  # seconds between a client's requests; 0: back to back
burst = sys.argv[5] == "burst"  # all clients send at the same moments, or spread over the interval
traceparent = sys.argv[6] == "traceparent"  # each request names a new OpenTelemetry trace
host, _, path = url.removeprefix("http://").partition("/")
address, port = host.rsplit(":", 1)
request = f"GET /{path} HTTP/1.1\\r\\nhost: {host}\\r\\naccept: */*\\r\\n\\r\\n".encode()
length = re.compile(rb"\\r\\ncontent-length:[ \\t]*(\\d+)", re.IGNORECASE)

def with_traceparent():
    ids = (os.urandom(16).hex().encode(), os.urandom(8).hex().encode())
    return request[:-2] + b"traceparent: 00-%s-%s-01\\r\\n\\r\\n" % ids

async def exchange(reader, writer):
    writer.write(with_traceparent() if traceparent else request)
    head = await reader.readuntil(b"\\r\\n\\r\\n")
    if head[9:12] != b"200":
        raise SystemExit(f"answered {head[:12]!r}")
    await reader.readexactly(int(length.search(head).group(1)))

async def client(offset, start, latencies):
    reader, writer = await asyncio.open_connection(address, int(port))
    await exchange(reader, writer)  # connect first: measure requests, not handshakes
    next_at = start + offset
    for _ in range(per_client):
        await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        next_at += interval
        started = time.perf_counter()
        await exchange(reader, writer)
        latencies.append((time.perf_counter() - started) * 1000)
    writer.close()

async def main():
    start = time.perf_counter() + 0.5  # after every client connected
    offsets = [0.0 if burst else i * interval / clients for i in range(clients)]
    latencies = []
    await asyncio.gather(*(client(offset, start, latencies) for offset in offsets))
    print(json.dumps(latencies))

asyncio.run(main())
"""


def _split_cpus() -> tuple[set[int], set[int]] | None:
    """(CPUs for the app, CPUs for the backend and the clients), or None on a single CPU.

    The collector stands in for Galileo's servers, which run elsewhere: giving it (and the load generator)
    other CPUs than the app keeps its work from being counted as the SDK's. Set BENCH_SHARED_CPUS=1 to let
    everything share every CPU instead.
    """
    if os.environ.get("BENCH_SHARED_CPUS"):
        return None
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return None
    if len(cpus) < 2:
        return None
    half = max(1, len(cpus) // 2)
    return set(cpus[:half]), set(cpus[half:])


def _other_cpus() -> None:
    split = _split_cpus()
    if split is not None:
        os.sched_setaffinity(0, split[1])


def _load(
    url: str,
    clients: int,
    per_client: int,
    rate: float = 0.0,
    burst: bool = False,
    traceparent: bool = False,
) -> list[float]:
    """``clients`` concurrent clients in another process (its own GIL), ``per_client`` requests each.

    ``rate`` paces them to that many requests per second in all (0: each client sends back to back, which
    saturates the app); with ``burst`` all clients send at the same moments (``rate / clients`` bursts a
    second), otherwise spread evenly; with ``traceparent`` each request names a new OpenTelemetry trace.
    Returns the request latencies in ms as the clients saw them.
    """
    interval = clients / rate if rate else 0.0
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _LOAD_SCRIPT,
            f"{url}/ask",
            str(clients),
            str(per_client),
            str(interval),
            "burst" if burst else "spread",
            "traceparent" if traceparent else "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        preexec_fn=_other_cpus,
    )
    latencies: list[float] = json.loads(out.stdout)
    return latencies


def _wait_delivered(expected_traces: int, collector: Any, deadline_s: float) -> float | None:
    """Seconds until the collector holds ``expected_traces`` complete traces, or None past the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if complete_traces(collector) >= expected_traces and galileo.stats()["queued"] == 0:
            return time.monotonic() - started
        time.sleep(0.1)
    return None


@contextlib.contextmanager
def sdk_backend(log_stream: str, latency_ms: float = 0.0, otlp: bool = False) -> Iterator[CollectorProcess]:
    """A fresh sender and a collector on the CPUs the app does not use, the SDK's environment pointed at it
    (project "bench", ``log_stream``); request loggers read that environment again. With ``otlp`` every
    record is also exported as an OpenTelemetry span (``GALILEO_EXPORTER=both``) to a second collector's
    OTLP endpoint, placed like the first.

    The collector stands in for Galileo's servers, which run on machines of their own: it runs at the lowest
    CPU priority (nice 19), so that on the CPU it shares with the load generator, storing records never
    delays the clients (whose latencies are what is measured). It catches up whenever they wait.
    """
    _sender.reset(timeout=5)  # a fresh sender: this run's counters only
    split = _split_cpus()
    with contextlib.ExitStack() as stack:
        collector = stack.enter_context(start_collector(latency_ms))
        sink = stack.enter_context(start_collector()) if otlp else None
        for process in (collector, sink):
            if process is not None:
                assert process.pid is not None
                os.setpriority(os.PRIO_PROCESS, process.pid, 19)
                if split is not None:
                    os.sched_setaffinity(process.pid, split[1])
        if split is not None:
            os.sched_setaffinity(0, split[0])
        _request.reset()  # request loggers resolve their configuration once per process: read it again
        os.environ.update(
            GALILEO_API_URL=collector.url,
            GALILEO_API_KEY="bench",
            GALILEO_PROJECT="bench",
            GALILEO_LOG_STREAM=log_stream,
        )
        if sink is not None:
            os.environ.update(GALILEO_OTLP_ENDPOINT=sink.url, GALILEO_EXPORTER="both")
        try:
            yield collector
        finally:
            os.environ.pop("GALILEO_OTLP_ENDPOINT", None)
            os.environ.pop("GALILEO_EXPORTER", None)


def run(
    latency_ms: float,
    rate: float,
    clients: int,
    per_client: int,
    rounds: int,
    report: Callable[[str], None],
    burst: bool = False,
    traceparent: bool = False,
    otlp: bool = False,
) -> None:
    with sdk_backend(f"request-path-{int(latency_ms)}ms", latency_ms, otlp) as collector:
        sdk_ns: list[int] = []
        with_sdk, without, control = _apps(sdk_ns)
        spy = _NetworkSpy()
        spy.install()
        try:
            with (
                serve(without) as bare_url,
                serve(control) as control_url,
                serve(with_sdk) as sdk_url,
                _GcClock() as gc_clock,
            ):
                _load(sdk_url, 2, 5)  # warm-up: login, project and log stream resolution
                _load(bare_url, 2, 5)
                _load(control_url, 2, 5)
                _wait_delivered(10, collector, 30)
                sdk_ns.clear()
                spy.on_request_path = 0
                total = clients * per_client * rounds
                bare_ms: list[float] = []
                sdk_ms: list[float] = []
                ratios50: list[float] = []
                ratios99: list[float] = []
                ratios_aa: list[float] = []
                gc_bare = gc_sdk = cpu_bare = cpu_sdk = 0.0
                full_sdk = 0
                # Interleaved rounds, the order reversed every round (a drift of the machine's speed within
                # a round then favours no app), the SDK's last; the ratio reported is the median round's.
                # The app without the SDK stands in the middle and the control where the SDK's app stands
                # (before it one round, after it the next): the control's ratio is measured exactly as the
                # SDK's, and what it shows is this machine's noise alone.
                for i in range(rounds):
                    measured = {}
                    order = (control_url, bare_url, sdk_url)
                    for url in order if (rounds - i) % 2 else order[::-1]:
                        measured[url] = gc_clock.window(
                            lambda url=url: _load(url, clients, per_client, rate, burst, traceparent)
                        )
                    bare, sdk = measured[bare_url], measured[sdk_url]
                    ratios_aa.append(
                        percentile(measured[control_url].latencies, 50) / percentile(bare.latencies, 50)
                    )
                    gc_bare += bare.gc_seconds
                    gc_sdk += sdk.gc_seconds
                    full_sdk += sdk.full
                    cpu_bare += bare.cpu_seconds
                    cpu_sdk += sdk.cpu_seconds
                    ratios50.append(percentile(sdk.latencies, 50) / percentile(bare.latencies, 50))
                    ratios99.append(percentile(sdk.latencies, 99) / percentile(bare.latencies, 99))
                    bare_ms += bare.latencies
                    sdk_ms += sdk.latencies
                delivered = _wait_delivered(10 + total, collector, 60)
                waited = time.monotonic() - sdk.ended  # since the last load of the SDK's app
        finally:
            spy.uninstall()
        stats = galileo.stats()
        galileo.shutdown(timeout=30)  # what is left (trace completions) goes before the collector stops
    sdk_us = [ns / 1000 for ns in sdk_ns]
    ratio50, ratio99, ratio_aa = median(ratios50), median(ratios99), median(ratios_aa)
    arrived = f"{waited:.1f} s" if delivered is not None else f"NOT within {waited:.0f} s"
    load = (
        "saturating"
        if not rate
        else f"bursts of {clients}, {rate / clients:g}/s"
        if burst
        else f"{rate:.0f} req/s"
    )
    report(
        f"| {latency_ms:>4.0f} ms | {load} | {median(sdk_us):7.1f} | {percentile(sdk_us, 99):7.1f} | "
        f"{spy.on_request_path:>3} | {percentile(bare_ms, 50):6.2f} / {percentile(sdk_ms, 50):6.2f} | "
        f"{ratio50:5.2f}x | {ratio_aa:5.2f}x | {ratio99:5.2f}x | "
        f"{cpu_bare / total * 1e6:4.0f} / {cpu_sdk / total * 1e6:4.0f} | "
        f"{gc_bare / total * 1e6:4.1f} / {gc_sdk / total * 1e6:4.1f} ({full_sdk} full) | {arrived} | "
        f"{stats['sent']} sent, {stats['dropped']} dropped"
        + (f"; OTLP {stats['otlp_exported']} exported, {stats['otlp_dropped']} dropped |" if otlp else " |")
    )


class _Record:
    def __init__(self, **fields: Any) -> None:
        self.__dict__.update(fields)


_ids = random.Random(0)


def _reference_snippet() -> None:
    """Plain Python of the kind the SDK's calls run, without SDK code: two small records with random ids
    and timestamps, one under the other (about 4 µs back to back on the development machine)."""
    method, path = "GET", "/ask"
    question = "What did Galileo see?"
    trace = _Record(id=f"{_ids.getrandbits(128):032x}", name=f"{method} {path}", input=question)
    trace.created_at = datetime.now(timezone.utc)
    span = _Record(id=f"{_ids.getrandbits(128):032x}", name="answer", input=trace.input, spans=[])
    span.created_at = datetime.now(timezone.utc)
    trace.spans = [span]
    span.output = trace.output = "Jupiter's moons"


def _back_to_back_us(fn: Callable[[], None], n: int = 2000) -> float:
    """µs per call of ``fn`` in a tight loop: the median of 5 rounds' medians."""
    rounds = []
    for _ in range(5):
        times = []
        for _ in range(n):
            started = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - started)
        rounds.append(median(times) / 1000)
    return median(rounds)


def _seed_back_to_back_us(traceparent: bool = False) -> float:
    """µs per request of the seed's SDK calls back to back, in a request context as the middleware sets it
    (the sender runs: its records go to a collector of their own); ``traceparent``: each request names a new
    OpenTelemetry trace."""
    headers = [(b"host", b"bench")]
    scopes = [
        {
            "type": "http",
            "method": "GET",
            "path": "/ask",
            "headers": [*headers, (b"traceparent", b"00-%s-%s-01" % (_hex(16), _hex(8)))]
            if traceparent
            else headers,
        }
        for _ in range(2_000)
    ]
    made = iter(scopes)

    def one() -> None:
        token = request_state.set(RequestState.new(next(made)))
        try:
            _seed_calls()
        finally:
            request_state.reset(token)

    with sdk_backend("calibration"):
        us = _back_to_back_us(one, 400)  # 2,000 traces in all: well within the sender's queue
        galileo.shutdown(timeout=30)
    return us


def _hex(size: int) -> bytes:
    return os.urandom(size).hex().encode()


def calibrate(
    clients: int, per_client: int, rate: float, report: Callable[[str], None], traceparent: bool = False
) -> None:
    """The reference snippet back to back and in a handler under the spread load; the seed's SDK calls back
    to back (see the module docstring)."""
    handler_ns: list[int] = []

    async def reference(request: Request) -> JSONResponse:
        started = time.perf_counter_ns()
        _reference_snippet()
        handler_ns.append(time.perf_counter_ns() - started)
        return JSONResponse({"answer": "Jupiter's moons"})

    split = _split_cpus()
    if split is not None:
        os.sched_setaffinity(0, split[0])
    warm = _back_to_back_us(_reference_snippet)
    with serve(Starlette(routes=[Route("/ask", reference)])) as url:
        _load(url, 2, 5)
        handler_ns.clear()
        for _ in range(2):
            _load(url, clients, per_client, rate)
    loaded = median(handler_ns) / 1000
    seed = _seed_back_to_back_us(traceparent)
    report(
        f"calibration: a plain-Python reference snippet takes {warm:.1f} µs back to back and {loaded:.1f} µs "
        f"p50 in a handler at {rate:.0f} requests/s spread ({loaded / warm:.1f}x); the seed's SDK calls take "
        f"{seed:.1f} µs back to back"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--requests",
        type=int,
        default=0,
        help="requests per client per round (default: 3 paced or in bursts, 10 saturating, whose rounds "
        "would otherwise last some 30 ms: too short to be steady)",
    )
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    parser.add_argument("--rate", type=float, default=100.0, help="paced load, requests/s (default 100)")
    parser.add_argument(
        "--latencies", default="0,300", help="added backend latencies in ms, comma-separated (default 0,300)"
    )
    parser.add_argument(
        "--loads", default="spread,bursts,saturating", help="loads, comma-separated (default: all three)"
    )
    parser.add_argument(
        "--otlp",
        action="store_true",
        help="export every record as an OpenTelemetry span too (GALILEO_EXPORTER=both) to a second "
        "collector's OTLP endpoint (default: Galileo's API only)",
    )
    parser.add_argument(
        "--traceparent",
        action="store_true",
        help="each request carries a W3C traceparent naming a new OpenTelemetry trace (default: no context)",
    )
    args = parser.parse_args()
    loads = {  # (rate, burst, requests per client per round)
        "spread": (args.rate, False, args.requests or 3),  # spread evenly at --rate
        "bursts": (args.clients * 4.0, True, args.requests or 3),  # all clients at once, 4 bursts a second
        "saturating": (0.0, False, args.requests or 10),  # back to back
    }
    print(
        f"seed handler on uvicorn, loopback; {args.clients} concurrent clients (another process) x "
        f"{args.requests or '3 (10 saturating)'} requests, {args.rounds} interleaved rounds per app; "
        "ratios: median over rounds"
        + ("; each request with a new traceparent" if args.traceparent else "")
        + ("; every record also exported over OTLP" if args.otlp else "")
    )
    print(
        "| backend latency | load | SDK µs p50 | SDK µs p99 | net calls on request path | "
        "p50 ms bare / SDK | p50 ratio | control's p50 ratio | p99 ratio | server CPU µs/req bare / SDK | "
        "GC µs/req bare / SDK | "
        "all records arrived after load | sender |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for latency in (float(ms) for ms in args.latencies.split(",")):
        for load in args.loads.split(","):
            rate, burst, requests = loads[load]
            run(latency, rate, args.clients, requests, args.rounds, print, burst, args.traceparent, args.otlp)
    if "spread" in args.loads.split(","):
        calibrate(args.clients, loads["spread"][2], args.rate, print, args.traceparent)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
