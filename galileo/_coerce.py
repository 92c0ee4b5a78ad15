"""The value shapes of the Galileo wire format, and the policy that coerces any user value into them.

Users hand the logger whatever their code has: strings, dicts, OpenAI-style message dicts, LangChain-style
documents, pydantic models, ``None``. The ingest schemas accept only a few shapes, and which ones depends on
the record kind. This module is the one place that maps the former onto the latter; :mod:`galileo.schema`
re-exports everything public here.

Shapes per record kind (``input`` / ``output``)::

    trace      str                      / str or None         (messages and documents become their text)
    llm        list[Message]            / Message             (never null: an empty assistant message)
    retriever  str                      / list[Document]      (never null: an empty list)
    tool       str                      / str or None
    workflow   str or list[Message]     / str, Message, list[Document] or None
    agent      same as workflow
    control    str                      / ControlResult or None (the published Agent Control span)

A list of multimodal content blocks (:mod:`galileo._content_blocks`) stays a list of content parts as a
trace, workflow or agent input/output, and as a message's content (an llm input or output given as blocks is
one user / assistant message holding them); a message content of text blocks only is their joined text.

``None`` as an input becomes ``""``. Text (:func:`to_text`) is the string itself; a message's content
(several messages become ``"role: content"`` lines); documents' contents joined by a blank line; JSON for
dicts, lists, numbers and booleans (``json.dumps(..., ensure_ascii=False)``, key order kept); for attrs
classes, dataclasses and pydantic models the JSON of their fields; ``str()`` for any other object. It never
raises.

Size. Every text piece (a string input/output, a message's content or tool-call arguments, a document's
content, a metadata key or value, a tag) longer than :attr:`PayloadPolicy.max_chars` (default
:data:`DEFAULT_MAX_CHARS`, 100,000 characters, about 100-400 KB of UTF-8: far below any request limit, yet
enough for long prompts) keeps its first ``max_chars`` characters followed by :data:`TRUNCATION_MARKER`, e.g.
``"…[truncated 12345 chars]"``: a reader of the trace sees that text is missing and how much.

Redaction. :attr:`PayloadPolicy.redact` is an optional hook ``redact(field, value)`` where ``field`` is
``"input"`` or ``"output"`` and ``value`` the raw value the user passed (before coercion and truncation; the
hook is not called for ``None``). It returns the redacted copy (any shape: it is coerced like the original) or
``None`` for "no redacted copy". The result is sent as ``redacted_input`` / ``redacted_output`` next to the
original. A hook that raises never reaches the application: the failure is logged at WARNING on the
``galileo`` logger with the exception type only (never the value, nor the exception message, which could quote
it), and :data:`REDACTION_FAILED` is sent in the redacted field instead.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime
from typing import Any, Final, TypeAlias

import attrs

from galileo._content_blocks import (
    ContentPart,
    FilePart,
    TextPart,
    content_parts,
    message_content,
    parts_text,
)
from galileo._messages import MESSAGE_ROLES, Message, MessageRole, ToolCall, ToolCallFunction

__all__ = [
    "CONTROL_ACTIONS",
    "DEFAULT_MAX_CHARS",
    "KINDS",
    "MESSAGE_ROLES",
    "REDACTION_FAILED",
    "TRUNCATION_MARKER",
    "ControlResult",
    "Document",
    "Message",
    "MessageRole",
    "Payload",
    "PayloadPolicy",
    "ToolCall",
    "ToolCallFunction",
    "to_text",
    "wire_value",
]

_log = logging.getLogger("galileo")

DEFAULT_MAX_CHARS: Final = 100_000
#: Appended to a text piece cut at ``max_chars``; ``{omitted}`` is the number of characters dropped.
TRUNCATION_MARKER: Final = "…[truncated {omitted} chars]"
#: Sent as the redacted value when the redaction hook raised.
REDACTION_FAILED: Final = "[redaction failed]"
#: The record kinds, as the wire ``type`` field spells them.
KINDS: Final = ("trace", "llm", "retriever", "tool", "workflow", "agent")
#: The schema's ControlAction enum: what a control span's :class:`ControlResult` decided.
CONTROL_ACTIONS: Final = ("deny", "steer", "observe")

# Roles other libraries use for the same thing (LangChain "human"/"ai").
_ROLE_ALIASES: Final = {"human": "user", "ai": "assistant", "model": "assistant"}
_FIELDS: Final = ("input", "output")


@attrs.frozen
class Document:
    """A retrieved document: text and scalar metadata."""

    content: str
    metadata: dict[str, str | int | float | bool] = attrs.field(factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "metadata": {str(k): _scalar(v, None) for k, v in self.metadata.items()},
        }


@attrs.frozen(kw_only=True)
class ControlResult:
    """What one control decided (a control span's output, as galileo_core's ``ControlResult`` names it):
    ``action`` is one of :data:`CONTROL_ACTIONS`; ``matched`` is False for no match and for an error (then
    ``error_message`` says which)."""

    action: str = attrs.field(validator=attrs.validators.in_(CONTROL_ACTIONS))
    matched: bool
    confidence: float | None = None
    error_message: str | None = None

    def to_wire(self) -> dict[str, Any]:
        confidence = self.confidence
        return {
            "action": self.action,
            "matched": bool(self.matched),
            "confidence": confidence if confidence is None or math.isfinite(confidence) else None,
            "error_message": self.error_message,
        }


#: What a record's input/output holds once coerced.
Payload: TypeAlias = (
    "str | Message | list[Message] | list[Document] | list[ContentPart] | ControlResult | None"
)


@attrs.frozen(kw_only=True)
class PayloadPolicy:
    """How user values become wire values: shape per record kind, size limit, redaction hook."""

    max_chars: int = attrs.field(
        default=DEFAULT_MAX_CHARS, validator=[attrs.validators.instance_of(int), attrs.validators.gt(0)]
    )
    redact: Callable[[str, Any], Any] | None = None

    def input(self, kind: str, value: Any) -> Payload:
        """``value`` in the input shape of ``kind`` (see the module docstring), truncated."""
        if type(value) is str and len(value) <= self.max_chars and kind in _TEXT_INPUT:
            return value  # what _shape returns, without its two calls: the common case, on request paths
        return _shape(kind, "input", value, self.max_chars)

    def output(self, kind: str, value: Any) -> Payload:
        """``value`` in the output shape of ``kind``, truncated."""
        if kind in _TEXT_OUTPUT and (value is None or (type(value) is str and len(value) <= self.max_chars)):
            return value  # (as in input; a span added without an output has None)
        return _shape(kind, "output", value, self.max_chars)

    def redacted(self, kind: str, field: str, value: Any) -> Payload:
        """The redacted copy of ``value`` for ``field`` ("input"/"output"), or None without one."""
        if field not in _FIELDS:
            raise ValueError(f"field must be one of {_FIELDS}, got {field!r}")
        if self.redact is None or value is None:
            return None
        try:
            result = self.redact(field, value)
        except Exception as exc:  # a user hook must never break the application
            _log.warning(
                "the redaction hook raised %s for the %s of a %s record; sending %r instead",
                type(exc).__name__,
                field,
                kind,
                REDACTION_FAILED,
            )
            result = REDACTION_FAILED
        if result is None:
            return None
        return _shape(kind, field, result, self.max_chars)

    def metadata(self, value: Mapping[Any, Any] | None) -> dict[str, str]:
        """User metadata with string keys and values (JSON for dicts and lists), truncated."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            _log.warning("metadata must be a mapping, got %s; dropped", type(value).__name__)
            return {}
        limit = self.max_chars
        out: dict[str, str] = {}
        for key, item in list(value.items()):
            text = to_text(item) if isinstance(item, (Mapping, list, tuple)) else _safe_str(item)
            out[_clip(_safe_str(key), limit)] = _clip(text, limit)
        return out

    def tags(self, value: Any) -> list[str]:
        """Tags as a list of distinct strings, in order; a single string is one tag."""
        if value is None:
            return []
        items: Iterable[Any] = [value] if isinstance(value, (str, bytes)) or not _iterable(value) else value
        out: dict[str, None] = {}
        for item in items:
            out[_clip(_safe_str(item), self.max_chars)] = None
        return list(out)


