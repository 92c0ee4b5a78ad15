"""Validation of write bodies against Galileo's published JSON Schemas.

``ingest_schemas.json`` (packaged next to this module, a byte-for-byte copy of the schemas extracted from
Galileo's OpenAPI document) holds OpenAPI 3.1 components; ``session_schemas.json`` (a byte-for-byte copy of
the shared ``galileo-api/session_schemas.json``, from the same OpenAPI document: its ``source`` says which)
holds those of the session routes (:data:`SESSION_ROOTS`). Each root (``LogTracesIngestRequest``,
``LogSpansIngestRequest``, ``LogTraceUpdateRequest``, ``LogSpanUpdateRequest``) is checked with a
Draft 2020-12 validator; ``#/components/schemas/X`` references resolve through a ``referencing`` registry
that holds the whole document under one URI. OpenAPI's ``"format": "uuid4"`` is enforced by a format
checker that knows only that format: a string that parses as a UUID whose version is 4.

Errors come back shaped like FastAPI's, ``{"loc": ["body", ...path], "msg": ..., "type": "schema"}``.
OpenAPI discriminators (``type`` selects the span schema) are not JSON Schema: every ``oneOf`` that carries
one checks only the branch its property names, as OpenAPI (and Galileo's own server) means it, so an llm span
whose input is a string reports ``'...' is not of type 'array'`` at ``body.spans.0.input``, and a span without
a ``type`` is refused (``'type' is a required property``) rather than tried against every span schema.

Cost is linear in the body. Trying every branch of a discriminated ``oneOf`` costs a factor of about five per
level of nested spans, whether the body is checked or explained: a 9-level body of spans without ``type``
took minutes of the collector's only event loop. Depth is bounded before validation (the app refuses bodies
nested more than :data:`galileo.collector.app.MAX_JSON_DEPTH` levels): the validator recurses in Python,
about five frames per level.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Iterable
from importlib import resources
from typing import Any

try:
    from jsonschema import Draft202012Validator, FormatChecker, validators  # type: ignore[import-untyped]
    from jsonschema.exceptions import ValidationError, best_match  # type: ignore[import-untyped]
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ImportError(
        "galileo.collector needs jsonschema; install the collector extra: pip install 'galileo[collector]'"
    ) from exc

__all__ = ["ROOTS", "SCHEMA_URI", "SESSION_ROOTS", "is_uuid4", "load_schema_document", "validate"]

SCHEMA_URI = "urn:galileo:ingest-schemas"
_SESSION_URI = "urn:galileo:session-schemas"
ROOTS = ("LogTracesIngestRequest", "LogSpansIngestRequest", "LogTraceUpdateRequest", "LogSpanUpdateRequest")
#: The roots validated against ``session_schemas.json``.
SESSION_ROOTS = ("SessionCreateRequest", "SessionCreateResponse", "LogRecordsQueryRequest")
_MAX_ERRORS = 20
_MAX_MESSAGE = 300


def is_uuid4(value: object) -> bool:
    """True for a string that parses as a UUID of version 4."""
    if not isinstance(value, str):
        return False
    try:
        return uuid.UUID(value).version == 4
    except ValueError:
        return False


def load_schema_document(name: str = "ingest_schemas.json") -> dict[str, Any]:
    """The packaged ``ingest_schemas.json`` (or another packaged schema file), parsed."""
    text = resources.files("galileo.collector").joinpath(name).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _format_checker() -> Any:
    checker = FormatChecker(formats=())
    checker.checks("uuid4")(is_uuid4)
    return checker


def _dispatch_on_discriminators(node: Any) -> Any:
    """A copy of a schema where every ``oneOf`` with an OpenAPI ``discriminator`` checks only the branch the
    discriminating property names (:data:`_DISPATCH`), instead of every branch.

    This is the discriminator's meaning in OpenAPI, and linear: a span list otherwise validates each span
    against all six span schemas, and each of those its child spans against all six again.
    """
    if isinstance(node, list):
        return [_dispatch_on_discriminators(item) for item in node]
    if not isinstance(node, dict):
        return node
    copied = {key: _dispatch_on_discriminators(value) for key, value in node.items()}
    _simplify_any_of(copied)
    discriminator = copied.get("discriminator")
    if not (isinstance(discriminator, dict) and isinstance(copied.get("oneOf"), list)):
        return copied
    name, mapping = discriminator.get("propertyName"), discriminator.get("mapping")
    if not isinstance(name, str) or not isinstance(mapping, dict) or not mapping:
        return copied
    copied.pop("oneOf")
    copied.pop("discriminator")
    copied[_DISPATCH] = {"propertyName": name, "mapping": mapping}
    return copied


def _simplify_any_of(node: dict[str, Any]) -> None:
    """Rewrite (in place) the two ``anyOf`` shapes that make most of the schemas, to what they mean:
    branches that only name a type become one ``type`` list, and "X or null" checks X unless the value is
    null (:data:`_NULLABLE`) — one check instead of a validator per branch and an error per failed one."""
    branches = node.get("anyOf")
    if not isinstance(branches, list) or not branches or "type" in node or _NULLABLE in node:
        return
    if all(isinstance(b, dict) and set(b) == {"type"} and isinstance(b["type"], str) for b in branches):
        node["type"] = [b["type"] for b in node.pop("anyOf")]
        return
    others = [b for b in branches if b != {"type": "null"}]
    if len(others) == len(branches) - 1:
        node.pop("anyOf")
        node[_NULLABLE] = others[0] if len(others) == 1 else {"anyOf": others}


#: The fast validator's keyword for "this schema, or null" (see _simplify_any_of).
_NULLABLE = "x-galileo-nullable"


def _nullable(validator: Any, inner: Any, instance: Any, schema: Any) -> Iterable[Any]:
    if instance is not None:
        yield from validator.descend(instance, inner)


#: The validator's keyword for a discriminated ``oneOf``: one look-up of the branch its property names.
_DISPATCH = "x-galileo-dispatch"


def _dispatch(validator: Any, spec: dict[str, Any], instance: Any, schema: Any) -> Iterable[Any]:
    if not isinstance(instance, dict):
        yield ValidationError(f"{instance!r} is not of type 'object'")
        return
    name, mapping = spec["propertyName"], spec["mapping"]
    choices = ", ".join(sorted(mapping))
    if name not in instance:
        yield ValidationError(f"{name!r} is a required property (one of: {choices})", path=[name])
        return
    value = instance[name]
    ref = mapping.get(value) if isinstance(value, str) else None
    if ref is None:
        yield ValidationError(f"{value!r} is not a known {name}; expected one of: {choices}", path=[name])
        return
    yield from validator.descend(instance, {"$ref": ref})


@functools.cache
def _validator(root: str) -> Any:
    name, uri = (
        ("session_schemas.json", _SESSION_URI)
        if root in SESSION_ROOTS
        else ("ingest_schemas.json", SCHEMA_URI)
    )
    document = _dispatch_on_discriminators(load_schema_document(name))
    registry: Registry[Any] = Registry().with_resource(uri, DRAFT202012.create_resource(document))
    schema = {"$ref": f"{uri}#/components/schemas/{root}"}
    extended = validators.extend(Draft202012Validator, {_DISPATCH: _dispatch, _NULLABLE: _nullable})
    return extended(schema, registry=registry, format_checker=_format_checker())


def _problem(path: Iterable[str | int], message: str) -> dict[str, Any]:
    if len(message) > _MAX_MESSAGE:
        message = message[: _MAX_MESSAGE - 1] + "…"
    return {"loc": ["body", *path], "msg": message, "type": "schema"}


def _type_matching_branch(error: Any) -> list[Any] | None:
    """The context errors of the only ``anyOf``/``oneOf`` branch whose ``type`` fits the instance."""
    by_branch: dict[int, list[Any]] = {}
    for sub in error.context:
        by_branch.setdefault(sub.schema_path[0], []).append(sub)
    fitting = [
        subs
        for subs in by_branch.values()
        if not any(sub.validator == "type" and not sub.relative_path for sub in subs)
    ]
    return fitting[0] if len(fitting) == 1 else None


def _explain(error: Any) -> list[dict[str, Any]]:
    """Descend from a failed ``oneOf``/``anyOf`` to the problems that say what is wrong."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return [_problem(error.absolute_path, str(error.message))]
    fitting = _type_matching_branch(error)
    if fitting:
        return [problem for sub in fitting for problem in _explain(sub)]
    return _explain(best_match(error.context))


def validate(root: str, body: object) -> list[dict[str, Any]]:
    """Validate ``body`` against ``#/components/schemas/{root}``; return the problems (empty when valid).

    ``root`` is usually one of :data:`ROOTS` (the write bodies); any component works, e.g. a response schema.
    """
    validator = _validator(root)
    if validator.is_valid(body):  # the common case: no error objects made
        return []
    problems: list[dict[str, Any]] = []
    for error in validator.iter_errors(body):
        problems.extend(_explain(error))
        if len(problems) >= _MAX_ERRORS:
            break
    return problems[:_MAX_ERRORS]
