"""``@log`` and ``galileo_context``: tracing without a logger in hand.

Decorate the functions worth seeing in a trace; their calls become spans, nested as the calls nest::

    from galileo import galileo_context, log

    @log(span_type="retriever")
    def search(query: str) -> list[str]: ...

    @log                                    # a workflow span by default
    async def answer(question: str) -> str:
        documents = search(question)       # a retriever span under "answer"
        ...

``@log`` and ``@log(span_type="workflow"|"agent"|"llm"|"retriever"|"tool", name=None)`` work on functions,
async functions, generators and async generators, methods included. A call records its input (the
arguments as passed, by parameter name, ``self``/``cls`` left out, as JSON text; values JSON cannot hold
are shown by their ``repr``; at most :data:`MAX_CHARS` characters), its output (the return value, or the
yielded items joined: strings concatenated as they are, other items as JSON text one per line; at most
:data:`MAX_CHARS` characters) and its duration. A call that raises gets ``status_code`` 500 and
``"ExceptionType: message"`` as its output, and the exception propagates unchanged. A workflow or agent
span returning None takes its last child's output.

Where spans go
--------------
Nesting follows the call stack, through context variables (never thread-locals): a decorated workflow or
agent call opens a level and the decorated calls it makes land under it, across ``await``,
``asyncio.gather``, ``asyncio.to_thread`` and Starlette's ``run_in_threadpool``; llm, retriever and tool
calls are leaves, recorded when they return. A generator's span is the current parent only while its body
runs (not in the caller between two items); it opens at the first item asked for and concludes when the
generator is exhausted, raises or is closed. Which trace a call joins, first match wins:

1. inside a decorated workflow/agent call: that call's span, in that call's logger;
2. inside a ``with galileo_context(...)`` block entered in the same request (or, for a call outside any
   request, entered outside any request): the process's logger for that block's project and log stream,
   continuing ``trace_id``/``span_id`` when given;
3. inside a request served through ``TracingMiddleware``: the request's logger
   (:func:`~galileo.middleware.get_request_logger`), under its current parent — the same tree, continuing
   the upstream trace from the request's headers or the request's own ``METHOD route`` trace (opened, if
   it is not yet, when the first decorated call begins);
4. elsewhere: the process's logger for GALILEO_PROJECT / GALILEO_LOG_STREAM (mode from GALILEO_MODE).

With no active trace there (cases 2 and 4), the outermost decorated call starts a trace (named after the
function, with the same input) and concludes it when it returns: in batch mode the trace is then handed to
the sender, so nothing has to be flushed by hand (the sender drains at interpreter exit). No call makes a
network request: records are built here and handed to the process-wide sender.

Mixing with a logger in hand: ``get_request_logger().add_*`` inside a decorated workflow/agent call nests
under that call's span, as long as the logger has not opened a level of its own since the call began
(``add_workflow_span`` inside the call: later spans go under that level until it is concluded, as before).
``get_tracing_headers()`` and :func:`galileo.propagation.tracing_headers` name the decorated span as the
parent, so a downstream service's spans land under it. Tasks of one request that open levels with the
request's logger itself share that logger's one stack; decorated calls never do. ``conclude()`` on the
process's logger never closes a trace that a running decorated call started (it warns): that call does.

Design
------
The current decorated workflow/agent span is a :class:`~galileo._context.SpanFrame` (the logger and the
open level) in the context variable :data:`galileo._context.span_frame`: set for the call's duration (for a
generator, around each resumption of its body) and reset after, so gathered tasks and threadpool calls
inherit it and concurrent ones never see each other's. Spans are added and concluded through
``GalileoLogger._add_under`` / ``_conclude_record``, which reuse the logger's record building, payload
policy, lock and distributed-mode sending, but never push on the logger's stack (shared by every task of a
request). Outside requests, the process's loggers (``_ContextLogger``, one per project, log stream and mode)
keep what a logger knows of its current trace (stack, outbox, batch traces, upstream ids) in a context
variable of their own, so one logger object serves concurrent tasks and threads; the outermost decorated
call gives its context a fresh tree for its duration.

``galileo_context``
-------------------
``with galileo_context(project=..., log_stream=..., trace_id=..., span_id=..., mode=...):`` (or
``async with``) scopes where decorated calls go; on leaving it, what the block's logger left open in the block
is concluded and handed to the sender. ``galileo_context.get_logger_instance(project=..., log_stream=...)``
returns the process's logger for that pair (one per project, log stream and mode), whose active trace and
parent stack are per context: a trace started in one task or thread is not seen by concurrent ones (tasks
started while it is active join it). Inside a request served through ``TracingMiddleware`` it returns the
request's logger. ``galileo_context.flush()`` hands everything over and waits (bounded) for delivery where
waiting is safe; ``galileo_context.reset()`` forgets the process's loggers (the environment is read again).

Never breaks the decorated function: a failure of the SDK (serialisation, configuration, a bad context) is
logged once, as one WARNING line on the ``galileo`` logger naming the cause (e.g. the setting to fix; its
traceback at DEBUG), and the function runs as if undecorated. Return values, exceptions,
``inspect.signature`` and ``functools.wraps`` attributes are preserved; a generator stays lazy (a wrong
argument to a decorated generator function raises at the first item, not at the call).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import json
import logging
import sys
import threading
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextvars import ContextVar, Token
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

import attrs

from galileo import _sender, _sessions, schema
from galileo._context import RequestState, SpanFrame, current_request, span_frame
from galileo.exceptions import _describe
from galileo.logger import DEFAULT_FLUSH_TIMEOUT, GalileoLogger, _check_uuid, _must_not_block, _now_ns, _Open
from galileo.schema import TRUNCATION_MARKER

__all__ = ["MAX_CHARS", "SPAN_KINDS", "GalileoContext", "SpanKind", "galileo_context", "log", "start_session"]

_log = logging.getLogger("galileo")

P = ParamSpec("P")
R = TypeVar("R")

SpanKind = Literal["workflow", "agent", "llm", "retriever", "tool"]
#: The span types ``@log(span_type=...)`` accepts.
SPAN_KINDS: Final = ("workflow", "agent", "llm", "retriever", "tool")
#: Characters kept of a call's input and of its output (then the truncation marker); the logger's
#: ``max_payload_chars`` applies on top.
MAX_CHARS: Final = 10_000
_LEVELS: Final = frozenset(("workflow", "agent"))
_SPAN_CLASSES: Final[dict[str, type[schema.Span]]] = dict(schema.SPAN_TYPES)

_said: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    """In an ``except`` block: ``message`` (with ``%s`` for the cause) once per ``key`` until
    ``galileo_context.reset()``, as one WARNING line naming the cause; its traceback at DEBUG."""
    if key not in _said:
        _said.add(key)
        exc = sys.exc_info()[1]
        _log.warning(message, _describe(exc))
        _log.debug("galileo: the traceback of the warning above", exc_info=exc)


# -- serialisation -------------------------------------------------------------------------------------------
def _clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    return text[:MAX_CHARS] + TRUNCATION_MARKER.format(omitted=len(text) - MAX_CHARS)


def _repr(value: Any) -> str:
    try:
        return _clip(repr(value))
    except Exception:
        return f"<{type(value).__name__} object>"


def _json_default(value: Any) -> Any:
    """What JSON cannot hold: sets as lists, dataclasses/attrs/pydantic as their fields, others' repr."""
    try:
        if isinstance(value, (set, frozenset)):
            return list(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if attrs.has(type(value)):
            return attrs.asdict(value)
        dump = getattr(value, "model_dump", None)
        if callable(dump) and not isinstance(value, type):
            return dump(mode="json")
    except Exception:
        pass
    return _repr(value)


def _make_encoder() -> Callable[[Any], str]:
    """``json.dumps(value, ensure_ascii=False, default=_json_default)``, made once: building an encoder per
    call costs more than encoding a few arguments. Without the circular-reference check (its state would be
    shared between threads): a circular structure ends in RecursionError, and its repr is used instead."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the pure-Python encoder
        return json.JSONEncoder(ensure_ascii=False, default=_json_default, check_circular=False).encode
    encode = make(None, _json_default, json.encoder.encode_basestring, None, ": ", ", ", False, False, True)
    return lambda value: "".join(encode(value, 0))


_encode = _make_encoder()


def _to_text(value: Any) -> str:
    """``value`` as text: a string as it is, anything else as JSON (falling back to repr); clipped."""
    if isinstance(value, str):
        return _clip(value)
    try:
        text = _encode(value)
    except Exception:  # circular structures, a failing default, keys JSON cannot hold
        text = _repr(value)
    return _clip(text)


class _Spec:
    """What ``@log`` works out once per decorated function."""

    __slots__ = ("cls", "kind", "name", "opens_level", "positional", "sig", "skip_first")

    def __init__(self, func: Callable[..., Any], kind: str, name: str | None) -> None:
        self.kind = kind
        self.cls = _SPAN_CLASSES[kind]
        self.opens_level = kind in _LEVELS
        self.name = name or getattr(func, "__name__", None) or "call"
        try:
            self.sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.sig = None
        params = list(self.sig.parameters.values()) if self.sig is not None else []
        self.skip_first = bool(params) and params[0].name in ("self", "cls")
        # Only plain positional-or-keyword parameters: arguments can be named without binding.
        self.positional: tuple[str, ...] | None = (
            tuple(p.name for p in params)
            if self.sig is not None and all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in params)
            else None
        )

    def input_text(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        """The call's arguments by parameter name (as passed, defaults left out), as JSON text."""
        names = self.positional
        if names is not None and len(args) <= len(names):
            arguments = dict(zip(names, args, strict=False))
            if kwargs:
                arguments.update(kwargs)
        elif self.sig is not None:
            try:
                arguments = dict(self.sig.bind(*args, **kwargs).arguments)
            except TypeError:  # the call itself will raise; say what it was given
                arguments = {"args": list(args), "kwargs": kwargs}
        else:
            arguments = {"args": list(args), "kwargs": kwargs}
        if self.skip_first and names is not None and names and args:
            arguments.pop(names[0], None)
        elif self.skip_first and self.sig is not None:
            arguments.pop(next(iter(self.sig.parameters)), None)
        return _to_text(arguments) if arguments else "{}"


# -- per-context trees of the process's loggers -------------------------------------------------------------
def _owner() -> object:
    """The task running now, else the thread: who a context's tree belongs to."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task if task is not None else threading.get_ident()


class _Tree:
    """One context's trace of a :class:`_ContextLogger`: what a GalileoLogger keeps per logger."""

    __slots__ = (
        "by_call",
        "outbox",
        "outboxes",
        "owner",
        "stack",
        "traces",
        "upstream_parent_id",
        "upstream_trace_id",
    )

    def __init__(
        self, trace_id: str | None = None, parent_id: str | None = None, *, by_call: bool = False
    ) -> None:
        self.by_call = by_call  # its trace was started by a decorated call, which concludes it
        self.owner = _owner()
        self.stack: list[_Open] = []
        self.traces: list[schema.Trace] = []
        self.outbox: _sender.TraceOutbox | None = None
        self.outboxes: list[_sender.Outbox] = []
        self.upstream_trace_id = trace_id
        self.upstream_parent_id = parent_id or trace_id
        if trace_id is not None:
            self.stack.append(_Open(None, self.upstream_parent_id or trace_id, _now_ns()))


def _tree_field(name: str) -> Any:
    def get(self: _ContextLogger) -> Any:
        return getattr(self._trees.get() or self._tree(), name)

    def set_(self: _ContextLogger, value: Any) -> None:
        setattr(self._tree(), name, value)

    return property(get, set_)


class _ContextLogger(GalileoLogger):
    """The process's logger for one project and log stream, its trace and parent stack kept per context.

    Every piece of state a :class:`GalileoLogger` keeps about its current trace (the stack of open levels,
    the batch traces, the distributed outbox, the upstream ids) lives in a :class:`_Tree` held in a context
    variable of this logger, so the same object serves concurrent tasks and threads without mixing their
    trees; configuration, lock and everything else are shared.
    """

    _stack = _tree_field("stack")
    _traces = _tree_field("traces")
    _outbox = _tree_field("outbox")
    _outboxes = _tree_field("outboxes")
    _upstream_trace_id = _tree_field("upstream_trace_id")
    _upstream_parent_id = _tree_field("upstream_parent_id")
    _shared_session: _sessions.SessionRef | None = None  # the session outside blocks with their own

    def _get_session(self) -> _sessions.SessionRef | None:
        """The session of the traces this context starts: that of the ``galileo_context(session_id=...)``
        block it runs in, if the block is on this logger, else the logger's (as published: process-wide)."""
        scope = _scope.get()
        if scope is not None and scope.own_session and scope.logger is self:
            return scope.session
        return self._shared_session

    def _set_session(self, session: _sessions.SessionRef | None) -> None:
        scope = _scope.get()
        if scope is not None and scope.own_session and scope.logger is self:
            scope.session = session  # set_session / clear_session inside such a block: the block's
        else:
            self._shared_session = session

    _session = property(_get_session, _set_session)

    def __init__(self, project: str | None, log_stream: str | None, mode: str | None) -> None:
        self._trees: ContextVar[_Tree | None] = ContextVar("galileo_tree", default=None)
        token = self._trees.set(None)
        try:
            super().__init__(project, log_stream, mode=mode)
        finally:
            self._trees.reset(token)  # the constructing context keeps no tree of its own

    def _tree(self) -> _Tree:
        tree = self._trees.get()
        if tree is None:
            tree = _Tree()
            self._trees.set(tree)
        return tree

    def start_trace(self, *args: Any, **kwargs: Any) -> schema.Trace:
        """As :meth:`GalileoLogger.start_trace`, in this context's tree; a task or thread that inherited
        another's tree starts a tree of its own instead of concluding that one's trace."""
        tree = self._trees.get()
        if tree is None or (tree.owner != _owner() and tree.upstream_trace_id is None):
            self._trees.set(_Tree())
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
        tree = self._trees.get()
        if tree is None or not tree.by_call or self._disabled:
            return super().conclude(output, redacted_output, duration_ns, status_code, conclude_all)
        with self._lock:
            stack = tree.stack
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
class _Scope:
    """One ``galileo_context(...)`` block."""

    __slots__ = (
        "_tokens",
        "log_stream",
        "logger",
        "mode",
        "own_session",
        "project",
        "request",
        "session",
        "span_id",
        "trace_id",
    )

    def __init__(
        self,
        project: str | None,
        log_stream: str | None,
        trace_id: str | None,
        span_id: str | None,
        mode: str | None,
    ) -> None:
        self.project = project
        self.log_stream = log_stream
        self.trace_id = trace_id
        self.span_id = span_id
        self.mode = mode
        self.logger: _ContextLogger | None = None
        self.request: RequestState | None = None
        self._tokens: tuple[Token[_Scope | None], Token[SpanFrame | None], Token[_Tree | None]] | None = None
        #: galileo_context(session_id=...): the block's own session (``own_session``), which its logger's
        #: traces in this context belong to instead of the logger's (see _ContextLogger._session).
        self.own_session = False
        self.session: _sessions.SessionRef | None = None

    def __repr__(self) -> str:
        return f"<galileo_context project={self.project!r} log_stream={self.log_stream!r}>"

    def __enter__(self) -> _Scope:
        if self._tokens is not None:
            raise RuntimeError("this galileo_context(...) block is already entered")
        try:
            trace_id, parent_id, mode = self._ids()
            self.logger = _context_logger(self.project, self.log_stream, mode)
            self.request = current_request()
            tree = _Tree(trace_id, parent_id)
        except Exception:
            _warn_once("scope", "galileo: galileo_context(...) ignored: cannot set it up (%s)")
            return self
        self._tokens = (_scope.set(self), span_frame.set(None), self.logger._trees.set(tree))
        return self

    def _ids(self) -> tuple[str | None, str | None, str | None]:
        mode = self.mode
        if self.trace_id is None and self.span_id is None:
            return None, None, mode
        try:
            trace_id = _check_uuid("trace_id", self.trace_id)
            parent_id = _check_uuid("span_id", self.span_id)
            if trace_id is None:
                raise ValueError("span_id without trace_id")
            if mode not in (None, "distributed"):
                raise ValueError("continuing a trace needs mode='distributed'")
        except Exception as exc:
            _log.warning("galileo: galileo_context(trace_id=..., span_id=...) ignored: %s; a new trace", exc)
            return None, None, mode
        return trace_id, parent_id, "distributed"

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        tokens, self._tokens = self._tokens, None
        if tokens is None or self.logger is None:
            return
        try:
            _hand_over(self.logger)  # what the block left open, concluded and queued
        except Exception:
            _warn_once("scope-exit", "galileo: could not hand over a galileo_context block's records (%s)")
        finally:
            self.logger._trees.reset(tokens[2])
            span_frame.reset(tokens[1])
            _scope.reset(tokens[0])

    async def __aenter__(self) -> _Scope:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)


