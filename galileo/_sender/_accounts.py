"""The sender's counters: every record handed over is queued, sent, or dropped with a reason.

The dispatcher thread owns :class:`Accounts` and is the only writer of its counters. Two things come from
other threads and are counted apart, each in a form safe to write from any thread: records handed over
(``next`` on an ``itertools.count`` is atomic; the last value drawn is kept as a hint) and records lost
before they reached the dispatcher (a full queue, a span with no trace: a small lock, taken only then).

:meth:`Accounts.snapshot` is what ``galileo.stats()`` returns; the dispatcher publishes a fresh one after
each of its steps (a dict swapped in whole, so a reader on another thread never sees half a step), and
anyone waiting for a step's outcome is told only after it is published.

Drops are reported at WARNING at most once per :data:`WARN_INTERVAL`, with the reasons and the totals; the
dispatcher reports what is left once the interval is over (:meth:`Accounts.report_due`).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import Counter
from typing import Any

from galileo._sender._health import WARN_INTERVAL
from galileo._sender._outbox import Tally

__all__ = ["Accounts"]

_log = logging.getLogger("galileo")


class Accounts:
    """Counters of records and updates, and the WARNING that reports drops."""

    def __init__(self) -> None:
        self.pending = 0  #: records the dispatcher took in and has neither delivered nor given up
        self.taken = 0  #: records the dispatcher took in, in all
        self.in_flight = 0  #: requests under way
        self._handed_count = itertools.count(1)
        self.handed = 0  #: records handed over, in all (the last value drawn: a hint that may lag by one)
        self.batch_handed = 0  #: records handed over in batches (under the lock below)
        self._counters: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._updates_dropped: Counter[str] = Counter()
        self._unreported: Counter[str] = Counter()
        self._unreported_updates = 0
        self._last_warning = -WARN_INTERVAL
        self._last_detail = ""
        self._outside_lock = threading.Lock()
        self._outside: Counter[str] = Counter()  # records lost before the dispatcher saw them (any thread)
        self._outside_updates: Counter[str] = Counter()
        self._changes = 0  # counts changes of the counters below (see publish)
        self._signature: tuple[int, ...] = ()
        self._published: dict[str, Any] = self._build()

    # -- from any thread ---------------------------------------------------------------------------------
    def hand(self) -> None:
        """One more record handed over (a logger's thread)."""
        self.handed = next(self._handed_count)

    def hand_batch(self, n: int) -> None:
        """``n`` more records handed over in one batch (a logger's thread)."""
        with self._outside_lock:
            self.batch_handed += n

    def queued(self) -> int:
        """Records handed over and not yet delivered nor given up (a hint, read off the dispatcher)."""
        return self.pending + max(0, self.handed + self.batch_handed - self.taken)

    def lost(self, reason: str, n: int = 1, *, updates: bool = False) -> None:
        """Count records (or updates) lost before they reached the dispatcher."""
        with self._outside_lock:
            (self._outside_updates if updates else self._outside)[reason] += n

    def snapshot(self) -> dict[str, Any]:
        """The counters as of the dispatcher's last step, with what was handed over since."""
        stats = dict(self._published)
        with self._outside_lock:
            outside = dict(self._outside)
            outside_updates = sum(self._outside_updates.values())
        if outside or outside_updates:
            by_reason = Counter(stats["dropped_by_reason"])
            by_reason.update(outside)
            stats["dropped_by_reason"] = dict(by_reason)
            stats["dropped"] = sum(by_reason.values())
            stats["updates_dropped"] += outside_updates
        stats["queued"] += max(0, self.handed + self.batch_handed - stats.pop("_taken"))
        return stats

    # -- on the dispatcher thread ------------------------------------------------------------------------
    def count(self, name: str, n: int = 1) -> None:
        self._changes += 1
        self._counters[name] += n

    def settle(self, tally: Tally, *, report: bool = True) -> None:
        """Count what one outbox step did; drops are reported now if the interval allows (``report``)."""
        if tally.sent:
            self._counters["sent"] += tally.sent
        if tally.updates_sent:
            self._counters["updates_sent"] += tally.updates_sent
        if tally.retried:
            self._counters["retried"] += tally.retried
        self._changes += 1
        dropped = tally.given_up
        self.pending -= tally.sent + dropped
        if dropped or tally.updates_dropped:
            self._dropped.update(tally.dropped)
            self._unreported.update(tally.dropped)
            self._updates_dropped.update(tally.updates_dropped)
            self._unreported_updates += sum(tally.updates_dropped.values())
            if tally.detail:
                self._last_detail = tally.detail
            if report and time.monotonic() - self._last_warning >= WARN_INTERVAL:
                self.report()

    def report_due(self, now: float) -> float | None:
        """Report drops left unreported once the interval is over; when to look again (None: nothing left)."""
        if self._outside or self._outside_updates:  # (read without the lock first: almost always empty)
            with self._outside_lock:
                self._unreported.update(self._outside)
                self._unreported_updates += sum(self._outside_updates.values())
                self._dropped.update(self._outside)
                self._updates_dropped.update(self._outside_updates)
                self._outside.clear()
                self._outside_updates.clear()
                self._changes += 1
        if not self._unreported and not self._unreported_updates:
            return None
        due = self._last_warning + WARN_INTERVAL
        if now < due:
            return due
        self.report()
        return None

    def report(self) -> None:
        """One WARNING with the drops since the last one, and the totals."""
        self._last_warning = time.monotonic()
        if not self._unreported and not self._unreported_updates:
            return
        what = ", ".join(f"{n} {reason}" for reason, n in sorted(self._unreported.items())) or "none"
        updates = f" and {self._unreported_updates} update(s)" if self._unreported_updates else ""
        detail = f" (last error: {self._last_detail})" if self._last_detail else ""
        self.publish()
        _log.warning(
            "galileo: gave up %s record(s)%s since the last report: %s%s; totals %s",
            sum(self._unreported.values()),
            updates,
            what,
            detail,
            self.snapshot(),
        )
        self._unreported.clear()
        self._unreported_updates = 0

    def publish(self) -> None:
        """Publish the counters for other threads (a new dict only when something changed)."""
        signature = (self.taken, self.pending, self.in_flight, self._changes)
        if signature != self._signature:
            self._signature = signature
            self._published = self._build()

    def _build(self) -> dict[str, Any]:
        counters = self._counters
        return {
            "queued": self.pending,
            "sent": counters["sent"],
            "retried": counters["retried"],
            "dropped": sum(self._dropped.values()),
            "dropped_by_reason": dict(self._dropped),
            "in_flight": self.in_flight,
            "updates_sent": counters["updates_sent"],
            "updates_dropped": sum(self._updates_dropped.values()),
            "sessions_failed": counters["sessions_failed"],
            "traces_without_session": counters["traces_without_session"],
            "_taken": self.taken,
        }
