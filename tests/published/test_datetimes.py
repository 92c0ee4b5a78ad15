"""``created_at`` as users of the published SDK pass it: naive ``datetime.now()`` (read as UTC), aware values
(converted), and odd values (never raising), through the public API to the collector."""

from __future__ import annotations

import datetime as dt
from typing import Any

from collector_process import CollectorProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galileo import GalileoLogger

UTC = dt.timezone.utc
# Moments the API's date-time can carry: years the wire format writes with four digits, once in UTC.
_SAFE = {"min_value": dt.datetime(1900, 1, 2), "max_value": dt.datetime(9998, 12, 30)}

naive = st.datetimes(**_SAFE)
aware = st.datetimes(**_SAFE, timezones=st.timezones())
fixed = st.builds(
    lambda moment, minutes: moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=minutes))),
    st.datetimes(**_SAFE),
    st.integers(-23 * 60 - 59, 23 * 60 + 59),
)
odd = st.one_of(
    st.none(),
    st.text(max_size=20),
    st.integers(),
    st.floats(),
    st.dates(),
    st.just(dt.datetime.min),
    st.just(dt.datetime.max.replace(tzinfo=dt.timezone(dt.timedelta(hours=-23)))),
    st.just(object()),
)


def _utc_text(moment: dt.datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.isoformat(timespec="microseconds") + "Z"


def _exact_utc_text(value: Any) -> str | None:
    """What the collector must store for ``value``; None where the SDK substitutes the current time (not a
    datetime, before the safe range, or past year 9999 once in UTC: 9999-12-31T23:59-23:00 is)."""
    if not isinstance(value, dt.datetime) or value.replace(tzinfo=None) < _SAFE["min_value"]:
        return None
    try:
        return _utc_text(value)
    except OverflowError:
        return None


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_naive_datetime_now_is_accepted_everywhere(collector_env: CollectorProcess) -> None:
    logger = GalileoLogger(project="published-datetimes", log_stream="now")
    now = dt.datetime.now()  # naive, as the published docs pass it
    trace = logger.start_trace("q", created_at=now)
    logger.add_workflow_span("w", created_at=now)
    logger.add_llm_span("q", "a", "m", created_at=now)
    logger.add_tool_span("t", created_at=dt.datetime.now())
    logger.conclude()
    logger.add_single_llm_span_trace("q", "a", "m", created_at=now)
    logger.flush(timeout=10)
    got = collector_env.wait_for(lambda: collector_env.trace(trace.id))
    assert got["created_at"] == _utc_text(now)
    workflow = got["spans"][0]
    assert [workflow["created_at"], *(s["created_at"] for s in workflow["spans"])][:2] == [_utc_text(now)] * 2


@settings(max_examples=1, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_any_created_at_reaches_the_collector(collector_env: CollectorProcess, data: st.DataObject) -> None:
    logger = GalileoLogger(project="published-datetimes", log_stream="property")
    expected: dict[str, str | None] = {}
    for _ in range(120):
        value: Any = data.draw(st.one_of(naive, aware, fixed, odd))
        trace = logger.start_trace("q", created_at=value)
        logger.add_workflow_span("w", created_at=value)
        logger.add_llm_span("q", "a", "m", created_at=value)
        logger.add_retriever_span("q", ["d"], created_at=value)
        logger.conclude()
        logger.conclude()
        expected[trace.id] = _exact_utc_text(value)
    assert logger.flush(timeout=30).pending == 0
    for trace_id, when in expected.items():
        got = collector_env.wait_for(lambda trace_id=trace_id: collector_env.trace(trace_id))
        workflow = got["spans"][0]
        moments = [got["created_at"], workflow["created_at"], *(s["created_at"] for s in workflow["spans"])]
        assert all(m.endswith("Z") and _parse(m).tzinfo is not None for m in moments)
        if when is not None:
            assert moments == [when] * 4
