"""The collector's OTLP/HTTP trace endpoints: ``POST /otel/traces`` and ``POST /v1/traces``.

``/otel/traces`` is Galileo's path: the published SDK's ``GalileoOTLPExporter`` posts there with the headers
``Galileo-API-Key``, ``project`` and ``logstream`` (or ``experimentid``), which name where the spans go
unless their attributes say otherwise. ``/v1/traces`` is OpenTelemetry's default path, for any OTLP/HTTP
exporter: the spans' ``galileo.project.name`` and ``galileo.logstream.name`` resource (or span) attributes
name where they go, else project ``default``, log stream ``default`` (see
:mod:`galileo.collector._otlp_records`, which maps and stores the spans; :mod:`galileo.collector._otlp`
decodes the bodies).

Safety is the collector's, as for every write (:mod:`galileo.collector._guard`): Host and Origin checks, and
with an API key, credentials before the body is read: ``Galileo-API-Key: KEY``, ``Authorization: Bearer KEY``
(what OTel exporters configured with a bearer token send) or a token of this collector. Without an API key
these routes are open like the rest of the collector's own API (an OTel exporter has no login step). The
body's size limit holds for the body as sent *and* decompressed.

Answers follow OTLP/HTTP, in the request's encoding (protobuf or JSON): 200 with an
``ExportTraceServiceResponse`` (``partial_success`` counting the rejected spans, with their reasons, when
some spans were stored and others not), 400 with a ``google.rpc.Status`` naming the reason when the body
cannot be decoded or every span in it was rejected, 413 when it decompresses past the limit, 415 for a
content type or encoding other than protobuf/JSON and gzip/deflate.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from galileo.collector._guard import Access
from galileo.collector.store import Store

__all__ = ["OTLP_PATHS", "otlp_routes"]

logger = logging.getLogger("galileo.collector")

GALILEO_PATH = "/otel/traces"
OTEL_PATH = "/v1/traces"
#: The OTLP routes; they take protobuf as well as JSON (the guard's JSON-only rule does not apply).
OTLP_PATHS = frozenset({GALILEO_PATH, OTEL_PATH})
#: Bodies larger than this are decoded and stored on a worker thread (as the app does for its own writes).
_OFF_LOOP_BYTES = 256 * 1024

Endpoint = Callable[[Request], Awaitable[Response]]


class _Otlp:
    def __init__(self, store: Store, access: Access) -> None:
        self.store = store
        self.limit = access.max_body_bytes

    def _export(self, body: bytes, headers: dict[str, str], galileo: bool) -> Response:
        try:  # opentelemetry-proto (the collector extra), imported when OTLP is first used
            from galileo.collector import _otlp, _otlp_records
        except ImportError as exc:
            detail = f"OTLP needs opentelemetry-proto: pip install 'galileo[collector]' ({exc})"
            return JSONResponse({"detail": detail}, status_code=501)
        media = _otlp.media_type(headers.get("content-type"))
        reply = media if media == _otlp.PROTOBUF else _otlp.JSON
        try:
            spans, rejected, reasons = _otlp.decode_spans(
                body, headers.get("content-type"), headers.get("content-encoding"), self.limit
            )
            if rejected and not spans:
                raise _otlp.OtlpError(400, f"every span was rejected ({rejected}): " + "; ".join(reasons))
        except _otlp.OtlpError as exc:
            logger.info("OTLP request refused (%d): %s", exc.status, exc.reason)
            content, content_type = _otlp.encode_status(exc.reason, reply)
            return Response(content, status_code=exc.status, media_type=content_type)
        names = {
            key: headers.get(key) if galileo else None for key in ("project", "logstream", "experimentid")
        }
        stored = _otlp_records.store_spans(
            self.store,
            spans,
            project=names["project"],
            log_stream=names["logstream"],
            experiment=bool(names["experimentid"]),
        )
        if rejected:
            logger.info("OTLP: %d spans rejected: %s", rejected, "; ".join(reasons))
        path = GALILEO_PATH if galileo else OTEL_PATH
        logger.debug("OTLP %s: %d spans, %d records new", path, len(spans), stored)
        content, content_type = _otlp.encode_response(rejected, reasons, reply)
        return Response(content, media_type=content_type)

    def endpoint(self, *, galileo: bool) -> Endpoint:
        async def export(request: Request) -> Response:
            body = await request.body()
            headers = {key: request.headers[key] for key in request.headers}
            if len(body) > _OFF_LOOP_BYTES:
                return await run_in_threadpool(self._export, body, headers, galileo)
            return self._export(body, headers, galileo)

        return export


def otlp_routes(store: Store, access: Access, write: Callable[[Endpoint], Endpoint]) -> list[Route]:
    """The OTLP routes over ``store``; ``write`` wraps each like the app's other writes (its request log)."""
    otlp = _Otlp(store, access)
    return [
        Route(GALILEO_PATH, write(otlp.endpoint(galileo=True)), methods=["POST"]),
        Route(OTEL_PATH, write(otlp.endpoint(galileo=False)), methods=["POST"]),
    ]
