"""Two services, one trace: a FastAPI gateway calls a Starlette retriever, passing the trace along.

The gateway's handler opens a workflow span, calls the retriever with ``logger.get_tracing_headers()``, and
logs the answer; the retriever's spans land under the gateway's workflow span, in the same trace, each
service in its own log stream of one project. Used by the README demo (``examples/demo.py``) and the tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from galileo.middleware import TracingMiddleware, get_request_logger

PROJECT = "demo"

_DOCUMENTS = [
    "In 1609 Galileo built a telescope that magnified twenty times.",
    "With it he saw four moons orbiting Jupiter.",
]


def make_retriever_app(*, project: str = PROJECT, log_stream: str = "retriever") -> Starlette:
    """The downstream service: finds documents for a question."""

    async def search(request: Request) -> JSONResponse:
        question = request.query_params.get("q", "")
        logger = get_request_logger()  # continues the gateway's trace, from the request's headers
        logger.add_workflow_span(input=question, name="retriever-service")
        words = set(question.lower().split())
        found = [doc for doc in _DOCUMENTS if words & set(doc.lower().split())] or _DOCUMENTS[:1]
        logger.add_retriever_span(input=question, output=found, name="vector-search")
        logger.conclude(output=f"{len(found)} docs")
        logger.flush()  # inside a request: enqueues and returns at once
        return JSONResponse({"documents": found})  # a Starlette endpoint returns a Response, not a dict

    return Starlette(
        routes=[Route("/search", search)],
        middleware=[Middleware(TracingMiddleware, project=project, log_stream=log_stream)],
    )


def make_gateway_app(retriever_url: str, *, project: str = PROJECT, log_stream: str = "gateway") -> FastAPI:
    """The upstream service: answers a question with the retriever's documents."""
    app = FastAPI()
    app.add_middleware(TracingMiddleware, project=project, log_stream=log_stream)

    @app.get("/ask")
    def ask(q: str) -> dict[str, object]:  # a sync endpoint: FastAPI runs it in a threadpool
        logger = get_request_logger()
        logger.add_workflow_span(input=q, name="gateway-workflow")
        answer = requests.get(
            f"{retriever_url}/search", params={"q": q}, headers=logger.get_tracing_headers(), timeout=10
        )
        documents = answer.json()["documents"]
        started = time.perf_counter_ns()
        reply = f"Galileo: {documents[0]}"  # where a real service would call its model
        logger.add_llm_span(
            input=[{"role": "system", "content": "\n".join(documents)}, {"role": "user", "content": q}],
            output={"role": "assistant", "content": reply},
            model="demo-llm",
            num_input_tokens=40,
            num_output_tokens=12,
            total_tokens=52,
            duration_ns=time.perf_counter_ns() - started,  # measured here: the retriever call came between
            name="compose-answer",
        )
        logger.conclude(output=reply)
        logger.flush()
        return {"answer": reply, "trace_id": logger.trace_id}

    return app


@contextlib.contextmanager
def serve(app: Any, *, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a loopback port, in a background thread; yield its URL."""
    import uvicorn

    if port is None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"uvicorn did not start on port {port}")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
