"""The process's loggers for ``@log`` and ``galileo_context``, and where a decorated call's records go.

The process keeps one logger per project, log stream, experiment and mode (:class:`ContextLogger`). What such
a logger knows of its current trace (a :class:`~galileo._trace_state.TraceState`: stack, outbox, batch
traces, upstream ids) lives in a context variable of its own, which its ``_state()`` reads, so one logger
object serves concurrent tasks and threads; the outermost decorated call gives its context a fresh state for
its duration. A ``galileo_context(...)`` block is a :class:`~galileo._scope.Scope` set in :data:`entered`;
``galileo_context.init(...)`` sets the context's :class:`Defaults`.

Which logger a decorated call goes to is decided in one place, :func:`galileo._current.current_logger`.

What decorated calls and blocks handed over is remembered here (:func:`hand_over`) for
``galileo_context.flush()`` to wait on, through the logger (only :mod:`galileo.logger` knows the sender). The
child of a ``fork()`` starts with no process loggers and nothing handed over: the parent's records are the
parent's to deliver, and the child's sender is a new one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from contextvars import ContextVar, Token
from typing import TYPE_CHECKING, Any

from galileo import _sessions, schema
from galileo._context import current_request
from galileo._trace_state import TraceState
from galileo.logger import GalileoLogger, Handed

if TYPE_CHECKING:
    from galileo._scope import Scope

__all__ = [
    "ContextLogger",
    "Defaults",
    "Key",
    "active_scope",
    "all_loggers",
    "context_logger",
    "current_defaults",
    "defaults",
    "entered",
    "forget",
    "forget_handed",
    "hand_over",
    "take_handed",
]

_log = logging.getLogger("galileo")


# -- the process's loggers, their trace state per context ----------------------------------------------------
def _owner() -> object:
    """The task running now, else the thread: who a context's state belongs to."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.get_ident()


def new_state(
    trace_id: str | None = None, parent_id: str | None = None, *, by_call: bool = False
) -> TraceState:
    """A fresh trace state for this context (``by_call``: for the trace a decorated call starts)."""
    return TraceState(trace_id, parent_id, owner=_owner(), by_call=by_call)


class ContextLogger(GalileoLogger):
    """The process's logger for one project and log stream, its trace and parent stack kept per context.

    What a :class:`GalileoLogger` knows about its current trace (a :class:`~galileo._trace_state.TraceState`)
    is held here in a context variable, which :meth:`_state` reads, so the same object serves concurrent tasks
    and threads without mixing their trees; configuration, lock and everything else are shared.
    """

    _shared_session: _sessions.SessionRef | None = None  # the session outside blocks with their own

    def _get_session(self) -> _sessions.SessionRef | None:
        """The session of the traces this context starts: that of the ``galileo_context(session_id=...)``
        block it runs in, if the block is on this logger, else the logger's (as published: process-wide)."""
        scope = entered.get()
        if scope is not None and scope.own_session and scope.logger is self:
            return scope.session
        return self._shared_session

    def _set_session(self, session: _sessions.SessionRef | None) -> None:
        scope = entered.get()
        if scope is not None and scope.own_session and scope.logger is self:
            scope.session = session  # set_session / clear_session inside such a block: the block's
        else:
            self._shared_session = session

    _session = property(_get_session, _set_session)

    def __init__(self, key: Key, **extra: Any) -> None:
        self._states: ContextVar[TraceState | None] = ContextVar("galileo_trace_state", default=None)
        self._extra = dict(extra)  # what it was made with (see context_logger)
        project, log_stream, experiment_id, mode = key
        if experiment_id is not None:
            extra["experiment_id"] = experiment_id
        # keywords only: the constructor's positional order is the published one
        super().__init__(project=project, log_stream=log_stream, mode=mode, **extra)

    def _state(self) -> TraceState:
        """This context's trace state (made now when it has none)."""
        state = self._states.get()
        if state is None:
            state = new_state()
            self._states.set(state)
        return state

    def _state_here(self) -> TraceState | None:
        """This context's trace state, None when it has none (nothing is made)."""
        return self._states.get()

    def _use_state(self, state: TraceState | None) -> Token[TraceState | None]:
        """Make ``state`` this context's (None: none), until :meth:`_restore_state` with the token."""
        return self._states.set(state)

    def _restore_state(self, token: Token[TraceState | None]) -> None:
        self._states.reset(token)

    def start_trace(self, *args: Any, **kwargs: Any) -> schema.Trace:
        """As :meth:`GalileoLogger.start_trace`, in this context's state; a task or thread that inherited
        another's state starts one of its own instead of concluding that one's trace."""
        state = self._states.get()
        if state is None or (state.owner != _owner() and state.upstream_trace_id is None):
            self._states.set(new_state())
        return super().start_trace(*args, **kwargs)

    def conclude(
        self,
        output: Any = None,
        redacted_output: Any = None,
        duration_ns: int | None = None,
        status_code: int | None = None,
        conclude_all: bool = False,
    ) -> schema.Record | None:
        """As :meth:`GalileoLogger.conclude`, except that a trace a running decorated call started is left
        for that call to conclude (``conclude_all`` closes the levels above it)."""
        state = self._states.get()
        if state is None or not state.by_call or self._disabled:
            return super().conclude(output, redacted_output, duration_ns, status_code, conclude_all)
        with self._lock:
            stack = state.stack
            if len(stack) == 1:
                _log.warning(
                    "galileo: conclude() ignored: this trace concludes when its outermost @log call returns"
                )
                return stack[0].record
            while len(stack) > 1:
                self._conclude_top(output, redacted_output, duration_ns, status_code)
                if not conclude_all:
                    break
            return self.current_parent()

    def __repr__(self) -> str:
        return "<context " + super().__repr__()[1:]


