"""What ``TracingMiddleware`` costs a trivial endpoint, in process and over uvicorn.

The endpoint is ``async def ok(request): return PlainTextResponse("ok")`` on a Starlette app, and it never
calls ``get_request_logger()``: what is measured is the middleware's own per-request work (parse the
``X-Galileo-*`` headers, build and set the request state, wrap ``send``, reset). The variants:

- ``bare`` and ``bare, trace headers``: the app without middleware, the baselines of the ratios (the second
  for the variant sent trace headers: over uvicorn, h11 parsing two more headers costs more than the
  middleware's own work);
- ``bare again (control)``: the same app without middleware, another instance, measured against ``bare``
  as the middleware is (an A/A test): how far its ratios land from 1.00 is how far this machine's noise alone
  moves a ratio, in process and over uvicorn;
- ``tracing, no headers`` / ``tracing, trace headers``: ``TracingMiddleware`` on its pure-ASGI fast path,
  without and with valid ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID`` headers (uuid4s);
- ``no-op BaseHTTPMiddleware``: a ``dispatch`` that only awaits ``call_next`` (for reference: what any
  ``BaseHTTPMiddleware`` costs);
- ``tracing, dispatch overridden``: a ``TracingMiddleware`` subclass whose ``dispatch`` calls
  ``super().dispatch`` — the ``BaseHTTPMiddleware`` path users get when they customise it.

In process: the ASGI app is driven directly from one asyncio loop (a uvicorn-like scope, a ``receive``
returning an empty body, a ``send`` that drops everything): ``--iterations`` requests per variant per round,
the variants interleaved round-robin (the order rotated each round) for ``--rounds`` rounds. Printed: the
median µs per request over rounds (and min-max) and its ratio to the baseline (goal for the fast path:
≤ 1.15x).

Over uvicorn: every variant is served at once on its own loopback port (uvicorn in threads of this process).
One load-generator subprocess (this file with ``--loadgen``: stdlib asyncio, raw HTTP/1.1 keep-alive,
``--connections`` connections with one request in flight each) loads one variant at a time for ``--seconds``
after a short warm-up, the variants interleaved for ``--http-rounds`` rounds. Being a separate process it does
not share the servers' GIL, and it costs a fraction of the server's CPU per request (printed), so the server
is what is measured. Printed: requests/s (median, min-max) and its ratio to the baseline (goal for the fast
path: ≥ 0.9x), and the server's CPU µs per request (this process's CPU time over the measuring window, which
only the servers use) and its ratio: with two cores shared by client, server and kernel, throughput varies by
several percent from window to window; CPU per request is the steadier figure.

Run: ``python benchmarks/bench_middleware.py [--quick]`` (``--quick``: a smoke run of about 15 s; the full run
takes about a minute). Loopback only; bounded in count and time; prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, next_response, serve

from galileo.middleware import TracingMiddleware
from galileo.propagation import PARENT_ID_HEADER, TRACE_ID_HEADER, parse_trace_headers

_FAST_IN_PROCESS_GOAL = 1.15
_FAST_HTTP_GOAL = 0.9

# ---------------------------------------------------------------------------------------------------------
# The apps


async def ok(request: Request) -> Response:
    return PlainTextResponse("ok")


class NoOpMiddleware(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await call_next(request)


class CustomTracingMiddleware(TracingMiddleware):
    """Overrides ``dispatch`` (adding nothing), which turns the fast path off."""

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return await super().dispatch(request, call_next)


def _app(middleware: type[Any] | None) -> Starlette:
    return Starlette(
        routes=[Route("/", ok)], middleware=[Middleware(middleware)] if middleware is not None else []
    )


_TRACE_ID = str(uuid.uuid4())
_PARENT_ID = str(uuid.uuid4())
# What the load generator sends, and (with the host) what the in-process scope holds.
_BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"user-agent", b"bench-middleware"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, deflate"),
    (b"connection", b"keep-alive"),
]
_TRACE_HEADERS: list[tuple[bytes, bytes]] = [
    (TRACE_ID_HEADER.lower().encode(), _TRACE_ID.encode()),
    (PARENT_ID_HEADER.lower().encode(), _PARENT_ID.encode()),
]


@dataclass
class Variant:
    name: str
    app: ASGIApp
    headers: list[tuple[bytes, bytes]]
    baseline: str | None = None  # the variant its ratios are against (None: a baseline itself)
    fast: bool = False  # the goals apply to it
    us_per_request: list[float] = field(default_factory=list)
    requests_per_s: list[float] = field(default_factory=list)
    cpu_us_per_request: list[float] = field(default_factory=list)
    client_cpu_us_per_request: list[float] = field(default_factory=list)
    errors: int = 0


def _variants() -> list[Variant]:
    return [
        Variant("bare", _app(None), []),
        Variant("bare, trace headers", _app(None), _TRACE_HEADERS),
        # The control: the bare app again (an instance of its own), measured against the first as the
        # middleware is: how far its ratios land from 1.00 is what this machine's noise alone makes.
        Variant("bare again (control)", _app(None), [], "bare"),
        Variant("tracing, no headers (fast path)", _app(TracingMiddleware), [], "bare", fast=True),
        Variant(
            "tracing, trace headers (fast path)",
            _app(TracingMiddleware),
            _TRACE_HEADERS,
            "bare, trace headers",
            fast=True,
        ),
        Variant("no-op BaseHTTPMiddleware", _app(NoOpMiddleware), [], "bare"),
        Variant("tracing, dispatch overridden", _app(CustomTracingMiddleware), [], "bare"),
    ]


# ---------------------------------------------------------------------------------------------------------
# In process


def _scope(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A scope like the one uvicorn builds for ``GET /``."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *_BASE_HEADERS, *headers],
        "state": {},
    }


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def _drop(message: Message) -> None:
    return None


async def _check(variant: Variant) -> None:
    """One request, collecting the response: a broken setup must not pass for a fast one."""
    sent: list[Message] = []

    async def collect(message: Message) -> None:
        sent.append(message)

    await variant.app(_scope(variant.headers), _receive, collect)
    status = next((m["status"] for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    if status != 200 or body != b"ok":
        raise SystemExit(f"{variant.name}: unexpected response {status} {body!r}")
    if variant.headers and parse_trace_headers(variant.headers) != (_TRACE_ID, _PARENT_ID):
        raise SystemExit(f"{variant.name}: the trace headers do not parse")


async def _time(app: ASGIApp, scope: dict[str, Any], count: int) -> float:
    """µs per request over ``count`` requests (the scope copied per request, as a server makes a new one)."""
    started = time.perf_counter_ns()
    for _ in range(count):
        await app(dict(scope), _receive, _drop)
    return (time.perf_counter_ns() - started) / count / 1000


async def _in_process(variants: Sequence[Variant], rounds: int, iterations: int) -> None:
    scopes = [_scope(v.headers) for v in variants]
    for variant, scope in zip(variants, scopes, strict=True):
        await _check(variant)
        await _time(variant.app, scope, max(100, iterations // 10))  # warm-up
    for index in range(rounds):
        order = list(range(len(variants)))
        order = order[index % len(order) :] + order[: index % len(order)]
        for i in order:
            gc.collect()
            variants[i].us_per_request.append(await _time(variants[i].app, scopes[i], iterations))


# ---------------------------------------------------------------------------------------------------------
# Over uvicorn: the load generator (a subprocess running this file with --loadgen; stdlib only)


class _Load:
    """Keep-alive connections each sending one request at a time, counting responses."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.done = 0
        self.errors = 0
        self.stopping = False
        self.transports: list[asyncio.Transport] = []


