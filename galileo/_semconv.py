"""Our records as OpenTelemetry span attributes, and OpenTelemetry spans' attributes as our records.

A leaf, both directions on the wire form of a record (the JSON object ``Record.to_wire(include_children=
False)`` makes and the collector stores), so the exporter (``galileo.otel``) and the collector's OTLP
endpoint use one table. Two conventions are written, and read in this order of preference:

- **OpenInference** (Arize Phoenix, OpenLLMetry-compatible backends): ``openinference.span.kind`` (LLM,
  RETRIEVER, TOOL, AGENT, CHAIN), ``input.value`` / ``output.value`` with ``*.mime_type``,
  ``llm.model_name``, ``llm.token_count.{prompt,completion,total}``, ``llm.invocation_parameters``,
  ``tool.name``, ``metadata`` (JSON), ``tag.tags``, ``session.id``.
- **OTel GenAI** (semantic conventions 1.3x): ``gen_ai.operation.name`` (``chat``, ``execute_tool``,
  ``invoke_agent``), ``gen_ai.request.model``, ``gen_ai.usage.{input,output}_tokens``,
  ``gen_ai.request.temperature``, ``gen_ai.response.finish_reasons``, ``gen_ai.tool.name``,
  ``gen_ai.tool.call.id``, ``gen_ai.agent.name``; read also: ``gen_ai.input.messages`` /
  ``gen_ai.output.messages`` (the published ``galileo.otel``'s), ``gen_ai.prompt`` / ``gen_ai.completion``.

Plus ``galileo.record.type`` (our exact type: trace, workflow, agent, llm, retriever, tool, control), so a
record that goes out and comes back keeps its type, and ``galileo.status_code``.

Decisions: a record's *redacted* input and output, when it has them, are what goes out (an OTel backend is
another audience; the unredacted text stays with Galileo). A span of unknown kind (an HTTP server span, a
database call) becomes a ``workflow`` record: a container that may hold children. Attributes read into a
record's metadata are bounded (:data:`MAX_METADATA`, :data:`MAX_VALUE_CHARS`) and always text.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = [
    "EXPERIMENT",
    "LOG_STREAM",
    "MAX_METADATA",
    "MAX_VALUE_CHARS",
    "PROJECT",
    "RECORD_TYPE",
    "SESSION",
    "record_from_attributes",
    "span_attributes",
]

RECORD_TYPE: Final = "galileo.record.type"
#: Where a span goes in Galileo, as span or resource attributes (the published ``galileo.otel``'s names).
PROJECT: Final = "galileo.project.name"
LOG_STREAM: Final = "galileo.logstream.name"
EXPERIMENT: Final = "galileo.experiment.id"
SESSION: Final = "galileo.session.id"
STATUS_CODE: Final = "galileo.status_code"
KIND: Final = "openinference.span.kind"
OPERATION: Final = "gen_ai.operation.name"
#: Most attributes copied into a record's metadata, and the longest value kept (characters).
MAX_METADATA: Final = 64
MAX_VALUE_CHARS: Final = 4096
#: JSON in an attribute (``input.value`` of a JSON mime type, GenAI messages) nested deeper stays text.
MAX_JSON_DEPTH: Final = 64
_INT64: Final = 2**63

_KIND_OF_TYPE: Final = {
    "trace": "CHAIN",
    "workflow": "CHAIN",
    "agent": "AGENT",
    "llm": "LLM",
    "retriever": "RETRIEVER",
    "tool": "TOOL",
    "control": "GUARDRAIL",
}
_TYPE_OF_KIND: Final = {
    "LLM": "llm",
    "RETRIEVER": "retriever",
    "TOOL": "tool",
    "AGENT": "agent",
    "CHAIN": "workflow",
    "GUARDRAIL": "workflow",
    "EMBEDDING": "llm",
    "RERANKER": "retriever",
}
_OPERATION_OF_TYPE: Final = {"llm": "chat", "tool": "execute_tool", "agent": "invoke_agent"}
_TYPE_OF_OPERATION: Final = {
    "chat": "llm",
    "text_completion": "llm",
    "generate_content": "llm",
    "embeddings": "llm",
    "execute_tool": "tool",
    "invoke_agent": "agent",
    "create_agent": "agent",
}
_TYPES: Final = frozenset(_KIND_OF_TYPE)
_TOKENS: Final = (  # (our metric, OpenInference, GenAI)
    ("num_input_tokens", "llm.token_count.prompt", "gen_ai.usage.input_tokens"),
    ("num_output_tokens", "llm.token_count.completion", "gen_ai.usage.output_tokens"),
    ("num_total_tokens", "llm.token_count.total", None),
)
#: Attributes a record's own fields hold: not copied into its metadata as well.
# fmt: off
_READ: Final = frozenset(
    {
        RECORD_TYPE,
        STATUS_CODE,
        KIND,
        OPERATION,
        "input.value",
        "input.mime_type",
        "output.value",
        "output.mime_type",
        "llm.model_name",
        "gen_ai.request.model",
        "gen_ai.response.model",
        "metadata",
        "tag.tags",
        "gen_ai.input.messages",
        "gen_ai.output.messages",
        "gen_ai.prompt",
        "gen_ai.completion",
        "gen_ai.request.temperature",
        "llm.invocation_parameters",
        "gen_ai.response.finish_reasons",
        "gen_ai.tool.call.id",
        "session.id",
        "tool.name",
        "gen_ai.tool.name",
        "gen_ai.agent.name",
        "galileo.agent.type",
    }
    | {name for _, oi, genai in _TOKENS for name in (oi, genai) if name}
)
# fmt: on


def _text(value: Any) -> tuple[str, str]:
    """``value`` as attribute text and its mime type."""
    if isinstance(value, str):
        return value, "text/plain"
    return json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")), "application/json"


def span_attributes(wire: Mapping[str, Any]) -> dict[str, Any]:
    """The OTel attributes of one record (its wire form), by both conventions."""
    kind = str(wire.get("type", "workflow"))
    attributes: dict[str, Any] = {RECORD_TYPE: kind, KIND: _KIND_OF_TYPE.get(kind, "CHAIN")}
    if kind in _OPERATION_OF_TYPE:
        attributes[OPERATION] = _OPERATION_OF_TYPE[kind]
    for field in ("input", "output"):
        redacted = wire.get(f"redacted_{field}")
        value = redacted if redacted is not None else wire.get(field)
        if value is not None and value != "":
            attributes[f"{field}.value"], attributes[f"{field}.mime_type"] = _text(value)
    if wire.get("status_code") is not None:
        attributes[STATUS_CODE] = int(wire["status_code"])
    metadata = wire.get("user_metadata") or {}
    if metadata:
        attributes["metadata"] = json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))
    if wire.get("tags"):
        attributes["tag.tags"] = [str(tag) for tag in wire["tags"]]
    name = str(wire.get("name") or "")
    if kind == "llm":
        if wire.get("model"):
            attributes["llm.model_name"] = attributes["gen_ai.request.model"] = str(wire["model"])
        metrics = wire.get("metrics") or {}
        for ours, openinference, genai in _TOKENS:
            if metrics.get(ours) is not None:
                attributes[openinference] = int(metrics[ours])
                if genai:
                    attributes[genai] = int(metrics[ours])
        if wire.get("temperature") is not None:
            attributes["gen_ai.request.temperature"] = float(wire["temperature"])
            attributes["llm.invocation_parameters"] = json.dumps({"temperature": wire["temperature"]})
        if wire.get("finish_reason"):
            attributes["gen_ai.response.finish_reasons"] = [str(wire["finish_reason"])]
    elif kind == "tool":
        attributes["tool.name"] = attributes["gen_ai.tool.name"] = name
        if wire.get("tool_call_id"):
            attributes["gen_ai.tool.call.id"] = str(wire["tool_call_id"])
    elif kind == "agent":
        attributes["gen_ai.agent.name"] = name
        attributes["galileo.agent.type"] = str(wire.get("agent_type") or "default")
    return attributes


def _kind(attributes: Mapping[str, Any]) -> str:
    ours = attributes.get(RECORD_TYPE)
    if isinstance(ours, str) and ours in _TYPES and ours != "trace":
        return ours
    kind = attributes.get(KIND)
    if isinstance(kind, str) and kind.upper() in _TYPE_OF_KIND:
        return _TYPE_OF_KIND[kind.upper()]
    operation = attributes.get(OPERATION)
    if isinstance(operation, str) and operation in _TYPE_OF_OPERATION:
        return _TYPE_OF_OPERATION[operation]
    return "workflow"


def _first(attributes: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        value = attributes.get(name)
        if value is not None and value != "":
            return value
    return None


def _payload(attributes: Mapping[str, Any], field: str) -> Any:
    """A record's input or output from the attributes: the value (JSON decoded when its mime type says
    so), else the GenAI messages (a JSON list), else the older ``gen_ai.prompt``/``completion`` text."""
    value = attributes.get(f"{field}.value")
    if isinstance(value, str):
        if attributes.get(f"{field}.mime_type") == "application/json":
            return _json(value)
        return value
    messages = attributes.get(f"gen_ai.{field}.messages")
    if isinstance(messages, str):
        return _json(messages)
    return _first(attributes, "gen_ai.prompt" if field == "input" else "gen_ai.completion")


def _reject(text: str) -> Any:
    raise ValueError(f"{text[:30]} is not storable JSON")


def _json_int(text: str) -> int:
    if len(text) > 20 or not -_INT64 <= (number := int(text)) < _INT64:
        _reject(text)
    return number


def _json_float(text: str) -> float:
    number = float(text)
    return number if math.isfinite(number) else _reject(text)


def _nesting(value: Any) -> int:
    """How deeply lists and dicts nest in ``value`` (iterative)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def _json(text: str) -> Any:
    """``text`` decoded when it is strict JSON (no NaN or infinity, integers in 64 bits: what can be stored
    and sent again) nested at most :data:`MAX_JSON_DEPTH` deep; else the text itself."""
    try:
        value = json.loads(text, parse_constant=_reject, parse_int=_json_int, parse_float=_json_float)
    except (ValueError, RecursionError):
        return text
    return value if _nesting(value) <= MAX_JSON_DEPTH else text


