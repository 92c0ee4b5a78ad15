"""The trace/span data model and its exact JSON, as Galileo's ingest API expects it.

A :class:`Trace` holds a tree of spans of five kinds (:class:`WorkflowSpan`, :class:`AgentSpan`,
:class:`LlmSpan`, :class:`RetrieverSpan`, :class:`ToolSpan`), and the published SDK's sixth, a
:class:`ControlSpan` (one Agent Control check: ``GalileoLogger.add_control_span``); :class:`StepType` names
them all. Records are mutable attrs classes: the logger builds them while a request runs and fills ``output``,
``status_code`` and ``duration_ns`` when it concludes them. Their numbers, text fields and an llm span's tools
are checked on construction (a value of the wrong type is left out with a WARNING: see
:mod:`galileo._params`), not on assignment: attrs' hook on every attribute set cost 1.2 µs a set (80x a plain
one) and 8 µs on the seed request's SDK calls, so the logger checks what it assigns from a caller itself.
Their ``input``/``output`` hold the shapes :class:`PayloadPolicy` produces (see :mod:`galileo._coerce`,
re-exported here); :meth:`Record.to_wire` coerces once more, without truncation, so whatever a record holds
its JSON matches the schema.

:meth:`Record.to_wire` emits every key the published SDK sends (``golden/`` in the shared API notes), in its
order: links inside objects (``trace_id``, ``parent_id``) and ``session_id`` are null, because the links are
the request's top-level fields; ``created_at`` is RFC 3339 UTC with microseconds and a ``Z``; durations and
token counts live under ``metrics``; container kinds carry their children under ``spans`` (``[]`` with
``include_children=False``, when the distributed sender sends children in their own requests), and retriever
and tool spans send ``"spans": []`` as the published SDK does (their ``spans`` attribute is an empty tuple:
the published logger never puts children under them), control spans no ``spans`` at all (their schema has
none).

The four body builders return the request bodies of the four write calls; each validates against its root
schema (LogTracesIngestRequest, LogSpansIngestRequest, LogTraceUpdateRequest, LogSpanUpdateRequest).
"""

from __future__ import annotations

import enum
import functools
import math
import os
import random
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, ClassVar, Final, Generic, TypeAlias, TypeVar, overload

import attrs

from galileo import _params
from galileo._coerce import (
    CONTROL_ACTIONS,
    DEFAULT_MAX_CHARS,
    KINDS,
    MESSAGE_ROLES,
    REDACTION_FAILED,
    TRUNCATION_MARKER,
    ControlResult,
    Document,
    Message,
    MessageRole,
    Payload,
    PayloadPolicy,
    ToolCall,
    ToolCallFunction,
    to_text,
    wire_value,
)
from galileo._content_blocks import DataContentBlock, TextContentBlock
from galileo._timestamps import as_utc

__all__ = [
    "AGENT_TYPES",
    "CONTROL_ACTIONS",
    "CONTROL_APPLIES_TO",
    "CONTROL_CHECK_STAGES",
    "DEFAULT_MAX_CHARS",
    "KINDS",
    "MESSAGE_ROLES",
    "REDACTION_FAILED",
    "SPAN_TYPES",
    "TRUNCATION_MARKER",
    "AgentSpan",
    "ControlResult",
    "ControlSpan",
    "DataContentBlock",
    "Document",
    "LlmSpan",
    "Message",
    "MessageRole",
    "Metrics",
    "ParentRecord",
    "Payload",
    "PayloadPolicy",
    "Record",
    "RetrieverSpan",
    "Session",
    "Span",
    "StepType",
    "StepWithChildSpans",
    "TextContentBlock",
    "ToolCall",
    "ToolCallFunction",
    "ToolSpan",
    "Trace",
    "WorkflowSpan",
    "new_id",
    "span_update_body",
    "spans_ingest_body",
    "to_text",
    "trace_update_body",
    "traces_ingest_body",
]

#: The schema's AgentType enum.
AGENT_TYPES: Final = (
    "default",
    "planner",
    "react",
    "reflection",
    "router",
    "classifier",
    "supervisor",
    "judge",
)
#: The schema's ControlCheckStage and ControlAppliesTo enums (a control span's check_stage and applies_to).
CONTROL_CHECK_STAGES: Final = ("pre", "post")
CONTROL_APPLIES_TO: Final = ("llm_call", "tool_call")
_LOGGING_METHOD: Final = "api_direct"
_T = TypeVar("_T")


