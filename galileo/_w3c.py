"""W3C Trace Context (``traceparent``, ``tracestate``) and the mapping between OpenTelemetry's ids and ours.

A leaf: it parses and writes header values and maps ids; it knows no logger, no request and no OpenTelemetry
package. Everything here is pure and never raises on input from the network (a malformed value parses to
None; the caller warns).

**traceparent** (https://www.w3.org/TR/trace-context/#traceparent-header): ``version-traceid-parentid-flags``
in lower-case hex, 2-32-16-2 digits. Version ``ff`` is invalid; version ``00`` has exactly these four fields;
a later version may append fields after a ``-`` (kept out: we read the first four). An all-zero trace id or
parent id, a wrong length, upper case, or any other character makes the whole header invalid.

**tracestate** (https://www.w3.org/TR/trace-context/#tracestate-header): up to 32 ``key=value`` members
separated by commas (optional spaces and tabs around them). Keys are ``[a-z0-9][a-z0-9_\\-*/]{0,255}`` or
``tenant@system``; values are 1-256 printable ASCII characters other than ``,`` and ``=`` (not ending in a
space). An invalid tracestate is dropped whole (the traceparent stays valid). Our own member is
:data:`STATE_KEY` (``galileo``); its value is the Galileo trace id and parent record id, 32 hex digits each,
joined by ``-``: a service of ours reached through an OpenTelemetry-only hop from another of ours continues
that Galileo trace under that record. When we send a tracestate, our member comes first (the spec: a member
a service changes moves to the front) and the others follow in order, 32 at most.

**The id mapping.** Galileo's ingest API takes UUID version 4 ids only, which fixes 6 of a uuid's 128 bits
(the version nibble, hex digit 13, is ``4``; the variant, the top two bits of hex digit 17, is ``10``).

- An OTel trace id (32 hex digits) maps to the uuid with the same digits, the version nibble set to ``4``
  and the variant bits to ``10`` (:func:`trace_uuid`). A uuid4's own 32 hex digits map back to that very
  uuid, so the OTel trace id of a trace that started with us is simply its uuid without dashes
  (:func:`otel_trace_id`), and a trace that went out to OpenTelemetry and came back keeps its id.
- An OTel span id (16 hex digits) maps, within its trace, to the uuid whose first 16 hex digits are the span
  id's and whose last 16 are the trace id's, with the same 6 bits set (:func:`span_uuid`): deterministic, so
  every service and the collector derive the same record id for one span.
- The OTel span id of one of our records is the first 16 hex digits of its uuid (:func:`otel_span_id`). So
  an OTel span whose parent is one of our records names a parent whose uuid starts with those digits.

Six bits of an OTel id are lost in the mapping, so records carry the original ids in their metadata
(:data:`TRACE_ID_KEY`, :data:`SPAN_ID_KEY`, :data:`PARENT_SPAN_ID_KEY`), and joins go either way.
"""

from __future__ import annotations

import re
from typing import Final, NamedTuple

__all__ = [
    "PARENT_SPAN_ID_KEY",
    "SPAN_ID_KEY",
    "STATE_KEY",
    "TRACEPARENT",
    "TRACESTATE",
    "TRACE_ID_KEY",
    "TraceParent",
    "format_traceparent",
    "format_tracestate",
    "galileo_member",
    "otel_span_id",
    "otel_trace_id",
    "parse_traceparent",
    "parse_tracestate",
    "span_uuid",
    "trace_uuid",
    "uuid_hex",
]

TRACEPARENT: Final = "traceparent"
TRACESTATE: Final = "tracestate"
#: Our member of ``tracestate``.
STATE_KEY: Final = "galileo"
#: Metadata keys holding a record's OpenTelemetry ids (32 / 16 lower-case hex digits).
TRACE_ID_KEY: Final = "otel.trace_id"
SPAN_ID_KEY: Final = "otel.span_id"
PARENT_SPAN_ID_KEY: Final = "otel.parent_span_id"

