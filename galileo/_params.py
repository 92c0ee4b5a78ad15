"""The typed fields of records, checked where a record is built: a value of the wrong type costs that field.

A record's numbers (status code, step number, durations, token counts, temperature), its text fields (name,
external id, model, finish reason, tool call id) and an llm span's tools are checked by attrs converters on
the record classes of :mod:`galileo.schema` (at construction; what the logger assigns later, a concluding
``status_code`` or ``duration_ns``, it checks itself, in ``GalileoLogger._place`` and ``_finish``): a value
that does not fit is left out (None; a name "") with one WARNING per field name until
``galileo_context.reset()``, naming the field and the value's type, never the value. So a misuse never raises
into the caller and never makes a batch's body fail to build or be refused (which would cost every record in
it).

Text fields take strings only; integers take what ``operator.index`` takes (numpy integers too), never
bools; a temperature takes any real number; tools take a list or tuple of mappings (copied as dicts; ``[]``
is valid).
"""

from __future__ import annotations

import logging
import numbers
import operator
from collections.abc import Mapping
from typing import Any

__all__ = [
    "as_float",
    "as_int",
    "as_text",
    "duration_ns",
    "external_id",
    "finish_reason",
    "forget",
    "model",
    "name",
    "num_input_tokens",
    "num_output_tokens",
    "num_total_tokens",
    "status_code",
    "step_number",
    "temperature",
    "time_to_first_token_ns",
    "tool_call_id",
    "tools",
]

_log = logging.getLogger("galileo")
_said: set[str] = set()


def _dropped(name: str, value: Any) -> None:
    if name not in _said:
        _said.add(name)
        _log.warning("galileo: %s of type %s is not a valid value; left out", name, type(value).__name__)


def forget() -> None:
    """Warn again about fields already warned about (``galileo_context.reset()``)."""
    _said.clear()


def as_int(name: str, value: Any) -> int | None:
    """``value`` as an int, or None (with a WARNING naming ``name``) when it is not an integer."""
    if value is None or type(value) is int:
        return value
    if not isinstance(value, bool):
        try:
            return operator.index(value)
        except TypeError:
            pass
    _dropped(name, value)
    return None


def as_float(name: str, value: Any) -> float | None:
    """``value`` as a float, or None (with a WARNING naming ``name``) when it is not a real number."""
    if value is None or type(value) is float:
        return value
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    _dropped(name, value)
    return None


def as_text(name: str, value: Any) -> str | None:
    """``value`` when it is a string, or None (with a WARNING naming ``name``)."""
    if value is None or isinstance(value, str):
        return value
    _dropped(name, value)
    return None


def tools(value: Any) -> list[dict[str, Any]] | None:
    """An llm span's tools as a list of dicts, or None (with a WARNING) when not a sequence of mappings."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)) and all(isinstance(t, Mapping) for t in value):
        return [dict(t) for t in value]
    _dropped("tools", value)
    return None


# -- the converters of the record fields, one per field (named functions: what the attrs mypy plugin reads) --
def status_code(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("status_code", value)


def duration_ns(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("duration_ns", value)


def step_number(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("step_number", value)


def temperature(value: Any) -> float | None:
    return value if value is None or type(value) is float else as_float("temperature", value)


def num_input_tokens(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("num_input_tokens", value)


def num_output_tokens(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("num_output_tokens", value)


def num_total_tokens(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("num_total_tokens", value)


def time_to_first_token_ns(value: Any) -> int | None:
    return value if value is None or type(value) is int else as_int("time_to_first_token_ns", value)


def name(value: Any) -> str:
    return value if type(value) is str else as_text("name", value) or ""


def external_id(value: Any) -> str | None:
    return value if value is None or type(value) is str else as_text("external_id", value)


def model(value: Any) -> str | None:
    return value if value is None or type(value) is str else as_text("model", value)


def finish_reason(value: Any) -> str | None:
    return value if value is None or type(value) is str else as_text("finish_reason", value)


def tool_call_id(value: Any) -> str | None:
    return value if value is None or type(value) is str else as_text("tool_call_id", value)
