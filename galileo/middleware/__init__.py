"""Tracing for Starlette and FastAPI services: ``TracingMiddleware`` and ``get_request_logger()``.

Add the middleware, ask for the request's logger in a handler, and every span the handler logs lands under
the trace an upstream service started (its ``X-Galileo-Trace-ID`` / ``X-Galileo-Parent-ID`` headers), or
under a new trace named ``METHOD route`` when there are none::

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
:func:`galileo.propagation.tracing_headers`) so its spans land under yours.

No logger in hand? Functions decorated with :func:`galileo.log` join the request's trace as well, under the
current parent (see :mod:`galileo.decorator`).

- ``get_request_logger()`` returns the same distributed-mode logger for the whole request, across
  ``await``, gathered tasks and threadpool calls (sync endpoints), whatever GALILEO_MODE says.
- Without trace headers the logger opens its trace at the first span (``logger.trace_id`` is None before);
  ``logger.conclude()`` closes your spans, never that trace, which completes with the response's status.
  Code written as ``if logger.trace_id: ... else: logger.start_trace(...)`` works as well.
- After the response is sent, what the handler left open is concluded and sent: nothing is lost if the
  handler forgets to flush, and nothing delays the response.
- Malformed trace headers never fail a request (a rate-limited WARNING, and a new trace); an invalid
  configuration never does either (one ERROR, and a no-op logger).
- Websocket and lifespan scopes pass through untouched.
"""

from __future__ import annotations

from galileo.middleware._middleware import TracingMiddleware
from galileo.middleware._request import get_request_logger

__all__ = ["TracingMiddleware", "get_request_logger"]