def _bounded(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text[:MAX_VALUE_CHARS]


def _int(value: Any) -> int | None:
    """``value`` as an integer in 64 bits, or None (not a number, not finite, out of range)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    number = int(value)
    return number if -_INT64 <= number < _INT64 else None


def record_from_attributes(name: str, attributes: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a record (wire form: ``type``, ``name``, ``input``, ``output``, ``user_metadata``,
    ``tags``, ``status_code``, ``metrics`` token counts, and per type ``model``, ``temperature``,
    ``finish_reason``, ``tool_call_id``, ``agent_type``) from an OTel span's name and attributes. Times and
    ids are the caller's. Never raises on odd attribute values: what it cannot read it leaves out."""
    kind = _kind(attributes)
    metadata: dict[str, str] = {}
    raw = attributes.get("metadata")
    if isinstance(raw, str):
        try:
            decoded = json.loads(raw)
        except ValueError:
            decoded = {"metadata": raw}
        if isinstance(decoded, dict):
            metadata.update((str(k), _bounded(v)) for k, v in decoded.items())
    for key, value in attributes.items():
        if key not in _READ and len(metadata) < MAX_METADATA:
            is_list = isinstance(value, Sequence) and not isinstance(value, str)
            metadata.setdefault(str(key), _bounded(list(value) if is_list else value))
    tags = attributes.get("tag.tags")
    record: dict[str, Any] = {
        "type": kind,
        "name": name,
        "input": _payload(attributes, "input") or "",
        "output": _payload(attributes, "output"),
        "user_metadata": dict(list(metadata.items())[:MAX_METADATA]),
        "tags": [str(t) for t in tags] if isinstance(tags, Sequence) and not isinstance(tags, str) else [],
        "status_code": _int(attributes.get(STATUS_CODE)),
    }
    if kind == "llm":
        record["model"] = _first(
            attributes, "llm.model_name", "gen_ai.request.model", "gen_ai.response.model"
        )
        metrics: dict[str, Any] = {}
        for ours, openinference, genai in _TOKENS:
            count = _int(_first(attributes, openinference, *((genai,) if genai else ())))
            if count is not None:
                metrics[ours] = count
        if "num_total_tokens" not in metrics and {"num_input_tokens", "num_output_tokens"} <= metrics.keys():
            metrics["num_total_tokens"] = metrics["num_input_tokens"] + metrics["num_output_tokens"]
        record["metrics"] = metrics
        temperature = attributes.get("gen_ai.request.temperature")
        if isinstance(temperature, (int, float)) and _int(temperature) is not None:  # finite, not a bool
            record["temperature"] = float(temperature)
        reasons = attributes.get("gen_ai.response.finish_reasons")
        if isinstance(reasons, Sequence) and not isinstance(reasons, str) and reasons:
            record["finish_reason"] = str(reasons[0])
    elif kind == "tool":
        call_id = attributes.get("gen_ai.tool.call.id")
        record["tool_call_id"] = str(call_id) if call_id is not None else None
    elif kind == "agent":
        record["agent_type"] = str(attributes.get("galileo.agent.type") or "default")
    return record
