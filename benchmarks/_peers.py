"""The subjects of ``bench_peers.py``, each served by uvicorn in a process of its own, and the sink that
counts what the peers deliver.

Every subject serves ``GET /ask`` with the equivalent work, one request span and one child span:

- ``bare``, ``bare-again``: the handler alone (the second, the A/A control, is the same in another process);
- ``ours``: the seed handler (``get_request_logger()`` + ``add_workflow_span`` + ``conclude`` + ``flush``, see
  ``bench_request_path.py``) behind ``TracingMiddleware``, to our collector (the environment names it);
- ``otel``: OpenTelemetry's ``OpenTelemetryMiddleware`` (opentelemetry-instrumentation-asgi) around the app,
  a child span in the handler, ``BatchSpanProcessor`` and ``OTLPSpanExporter`` (OTLP/HTTP, protobuf) to the
  sink; the instrumentation adds an ``http send`` span for each of the response's two ASGI messages;
- ``otel-lean``: the same with ``exclude_spans=["receive", "send"]`` (an option of the instrumentation's
  recent releases; an older one fails to start with a TypeError): the server span and the child span only;
- ``sentry``: sentry-sdk's Starlette integration, ``traces_sample_rate=1.0``, a child span in the handler, its
  DSN pointing at the sink.

Outside any instrumentation, a pure ASGI wrapper answers ``GET /_bench/cpu``: this process's CPU time
(``time.process_time()``: every thread, the exporters' and senders' included), that of its live threads
other than the main one (``background``) and, for ``ours``, ``galileo.stats()``.

The sink (``ThreadingHTTPServer``) answers 200 to every POST and counts, per subject (the first segment of the
path), the posts and the spans they carried: OTLP/HTTP bodies decoded with opentelemetry-proto, Sentry
envelopes item by item (a ``transaction`` is 1 span plus its ``spans``; a ``span`` item a list of spans),
apart from the spans sentry-sdk 3 makes of its own envelope POSTs (``own``). ``GET /counts`` answers them as
JSON.

Run by ``bench_peers.py``: ``python _peers.py serve SUBJECT PORT SINK_URL`` or ``python _peers.py sink PORT``.
"""

from __future__ import annotations

import cProfile
import gzip
import json
import marshal
import os
import signal
import sys
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, MutableMapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

__all__ = ["CPU_PATH", "SPANS_PER_REQUEST", "SUBJECTS"]

#: Subjects in the order of the table; ``bare`` is the baseline and ``bare-again`` the A/A control.
SUBJECTS = ("bare", "bare-again", "ours", "otel", "otel-lean", "sentry")
#: Spans (records, for ours: the trace and its workflow span) each subject should deliver per request.
SPANS_PER_REQUEST = {"bare": 0, "bare-again": 0, "ours": 2, "otel": 4, "otel-lean": 2, "sentry": 2}
CPU_PATH = "/_bench/cpu"

_QUESTION, _ANSWER = "What did Galileo see?", "Jupiter's moons"
_Scope = MutableMapping[str, Any]
_Asgi = Callable[[_Scope, Any, Any], Awaitable[None]]


async def _answer(request: Request) -> JSONResponse:
    return JSONResponse({"answer": _ANSWER})


def _bare(sink: str) -> Any:
    return Starlette(routes=[Route("/ask", _answer)])


def _ours(sink: str) -> Any:
    from bench_request_path import _seed_calls

    from galileo.middleware import TracingMiddleware

    async def seed(request: Request) -> JSONResponse:
        _seed_calls()
        return JSONResponse({"answer": _ANSWER})

    return Starlette(routes=[Route("/ask", seed)], middleware=[Middleware(TracingMiddleware)])


def _otel(sink: str, subject: str, lean: bool) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "bench"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{sink}/{subject}/v1/traces")))
    tracer = provider.get_tracer("bench")

    async def seed(request: Request) -> JSONResponse:
        with tracer.start_as_current_span("answer") as span:
            span.set_attribute("input", _QUESTION)
            span.set_attribute("output", _ANSWER)
        return JSONResponse({"answer": _ANSWER})

    app = Starlette(routes=[Route("/ask", seed)])
    exclude = ["receive", "send"] if lean else None
    return OpenTelemetryMiddleware(app, tracer_provider=provider, exclude_spans=exclude)  # type: ignore[arg-type]


def _sentry(sink: str) -> Any:
    import sentry_sdk
    from sentry_sdk.integrations.starlette import StarletteIntegration

    host = sink.removeprefix("http://")
    sentry_sdk.init(
        dsn=f"http://public@{host}/sentry/1", traces_sample_rate=1.0, integrations=[StarletteIntegration()]
    )

    async def seed(request: Request) -> JSONResponse:
        with sentry_sdk.start_span(name="answer") as span:
            span.set_attribute("input", _QUESTION)
            span.set_attribute("output", _ANSWER)
        return JSONResponse({"answer": _ANSWER})

    return Starlette(routes=[Route("/ask", seed)])


_BUILDERS: dict[str, Callable[[str], Any]] = {
    "bare": _bare,
    "bare-again": _bare,
    "ours": _ours,
    "otel": lambda sink: _otel(sink, "otel", lean=False),
    "otel-lean": lambda sink: _otel(sink, "otel-lean", lean=True),
    "sentry": _sentry,
}


