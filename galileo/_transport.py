"""HTTP transport to the Galileo API: sessions, auth, project and log stream resolution, status handling.

Layering, after requests: the sender (policy: queues, ordering, backoff) sits on top of this module
(transport: one HTTP exchange at a time). Nothing here sleeps or schedules; every call does one bounded
exchange and reports an :class:`Outcome` that the sender acts on.

- One :class:`Client` per distinct (API URL, API key, extra headers, timeout) in the process, shared by all
  loggers (:func:`get_client`). Its exchanges go through urllib3 (thread-safe, a keep-alive connection per
  worker), whose ``Retry`` retries *connection* errors at once, twice (and a keep-alive connection broken
  while reading, once); status-code retries, backoff and Retry-After belong to the sender. Proxy
  (HTTP(S)_PROXY, NO_PROXY) and CA-bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, else certifi) settings are
  read from the environment once per client, with requests' own rules, into a ``PoolManager`` (a
  ``ProxyManager`` behind a proxy).
- The sender's CPU is taken from the application's (same process, same GIL), so the write path is kept
  lean. urllib3 directly rather than a ``requests.Session`` (half the CPU per request for the same pool and
  retries); and without a proxy, not even ``PoolManager.urlopen``: a client talks to one host, so it takes
  that host's ``HTTPConnectionPool`` from its manager once and calls the pool's ``urlopen`` with the path,
  which skips parsing the URL and looking the pool up on every exchange (the pool, its CA settings and its
  connections are the ones the manager would have used). What every exchange needs is built once: the
  ``Retry`` and ``Timeout`` (passed explicitly, the same policy the pool was made with), the request-target
  prefix (the API URL's path), the header dicts (without auth, and per token with ``Authorization``; urllib3
  copies them before adding anything) and the JSON encoder. The answer is urllib3's own response, read in
  full (``preload_content``: the connection goes back to the pool at once; gzip or deflate bodies are
  decoded), not copied into another object. Behind a proxy, exchanges keep going through the
  ``ProxyManager``, which adds the proxy's headers and request form. In ``benchmarks/bench_transport.py`` a
  write takes about 1.9x the CPU of a bare ``http.client`` exchange of the same bytes (1.75x with the body
  already JSON), down from about 2.2x through ``PoolManager.urlopen``; the pool's ``urlopen`` alone takes
  about 1.7x. The rest is urllib3's own work per request, the price of its pool and retries: its response
  object and header checks, the pool's queue, a poll for a connection the server dropped.
- Auth follows WIRE.md: ``GET /healthcheck``, ``POST /login/api_key`` for a JWT, then ``Authorization:
  Bearer``. The token's ``exp`` is decoded and the client logs in again shortly before it. A 401/403 on a
  call triggers one fresh login and one retry of that call.
- Project and log stream ids are looked up (or created when missing) once per process per name and cached
  on the client, never per logger or per request.
- Every call has a timeout. The API key and the token never appear in a log line, a repr or an exception.
- Every body is UTF-8 JSON made by :func:`galileo._unicode.utf8_json`, which sends only valid Unicode: a lone
  surrogate in any string becomes U+FFFD (see that module for why there, and what it costs). Project and log
  stream names are looked up and created in the same repaired form (a configuration resolved by
  :meth:`GalileoConfig.resolve` never holds one: it refuses them).

With no API key configured the client logs in with :data:`LOCAL_API_KEY`; the local collector accepts any
key, a real Galileo server answers 401 and the sender reports a missing GALILEO_API_KEY.
"""

from __future__ import annotations

import base64
import enum
import functools
import json
import logging
import os
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any, NamedTuple

import attrs
import requests.utils
import urllib3
from urllib3.util import parse_url
from urllib3.util.retry import Retry

from galileo._unicode import utf8_json, valid_text
from galileo._version import __version__
from galileo.config import GalileoConfig

__all__ = [
    "LOCAL_API_KEY",
    "SDK_HEADER",
    "Client",
    "Outcome",
    "Result",
    "Target",
    "TargetIds",
    "get_client",
    "reset_clients",
]

_log = logging.getLogger("galileo")

