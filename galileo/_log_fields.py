"""What ``@log`` makes of a call's arguments and return value: the span's input text, its fields, its output.

Input. The arguments as passed, by parameter name (``self``/``cls`` left out, defaults left out), as JSON
text; values JSON cannot hold are shown by their fields (dataclasses, attrs classes, pydantic models: without
unset, default and None fields, as the published SDK dumps them) or their ``repr``; at most
:data:`MAX_CHARS` characters.

Span fields from arguments (as the published SDK fills them). A parameter named after a span field fills it,
its default included when the caller left it out: ``name``, ``metadata`` and ``tags`` for every span type,
``model``, ``temperature`` and ``tools`` for llm spans, ``tool_call_id`` for tool spans, ``agent_type`` for
agent spans. ``@log(params={field: source})`` names the source of any field the span type takes (those
above, ``status_code``, ``step_number``, ``output``, ``redacted_input``, ``redacted_output``, and for llm
spans ``num_input_tokens``, ``num_output_tokens``, ``total_tokens``, ``time_to_first_token_ns``,
``finish_reason``): a parameter name (its argument), a callable (called with every argument by parameter
name, defaults included) or, for a string that names no parameter, that string itself. ``params`` wins over
the same-name filling; an explicit ``@log(name=...)`` wins over an argument called ``name`` (the published SDK
lets the argument win). A value of the wrong type is dropped with one WARNING.

Output. llm spans keep what the function returned (a message, a dict, a string) for the payload policy,
except a list or tuple, which is logged whole as JSON text (not as its last message); retriever spans turn
documents (galileo_core ``Document`` objects, anything with ``content``/``page_content`` and ``metadata``,
document dicts, strings) into documents; other spans take the value as text (a string as it is, else JSON).

Design: everything that depends on the decorated function only is worked out once, in :class:`LogSpec`, so a
call whose function has no parameter named after a field and no ``params`` pays one attribute test.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from galileo import _params, schema
from galileo._content_blocks import block_instances
from galileo._logger_api import _agent_type
from galileo.exceptions import _describe
from galileo.schema import TRUNCATION_MARKER

__all__ = ["FILLED_FROM_ARGUMENTS", "MAX_CHARS", "SETTABLE_FIELDS", "LogSpec", "output_value", "to_text"]

_log = logging.getLogger("galileo")

#: Characters kept of a call's input and of its output (then the truncation marker); the logger's
#: ``max_payload_chars`` applies on top.
MAX_CHARS: Final = 10_000

_COMMON: Final = ("name", "metadata", "tags")
#: The span fields a parameter of the same name fills, per span type (the published SDK's list).
FILLED_FROM_ARGUMENTS: Final[Mapping[str, tuple[str, ...]]] = {
    "workflow": _COMMON,
    "retriever": _COMMON,
    "llm": (*_COMMON, "model", "temperature", "tools"),
    "tool": (*_COMMON, "tool_call_id"),
    "agent": (*_COMMON, "agent_type"),
}
_ANY_KIND: Final = (*_COMMON, "status_code", "step_number", "output", "redacted_input", "redacted_output")
#: The span fields ``@log(params=...)`` may set, per span type.
SETTABLE_FIELDS: Final[Mapping[str, frozenset[str]]] = {
    "workflow": frozenset(_ANY_KIND),
    "retriever": frozenset(_ANY_KIND),
    "llm": frozenset(
        (
            *_ANY_KIND,
            "model",
            "temperature",
            "tools",
            "num_input_tokens",
            "num_output_tokens",
            "total_tokens",
            "time_to_first_token_ns",
            "finish_reason",
        )
    ),
    "tool": frozenset((*_ANY_KIND, "tool_call_id")),
    "agent": frozenset((*_ANY_KIND, "agent_type")),
}
_INTS: Final = frozenset(
    (
        "status_code",
        "step_number",
        "num_input_tokens",
        "num_output_tokens",
        "total_tokens",
        "time_to_first_token_ns",
    )
)
_STRINGS: Final = frozenset(("name", "model", "tool_call_id", "finish_reason"))
_MISSING: Final = object()

_said: set[str] = set()


def warn_once(key: str, message: str) -> None:
    """In an ``except`` block: ``message`` (with ``%s`` for the cause) once per ``key`` until
    ``galileo_context.reset()``, as one WARNING line naming the cause; its traceback at DEBUG."""
    if key not in _said:
        _said.add(key)
        exc = sys.exc_info()[1]
        _log.warning(message, _describe(exc))
        _log.debug("galileo: the traceback of the warning above", exc_info=exc)


def forget_warnings() -> None:
    _said.clear()
    _params.forget()


# -- serialisation -------------------------------------------------------------------------------------------
def clip(text: str) -> str:
    if len(text) <= MAX_CHARS:
        return text
    return text[:MAX_CHARS] + TRUNCATION_MARKER.format(omitted=len(text) - MAX_CHARS)


def _repr(value: Any) -> str:
    try:
        return clip(repr(value))
    except Exception:
        return f"<{type(value).__name__} object>"


def _dump_model(value: Any) -> Any:
    """A pydantic model's fields as the published SDK logs them: JSON mode, without unset, default and None
    fields (duck-typed: pydantic is not our dependency); pydantic 1's ``dict()`` likewise."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return dump(mode="json", exclude_none=True, exclude_unset=True, exclude_defaults=True)
        except TypeError:  # a model_dump of another library, without these options
            return dump()
    return value.dict(exclude_none=True, exclude_unset=True, exclude_defaults=True)


