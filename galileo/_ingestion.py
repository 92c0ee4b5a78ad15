"""``ingestion_hook``: a batch logger's traces handed to the caller's function instead of the API.

A logger built with ``ingestion_hook=`` (batch mode only, as published) gives each flush's traces to that
function as a :class:`TracesIngestRequest` (the published request's attributes: ``traces``,
``log_stream_id``, ``experiment_id``, ``session_id``, ...); the hook may change them and send them on with
``logger.ingest_traces(request)``, or do anything else with them. The hook may be a plain function or a
coroutine function.

Which thread calls it: one thread of the process, ``galileo-ingestion-hook``, in the order flushes happened;
never the flushing thread, so a hook that makes network calls never runs on a request handler's thread or an
event loop's. A coroutine hook runs to completion in its own event loop on that thread. :meth:`flush` waits
for the hook (bounded by its ``timeout``) where it waits for delivery (off requests and event loops); inside
a request it hands the batch over and returns. A hook that raises never reaches the caller: the error is
logged (its type only: a message could carry the records' data), the batch's records are counted as dropped
(``galileo.stats()``, reason ``ingestion_hook``), and a flush that waited passes it to its ``on_error``.

The thread's queue is bounded (``GALILEO_QUEUE_SIZE`` traces, for all hook loggers together): a batch past
the bound is counted as dropped (reason ``ingestion_hook``). Where no thread can be started any more (at
interpreter exit on Python 3.12+), a batch still to hand over runs its hook on the exiting thread.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeAlias

import attrs

from galileo import schema
from galileo.config import GalileoConfig

__all__ = ["IngestionHook", "TracesIngestRequest", "drain", "report", "submit"]

_log = logging.getLogger("galileo")

IngestionHook: TypeAlias = Callable[["TracesIngestRequest"], "Awaitable[None] | None"]


@attrs.define(kw_only=True)
class TracesIngestRequest:
    """One batch of traces, as the published ``TracesIngestRequest`` names its attributes."""

    traces: list[schema.Trace]
    log_stream_id: str | None = None
    experiment_id: str | None = None
    session_id: str | None = None
    session_external_id: str | None = None
    is_complete: bool | None = True
    logging_method: str = "api_direct"
    client_version: str | None = None
    reliable: bool = True

    def model_dump(self, *, mode: str = "json", exclude_none: bool = False) -> dict[str, Any]:
        """The request body this batch would be sent as (``POST /v2/projects/{pid}/traces``), as a dict."""
        body = schema.traces_ingest_body(
            self.traces,
            log_stream_id=self.log_stream_id,
            experiment_id=self.experiment_id,
            is_complete=True if self.is_complete is None else self.is_complete,
        )
        body.update(
            session_id=self.session_id,
            session_external_id=self.session_external_id,
            logging_method=self.logging_method,
            client_version=self.client_version,
            reliable=self.reliable,
        )
        if exclude_none:
            return {k: v for k, v in body.items() if v is not None}
        return body


class HookJob:
    """One batch handed to a hook: ``done`` once the hook returned or raised (``error``)."""

    __slots__ = ("config", "done", "error", "hook", "records", "request", "size")

    def __init__(
        self, hook: IngestionHook, request: TracesIngestRequest, records: int, config: GalileoConfig
    ) -> None:
        self.hook = hook
        self.request = request
        self.records = records
        self.config = config
        self.size = len(request.traces)  # its room in the hook thread's queue (the hook may change traces)
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        """Call the hook (never raises), then mark the job done."""
        self.call()
        self.done.set()

    def call(self) -> None:
        """Call the hook; what it raises is logged, counted and kept in ``error``."""
        try:
            result = self.hook(self.request)
            if inspect.isawaitable(result):
                asyncio.run(_awaited(result))
        except BaseException as exc:  # a hook's SystemExit or KeyboardInterrupt must not end the thread
            self.error = exc
            _log.warning(
                "galileo: ingestion_hook raised %s; %d records not ingested", type(exc).__name__, self.records
            )
            _count_dropped(self.config, self.records)


async def _awaited(result: Awaitable[Any]) -> None:
    await result


_jobs: queue.SimpleQueue[HookJob] = queue.SimpleQueue()
_pending: list[HookJob] = []  # jobs not done yet, for the exit drain
_queued = 0  # traces of the jobs in _pending (bounded by the submitting logger's queue_size)
_lock = threading.Lock()
_thread: threading.Thread | None = None


def _run() -> None:
    global _queued
    while True:
        job = _jobs.get()
        job.call()
        with _lock:  # its room is free before it is done: a flush that waited for it may submit at once
            if job in _pending:
                _pending.remove(job)
                _queued -= job.size
        job.done.set()


def submit(hook: IngestionHook, request: TracesIngestRequest, records: int, config: GalileoConfig) -> HookJob:
    """Hand ``request`` to ``hook`` on the hook thread (started on first use, and again after a fork).

    The hook thread holds at most ``config.queue_size`` traces (``GALILEO_QUEUE_SIZE``, over all loggers): a
    batch past that is refused, its records counted as dropped (reason ``ingestion_hook``, in the sender's
    rate-limited WARNING). When the thread cannot be started (at interpreter exit on Python 3.12+), the hook
    runs here, on the calling (exiting) thread, unless that is a request's or an event loop's: then the
    batch is counted as dropped.
    """
    global _thread, _queued
    job = HookJob(hook, request, records, config)
    with _lock:
        if _pending and _queued + job.size > config.queue_size:
            refused = True
        else:
            refused = False
            if _thread is None or not _thread.is_alive():
                _thread = threading.Thread(target=_run, name="galileo-ingestion-hook", daemon=True)
                try:
                    _thread.start()
                except RuntimeError:  # "can't create new thread at interpreter shutdown"
                    _thread = None
            if _thread is not None:
                _pending.append(job)
                _queued += job.size
                _jobs.put(job)
                return job
    if refused:
        _count_dropped(config, records)
        job.done.set()
        return job
    from galileo.logger import _must_not_block  # (galileo.logger imports this module)

    if _must_not_block():
        _count_dropped(config, records)
        job.done.set()
    else:
        job.run()  # never raises: what the hook raises is logged and counted
    return job


def wait(jobs: Iterable[HookJob], timeout: float | None) -> int:
    """Wait (bounded) until ``jobs`` are done; return the records of those still running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    left = 0
    for job in jobs:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not job.done.wait(remaining):
            left += job.records
    return left


def report(jobs: Iterable[HookJob], on_error: Callable[[Exception], None] | None) -> None:
    """Pass what finished hooks raised to ``on_error`` (guarded: what it raises is logged)."""
    if on_error is None:
        return
    for job in jobs:
        error = job.error
        if job.done.is_set() and isinstance(error, Exception):
            try:
                on_error(error)
            except Exception as exc:
                _log.warning("galileo: flush's on_error raised %s", type(exc).__name__)


def drain(timeout: float) -> None:
    """At exit: wait (bounded) for the hooks still running; what they hold past it is counted as dropped."""
    with _lock:
        jobs = list(_pending)
    wait(jobs, timeout)
    for job in jobs:
        if not job.done.is_set():
            _count_dropped(job.config, job.records)


def _count_dropped(config: GalileoConfig, records: int) -> None:
    """Count ``records`` the hook never took as dropped (reason ``ingestion_hook``), through the logger."""
    from galileo.logger import count_dropped  # (galileo.logger imports this module)

    count_dropped(config, "ingestion_hook", records)