#: Where record ids come from: a Mersenne Twister seeded from the OS's entropy (and seeded again in a forked
#: child, so workers of one server never repeat each other's ids). ``os.urandom`` is a system call that
#: releases the GIL: on a request path that hands the interpreter to the sender's threads in the middle of
#: a handler, which costs far more than the call itself. Ids need to be unique, not secret (OpenTelemetry
#: draws its trace ids the same way); 122 random bits make a collision negligible.
_ids = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))


def new_id() -> str:
    """A fresh record id: a UUID version 4 string, as the schema requires.

    The same 122 random bits as :func:`uuid.uuid4`, formatted directly, without a system call (see
    ``_ids``): every span created on a request path pays for one.
    """
    h = (_ids.getrandbits(128) & _V4_MASK | _V4_BITS).to_bytes(16, "big").hex()  # (faster than :032x)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


# Version 4 (bits 76..79 = 0100) and the RFC 4122 variant (bits 62..63 = 10), as uuid.UUID(version=4) sets.
_V4_MASK: Final = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS: Final = (0x4000 << 64) | (0x8000 << 48)


#: Now, in UTC: a record's default ``created_at`` (a partial of the C method: no Python frame per record).
_utcnow: Callable[[], datetime] = functools.partial(datetime.now, timezone.utc)


def _timestamp(moment: Any) -> str:
    """RFC 3339 in UTC with microseconds, e.g. ``2026-11-24T23:27:50.998618Z``; naive means UTC.

    Never raises: a value that names no moment (see :mod:`galileo._timestamps`) is sent as the current time.
    """
    if type(moment) is datetime and moment.tzinfo is timezone.utc:  # what _utcnow makes: the common case
        return moment.isoformat(timespec="microseconds")[:-6] + "Z"
    utc = as_utc(moment) or _utcnow()
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def _json_safe(value: Any) -> Any:
    """Plain JSON data (no NaN, no objects): for user-supplied structures such as an llm span's tools."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return to_text(value)


class _Extra(Generic[_T]):
    """A published attribute kept in a record's ``_extra`` dict: records that never set one (nearly all)
    pay for one slot, not one per attribute (records are made on request paths)."""

    def __init__(self, name: str, factory: Callable[[], _T] | None = None) -> None:
        self.name = name
        self.factory = factory

    @overload
    def __get__(self, record: None, owner: type[Any]) -> _Extra[_T]: ...
    @overload
    def __get__(self, record: Record, owner: type[Any]) -> _T: ...
    def __get__(self, record: Record | None, owner: type[Any]) -> _Extra[_T] | _T:
        if record is None:
            return self
        extra = record._extra
        if extra is not None and self.name in extra:
            return extra[self.name]  # type: ignore[no-any-return]
        if self.factory is None:
            return None  # type: ignore[return-value]
        value = self.factory()  # a mutable default, kept so that changes to it stay
        self.__set__(record, value)
        return value

    def __set__(self, record: Record, value: _T) -> None:
        if record._extra is None:
            record._extra = {}
        record._extra[self.name] = value


class StepType(str, enum.Enum):
    """The kinds of records, as the published ``StepType`` names them; each value is a record's ``type``."""

    llm = "llm"
    retriever = "retriever"
    tool = "tool"
    workflow = "workflow"
    agent = "agent"
    control = "control"
    trace = "trace"
    session = "session"