_scope: ContextVar[_Scope | None] = ContextVar("galileo_scope", default=None)
_loggers: dict[tuple[str | None, str | None, str | None], _ContextLogger] = {}
_loggers_lock = threading.Lock()
_handed: list[_sender.Outbox] = []  # what outermost calls handed to the sender, for galileo_context.flush()
_handed_lock = threading.Lock()
_prune_at = 256


def _context_logger(project: str | None, log_stream: str | None, mode: str | None) -> _ContextLogger:
    """The process's logger for a project, log stream and mode (None: from the environment); one each."""
    key = (project, log_stream, mode)
    logger = _loggers.get(key)
    if logger is None:
        with _loggers_lock:
            logger = _loggers.get(key)
            if logger is None:
                logger = _loggers[key] = _ContextLogger(project, log_stream, mode)
    return logger


def _hand_over(logger: GalileoLogger) -> None:
    """Conclude what ``logger`` holds in this context and queue it (never waits); remember the outboxes."""
    with logger._lock:
        _, outboxes = logger._enqueue_all()
    if outboxes:
        global _prune_at
        with _handed_lock:
            _handed.extend(outboxes)
            if len(_handed) > _prune_at:  # forget what was delivered; amortised, also with a dead backend
                _handed[:], _prune_at = _sender.get_sender(logger.config).prune(_handed, 256)


