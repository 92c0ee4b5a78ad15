"""Query-string validation for the viewer's JSON API: every problem becomes one clear 400 message.

A route declares the parameters it takes; an unknown name (a typo, a parameter of another route) is refused
rather than ignored, so a link that filters nothing never looks like one that does.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection

from starlette.datastructures import QueryParams

__all__ = ["BadParameter", "check_names", "cursor_text", "integer", "search_text", "uuid_param", "uuid_value"]

MAX_SEARCH = 200


class BadParameter(ValueError):
    """A query parameter the API refuses; the message says which and why, for a 400 answer."""


def check_names(params: QueryParams, allowed: Collection[str]) -> None:
    """Refuse parameters the route does not take, and parameters given more than once."""
    for name in params:
        if name not in allowed:
            known = ", ".join(sorted(allowed)) or "none"
            raise BadParameter(f"unknown query parameter {name!r} (this route takes: {known})")
        if len(params.getlist(name)) > 1:
            raise BadParameter(f"query parameter {name!r} is given more than once")


def integer(params: QueryParams, name: str, default: int, low: int, high: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer between {low} and {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be an integer between {low} and {high}, got {raw!r}")
    return value


def uuid_param(params: QueryParams, name: str) -> str | None:
    """A UUID parameter in canonical form; absent or empty means no filter."""
    raw = params.get(name)
    if not raw:
        return None
    return uuid_value(name, raw)


def uuid_value(name: str, raw: str) -> str:
    try:
        return str(uuid.UUID(raw))
    except ValueError:
        raise BadParameter(f"{name} must be a UUID, got {raw[:100]!r}") from None


def search_text(params: QueryParams, name: str) -> str:
    raw = params.get(name) or ""
    if len(raw) > MAX_SEARCH:
        raise BadParameter(f"{name} must be at most {MAX_SEARCH} characters, got {len(raw)}")
    if any(ord(char) < 32 for char in raw):
        raise BadParameter(f"{name} must not contain control characters")
    return raw


def cursor_text(params: QueryParams, name: str) -> str | None:
    raw = params.get(name)
    return raw or None
