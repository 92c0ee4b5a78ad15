"""Tracing for Starlette and FastAPI services: ``TracingMiddleware`` and ``get_request_logger()``.

Add the middleware, ask for the request's logger in a handler, and every span the handler logs lands under
the trace an upstream service started (its ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID`` headers, or a
W3C ``traceparent`` from an OpenTelemetry-traced caller), or under a new trace named ``METHOD route`` when
there are none::

    from fastapi import FastAPI
    from galileo.middleware import TracingMiddleware, get_request_logger

    app = FastAPI()
    app.add_middleware(TracingMiddleware)

    @app.post("/ask")
    async def ask(question: str):
        logger = get_request_logger()
        logger.add_workflow_span(input=question, name="answer")
        ...
        logger.conclude(output=answer)
        logger.flush()          # in a request: enqueues and returns at once
        return {"answer": answer}

Calling another service? Pass ``headers=logger.get_tracing_headers()`` (or
:func:`galileo.propagation.tracing_headers`) so its spans land under yours: they carry ``X-Galileo-*`` for
services of ours and ``traceparent`` / ``tracestate`` for OpenTelemetry-traced ones.

OpenTelemetry: a request that comes in with a ``traceparent`` (and no X-Galileo headers) continues that
OpenTelemetry trace: its Galileo trace id is mapped from the OTel trace id (``galileo._w3c.trace_uuid``),
the request's trace record names the caller's span in ``otel.parent_span_id`` metadata, and every record
carries ``otel.trace_id`` / ``otel.span_id``; when OpenTelemetry's own ASGI middleware runs outside this one,
its server span is the parent instead. A ``traceparent`` whose ``tracestate`` holds our ``galileo=`` member
(an OpenTelemetry-only hop between two services of ours) continues our Galileo trace under that member's
record. See :mod:`galileo.propagation` and :mod:`galileo._incoming` for the rules.

No logger in hand? Functions decorated with :func:`galileo.log` join the request's trace as well, under the
current parent (see :mod:`galileo.decorator`).

- ``get_request_logger()`` returns the same distributed-mode logger for the whole request, across
  ``await``, gathered tasks and threadpool calls (sync endpoints), whatever GALILEO_MODE says.
- Without trace headers the logger opens its trace at the first span (``logger.trace_id`` is None before);
  ``logger.conclude()`` closes your spans, never that trace, which completes with the response's status.
  Code written as ``if logger.trace_id: ... else: logger.start_trace(...)`` works as well.
- After the response is sent, what the handler left open is concluded and sent: nothing is lost if the
  handler forgets to flush, and nothing delays the response.
- Malformed trace headers (X-Galileo, traceparent, tracestate) never fail a request (a rate-limited
  WARNING, and a new trace); an invalid configuration never does either (one ERROR, and a no-op logger).
  Headers are parsed when the request's logger is created: a request that logs nothing never parses them.
- Websocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

from galileo.middleware._middleware import TracingMiddleware
from galileo.middleware._request import get_request_logger

__all__ = ["TracingMiddleware", "get_request_logger"]
