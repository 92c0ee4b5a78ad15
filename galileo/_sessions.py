"""Sessions: the conversation a logger's traces belong to, created (or found) through Galileo's API.

A session is a row of its own on the API (``POST /v2/projects/{pid}/sessions``, WIRE.md "Sessions"); every
trace sent afterwards names it in its ingest body's top-level ``session_id``. With an ``external_id`` the
session of that external id in the same log stream or experiment is looked for first (``POST
/v2/projects/{pid}/sessions/search``, a text filter ``external_id eq ...``) and reused.

The logger holds a :class:`SessionRef`: a session known by its id (``set_session``), or one still to be
created. Who creates it depends on where ``start_session`` was called:

- Off a request and off an event loop, the calling thread creates it at once (each exchange bounded by the
  configured timeout) and ``start_session`` returns its id, as the published SDK does.
- ``await logger.async_start_session(...)`` does the same in the event loop's default executor: the loop
  never waits on the network.
- Inside a request handler (or on an event loop, where a blocking call would stall every request)
  ``start_session`` returns None at once and does no I/O: the sender creates the session, on one of its
  worker threads, before the first ``POST /traces`` that needs it (:meth:`SessionRef.resolve`, called by
  :func:`galileo._sender._io.exchange`), and every trace of the logger carries its id.

A session the API will not create (a 4xx answer) is given up once: its traces still go, without a
``session_id``, counted in ``galileo.stats()`` (``sessions_failed``, ``traces_without_session``) and
reported in one WARNING. A transient failure (no answer, 5xx, 429) is retried with the traces that need it,
within the sender's retry window, like any other write.

Sessions with an external id are looked for and created one at a time per (API, target, external id) in
the process, and the id found is remembered (:data:`_KNOWN_MAX` of them): requests of one conversation that
each start the session, concurrently or one after another, get one session, and only the first of them
costs a search.

A session applies to the traces a logger starts after it was set (in batch mode: to the traces of the next
flush); ``clear_session`` stops it. Only trace ingest bodies name a session: span and update bodies belong
to a trace already sent.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from galileo._transport import Client, Outcome, Result, Target

__all__ = ["SessionRef", "check_session_id", "new_session", "same_session"]

_log = logging.getLogger("galileo")

#: How many (API, target, external id) -> session id answers the process remembers (oldest forgotten first).
_KNOWN_MAX = 4096
_known_lock = threading.Lock()
#: (client, target, external id) -> the session id the API gave for it.
_known: dict[tuple[Client, Target, str], str] = {}
#: (client, target, external id) -> the lock held while that session is looked for or created.
_creating: dict[tuple[Client, Target, str], threading.Lock] = {}


def check_session_id(value: object) -> str | None:
    """``value`` as a canonical UUID string, or None (with a WARNING) when it is not a version-4 UUID:
    the API refuses a trace body naming any other ``session_id``, which would lose the traces."""
    try:
        parsed = uuid.UUID(str(value))
    except (ValueError, TypeError, AttributeError):
        parsed = None
    if parsed is None or parsed.version != 4:
        _log.warning("galileo: ignored a session id that is not a UUID (version 4): %.60r", value)
        return None
    return str(parsed)


def _metadata(metadata: object) -> dict[str, str] | None:
    """Session metadata as the API takes it (string values); anything else is turned into text."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        _log.warning(
            "galileo: session metadata must be a dict of strings; ignored a %s", type(metadata).__name__
        )
        return None
    return {str(key): value if isinstance(value, str) else str(value) for key, value in metadata.items()}


