"""HTTP transport to the Galileo API: sessions, auth, project and log stream resolution, status handling.

Layering, after requests: the sender (policy: queues, ordering, backoff) sits on top of this module
(transport: one HTTP exchange at a time). Nothing here sleeps or schedules; every call does one bounded
exchange and reports an :class:`Outcome` that the sender acts on.

- One :class:`Client` per distinct (API URL, API key, extra headers, timeout) in the process, shared by all
  loggers (:func:`get_client`). Each worker thread gets its own ``requests.Session`` (a Session is not
  documented thread-safe) with an ``HTTPAdapter`` whose urllib3 ``Retry`` retries *connection* errors at
  once, twice (and a keep-alive connection broken while reading, once); status-code retries, backoff and
  Retry-After belong to the sender. Proxy and CA settings from the environment are read once per session.
- Auth follows WIRE.md: ``GET /healthcheck``, ``POST /login/api_key`` for a JWT, then ``Authorization:
  Bearer``. The token's ``exp`` is decoded and the client logs in again shortly before it. A 401/403 on a
  call triggers one fresh login and one retry of that call.
- Project and log stream ids are looked up (or created when missing) once per process per name and cached
  on the client, never per logger or per request.
- Every call has a timeout. The API key and the token never appear in a log line, a repr or an exception.

With no API key configured the client logs in with :data:`LOCAL_API_KEY`; the local collector accepts any
key, a real Galileo server answers 401 and the sender reports a missing GALILEO_API_KEY.
"""

from __future__ import annotations

import base64
import enum
import functools
import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import attrs
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

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


