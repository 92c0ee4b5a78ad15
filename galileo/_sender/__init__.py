"""The process-wide sender: every logger's records go to the API from here, off the request path.

Its parts, each with one concern:

- :mod:`~galileo._sender._outbox`: which request of a trace may go next and what an answer means for its
  records (pure state machines; the ordering rules are in its docstring), and :mod:`~galileo._sender._plan`,
  which lets ready traces share one ``POST /traces``;
- :mod:`~galileo._sender._health`: each API's Retry-After pause and outage (probed, not stormed);
- :mod:`~galileo._sender._dispatcher`: one thread that owns all of that state, with no lock, and decides what
  goes when (linger, backoff and pauses are timers on a heap; it yields to the requests being served);
- :mod:`~galileo._sender._io`: a fixed pool of I/O threads, each sending one request at a time;
- :mod:`~galileo._sender._handle` and :mod:`~galileo._sender._core`: what loggers and callers hold and call;
  they only hand events to the dispatcher and wait for its answers;
- :mod:`~galileo._sender._accounts`: the counters (``galileo.stats()``) and the drop reports.

Creating a logger creates no thread, registers no hook and does no I/O: the threads start with the first
record. Every record handed over ends up ``sent`` or ``dropped`` with a reason; ``shutdown()`` gives up
what could not go in time (``shutdown_timeout``) and counts what was sent and not answered apart
(``shutdown_in_flight``: the server may have stored it), so nothing is left ``queued`` or ``in_flight``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from galileo._context import activity
from galileo._sender._accounts import Accounts
from galileo._sender._core import Sender
from galileo._sender._handle import Handle
from galileo._sender._health import OUTAGE_AFTER, OUTAGE_PAUSE, WARN_INTERVAL
from galileo._sender._outbox import AUTH_PAUSE, BACKOFF_BASE, BACKOFF_MAX
from galileo._sender._schedule import LINGER, QUIET, YIELD_CAP
from galileo._transport import reset_clients
from galileo.config import GalileoConfig

__all__ = [
    "AUTH_PAUSE",
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "EXIT_TIMEOUT",
    "LINGER",
    "OUTAGE_AFTER",
    "OUTAGE_PAUSE",
    "QUIET",
    "WARN_INTERVAL",
    "YIELD_CAP",
    "Handle",
    "Sender",
    "at_exit",
    "current",
    "get_sender",
    "reset",
    "shutdown",
    "stats",
]

#: How long the interpreter-exit drain (and TracingMiddleware's at lifespan shutdown) waits.
EXIT_TIMEOUT = 5.0

_sender_lock = threading.Lock()
_sender: Sender | None = None
_exit_registered = False
#: Called at interpreter exit before the drain (e.g. to hand over batch traces nobody flushed).
_exit_hooks: list[Callable[[], None]] = []


def get_sender(config: GalileoConfig) -> Sender:
    """The process-wide sender; made (without threads) by the first logger that needs it."""
    global _sender
    sender = _sender
    if sender is None:
        with _sender_lock:
            if _sender is None:
                _sender = Sender(
                    workers=config.sender_workers,
                    queue_size=config.queue_size,
                    retry_window=config.retry_window,
                )
                activity.on_idle = _sender.requests_idle
                _register_exit()
            sender = _sender
    return sender


def current() -> Sender | None:
    """The process-wide sender if one was made (none before the first logger, after a fork or a reset)."""
    return _sender


def shutdown(timeout: float | None = EXIT_TIMEOUT) -> int:
    """Deliver what is pending (to Galileo and to OTLP), waiting at most ``timeout`` seconds; return the
    records given up.

    Safe to call from a FastAPI/Starlette lifespan's shutdown (it blocks the calling thread, bounded);
    ``TracingMiddleware`` does it when the server shuts its app down. When every API with records pending
    is known to be down, it waits only for the requests already in flight. What cannot go in time is given
    up and counted (``shutdown_timeout``; sent and unanswered: ``shutdown_in_flight``) and reported in one
    WARNING, so that ``galileo.stats()`` then shows nothing ``queued`` or ``in_flight``. The threads stop;
    the sender keeps its counters and starts them again for the next record.
    """
    from galileo.otel import _hook as otlp  # (the OTLP export's: see galileo.otel)

    otlp.kick()  # (the OTLP export drains on its own thread meanwhile: both within ``timeout``)
    started = time.monotonic()
    sender = _sender
    given_up = 0 if sender is None else sender.close(timeout)
    left = None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
    return given_up + otlp.shutdown(left)


def reset(timeout: float | None = EXIT_TIMEOUT) -> int:
    """Shut the process sender down and forget it, counters included (tests; the next record starts anew)."""
    global _sender
    from galileo.otel import _hook as otlp

    with _sender_lock:
        sender, _sender = _sender, None
    given_up = 0 if sender is None else sender.close(timeout)
    otlp.reset(timeout)
    return given_up


def stats() -> dict[str, Any]:
    """The sender's counters since the process started (zeros before the first record).

    ``queued``, ``sent`` and ``dropped`` count records (a trace or a span), so that every record handed
    over is in exactly one of them: ``queued + sent + dropped`` is what was logged (``dropped_by_reason``
    splits ``dropped``). ``retried`` counts requests sent again, ``in_flight`` requests under way. Updates
    of records already delivered (a workflow span's PATCH, a trace's ``is_complete`` PATCH) are counted
    apart, in ``updates_sent`` and ``updates_dropped``. ``sessions_failed`` counts sessions the API would
    not create, ``traces_without_session`` the traces of theirs sent without a session. The ``otlp_*``
    counters are the OTLP export's (see :mod:`galileo.otel._hook`).
    """
    from galileo.otel import _hook as otlp

    sender = _sender
    counters = Accounts().snapshot() if sender is None else sender.stats()
    counters.update(otlp.stats())
    return counters


def at_exit(hook: Callable[[], None]) -> None:
    """Run ``hook`` at interpreter exit, before the sender's drain (once per hook; for this package)."""
    if hook not in _exit_hooks:
        _exit_hooks.append(hook)
    _register_exit()


def _register_exit() -> None:
    global _exit_registered
    if not _exit_registered:
        import atexit

        atexit.register(_drain_at_exit)
        _exit_registered = True


def _drain_at_exit() -> None:
    for hook in _exit_hooks:
        with contextlib.suppress(Exception):  # never fail interpreter exit
            hook()
    with contextlib.suppress(Exception):
        shutdown(EXIT_TIMEOUT)


def _after_fork_in_child() -> None:
    """The child of a fork gets a fresh sender and fresh clients: threads and sockets do not survive, and
    the parent's records are the parent's to send (the child's waits do not wait for them)."""
    global _sender, _sender_lock
    _sender = None
    _sender_lock = threading.Lock()
    activity.active, activity.ended_at, activity.holding, activity.on_idle = 0, -math.inf, False, None
    reset_clients()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