@attrs.frozen(kw_only=True)
class Metrics:
    """A record's durations and token counts, as the published ``metrics`` attribute names them."""

    duration_ns: int | None = None
    num_input_tokens: int | None = None
    num_output_tokens: int | None = None
    num_total_tokens: int | None = None
    time_to_first_token_ns: int | None = None
    num_image_input_tokens: int | None = None
    num_audio_input_tokens: int | None = None
    num_audio_output_tokens: int | None = None
    num_image_output_tokens: int | None = None


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class Record:
    """What traces and spans share. ``type`` is the wire name of the kind."""

    type: ClassVar[str]

    id: str = attrs.field(factory=new_id)
    name: str = attrs.field(default="", converter=_params.name)
    input: Payload = ""
    output: Payload = None
    redacted_input: Payload = None
    redacted_output: Payload = None
    created_at: datetime = attrs.field(factory=_utcnow)
    user_metadata: dict[str, str] = attrs.field(factory=dict)
    tags: list[str] = attrs.field(factory=list)
    status_code: int | None = attrs.field(default=None, converter=_params.status_code)
    duration_ns: int | None = attrs.field(default=None, converter=_params.duration_ns)
    external_id: str | None = attrs.field(default=None, converter=_params.external_id)
    step_number: int | None = attrs.field(default=None, converter=_params.step_number)
    #: The published attributes few records use (see :class:`_Extra`): one slot, None until one is set.
    _extra: dict[str, Any] | None = attrs.field(default=None, init=False, repr=False, eq=False)

    dataset_input = _Extra[str | None]("dataset_input")
    dataset_output = _Extra[str | None]("dataset_output")
    dataset_metadata = _Extra[dict[str, str]]("dataset_metadata", dict)
    #: The published records' links, None as the published SDK leaves them in the objects it sends (the
    #: request's own fields name the trace, parent and session).
    session_id = _Extra[str | None]("session_id")
    trace_id = _Extra[str | None]("trace_id")
    parent_id = _Extra[str | None]("parent_id")

    @property
    def metrics(self) -> Metrics:
        """The published ``metrics`` of this record: a read-only snapshot of its duration (and token
        counts for an llm span); set ``duration_ns`` and the token fields themselves to change them."""
        return Metrics(**self._metrics())

    def to_wire(self, *, include_children: bool = True) -> dict[str, Any]:
        """This record as the API's JSON object (children included unless ``include_children`` is False)."""
        kind = self.type
        body: dict[str, Any] = {
            "type": kind,
            "input": wire_value(kind, "input", self.input),
            "redacted_input": wire_value(kind, "input", self.redacted_input, redacted=True),
            "output": wire_value(kind, "output", self.output),
            "redacted_output": wire_value(kind, "output", self.redacted_output, redacted=True),
            "name": self.name,
            "created_at": _timestamp(self.created_at),
            "user_metadata": {
                str(k): v if isinstance(v, str) else to_text(v) for k, v in self.user_metadata.items()
            },
            "tags": [t if isinstance(t, str) else to_text(t) for t in self.tags],
            "status_code": self.status_code,
            "metrics": self._metrics(),
            "external_id": self.external_id,
            "dataset_input": None,
            "dataset_output": None,
            "dataset_metadata": {},
            "id": self.id,
            "session_id": None,
            "trace_id": None,
            "step_number": self.step_number,
            "parent_id": None,
        }
        if self._extra is not None:
            self._add_extra(body)
        self._add_kind_fields(body, include_children)
        return body

    def _add_extra(self, body: dict[str, Any]) -> None:
        """The published ``dataset_*`` fields, when any was set (text; metadata values as text)."""
        extra = self._extra or {}
        for key in ("dataset_input", "dataset_output"):
            value = extra.get(key)
            body[key] = value if value is None or isinstance(value, str) else to_text(value)
        meta = extra.get("dataset_metadata") or {}
        body["dataset_metadata"] = {str(k): v if isinstance(v, str) else to_text(v) for k, v in meta.items()}

    def _metrics(self) -> dict[str, Any]:
        return {"duration_ns": self.duration_ns}

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        body["spans"] = []


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class ParentRecord(Record):
    """A record that holds child spans: traces, workflow spans and agent spans."""

    spans: list[Span] = attrs.field(factory=list)

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        body["spans"] = [child.to_wire() for child in self.spans] if include_children else []


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class Trace(ParentRecord):
    """The root of a tree of spans. Its input and output are text."""

    type: ClassVar[str] = "trace"


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class WorkflowSpan(ParentRecord):
    """A step that groups other spans."""

    type: ClassVar[str] = "workflow"


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class AgentSpan(ParentRecord):
    """An agent's run; ``agent_type`` is one of :data:`AGENT_TYPES`."""

    type: ClassVar[str] = "agent"

    agent_type: str = attrs.field(default="default", validator=attrs.validators.in_(AGENT_TYPES))

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        ParentRecord._add_kind_fields(self, body, include_children)
        body["agent_type"] = self.agent_type


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class LlmSpan(Record):
    """One LLM call: messages in, one message out, model parameters and token counts."""

    type: ClassVar[str] = "llm"

    input: Payload = attrs.field(factory=list)
    model: str | None = attrs.field(default=None, converter=_params.model)
    tools: list[dict[str, Any]] | None = attrs.field(default=None, converter=_params.tools)
    temperature: float | None = attrs.field(default=None, converter=_params.temperature)
    finish_reason: str | None = attrs.field(default=None, converter=_params.finish_reason)
    num_input_tokens: int | None = attrs.field(default=None, converter=_params.num_input_tokens)
    num_output_tokens: int | None = attrs.field(default=None, converter=_params.num_output_tokens)
    num_total_tokens: int | None = attrs.field(default=None, converter=_params.num_total_tokens)
    time_to_first_token_ns: int | None = attrs.field(default=None, converter=_params.time_to_first_token_ns)
    #: The published ``events`` (reasoning, tool calls, ... as JSON objects); sent as given.
    events = _Extra[list[dict[str, Any]] | None]("events")

    def _metrics(self) -> dict[str, Any]:
        return {
            "duration_ns": self.duration_ns,
            "num_input_tokens": self.num_input_tokens,
            "num_output_tokens": self.num_output_tokens,
            "num_total_tokens": self.num_total_tokens,
            "time_to_first_token_ns": self.time_to_first_token_ns,
            "num_image_input_tokens": None,
            "num_audio_input_tokens": None,
            "num_audio_output_tokens": None,
            "num_image_output_tokens": None,
        }

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        temperature = self.temperature
        body["tools"] = None if self.tools is None else _json_safe(list(self.tools))
        events = self.events if self._extra is not None else None
        body["events"] = None if events is None else _json_safe(list(events))
        body["model"] = self.model
        body["temperature"] = temperature if temperature is None or math.isfinite(temperature) else None
        body["finish_reason"] = self.finish_reason