def _current_logger() -> GalileoLogger:
    """The logger a decorated call outside any decorated workflow/agent call goes to (rules 2-4)."""
    scope = _scope.get()
    request = current_request()
    if scope is not None and scope.logger is not None and scope.request is request:
        return scope.logger
    if request is not None:
        return request.logger or _request_logger()()
    return _context_logger(None, None, None)


@functools.cache
def _request_logger() -> Callable[[], GalileoLogger]:
    """``get_request_logger``, imported on first use (galileo.middleware imports Starlette)."""
    from galileo.middleware._request import get_request_logger

    return get_request_logger


# -- one decorated call -------------------------------------------------------------------------------------
def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Call:
    """A decorated call in progress: its span (or level), and the trace it started if it is the outermost."""

    __slots__ = ("frame", "input", "logger", "spec", "start_ns", "start_wall", "tokens", "tree")

    def __init__(self, spec: _Spec, logger: GalileoLogger, input_text: str) -> None:
        self.spec = spec
        self.logger = logger
        self.input = input_text
        self.frame: SpanFrame | None = None
        self.tree: _Tree | None = None  # set when this call started the trace
        self.tokens: tuple[Token[SpanFrame | None] | None, Token[_Tree | None] | None] = (None, None)
        self.start_ns = 0
        self.start_wall: datetime | None = None  # a leaf's start (a level's span records its own)

    def activate(self) -> None:
        """Make this call's span (and trace) current in this context."""
        tree = self.tree
        frame = self.frame
        self.tokens = (
            span_frame.set(frame) if frame is not None else None,
            cast(_ContextLogger, self.logger)._trees.set(tree) if tree is not None else None,
        )

    def deactivate(self) -> None:
        frame_token, tree_token = self.tokens
        self.tokens = (None, None)
        if tree_token is not None:
            cast(_ContextLogger, self.logger)._trees.reset(tree_token)
        if frame_token is not None:
            span_frame.reset(frame_token)

    def end(self, output: Any, error: BaseException | None) -> None:
        """Record the outcome (this call must not be active); never raises."""
        try:
            self._end(output, error)
        except Exception:
            _warn_once(
                "end", "galileo: could not record a @log call's outcome (%s); the call was not affected"
            )

    def _end(self, output: Any, error: BaseException | None) -> None:
        logger = self.logger
        tree = self.tree
        token = cast(_ContextLogger, logger)._trees.set(tree) if tree is not None else None
        try:
            status = None
            if error is not None:
                status = 500
                output = _clip(f"{type(error).__name__}: {_error_text(error)}")
            if self.frame is not None:
                logger._conclude_record(self.frame, output, status)
            else:
                spec = self.spec
                elapsed = _now_ns() - self.start_ns
                created_at = self.start_wall or _utcnow() - timedelta(microseconds=elapsed // 1000)
                span = spec.cls(  # no metadata nor tags: the attrs defaults, as _common would give
                    **logger._payload(spec.kind, self.input, output, None, None),
                    name=spec.name,
                    status_code=status,
                    created_at=created_at,
                )
                logger._add_under(span, elapsed, created_at, opens_level=False)
            if tree is not None:
                if status is not None:
                    with logger._lock:
                        logger._conclude_all(None, None, None, status)
                _hand_over(logger)
        finally:
            if token is not None:
                cast(_ContextLogger, logger)._trees.reset(token)


def _error_text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return ""


def _begin(spec: _Spec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
    """Open the span of a call (and its trace, for an outermost call), left active; None: run untraced."""
    try:
        frame = span_frame.get()
        logger = frame.logger if frame is not None else _current_logger()
        if logger._disabled:
            return None
        call = _Call(spec, logger, spec.input_text(args, kwargs))
        request = logger._request
        if request is not None and not logger._stack:  # a request's trace opens at its first span: now
            with logger._lock:
                if not logger._stack and not request.finalized:
                    logger._open_request_trace(call.input)
        if frame is None and isinstance(logger, _ContextLogger):
            tree = logger._trees.get()
            if tree is None or not tree.stack:  # no trace in this context: this call is the outermost
                call.tree = _Tree(by_call=True)
                token = logger._trees.set(call.tree)
                try:
                    logger.start_trace(input=call.input, name=spec.name)
                finally:
                    logger._trees.reset(token)
        if call.tree is not None:
            call.activate()  # the trace this call started (its span frame is set below)
        if spec.opens_level:
            now = _utcnow()
            kind = spec.kind  # a level opens without an output: only the input to shape
            span = spec.cls(
                input=logger._policy.input(kind, call.input),
                redacted_input=logger._redacted(kind, "input", call.input, None),
                name=spec.name,
                created_at=now,
            )
            call.frame = logger._add_under(span, None, now, opens_level=True)
            if call.frame is not None:
                call.tokens = (span_frame.set(call.frame), call.tokens[1])
        else:
            call.start_wall = _utcnow()
        call.start_ns = _now_ns()
        return call
    except Exception:
        _warn_once("begin", "galileo: @log could not trace a call (%s); running it untraced")
        return None


def _output(spec: _Spec, value: Any) -> Any:
    """A return value as the span's output: llm and retriever outputs keep their shape (messages,
    documents) for the payload policy; others become text."""
    if value is None:
        return None
    if spec.kind in ("llm", "retriever"):
        return value
    return _to_text(value)


class _Items:
    """A generator's yielded items, as the text its span's output shows (clipped at MAX_CHARS)."""

    __slots__ = ("omitted", "parts", "size", "texts")

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.texts = True  # every item a string: concatenate them as they are
        self.size = 0
        self.omitted = 0

    def add(self, item: Any) -> None:
        if self.size > MAX_CHARS:
            self.omitted += 1
            return
        if isinstance(item, str):
            text = item
        else:
            self.texts = False
            text = _to_text(item)
        self.parts.append(text)
        self.size += len(text) + 1

    def text(self) -> str | None:
        if not self.parts:
            return None
        text = ("" if self.texts else "\n").join(self.parts)
        if self.omitted:
            text += f"\n…[{self.omitted} more items]"
        return _clip(text)


# -- wrappers ------------------------------------------------------------------------------------------------
def _wrap_function(func: Callable[..., Any], spec: _Spec) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(spec, args, kwargs)
        if call is None:
            return func(*args, **kwargs)
        try:
            result = func(*args, **kwargs)
        except BaseException as exc:
            call.deactivate()
            call.end(None, exc)
            raise
        call.deactivate()
        call.end(_output(spec, result), None)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Awaitable[Any]], spec: _Spec) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = _begin(spec, args, kwargs)
        if call is None:
            return await func(*args, **kwargs)
        try:
            result = await func(*args, **kwargs)
        except BaseException as exc:
            call.deactivate()
            call.end(None, exc)
            raise
        call.deactivate()
        call.end(_output(spec, result), None)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Generator[Any, Any, Any]], spec: _Spec) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
        gen = func(*args, **kwargs)
        call = _begin(spec, args, kwargs)
        if call is None:
            return (yield from gen)
        items = _Items()
        value: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                # the span is current only while the generator's body runs
                try:
                    item = gen.send(value) if thrown is None else gen.throw(thrown)
                finally:
                    call.deactivate()
                thrown = None
                items.add(item)
                try:
                    value = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:  # thrown in by the caller: the generator decides
                    thrown, value = exc, None
                call.activate()
        except StopIteration as stop:
            call.end(items.text(), None)
            return stop.value
        except GeneratorExit:  # closed early (close(), or garbage collected)
            call.activate()
            try:
                gen.close()
            finally:
                call.deactivate()
                call.end(items.text(), None)
            raise
        except BaseException as exc:
            call.end(None, exc)
            raise

    return wrapper