LOCAL_API_KEY = "galileo-local"
SDK_HEADER = f"galileo-starlette/{__version__}"
#: Immediate retries of connection errors (refused, reset before a response) inside one exchange; a
#: connection that breaks while the answer is read (typically a keep-alive connection the server closed) is
#: retried once: every write is idempotent (records are stored by id, updates overwrite).
CONNECT_RETRIES = 2
#: After the API refused our key, calls in the next this many seconds fail at once without logging in again:
#: the workers that were sending when it happened do not each try the same refused key.
LOGIN_REFUSAL_MEMORY = 1.0
#: Log in again this long before the token's ``exp`` (capped at a fifth of the token's lifetime).
TOKEN_REFRESH_MARGIN = 60.0
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_MAX_DETAIL = 500
#: The immediate retries of every exchange (see :data:`CONNECT_RETRIES`); status codes are the sender's.
_RETRY = Retry(
    total=CONNECT_RETRIES,
    connect=CONNECT_RETRIES,
    read=1,  # a pooled keep-alive connection the server closed; writes are idempotent by id
    status=0,
    other=0,
    redirect=0,
    backoff_factor=0,
    raise_on_status=False,
    allowed_methods=None,
)


class Outcome(enum.Enum):
    """What the sender should do with a record after one exchange."""

    OK = "ok"  #: 2xx: done.
    RETRY = "retry"  #: transient (408, 429, 5xx, connection error, timeout): back off and retry.
    PARENT_MISSING = "parent_missing"  #: 404/422 naming the parent: it may still arrive; retry.
    AUTH = "auth"  #: credentials refused even after a fresh login.
    REJECTED = "rejected"  #: a permanent client error (schema error, 413, other 4xx): do not retry.


@attrs.frozen
class Result:
    """The outcome of one exchange; ``detail`` is a short, secret-free description."""

    outcome: Outcome
    status: int | None = None
    retry_after: float | None = None
    detail: str = ""


@attrs.frozen
class Target:
    """Where a logger's records go: project and log stream (or experiment), by name or id."""

    project: str | None
    project_id: str | None
    log_stream: str | None
    log_stream_id: str | None
    experiment_id: str | None = None

    @classmethod
    def from_config(cls, config: GalileoConfig) -> Target:
        """The target ``config`` names: one shared object per distinct target (loggers come per request)."""
        return _target(
            config.project, config.project_id, config.log_stream, config.log_stream_id, config.experiment_id
        )


@functools.lru_cache(maxsize=256)
def _target(
    project: str | None,
    project_id: str | None,
    log_stream: str | None,
    log_stream_id: str | None,
    experiment_id: str | None,
) -> Target:
    return Target(project, project_id, log_stream, log_stream_id, experiment_id)


@attrs.frozen
class TargetIds:
    project_id: str
    log_stream_id: str | None
    experiment_id: str | None


class _ExchangeError(Exception):
    """An exchange that produced no usable answer; carries the :class:`Result` to report."""

    def __init__(self, result: Result) -> None:
        super().__init__(result.detail)
        self.result = result


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return max(0.0, min(seconds, 3600.0))


def _token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT, or None when it cannot be read (the token is then refreshed on 401)."""
    try:
        payload = token.split(".")[1]
        payload += "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(payload))
        exp = claims.get("exp")
        iat = claims.get("iat", time.time())
    except (IndexError, ValueError, TypeError, AttributeError):
        return None
    if not isinstance(exp, (int, float)):
        return None
    lifetime = max(0.0, float(exp) - float(iat)) if isinstance(iat, (int, float)) else 0.0
    margin = min(TOKEN_REFRESH_MARGIN, lifetime / 5) if lifetime else TOKEN_REFRESH_MARGIN
    return float(exp) - margin


def _content(response: urllib3.BaseHTTPResponse) -> bytes:
    """The body of an answer read in full (``preload_content``), decoded when it came gzip'ed or deflated."""
    return response.data or b""  # (None when the body could not be read again)


def _json_body(response: urllib3.BaseHTTPResponse) -> Any:
    """The body as JSON; ValueError when it is not."""
    return json.loads(_content(response))


