"""OTLP/HTTP trace requests as the collector reads them: bytes in, :class:`OtelSpan` values out.

Decoded with ``opentelemetry-proto`` (the ``collector`` extra); nothing here touches the store.

* **Encodings.** ``Content-Type: application/x-protobuf`` (binary protobuf) or ``application/json``
  (OTLP/JSON: lowerCamelCase or original field names, unknown fields ignored, and trace and span ids as
  *hex* strings, not the base64 that protobuf's JSON mapping expects: they are converted before parsing).
  Any other type is :class:`OtlpError` 415. ``Content-Encoding`` may be ``gzip`` or ``deflate`` (what
  the OTel exporters send) or ``identity``; another is 415.
* **Bounds.** The compressed body was already bounded by the collector's body limit (``--max-body-mb``, see
  :mod:`galileo.collector._guard`); decompression stops as soon as the output passes that same limit
  (413), so a small zip bomb cannot make the collector hold more than a body it would take uncompressed.
  JSON goes through :func:`galileo.collector._body.parse_json` (depth limit); protobuf's own recursion
  limit bounds nesting; attribute values nested deeper than :data:`MAX_VALUE_DEPTH` are kept as text.
* **Errors.** A body that cannot be decoded is :class:`OtlpError` 400 with the reason. A span that cannot be
  stored (ids of the wrong length or all zero, a span that is its own parent, no start time, an end before
  its start or past 2**63 ns) is *rejected* with its reason, and the others are kept: :func:`decode_spans`
  returns both, and the route answers with OTLP's partial success (or 400 when every span was rejected).
* **Answers** (:func:`encode_response`, :func:`encode_status`): an ``ExportTraceServiceResponse`` on success
  and a ``google.rpc.Status`` on failure, as OTLP/HTTP specifies, in the request's encoding.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from galileo.collector._body import BodyError, parse_json

__all__ = [
    "JSON",
    "MAX_VALUE_DEPTH",
    "PROTOBUF",
    "OtelSpan",
    "OtlpError",
    "decode_spans",
    "encode_response",
    "encode_status",
    "media_type",
]

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
#: Attribute values (arrays, key-value lists) nested deeper than this are kept as their text.
MAX_VALUE_DEPTH: Final = 8
_MAX_REASONS = 3
_MAX_TIME_NS: Final = 2**63  # a duration must fit a signed 64-bit integer (SQLite's, the API's)
_WBITS: Final = {"gzip": 31, "x-gzip": 31, "deflate": 15}
_ID_FIELDS: Final = {"traceId", "trace_id", "spanId", "span_id", "parentSpanId", "parent_span_id"}
_SPANS_PATH: Final = (("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"), ("spans",))


class OtlpError(ValueError):
    """A request the collector refuses whole: ``status`` (400, 413, 415) and the reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@attrs.frozen
class OtelSpan:
    """One valid OTel span, flattened with its resource: ids in lower-case hex, times in Unix nanoseconds."""

    trace_id: str  #: 32 hex digits
    span_id: str  #: 16 hex digits
    parent_span_id: str | None  #: 16 hex digits, None for a root span
    name: str
    start_ns: int
    end_ns: int
    failed: bool  #: the span's status is ERROR
    status_message: str
    attributes: Mapping[str, Any]
    resource: Mapping[str, Any]


def media_type(content_type: str | None) -> str:
    """``Content-Type`` without parameters, lower case."""
    return (content_type or "").partition(";")[0].strip().lower()


def _decompressed(body: bytes, encoding: str, limit: int) -> bytes:
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in _WBITS:
        raise OtlpError(415, f"unsupported Content-Encoding {encoding[:40]!r} (gzip, deflate or none)")
    inflater = zlib.decompressobj(_WBITS[encoding])
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OtlpError(400, f"the body is not valid {encoding}: {exc}") from None
    if len(out) > limit or inflater.unconsumed_tail:
        raise OtlpError(413, f"the decompressed body is larger than {limit / (1024 * 1024):g} MiB")
    if not inflater.eof:
        raise OtlpError(400, f"the {encoding} body is truncated")
    return out


def _hex_to_base64(value: Any, name: str) -> Any:
    if not isinstance(value, str):
        return value
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise OtlpError(400, f"{name} must be hex in OTLP/JSON, got {value[:40]!r}") from None
    return base64.b64encode(raw).decode("ascii")


def _items(container: Any, names: tuple[str, ...]) -> Iterator[Any]:
    if isinstance(container, dict):
        for name in names:
            value = container.get(name)
            if isinstance(value, list):
                yield from value


