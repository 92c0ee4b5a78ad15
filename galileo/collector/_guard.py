"""The collector's front door: every HTTP request passes these checks, in this order, before a route sees it.

1. **Host.** The ``Host`` header (without its port, case-insensitive) must name the collector: ``localhost``,
   ``127.0.0.1``, ``[::1]``, the address it is bound to when that is not a wildcard (``0.0.0.0``, ``::``),
   and the names given with ``--allowed-host`` (``*`` allows any). Anything else is answered **421**: a web
   page on another site that rebinds its DNS name to 127.0.0.1 (DNS rebinding) reaches the collector with its
   own name in ``Host``, so it is refused before it can read a trace. A request without ``Host`` (HTTP/1.0,
   never a browser) passes.
2. **Origin.** A request that can change state (``POST``, ``PUT``, ``PATCH``, ``DELETE``) carrying an
   ``Origin`` header must come from the collector's own origin (the ``Origin``'s host and port equal
   ``Host``): **403** otherwise. Browsers send ``Origin`` on every cross-site write; API clients send none.
3. **Credentials**, when the collector has an API key (``--api-key`` or ``GALILEO_COLLECTOR_API_KEY``): every
   route but ``GET /healthcheck``, the logins (``POST /login/api_key``, ``GET|POST /login``) and the viewer's
   static files needs one of: ``Authorization: Bearer`` with a token this collector issued under this key
   or with the key itself (what OTLP exporters send), ``Galileo-API-Key: KEY``, or the viewer's session
   cookie (:data:`SESSION_COOKIE`, set by ``POST /login``).
   Without one: **401** (a browser asking for a page is sent to ``/login`` instead). Keys are compared in
   constant time. Tokens are signed with a secret derived from the database's secret *and* the key, so a
   token issued before the key was set, or under another key, is refused. Without an API key, only the
   Galileo API routes need a token (any key logs in), checked by the routes themselves; the viewer and
   ``/api`` are open, which is why the collector binds to loopback by default.
4. **Body.** A body longer than the limit (``--max-body-mb``, default 32 MiB; 64 KiB on the routes open to
   anyone, :data:`PUBLIC_MAX_BODY_BYTES`) is answered **413**: at once
   when ``Content-Length`` says so, else as soon as the bytes read pass the limit (never more than the limit
   is buffered). A write to a JSON route whose body is not ``application/json`` (or ``…+json``) is **415**
   (the OTLP routes, which also take protobuf, check their own type).
   The body, read whole, is handed to the route as it arrived.

All of this happens before a body is parsed: an unauthenticated client cannot make the collector parse,
validate or store anything. Refusals are JSON ``{"detail": ...}`` like every other answer, and never echo a
credential.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

import attrs
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from galileo.collector import _auth

__all__ = [
    "DEFAULT_MAX_BODY_MB",
    "LOOPBACK_HOSTS",
    "PUBLIC_MAX_BODY_BYTES",
    "SESSION_COOKIE",
    "WILDCARD_HOSTS",
    "Access",
    "Guard",
    "host_name",
    "is_loopback",
    "replay",
]

DEFAULT_MAX_BODY_MB = 32
#: The names a collector always answers to.
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})
#: Bind addresses meaning "every interface": they name no host a client would use.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
#: The viewer's session cookie (a token of this collector; HttpOnly, SameSite=Strict).
SESSION_COOKIE = "galileo_collector_session"
#: Routes that never need credentials: (method, path), and path prefixes for any GET.
_PUBLIC = frozenset(
    {
        ("GET", "/healthcheck"),
        ("HEAD", "/healthcheck"),
        ("POST", "/login/api_key"),
        ("GET", "/login"),
        ("POST", "/login"),
    }
)
_PUBLIC_PREFIXES = ("/viewer/static/",)
#: The largest body a route open to anyone takes (a login is a few hundred bytes), whatever --max-body-mb
#: says: a client without credentials cannot make the collector hold or parse more than this.
PUBLIC_MAX_BODY_BYTES = 64 * 1024
#: Writes whose body is not (only) JSON: a form, and OTLP (protobuf or JSON; the route checks the type).
_FORM_ROUTES = frozenset({("POST", "/login"), ("POST", "/otel/traces"), ("POST", "/v1/traces")})
_UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(value: str) -> str:
    """A ``Host`` header or bind address as compared: lowercase, no port nor trailing dot, IPv6 bracketed."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[: value.find("]") + 1] if "]" in value else value
    if value.count(":") > 1:  # a bare IPv6 address (a bind address, never a Host header)
        return f"[{value}]"
    return value.partition(":")[0].rstrip(".")


def is_loopback(host: str) -> bool:
    """True for a bind address only this machine can reach."""
    name = host_name(host)
    return name in LOOPBACK_HOSTS or name.startswith("127.")


def _signing_secret(secret: bytes, api_key: str | None) -> bytes:
    """The token secret: the database's, bound to the API key when there is one."""
    if api_key is None:
        return secret
    return hmac.new(secret, b"galileo-collector api key\x00" + api_key.encode(), "sha256").digest()