class SessionRef:
    """A session a logger's traces belong to: known by ``id``, or to be created on first need.

    Thread-safe: :meth:`resolve` creates the session once; a caller arriving while another creates it
    waits for that answer instead of creating a second session.
    """

    __slots__ = ("_lock", "body", "counted", "external_id", "failed", "id")

    def __init__(self, session_id: str | None = None, body: dict[str, Any] | None = None) -> None:
        self.id = session_id
        #: The SessionCreateRequest's own fields (the sender adds the log stream or experiment).
        self.body = body or {}
        external = self.body.get("external_id")
        self.external_id: str | None = external if isinstance(external, str) else None
        self.failed = False  #: the API refused to create it: its traces go without a session
        self.counted = False  #: its failure was counted in the sender's stats (by the sender, under its lock)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        state = self.id or ("failed" if self.failed else "pending")
        return f"<galileo session {state}>"

    @property
    def pending(self) -> bool:
        """Not created yet, and not given up."""
        return self.id is None and not self.failed

    def resolve(self, client: Client, target: Target) -> str | Result | None:
        """The session's id, created (or found by external id) on the first call: blocks for a few bounded
        exchanges, so never call it on a request's thread or an event loop. None once the API refused to
        create it; a :class:`Result` when it could not be reached this time (try again later)."""
        with self._lock:
            if not self.pending:
                return self.id
            if not (self.external_id and self.external_id.strip()):
                return self._create(client, target)
            key = (client, target, self.external_id)
            with _known_lock:
                lock = _creating.setdefault(key, threading.Lock())
            with lock:  # one search-or-create per external id at a time in the process
                try:
                    found = _known.get(key)
                    if found is None:
                        found = self._find(client, target)
                    if found is not None:
                        self.id = found
                        _log.debug("galileo: reusing session %s (external id given)", found)
                        return found
                    return self._create(client, target)
                finally:
                    with _known_lock:
                        if self.id is not None:
                            if len(_known) >= _KNOWN_MAX:
                                del _known[next(iter(_known))]
                            _known[key] = self.id
                        if len(_creating) > _KNOWN_MAX:  # forget the locks nobody holds
                            for other, other_lock in list(_creating.items()):
                                if not other_lock.locked():
                                    del _creating[other]

    def _create(self, client: Client, target: Target) -> str | Result | None:
        """Create the session (under its lock); as :meth:`resolve` answers."""
        answer = client.post_json(target, "/sessions", "session create", self.body)
        session_id = answer.get("id") if isinstance(answer, dict) else None
        if isinstance(session_id, str):
            self.id = session_id
            _log.debug("galileo: session %s created", session_id)
            return session_id
        if isinstance(answer, Result) and answer.outcome is not Outcome.REJECTED:
            return answer  # transient (no answer, 5xx, 429, auth): the caller retries
        self.failed = True
        detail = answer.detail if isinstance(answer, Result) else "no id in the answer"
        _log.warning(
            "galileo: the session could not be created (%s); its traces are sent without a session",
            detail,
        )
        return None

    def _find(self, client: Client, target: Target) -> str | None:
        """The id of the session with this external id in the target's log stream or experiment, if any.
        A failed search is not fatal: a new session is created instead (logged at WARNING)."""
        body = {
            "filters": [
                {"type": "text", "column_id": "external_id", "operator": "eq", "value": self.external_id}
            ],
            "limit": 1,
        }
        answer = client.post_json(target, "/sessions/search", "session search", body)
        if isinstance(answer, Result):
            _log.warning("galileo: session search failed (%s); creating a new session", answer.detail)
            return None
        records = answer.get("records") if isinstance(answer, dict) else None
        if isinstance(records, list) and records and isinstance(records[0], dict):
            found = records[0].get("id")
            return found if isinstance(found, str) else None
        return None


def new_session(
    name: str | None,
    previous_session_id: str | None,
    external_id: str | None,
    metadata: Mapping[str, str] | None,
) -> SessionRef:
    """A session to create with these (published) parameters, checked so that the API will take them:
    values of the wrong type are turned into text or left out, with a WARNING; never raises."""
    body: dict[str, Any] = {
        "name": None if name is None else str(name),
        "previous_session_id": None,
        "external_id": None if external_id is None else str(external_id),
        "user_metadata": _metadata(metadata),
    }
    if previous_session_id is not None:
        body["previous_session_id"] = check_session_id(previous_session_id)
    return SessionRef(None, body)


def same_session(a: SessionRef | None, b: SessionRef | None) -> bool:
    """Whether traces of ``a`` and of ``b`` may share one ingest body (one ``session_id`` per body)."""
    if a is b:
        return True
    return a is not None and b is not None and a.id is not None and a.id == b.id
