"""The W3C Trace Context codec and the id mapping (galileo._w3c): pure functions, no network."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from galileo import _w3c

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_parses() -> None:
    parsed = _w3c.parse_traceparent(f"00-{TRACE}-{SPAN}-01")
    assert parsed == _w3c.TraceParent(TRACE, SPAN, 1)
    assert parsed is not None and parsed.sampled
    assert _w3c.parse_traceparent(f"00-{TRACE}-{SPAN}-00".encode()) == _w3c.TraceParent(TRACE, SPAN, 0)


def test_a_later_version_may_carry_more_fields() -> None:
    assert _w3c.parse_traceparent(f"cc-{TRACE}-{SPAN}-01-what-the-future-holds") == (TRACE, SPAN, 1)


@pytest.mark.parametrize(
    "value",
    [
        f"ff-{TRACE}-{SPAN}-01",  # version ff is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero parent id
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE[:-1]}-{SPAN}-01",  # wrong lengths
        f"00-{TRACE}0-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"0-{TRACE}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-0g",
        f"00-{TRACE}-{SPAN[:-1]}\u00e9-01",
        "",
        "00",
        "x" * 2000,
    ],
)
def test_a_malformed_traceparent_parses_to_none(value: str) -> None:
    assert _w3c.parse_traceparent(value) is None
    assert _w3c.parse_traceparent(value.encode("utf-8")) is None


def test_tracestate_members_and_our_member() -> None:
    ours = f"galileo={uuid.uuid4().hex}-{uuid.uuid4().hex}"
    members = _w3c.parse_tracestate(f"rojo=00f067aa0ba902b7 , {ours},congo=t61rcWkgMzE,acme@vendor=x")
    assert members is not None and [k for k, _ in members] == ["rojo", "galileo", "congo", "acme@vendor"]
    trace, parent = _w3c.galileo_member(members) or ("", "")
    assert uuid.UUID(trace).version == 4 and uuid.UUID(parent).version == 4
    # sent on: ours first, the others after, in order, without our old member
    out = _w3c.format_tracestate(trace, parent, members)
    assert out.split(",")[1:] == ["rojo=00f067aa0ba902b7", "congo=t61rcWkgMzE", "acme@vendor=x"]
    assert _w3c.galileo_member(_w3c.parse_tracestate(out)) == (trace, parent)


@pytest.mark.parametrize(
    "value",
    [
        "rojo",
        "Rojo=1",
        "rojo=1,rojo=2",
        "rojo=a,b",
        "=1",
        "rojo=1 =2",
        "rojo=",
        "k=" + "v" * 257,
        ",".join(f"k{i}=v" for i in range(33)),
        "rojo=\u00e9",
    ],
)
def test_a_malformed_tracestate_is_dropped_whole(value: str) -> None:
    assert _w3c.parse_tracestate(value) is None


def test_a_malformed_galileo_member_is_ignored() -> None:
    assert _w3c.galileo_member([("galileo", "nothex-nothex")]) is None
    assert _w3c.galileo_member([("galileo", f"{'a' * 32}-{'b' * 32}")]) is None  # not uuid4s


@given(st.uuids(version=4))
def test_our_ids_map_back_to_themselves(value: uuid.UUID) -> None:
    assert _w3c.trace_uuid(_w3c.otel_trace_id(str(value))) == str(value)


@given(st.binary(min_size=16, max_size=16), st.binary(min_size=8, max_size=8))
def test_any_otel_ids_map_to_uuid4s_deterministically(trace: bytes, span: bytes) -> None:
    mapped = _w3c.trace_uuid(trace.hex())
    assert uuid.UUID(mapped).version == 4 and str(uuid.UUID(mapped)) == mapped
    record = _w3c.span_uuid(trace.hex(), span.hex())
    assert uuid.UUID(record).version == 4 and record == _w3c.span_uuid(trace.hex(), span.hex())
    # at most the 6 fixed bits differ
    assert bin(int(trace.hex(), 16) ^ int(_w3c.uuid_hex(mapped), 16)).count("1") <= 6
