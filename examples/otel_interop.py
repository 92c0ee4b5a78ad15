"""Three services, two tracing worlds, one trace: OpenTelemetry → ours → OpenTelemetry.

Run it with ``pip install -e '.[demo,otel]' && python examples/otel_interop.py``. Like ``demo.py`` it uses
the local collector at http://localhost:8088 (started here with a throw-away database unless one is
running), and serves three apps on uvicorn:

- ``frontend``: a Starlette app traced with OpenTelemetry only (no galileo), exporting OTLP/HTTP to the
  collector's ``/v1/traces``. It calls ``answerer`` with a W3C ``traceparent``.
- ``answerer``: ours, ``TracingMiddleware`` and ``get_request_logger()``. The request arrives with only a
  ``traceparent``: its trace continues the frontend's OTel trace (the Galileo trace id is the OTel trace id
  mapped to a uuid4, see ``galileo._w3c``). It calls ``ranker`` with ``tracing_headers()``, which carry
  ``traceparent`` next to ``X-Galileo-*``.
- ``ranker``: OpenTelemetry only again; its span's parent is the answerer's workflow span.

The collector stores the OTel spans beside ours and joins them by id, so the viewer shows one trace with all
three services. The script prints that trace as ``galileo-collector tree`` would, and its viewer URL.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import requests
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import galileo
from galileo.middleware import TracingMiddleware, get_request_logger
from galileo.propagation import tracing_headers

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from demo import local_collector, print_trace
from two_services import serve

PROJECT = "otel-demo"


def _otel(service: str, collector: str) -> Any:
    """A tracer of this service's own, exporting OTLP/HTTP to the collector (no global provider)."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    resource = Resource.create(
        {"service.name": service, "galileo.project.name": PROJECT, "galileo.logstream.name": service}
    )
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{collector}/v1/traces")))
    return provider.get_tracer(service)


def make_ranker_app(collector: str) -> Starlette:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, w3c = _otel("ranker", collector), TraceContextTextMapPropagator()

    async def rank(request: Request) -> JSONResponse:
        upstream = w3c.extract(dict(request.headers))
        with tracer.start_as_current_span("POST /rank", context=upstream, kind=SpanKind.SERVER) as span:
            span.set_attribute("input.value", "Io, Europa, Ganymede, Callisto")
            span.set_attribute("output.value", "Ganymede")
            return JSONResponse({"best": "Ganymede"})

    return Starlette(routes=[Route("/rank", rank, methods=["POST"])])


def make_answerer_app(ranker: str) -> Starlette:
    async def answer(request: Request) -> JSONResponse:
        logger = get_request_logger()
        question = request.query_params.get("q", "")
        logger.add_workflow_span(input=question, name="answer")
        best = requests.post(f"{ranker}/rank", headers=tracing_headers(), timeout=10).json()["best"]
        said = f"{best} is the largest"
        logger.add_llm_span(input=question, output=said, model="demo-model", name="compose")
        logger.conclude(output=said)
        return JSONResponse({"answer": said, "trace_id": logger.trace_id})

    app = Starlette(routes=[Route("/ask", answer)])
    app.add_middleware(TracingMiddleware, project=PROJECT, log_stream="answerer")
    return app


def make_frontend_app(answerer: str, collector: str) -> Starlette:
    from opentelemetry.trace import SpanKind
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    tracer, w3c = _otel("frontend", collector), TraceContextTextMapPropagator()

    async def ask(request: Request) -> JSONResponse:
        question = request.query_params.get("q", "")
        with tracer.start_as_current_span("GET /ask", kind=SpanKind.SERVER) as span:
            span.set_attribute("input.value", question)
            headers: dict[str, str] = {}
            w3c.inject(headers)  # the current span's traceparent
            body = requests.get(f"{answerer}/ask", params={"q": question}, headers=headers, timeout=10).json()
            span.set_attribute("output.value", body["answer"])
            return JSONResponse(body)

    return Starlette(routes=[Route("/ask", ask)])


def main() -> int:
    with local_collector() as url:
        with (
            serve(make_ranker_app(url)) as ranker,
            serve(make_answerer_app(ranker)) as answerer,
            serve(make_frontend_app(answerer, url)) as frontend,
        ):
            asked = {"q": "Which moon is largest?"}
            body = requests.get(f"{frontend}/ask", params=asked, timeout=30).json()
        galileo.shutdown(timeout=15)  # deliver what the answerer queued
        print(f"frontend answered: {body['answer']}")
        print_trace(url, body["trace_id"])
        print(f"\nin the viewer: {url}/traces/{body['trace_id']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
