"""GalileoLogger: builds a trace's span tree and hands its records to the process-wide sender.

No network I/O happens here. Construction validates the configuration (raising
:class:`~galileo.exceptions.ConfigurationError`, a :class:`~galileo.exceptions.GalileoLoggerException`, on a
misconfiguration) and nothing else: it starts no thread, registers no hook and sends nothing.

Modes
-----
``batch`` (the default, GALILEO_MODE): traces stay in memory and go in one ``POST /v2/projects/{pid}/traces``
at :meth:`GalileoLogger.flush`. What a batch logger still holds when the interpreter exits (a script that
never called flush) is concluded and sent by the process's one exit drain, bounded like the rest.

``distributed``: every ``start_trace``, ``add_*_span`` and ``conclude`` is handed to the sender as it
happens; the sender posts the trace (``is_complete: false``), each span once its parent is in, a PATCH when
a workflow or agent span concludes, and the trace's ``is_complete`` PATCH last. What was concluded before the
sender took it goes once, already concluded: a span with its output, and a trace concluded with all of its
records (a request that logs and returns within the sender's 5 ms linger) in one ``POST`` that says
``is_complete: true``, with no PATCH after it (see :mod:`galileo._sender`). A logger built with
``trace_id`` (and optionally ``span_id``) continues an upstream service's trace: it sends no trace record of
its own, its top-level spans name the upstream trace and parent, and it never completes or renames that trace.

With an OTLP exporter configured (``GALILEO_OTLP_ENDPOINT``, ``GALILEO_EXPORTER``: see :mod:`galileo.otel`),
every record is also handed to the OTLP export as it concludes (a leaf span: as it is added); with
``exporter="otlp"`` nothing goes to the sender. :meth:`GalileoLogger.flush` waits for that export too.

The span tree
-------------
``start_trace`` opens the trace; ``add_workflow_span`` and ``add_agent_span`` open a level under the current
parent; ``add_llm_span``, ``add_retriever_span`` and ``add_tool_span`` add leaves; ``conclude`` closes the
innermost open level (``conclude_all=True`` closes everything, the trace included). A trace or span concluded
without an output takes its last child's output, turned into text where the schema needs text.

Durations are measured when the caller gives none: a trace or workflow/agent span lasts from its creation to
its ``conclude``; a leaf span added without ``duration_ns`` is taken to cover the time since the previous
event under its parent (the parent's start or the previous sibling), which is the work it describes when
spans are logged right after that work, and its ``created_at`` is set back to that start. Pass
``duration_ns`` (and ``created_at``) to be exact.

Misuse never raises: adding a span with no active trace, or concluding with nothing open, logs a WARNING on
the ``galileo`` logger and is ignored (the span returned is detached and never sent; it is counted as dropped
with reason ``no_trace``). Starting a trace while another is active concludes the first one.

Inputs and outputs are coerced to the shapes the Galileo schemas require, truncated above
``max_payload_chars`` (GALILEO_MAX_PAYLOAD_CHARS) with a visible marker, and passed through the optional
``redact`` hook into ``redacted_input``/``redacted_output`` (see :mod:`galileo.schema`).

The published SDK's surface
---------------------------
The constructor, ``start_trace``, every ``add_*_span``, ``add_single_llm_span_trace``, ``flush``,
``async_flush`` and ``terminate`` take the published 2.7.0 parameters in the published order; ours
(``config``, ``timeout``, ``finish_reason``, the configuration options) come after them, keyword-only.
``span_id`` is the parent span id the logger was built with (None otherwise); the innermost open level is
:meth:`current_parent`. ``trace_id`` is None until a trace exists, then the active (or continued) trace's id.
``project_id`` and ``log_stream_id`` are None until given or resolved by the sender, off the request path.
:meth:`flush` returns what the published SDK returns: the traces sent in batch mode, ``[]`` in distributed
mode. ``created_at`` may be naive (read as UTC), aware (converted) or odd (the current time, with a
WARNING): see :mod:`galileo._timestamps`. ``ingestion_hook`` (batch mode) receives each flush's batch on a
thread of its own (see :mod:`galileo._ingestion`); ``local_metrics`` are accepted and not computed. The
further published methods (``add_trace``, ``add_child_span_to_parent``, ``add_protect_span``,
``previous_parent``, ``reset_parent_tracking``, ``ingest_traces``) are in :mod:`galileo._logger_api`.

Thread safety: one logger may be used from several threads or tasks of one request; its state (what it knows
of its current trace: a :class:`~galileo._trace_state.TraceState`, reached through ``_state()``) is guarded by
a lock. Blocking: :meth:`flush` waits (bounded by ``timeout``) only outside a running event loop; on a thread
that runs an event loop it enqueues and returns at once, and :meth:`async_flush` waits without blocking.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import sys
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from galileo import _ingestion, _params, _sender, _sessions, schema
from galileo._context import RequestState, SpanFrame, request_state, span_frame
from galileo._ingestion import IngestionHook
from galileo._logger_api import PublishedLoggerApi, _agent_type, _events, _set_dataset
from galileo._timestamps import created_at_or_now
from galileo._trace_state import PRUNE_OUTBOXES, Level, TraceState
from galileo._trace_state import now_ns as _now_ns
from galileo._transport import Result, Target
from galileo.config import GalileoConfig
from galileo.exceptions import ConfigurationError
from galileo.otel import _hook as _otel
from galileo.propagation import outgoing_headers

__all__ = ["DEFAULT_FLUSH_TIMEOUT", "FlushResult", "GalileoLogger", "Handed", "TraceHandle", "count_dropped"]

_log = logging.getLogger("galileo")

#: How long a blocking :meth:`GalileoLogger.flush` waits for delivery when no timeout is given.
DEFAULT_FLUSH_TIMEOUT = 30.0

#: What a logger handed to the sender and may wait on (an outbox); other modules hold it, never look inside.
Handed: TypeAlias = _sender.Handle
#: A trace's outbox at the sender (distributed mode), which the logger hands the trace's records to.
TraceHandle: TypeAlias = _sender.Handle

_S = TypeVar("_S", bound=schema.Span)

#: How long the interpreter's exit waits for ingestion hooks still running batches nobody flushed.
_HOOK_EXIT_WAIT = 10.0


def _must_not_block() -> bool:
    """True inside a request (any thread) or on a thread running an event loop (asyncio or trio).

    There a blocking wait would delay a response or stall every request on the loop.
    """
    if request_state.get() is not None:  # current_request(), without a call: it runs on request paths
        return True
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return True
    trio = sys.modules.get("trio")  # only a program that imported trio can be running its loop
    if trio is not None:
        try:
            trio.lowlevel.current_task()
        except Exception:  # RuntimeError outside trio's loop
            return False
        return True
    return False


def _check_uuid(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, AttributeError, TypeError):
        raise ConfigurationError(name, "must be a UUID string", value) from None


class FlushResult(list[schema.Trace]):
    """What :meth:`GalileoLogger.flush` returns: the traces flushed, and ``pending``, the records of this
    logger not yet delivered (0 once everything was acknowledged).

    As published, the list (and so ``len(flush())``) holds the traces this flush *handed over*, in batch
    mode, whether or not they were delivered by the time it returned: delivery is what ``pending`` says.
    After a flush that waited, ``pending`` is what was left when it returned (a flush returns early, with
    its records pending, when the API is known to be down: they are retried, then given up and counted,
    as ever). After one that did not wait (inside a request, on an event loop) it is counted when first read.
    """

    def __init__(
        self,
        traces: Sequence[schema.Trace] = (),
        *,
        pending: int = 0,
        count_pending: Callable[[], int] | None = None,
    ) -> None:
        list.__init__(self, traces)
        self._pending = pending
        self._count_pending = count_pending

    @property
    def pending(self) -> int:
        if self._count_pending is not None:
            self._pending, self._count_pending = self._count_pending(), None
        return self._pending

    def __repr__(self) -> str:
        return f"FlushResult({list.__repr__(self)}, pending={self.pending})"


class GalileoLogger(PublishedLoggerApi):
    """Logs traces and spans to Galileo; see the module docstring for modes, tree rules and blocking.

    ``project``/``log_stream`` (or ``project_id``/``log_stream_id``, or ``experiment_id``) say where records
    go; anything not given comes from the environment (GALILEO_PROJECT, ...), then defaults to "default".
    The parameters are the published SDK's, in its order: ``GalileoLogger("p", "s")`` names project "p" and
    project id "s"; write ``GalileoLogger(project="p", log_stream="s")``.
    ``trace_id``/``span_id`` continue an upstream trace in distributed mode. Further configuration
    (``api_key``, ``api_url``, ``console_url``, ``extra_headers``, ``max_payload_chars``, ``redact``,
    ``timeout``, ``logging_disabled``) may be given here or as ``config=GalileoConfig.resolve(...)``.
    """

    #: The session of the traces this logger starts (see :mod:`galileo._sessions`); None: no session.
    _session: _sessions.SessionRef | None = None
    # What every logger starts with besides what _setup gives it (immutable values, shared until a logger sets
    # its own): a request's logger is made without __init__ (see _for_request).
    _span_id_given: str | None = None
    _ingestion_hook: IngestionHook | None = None
    local_metrics: list[Any] | None = None
    #: Handed to the ingestion hook, not yet waited for.
    _hook_jobs: tuple[_ingestion.HookJob, ...] = ()
    # Set for the request logger of TracingMiddleware (see _for_request):
    _request: RequestState | None = None
    _auto_trace: schema.Trace | None = None
    _auto_output: tuple[Any, Any, int | None] | None = None
    _finalizing = False
    _finalized_request = False  # set once TracingMiddleware finalised this request logger

    def __init__(
        self,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        trace_id: str | None = None,
        span_id: str | None = None,
        local_metrics: Sequence[Any] | None = None,
        mode: str | None = None,
        ingestion_hook: IngestionHook | None = None,
        *,
        config: GalileoConfig | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            config = GalileoConfig.resolve(
                project=project,
                log_stream=log_stream,
                project_id=project_id,
                log_stream_id=log_stream_id,
                experiment_id=experiment_id,
                mode=mode,
                **options,
            )
        elif options or mode is not None:
            import attrs

            changes = dict(options)
            if mode is not None:
                changes["mode"] = mode
            config = attrs.evolve(config, **changes)
        upstream_trace = _check_uuid("trace_id", trace_id)
        upstream_parent = _check_uuid("span_id", span_id)
        if upstream_parent is not None and upstream_trace is None:
            raise ConfigurationError("span_id", "continuing a trace needs trace_id as well as span_id")
        if ingestion_hook is not None and config.mode == "distributed":
            raise ConfigurationError(
                "ingestion_hook", "needs mode='batch': the hook is given each flush's batch"
            )
        if ingestion_hook is not None and not callable(ingestion_hook):
            raise ConfigurationError("ingestion_hook", "must be a callable", type(ingestion_hook).__name__)
        if upstream_trace is not None and config.mode != "distributed":
            raise ConfigurationError(
                "GALILEO_MODE",
                "continuing an upstream trace (trace_id=...) needs mode='distributed'",
                config.mode,
            )
        self._setup(config, TraceState(upstream_trace, upstream_parent))
        self._span_id_given = upstream_parent  # the published ``span_id``: what the logger was built with
        self._ingestion_hook = ingestion_hook
        self.local_metrics = list(local_metrics) if local_metrics else None
        if self.local_metrics:
            _log.warning("galileo: local_metrics are accepted but not computed by this SDK (see the README)")

    def _setup(self, config: GalileoConfig, state: TraceState) -> None:
        """What every logger has (a request's logger is made with this alone, see :meth:`_for_request`): its
        settings, its lock and its trace's state; the rest starts as the class attributes say."""
        self._config = config
        self._policy = config.payload_policy
        self._target = Target.from_config(config)
        self._disabled = config.logging_disabled
        self._export = _otel.export_for(config)  # OTLP export of concluded records (None: Galileo only)
        self._lock = threading.RLock()
        self._own_state = state

    def _state(self) -> TraceState:
        """What this logger knows of its current trace (see :mod:`galileo._trace_state`); the process
        loggers of ``@log`` (:class:`~galileo._context_loggers.ContextLogger`) keep one per context."""
        return self._own_state

    def __repr__(self) -> str:
        return (
            f"<GalileoLogger mode={self.mode!r} project={self._config.project or self._config.project_id!r} "
            f"log_stream={self._config.log_stream or self._config.log_stream_id!r} "
            f"trace_id={self.trace_id!r}>"
        )

    # -- properties ------------------------------------------------------------------------------------------
    @property
    def mode(self) -> str:
        return self._config.mode

    @property
    def config(self) -> GalileoConfig:
        return self._config

    @property
    def trace_id(self) -> str | None:
        """The root trace id: this logger's active trace, or the upstream trace it continues; else None."""
        state = self._state()
        if state.upstream_trace_id is not None:
            return state.upstream_trace_id
        stack = state.stack
        if stack and stack[0].record is not None:
            return stack[0].id
        return None

    @property
    def span_id(self) -> str | None:
        """The parent span id this logger was constructed with (``span_id=``), as published; else None.

        The innermost open span is :meth:`current_parent`.
        """
        return self._span_id_given

    def current_parent(self) -> schema.Record | None:
        """The innermost open record (trace, workflow or agent span); None with nothing open or upstream."""
        with self._lock:
            stack = self._state().stack
            return self._parent_under(stack[-1]).record if stack else None

    def has_active_trace(self) -> bool:
        return bool(self._state().stack)

    # -- building the tree ---------------------------------------------------------------------------------
    def start_trace(
        self,
        input: Any,
        redacted_input: Any = None,
        name: str | None = None,
        duration_ns: int | None = None,
        created_at: _dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        dataset_input: str | None = None,
        dataset_output: str | None = None,
        dataset_metadata: Mapping[str, Any] | None = None,
        external_id: str | None = None,
    ) -> schema.Trace:
        """Open a trace (a continuing logger has its upstream trace already: it warns and sends nothing)."""
        trace = self._new_trace(
            input, redacted_input, name, duration_ns, created_at, metadata, tags, external_id
        )
        if dataset_input is not None or dataset_output is not None or dataset_metadata is not None:
            _set_dataset(trace, dataset_input, dataset_output, dataset_metadata)
        self._open_trace(trace)
        return trace

    def _new_trace(
        self,
        input: Any,
        redacted_input: Any,
        name: str | None,
        duration_ns: int | None,
        created_at: Any,
        metadata: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
        external_id: str | None,
    ) -> schema.Trace:
        policy = self._policy
        trace = schema.Trace(
            input=policy.input("trace", input),
            name=name or "",
            created_at=_utcnow() if created_at is None else created_at_or_now(created_at, "start_trace"),
            duration_ns=duration_ns,
            external_id=external_id,
        )
        if redacted_input is not None or policy.redact is not None:
            trace.redacted_input = self._redacted("trace", "input", input, redacted_input)
        if metadata is not None:
            trace.user_metadata = policy.metadata(metadata)
        if tags is not None:
            trace.tags = policy.tags(tags)
        return trace

    def _open_trace(self, trace: schema.Trace) -> None:
        if self._disabled:
            return
        with self._lock:
            state = self._state()
            if state.upstream_trace_id is not None:
                _log.warning(
                    "galileo: start_trace ignored: this logger continues upstream trace %s",
                    state.upstream_trace_id,
                )
                return
            if state.stack:
                _log.warning(
                    "galileo: start_trace while trace %s is active: concluding it first", self.trace_id
                )
                self._conclude_all()
            self._begin_trace(trace)

    def _begin_trace(self, trace: schema.Trace) -> None:
        """Make ``trace`` the open root (under the lock, nothing open): in distributed mode its outbox opens
        and the trace record is handed to the sender; in batch mode it waits for flush (or the exit drain)."""
        state = self._state()
        config = self._config
        w3c = state.w3c  # joined to an OTel trace: the mapped id (the first), OTel ids in metadata
        if w3c is not None and not w3c.begin_trace(trace, config.mode == "distributed"):
            state.continue_upstream(trace.id)  # another request here opened it (see galileo._incoming)
            return
        state.stack.append(Level(trace, trace.id, _now_ns()))
        state.traces.append(trace)
        if config.mode != "distributed" or config.exporter == "otlp":
            if self not in _unflushed:
                _unflushed.add(self)
                _sender.at_exit(_flush_unflushed)
            return
        state.outbox = outbox = _sender.get_sender(config).open_trace(
            config, self._target, trace.id, owned=True, session=self._session
        )
        state.outboxes.append(outbox)
        outbox.add(trace, None)

    def add_llm_span(
        self,
        input: Any,
        output: Any,
        model: str | None = None,
        redacted_input: Any = None,
        redacted_output: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        name: str | None = None,
        created_at: _dt.datetime | None = None,
        duration_ns: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        num_input_tokens: int | None = None,
        num_output_tokens: int | None = None,
        total_tokens: int | None = None,
        temperature: float | None = None,
        status_code: int | None = None,
        time_to_first_token_ns: int | None = None,
        step_number: int | None = None,
        events: Sequence[Any] | None = None,
        *,
        finish_reason: str | None = None,
    ) -> schema.LlmSpan:
        """Add an llm span (a leaf) under the current parent."""
        span = schema.LlmSpan(
            **self._payload("llm", input, output, redacted_input, redacted_output),
            name=name or "",
            model=model,
            tools=tools,  # checked (and copied) by the record: galileo._params
            num_input_tokens=num_input_tokens,
            num_output_tokens=num_output_tokens,
            num_total_tokens=total_tokens,
            temperature=temperature,
            time_to_first_token_ns=time_to_first_token_ns,
            finish_reason=finish_reason,
            **self._common(metadata, tags, status_code, step_number),
        )
        if events is not None:
            span.events = _events(events)
        return self._add(span, duration_ns, created_at, opens_level=False)

    def add_retriever_span(
        self,
        input: Any,
        output: Any,
        redacted_input: Any = None,
        redacted_output: Any = None,
        name: str | None = None,
        duration_ns: int | None = None,
        created_at: _dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        status_code: int | None = None,
        step_number: int | None = None,
    ) -> schema.RetrieverSpan:
        """Add a retriever span (a leaf): ``output`` is the documents (strings, dicts or Documents)."""
        span = schema.RetrieverSpan(
            **self._payload("retriever", input, output, redacted_input, redacted_output),
            name=name or "",
            **self._common(metadata, tags, status_code, step_number),
        )
        return self._add(span, duration_ns, created_at, opens_level=False)

    def add_tool_span(
        self,
        input: Any,
        redacted_input: Any = None,
        output: Any = None,
        redacted_output: Any = None,
        name: str | None = None,
        duration_ns: int | None = None,
        created_at: _dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        status_code: int | None = None,
        tool_call_id: str | None = None,
        step_number: int | None = None,
    ) -> schema.ToolSpan:
        """Add a tool span (a leaf)."""
        span = schema.ToolSpan(
            **self._payload("tool", input, output, redacted_input, redacted_output),
            name=name or "",
            tool_call_id=tool_call_id,
            **self._common(metadata, tags, status_code, step_number),
        )
        return self._add(span, duration_ns, created_at, opens_level=False)

    def add_workflow_span(
        self,
        input: Any,
        redacted_input: Any = None,
        output: Any = None,
        redacted_output: Any = None,
        name: str | None = None,
        duration_ns: int | None = None,
        created_at: _dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        step_number: int | None = None,
        status_code: int | None = None,
    ) -> schema.WorkflowSpan:
        """Open a workflow span under the current parent; later spans nest in it until :meth:`conclude`."""
        span = schema.WorkflowSpan(
            **self._payload("workflow", input, output, redacted_input, redacted_output),
            name=name or "",
            **self._common(metadata, tags, status_code, step_number),
        )
        return self._add(span, duration_ns, created_at, opens_level=True)

    def add_agent_span(
        self,
        input: Any,
        redacted_input: Any = None,
        output: Any = None,
        redacted_output: Any = None,
        name: str | None = None,
        duration_ns: int | None = None,
        created_at: _dt.datetime | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        agent_type: str | None = None,
        step_number: int | None = None,
        status_code: int | None = None,
    ) -> schema.AgentSpan:
        """Open an agent span under the current parent; later spans nest in it until :meth:`conclude`."""
        span = schema.AgentSpan(
            **self._payload("agent", input, output, redacted_input, redacted_output),
            name=name or "",
            agent_type=_agent_type(agent_type),
            **self._common(metadata, tags, status_code, step_number),
        )
        return self._add(span, duration_ns, created_at, opens_level=True)

    def add_single_llm_span_trace(
        self,
        input: Any,
        output: Any,
        model: str | None = None,
        redacted_input: Any = None,
        redacted_output: Any = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        name: str | None = None,
        created_at: _dt.datetime | None = None,
        duration_ns: int | None = None,
        metadata: Mapping[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        num_input_tokens: int | None = None,
        num_output_tokens: int | None = None,
        total_tokens: int | None = None,
        temperature: float | None = None,
        status_code: int | None = None,
        time_to_first_token_ns: int | None = None,
        dataset_input: str | None = None,
        dataset_output: str | None = None,
        dataset_metadata: Mapping[str, Any] | None = None,
        span_step_number: int | None = None,
    ) -> schema.Trace:
        """A whole trace holding one llm span, concluded at once (its input/output become text)."""
        text = schema.to_text(self._policy.input("llm", input))
        trace = self.start_trace(
            input=text,
            name=name,
            created_at=created_at,
            metadata=metadata,
            tags=tags,
            dataset_input=dataset_input,
            dataset_output=dataset_output,
            dataset_metadata=dataset_metadata,
        )
        self.add_llm_span(
            input=input,
            output=output,
            model=model,
            redacted_input=redacted_input,
            redacted_output=redacted_output,
            tools=tools,
            name=name,
            duration_ns=duration_ns,
            created_at=created_at,
            metadata=metadata,
            tags=tags,
            num_input_tokens=num_input_tokens,
            num_output_tokens=num_output_tokens,
            total_tokens=total_tokens,
            temperature=temperature,
            status_code=status_code,
            time_to_first_token_ns=time_to_first_token_ns,
            step_number=span_step_number,
        )
        self.conclude(duration_ns=duration_ns, status_code=status_code)
        return trace

    def conclude(
        self,
        output: Any = None,
        redacted_output: Any = None,
        duration_ns: int | None = None,
        status_code: int | None = None,
        conclude_all: bool = False,
    ) -> schema.Record | None:
        """Close the innermost open level (all of them with ``conclude_all``); return the new current parent.

        With nothing open (or only an upstream parent, which this logger does not own), logs a WARNING and
        returns None.
        """
        if self._disabled:
            return None
        with self._lock:
            stack = self._state().stack
            top = stack[-1].record if stack else None
            if top is None:
                _log.warning("galileo: conclude() with nothing open: ignored")
                return None
            if top is self._auto_trace:
                # The request's trace closes with the response; keep what the user said for then.
                if output is not None or status_code is not None:
                    self._auto_output = (output, redacted_output, status_code)
                return top
            if conclude_all:
                self._conclude_all(output, redacted_output, duration_ns, status_code)
            else:
                self._conclude_top(output, redacted_output, duration_ns, status_code)
            return self._parent_under(stack[-1]).record if stack else None  # (current_parent, inlined)

    def _conclude_all(
        self,
        output: Any = None,
        redacted_output: Any = None,
        duration_ns: int | None = None,
        status_code: int | None = None,
    ) -> None:
        stack = self._state().stack
        while stack and stack[-1].record is not None:
            self._conclude_top(output, redacted_output, duration_ns, status_code)

    def _conclude_top(
        self, output: Any, redacted_output: Any, duration_ns: int | None, status_code: int | None
    ) -> None:
        state = self._state()
        stack = state.stack
        entry = stack.pop()
        record = entry.record
        assert record is not None
        now = self._finish(entry, output, redacted_output, duration_ns, status_code)
        if self._export is not None:
            self._export.concluded(record, self._parent_under(stack[-1]).id if stack else None, state)
        if stack:
            outer = stack[-1]
            outer.last_ns = now
            outer.last_wall = _utcnow()
        if self._config.mode == "distributed":
            outbox = state.outbox
            if outbox is None:
                return
            if isinstance(record, schema.Trace):
                outbox.complete(record)
                state.outbox = None
            else:
                outbox.conclude(record.id)

    def _finish(
        self,
        entry: Level,
        output: Any,
        redacted_output: Any,
        duration_ns: int | None,
        status_code: int | None,
    ) -> int:
        """Give a level's record its final output (its last child's when none), duration and status; the
        time it was concluded (``_now_ns``) is returned."""
        record = entry.record
        assert record is not None
        now = _now_ns()
        kind = record.type
        if duration_ns is not None and type(duration_ns) is not int:  # a wrong type: timed as if not given
            duration_ns = _params.as_int("duration_ns", duration_ns)
        if output is None and record.output is None:
            children = getattr(record, "spans", None)
            if children:
                output = children[-1].output
        if output is not None:
            record.output = self._policy.output(kind, output)
            record.redacted_output = self._redacted(kind, "output", output, redacted_output)
        if record.duration_ns is None:
            record.duration_ns = duration_ns if duration_ns is not None else now - entry.start_ns
        elif duration_ns is not None:
            record.duration_ns = duration_ns
        if status_code is not None:  # records check their fields when built, not on assignment (a hook on
            # every attribute set cost 1.2 us a set, 80x the plain one: see galileo.schema)
            record.status_code = status_code if type(status_code) is int else _params.status_code(status_code)
        return now

    def get_tracing_headers(self) -> dict[str, str]:
        """Headers that make a downstream service continue this trace under the current parent.

        ``X-Galileo-Trace-ID`` is the root trace id, ``X-Galileo-Parent-ID`` the innermost open record (the
        trace itself, an open workflow/agent span, or the upstream parent); ``traceparent`` and ``tracestate``
        name the same parent to OpenTelemetry (see :mod:`galileo.propagation`). In distributed mode the
        records these ids name are moved to the front of the sender's queue, since another service is about to
        point at them. With no trace: the request logger opens its trace now; any other logger warns and
        returns {}.
        """
        if self._disabled:
            return {}
        with self._lock:
            state = self._state()
            stack = state.stack
            if not stack and self._request is not None and not self._request.finalized:
                self._open_request_trace("")
            if not stack:
                _log.warning("galileo: get_tracing_headers() with no active trace: no headers")
                return {}
            trace_id = self.trace_id
            assert trace_id is not None
            w3c = None if state.w3c is None else state.w3c.context
            headers = outgoing_headers(trace_id, self._parent_under(stack[-1]).id, w3c)
            outbox = state.outbox
        if outbox is not None:
            _sender.get_sender(self._config).prioritize(outbox)
        return headers

    # -- sessions (see galileo._sessions) -----------------------------------------------------------------
    @property
    def session_id(self) -> str | None:
        """The id of the session this logger's traces belong to; None without one, and while a session
        started inside a request is not created yet (its traces carry its id all the same)."""
        session = self._session
        return None if session is None else session.id

    @session_id.setter
    def session_id(self, value: str | None) -> None:
        if value is None:
            self.clear_session()
        else:
            self.set_session(value)

    def start_session(
        self,
        name: str | None = None,
        previous_session_id: str | None = None,
        external_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """Start a session (or, with ``external_id``, reuse the one of that external id in this logger's log
        stream or experiment); the traces this logger starts from now on belong to it.

        Off a request and off an event loop it waits for the API (each exchange bounded by the configured
        timeout) and returns the session's id. Inside a request handler, or on a thread running an event
        loop, it returns None at once: the sender creates the session before the first trace that needs it
        goes out, and every trace of this logger carries its id (``await async_start_session(...)`` returns
        the id without blocking the loop). Never raises: a session the API would not create is reported in a
        WARNING and its traces are sent without one (counted in ``galileo.stats()``).
        """
        session = self._new_session(name, previous_session_id, external_id, metadata)
        if session is None or _must_not_block():
            return None
        resolved = _sender.get_sender(self._config).resolve_session(self._config, self._target, session)
        return self._resolve_session(session, resolved)

    async def async_start_session(
        self,
        name: str | None = None,
        previous_session_id: str | None = None,
        external_id: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> str | None:
        """:meth:`start_session` that waits for the session's id without blocking the event loop (the
        exchanges run in the loop's default executor); returns the id, or None when it could not be had."""
        session = self._new_session(name, previous_session_id, external_id, metadata)
        if session is None:
            return None
        loop = asyncio.get_running_loop()
        resolve = _sender.get_sender(self._config).resolve_session
        resolved = await loop.run_in_executor(None, resolve, self._config, self._target, session)
        return self._resolve_session(session, resolved)

    def set_session(self, session_id: str) -> None:
        """Make the traces this logger starts from now on belong to the existing session ``session_id``
        (a UUID; anything else is ignored with a WARNING, as the API would refuse the traces)."""
        checked = _sessions.check_session_id(session_id)
        if checked is not None:
            self._session = _sessions.SessionRef(checked)

    def clear_session(self) -> None:
        """The traces this logger starts from now on belong to no session."""
        self._session = None

    def _new_session(
        self, name: Any, previous_session_id: Any, external_id: Any, metadata: Any
    ) -> _sessions.SessionRef | None:
        """The session a ``start_session`` call asks for, set as this logger's; None when logging is off."""
        if self._disabled:
            return None
        session = _sessions.new_session(name, previous_session_id, external_id, metadata)
        if self._ingestion_hook is not None:  # records go to a hook, not to an API
            session.id = str(uuid.uuid4())
        self._session = session
        return session

    def _resolve_session(self, session: _sessions.SessionRef, resolved: str | Result | None) -> str | None:
        """What ``start_session`` returns once ``session.resolve`` answered ``resolved``."""
        if isinstance(resolved, str):
            return resolved
        if resolved is None:  # refused for good: say so once, count it, and log without a session
            _sender.get_sender(self._config).note_session_failed(session)
            if self._session is session:
                self._session = None
            return None
        _log.warning(
            "galileo: could not reach the API to start a session (%s); it is created before this logger's "
            "next trace goes out",
            resolved.detail,
        )
        return None

    # -- the request logger (TracingMiddleware) --------------------------------------------------------------
    @classmethod
    def _for_request(cls, state: RequestState, config: GalileoConfig) -> GalileoLogger:
        """The distributed-mode logger of one request, continuing the trace its headers name (if any).

        Without upstream headers it opens a trace of its own lazily, at the first ``add_*_span`` or
        ``get_tracing_headers()``, named ``METHOD route-path`` with the first span's input; the user's
        ``conclude()`` closes their spans, never that trace, which completes at :meth:`_finalize_request`.
        """
        if config.mode != "distributed":
            import attrs

            config = attrs.evolve(config, mode="distributed")
        # One logger per request: made without __init__, whose checks the middleware's config passed already
        # (the upstream ids too: the header parser validated and normalised them).
        logger = object.__new__(cls)
        logger._setup(config, TraceState(*state._context()))  # (state.trace_id and parent_id, in one call)
        logger._request = state
        return logger

    def _open_request_trace(self, first_input: Any) -> None:
        """Open the request's own trace (under the lock, with nothing open): what :meth:`start_trace` does,
        without the checks that cannot apply to a request logger here (it is enabled, in distributed mode,
        continues no upstream trace and has no trace open)."""
        state = self._request
        assert state is not None
        text = first_input if type(first_input) is str else schema.to_text(first_input)
        policy = self._policy
        trace = schema.Trace(
            input=policy.input("trace", text),
            name=f"{state.method} {state.route_path()}",
            created_at=_utcnow(),
        )
        if policy.redact is not None:
            trace.redacted_input = self._redacted("trace", "input", text, None)
        self._auto_trace = trace
        self._begin_trace(trace)

    def _finalize_request(self, status_code: int) -> None:
        """Conclude what the handler left open and complete the request's trace; enqueue only, never wait."""
        if self._disabled:
            self._request = None  # (see below)
            return
        with self._lock:
            self._finalizing = True
            try:
                state = self._state()
                stack = state.stack
                while stack and stack[-1].record is not None:
                    top = stack[-1].record
                    if top is self._auto_trace and self._auto_output is not None:
                        output, redacted, user_status = self._auto_output
                        self._conclude_top(output, redacted, None, user_status or status_code)
                    elif isinstance(top, schema.Trace):
                        self._conclude_top(None, None, None, status_code)
                    else:
                        self._conclude_top(None, None, None, None)
                # What _enqueue_all would do now that nothing with a record is open (a request logger is in
                # distributed mode): forget the traces handed over, prune the outboxes.
                state.traces = []
                self._prune(state)
            finally:
                self._finalizing = False
                # The request is over: let go of its state. It refers to this logger, and a reference cycle
                # would keep the request's records, outboxes and ASGI scope alive until the garbage collector
                # runs (under the lock: readers check ``_request`` and its ``finalized`` under it too).
                self._request = None

    # -- sending -------------------------------------------------------------------------------------------
    def flush(
        self,
        on_error: Callable[[Exception], None] | None = None,
        *,
        timeout: float | None = DEFAULT_FLUSH_TIMEOUT,
    ) -> FlushResult:
        """Conclude what is open, hand everything to the sender, and wait (bounded) where waiting is safe.

        Returns what the published SDK returns, as a :class:`FlushResult` (a list): in batch mode the traces
        sent (those this logger started since the last flush), in distributed mode ``[]`` (its records went
        as they were logged). Its ``pending`` is the number of this logger's records not yet delivered when
        flush returned.

        - Inside a request (on any thread, through ``TracingMiddleware``) or on a thread running an event
          loop (asyncio or trio): concludes, enqueues and returns at once, with no network wait (``pending``
          is then what is still queued). The request's own trace completes with the response.
        - Elsewhere: waits until the records are delivered or ``timeout`` seconds pass (None: no bound),
          the OTLP export's included (see :mod:`galileo.otel`): one ``timeout`` for both.
        - Never raises because of the backend; records that cannot be delivered are retried within the
          retry window, then counted in ``galileo.stats()`` and logged. ``on_error`` receives what an
          ``ingestion_hook`` raised, when this flush waited for the hook (see :mod:`galileo._ingestion`).

        Use :meth:`async_flush` to wait for delivery from async code without blocking the loop.
        """
        with self._lock:
            traces, outboxes = self._enqueue_all()
            jobs = self._hook_jobs
            if jobs:
                self._hook_jobs = ()
        traces = self._sent(traces)
        if self._export is not None and not _must_not_block():
            timeout = _export_first(self._export, timeout)
        if jobs:
            return self._wait_for_hook(traces, jobs, on_error, timeout)
        if not outboxes:
            return FlushResult(traces)
        sender = _sender.get_sender(self._config)
        if _must_not_block():
            return FlushResult(traces, count_pending=lambda: sender.busy_pending(outboxes)[1])
        pending = sender.wait(outboxes, timeout)
        if not pending:
            self._forget(outboxes)
        return FlushResult(traces, pending=pending)

    def _wait_for_hook(
        self,
        traces: list[schema.Trace],
        jobs: Sequence[_ingestion.HookJob],
        on_error: Callable[[Exception], None] | None,
        timeout: float | None,
    ) -> FlushResult:
        """A flush of a logger with an ``ingestion_hook``: wait for the hook where waiting is safe."""
        if _must_not_block():
            return FlushResult(traces, count_pending=lambda: _ingestion.wait(jobs, 0))
        pending = _ingestion.wait(jobs, timeout)
        _ingestion.report(jobs, on_error)
        return FlushResult(traces, pending=pending)

    async def async_flush(self, *, timeout: float | None = DEFAULT_FLUSH_TIMEOUT) -> FlushResult:
        """Like :meth:`flush` outside a loop: waits (bounded) for delivery without blocking the event loop."""
        with self._lock:
            traces, outboxes = self._enqueue_all()
            jobs = self._hook_jobs
            if jobs:
                self._hook_jobs = ()
        traces = self._sent(traces)
        if self._export is not None:
            timeout = await asyncio.get_running_loop().run_in_executor(
                None, _export_first, self._export, timeout
            )
        if jobs:
            loop = asyncio.get_running_loop()
            pending = await loop.run_in_executor(None, _ingestion.wait, jobs, timeout)
            return FlushResult(traces, pending=pending)
        if not outboxes:
            return FlushResult(traces)
        sender = _sender.get_sender(self._config)
        pending = await asyncio.get_running_loop().run_in_executor(None, sender.wait, outboxes, timeout)
        if not pending:
            self._forget(outboxes)
        return FlushResult(traces, pending=pending)

    def _sent(self, traces: list[schema.Trace]) -> list[schema.Trace]:
        """What a flush returns, as published: the batch sent, or ``[]`` in distributed mode."""
        return traces if self._config.mode != "distributed" else []

    def terminate(self, *, timeout: float | None = DEFAULT_FLUSH_TIMEOUT) -> None:
        """Flush and release this logger's state (never the process-wide sender)."""
        self.flush(timeout=timeout)
        with self._lock:
            state = self._state()
            state.outboxes.clear()
            state.traces.clear()

    def _forget(self, outboxes: Sequence[Handed]) -> None:
        """Forget outboxes found idle (delivered): a later flush has nothing to wait for in them."""
        done = set(outboxes)
        with self._lock:
            state = self._state()
            state.outboxes = [ob for ob in state.outboxes if ob not in done]

    # -- handing over and waiting, for galileo_context (the sender is known to this module only) -------------
    def _hand_over(self) -> list[Handed]:
        """Conclude what this logger holds (in this context) and hand it to the sender, never waiting; return
        what to wait on for its delivery (see :meth:`_wait_handed`)."""
        with self._lock:
            return self._enqueue_all()[1]

    def _take_hook_jobs(self) -> tuple[_ingestion.HookJob, ...]:
        """The batches handed to this logger's ``ingestion_hook`` and not yet waited for (now forgotten)."""
        with self._lock:
            jobs, self._hook_jobs = self._hook_jobs, ()
        return jobs

    @staticmethod
    def _wait_handed(handed: Sequence[Handed], timeout: float | None) -> int:
        """Wait until ``handed`` (from :meth:`_hand_over`, of any logger) is delivered, at most ``timeout``
        seconds, and only where waiting is safe (not in a request nor on an event loop's thread: there it
        counts without waiting); return the records still pending."""
        sender = _sender.current()
        if not handed or sender is None:  # (none: a sender from before a fork or a reset)
            return 0
        if _must_not_block():
            return sender.busy_pending(handed)[1]
        return sender.wait(handed, timeout)

    def _still_busy(self, handed: list[Handed], floor: int = PRUNE_OUTBOXES) -> tuple[list[Handed], int]:
        """``handed`` without what was delivered, and the length past which to look again: at least
        ``floor``, twice what is still busy, so that pruning a list kept to wait on is amortised."""
        return _sender.get_sender(self._config).prune(handed, floor)

    def _enqueue_all(self) -> tuple[list[schema.Trace], list[Handed]]:
        """Conclude and hand over: (traces since the last flush, the outboxes that may still have work).

        Takes no sender lock: the caller asks the sender what is pending only if it wants to know. A
        long-lived logger's list of outboxes is pruned of delivered ones here once it grows past
        ``prune_at`` (:meth:`Sender.prune`: amortised), and by a flush that waited them out.
        """
        if self._disabled:
            return [], []
        state = self._state()
        stack = state.stack
        owned = stack[0].record if stack else None
        if owned is not None and owned is self._auto_trace and not self._finalizing:
            # Inside a request the trace completes with the response's status (at finalisation).
            while stack and stack[-1].record is not owned:
                self._conclude_top(None, None, None, None)
        else:
            self._conclude_all()
        traces, state.traces = state.traces, []
        if stack and isinstance(stack[0].record, schema.Trace):
            state.traces.append(stack[0].record)  # the request's trace, still open
        if self._config.mode == "distributed":
            self._prune(state)
            return traces, list(state.outboxes)
        if not traces:
            return [], []
        records = sum(_count_records(t) for t in traces)
        if self._ingestion_hook is not None:
            request = _ingestion.TracesIngestRequest(
                traces=list(traces),
                log_stream_id=self.log_stream_id,
                experiment_id=self._config.experiment_id,
                session_id=self.session_id,
            )
            job = _ingestion.submit(self._ingestion_hook, request, records, self._config)
            self._hook_jobs = (*self._hook_jobs, job)  # a tuple: loggers share the class's ()
            return traces, []
        if self._config.exporter == "otlp":  # (exported as they concluded)
            return traces, []
        sender = _sender.get_sender(self._config)
        return traces, [sender.submit_batch(self._config, self._target, traces, records, self._session)]

    def _prune(self, state: TraceState) -> None:
        """Forget delivered outboxes once the list is longer than ``prune_at`` (see :meth:`_enqueue_all`)."""
        if len(state.outboxes) > state.prune_at:
            state.outboxes, state.prune_at = self._still_busy(state.outboxes)

    # -- helpers -------------------------------------------------------------------------------------------
    def _redacted(self, kind: str, field: str, value: Any, given: Any) -> Any:
        if given is not None:
            return self._policy.input(kind, given) if field == "input" else self._policy.output(kind, given)
        if value is None or self._policy.redact is None:  # no copy to make (without a call: request paths)
            return None
        return self._policy.redacted(kind, field, value)

    def _payload(
        self, kind: str, input: Any, output: Any, redacted_input: Any, redacted_output: Any
    ) -> dict[str, Any]:
        """A span's input and output in its kind's shape, and their redacted copies (when there are any)."""
        policy = self._policy
        payload = {"input": policy.input(kind, input), "output": policy.output(kind, output)}
        if policy.redact is not None or redacted_input is not None or redacted_output is not None:
            payload["redacted_input"] = self._redacted(kind, "input", input, redacted_input)
            payload["redacted_output"] = self._redacted(kind, "output", output, redacted_output)
        return payload

    def _common(
        self,
        metadata: Mapping[str, Any] | None,
        tags: Sequence[str] | None,
        status_code: int | None,
        step_number: int | None,
    ) -> dict[str, Any]:
        """A span's metadata, tags, status and step, those given only (the record's defaults stand for the
        rest: fewer arguments to pass on a request path)."""
        common: dict[str, Any] = {}
        if metadata is not None:
            common["user_metadata"] = self._policy.metadata(metadata)
        if tags is not None:
            common["tags"] = self._policy.tags(tags)
        if status_code is not None:
            common["status_code"] = status_code
        if step_number is not None:
            common["step_number"] = step_number
        return common

    def _add(
        self, span: _S, duration_ns: int | None, created_at: _dt.datetime | None, *, opens_level: bool
    ) -> _S:
        if self._disabled:
            return span
        with self._lock:
            placed = self._place(span, duration_ns, created_at, opens_level=opens_level)
            if placed is not None and opens_level:
                self._state().stack.append(Level(span, span.id, placed[2]))
            return span

    def _place(
        self,
        span: schema.Span,
        duration_ns: int | None,
        created_at: _dt.datetime | None,
        *,
        opens_level: bool,
    ) -> tuple[Level, Level, int] | None:
        """Put ``span`` under the current parent (under the lock): time it, attach it, hand it to the sender.

        Returns (the innermost open level, the parent it went under, the time) — the parent differs from the
        level while a ``@log`` call runs in this context (see :meth:`_parent_entry`) — or None when there is
        no trace to add it to (logged and counted). Pushing a level it opens is the caller's business.
        """
        now = _now_ns()
        if duration_ns is not None and type(duration_ns) is not int:  # a wrong type: timed as if not given
            duration_ns = _params.as_int("duration_ns", duration_ns)
        state = self._state()
        stack = state.stack
        if not stack and self._request is not None and not self._request.finalized:
            self._open_request_trace(span.input)
        if not stack:
            _log.warning(
                "galileo: %s span %r added with no active trace: call start_trace() first; dropped",
                span.type,
                span.name,
            )
            count_dropped(self._config, "no_trace")
            return None
        base = stack[-1]
        parent = self._parent_under(base)
        if created_at is not None:  # naive means UTC; an odd value means now (see galileo._timestamps)
            created_at = created_at_or_now(created_at, f"{span.type} span {span.name!r}")
        if opens_level:
            span.created_at = created_at or _utcnow()
            span.duration_ns = duration_ns
        else:
            elapsed = duration_ns if duration_ns is not None else now - parent.last_ns
            span.duration_ns = elapsed
            wall = _utcnow()
            if created_at is None:
                created_at = wall - _dt.timedelta(microseconds=elapsed // 1000)
                if parent.last_wall is not None:  # never before its parent or its previous sibling
                    created_at = max(created_at, parent.last_wall)
            span.created_at = created_at
            parent.last_ns = now
            parent.last_wall = max(wall, created_at)
        if isinstance(parent.record, schema.ParentRecord):
            parent.record.spans.append(span)
        if state.w3c is not None:  # joined to an OTel trace: the OTel ids in metadata (see galileo._incoming)
            state.w3c.tag(span, top_level=parent.record is None)
        if not opens_level and self._export is not None:
            self._export.leaf(span, parent.id, state)
        if self._config.mode == "distributed":
            outbox = state.outbox
            if outbox is None:
                outbox = self._outbox_for_span(state)
            if outbox is not None:
                outbox.add(span, parent.id)
        return base, parent, now

    # -- @log (galileo.decorator): spans whose levels follow the context, not this logger's stack ------------
    def _parent_entry(self) -> Level:
        """The level a span added in this context goes under (the stack must not be empty)."""
        return self._parent_under(self._state().stack[-1])

    def _parent_under(self, top: Level) -> Level:
        """``top``, the innermost open level, unless a ``@log`` call of this logger is running in this context
        (see :class:`~galileo._context.SpanFrame`) and the logger opened nothing since: then that call's span.
        """
        frame = span_frame.get()
        if frame is not None and frame.logger is self and frame.base is top:
            return frame.level
        return top

    def _add_under(
        self,
        span: schema.Span,
        duration_ns: int | None,
        created_at: _dt.datetime | None,
        *,
        opens_level: bool,
    ) -> SpanFrame | None:
        """Add ``span`` as :meth:`_add` does, under :meth:`_parent_entry`; a level it opens is not pushed.

        For a workflow or agent span, returns the :class:`~galileo._context.SpanFrame` that makes it the
        parent in one context only (``@log`` sets it in :data:`~galileo._context.span_frame`); conclude it
        with :meth:`_conclude_record`. Returns None for a leaf, or when the span was not added (disabled, no
        trace).
        """
        if self._disabled:
            return None
        with self._lock:
            placed = self._place(span, duration_ns, created_at, opens_level=opens_level)
            if placed is None or not opens_level:
                return None
            base, parent, now = placed
            return SpanFrame(self, Level(span, span.id, now), base, parent)

    def _conclude_record(
        self, frame: SpanFrame, output: Any, status_code: int | None, redacted_output: Any = None
    ) -> None:
        """Conclude the span ``frame`` opened (see :meth:`_add_under`) as :meth:`conclude` closes a level."""
        if self._disabled:
            return
        with self._lock:
            record = frame.level.record
            assert record is not None
            now = self._finish(frame.level, output, redacted_output, None, status_code)
            if self._export is not None:
                self._export.concluded(record, frame.outer.id, self._state())
            frame.outer.last_ns = now
            frame.outer.last_wall = _utcnow()
            outbox = self._state().outbox
            if self._config.mode == "distributed" and outbox is not None:
                outbox.conclude(record.id)

    def _outbox_for_span(self, state: TraceState) -> TraceHandle | None:
        """The outbox of a continuing logger's spans (opened at its first span: it sends no trace record)."""
        if state.outbox is None and state.upstream_trace_id is not None and self._config.exporter != "otlp":
            sender = _sender.get_sender(self._config)
            state.outbox = sender.open_trace(self._config, self._target, state.upstream_trace_id, owned=False)
            state.outboxes.append(state.outbox)
        return state.outbox


def count_dropped(config: GalileoConfig, reason: str, records: int = 1) -> None:
    """Count ``records`` lost before they reached the sender, under ``reason`` in ``galileo.stats()``."""
    _sender.get_sender(config).note_dropped(reason, records)


#: Batch-mode loggers that started a trace (weakly held): what they never flushed goes at interpreter exit.
_unflushed: weakref.WeakSet[GalileoLogger] = weakref.WeakSet()


def _flush_unflushed() -> None:
    """At interpreter exit: hand over what batch loggers still hold (the sender's drain then sends it)."""
    hooks = False
    for logger in list(_unflushed):
        with logger._lock:
            logger._enqueue_all()
            hooks = hooks or bool(logger._hook_jobs)
    if hooks:
        _ingestion.drain(_HOOK_EXIT_WAIT)


#: Now, in UTC: the records' own clock (a partial of the C method: no Python frame on request paths).
_utcnow = schema._utcnow


def _count_records(record: schema.Record) -> int:
    return 1 + sum(_count_records(child) for child in getattr(record, "spans", ()))


def _export_first(export: _otel.Export, timeout: float | None) -> float | None:
    """Wait (bounded) for the OTLP export, then give the sender what is left of ``timeout``: a flush
    waits ``timeout`` in all, not once per destination. (The sender sends meanwhile, on its own threads.)"""
    started = time.monotonic()
    export.flush(timeout)
    return None if timeout is None else max(0.0, timeout - (time.monotonic() - started))
