"""What the logger calls when a record concludes, and the export's counters: imports no OpenTelemetry.

A logger whose configuration exports to OTLP (``exporter`` ``otlp`` or ``both``, see
:mod:`galileo.config`) gets an :class:`Export` from :func:`export_for`; every other logger gets None and
pays one comparison. :meth:`Export.concluded` is called, under the logger's lock, with a record that has
just concluded (a trace, workflow or agent span at its ``conclude``; a leaf span as it is added, complete),
and the id of its parent. It works out the OTel trace id and parent span id (a few string operations),
and hands the record and those ids to the process's export pipeline (:mod:`galileo.otel._pipeline`, made
at the first record: it imports opentelemetry-sdk and starts its worker thread). Building the span and the
export happen on that worker thread, never on the caller's.

The ids (see :mod:`galileo._w3c`): the OTel trace id is the ``otel.trace_id`` in the record's metadata, or
its trace record's, when the trace came in from OpenTelemetry, else the trace uuid's 32 hex digits; the
span id is the first 16 hex digits of the record's id; the parent span id is that of the parent record,
or for a trace record under an OpenTelemetry parent, the ``otel.parent_span_id`` of its metadata.

The counters (``galileo.stats()``: ``otlp_exported``, ``otlp_queued``, ``otlp_dropped`` and
``otlp_dropped_by_reason``) account for every record handed over: it is queued, exported, or dropped with a
reason: ``queue_full`` (the pipeline's bounded queue was full when it came), ``export_failed`` (the
backend refused it or could not be reached, after the OTLP exporter's own retries), ``invalid_record`` (it
could not be made into a span) or ``shutdown`` (still queued when ``galileo.shutdown()`` gave up).
Drops are reported at WARNING on the ``galileo`` logger at most once per ``WARN_INTERVAL``, by the
pipeline's thread (or at a flush), never on a request's thread.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Final

from galileo import _w3c, schema
from galileo._sender._health import WARN_INTERVAL
from galileo.config import GalileoConfig

if TYPE_CHECKING:
    from galileo._trace_state import TraceState
    from galileo.otel._pipeline import Pipeline

__all__ = [
    "INSTALL_HINT",
    "Counts",
    "Export",
    "counts",
    "export_for",
    "flush",
    "kick",
    "reset",
    "shutdown",
    "stats",
]

_log = logging.getLogger("galileo")
_HEX_DIGITS: Final = "0123456789abcdef"

INSTALL_HINT: Final = (
    "OpenTelemetry export needs the optional packages opentelemetry-sdk and "
    "opentelemetry-exporter-otlp-proto-http: pip install 'galileo[otel]'"
)


class Counts:
    """Records handed to the export, exported, and dropped by reason (any thread, under one small lock)."""

    def __init__(self) -> None:
        self._lock = threading.Condition(threading.Lock())
        self.handed = 0
        self.exported = 0
        self.dropped: Counter[str] = Counter()
        self._dropped_total = 0
        self._unreported: Counter[str] = Counter()
        self._last_warning = -WARN_INTERVAL
        self._detail = ""

    def hand(self) -> None:
        with self._lock:
            self.handed += 1

    def admit(self, capacity: int) -> bool:
        """Hand one record over if fewer than ``capacity`` are queued (the batch being exported included)."""
        with self._lock:
            self.handed += 1
            return self.handed - self.exported - self._dropped_total <= capacity

    def settle(
        self, exported: int = 0, reason: str | None = None, dropped: int = 0, detail: str = ""
    ) -> None:
        """Count an outcome: ``exported`` records, or ``dropped`` ones for ``reason``."""
        with self._lock:
            self.exported += exported
            if reason is not None and dropped:
                self._drop(reason, dropped)
                if detail:
                    self._detail = detail
            self._lock.notify_all()

    def _drop(self, reason: str, n: int) -> None:
        self.dropped[reason] += n
        self._dropped_total += n
        self._unreported[reason] += n

    def queued(self) -> int:
        with self._lock:
            return self.handed - self.exported - self._dropped_total

    def wait_settled(self, timeout: float | None) -> int:
        """Wait until nothing is queued, at most ``timeout`` seconds; return what is still queued."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while True:
                left = self.handed - self.exported - self._dropped_total
                remaining = None if deadline is None else deadline - time.monotonic()
                if left <= 0 or (remaining is not None and remaining <= 0):
                    return max(0, left)
                self._lock.wait(remaining)

    def give_up(self, reason: str) -> int:
        """Count everything still queued as dropped for ``reason``; return how many."""
        with self._lock:
            left = self.handed - self.exported - self._dropped_total
            if left > 0:
                self._drop(reason, left)
            self._lock.notify_all()
            return max(0, left)

    def report(self, *, force: bool = False) -> None:
        """One WARNING with the drops since the last one, if the interval allows (or ``force``)."""
        with self._lock:
            now = time.monotonic()
            if not self._unreported or (not force and now - self._last_warning < WARN_INTERVAL):
                return
            self._last_warning = now
            what = ", ".join(f"{n} {reason}" for reason, n in sorted(self._unreported.items()))
            total = sum(self._unreported.values())
            detail = f" (last error: {self._detail})" if self._detail else ""
            self._unreported.clear()
            totals = self._snapshot()
        _log.warning(
            "galileo: OTLP export dropped %s record(s) since the last report: %s%s; totals %s",
            total,
            what,
            detail,
            totals,
        )

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return self._snapshot()

    def _snapshot(self) -> dict[str, Any]:
        dropped = self._dropped_total
        return {
            "otlp_exported": self.exported,
            "otlp_queued": max(0, self.handed - self.exported - dropped),
            "otlp_dropped": dropped,
            "otlp_dropped_by_reason": dict(self.dropped),
        }