def _is_model(value: Any) -> bool:
    if isinstance(value, type):
        return False
    return callable(getattr(value, "model_dump", None)) or (
        callable(getattr(value, "dict", None)) and hasattr(type(value), "__fields__")
    )


def _json_default(value: Any) -> Any:
    """What JSON cannot hold: sets as lists, dataclasses/attrs/pydantic as their fields, others' repr."""
    try:
        if isinstance(value, (set, frozenset)):
            return list(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return dataclasses.asdict(value)
        if attrs.has(type(value)):
            return attrs.asdict(value)
        if _is_model(value):
            return _dump_model(value)
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


def to_text(value: Any) -> str:
    """``value`` as text: a string as it is, anything else as JSON (falling back to repr); clipped."""
    if isinstance(value, str):
        return clip(value)
    try:
        text = _encode(value)
    except Exception:  # circular structures, a failing default, keys JSON cannot hold
        text = _repr(value)
    return clip(text)


def _document(value: Any) -> Any:
    """A retrieved item as the payload policy reads documents: objects with ``content`` (galileo_core's
    ``Document``) or ``page_content`` (LangChain's) and ``metadata`` become document dicts."""
    if isinstance(value, (str, Mapping, schema.Document)):
        return value
    content = getattr(value, "content", None)
    if not isinstance(content, str):
        content = getattr(value, "page_content", None)
    if isinstance(content, str):
        metadata = getattr(value, "metadata", None)
        return {"content": content, "metadata": dict(metadata) if isinstance(metadata, Mapping) else {}}
    if _is_model(value) or dataclasses.is_dataclass(value) or attrs.has(type(value)):
        return to_text(value)
    return value


def output_value(kind: str, value: Any) -> Any:
    """A return value as the span's output (see the module docstring)."""
    if value is None:
        return None
    if kind != "retriever" and type(value) is list:
        parts = block_instances(value)  # content block objects stay content blocks, as published
        if parts is not None:
            return parts
    if kind == "llm":
        if isinstance(value, (list, tuple)):
            return to_text(list(value))  # the whole list, as the published SDK logs it
        if _is_model(value) and not isinstance(value, schema.Message):
            return _dump_model(value)
        return value
    if kind == "retriever":
        if isinstance(value, (list, tuple)):
            return [_document(item) for item in value]
        return [_document(value)]
    return to_text(value)


# -- one decorated function ----------------------------------------------------------------------------------
class LogSpec:
    """What ``@log`` works out once per decorated function: span class, name, how to read its arguments."""

    __slots__ = (
        "auto",
        "cls",
        "dataset",
        "kind",
        "name",
        "named",
        "opens_level",
        "params",
        "positional",
        "sig",
        "skip_first",
    )

    def __init__(
        self,
        func: Callable[..., Any],
        kind: str,
        name: str | None,
        params: Mapping[str, Any] | None = None,
        dataset: Any = None,
    ) -> None:
        self.kind = kind
        self.dataset = dataset  # @log(dataset_record=...): the dataset fields of a trace a call starts
        self.cls = schema.SPAN_TYPES[kind]
        self.opens_level = kind in ("workflow", "agent")
        self.named = name is not None  # an explicit name wins over an argument called ``name``
        self.name = name or getattr(func, "__name__", None) or "call"
        try:
            self.sig: inspect.Signature | None = inspect.signature(func)
        except (TypeError, ValueError):
            self.sig = None
        all_params = list(self.sig.parameters.values()) if self.sig is not None else []
        self.skip_first = bool(all_params) and all_params[0].name in ("self", "cls")
        # Only plain positional-or-keyword parameters: arguments can be named without binding.
        self.positional: tuple[str, ...] | None = (
            tuple(p.name for p in all_params)
            if self.sig is not None
            and all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in all_params)
            else None
        )
        settable = SETTABLE_FIELDS[kind]
        self.params: dict[str, Any] | None = None
        if params:
            unknown = sorted(str(k) for k in params if k not in settable)
            if unknown:
                _log.warning(
                    "galileo: @log(params=...) on %s: %s not a field of %s spans; ignored",
                    self.name,
                    ", ".join(unknown),
                    kind,
                )
            self.params = {k: v for k, v in params.items() if k in settable} or None
        # (field, positional index or None, default or _MISSING) of each parameter named after a field
        auto: list[tuple[str, int | None, Any]] = []
        for index, p in enumerate(all_params):
            if p.name in FILLED_FROM_ARGUMENTS[kind] and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                if self.named and p.name == "name":
                    continue
                positional = p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                default = _MISSING if p.default is inspect.Parameter.empty else p.default
                auto.append((p.name, index if positional else None, default))
        self.auto: tuple[tuple[str, int | None, Any], ...] | None = tuple(auto) or None

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
        return to_text(arguments) if arguments else "{}"

    def fields(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | None:
        """The span fields this call's arguments give (checked; see the module docstring), or None."""
        if self.auto is None and self.params is None:
            return None
        raw: dict[str, Any] = {}
        if self.params is not None:
            arguments = self._arguments(args, kwargs)
            for field, source in self.params.items():
                if callable(source):
                    try:
                        raw[field] = source(arguments)
                    except Exception:
                        warn_once(
                            f"params-{self.name}-{field}",
                            f"galileo: @log(params=...) on {self.name}: the source of {field!r} failed (%s)",
                        )
                elif isinstance(source, str) and source in arguments:
                    raw[field] = arguments[source]
                else:
                    raw[field] = source
        if self.auto is not None:
            for field, index, default in self.auto:
                if field in raw:
                    continue
                if field in kwargs:
                    raw[field] = kwargs[field]
                elif index is not None and index < len(args):
                    raw[field] = args[index]
                elif default is not _MISSING:
                    raw[field] = default
        return _checked(self.name, raw)

    def _arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Every argument by parameter name, defaults included, ``self``/``cls`` left out."""
        if self.sig is None:
            return dict(kwargs)
        try:
            bound = self.sig.bind_partial(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
        except TypeError:
            arguments = dict(kwargs)
        if self.skip_first:
            arguments.pop(next(iter(self.sig.parameters)), None)
        return arguments


def _checked(where: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Fields of the types the span records take; others dropped with a WARNING. None values are dropped."""
    out: dict[str, Any] = {}
    for field, value in raw.items():
        if value is None:
            continue
        ok = True
        if field in _STRINGS:
            out[field] = value if isinstance(value, str) else str(value)
        elif field in _INTS:
            ok = isinstance(value, int) and not isinstance(value, bool)
            if ok:
                out[field] = value
        elif field == "temperature":
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                out[field] = float(value)
        elif field == "metadata":
            ok = isinstance(value, Mapping) or _is_model(value)
            if ok:
                out[field] = value if isinstance(value, Mapping) else _dump_model(value)
        elif field == "tools":
            items = (
                [_dump_model(t) if _is_model(t) else t for t in value]
                if isinstance(value, (list, tuple))
                else []
            )
            ok = isinstance(value, (list, tuple)) and all(isinstance(t, Mapping) for t in items)
            if ok:
                out[field] = [dict(t) for t in items]
        elif field == "agent_type":  # an enum's value; an unknown type is 'default' (with a WARNING)
            out[field] = _agent_type(value)
        else:  # tags, output, redacted_input, redacted_output: the payload policy takes any value
            out[field] = value
        if not ok:
            key = f"field-{where}-{field}"
            if key not in _said:
                _said.add(key)
                _log.warning(
                    "galileo: @log on %s: %s of type %s does not fit the span's %r field; left out",
                    where,
                    field,
                    type(value).__name__,
                    field,
                )
    return out
