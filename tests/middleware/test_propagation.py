"""The X-Galileo-* header parser (one for both middleware paths) and the outgoing-header helpers."""

from __future__ import annotations

import logging
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galileo import propagation
from galileo.propagation import parse_trace_headers

TRACE = str(uuid.uuid4())
PARENT = str(uuid.uuid4())


def h(*pairs: tuple[str, str | bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (name.lower().encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in pairs
    ]


@pytest.fixture(autouse=True)
def _no_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(propagation, "_warn", propagation._RateLimitedWarning(0.0))


def test_valid_pair() -> None:
    headers = h(("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Parent-ID", PARENT), ("accept", "*/*"))
    assert parse_trace_headers(headers) == (TRACE, PARENT)


def test_trace_without_parent_and_parent_equal_to_trace_attach_to_the_root() -> None:
    assert parse_trace_headers(h(("X-Galileo-Trace-ID", TRACE))) == (TRACE, TRACE)
    assert parse_trace_headers(h(("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Parent-ID", TRACE))) == (
        TRACE,
        TRACE,
    )


def test_upper_case_ids_are_normalised() -> None:
    headers = h(("X-Galileo-Trace-ID", TRACE.upper()), ("X-Galileo-Parent-ID", PARENT.upper()))
    assert parse_trace_headers(headers) == (TRACE, PARENT)


def test_no_headers() -> None:
    assert parse_trace_headers([]) == (None, None)
    assert parse_trace_headers(h(("x-other", "1"))) == (None, None)


@pytest.mark.parametrize(
    ("headers", "says"),
    [
        (h(("X-Galileo-Trace-ID", "not-a-uuid")), "is not a UUID version 4"),
        (h(("X-Galileo-Trace-ID", str(uuid.uuid1()))), "is not a UUID version 4"),
        (h(("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Parent-ID", "42")), "X-Galileo-Parent-ID '42'"),
        (h(("X-Galileo-Parent-ID", PARENT)), "without X-Galileo-Trace-ID"),
        (h(("X-Galileo-Trace-ID", TRACE + "x" * 100)), "bytes (more than 64)"),
        (h(("X-Galileo-Trace-ID", "é".encode() * 18)), "is not ASCII"),
        (h(("X-Galileo-Trace-ID", TRACE), ("X-Galileo-Trace-ID", TRACE)), "sent more than once"),
        (
            h(
                ("X-Galileo-Trace-ID", TRACE),
                ("X-Galileo-Parent-ID", PARENT),
                ("X-Galileo-Parent-ID", PARENT),
            ),
            "once",
        ),
    ],
)
def test_malformed_context_is_ignored_with_a_warning(
    headers: list[tuple[bytes, bytes]], says: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="galileo"):
        assert parse_trace_headers(headers) == (None, None)
    (record,) = caplog.records
    assert says in record.getMessage()
    assert "a new trace starts" in record.getMessage()


def test_warnings_are_rate_limited_and_count_what_they_skipped(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    warn = propagation._RateLimitedWarning(3600.0)
    monkeypatch.setattr(propagation, "_warn", warn)
    with caplog.at_level(logging.WARNING, logger="galileo"):
        for _ in range(50):
            parse_trace_headers(h(("X-Galileo-Trace-ID", "bad")))
        parse_trace_headers(h(("X-Galileo-Parent-ID", PARENT)))  # another kind: its own budget
    assert len(caplog.records) == 2
    warn.interval = 0.0
    with caplog.at_level(logging.WARNING, logger="galileo"):
        parse_trace_headers(h(("X-Galileo-Trace-ID", "bad")))
    assert "(49 more like it not logged)" in caplog.records[-1].getMessage()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(
        st.tuples(st.sampled_from([b"x-galileo-trace-id", b"x-galileo-parent-id", b"x-other"]), st.binary())
    )
)
def test_never_raises_and_only_returns_valid_uuid4s(headers: list[tuple[bytes, bytes]]) -> None:
    trace, parent = parse_trace_headers(headers)
    assert (trace is None) == (parent is None)
    for value in (trace, parent):
        if value is not None:
            assert uuid.UUID(value).version == 4 and value == value.lower()


def test_tracing_headers_outside_a_request_are_empty() -> None:
    assert propagation.tracing_headers() == {}
    headers: dict[str, str] = {"accept": "*/*"}
    assert propagation.inject_headers(headers) == {"accept": "*/*"}
