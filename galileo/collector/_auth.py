"""A minimal HS256 JSON Web Token, enough for the collector's bearer tokens.

Galileo clients log in once with ``POST /login/api_key`` and send the returned JWT as a bearer token on every
later call; the published SDK also decodes the payload's ``exp`` to log in again shortly before it. The
collector therefore issues real, signed JWTs: header ``{"alg": "HS256", "typ": "JWT"}``, payload
``{"sub": user id, "exp": unix seconds, "iat": unix seconds}``, signature HMAC-SHA256 over
``base64url(header) + "." + base64url(payload)``, every part base64url-encoded without padding.

The secret lives in the collector's database (see :mod:`galileo.collector.store`), so tokens survive a
restart. Only the standard library is used.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from typing import Any

__all__ = ["InvalidTokenError", "issue_token", "verify_token"]

_HEADER = {"alg": "HS256", "typ": "JWT"}
_MAX_TOKEN = 4096  # ours are about 200 characters


class InvalidTokenError(ValueError):
    """The token is malformed, not signed with our secret, or expired. The message says which."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise InvalidTokenError("token is not base64url") from exc


def _sign(secret: bytes, signing_input: str) -> str:
    return _b64encode(hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest())


def _json_part(data: dict[str, Any]) -> str:
    return _b64encode(json.dumps(data, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def issue_token(secret: bytes, subject: str, ttl: float, *, now: float | None = None) -> str:
    """Return a JWT for ``subject`` valid for at least ``ttl`` seconds from ``now`` (default: the clock)."""
    issued = time.time() if now is None else now
    payload = {"sub": subject, "iat": int(issued), "exp": math.ceil(issued + ttl)}
    signing_input = f"{_json_part(_HEADER)}.{_json_part(payload)}"
    return f"{signing_input}.{_sign(secret, signing_input)}"


def verify_token(secret: bytes, token: str, *, now: float | None = None) -> dict[str, Any]:
    """Return the payload of ``token`` if it is ours and not expired; raise :class:`InvalidTokenError`."""
    parts = token.split(".")
    if len(parts) != 3 or len(token) > _MAX_TOKEN or not token.isascii():
        raise InvalidTokenError("token is not a JWT")
    header_part, payload_part, signature = parts
    # The signature first: nothing a client made up is parsed (a header of '[' * 3000 was a RecursionError).
    expected = _sign(secret, f"{header_part}.{payload_part}")
    if not hmac.compare_digest(expected.encode("ascii"), signature.encode("ascii")):
        raise InvalidTokenError("token signature is invalid")
    try:
        header = json.loads(_b64decode(header_part))
    except (ValueError, RecursionError) as exc:
        raise InvalidTokenError("token header is not JSON") from exc
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        raise InvalidTokenError("token is not signed with HS256")
    try:
        payload = json.loads(_b64decode(payload_part))
    except (ValueError, RecursionError) as exc:
        raise InvalidTokenError("token payload is not JSON") from exc
    if not isinstance(payload, dict):
        raise InvalidTokenError("token payload is not an object")
    exp = payload.get("exp")
    if not isinstance(exp, (int, float)) or isinstance(exp, bool):
        raise InvalidTokenError("token has no expiry")
    current = time.time() if now is None else now
    if current >= exp:
        raise InvalidTokenError("token has expired")
    return payload
