"""``@log`` and ``galileo_context``: tracing without a logger in hand.

Decorate the functions worth seeing in a trace; their calls become spans, nested as the calls nest::

    from galileo import galileo_context, log

    @log(span_type="retriever")
    def search(query: str) -> list[str]: ...

    @log                                    # a workflow span by default
    async def answer(question: str) -> str:
        documents = search(question)       # a retriever span under "answer"
        ...

``@log`` and ``@log(name=None, span_type="workflow"|"agent"|"llm"|"retriever"|"tool", params=None,
dataset_record=None)`` work on functions, async functions, generators and async generators, methods included.
A call records its input (the arguments as passed, by parameter name, ``self``/``cls`` left out, as JSON
text, at most :data:`MAX_CHARS` characters), its output (the return value, or the yielded items joined:
strings concatenated as they are, other items as JSON text one per line; at most :data:`MAX_CHARS`
characters), its duration, and the span fields its arguments give: a parameter named after a field of the
span type (``name``, ``metadata``, ``tags``, ``model``, ``temperature``, ``tools``, ``tool_call_id``,
``agent_type``) fills it, and ``params={field: parameter name | value | function of the arguments}`` names the
source of any field, as the published SDK does (:mod:`galileo._log_fields` has the details and the output
shapes per span type). A call that raises gets ``status_code`` 500 and ``"ExceptionType: message"`` as its
output, and the exception propagates unchanged. A workflow or agent span returning None takes its last
child's output; a trace a call started takes its last child's output, a message or documents as their JSON.

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
4. elsewhere: the process's logger for what ``galileo_context.init(...)`` set in this context, each setting
   not given from the environment (GALILEO_PROJECT, GALILEO_LOG_STREAM, GALILEO_MODE).

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
request). Outside requests, the process's loggers (:class:`galileo._context_loggers.ContextLogger`, one per
project, log stream, experiment and mode) keep what a logger knows of its current trace (its
:class:`~galileo._trace_state.TraceState`: stack, outbox, batch traces, upstream ids, which every logger
reaches through ``_state()``) in a context variable of their own, so one logger object serves concurrent tasks
and threads; the outermost decorated call gives its context a fresh state for its duration. Records go to
the sender, and ``galileo_context.flush()`` waits for them, through the logger only.

``galileo_context``
-------------------
``with galileo_context(project=..., log_stream=..., experiment_id=..., trace_id=..., span_id=..., mode=...):``
(or ``async with``) scopes where decorated calls go; ``galileo_context.init(...)`` sets where they go in this
context outside blocks; on leaving a block, what the block's logger left open in the block is concluded and
handed to the sender. The rest of its surface (``get_logger_instance``, ``flush``, ``get_current_*``, ...) is
described in :mod:`galileo._galileo_context`; the process's loggers and blocks in
:mod:`galileo._context_loggers`.

Never breaks the decorated function: a failure of the SDK (serialisation, configuration, a bad context) is
logged once, as one WARNING line on the ``galileo`` logger naming the cause (e.g. the setting to fix; its
traceback at DEBUG), and the function runs as if undecorated. Return values, exceptions,
``inspect.signature`` and ``functools.wraps`` attributes are preserved; a generator stays lazy (a wrong
argument to a decorated generator function raises at the first item, not at the call).
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from contextvars import Token
from datetime import datetime, timedelta, timezone
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from galileo import schema
from galileo._context import SpanFrame, span_frame
from galileo._context_loggers import ContextLogger, current_logger, hand_over, new_state
from galileo._galileo_context import GalileoContext, galileo_context, start_session
from galileo._log_fields import MAX_CHARS, LogSpec, clip, output_value, to_text, warn_once
from galileo._trace_state import TraceState
from galileo._trace_state import now_ns as _now_ns
from galileo.logger import GalileoLogger

__all__ = ["MAX_CHARS", "SPAN_KINDS", "GalileoContext", "SpanKind", "galileo_context", "log", "start_session"]

P = ParamSpec("P")
R = TypeVar("R")

SpanKind = Literal["workflow", "agent", "llm", "retriever", "tool"]
#: The span types ``@log(span_type=...)`` accepts.
SPAN_KINDS: Final = ("workflow", "agent", "llm", "retriever", "tool")


# -- one decorated call -------------------------------------------------------------------------------------
def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Call:
    """A decorated call in progress: its span (or level), and the trace it started if it is the outermost."""

    __slots__ = (
        "fields",
        "frame",
        "input",
        "logger",
        "name",
        "spec",
        "start_ns",
        "start_wall",
        "tokens",
        "tree",
    )

    def __init__(
        self, spec: LogSpec, logger: GalileoLogger, input_text: str, fields: dict[str, Any] | None
    ) -> None:
        self.spec = spec
        self.logger = logger
        self.input = input_text
        self.fields = fields  # span fields from the arguments (None: none)
        self.name = fields.get("name", spec.name) if fields else spec.name
        self.frame: SpanFrame | None = None
        self.tree: TraceState | None = None  # set when this call started the trace
        self.tokens: tuple[Token[SpanFrame | None] | None, Token[TraceState | None] | None] = (None, None)
        self.start_ns = 0
        self.start_wall: datetime | None = None  # a leaf's start (a level's span records its own)

    def activate(self) -> None:
        """Make this call's span (and trace) current in this context."""
        tree = self.tree
        frame = self.frame
        self.tokens = (
            span_frame.set(frame) if frame is not None else None,
            cast(ContextLogger, self.logger)._use_state(tree) if tree is not None else None,
        )

    def deactivate(self) -> None:
        frame_token, tree_token = self.tokens
        self.tokens = (None, None)
        if tree_token is not None:
            cast(ContextLogger, self.logger)._restore_state(tree_token)
        if frame_token is not None:
            span_frame.reset(frame_token)

    def end(self, output: Any, error: BaseException | None) -> None:
        """Record the outcome (this call must not be active); never raises."""
        try:
            self._end(output, error)
        except Exception:
            warn_once(
                "end", "galileo: could not record a @log call's outcome (%s); the call was not affected"
            )

    def _end(self, output: Any, error: BaseException | None) -> None:
        logger = self.logger
        tree = self.tree
        fields = self.fields or {}
        token = cast(ContextLogger, logger)._use_state(tree) if tree is not None else None
        try:
            status = fields.get("status_code")
            if error is not None:
                status = 500
                output = clip(f"{type(error).__name__}: {_error_text(error)}")
            elif "output" in fields:
                output = output_value(self.spec.kind, fields["output"])
            if self.frame is not None:
                logger._conclude_record(self.frame, output, status, fields.get("redacted_output"))
            else:
                spec = self.spec
                elapsed = _now_ns() - self.start_ns
                created_at = self.start_wall or _utcnow() - timedelta(microseconds=elapsed // 1000)
                kind = spec.kind
                if fields:
                    payload = logger._payload(
                        kind, self.input, output, fields.get("redacted_input"), fields.get("redacted_output")
                    )
                    extra = _leaf_fields(logger, kind, fields)
                else:  # the common case: no metadata nor tags, the attrs defaults as _common would give
                    payload = logger._payload(kind, self.input, output, None, None)
                    extra = {}
                span = spec.cls(**payload, name=self.name, status_code=status, created_at=created_at, **extra)
                logger._add_under(span, elapsed, created_at, opens_level=False)
            if tree is not None:
                with logger._lock:
                    _conclude_trace(logger, status)
                hand_over(logger)
        finally:
            if token is not None:
                cast(ContextLogger, logger)._restore_state(token)


def _leaf_fields(logger: GalileoLogger, kind: str, fields: dict[str, Any]) -> dict[str, Any]:
    """The record keywords of an llm, retriever or tool span's fields (other than input/output/name)."""
    extra = logger._common(fields.get("metadata"), fields.get("tags"), None, fields.get("step_number"))
    if kind == "llm":
        for field in (
            "model",
            "tools",
            "temperature",
            "num_input_tokens",
            "num_output_tokens",
            "finish_reason",
        ):
            if field in fields:
                extra[field] = fields[field]
        if "time_to_first_token_ns" in fields:
            extra["time_to_first_token_ns"] = fields["time_to_first_token_ns"]
        if "total_tokens" in fields:
            extra["num_total_tokens"] = fields["total_tokens"]
    elif kind == "tool" and "tool_call_id" in fields:
        extra["tool_call_id"] = fields["tool_call_id"]
    return extra


def _level_fields(logger: GalileoLogger, kind: str, fields: dict[str, Any] | None) -> dict[str, Any]:
    """The record keywords of a workflow or agent span's fields given when it opens."""
    if not fields:
        return {}
    extra = logger._common(fields.get("metadata"), fields.get("tags"), None, fields.get("step_number"))
    if kind == "agent" and "agent_type" in fields:
        extra["agent_type"] = fields["agent_type"]
    return extra


def _conclude_trace(logger: GalileoLogger, status: int | None) -> None:
    """Before a trace a decorated call started is handed over: an error's status on every open level, and
    the output the trace takes from its last child when that is a message or documents, as their JSON (the
    published SDK's trace output)."""
    if status == 500:
        logger._conclude_all(None, None, None, status)
    stack = logger._state().stack
    trace = stack[0].record if stack else None
    if not isinstance(trace, schema.Trace) or trace.output is not None or not trace.spans:
        return
    last = trace.spans[-1].output
    if isinstance(last, schema.Message):
        trace.output = json.dumps(
            {k: v for k, v in last.to_wire().items() if v is not None}, ensure_ascii=False
        )
    elif isinstance(last, list) and last and all(isinstance(d, schema.Document) for d in last):
        trace.output = json.dumps([d.to_wire() for d in last], ensure_ascii=False)


def _error_text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return ""


def _dataset(record: Any) -> dict[str, Any]:
    """``start_trace`` keywords of a ``dataset_record`` (an object or mapping with input/output/metadata),
    those the logger takes."""
    if record is None:
        return {}
    values = {
        f"dataset_{key}": record.get(key) if isinstance(record, Mapping) else getattr(record, key, None)
        for key in ("input", "output", "metadata")
    }
    return {k: v for k, v in values.items() if v is not None}


def _begin(spec: LogSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Call | None:
    """Open the span of a call (and its trace, for an outermost call), left active; None: run untraced."""
    try:
        frame = span_frame.get()
        logger = frame.logger if frame is not None else current_logger()
        if logger._disabled:
            return None
        call = _Call(spec, logger, spec.input_text(args, kwargs), spec.fields(args, kwargs))
        request = logger._request
        if request is not None and not logger._state().stack:  # a request's trace opens at its first span
            with logger._lock:
                if not logger._state().stack and not request.finalized:
                    logger._open_request_trace(call.input)
        if frame is None and isinstance(logger, ContextLogger):
            here = logger._state_here()
            if here is None or not here.stack:  # no trace in this context: this call is the outermost
                call.tree = new_state(by_call=True)
                token = logger._use_state(call.tree)
                try:
                    logger.start_trace(input=call.input, name=call.name, **_dataset(spec.dataset))
                finally:
                    logger._restore_state(token)
        if call.tree is not None:
            call.activate()  # the trace this call started (its span frame is set below)
        if spec.opens_level:
            now = _utcnow()
            kind = spec.kind  # a level opens without an output: only the input to shape
            given = call.fields.get("redacted_input") if call.fields else None
            span = spec.cls(
                input=logger._policy.input(kind, call.input),
                redacted_input=logger._redacted(kind, "input", call.input, given),
                name=call.name,
                created_at=now,
                **_level_fields(logger, kind, call.fields),
            )
            call.frame = logger._add_under(span, None, now, opens_level=True)
            if call.frame is not None:
                call.tokens = (span_frame.set(call.frame), call.tokens[1])
        else:
            call.start_wall = _utcnow()
        call.start_ns = _now_ns()
        return call
    except Exception:
        warn_once("begin", "galileo: @log could not trace a call (%s); running it untraced")
        return None


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
            text = to_text(item)
        self.parts.append(text)
        self.size += len(text) + 1

    def text(self) -> str | None:
        if not self.parts:
            return None
        text = ("" if self.texts else "\n").join(self.parts)
        if self.omitted:
            text += f"\n…[{self.omitted} more items]"
        return clip(text)


# -- wrappers ------------------------------------------------------------------------------------------------
def _wrap_function(func: Callable[..., Any], spec: LogSpec) -> Callable[..., Any]:
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
        call.end(output_value(spec.kind, result), None)
        return result

    return wrapper


def _wrap_coroutine(func: Callable[..., Awaitable[Any]], spec: LogSpec) -> Callable[..., Any]:
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
        call.end(output_value(spec.kind, result), None)
        return result

    return wrapper


def _wrap_generator(func: Callable[..., Generator[Any, Any, Any]], spec: LogSpec) -> Callable[..., Any]:
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


def _wrap_async_generator(func: Callable[..., AsyncGenerator[Any, Any]], spec: LogSpec) -> Callable[..., Any]:
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


def _decorate(func: Any, spec_args: tuple[str, str | None, Mapping[str, Any] | None, Any]) -> Any:
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(_decorate(func.__func__, spec_args))
    spec = LogSpec(func, *spec_args)
    if inspect.isasyncgenfunction(func):
        return _wrap_async_generator(func, spec)
    if inspect.isgeneratorfunction(func):
        return _wrap_generator(func, spec)
    if inspect.iscoroutinefunction(func):
        return _wrap_coroutine(func, spec)
    return _wrap_function(func, spec)


@overload
def log(func: Callable[P, R]) -> Callable[P, R]: ...


@overload
def log(
    func: None = None,
    *,
    name: str | None = None,
    span_type: SpanKind | None = None,
    params: Mapping[str, str | Callable[[dict[str, Any]], Any]] | None = None,
    dataset_record: Any = None,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def log(
    func: Callable[P, R] | None = None,
    *,
    name: str | None = None,
    span_type: SpanKind | None = None,
    params: Mapping[str, str | Callable[[dict[str, Any]], Any]] | None = None,
    dataset_record: Any = None,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Trace calls of the decorated function as spans of ``span_type`` (default: workflow) named ``name``
    (default: the function's name); ``params`` maps span fields to the arguments (or values, or functions of
    the arguments) that fill them; ``dataset_record`` (an object or mapping with ``input``, ``output``,
    ``metadata``) gives a trace the call starts its dataset fields. See the module docstring and
    :mod:`galileo._log_fields`. ``@log`` alone makes workflow spans."""
    kind = span_type or "workflow"
    if kind not in SPAN_KINDS:
        raise ValueError(f"span_type must be one of {SPAN_KINDS}, got {span_type!r}")
    if params is not None and not isinstance(params, Mapping):
        raise TypeError(f"params must be a mapping of span fields to sources, got {type(params).__name__}")
    spec_args = (kind, name, params, dataset_record)

    def decorator(function: Callable[P, R]) -> Callable[P, R]:
        return cast(Callable[P, R], _decorate(function, spec_args))

    return decorator(func) if func is not None else decorator
