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
inherit it and concurrent ones never see each other's. One call's work (its span, the trace it starts, its
outcome) is :mod:`galileo._log_call`'s; this module wraps the function. Spans are added and concluded through
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
handed to the sender. ``traceparent=``/``tracestate=`` join the block's traces to a W3C (OpenTelemetry)
context, by the rules a request's headers follow (see :mod:`galileo._incoming`). The rest of its surface
(``get_logger_instance``, ``flush``, ``get_current_*``, ...) is described in
:mod:`galileo._galileo_context`; the process's loggers and blocks in :mod:`galileo._context_loggers`; which
logger a call goes to is decided by :func:`galileo._current.current_logger`, the one place the rules above
live.

Never breaks the decorated function: a failure of the SDK (serialisation, configuration, a bad context) is
logged once, as one WARNING line on the ``galileo`` logger naming the cause (e.g. the setting to fix; its
traceback at DEBUG), and the function runs as if undecorated. Return values, exceptions,
``inspect.signature`` and ``functools.wraps`` attributes are preserved; a generator stays lazy (a wrong
argument to a decorated generator function raises at the first item, not at the call).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator, Mapping
from typing import Any, Final, Literal, ParamSpec, TypeVar, cast, overload

from galileo._galileo_context import GalileoContext, galileo_context, start_session
from galileo._log_call import Items, begin
from galileo._log_fields import MAX_CHARS, LogSpec, output_value

__all__ = ["MAX_CHARS", "SPAN_KINDS", "GalileoContext", "SpanKind", "galileo_context", "log", "start_session"]

P = ParamSpec("P")
R = TypeVar("R")

SpanKind = Literal["workflow", "agent", "llm", "retriever", "tool"]
#: The span types ``@log(span_type=...)`` accepts.
SPAN_KINDS: Final = ("workflow", "agent", "llm", "retriever", "tool")


# -- wrappers ------------------------------------------------------------------------------------------------
def _wrap_function(func: Callable[..., Any], spec: LogSpec) -> Callable[..., Any]:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        call = begin(spec, args, kwargs)
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
        call = begin(spec, args, kwargs)
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
        call = begin(spec, args, kwargs)
        if call is None:
            return (yield from gen)
        items = Items()
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
        call = begin(spec, args, kwargs)
        if call is None:
            async for item in agen:  # no asend/athrow delegation needed when untraced: plain iteration
                yield item
            return
        items = Items()
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
