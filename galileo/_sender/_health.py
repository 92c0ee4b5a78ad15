"""What the sender knows of each API: when it may be written to next, and whether it is down.

One :class:`ApiHealth` per API (per transport :class:`~galileo._transport.Client`), owned by the dispatcher
thread (no lock). Two rules:

- **Retry-After speaks for the client.** An answer carrying ``Retry-After`` (a 429 or 503, WIRE.md "Status
  codes") pauses every write to that API until it has passed, not only the request that got it.
- **An API failing again and again is probed, not stormed.** After :data:`OUTAGE_AFTER` transient failures
  in a row (no answer, 408, 429, 5xx), or credentials refused even after a fresh login, the API is *down*:
  writes pause (:data:`OUTAGE_PAUSE` doubling to ``BACKOFF_MAX`` with jitter; ``AUTH_PAUSE`` after a
  refused login; Retry-After when longer), then one request at a time probes it
  while the others wait. The first answer that is not trouble ends the outage and releases them all.

One WARNING says an API is unreachable (at most once per :data:`WARN_INTERVAL` per API: one going down and
up again is not news every time), one ERROR that it refuses the API key, one INFO line that it answers again.
"""

from __future__ import annotations

import logging
import math
import random

from galileo._sender import _outbox
from galileo._sender._outbox import BACKOFF_MAX
from galileo._transport import Client, Outcome, Result

__all__ = ["OUTAGE_AFTER", "OUTAGE_PAUSE", "WARN_INTERVAL", "ApiHealth"]

_log = logging.getLogger("galileo")

#: Transient failures in a row from one API after which it is treated as down.
OUTAGE_AFTER = 3
#: The first pause of an API treated as down; doubled per failed probe up to BACKOFF_MAX, with jitter (an
#: outage of 10 s is noticed to be over within about 5 s of its end, a long one within 30 s).
OUTAGE_PAUSE = 0.5
#: Outages (and drops, see _accounts) are reported at WARNING at most once per this many seconds.
WARN_INTERVAL = 10.0
#: The longest Retry-After honoured (a server asking for more is asked again after this).
RETRY_AFTER_MAX = 4 * BACKOFF_MAX


class ApiHealth:
    """One API's state: transient failures in a row, the pause in force, the outage if any."""

    __slots__ = (
        "announced",
        "client",
        "down_since",
        "failed_probes",
        "failures",
        "last_announced",
        "paused_until",
        "probing",
        "reason",
    )

    def __init__(self, client: Client) -> None:
        self.client = client
        self.failures = 0
        self.failed_probes = 0
        #: No write goes to the API before this (Retry-After, or an outage's pause).
        self.paused_until = 0.0
        self.probing = False
        self.down_since: float | None = None
        self.reason = ""  # "unreachable" or "auth"
        self.announced = False  # this outage was reported at WARNING (so its end is reported at INFO)
        self.last_announced = -math.inf

    @property
    def down(self) -> bool:
        return self.down_since is not None

    @property
    def known_down(self) -> bool:
        """Down, and a probe confirmed it (or the credentials were refused): waiting for it to come back
        would only wait the outage out."""
        return self.down_since is not None and (self.failed_probes > 0 or self.reason == "auth")

    def may_send(self, now: float) -> bool:
        """Whether a write may go to this API now (while it is down: as its one probe)."""
        return now >= self.paused_until and not self.probing

    def sending(self) -> None:
        """A write goes now; while the API is down it is the probe."""
        if self.down_since is not None:
            self.probing = True

    def observe(self, result: Result, now: float, queued: int, retry_window: float) -> bool:
        """Learn from one answer (or its absence). True when an outage ended: what waited may go now."""
        trouble = result.outcome is Outcome.AUTH or result.outcome is Outcome.RETRY
        if result.retry_after is not None:
            self.paused_until = max(self.paused_until, now + min(result.retry_after, RETRY_AFTER_MAX))
        if not trouble:
            self.failures = 0
            self.probing = False
            if self.down_since is None:
                return False
            _log.log(
                logging.INFO if self.announced else logging.DEBUG,
                "galileo: the Galileo API at %s answers again after %.0f s: sending resumed",
                self.client.api_url,
                now - self.down_since,
            )
            self.down_since = None
            self.failed_probes = 0
            self.announced = False
            self.reason = ""
            if result.retry_after is None:
                self.paused_until = 0.0
            return True
        if self.probing:
            self.probing = False
            self.failed_probes += 1
        self.failures += 1
        if result.outcome is Outcome.AUTH:
            pause, reason = _outbox.AUTH_PAUSE, "auth"
        elif self.failures >= OUTAGE_AFTER:
            pause = min(OUTAGE_PAUSE * 2**self.failed_probes, BACKOFF_MAX) * random.uniform(0.5, 1.0)
            reason = "unreachable"
        else:
            return False  # a blip: the request's own backoff deals with it
        self.paused_until = max(self.paused_until, now + pause)
        if self.down_since is None or self.reason != reason:
            self.down_since = self.down_since or now
            self.reason = reason
            self._announce(result, now, queued, retry_window)
        return False

    def _announce(self, result: Result, now: float, queued: int, retry_window: float) -> None:
        what = result.detail or f"HTTP {result.status}"
        if self.reason == "auth":
            _log.error(
                "galileo: the Galileo API at %s refused the API key (%s) even after a fresh login: check "
                "GALILEO_API_KEY. Sending is paused (retried every %g s); records are kept for up to %g s, "
                "then dropped and counted in galileo.stats()",
                self.client.api_url,
                what,
                _outbox.AUTH_PAUSE,
                retry_window,
            )
            self.announced = True
            return
        self.announced = now - self.last_announced >= WARN_INTERVAL
        if self.announced:
            self.last_announced = now
        _log.log(
            logging.WARNING if self.announced else logging.DEBUG,
            "galileo: the Galileo API at %s is unreachable (%s, %d failures in a row): sending is paused and "
            "retried with backoff; records are kept for up to %.0f s (%d queued)",
            self.client.api_url,
            what,
            self.failures,
            retry_window,
            queued,
        )