counts = Counts()
_pipelines_lock = threading.Lock()
_pipelines: dict[str | None, Pipeline] = {}  # by endpoint (None: the OTEL_EXPORTER_OTLP_* variables decide)
_failed: dict[str | None, tuple[str, str]] = {}  # endpoints whose pipeline could not be made, and why


def _pipeline(endpoint: str | None) -> Pipeline | tuple[str, str]:
    """The pipeline of ``endpoint``, made by the first record; or why it could not be made (a drop reason
    and a message without secrets), remembered: a failed import or a bad ``OTEL_*`` setting stays so."""
    with _pipelines_lock:
        made = _pipelines.get(endpoint) or _failed.get(endpoint)
        if made is not None:
            return made
        try:
            module = importlib.import_module("galileo.otel._pipeline")
            pipeline: Pipeline = module.Pipeline(endpoint, counts)
        except ImportError:
            _failed[endpoint] = ("otel_not_installed", INSTALL_HINT)
            return _failed[endpoint]
        except Exception as error:  # e.g. an OTEL_EXPORTER_OTLP_* value the exporter rejects
            _log.debug("galileo: the OTLP exporter could not be made", exc_info=True)
            why = f"the OTLP exporter could not be made ({type(error).__name__})"
            _failed[endpoint] = ("export_unavailable", why)
            return _failed[endpoint]
        _pipelines[endpoint] = pipeline
    from galileo import _sender

    _sender.at_exit(kick)  # the exit drain exports what is queued (galileo._sender.shutdown)
    return pipeline


