"""Waits: a caller's thread blocked until the dispatcher says some records are settled (flush, shutdown).

A :class:`Wait` is posted on the dispatcher's event queue *after* the events it waits for, so when the
dispatcher takes it in, everything its caller handed over before is in. At the end of each step the
dispatcher answers the waits that are settled (:meth:`Waits.answer`): their records are delivered or given
up, or every API they wait for is known to be down and none of their requests is in flight (waiting longer
would only wait out the outage). The caller's thread wakes with the records still pending.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from galileo._sender._dispatcher import Dispatcher

__all__ = ["Wait", "Waits"]


class Wait:
    """One caller waiting; ``handles`` None waits for everything (a shutdown)."""

    __slots__ = ("cancelled", "done", "handles", "pending", "urgent")

    def __init__(self, handles: Sequence[Any] | None, *, urgent: bool) -> None:
        self.handles = handles
        #: Nothing is held back while it waits (linger, yielding to requests): a flush or a shutdown.
        self.urgent = urgent
        self.pending = 0
        self.done = threading.Event()
        self.cancelled = False  #: its caller stopped waiting (timed out)


class Waits:
    """The waits the dispatcher has taken in and not answered yet."""

    def __init__(self) -> None:
        self._waits: list[Wait] = []
        #: An urgent wait (a flush, a shutdown) is among them: nothing lingers nor yields to requests.
        self.urgent = False

    def __bool__(self) -> bool:
        return bool(self._waits)

    def add(self, wait: Wait) -> None:
        self._waits.append(wait)
        self.urgent = self.urgent or wait.urgent

    def answer(self, dispatcher: Dispatcher) -> None:
        if not self._waits:
            return
        left = []
        for wait in self._waits:
            if wait.cancelled:
                continue
            if dispatcher.settled(wait):
                wait.pending = dispatcher.pending_of(wait)
                wait.done.set()
            else:
                left.append(wait)
        self._waits = left
        self.urgent = any(wait.urgent for wait in left)

    def release(self) -> None:
        """Answer every wait at once (the dispatcher stops)."""
        for wait in self._waits:
            wait.done.set()
        self._waits = []
        self.urgent = False
