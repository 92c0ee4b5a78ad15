"""Validation of write bodies against Galileo's published JSON Schemas.

``ingest_schemas.json`` (packaged next to this module, a byte-for-byte copy of the schemas extracted from
Galileo's OpenAPI document) holds OpenAPI 3.1 components. Each root (``LogTracesIngestRequest``,
``LogSpansIngestRequest``, ``LogTraceUpdateRequest``, ``LogSpanUpdateRequest``) is checked with a
Draft 2020-12 validator; ``#/components/schemas/X`` references resolve through a ``referencing`` registry
that holds the whole document under one URI. OpenAPI's ``"format": "uuid4"`` is enforced by a format
checker that knows only that format: a string that parses as a UUID whose version is 4.

Errors come back shaped like FastAPI's, ``{"loc": ["body", ...path], "msg": ..., "type": "schema"}``.
OpenAPI discriminators (``type`` selects the span schema) are not JSON Schema, so a failed ``oneOf`` that
carries one is explained with the errors of the branch the discriminator names: an llm span whose input is
a string reports ``'...' is not of type 'array'`` at ``body.spans.0.input``, not "valid under none of".
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

__all__ = ["ROOTS", "SCHEMA_URI", "is_uuid4", "load_schema_document", "validate"]

SCHEMA_URI = "urn:galileo:ingest-schemas"
ROOTS = ("LogTracesIngestRequest", "LogSpansIngestRequest", "LogTraceUpdateRequest", "LogSpanUpdateRequest")
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


def load_schema_document() -> dict[str, Any]:
    """The packaged ``ingest_schemas.json``, parsed."""
    text = resources.files("galileo.collector").joinpath("ingest_schemas.json").read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def _format_checker() -> Any:
    checker = FormatChecker(formats=())
    checker.checks("uuid4")(is_uuid4)
    return checker


@functools.cache
def _validator(root: str) -> Any:
    document = load_schema_document()
    if root not in document["components"]["schemas"]:
        raise KeyError(f"no schema {root!r} in ingest_schemas.json")
    registry: Registry[Any] = Registry().with_resource(SCHEMA_URI, DRAFT202012.create_resource(document))
    schema = {"$ref": f"{SCHEMA_URI}#/components/schemas/{root}"}
    return Draft202012Validator(schema, registry=registry, format_checker=_format_checker())


def _dispatch_on_discriminators(node: Any) -> Any:
    """A copy of a schema where every ``oneOf`` with an OpenAPI ``discriminator`` checks only the branch the
    discriminating property names (``if``/``then``), instead of every branch.

    This is the discriminator's meaning in OpenAPI, and much faster: a span list otherwise validates each span
    against all six span schemas. An object without the property falls back to the plain ``oneOf``.
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
    one_of = copied.pop("oneOf")
    copied.pop("discriminator")
    copied["if"] = {"required": [name]}
    copied["then"] = {_DISPATCH: {"propertyName": name, "mapping": mapping}}
    copied["else"] = {"oneOf": one_of}
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


#: The keyword the fast validator uses for a discriminated ``oneOf``: one look-up of the branch, instead of
#: an ``if``/``then`` per branch (each a validator of its own).
_DISPATCH = "x-galileo-dispatch"


def _dispatch(validator: Any, spec: dict[str, Any], instance: Any, schema: Any) -> Iterable[Any]:
    if not isinstance(instance, dict):
        return
    value = instance.get(spec["propertyName"])
    ref = spec["mapping"].get(value)
    if ref is None:
        yield ValidationError(f"{value!r} is not one of {sorted(spec['mapping'])}")
        return
    yield from validator.descend(instance, {"$ref": ref})


@functools.cache
def _fast_validator(root: str) -> Any:
    document = _dispatch_on_discriminators(load_schema_document())
    registry: Registry[Any] = Registry().with_resource(SCHEMA_URI, DRAFT202012.create_resource(document))
    schema = {"$ref": f"{SCHEMA_URI}#/components/schemas/{root}"}
    fast = validators.extend(Draft202012Validator, {_DISPATCH: _dispatch, _NULLABLE: _nullable})
    return fast(schema, registry=registry, format_checker=_format_checker())


def _discriminated_branch(error: Any) -> list[Any] | None:
    """The context errors of the ``oneOf`` branch the OpenAPI discriminator selects, if there is one."""
    discriminator = error.schema.get("discriminator")
    if not isinstance(discriminator, dict) or not isinstance(error.instance, dict):
        return None
    value = error.instance.get(discriminator.get("propertyName", ""))
    target = discriminator.get("mapping", {}).get(value) if isinstance(value, str) else None
    for index, branch in enumerate(error.schema.get(error.validator, [])):
        if target is not None and isinstance(branch, dict) and branch.get("$ref") == target:
            return [sub for sub in error.context if sub.schema_path and sub.schema_path[0] == index]
    return None


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
    if error.validator not in ("oneOf", "anyOf") or not isinstance(error.schema, dict):
        return [_problem(error.absolute_path, str(error.message))]
    discriminator = error.schema.get("discriminator")
    if isinstance(discriminator, dict) and isinstance(error.instance, dict):
        branch = _discriminated_branch(error)
        if branch:
            return [problem for sub in branch for problem in _explain(sub)]
        name = discriminator.get("propertyName", "")
        choices = ", ".join(sorted(discriminator.get("mapping", {})))
        if branch is None and name in error.instance:
            message = f"{error.instance[name]!r} is not a known {name}; expected one of: {choices}"
            return [_problem([*error.absolute_path, name], message)]
        if not error.context:
            # Valid under several branches: only the (missing) discriminating property could tell them apart.
            return [
                _problem([*error.absolute_path, name], f"{name!r} is a required property (one of: {choices})")
            ]
    if not error.context:
        return [_problem(error.absolute_path, str(error.message))]
    fitting = _type_matching_branch(error)
    if fitting:
        return [problem for sub in fitting for problem in _explain(sub)]
    return _explain(best_match(error.context))


def validate(root: str, body: object) -> list[dict[str, Any]]:
    """Validate ``body`` against ``#/components/schemas/{root}``; return the problems (empty when valid).

    ``root`` is usually one of :data:`ROOTS` (the write bodies); any component works, e.g. a response schema.
    """
    if _fast_validator(root).is_valid(body):  # the common case, checked the fast way
        return []
    problems: list[dict[str, Any]] = []
    for error in _validator(root).iter_errors(body):  # the slow way explains what is wrong
        problems.extend(_explain(error))
        if len(problems) >= _MAX_ERRORS:
            break
    return problems[:_MAX_ERRORS]