def _pool_manager(api_url: str, timeout: urllib3.Timeout) -> urllib3.PoolManager:
    """A connection pool for ``api_url`` with the environment's proxy and CA settings (requests' rules)."""
    environ = os.environ
    ca_bundle = (
        environ.get("REQUESTS_CA_BUNDLE")
        or environ.get("CURL_CA_BUNDLE")
        or requests.utils.DEFAULT_CA_BUNDLE_PATH
    )
    options: dict[str, Any] = {
        "num_pools": 4,
        "maxsize": 16,
        "retries": _RETRY,
        "timeout": timeout,
        "cert_reqs": "CERT_REQUIRED",
        "ca_certs": ca_bundle,
    }
    proxies = requests.utils.get_environ_proxies(api_url)
    scheme = api_url.split("://", 1)[0].lower()
    proxy = proxies.get(scheme) or proxies.get("all")
    if proxy:
        return urllib3.ProxyManager(proxy, **options)
    return urllib3.PoolManager(**options)


def _failure(exc: Exception, timeout: float) -> Result:
    """The sender's view of an exchange that got no answer."""
    reason = exc.reason if isinstance(exc, urllib3.exceptions.MaxRetryError) and exc.reason else exc
    if isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProtocolError)):
        return Result(Outcome.RETRY, detail="ConnectionError")  # (a NewConnectionError is a TimeoutError too)
    if isinstance(reason, urllib3.exceptions.TimeoutError):
        return Result(Outcome.RETRY, detail=f"timeout after {timeout:g}s")
    return Result(Outcome.RETRY, detail=type(reason).__name__)


def _detail(response: urllib3.BaseHTTPResponse) -> str:
    content = _content(response)
    text = content.decode("utf-8", "replace")[:_MAX_DETAIL] if content else ""
    return f"HTTP {response.status}: {text}".strip()


def classify(status: int, body: str, *, is_span_post: bool) -> Outcome:
    """Map an HTTP status to the sender's action (WIRE.md "Status codes")."""
    if 200 <= status < 300:
        return Outcome.OK
    if status in _TRANSIENT_STATUSES or status >= 500:
        return Outcome.RETRY
    if status in (401, 403):
        return Outcome.AUTH
    if is_span_post and (status == 404 or (status == 422 and "parent" in body.lower())):
        return Outcome.PARENT_MISSING
    return Outcome.REJECTED


class _Route(NamedTuple):
    """How a client's exchanges reach the API, set up on its first exchange."""

    manager: urllib3.PoolManager  #: owns the connection pools (closed by :meth:`Client.close`)
    #: Without a proxy: the API host's pool, whose ``urlopen`` takes ``prefix + path``; None behind a proxy,
    #: where ``manager.urlopen`` takes the API URL + path and adds the proxy's headers.
    pool: urllib3.HTTPConnectionPool | None
    prefix: str  #: what comes before an API path in the URL given to ``urlopen``