def _wrap_async_generator(func: Callable[..., AsyncGenerator[Any, Any]], spec: _Spec) -> Callable[..., Any]:
    @functools.wraps(func)
    async def wrapper(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, Any]:
        agen = func(*args, **kwargs)
        call = _begin(spec, args, kwargs)
        if call is None:
            async for item in agen:  # no asend/athrow delegation needed when untraced: plain iteration
                yield item
            return
        items = _Items()
        value: Any = None
        thrown: BaseException | None = None
        try:
            while True:
                try:
                    item = await (agen.asend(value) if thrown is None else agen.athrow(thrown))
                finally:
                    call.deactivate()
                thrown = None
                items.add(item)
                try:
                    value = yield item
                except GeneratorExit:
                    raise
                except BaseException as exc:
                    thrown, value = exc, None
                call.activate()
        except StopAsyncIteration:
            call.end(items.text(), None)
        except GeneratorExit:
            call.activate()
            try:
                await agen.aclose()
            finally:
                call.deactivate()
                call.end(items.text(), None)
            raise
        except BaseException as exc:
            call.end(None, exc)
            raise

    return wrapper


def _decorate(func: Any, kind: str, name: str | None) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_decorate(func.__func__, kind, name))
    spec = _Spec(func, kind, name)
    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, spec)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, spec)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, spec)
    return _wrap_function(func, spec)


