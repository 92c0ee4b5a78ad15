"""The sender's I/O threads: each takes one planned request, makes it a body, sends it, and posts the result.

A fixed pool of :data:`~galileo.config.GalileoConfig.sender_workers` daemon threads, started with the
first request, reading jobs from one ``queue.SimpleQueue``. Not ``concurrent.futures.ThreadPoolExecutor``:
that executor refuses new work once the interpreter starts to exit (its own exit hook runs before
``atexit`` ones), which is exactly when the sender must still deliver what a script never flushed; and on
Python 3.12+ no thread can be started then at all. So when no thread runs and none can be started, a job
runs on the thread that submitted it (:meth:`IoPool.submit` returns False and the caller runs
:func:`exchange` itself).

:func:`exchange` is everything one request needs off the dispatcher: resolving a session still to be created
(a few bounded exchanges, once per session), building the body from the records (fixed when the request was
planned, see :class:`~galileo._sender._outbox.Request`), encoding it, and one HTTP exchange. It never
raises: a bug in building a body is a rejected request, reported and counted like any other.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

from galileo._sender._outbox import BatchOutbox, Request
from galileo._transport import Outcome, Result

__all__ = ["IoPool", "exchange"]

_log = logging.getLogger("galileo")


def exchange(request: Request) -> Result:
    """Send ``request`` (a session named by its body is created or found first); never raises."""
    outbox = request.outbox
    session = outbox.session if request.kind in ("traces", "batch") else None
    try:
        if session is not None:
            resolved = session.resolve(outbox.client, outbox.target)
            if isinstance(resolved, Result):
                return resolved  # not reached this time: retried with the traces, like a failed write
        method, path, body = request.body()
        data = outbox.client.encode(outbox.target, body)
        del body  # freed before the wait for the answer (see Client.encode)
        if isinstance(data, Result):
            return data
        return outbox.client.write(method, outbox.target, path, data)
    except Exception as exc:  # a bug in building a body must not kill the thread
        _log.debug("galileo: could not build a request", exc_info=True)
        return Result(Outcome.REJECTED, detail=f"could not build the request: {type(exc).__name__}")


def traces_in(request: Request) -> int:
    """How many traces the body of ``request`` carries (for the session counters)."""
    if request.parts:
        return len(request.parts)
    outbox = request.outbox
    return len(outbox.traces) if isinstance(outbox, BatchOutbox) else 1


class IoPool:
    """A fixed pool of threads running :func:`exchange`; each result goes to ``done(request, result)``."""

    def __init__(self, size: int, done: Callable[[Request, Result], None]) -> None:
        self.size = size
        self._done = done
        self._jobs: queue.SimpleQueue[Request | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, request: Request) -> bool:
        """Queue ``request`` for a thread; False when no thread runs nor can start (interpreter exit)."""
        if not self._threads and not self._start():
            return False
        self._jobs.put(request)
        return True

    def _start(self) -> bool:
        try:
            for i in range(self.size):
                thread = threading.Thread(target=self._work, name=f"galileo-sender-io-{i}", daemon=True)
                thread.start()
                self._threads.append(thread)
        except RuntimeError:  # the interpreter is exiting (Python 3.12+ starts no thread then)
            return bool(self._threads)
        return True

    def _work(self) -> None:
        jobs, done = self._jobs, self._done
        while True:
            request = jobs.get()
            if request is None:
                return
            result = exchange(request)
            done(request, result)
            del request  # an idle thread holds no request: what was delivered is freed at once

    def close(self) -> None:
        """Let the threads end once the jobs queued before this are done (never waits)."""
        for _ in self._threads:
            self._jobs.put(None)
        self._threads = []