def _json_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    try:
        value = parse_json(body)
    except BodyError as exc:
        raise OtlpError(400, str(exc)) from None
    if not isinstance(value, dict):
        raise OtlpError(400, "an OTLP/JSON body must be an object")
    for resource_spans in _items(value, _SPANS_PATH[0]):
        for scope_spans in _items(resource_spans, _SPANS_PATH[1]):
            for span in _items(scope_spans, _SPANS_PATH[2]):
                if not isinstance(span, dict):
                    continue
                for key in _ID_FIELDS & span.keys():
                    span[key] = _hex_to_base64(span[key], key)
                for link in _items(span, ("links",)):
                    if isinstance(link, dict):
                        for key in _ID_FIELDS & link.keys():
                            link[key] = _hex_to_base64(link[key], key)
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        json_format.ParseDict(value, request, ignore_unknown_fields=True)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as exc:
        raise OtlpError(400, f"not an OTLP/JSON ExportTraceServiceRequest: {str(exc)[:300]}") from None
    return request


def _protobuf_request(body: bytes) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except Exception as exc:  # DecodeError, or whatever else the parser raises on hostile bytes
        raise OtlpError(400, f"not a protobuf ExportTraceServiceRequest: {str(exc)[:300]}") from None
    return request


def _value(value: common_pb2.AnyValue, depth: int = 0) -> Any:
    """An attribute value as Python: text, bool, int, float, a list or a dict (bytes as hex)."""
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind in ("array_value", "kvlist_value") and depth >= MAX_VALUE_DEPTH:
        return json_format.MessageToJson(value, indent=None)[:4096]
    if kind == "array_value":
        return [_value(item, depth + 1) for item in value.array_value.values]
    if kind == "kvlist_value":
        return {item.key: _value(item.value, depth + 1) for item in value.kvlist_value.values}
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _attributes(items: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in items if item.key}


def _problem(span: trace_pb2.Span) -> str | None:
    """Why ``span`` cannot be stored, or None."""
    if len(span.trace_id) != 16 or not any(span.trace_id):
        return f"trace_id must be 16 bytes, not all zero (got {len(span.trace_id)} bytes)"
    if len(span.span_id) != 8 or not any(span.span_id):
        return f"span_id must be 8 bytes, not all zero (got {len(span.span_id)} bytes)"
    if len(span.parent_span_id) not in (0, 8):
        return f"parent_span_id must be empty or 8 bytes (got {len(span.parent_span_id)} bytes)"
    if span.parent_span_id == span.span_id:
        return "a span cannot be its own parent"
    if span.start_time_unix_nano == 0:
        return "start_time_unix_nano is missing"
    if span.end_time_unix_nano < span.start_time_unix_nano:
        return "end_time_unix_nano is before start_time_unix_nano"
    if span.end_time_unix_nano >= _MAX_TIME_NS:
        return "end_time_unix_nano is beyond the year 2262"
    return None


def decode_spans(
    body: bytes, content_type: str | None, content_encoding: str | None, limit: int
) -> tuple[list[OtelSpan], int, list[str]]:
    """The valid spans of an OTLP trace request, how many spans were rejected, and (some of) the reasons.

    Raises :class:`OtlpError` when the request as a whole cannot be read (see the module docstring).
    """
    media = media_type(content_type)
    if media not in (PROTOBUF, JSON):
        raise OtlpError(415, f"the body must be {PROTOBUF} or {JSON}, not {media[:60]!r}")
    raw = _decompressed(body, content_encoding or "", limit)
    request = _json_request(raw) if media == JSON else _protobuf_request(raw)
    spans: list[OtelSpan] = []
    rejected, reasons = 0, list[str]()
    for resource_spans in request.resource_spans:
        resource = _attributes(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                problem = _problem(span)
                if problem is not None:
                    rejected += 1
                    if len(reasons) < _MAX_REASONS:
                        reasons.append(f"span {span.span_id.hex() or '(no id)'}: {problem}")
                    continue
                spans.append(
                    OtelSpan(
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex() if any(span.parent_span_id) else None,
                        name=span.name,
                        start_ns=span.start_time_unix_nano,
                        end_ns=span.end_time_unix_nano,
                        failed=span.status.code == trace_pb2.Status.STATUS_CODE_ERROR,
                        status_message=span.status.message,
                        attributes=_attributes(span.attributes),
                        resource=resource,
                    )
                )
    return spans, rejected, reasons


def _encoded(message: Message, media: str) -> tuple[bytes, str]:
    if media == PROTOBUF:
        return message.SerializeToString(), PROTOBUF
    return json_format.MessageToJson(message, indent=None).encode("utf-8"), JSON


def encode_response(rejected: int, reasons: list[str], media: str) -> tuple[bytes, str]:
    """An ``ExportTraceServiceResponse`` (with ``partial_success`` when spans were rejected) and its type."""
    response = trace_service_pb2.ExportTraceServiceResponse()
    if rejected:
        response.partial_success.rejected_spans = rejected
        response.partial_success.error_message = "; ".join(reasons)
    return _encoded(response, media)


def encode_status(reason: str, media: str) -> tuple[bytes, str]:
    """A ``google.rpc.Status`` carrying ``reason`` (code 3, INVALID_ARGUMENT) and its content type."""
    return _encoded(status_pb2.Status(code=3, message=reason), media)