def to_text(value: Any) -> str:
    """The text form of any value (see the module docstring); not truncated; never raises."""
    try:
        return _text(value)
    except Exception:  # circular structures, odd keys, a failing __str__ ...
        return _safe_str(value)


def wire_value(kind: str, field: str, value: Any, *, redacted: bool = False) -> Any:
    """The JSON value of a record's input/output: coerced to the kind's shape (not truncated), then
    serialised. A ``redacted`` field that is ``None`` stays ``None``."""
    if redacted and value is None:
        return None
    if type(value) is str and kind in (_TEXT_INPUT if field == "input" else _TEXT_OUTPUT):
        return value  # what _shape returns, without its two calls (two per record, on the sender)
    shaped = _shape(kind, field, value, None)
    if isinstance(shaped, (Message, Document, ControlResult)):
        return shaped.to_wire()
    if isinstance(shaped, list):
        return [item.to_wire() for item in shaped]
    return shaped


# --- text -------------------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, Message):
        return _message_text(value)
    if isinstance(value, Document):
        return value.content
    if isinstance(value, (list, tuple)) and value:
        if all(isinstance(item, Message) for item in value):
            if len(value) == 1:
                return _message_text(value[0])
            return "\n".join(f"{m.role}: {_message_text(m)}" for m in value)
        if all(isinstance(item, Document) for item in value):
            return "\n\n".join(doc.content for doc in value)
        if all(isinstance(item, (TextPart, FilePart)) for item in value):
            return parts_text(list(value))
    if not isinstance(value, (Mapping, list, tuple, int, float)):
        value = _json_default(value)
        if isinstance(value, str):
            return value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _message_text(message: Message) -> str:
    if isinstance(message.content, list):
        return parts_text(message.content)
    if message.content is not None:
        return message.content
    if message.tool_calls:
        return json.dumps([call.to_wire() for call in message.tool_calls], ensure_ascii=False)
    return ""