def _detail(response: requests.Response) -> str:
    text = response.text[:_MAX_DETAIL] if response.content else ""
    return f"HTTP {response.status_code}: {text}".strip()


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
        self._local = threading.local()
        self._auth_lock = threading.Lock()
        self._token: str | None = None
        self._token_refresh_at = 0.0
        self._token_generation = 0
        self._refused: tuple[float, Result] | None = None  # when and how the API last refused our key
        self._ids_lock = threading.Lock()
        self._ids: dict[Target, TargetIds] = {}

    def __repr__(self) -> str:
        return f"<galileo Client {self.api_url}>"

    # -- sessions -----------------------------------------------------------------------------------------
    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            retry = Retry(
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
            adapter = HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=4)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            session.headers.update(self._extra_headers)
            session.headers["X-Galileo-SDK"] = SDK_HEADER
            # Proxy and CA-bundle settings from the environment (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE),
            # read once per session rather than on every call, which costs a quarter of a call's CPU.
            settings = session.merge_environment_settings(self.api_url, {}, None, None, None)
            session.proxies.update(settings["proxies"])
            session.verify = settings["verify"]
            session.cert = settings["cert"]
            session.trust_env = False
            self._local.session = session
        return session

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        auth: bool = True,
        token: str | None = None,
    ) -> requests.Response:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if auth and token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self._session().request(
                method, self.api_url + path, data=body, params=params, headers=headers, timeout=self.timeout
            )
        except requests.Timeout as exc:
            raise _ExchangeError(Result(Outcome.RETRY, detail=f"timeout after {self.timeout:g}s")) from exc
        except requests.RequestException as exc:
            raise _ExchangeError(Result(Outcome.RETRY, detail=type(exc).__name__)) from exc

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
                health = self._exchange("GET", "/healthcheck", auth=False)
                if health.status_code >= 500:
                    raise _ExchangeError(
                        Result(Outcome.RETRY, health.status_code, detail="healthcheck failed")
                    )
            body = json.dumps({"api_key": self._api_key}).encode()
            response = self._exchange("POST", "/login/api_key", body=body, auth=False)
            status = response.status_code
            if status >= 500 or status in (408, 429):
                raise _ExchangeError(
                    Result(
                        Outcome.RETRY,
                        status,
                        _parse_retry_after(response.headers.get("Retry-After")),
                        detail=f"login: HTTP {status}",
                    )
                )
            if status != 200:
                result = Result(
                    Outcome.AUTH, status, detail=f"login refused (HTTP {status}): check GALILEO_API_KEY"
                )
                self._refused = (time.monotonic(), result)
                raise _ExchangeError(result)
            try:
                token = response.json()["access_token"]
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
    ) -> requests.Response:
        """One authenticated exchange; a 401/403 gets one fresh login and one retry.

        Raises :class:`_ExchangeError` when no answer could be had (connection error, timeout, login failed).
        """
        generation = self._token_generation
        response = self._exchange(method, path, body=body, params=params, token=self._current_token())
        if response.status_code in (401, 403):
            token = self._login(stale_generation=generation)
            response = self._exchange(method, path, body=body, params=params, token=token)
        return response

    def write(self, method: str, target: Target, path: str, body: dict[str, Any] | bytes) -> Result:
        """Send one write (ingest or update) for ``target``; never raises.

        ``path`` is relative to the project, e.g. ``/v2/projects/{pid}/spans`` is written ``/spans``;
        ``body`` gets the resolved ``log_stream_id``/``experiment_id`` filled in when it is a dict.
        """
        try:
            ids = self.resolve(target)
            if isinstance(body, dict):
                body = dict(body, log_stream_id=ids.log_stream_id, experiment_id=ids.experiment_id)
                data = json.dumps(body, separators=(",", ":"), default=str).encode()
            else:
                data = body
            response = self.call(method, f"/v2/projects/{ids.project_id}{path}", body=data)
        except _ExchangeError as exc:
            return exc.result
        except Exception as exc:  # the sender must survive anything; say what, never the payload
            _log.debug("galileo: unexpected error in a write", exc_info=True)
            return Result(Outcome.RETRY, detail=f"unexpected {type(exc).__name__}")
        status = response.status_code
        if 200 <= status < 300:
            return Result(Outcome.OK, status)
        detail = _detail(response)
        if status == 413:
            detail = f"HTTP 413: a request body of {len(data):,} bytes was too large"
        outcome = classify(status, detail, is_span_post=method == "POST" and path == "/spans")
        return Result(outcome, status, _parse_retry_after(response.headers.get("Retry-After")), detail)

    # -- project and log stream -------------------------------------------------------------------------
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
        if response.status_code in (401, 403):
            raise _ExchangeError(Result(Outcome.AUTH, response.status_code, detail=f"{what}: HTTP 401/403"))
        if response.status_code >= 300:
            outcome = classify(response.status_code, "", is_span_post=False)
            raise _ExchangeError(
                Result(
                    outcome,
                    response.status_code,
                    _parse_retry_after(response.headers.get("Retry-After")),
                    detail=f"{what}: {_detail(response)}",
                )
            )
        try:
            return response.json()
        except ValueError as exc:
            raise _ExchangeError(
                Result(Outcome.RETRY, response.status_code, detail=f"{what}: not JSON")
            ) from exc

    def _resolve(self, target: Target) -> TargetIds:
        project_id = target.project_id
        if project_id is None:
            name = target.project or "default"
            found = self._json(
                "GET", "/projects", "project lookup", params={"project_name": name, "type": "gen_ai"}
            )
            project_id = _find_id(found, name)
            if project_id is None:
                body = json.dumps({"name": name, "type": "gen_ai"}).encode()
                project_id = _find_id([self._json("POST", "/projects", "project create", body=body)], name)
            if project_id is None:
                raise _ExchangeError(Result(Outcome.RETRY, detail="project create: no id in answer"))
        if target.experiment_id is not None or target.log_stream_id is not None:
            return TargetIds(project_id, target.log_stream_id, target.experiment_id)
        name = target.log_stream or "default"
        log_stream_id = self._find_log_stream(project_id, name)
        if log_stream_id is None:
            body = json.dumps({"name": name}).encode()
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
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is not None:
            session.close()
            self._local.session = None


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
