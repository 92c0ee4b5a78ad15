"""Timestamps given by callers, made aware and UTC.

The published SDK sends the ``created_at`` it is given as it is: ``datetime.now()`` goes out naive, and the
Galileo API reads a naive value as UTC. Ours reads a naive value the same way and sends every timestamp with
its offset (``Z``), so bodies keep validating. An aware value is converted to UTC. What else a caller may
hand over is accepted where it has an obvious meaning (a ``date``: its midnight UTC; a number: seconds since
the epoch; an ISO 8601 string) and anything else (or a value out of range) is replaced by the current time
with a WARNING: nothing about a timestamp ever raises into the caller.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from typing import Any

__all__ = ["as_utc", "created_at_or_now"]

_log = logging.getLogger("galileo")
_UTC = _dt.timezone.utc


def as_utc(value: Any) -> _dt.datetime | None:
    """``value`` as an aware UTC datetime (naive means UTC), or None when it names no usable moment."""
    try:
        if isinstance(value, _dt.datetime):
            if value.tzinfo is _UTC:
                return value
            if value.tzinfo is None or value.utcoffset() is None:
                return value.replace(tzinfo=_UTC)
            return value.astimezone(_UTC)
        if isinstance(value, _dt.date):
            return _dt.datetime(value.year, value.month, value.day, tzinfo=_UTC)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                return None
            return _dt.datetime.fromtimestamp(value, _UTC)
        if isinstance(value, str):
            text = value.strip()
            if text.endswith(("z", "Z")):
                text = text[:-1] + "+00:00"
            return as_utc(_dt.datetime.fromisoformat(text))
    except Exception:  # OverflowError near datetime.min/max, a tzinfo that raises, an unparsable string
        return None
    return None


def created_at_or_now(value: Any, where: str) -> _dt.datetime:
    """:func:`as_utc` of a caller's ``created_at``, or now (with a WARNING) when it is not usable."""
    moment = as_utc(value)
    if moment is None:
        _log.warning(
            "galileo: %s: created_at %s is not a usable datetime; using the current time",
            where,
            type(value).__name__,
        )
        return _dt.datetime.now(_UTC)
    return moment
