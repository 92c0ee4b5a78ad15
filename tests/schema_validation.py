"""Validate request bodies against Galileo's published ingest schemas (JSON Schema 2020-12).

``validate("LogSpansIngestRequest", body)`` raises :class:`SchemaViolation` (an AssertionError, so pytest
shows it plainly) listing every violation with its JSON path. ``#/components/schemas/...`` references resolve
inside the collector's copy of Galileo's ``ingest_schemas.json``. Formats are checked: ``uuid4`` must parse
as a UUID of version 4, ``date-time`` must be RFC 3339 (jsonschema's own date-time check needs an optional
package, so it is done here).
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

__all__ = ["FORMAT_CHECKER", "ROOTS", "SCHEMA_PATH", "SchemaViolation", "validate"]

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "galileo" / "collector" / "ingest_schemas.json"
ROOTS = ("LogTracesIngestRequest", "LogSpansIngestRequest", "LogTraceUpdateRequest", "LogSpanUpdateRequest")
_BASE_URI = "urn:galileo:ingest-schemas"
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})",
)

FORMAT_CHECKER = jsonschema.FormatChecker()


@FORMAT_CHECKER.checks("uuid4", raises=ValueError)
def _is_uuid4(value: object) -> bool:
    if not isinstance(value, str):
        return True
    return uuid.UUID(value).version == 4


@FORMAT_CHECKER.checks("date-time", raises=ValueError)
def _is_date_time(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if not _RFC3339.fullmatch(value):
        return False
    datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return True


class SchemaViolation(AssertionError):
    """A body does not match its schema."""


@functools.cache
def _registry() -> Registry[Any]:
    document = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return Registry().with_resource(
        _BASE_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )


@functools.cache
def _validator(root_name: str) -> jsonschema.Draft202012Validator:
    document = _registry()[_BASE_URI].contents
    if root_name not in document["components"]["schemas"]:
        raise KeyError(f"no schema named {root_name!r} in {SCHEMA_PATH}")
    schema = {"$ref": f"{_BASE_URI}#/components/schemas/{root_name}"}
    return jsonschema.Draft202012Validator(schema, registry=_registry(), format_checker=FORMAT_CHECKER)


def _path(error: jsonschema.ValidationError) -> str:
    out = "body"
    for part in error.absolute_path:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _alternative_errors(error: jsonschema.ValidationError) -> list[jsonschema.ValidationError]:
    """The errors worth showing under a failed anyOf/oneOf: those of the alternatives whose ``type`` const
    matched (the discriminator), else the single best match."""
    by_branch: dict[object, list[jsonschema.ValidationError]] = {}
    for sub in error.context or []:
        by_branch.setdefault(sub.relative_schema_path[0], []).append(sub)
    relevant = [
        sub
        for subs in by_branch.values()
        if not any(s.validator == "const" and list(s.relative_path) == ["type"] for s in subs)
        for sub in subs
    ]
    if relevant:
        return relevant
    best = jsonschema.exceptions.best_match(error.context or [])
    return [] if best is None else [best]


def _describe(error: jsonschema.ValidationError, depth: int = 0) -> list[str]:
    schema_path = "/".join(str(p) for p in error.absolute_schema_path)
    lines = [f"{'  ' * depth}- {_path(error)}: {_short(error.message)} (schema: {schema_path})"]
    if error.context and depth < 6:
        for sub in _alternative_errors(error):
            lines.extend(_describe(sub, depth + 1))
    return lines


def validate(root_name: str, body: dict[str, Any]) -> None:
    """Raise :class:`SchemaViolation` unless ``body`` is valid against the schema ``root_name``."""
    errors = sorted(_validator(root_name).iter_errors(body), key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    lines = [f"{root_name}: {len(errors)} violation(s)"]
    for error in errors[:20]:
        lines.extend(_describe(error))
    if len(errors) > 20:
        lines.append(f"... and {len(errors) - 20} more")
    raise SchemaViolation("\n".join(lines))