@overload
def log(func: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def log(
    func: None = None, /, *, span_type: SpanKind = "workflow", name: str | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def log(
    func: Callable[P, R] | None = None, /, *, span_type: SpanKind = "workflow", name: str | None = None
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace calls of the decorated function as spans of ``span_type`` named ``name`` (default: the function's
    name); see the module docstring. ``@log`` alone makes workflow spans."""
    if span_type not in SPAN_KINDS:
        raise ValueError(f"span_type must be one of {SPAN_KINDS}, got {span_type!r}")

    def decorator(function: Callable[P, R]) -> Callable[P, R]:
        return cast(Callable[P, R], _decorate(function, span_type, name))

    return decorator(func) if func is not None else decorator


class GalileoContext:
    """The type of :data:`galileo_context` (one per process): call it for a ``with`` block."""

    def __call__(
        self,
        project: str | None = None,
        log_stream: str | None = None,
        *,
        trace_id: str | None = None,
        span_id: str | None = None,
        mode: str | None = None,
        session_id: str | None = None,
    ) -> _Scope:
        """A block (``with`` or ``async with``) in which decorated calls go to ``project``/``log_stream``
        (None: from the environment), continuing ``trace_id``/``span_id`` when given (distributed mode),
        their traces in the existing session ``session_id`` when given: the block's own, for the traces its
        context starts (other tasks and threads keep theirs; a malformed id is ignored with a WARNING)."""
        scope = _Scope(project, log_stream, trace_id, span_id, mode)
        if session_id is not None:
            checked = _sessions.check_session_id(session_id)
            if checked is not None:
                scope.own_session, scope.session = True, _sessions.SessionRef(checked)
        return scope

    def get_logger_instance(
        self, project: str | None = None, log_stream: str | None = None, *, mode: str | None = None
    ) -> GalileoLogger:
        """The process's logger for ``project``/``log_stream`` (its trace and stack per context); inside a
        request served through ``TracingMiddleware``, the request's logger. Raises
        :class:`~galileo.exceptions.ConfigurationError` on an invalid configuration."""
        scope = _scope.get()
        request = current_request()
        in_scope = scope is not None and scope.logger is not None and scope.request is request
        if in_scope and scope is not None and scope.logger is not None:
            if project is None and log_stream is None and mode is None:
                return scope.logger
        elif request is not None:
            from galileo.middleware._request import get_request_logger

            return get_request_logger()
        return _context_logger(project, log_stream, mode)

    def flush(self, timeout: float | None = DEFAULT_FLUSH_TIMEOUT) -> int:
        """Hand over what this context's loggers hold and wait (bounded, and only where waiting is safe: not
        in a request nor on an event loop's thread) for everything decorated calls handed over; return the
        records still pending."""
        with _loggers_lock:
            loggers = list(_loggers.values())
        for logger in loggers:
            _hand_over(logger)
        with _handed_lock:
            outboxes, _handed[:] = list(_handed), []
        by_sender: dict[_sender.Sender, list[_sender.Outbox]] = {}
        for outbox in outboxes:
            by_sender.setdefault(outbox.sender, []).append(outbox)
        pending = 0
        deadline = None if timeout is None else time.monotonic() + timeout
        for sender, mine in by_sender.items():
            if _must_not_block():
                pending += sender.busy_pending(mine)[1]
            else:
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                pending += sender.wait(mine, left)
        return pending

    # -- sessions (see galileo._sessions) ------------------------------------------------------------------
    def start_session(
        self,
        name: str | None = None,
        previous_session_id: str | None = None,
        external_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """:meth:`GalileoLogger.start_session` on :meth:`get_logger_instance`'s logger: the session's id,
        or None inside a request handler or on an event loop (the traces carry the session all the same)."""
        try:
            logger = self.get_logger_instance()
        except Exception:
            _warn_once("session", "galileo: galileo_context.start_session() ignored: no logger (%s)")
            return None
        return logger.start_session(name, previous_session_id, external_id, metadata)

    def set_session(self, session_id: str) -> None:
        """:meth:`GalileoLogger.set_session` on :meth:`get_logger_instance`'s logger."""
        try:
            self.get_logger_instance().set_session(session_id)
        except Exception:
            _warn_once("session", "galileo: galileo_context.set_session() ignored: no logger (%s)")

    def clear_session(self) -> None:
        """:meth:`GalileoLogger.clear_session` on :meth:`get_logger_instance`'s logger."""
        try:
            self.get_logger_instance().clear_session()
        except Exception:
            _warn_once("session", "galileo: galileo_context.clear_session() ignored: no logger (%s)")

    def reset(self) -> None:
        """Forget the process's loggers (the next use reads the environment again) and what was handed over;
        records already handed to the sender still go."""
        with _loggers_lock:
            _loggers.clear()
        with _handed_lock:
            _handed.clear()
        _said.clear()

    def __repr__(self) -> str:
        return "galileo_context"


#: Scopes decorated calls and hands out the process's loggers; see the module docstring.
galileo_context = GalileoContext()
#: ``galileo.start_session(...)``, as published: :meth:`GalileoContext.start_session`.
start_session = galileo_context.start_session