#: The most members a tracestate may have, and the longest one we read (the spec's limits).
MAX_MEMBERS: Final = 32
MAX_TRACESTATE_CHARS: Final = 8192  # a header longer than this is not looked at (the spec advises 512+)

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?", re.DOTALL)
_KEY = re.compile(r"[a-z0-9][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}")
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_HEX32 = re.compile(r"[0-9a-f]{32}")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class TraceParent(NamedTuple):
    """A valid ``traceparent``: the OTel trace id (32 hex), the parent span id (16 hex), the flags (0-255)."""

    trace_id: str
    span_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def parse_traceparent(value: str | bytes | None) -> TraceParent | None:
    """The traceparent ``value`` holds, or None when it is missing or invalid by the W3C rules."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > 512 or not value.isascii():
            return None
        value = value.decode("ascii")
    if len(value) > 512:
        return None
    match = _TRACEPARENT.fullmatch(value.strip(" \t"))
    if match is None:
        return None
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return TraceParent(trace_id, span_id, int(flags, 16))


def format_traceparent(trace_id: str, span_id: str, flags: int = 1) -> str:
    """A version-00 ``traceparent`` (``flags`` 1: sampled)."""
    return f"00-{trace_id}-{span_id}-{flags & 0xFF:02x}"


def parse_tracestate(value: str | bytes | None) -> list[tuple[str, str]] | None:
    """The members of a tracestate, in order; None when missing or invalid (then it is dropped whole)."""
    if value is None:
        return None
    if isinstance(value, bytes):
        if len(value) > MAX_TRACESTATE_CHARS or not value.isascii():
            return None
        value = value.decode("ascii")
    if len(value) > MAX_TRACESTATE_CHARS:
        return None
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for part in value.split(","):
        part = part.strip(" \t")
        if not part:
            continue  # empty list members are allowed
        key, sep, member_value = part.partition("=")
        if not sep or _KEY.fullmatch(key) is None or _VALUE.fullmatch(member_value) is None or key in seen:
            return None
        seen.add(key)
        members.append((key, member_value))
    if not members or len(members) > MAX_MEMBERS:
        return None
    return members


def galileo_member(members: list[tuple[str, str]] | None) -> tuple[str, str] | None:
    """Our member's ``(trace uuid, parent uuid)``, when the tracestate has a valid one."""
    for key, value in members or ():
        if key == STATE_KEY:
            trace_hex, sep, parent_hex = value.partition("-")
            if sep and _HEX32.fullmatch(trace_hex) and _HEX32.fullmatch(parent_hex):
                trace, parent = _dashed(trace_hex), _dashed(parent_hex)
                if trace == trace_uuid(trace_hex) and parent == trace_uuid(parent_hex):  # (both uuid4)
                    return trace, parent
            return None
    return None


def format_tracestate(
    trace_id: str | None, parent_id: str | None, members: list[tuple[str, str]] | None = None
) -> str:
    """A tracestate with our member (when both ids are given) first, then ``members`` but ours, 32 at most."""
    out = [f"{STATE_KEY}={uuid_hex(trace_id)}-{uuid_hex(parent_id)}"] if trace_id and parent_id else []
    out.extend(f"{key}={value}" for key, value in members or () if key != STATE_KEY)
    return ",".join(out[:MAX_MEMBERS])


# -- ids --------------------------------------------------------------------------------------------------
def uuid_hex(uuid: str | None) -> str:
    """A uuid's 32 hex digits, without dashes."""
    return (uuid or "").replace("-", "")


def _dashed(hex32: str) -> str:
    return f"{hex32[:8]}-{hex32[8:12]}-{hex32[12:16]}-{hex32[16:20]}-{hex32[20:]}"


def _as_uuid4(hex32: str) -> str:
    """``hex32`` with the version nibble set to 4 and the variant bits to 10, dashed."""
    variant = "89ab"[int(hex32[16], 16) & 0x3]
    return _dashed(f"{hex32[:12]}4{hex32[13:16]}{variant}{hex32[17:]}")


def trace_uuid(otel_trace_id: str) -> str:
    """The Galileo trace id of an OTel trace id (32 hex digits); a uuid4's own digits give that uuid."""
    return _as_uuid4(otel_trace_id.lower())


def span_uuid(otel_trace_id: str, otel_span_id: str) -> str:
    """The Galileo record id of an OTel span (16 hex digits) in an OTel trace (32 hex digits)."""
    return _as_uuid4(f"{otel_span_id.lower()}{otel_trace_id.lower()[16:]}")


def otel_trace_id(trace_uuid_: str) -> str:
    """The OTel trace id of a trace that started with us: its uuid's 32 hex digits."""
    return uuid_hex(trace_uuid_)


def otel_span_id(record_uuid: str) -> str:
    """The OTel span id of one of our records: the first 16 hex digits of its uuid."""
    return uuid_hex(record_uuid)[:16]
