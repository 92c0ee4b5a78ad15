"""Request bodies as the collector reads them: JSON, not nested too deep, valid Unicode.

:func:`parse_json` turns a body into a value or a :class:`BodyError` saying why not (422):

* **Text.** JSON is UTF-8. Bytes that are not (a client's bug) become U+FFFD, and so does any lone surrogate
  a ``\\udXXX`` escape names (``"file \\udcff"``: what ``os.fsdecode`` gives for a file name that is not
  UTF-8), in keys and values alike. Such text cannot be stored or sent back as UTF-8; losing the record
  over one character would be worse, so it is stored with U+FFFD in its place.
* **Depth.** Arrays and objects nested more than :data:`MAX_JSON_DEPTH` levels deep are refused. A trace
  body takes two levels per level of nested spans, so the limit leaves room for some 60 levels of spans,
  far more than any agent produces; the schema validation after parsing recurses in Python (about five
  frames a level) and would fail beyond roughly 200 levels.
* ``NaN`` and ``Infinity`` are not JSON: refused, rather than stored where they could not be sent back; so
  are integers outside 64 bits and numbers too large for a double (``1e400``), which SQLite's JSON functions
  would read as infinity: one such duration made every trace list fail.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = ["MAX_JSON_DEPTH", "BodyError", "parse_json"]

MAX_JSON_DEPTH = 128
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class BodyError(ValueError):
    """A body the collector cannot take; ``problem`` is the FastAPI-style problem to answer 422 with."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.problem = {"loc": ["body"], "msg": message, "type": kind}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _int(text: str) -> int:
    if len(text) > 20 or not -(2**63) <= (value := int(text)) < 2**63:
        raise ValueError(f"integer out of the 64-bit range: {text[:30]}")
    return value


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:30]}")
    return value


def parse_json(raw: bytes) -> Any:
    """``raw`` as a JSON value (see the module docstring); :class:`BodyError` when it is not one."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("utf-8", "replace")
    too_deep = BodyError("json_too_deep", f"JSON nested more than {MAX_JSON_DEPTH} levels deep")
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_int=_int, parse_float=_float)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:
        raise BodyError("json_invalid", f"Invalid JSON: {exc}") from None
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        raise too_deep
    if _SURROGATE_ESCAPE.search(raw):
        value = _valid_text(value)
    return value


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest in ``value`` (iterative: any depth)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def _clean(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


def _valid_text(value: Any) -> Any:
    """``value`` with every lone surrogate, in keys and strings, replaced by U+FFFD (iterative)."""
    if isinstance(value, str):
        return _clean(value)
    if not isinstance(value, (dict, list)):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = _clean(item)
        elif isinstance(item, list):
            stack.extend((item, index) for index in range(len(item)))
        elif isinstance(item, dict):
            cleaned = {_clean(k) if isinstance(k, str) else k: v for k, v in item.items()}
            container[key] = cleaned
            stack.extend((cleaned, k) for k in cleaned)
    return root[0]