#: The children of a leaf span (the published records' ``spans``): always none, shared, read-only.
_NO_CHILDREN: Final[tuple[()]] = ()


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class RetrieverSpan(Record):
    """A retrieval: a query in, documents out."""

    type: ClassVar[str] = "retriever"

    @property
    def spans(self) -> tuple[()]:
        """No children (an empty tuple): the published attribute, on a span that never has any."""
        return _NO_CHILDREN


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class ToolSpan(Record):
    """A tool call: text in, text out; ``tool_call_id`` links it to the LLM's tool call."""

    type: ClassVar[str] = "tool"

    tool_call_id: str | None = attrs.field(default=None, converter=_params.tool_call_id)

    @property
    def spans(self) -> tuple[()]:
        """No children (an empty tuple): the published attribute, on a span that never has any."""
        return _NO_CHILDREN

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        body["spans"] = []
        body["tool_call_id"] = self.tool_call_id


@attrs.define(kw_only=True, slots=True, on_setattr=attrs.setters.NO_OP)
class ControlSpan(Record):
    """One Agent Control check under the span it guarded: the representative input it looked at (text), its
    decision as ``output`` (a :class:`ControlResult`, or None), and which control ran where.

    ``check_stage`` is one of :data:`CONTROL_CHECK_STAGES`, ``applies_to`` one of :data:`CONTROL_APPLIES_TO`
    (the wire's enums; the logger sends any other value as null, keeping it in the metadata). A leaf: no
    ``spans``.
    """

    type: ClassVar[str] = "control"

    output: Payload = None
    control_id: int | None = None
    agent_name: str | None = None
    check_stage: str | None = None
    applies_to: str | None = None
    evaluator_name: str | None = None
    selector_path: str | None = None

    def _add_kind_fields(self, body: dict[str, Any], include_children: bool) -> None:
        body["control_id"] = self.control_id
        body["agent_name"] = self.agent_name
        body["check_stage"] = self.check_stage
        body["applies_to"] = self.applies_to
        body["evaluator_name"] = self.evaluator_name
        body["selector_path"] = self.selector_path


Span: TypeAlias = LlmSpan | RetrieverSpan | ToolSpan | WorkflowSpan | AgentSpan | ControlSpan

#: The published name of a record that holds child spans (a trace, workflow or agent span).
StepWithChildSpans: TypeAlias = ParentRecord


@attrs.define(kw_only=True)
class Session:
    """A session: the traces of one conversation or task, as the published ``Session`` names its fields.

    ``id`` is the server's id once the session exists (None before).
    """

    id: str | None = None
    name: str | None = None
    previous_session_id: str | None = None
    external_id: str | None = None
    user_metadata: dict[str, str] = attrs.field(factory=dict)
    created_at: datetime = attrs.field(factory=_utcnow)
    traces: list[Trace] = attrs.field(factory=list)
    # The rest of the published record fields, carried as given (a session is not sent as a record).
    type: str = "session"
    input: Any = ""
    redacted_input: Any = None
    output: Any = None
    redacted_output: Any = None
    tags: list[str] = attrs.field(factory=list)
    status_code: int | None = None
    metrics: dict[str, Any] = attrs.field(factory=dict)
    dataset_input: str | None = None
    dataset_output: str | None = None
    dataset_metadata: dict[str, str] = attrs.field(factory=dict)
    session_id: str | None = None
    trace_id: str | None = None