class _Connection(asyncio.Protocol):
    def __init__(self, load: _Load) -> None:
        self.load = load
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.load.transports.append(transport)
        transport.write(self.load.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            ok, self.buffer = next_response(self.buffer)
            if ok is None:
                return
            if ok:
                self.load.done += 1
            else:
                self.load.errors += 1
            if not self.load.stopping and self.transport is not None:
                self.transport.write(self.load.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.load.stopping:
            self.load.errors += 1


async def _generate(command: dict[str, Any]) -> None:
    port = command["port"]
    lines = [b"GET / HTTP/1.1", f"host: 127.0.0.1:{port}".encode()]
    lines += [name + b": " + value for name, value in _BASE_HEADERS]
    lines += [name.encode() + b": " + value.encode() for name, value in command["headers"]]
    load = _Load(b"\r\n".join(lines) + b"\r\n\r\n")
    loop = asyncio.get_running_loop()
    for _ in range(command["connections"]):
        await loop.create_connection(lambda: _Connection(load), "127.0.0.1", port)
    await asyncio.sleep(command["warmup"])
    print("start", flush=True)
    done, errors, started, cpu = load.done, load.errors, time.perf_counter(), time.process_time()
    await asyncio.sleep(command["seconds"])
    done, errors, elapsed = load.done - done, load.errors - errors, time.perf_counter() - started
    print(f"end {done} {errors} {elapsed} {time.process_time() - cpu}", flush=True)
    load.stopping = True
    for transport in load.transports:
        transport.close()
    await asyncio.sleep(0.05)


def _loadgen_main() -> None:
    """Read one JSON command per line from stdin; answer ``start``, then ``end DONE ERRORS SECONDS CPU``."""
    for line in sys.stdin:
        if line.strip():
            asyncio.run(_generate(json.loads(line)))


class _LoadGenerator:
    def __init__(self) -> None:
        command = [sys.executable, os.path.abspath(__file__), "--loadgen"]
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True, bufsize=1)

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit("the load generator stopped")
        return line.strip()

    def run(self, port: int, variant: Variant, connections: int, seconds: float, warmup: float) -> None:
        assert self.proc.stdin is not None
        headers = [(name.decode(), value.decode()) for name, value in variant.headers]
        command = {"port": port, "headers": headers, "connections": connections}
        command |= {"seconds": seconds, "warmup": warmup}
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        if self._line() != "start":
            raise SystemExit("the load generator misbehaved")
        cpu = time.process_time()
        _, done, errors, elapsed, client_cpu = self._line().split()
        cpu = time.process_time() - cpu
        variant.requests_per_s.append(int(done) / float(elapsed))
        variant.cpu_us_per_request.append(cpu / max(1, int(done)) * 1e6)
        variant.client_cpu_us_per_request.append(float(client_cpu) / max(1, int(done)) * 1e6)
        variant.errors += int(errors)

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


@contextlib.contextmanager
def _servers(variants: Sequence[Variant]) -> Iterator[list[int]]:
    with contextlib.ExitStack() as stack:
        urls = [stack.enter_context(serve(v.app)) for v in variants]
        yield [int(url.rsplit(":", 1)[1]) for url in urls]


def _over_uvicorn(variants: Sequence[Variant], rounds: int, seconds: float, connections: int) -> None:
    generator = _LoadGenerator()
    try:
        with _servers(variants) as ports:
            for index in range(rounds):
                order = list(range(len(variants)))
                order = order[index % len(order) :] + order[: index % len(order)]
                for i in order:
                    gc.collect()
                    generator.run(ports[i], variants[i], connections, seconds, warmup=min(0.5, seconds / 4))
    finally:
        generator.close()


# ---------------------------------------------------------------------------------------------------------
# Report


def _cell(values: Sequence[float], fmt: str) -> str:
    """``median (min-max)``."""
    if not values:
        return "-"
    return f"{median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _goal(variant: Variant, ratio: float, goal: float, at_most: bool) -> str:
    if not variant.fast:
        return ""
    met = ratio <= goal if at_most else ratio >= goal
    return f"{'≤' if at_most else '≥'} {goal}x: {'met' if met else 'NOT met'}"


def _report(variants: Sequence[Variant], args: argparse.Namespace) -> None:
    by_name = {v.name: v for v in variants}
    client_cpu = median([x for v in variants for x in v.client_cpu_us_per_request])
    print(
        f"\nin process: {args.rounds} round(s) x {args.iterations} requests per variant. Over uvicorn "
        f"({_server_kind()}): {args.http_rounds} round(s) x {args.seconds:g} s per variant, "
        f"{args.connections} keep-alive connections; the load generator used {client_cpu:.0f} µs of CPU "
        f"per request. {os.cpu_count()} CPUs, Python {sys.version.split()[0]}. Cells: median (min-max) over "
        "rounds; ratios: against the baseline named in column 2.\n"
    )
    print(
        "| variant | vs | in-process µs/req | ratio | goal | uvicorn req/s | ratio | goal "
        "| server CPU µs/req | ratio |"
    )
    print("|---|---|---:|---:|---|---:|---:|---|---:|---:|")
    added: list[str] = []
    for v in variants:
        base = by_name[v.baseline] if v.baseline else v
        us, rps, cpu = median(v.us_per_request), median(v.requests_per_s), median(v.cpu_us_per_request)
        us_ratio = us / median(base.us_per_request)
        rps_ratio = rps / median(base.requests_per_s)
        cpu_ratio = cpu / median(base.cpu_us_per_request)
        print(
            f"| {v.name} | {v.baseline or '-'} | {_cell(v.us_per_request, '.1f')} | {us_ratio:.2f}x "
            f"| {_goal(v, us_ratio, _FAST_IN_PROCESS_GOAL, at_most=True)} "
            f"| {_cell(v.requests_per_s, ',.0f')} | {rps_ratio:.2f}x "
            f"| {_goal(v, rps_ratio, _FAST_HTTP_GOAL, at_most=False)} "
            f"| {_cell(v.cpu_us_per_request, '.0f')} | {cpu_ratio:.2f}x |"
        )
        if v.baseline:
            extra_cpu = cpu - median(base.cpu_us_per_request)
            added.append(f"{v.name} {us - median(base.us_per_request):+.1f} µs ({extra_cpu:+.0f} µs)")
    errors = {v.name: v.errors for v in variants if v.errors}
    if errors:
        print(f"\nnon-200 responses or dropped connections during the measuring windows: {errors}")
    print(
        "\nadded to the baseline per request, in process (and server CPU over uvicorn): " + "; ".join(added)
    )
    custom = median(by_name["tracing, dispatch overridden"].us_per_request)
    noop = median(by_name["no-op BaseHTTPMiddleware"].us_per_request)
    print(f"in process, the overridden dispatch minus the no-op BaseHTTPMiddleware: {custom - noop:+.1f} µs")


def _server_kind() -> str:
    try:
        import httptools  # noqa: F401
    except ImportError:
        return "uvicorn with h11"
    return "uvicorn with httptools"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run of about 15 s")
    parser.add_argument("--rounds", type=int, help="in-process rounds (default 15; quick 5)")
    parser.add_argument(
        "--iterations", type=int, help="in-process requests a round (default 2000; quick 500)"
    )
    parser.add_argument("--http-rounds", type=int, help="rounds over uvicorn (default 4; quick 1)")
    parser.add_argument("--seconds", type=float, help="load per variant per round (default 2; quick 1.2)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.loadgen:
        _loadgen_main()
        return
    defaults = (5, 500, 1, 1.2) if args.quick else (15, 2000, 4, 2.0)
    for name, default in zip(("rounds", "iterations", "http_rounds", "seconds"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)

    variants = _variants()
    started = time.monotonic()
    asyncio.run(_in_process(variants, args.rounds, args.iterations))
    print(f"in process: done in {time.monotonic() - started:.1f} s", flush=True)
    started = time.monotonic()
    _over_uvicorn(variants, args.http_rounds, args.seconds, args.connections)
    print(f"over uvicorn: done in {time.monotonic() - started:.1f} s", flush=True)
    _report(variants, args)


if __name__ == "__main__":
    main()