def _background_cpu() -> float:
    """CPU seconds used so far by the live threads of this process other than the main one (uvicorn's event
    loop): exporters', senders', the threadpool's."""
    main = threading.main_thread()
    return sum(
        time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
        for thread in threading.enumerate()
        if thread is not main and thread.ident is not None
    )


def _with_cpu_endpoint(app: _Asgi, stats: Callable[[], Any] | None) -> _Asgi:
    """``app`` behind a pure ASGI wrapper answering :data:`CPU_PATH` itself (no instrumentation sees it)."""

    async def outer(scope: _Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != CPU_PATH:
            await app(scope, receive, send)
            return
        control = {
            "cpu": time.process_time(),
            "background": _background_cpu(),
            "stats": stats() if stats else None,
        }
        body = json.dumps(control).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return outer


def _profiled(path: str) -> Callable[[], None]:
    """Profile every thread of this process from now on (cProfile, one profile per thread, timed in the
    thread's CPU time: blocking waits cost nothing); the function returned writes each thread's profile to
    ``{path}.{thread name}`` (read them with ``pstats``)."""
    profiles: dict[str, cProfile.Profile] = {}

    def start(*_: Any) -> None:  # the first profile event of a new thread: cProfile takes over from here
        profile = profiles[threading.current_thread().name] = cProfile.Profile(time.thread_time)
        profile.enable()

    threading.setprofile(start)
    start()

    def dump() -> None:
        for name, profile in list(profiles.items()):
            profile.snapshot_stats()  # not create_stats(): it disables the calling thread's profiler
            with open(f"{path}.{name.replace('/', '_')}", "wb") as out:
                marshal.dump(profile.stats, out)

    return dump


def serve(subject: str, port: int, sink: str) -> None:
    """Serve ``subject`` on 127.0.0.1:``port`` until SIGTERM/SIGINT; with ``BENCH_PROFILE=PATH`` in the
    environment, profile every thread and write the profiles to ``PATH.{subject}.{thread}`` at exit."""
    import uvicorn

    profile = os.environ.get("BENCH_PROFILE")
    if profile:  # before the app is built: an exporter's thread may start with it
        dump = _profiled(f"{profile}.{subject}")
        # uvicorn restores this handler after its graceful shutdown and raises SIGTERM again
        signal.signal(signal.SIGTERM, lambda *_: (dump(), sys.exit(0)))
    stats = None
    if subject == "ours":
        import galileo

        stats = galileo.stats
    app = _with_cpu_endpoint(_BUILDERS[subject](sink), stats)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _otlp_spans(body: bytes) -> int:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    request = ExportTraceServiceRequest()
    request.ParseFromString(body)
    return sum(len(scope.spans) for resource in request.resource_spans for scope in resource.scope_spans)


def _is_own_export(span: dict[str, Any]) -> bool:
    """Whether a Sentry span is sentry-sdk tracing its own envelope POST (its httplib integration does so
    in 3.0: an ``http.client`` span under the request's segment): not one of the request's spans."""
    op = span.get("op") or span.get("attributes", {}).get("sentry.op", {}).get("value")
    return bool(op == "http.client")


def _envelope_spans(body: bytes) -> tuple[int, int]:
    """(the request's spans, sentry-sdk's spans of its own POSTs) in a Sentry envelope: a header line, then
    items, each a header line and a payload; a ``transaction`` is one span with its ``spans``, a ``span``
    item (span streaming, sentry-sdk 3) a list of ``items``."""
    spans: list[dict[str, Any]] = []
    _, _, rest = body.partition(b"\n")
    while rest.strip():
        line, _, rest = rest.partition(b"\n")
        header = json.loads(line)
        if "length" in header:
            payload, rest = rest[: header["length"]], rest[header["length"] + 1 :]
        else:
            payload, _, rest = rest.partition(b"\n")
        if header.get("type") == "transaction":
            transaction = json.loads(payload)
            spans += [transaction, *transaction.get("spans", [])]
        elif header.get("type") == "span":
            spans += json.loads(payload).get("items", [])
    own = sum(map(_is_own_export, spans))
    return len(spans) - own, own


_DECODE: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "deflate": zlib.decompress}


class _SinkHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    counts: dict[str, dict[str, int]] = {}
    lock = threading.Lock()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: bytes = b"") -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        with self.lock:
            body = json.dumps(self.counts).encode()
        self._reply(200, body)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        subject = self.path.lstrip("/").split("/", 1)[0]
        try:
            decode = _DECODE.get(self.headers.get("content-encoding") or "")
            body = decode(body) if decode else body
            spans, own = (_otlp_spans(body), 0) if self.path.endswith("/v1/traces") else _envelope_spans(body)
        except Exception as exc:  # a body this sink cannot read: counted, the subject then shows fewer spans
            print(f"sink: unreadable body for {subject}: {exc!r}", file=sys.stderr)
            spans, own, subject = 0, 0, f"{subject}-unreadable"
        with self.lock:
            entry = self.counts.setdefault(subject, {"posts": 0, "spans": 0, "own": 0})
            entry["posts"] += 1
            entry["spans"] += spans
            entry["own"] += own
        self._reply(200)


def sink(port: int) -> None:
    """Count what the peers deliver on 127.0.0.1:``port`` until killed."""
    ThreadingHTTPServer(("127.0.0.1", port), _SinkHandler).serve_forever()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    if sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    else:
        sink(int(sys.argv[2]))