#: Span classes by their wire ``type``: the five kinds the logger's ``add_*_span`` methods and ``@log`` make
#: (a :class:`ControlSpan` only comes from ``add_control_span``).
SPAN_TYPES: dict[str, type[Span]] = {
    cls.type: cls for cls in (LlmSpan, RetrieverSpan, ToolSpan, WorkflowSpan, AgentSpan)
}


def _envelope(log_stream_id: str | None, experiment_id: str | None) -> dict[str, Any]:
    return {
        "log_stream_id": log_stream_id,
        "experiment_id": experiment_id,
        "logging_method": _LOGGING_METHOD,
        "client_version": None,
        "reliable": True,
    }


def _wire(record: Record | Mapping[str, Any], include_children: bool) -> dict[str, Any]:
    if isinstance(record, Record):
        return record.to_wire(include_children=include_children)
    return dict(record)


def traces_ingest_body(
    traces: Sequence[Trace | Mapping[str, Any]],
    *,
    log_stream_id: str | None,
    experiment_id: str | None = None,
    is_complete: bool = True,
    include_children: bool = True,
    session_id: str | None = None,
    session_external_id: str | None = None,
) -> dict[str, Any]:
    """``POST /v2/projects/{pid}/traces`` (LogTracesIngestRequest).

    A trace may be given already serialised (a mapping from :meth:`Record.to_wire`), as the distributed
    sender does when it chooses which children travel nested. ``session_id`` is the session every trace of
    the body belongs to (the API's answer to ``POST /sessions``): one per body, so traces of different
    sessions never share one; ``session_external_id`` the external id it was started with, if any.
    """
    if not traces:
        raise ValueError("traces_ingest_body needs at least one trace")
    body = _envelope(log_stream_id, experiment_id)
    body["traces"] = [_wire(trace, include_children) for trace in traces]
    body["session_id"] = session_id
    body["session_external_id"] = session_external_id
    body["is_complete"] = is_complete
    return body


def spans_ingest_body(
    spans: Sequence[Span | Mapping[str, Any]],
    *,
    trace_id: str,
    parent_id: str,
    log_stream_id: str | None,
    experiment_id: str | None = None,
    include_children: bool = True,
) -> dict[str, Any]:
    """``POST /v2/projects/{pid}/spans`` (LogSpansIngestRequest): sibling spans under ``parent_id``.

    Spans may be given already serialised, as for :func:`traces_ingest_body`.
    """
    if not spans:
        raise ValueError("spans_ingest_body needs at least one span")
    body = _envelope(log_stream_id, experiment_id)
    body["spans"] = [_wire(span, include_children) for span in spans]
    body["trace_id"] = trace_id
    body["parent_id"] = parent_id
    return body


def trace_update_body(
    trace: Trace,
    *,
    log_stream_id: str | None,
    experiment_id: str | None = None,
    is_complete: bool = True,
    include_input: bool = False,
) -> dict[str, Any]:
    """``PATCH /v2/projects/{pid}/traces/{trace_id}`` (LogTraceUpdateRequest).

    The input was sent with the trace's ingest, so it is null (unchanged) unless ``include_input``.
    """
    body = _envelope(log_stream_id, experiment_id)
    body["trace_id"] = trace.id
    # A trace update takes text only: content parts become their text here.
    body["input"] = (
        _update_text(wire_value("trace", "input", trace.input), trace.input) if include_input else None
    )
    body["output"] = _update_text(wire_value("trace", "output", trace.output), trace.output)
    body["status_code"] = trace.status_code
    body["tags"] = [t if isinstance(t, str) else to_text(t) for t in trace.tags]
    body["is_complete"] = is_complete
    body["duration_ns"] = trace.duration_ns
    return body


def _update_text(wire: Any, value: Any) -> Any:
    return wire if wire is None or isinstance(wire, str) else to_text(value)


def span_update_body(
    span: Span, *, log_stream_id: str | None, experiment_id: str | None = None
) -> dict[str, Any]:
    """``PATCH /v2/projects/{pid}/spans/{span_id}`` (LogSpanUpdateRequest): output, status, duration, tags."""
    body = _envelope(log_stream_id, experiment_id)
    body["span_id"] = span.id
    body["input"] = None
    body["output"] = wire_value(span.type, "output", span.output)
    body["tags"] = [t if isinstance(t, str) else to_text(t) for t in span.tags]
    body["status_code"] = span.status_code
    body["duration_ns"] = span.duration_ns
    return body