def _json_default(value: Any) -> Any:
    """What json.dumps cannot encode: our value types, attrs/dataclass/pydantic objects, sets, dates."""
    if isinstance(value, (Message, Document, ToolCall, ToolCallFunction, TextPart, FilePart)):
        return value.to_wire()
    if attrs.has(type(value)):
        return attrs.asdict(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        return list(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return _safe_str(value)


def _safe_str(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return str(value)
    except Exception:
        return f"<unprintable {type(value).__name__}>"


def _clip(text: str, limit: int | None) -> str:
    if limit is None or len(text) <= limit:
        return text
    return text[:limit] + TRUNCATION_MARKER.format(omitted=len(text) - limit)


def _iterable(value: Any) -> bool:
    return isinstance(value, Iterable) and not isinstance(value, Mapping)


def _scalar(value: Any, limit: int | None) -> str | int | float | bool:
    """A document metadata value: str/int/bool kept, finite floats kept, anything else as text."""
    if isinstance(value, (bool, int)):
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    return _clip(value if isinstance(value, str) else to_text(value), limit)


# --- shapes -----------------------------------------------------------------------------------------------


_TEXT_INPUT: Final = frozenset({"trace", "retriever", "tool", "workflow", "agent", "control"})
_TEXT_OUTPUT: Final = frozenset({"trace", "tool", "workflow", "agent"})
_PART_KINDS: Final = frozenset({"trace", "llm", "workflow", "agent"})  # kinds that take content parts
_SEQUENCES: Final = frozenset({list, tuple})
_NOT_BLOCKS: Final = frozenset({Message, Document, str})


def _shape(kind: str, field: str, value: Any, limit: int | None) -> Payload:
    if type(value) is str and kind in (_TEXT_INPUT if field == "input" else _TEXT_OUTPUT):
        return _clip(value, limit)  # the common case, kept cheap: it runs on request paths
    parts = None
    if type(value) in _SEQUENCES and value and kind in _PART_KINDS:
        first = value[0]  # lists of messages and documents (the usual ones) are told apart cheaply
        cls = type(first)
        if ("type" in first) if cls is dict else cls not in _NOT_BLOCKS:
            parts = content_parts(value)
            parts = None if parts is None else _clip_parts(parts, limit)
    if field == "input":
        if kind == "llm":
            if parts is not None:
                return [Message(content=parts, role="user")]
            return [_message(item, "user", limit) for item in _items(value)]
        if parts is not None:
            return parts
        if kind in ("workflow", "agent") and _is_messages(value):
            return [_message(item, "user", limit) for item in _items(value)]
        if kind in KINDS or kind == "control":
            return _clip(to_text(value), limit)
    elif field == "output":
        if kind == "control":
            return _control_result(value, limit)
        if kind == "llm":
            if parts is not None:
                return Message(content=parts, role="assistant")
            items = _items(value)
            return _message(items[-1], "assistant", limit) if items else Message(content="", role="assistant")
        if kind == "retriever":
            return [_document(item, limit) for item in _items(value)]
        if value is None and kind in KINDS:
            return None
        if parts is not None:
            return parts
        if kind in ("workflow", "agent"):
            if isinstance(value, Message):
                return _message(value, "assistant", limit)
            if isinstance(value, Document) or (
                isinstance(value, (list, tuple)) and value and all(isinstance(v, Document) for v in value)
            ):
                return [_document(item, limit) for item in _items(value)]
        if kind in KINDS:
            return _clip(to_text(value), limit)
    raise ValueError(f"cannot shape the {field!r} of a record of kind {kind!r}; kinds are {KINDS}")


def _control_result(value: Any, limit: int | None) -> ControlResult | None:
    """A control span's output: a :class:`ControlResult` from one, a mapping or an object with its fields
    (galileo_core's pydantic ``ControlResult``); anything else is None, with a WARNING (the schema admits
    no other value, and one invalid span would fail its whole request)."""
    if value is None or isinstance(value, ControlResult):
        return value
    dump = getattr(value, "model_dump", None)
    try:
        fields = dump() if callable(dump) else value
        read = fields.get if isinstance(fields, Mapping) else functools.partial(getattr, fields)
        action = read("action", None)
        action = getattr(action, "value", action)
        matched = read("matched", None)
        confidence = read("confidence", None)
        error = read("error_message", None)
    except Exception:
        action = matched = None
    if action not in CONTROL_ACTIONS or not isinstance(matched, bool):
        _log.warning(
            "galileo: a control span's output needs action (one of %s) and matched (a bool); sent as null",
            ", ".join(CONTROL_ACTIONS),
        )
        return None
    number = confidence if isinstance(confidence, (int, float)) and not isinstance(confidence, bool) else None
    return ControlResult(
        action=str(action),
        matched=matched,
        confidence=None if number is None or not math.isfinite(number) else float(number),
        error_message=None if error is None else _clip(_safe_str(error), limit),
    )


def _clip_parts(parts: list[ContentPart], limit: int | None) -> list[ContentPart]:
    """Content parts with their text parts truncated."""
    if limit is None:
        return parts
    return [TextPart(_clip(p.text, limit)) if isinstance(p, TextPart) else p for p in parts]


def _items(value: Any) -> list[Any]:
    """A value as a list of items: None is empty, a list or tuple its elements, anything else one item."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def _is_messages(value: Any) -> bool:
    if isinstance(value, Message):
        return True
    return (
        isinstance(value, (list, tuple))
        and bool(value)
        and all(isinstance(item, Message) or _is_message_mapping(item) for item in value)
    )


def _is_message_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and "role" in value and ("content" in value or "tool_calls" in value)


def _message(value: Any, role: str, limit: int | None) -> Message:
    if isinstance(value, Message):
        content = value.content
        text = type(content) is str or content is None
        if text and limit is None:
            return value
        if limit is None:  # content blocks given to the Message itself
            return attrs.evolve(value, content=_content(content, None))
        calls = value.tool_calls
        if text and (content is None or len(content) <= limit) and not calls:
            return value
        return attrs.evolve(
            value,
            content=None if content is None else _content(content, limit),
            tool_calls=None if calls is None else [_tool_call(call, limit) for call in calls],
        )
    if isinstance(value, Mapping):
        given = value.get("role")
        given = _ROLE_ALIASES.get(given, given) if isinstance(given, str) else None
        if given in MESSAGE_ROLES:
            role = given
        if "content" not in value and "tool_calls" not in value:  # not a message: all of it is the content
            return Message(content=_clip(to_text(value), limit), role=role)
        content = value.get("content")
        call_id = value.get("tool_call_id")
        calls = value.get("tool_calls")
        tool_calls = (
            [_tool_call(c, limit) for c in calls if isinstance(c, (ToolCall, Mapping))]
            if isinstance(calls, (list, tuple))
            else None
        )
        return Message(
            content=None if content is None else _content(content, limit),
            role=role,
            tool_call_id=None if call_id is None else _safe_str(call_id),
            tool_calls=tool_calls,
        )
    return Message(content=_clip(to_text(value), limit), role=role)


def _content(content: Any, limit: int | None) -> str | list[ContentPart]:
    """A message content: a string, text pieces joined or content parts (see :func:`message_content`), or
    anything else as text."""
    if type(content) is str:
        return _clip(content, limit)
    shaped = message_content(content)
    if shaped is None:
        return _clip(to_text(content), limit)
    return _clip(shaped, limit) if isinstance(shaped, str) else _clip_parts(shaped, limit)


def _tool_call(value: ToolCall | Mapping[str, Any], limit: int | None) -> ToolCall:
    if isinstance(value, ToolCall):
        fn = value.function
        if limit is None or (len(fn.arguments) <= limit and len(fn.name) <= limit):
            return value
        return ToolCall(
            id=value.id,
            function=ToolCallFunction(name=_clip(fn.name, limit), arguments=_clip(fn.arguments, limit)),
        )
    function = value.get("function")
    fn_map: Mapping[str, Any] = function if isinstance(function, Mapping) else value
    name = fn_map.get("name")
    arguments = fn_map.get("arguments")
    call_id = value.get("id")
    return ToolCall(
        id="" if call_id is None else _safe_str(call_id),
        function=ToolCallFunction(
            name="" if name is None else _clip(_safe_str(name), limit),
            arguments=_clip(to_text(arguments), limit),
        ),
    )


def _document(value: Any, limit: int | None) -> Document:
    if isinstance(value, Document):
        if limit is None or len(value.content) <= limit:
            return value
        return Document(content=_clip(value.content, limit), metadata=value.metadata)
    if isinstance(value, Mapping) and ("content" in value or "page_content" in value):
        content = value["content"] if "content" in value else value["page_content"]
        extra = {k: v for k, v in value.items() if k not in ("content", "page_content", "metadata")}
        meta = value.get("metadata")
        merged = {**extra, **meta} if isinstance(meta, Mapping) else extra
        return Document(content=_clip(to_text(content), limit), metadata=_doc_metadata(merged, limit))
    page_content = getattr(value, "page_content", None)  # LangChain documents
    if isinstance(page_content, str):
        meta = getattr(value, "metadata", None)
        return Document(
            content=_clip(page_content, limit),
            metadata=_doc_metadata(meta if isinstance(meta, Mapping) else {}, limit),
        )
    return Document(content=_clip(to_text(value), limit))


def _doc_metadata(meta: Mapping[Any, Any], limit: int | None) -> dict[str, str | int | float | bool]:
    return {_clip(_safe_str(k), limit): _scalar(v, limit) for k, v in meta.items()}