class Export:
    """One logger's way to the OTLP pipeline (see the module docstring)."""

    __slots__ = ("_destination", "_endpoint")

    def __init__(self, config: GalileoConfig) -> None:
        self._endpoint = config.otlp_endpoint
        self._destination = (
            config.project or config.project_id,
            config.log_stream or config.log_stream_id,
            config.experiment_id,
        )

    def concluded(self, record: schema.Record, parent_id: str | None, state: TraceState) -> None:
        """``record`` concluded under ``parent_id`` (None: a trace record) in the trace ``state`` holds."""
        if isinstance(record, schema.Trace):
            root: schema.Record | None = record
            trace_uuid = record.id
        else:
            first = state.stack[0] if state.stack else None
            root = first.record if first is not None else None
            trace_uuid = root.id if root is not None else state.upstream_trace_id or record.id
        meta = record.user_metadata
        trace_hex = _hex(meta.get(_w3c.TRACE_ID_KEY), 32)
        if trace_hex is None and root is not None and root is not record:
            trace_hex = _hex(root.user_metadata.get(_w3c.TRACE_ID_KEY), 32)
        if parent_id is not None:
            parent_hex: str | None = _w3c.otel_span_id(parent_id)
        else:
            parent_hex = _hex(meta.get(_w3c.PARENT_SPAN_ID_KEY), 16)
        self._hand(record, trace_hex or _w3c.otel_trace_id(trace_uuid), parent_hex, parent_id is None)

    def leaf(self, span: schema.Record, parent_id: str, state: TraceState) -> None:
        """A span added complete (with any children it was built with, which conclude with it)."""
        self.concluded(span, parent_id, state)
        for child in getattr(span, "spans", ()):
            self.leaf(child, span.id, state)

    def _hand(self, record: schema.Record, trace_hex: str, parent_hex: str | None, remote: bool) -> None:
        pipeline = _pipelines.get(self._endpoint) or _pipeline(self._endpoint)
        if isinstance(pipeline, tuple):  # it could not be made: counted, and reported (rate-limited)
            counts.hand()
            counts.settle(reason=pipeline[0], dropped=1, detail=pipeline[1])
            counts.report()
            return
        try:
            pipeline.offer(record, trace_hex, parent_hex, remote, self._destination)
        except Exception as error:  # never into the caller (offer counted the record handed over)
            counts.settle(reason="export_unavailable", dropped=1, detail=type(error).__name__)

    def flush(self, timeout: float | None) -> int:
        """Export what is queued, waiting at most ``timeout`` seconds; return the records still queued."""
        return flush(timeout)


def _hex(value: object, digits: int) -> str | None:
    """``value`` when it is an OTel id of ``digits`` lower-case hex digits, not all zero; else None."""
    if (
        isinstance(value, str)
        and len(value) == digits
        and value.strip(_HEX_DIGITS) == ""
        and value.strip("0")
    ):
        return value
    return None


def export_for(config: GalileoConfig) -> Export | None:
    """The export of a logger with ``config``; None when records go to Galileo only.

    The first one starts importing the pipeline's packages on a thread of its own, so that the first
    record (often on a request's thread) finds them imported, or nearly.
    """
    if config.exporter == "galileo":
        return None
    global _warming
    if _warming is None:
        _warming = threading.Thread(target=_warm, name="galileo-otlp-import", daemon=True)
        _warming.start()
    return Export(config)


_warming: threading.Thread | None = None


def _warm() -> None:
    with contextlib.suppress(ImportError):  # (the configuration said so already; records are counted)
        importlib.import_module("galileo.otel._pipeline").base_resource()


def kick() -> None:
    """Start exporting what every pipeline holds now, without waiting."""
    if counts.queued() > 0:
        for pipeline in list(_pipelines.values()):
            pipeline.kick()


def flush(timeout: float | None) -> int:
    """Export what every pipeline holds, waiting at most ``timeout`` seconds; return what is still queued."""
    kick()
    left = counts.wait_settled(timeout)
    counts.report(force=True)
    return left


def shutdown(timeout: float | None) -> int:
    """Flush (bounded), stop the pipelines (a record after this starts a new one), count what is left."""
    if not _pipelines:
        return 0
    flush(timeout)
    with _pipelines_lock:
        pipelines = list(_pipelines.values())
        _pipelines.clear()
    for pipeline in pipelines:
        pipeline.close()
    given_up = counts.give_up("shutdown")
    counts.report(force=True)
    return given_up


def stats() -> dict[str, Any]:
    """The export's counters, merged into ``galileo.stats()``."""
    return counts.snapshot()


def reset(timeout: float | None = 1.0) -> None:
    """Stop the pipelines and forget the counters (tests; see ``galileo._sender.reset``)."""
    global counts
    shutdown(timeout)
    _failed.clear()
    counts = Counts()


def _after_fork_in_child() -> None:
    """The parent's pipelines and their queued records stay the parent's; the child starts anew."""
    global counts, _pipelines_lock
    _pipelines.clear()
    _failed.clear()
    _pipelines_lock = threading.Lock()
    counts = Counts()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