class Client:
    """A process-wide connection to one Galileo API (one per URL and credentials); thread-safe."""

    def __init__(
        self,
        api_url: str,
        api_key: str | None,
        *,
        extra_headers: Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_key = api_key or LOCAL_API_KEY
        self._extra_headers = dict(extra_headers or {})
        self.timeout = timeout
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        self._route: _Route | None = None
        self._route_lock = threading.Lock()
        # The headers of every exchange, built once (and per token, in _token_headers); never mutated.
        plain = {**self._extra_headers, "X-Galileo-SDK": SDK_HEADER, "Accept": "application/json"}
        self._plain_headers = plain  # GET without auth: the health check
        self._body_headers = {**plain, "Content-Type": "application/json"}  # login
        self._token_headers: tuple[str, dict[str, str], dict[str, str]] = ("", plain, plain)
        self._auth_lock = threading.Lock()
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_generation = 0
        self._refused: tuple[float, Result] | None = None  # when and how the API last refused our key
        self._ids_lock = threading.Lock()
        self._ids: dict[Target, TargetIds] = {}

    def __repr__(self) -> str:
        return f"<galileo Client {self.api_url}>"

    # -- connections ----------------------------------------------------------------------------------------
    def _connect(self) -> _Route:
        """Set up the route on the first exchange (the environment's proxy and CA settings are read here)."""
        with self._route_lock:
            route = self._route
            if route is None:
                manager = _pool_manager(self.api_url, self._timeout)
                if isinstance(manager, urllib3.ProxyManager):
                    route = _Route(manager, None, self.api_url)
                else:
                    pool = manager.connection_from_url(self.api_url)
                    route = _Route(manager, pool, parse_url(self.api_url).path or "")
                self._route = route
        return route

    def _headers(self, token: str | None, body: bool) -> dict[str, str]:
        """The prebuilt headers of an exchange (with a body or not, authenticated with ``token`` or not)."""
        if token is None:
            return self._body_headers if body else self._plain_headers
        cached = self._token_headers
        if cached[0] != token:  # a new token: build its headers once
            auth = f"Bearer {token}"
            cached = (
                token,
                {**self._plain_headers, "Authorization": auth},
                {**self._body_headers, "Authorization": auth},
            )
            self._token_headers = cached
        return cached[2] if body else cached[1]

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> urllib3.BaseHTTPResponse:
        headers = self._headers(token or None, body is not None)
        if params:
            path += "?" + urllib.parse.urlencode(params)
        try:
            route = self._route or self._connect()
            pool = route.pool
            if pool is not None:  # the API host's pool: urlopen as PoolManager.urlopen would call it
                return pool.urlopen(
                    method,
                    route.prefix + path,
                    body=body,
                    headers=headers,
                    retries=_RETRY,
                    redirect=False,
                    assert_same_host=False,
                    timeout=self._timeout,
                )
            return route.manager.urlopen(
                method, route.prefix + path, body=body, headers=headers, redirect=False
            )
        except urllib3.exceptions.HTTPError as exc:
            raise _ExchangeError(_failure(exc, self.timeout)) from exc

    # -- auth -----------------------------------------------------------------------------------------------
    def _current_token(self) -> str:
        token = self._token
        if token is not None and time.time() < self._token_refresh_at:
            return token
        return self._login(stale_generation=self._token_generation)

    def _login(self, *, stale_generation: int) -> str:
        """Log in unless another thread already did since ``stale_generation``; one login at a time."""
        with self._auth_lock:
            if (
                self._token is not None
                and self._token_generation != stale_generation
                and time.time() < self._token_refresh_at
            ):
                return self._token
            refused = self._refused
            if refused is not None and time.monotonic() - refused[0] < LOGIN_REFUSAL_MEMORY:
                raise _ExchangeError(refused[1])
            if self._token is None:
                health = self._exchange("GET", "/healthcheck")
                if health.status >= 500:
                    raise _ExchangeError(Result(Outcome.RETRY, health.status, detail="healthcheck failed"))
            body = utf8_json({"api_key": self._api_key})
            response = self._exchange("POST", "/login/api_key", body=body)
            status = response.status
            if status >= 500 or status in (408, 425, 429) or not 200 <= status < 500:
                raise _ExchangeError(
                    Result(
                        Outcome.RETRY,
                        status,
                        _parse_retry_after(response.headers.get("Retry-After")),
                        detail=f"login: HTTP {status}",
                    )
                )
            if 400 <= status < 500:  # the key itself was refused (a 2xx without a token is retried below)
                result = Result(
                    Outcome.AUTH, status, detail=f"login refused (HTTP {status}): check GALILEO_API_KEY"
                )
                self._refused = (time.monotonic(), result)
                raise _ExchangeError(result)
            try:
                token = _json_body(response)["access_token"]
                if not isinstance(token, str) or not token:
                    raise TypeError
            except (ValueError, KeyError, TypeError) as exc:
                raise _ExchangeError(Result(Outcome.RETRY, status, detail="login: malformed answer")) from exc
            expiry = _token_expiry(token)
            self._token = token
            self._token_refresh_at = expiry if expiry is not None else time.time() + 300.0
            self._token_generation += 1
            self._refused = None
            _log.debug("galileo: logged in to %s", self.api_url)
            return token

    def call(
        self, method: str, path: str, *, body: bytes | None = None, params: Mapping[str, Any] | None = None
    ) -> urllib3.BaseHTTPResponse:
        """One authenticated exchange; a 401/403 gets one fresh login and one retry.

        Raises :class:`_ExchangeError` when no answer could be had (connection error, timeout, login failed).
        """
        generation = self._token_generation
        response = self._exchange(method, path, body=body, params=params, token=self._current_token())
        if response.status in (401, 403):
            token = self._login(stale_generation=generation)
            response = self._exchange(method, path, body=body, params=params, token=token)
        return response

    def encode(self, target: Target, body: dict[str, Any]) -> bytes | Result:
        """``body`` as the bytes :meth:`write` sends for ``target``, with the resolved ``log_stream_id`` /
        ``experiment_id`` filled in; or, when they cannot be resolved, the :class:`Result` that says why.
        Never raises.

        The sender encodes before it sends, so that a body's dicts and lists (three objects per record,
        each one the garbage collector would scan) are freed before the wait for the answer, which against
        a remote API is most of an exchange, rather than living through it.
        """
        try:
            ids = self.resolve(target)
            return utf8_json(dict(body, log_stream_id=ids.log_stream_id, experiment_id=ids.experiment_id))
        except _ExchangeError as exc:
            return exc.result
        except Exception as exc:  # the sender must survive anything; say what, never the payload
            _log.debug("galileo: unexpected error in a write", exc_info=True)
            return Result(Outcome.RETRY, detail=f"unexpected {type(exc).__name__}")

    def write(self, method: str, target: Target, path: str, body: dict[str, Any] | bytes) -> Result:
        """Send one write (ingest or update) for ``target``; never raises.

        ``path`` is relative to the project, e.g. ``/v2/projects/{pid}/spans`` is written ``/spans``;
        ``body`` is what :meth:`encode` made of it, or a dict this encodes first.
        """
        data = self.encode(target, body) if isinstance(body, dict) else body
        if isinstance(data, Result):
            return data
        try:
            ids = self.resolve(target)
            response = self.call(method, f"/v2/projects/{ids.project_id}{path}", body=data)
        except _ExchangeError as exc:
            return exc.result
        except Exception as exc:  # the sender must survive anything; say what, never the payload
            _log.debug("galileo: unexpected error in a write", exc_info=True)
            return Result(Outcome.RETRY, detail=f"unexpected {type(exc).__name__}")
        status = response.status
        if 200 <= status < 300:
            return Result(Outcome.OK, status)
        detail = _detail(response)
        if status == 413:
            detail = f"HTTP 413: a request body of {len(data):,} bytes was too large"
        outcome = classify(status, detail, is_span_post=method == "POST" and path == "/spans")
        return Result(outcome, status, _parse_retry_after(response.headers.get("Retry-After")), detail)

    def post_json(self, target: Target, path: str, what: str, body: dict[str, Any]) -> Any:
        """POST ``body`` to a path of ``target``'s project (``/sessions`` is ``/v2/projects/{pid}/sessions``)
        with ``target``'s resolved ``log_stream_id`` / ``experiment_id``, and return the answer's JSON; or
        the :class:`Result` that says why there is none (a non-2xx answer, no answer, ids not resolved).
        Never raises; ``what`` names the call in that result's detail."""
        try:
            ids = self.resolve(target)
            data = utf8_json(dict(body, log_stream_id=ids.log_stream_id, experiment_id=ids.experiment_id))
            return self._json("POST", f"/v2/projects/{ids.project_id}{path}", what, body=data)
        except _ExchangeError as exc:
            return exc.result
        except Exception as exc:  # the caller must survive anything; say what, never the payload
            _log.debug("galileo: unexpected error in %s", what, exc_info=True)
            return Result(Outcome.RETRY, detail=f"{what}: unexpected {type(exc).__name__}")

    # -- project and log stream -------------------------------------------------------------------------
    def known_ids(self, target: Target) -> TargetIds | None:
        """The ids ``target`` was resolved to, if it was (no I/O)."""
        return self._ids.get(target)

    def resolve(self, target: Target) -> TargetIds:
        """Project and log stream ids for ``target``: looked up or created once per process, then cached."""
        cached = self._ids.get(target)
        if cached is not None:
            return cached
        with self._ids_lock:
            cached = self._ids.get(target)
            if cached is None:
                cached = self._resolve(target)
                self._ids[target] = cached
                _log.debug("galileo: resolved project and log stream on %s", self.api_url)
            return cached

    def _json(self, method: str, path: str, what: str, **kwargs: Any) -> Any:
        response = self.call(method, path, **kwargs)
        if response.status in (401, 403):
            raise _ExchangeError(Result(Outcome.AUTH, response.status, detail=f"{what}: HTTP 401/403"))
        if response.status >= 300:
            outcome = classify(response.status, "", is_span_post=False)
            raise _ExchangeError(
                Result(
                    outcome,
                    response.status,
                    _parse_retry_after(response.headers.get("Retry-After")),
                    detail=f"{what}: {_detail(response)}",
                )
            )
        try:
            return _json_body(response)
        except ValueError as exc:
            raise _ExchangeError(Result(Outcome.RETRY, response.status, detail=f"{what}: not JSON")) from exc

    def _resolve(self, target: Target) -> TargetIds:
        project_id = target.project_id
        if project_id is None:
            name = valid_text(target.project or "default")
            found = self._json(
                "GET", "/projects", "project lookup", params={"project_name": name, "type": "gen_ai"}
            )
            project_id = _find_id(found, name)
            if project_id is None:
                body = utf8_json({"name": name, "type": "gen_ai"})
                project_id = _find_id([self._json("POST", "/projects", "project create", body=body)], name)
            if project_id is None:
                raise _ExchangeError(Result(Outcome.RETRY, detail="project create: no id in answer"))
        if target.experiment_id is not None or target.log_stream_id is not None:
            return TargetIds(project_id, target.log_stream_id, target.experiment_id)
        name = valid_text(target.log_stream or "default")
        log_stream_id = self._find_log_stream(project_id, name)
        if log_stream_id is None:
            body = utf8_json({"name": name})
            created = self._json(
                "POST", f"/projects/{project_id}/log_streams", "log stream create", body=body
            )
            log_stream_id = _find_id([created], name)
        if log_stream_id is None:
            raise _ExchangeError(Result(Outcome.RETRY, detail="log stream create: no id in answer"))
        return TargetIds(project_id, log_stream_id, None)

    def _find_log_stream(self, project_id: str, name: str) -> str | None:
        token: Any = 0
        for _ in range(100):  # bounded: 50,000 log streams at 500 a page
            page = self._json(
                "GET",
                f"/projects/{project_id}/log_streams/paginated",
                "log stream lookup",
                params={"include_counts": "false", "starting_token": token, "limit": 500},
            )
            if not isinstance(page, dict):
                return None
            found = _find_id(page.get("log_streams"), name)
            token = page.get("next_starting_token")
            if found is not None or token is None:
                return found
        return None

    def close(self) -> None:
        route, self._route = self._route, None
        if route is not None:
            route.manager.clear()


def _find_id(items: Any, name: str) -> str | None:
    if not isinstance(items, list):
        return None
    for item in items:
        if isinstance(item, dict) and item.get("name") == name and isinstance(item.get("id"), str):
            return str(item["id"])
    return None


_clients_lock = threading.Lock()
_clients: dict[tuple[Any, ...], Client] = {}
_by_config: dict[int, tuple[GalileoConfig, Client]] = {}  # a shortcut for configs seen before


def get_client(config: GalileoConfig) -> Client:
    """The process's client for ``config``'s URL and credentials (created on first use, no I/O)."""
    known = _by_config.get(id(config))
    if known is not None and known[0] is config:
        return known[1]
    key = (config.api_url, config.api_key, tuple(sorted(config.extra_headers.items())), config.timeout)
    client = _clients.get(key)
    if client is None:
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                client = Client(
                    config.api_url, config.api_key, extra_headers=config.extra_headers, timeout=config.timeout
                )
                _clients[key] = client
    if len(_by_config) >= 256:  # configs built per logger would grow it without bound
        _by_config.clear()
    _by_config[id(config)] = (config, client)
    return client


def reset_clients() -> None:
    """Forget every client (after fork: sessions and locks must not be shared with the parent)."""
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()
    _by_config.clear()