@attrs.frozen(repr=False)
class Access:
    """Who may reach the collector, and with what. Built once per app; see the module docstring."""

    secret: bytes  #: signs and verifies this collector's tokens (see :meth:`create`)
    api_key: str | None
    allowed_hosts: frozenset[str]  #: :func:`host_name` values; ``*`` allows any
    max_body_bytes: int

    @classmethod
    def create(
        cls,
        db_secret: bytes,
        *,
        api_key: str | None = None,
        bind_host: str = "127.0.0.1",
        allowed_hosts: Iterable[str] = (),
        max_body_mb: float = DEFAULT_MAX_BODY_MB,
    ) -> Access:
        names = set(LOOPBACK_HOSTS) | {host_name(h) for h in allowed_hosts}
        if host_name(bind_host) not in WILDCARD_HOSTS:
            names.add(host_name(bind_host))
        return cls(
            _signing_secret(db_secret, api_key), api_key, frozenset(names), int(max_body_mb * 1024 * 1024)
        )

    def __repr__(self) -> str:  # never the key or the secret
        key = "set" if self.api_key is not None else "none"
        hosts = sorted(self.allowed_hosts)
        return f"Access(api_key={key}, allowed_hosts={hosts}, max_body_bytes={self.max_body_bytes})"

    def key_matches(self, candidate: str) -> bool:
        """True when ``candidate`` is the API key (constant time); False when there is no key."""
        if self.api_key is None:
            return False
        return hmac.compare_digest(candidate.encode("utf-8", "replace"), self.api_key.encode("utf-8"))

    def token_valid(self, token: str) -> bool:
        try:
            _auth.verify_token(self.secret, token)
        except _auth.InvalidTokenError:
            return False
        return True

    def host_allowed(self, host: str | None) -> bool:
        return host is None or "*" in self.allowed_hosts or host_name(host) in self.allowed_hosts

    def refusal(self, headers: Mapping[str, str]) -> str | None:
        """Why ``headers`` carry no valid credentials (a bearer token of this collector, the API key in
        ``Galileo-API-Key``, or the session cookie), or None when they do."""
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            if self.key_matches(token.strip()):  # the key itself, as OTel exporters send it
                return None
            try:
                _auth.verify_token(self.secret, token.strip())
                return None
            except _auth.InvalidTokenError as exc:
                return f"Invalid token: {exc}"
        key = headers.get("galileo-api-key")
        if key is not None:
            return None if self.key_matches(key) else "Invalid API key"
        cookie = _cookie(headers.get("cookie", ""), SESSION_COOKIE)
        if cookie is not None:
            return None if self.token_valid(cookie) else "Session expired: log in again"
        return "Not authenticated"


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name and value:
            return value
    return None


def _decoded_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lowercase name (the first of a repeated name), decoded as Latin-1."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        headers.setdefault(raw_name.decode("latin-1").lower(), raw_value.decode("latin-1"))
    return headers


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class Guard:
    """ASGI middleware applying :class:`Access` to every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, access: Access) -> None:
        self.app = app
        self.access = access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _decoded_headers(scope)
        method, path = scope["method"], scope["path"]
        public = (method, path) in _PUBLIC or (method == "GET" and path.startswith(_PUBLIC_PREFIXES))
        limit = (
            min(PUBLIC_MAX_BODY_BYTES, self.access.max_body_bytes) if public else self.access.max_body_bytes
        )
        refusal = self._refusal(scope, headers, public, limit)
        if refusal is not None:
            await refusal(send)
            return
        await self._with_body(scope, receive, send, headers, limit)

    def _refusal(self, scope: Scope, headers: dict[str, str], public: bool, limit: int) -> _Answer | None:
        method, path = scope["method"], scope["path"]
        access = self.access
        if not access.host_allowed(headers.get("host")):
            return _Answer(
                421, "Host not allowed: start the collector with --allowed-host NAME to use this name"
            )
        origin = headers.get("origin")
        if method in _UNSAFE and origin is not None and not _same_origin(origin, headers.get("host")):
            return _Answer(403, "cross-origin request refused")
        refused = None if access.api_key is None or public else access.refusal(headers)
        if refused is not None:
            if method == "GET" and "text/html" in headers.get("accept", ""):
                target = path + (
                    f"?{scope['query_string'].decode('latin-1')}" if scope["query_string"] else ""
                )
                return _Answer(303, "log in first", location=f"/login?next={quote(target, safe='')}")
            return _Answer(401, refused, challenge=True)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            return _too_large(limit)
        has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
        if (
            method in _UNSAFE
            and has_body
            and (method, path) not in _FORM_ROUTES
            and not _is_json(headers.get("content-type", ""))
        ):
            return _Answer(415, "the body must be JSON (Content-Type: application/json)")
        return None

    async def _with_body(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[str, str], limit: int
    ) -> None:
        """Read the body (bounded), then run the app with it replayed; 413 when it passes the limit."""
        if "transfer-encoding" not in headers and headers.get("content-length", "0") in ("", "0"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await _too_large(limit)(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replay(b"".join(chunks), receive), send)


def _too_large(limit: int) -> _Answer:
    if limit < 1024 * 1024:
        return _Answer(
            413, f"request body larger than {limit // 1024} KiB (the limit of a route open to anyone)"
        )
    return _Answer(
        413, f"request body larger than {limit / (1024 * 1024):g} MiB (the collector's --max-body-mb)"
    )


def _same_origin(origin: str, host: str | None) -> bool:
    if host is None or origin == "null":
        return False
    return urlsplit(origin).netloc.lower() == host.strip().lower()


@attrs.frozen
class _Answer:
    """A refusal, sent without running the app."""

    status: int
    detail: str
    location: str | None = None
    challenge: bool = False

    async def __call__(self, send: Send) -> None:
        body = json.dumps({"detail": self.detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if self.location is not None:
            headers.append((b"location", self.location.encode("latin-1")))
        if self.challenge:
            headers.append((b"www-authenticate", b"Bearer"))
        if self.status == 413:  # the rest of the body is not read: the connection cannot be reused
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` for the app behind: ``body``, already read whole, then whatever comes next (a
    disconnect)."""
    replayed = False

    async def replayed_receive() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed_receive
