"""Handles: what a logger holds for the records it hands over, and the events it hands over through them.

A logger opens one :class:`Handle` per trace (distributed mode) or per flush (batch mode) and calls its
methods from its own thread, never waiting: each event is appended to the sender's event queue (a deque:
appending is atomic) for the dispatcher thread, which alone touches the outbox behind it.

The queue is bounded by the number of records not delivered (``GALILEO_QUEUE_SIZE``): a record handed over
beyond it is dropped here and counted (``queue_full``), and so are the records logged under it later
(``parent_failed``), so that no child is ever sent without its parent. The bound is read without a lock (a
hint written by the dispatcher): threads handing over at the same instant may pass it by a record each.

Fields and their owners: ``outbox``, ``refused``, ``handed`` and ``puts`` belong to the logger's thread (under
the logger's lock); ``settled``, ``taken``, ``in_ready``, ``timer_at``, ``priority`` and ``idle`` to the
dispatcher. Read
across threads they are hints (:meth:`pending`, :attr:`idle`); what is exact is asked of the dispatcher.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from galileo import schema
from galileo._sender._accounts import Accounts
from galileo._sender._outbox import Outbox
from galileo._sender._trace import TraceOutbox

__all__ = ["ADD", "BATCH", "COMPLETE", "CONCLUDE", "Handle"]

ADD, CONCLUDE, COMPLETE, BATCH = range(4)


class Handle:
    """A logger's records of one trace (or one batch) on their way; see the module docstring."""

    __slots__ = (
        "__weakref__",
        "_accounts",
        "_put",
        "_queue_size",
        "handed",
        "idle",
        "in_ready",
        "outbox",
        "owner",
        "priority",
        "puts",
        "refused",
        "settled",
        "taken",
        "timer_at",
    )

    def __init__(
        self,
        outbox: Outbox,
        accounts: Accounts,
        queue_size: int,
        put: Callable[[tuple[Any, ...]], None],
        owner: object,
    ) -> None:
        self.outbox = outbox
        self._accounts = accounts
        self._queue_size = queue_size
        self._put = put
        #: The dispatcher that takes its events: a handle made before a fork (or a reset) is not waited for.
        self.owner = owner
        self.handed = 0
        self.puts = 0  #: events handed over (the logger's thread) ...
        self.taken = 0  #: ... and taken in (the dispatcher's): see done()
        self.refused: set[str] | None = None
        self.settled = 0
        self.idle = False  #: the dispatcher found nothing left to do, as of the events it took in
        self.in_ready = False
        self.timer_at = math.inf
        self.priority = False

    def __repr__(self) -> str:
        return f"<galileo sender handle {self.pending()} pending>"

    def done(self) -> bool:
        """Nothing left to do, every event taken in (a hint off the dispatcher thread)."""
        return self.idle and self.taken == self.puts

    def pending(self) -> int:
        """Records handed over and neither delivered nor given up (a hint off the dispatcher thread)."""
        return max(0, self.handed - self.settled)

    # -- events (the logger's thread) --------------------------------------------------------------------
    def add(self, record: schema.Record, parent_id: str | None) -> None:
        """A new record under ``parent_id`` (None for the trace record)."""
        accounts = self._accounts
        refused = self.refused
        full = accounts.queued() >= self._queue_size
        if full or (refused is not None and parent_id in refused):
            if refused is None:
                self.refused = refused = set()
            refused.add(record.id)
            accounts.lost("queue_full" if full else "parent_failed")
            return
        accounts.hand()
        self.handed += 1
        self.puts += 1
        self._put((ADD, self, record, parent_id))

    def conclude(self, record_id: str) -> None:
        """The record was concluded: its final state goes with its POST, or in a PATCH after it."""
        if self.refused is None or record_id not in self.refused:
            self.puts += 1
            self._put((CONCLUDE, self, record_id, None))

    def complete(self, trace: schema.Trace) -> None:
        """The trace was concluded: its ``is_complete`` goes after everything else of the trace."""
        if self.refused is not None and trace.id in self.refused:
            self._accounts.lost("parent_failed", updates=True)
            return
        if isinstance(self.outbox, TraceOutbox) and self.outbox.owned:
            self.puts += 1
            self._put((COMPLETE, self, trace, None))