# -- where calls go ------------------------------------------------------------------------------------------
class Defaults:
    """What ``galileo_context.init(...)`` set in this context: where decorated calls go outside any block."""

    __slots__ = ("experiment_id", "log_stream", "mode", "project")

    def __init__(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        experiment_id: str | None = None,
        mode: str | None = None,
    ) -> None:
        self.project = project
        self.log_stream = log_stream
        self.experiment_id = experiment_id
        self.mode = mode


#: (project, log_stream, experiment_id, mode): one process's logger each.
Key = tuple[str | None, str | None, str | None, str | None]

#: The ``galileo_context(...)`` block entered here (see :class:`galileo._scope.Scope`), if any.
entered: ContextVar[Scope | None] = ContextVar("galileo_scope", default=None)
defaults: ContextVar[Defaults | None] = ContextVar("galileo_defaults", default=None)
_NOTHING_SET = Defaults()


def current_defaults() -> Defaults:
    """What ``galileo_context.init(...)`` set in this context (nothing: all None)."""
    return defaults.get() or _NOTHING_SET


_loggers: dict[Key, ContextLogger] = {}
_loggers_lock = threading.Lock()
_handed: list[Handed] = []  # what outermost calls handed to the sender, for galileo_context.flush()
_handed_lock = threading.Lock()
_PRUNE_FLOOR = 256
_prune_at = _PRUNE_FLOOR


def context_logger(
    project: str | None,
    log_stream: str | None,
    mode: str | None,
    experiment_id: str | None = None,
    **extra: Any,
) -> ContextLogger:
    """The process's logger for a project, log stream, experiment and mode (None: from the environment); one
    each. ``extra`` (``local_metrics``, ``ingestion_hook``) is passed to a logger made now, or makes a new one
    for the key when it differs from what the key's logger was made with (a hook: by identity)."""
    key = (project, log_stream, experiment_id, mode)
    logger = _loggers.get(key)
    if logger is None or not _same_extra(logger._extra, extra):
        with _loggers_lock:
            logger = _loggers.get(key)
            if logger is None or not _same_extra(logger._extra, extra):
                replaced = logger
                logger = _loggers[key] = ContextLogger(key, **extra)
                if replaced is not None:
                    hand_over(replaced)
    return logger


def _same_extra(made_with: dict[str, Any], extra: dict[str, Any]) -> bool:
    """Whether a logger made with ``made_with`` serves a call giving ``extra``: nothing given, or the same
    objects (a hook by identity), so that asking again with the same hook keeps the logger and its trace."""
    for name, value in extra.items():
        if name not in made_with:
            return False
        before = made_with[name]
        if before is value:
            continue
        try:
            if callable(value) or not bool(before == value):
                return False
        except Exception:  # an odd __eq__: not the same
            return False
    return True


def forget(key: Key | None = None) -> None:
    """Forget the process's logger for ``key`` (None: all of them), handing over what it holds here."""
    with _loggers_lock:
        if key is None:
            gone = list(_loggers.values())
            _loggers.clear()
        else:
            one = _loggers.pop(key, None)
            gone = [one] if one is not None else []
    for logger in gone:
        hand_over(logger)


def all_loggers() -> list[ContextLogger]:
    with _loggers_lock:
        return list(_loggers.values())


def take_handed() -> list[Handed]:
    """The outboxes handed to the sender since the last call (for galileo_context.flush())."""
    with _handed_lock:
        outboxes, _handed[:] = list(_handed), []
    return outboxes


def forget_handed() -> None:
    with _handed_lock:
        _handed.clear()


def active_scope() -> Scope | None:
    """The ``galileo_context(...)`` block in force here (entered in this request, or outside any)."""
    scope = entered.get()
    if scope is not None and scope.logger is not None and scope.request is current_request():
        return scope
    return None


def hand_over(logger: GalileoLogger) -> None:
    """Conclude what ``logger`` holds in this context and queue it (never waits); remember what to wait on."""
    handed = logger._hand_over()
    if handed:
        global _prune_at
        with _handed_lock:
            _handed.extend(handed)
            if len(_handed) > _prune_at:  # forget what was delivered; amortised, also with a dead backend
                _handed[:], _prune_at = logger._still_busy(_handed, _PRUNE_FLOOR)


def _after_fork_in_child() -> None:
    """The child of a fork starts with no process loggers and nothing handed over (see the module docstring):
    the parent's are the parent's to deliver (its ``galileo_context.flush()`` would wait on a sender the child
    does not run), and their locks may have been held by a thread the child does not have."""
    global _loggers_lock, _handed_lock, _prune_at
    _loggers.clear()
    _loggers_lock = threading.Lock()
    _handed.clear()
    _handed_lock = threading.Lock()
    _prune_at = _PRUNE_FLOOR


os.register_at_fork(after_in_child=_after_fork_in_child)
