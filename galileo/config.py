"""Configuration: constructor arguments over environment variables, resolved and validated once.

:meth:`GalileoConfig.resolve` reads every setting from its argument when given, else from its environment
variable, else a default; the result is frozen. Empty or blank values count as unset. A bad value raises
:class:`~galileo.exceptions.ConfigurationError` naming the variable to fix; messages never contain the API key
or header values.

Every string setting must be valid Unicode: one holding a lone surrogate (U+D800..U+DFFF, what Python makes of
bytes that are not UTF-8 in an environment variable or a file name) is a ConfigurationError rather than text
the API would fail on (records themselves are repaired instead, see :mod:`galileo._unicode`).

=============================  ==========================================================================
variable (argument)            meaning, default
=============================  ==========================================================================
GALILEO_API_KEY (api_key)      credential; never shown in ``repr`` or messages
GALILEO_API_URL (api_url)      API base URL, http(s); wins over the derivation below
GALILEO_CONSOLE_URL            console URL the API URL is derived from (default https://app.galileo.ai/)
GALILEO_PROJECT / _PROJECT_ID  project by name or id (a UUID); name "default" when neither is set
GALILEO_LOG_STREAM / _ID       log stream by name or id (a UUID); name "default" when neither is set
GALILEO_EXPERIMENT_ID          experiment id (a UUID), instead of a log stream
GALILEO_MODE (mode)            ``batch`` (default: traces go together at ``flush()``) or ``distributed``
GALILEO_LOGGING_DISABLED       1/true/yes/on or 0/false/no/off (case-insensitive); default off
GALILEO_EXTRA_HEADERS          JSON object of header name -> value sent with every request (API gateways)
GALILEO_MAX_PAYLOAD_CHARS      characters kept per text field before truncation, > 0; default 100000
GALILEO_TIMEOUT                seconds per HTTP request, > 0; default 10
GALILEO_SENDER_WORKERS         sender threads, 1..64; default 8
GALILEO_QUEUE_SIZE             records the sender queues before dropping, > 0; default 10000
GALILEO_RETRY_WINDOW           seconds a failed send is retried, >= 0; default 120
GALILEO_OTLP_ENDPOINT          OTLP/HTTP endpoint every record is also exported to as an OTel span (a
  (otlp_endpoint)              base URL gets ``/v1/traces``; a URL with a path is used as it is); see
                               :mod:`galileo.otel`
GALILEO_EXPORTER (exporter)    where records go: ``galileo``, ``otlp`` or ``both``; default ``both`` when
                               an OTLP endpoint is set (GALILEO_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT
                               or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), else ``galileo``; ``otlp`` and
                               ``both`` need ``galileo[otel]`` (the OTEL_* variables alone export only
                               when it is installed)
(redact)                       redaction hook ``redact(field, value)``, see :mod:`galileo._coerce`
=============================  ==========================================================================

Where traces go. ``GALILEO_API_URL`` when set. Otherwise, when an API key or a console URL is set, the API URL
is derived from the console URL (default https://app.galileo.ai/) by galileo_core's rule, so a setting that
works with the published SDK works here: a console URL without a scheme gets ``https://``; one containing
``localhost`` or ``127.0.0.1`` gives ``http://localhost:8088``; one containing ``app.galileo.ai`` gives
``https://api.galileo.ai``; any other has ``console`` replaced by ``api`` wherever it appears
(https://console.acme.galileo.ai -> https://api.acme.galileo.ai), and one without ``console`` is the API URL
as it is (http://localtest:8088). With none of the three set, traces go to the local collector at
:data:`DEFAULT_LOCAL_URL` (``is_local_default``), which is said once per process at INFO on the ``galileo``
logger.

Where in a project. ``experiment_id`` and a log stream are two destinations: giving ``experiment_id`` together
with ``log_stream`` or ``log_stream_id`` as arguments raises (as the published ``GalileoLogger`` does). An
argument wins over the environment here too: an experiment argument over ``GALILEO_LOG_STREAM(_ID)``, a log
stream argument over ``GALILEO_EXPERIMENT_ID``; with both only in the environment the experiment wins. The
destination not taken is None in the resolved config.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os
import re
import threading
import uuid
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from galileo._unicode import has_surrogates
from galileo.exceptions import ConfigurationError
from galileo.schema import DEFAULT_MAX_CHARS, PayloadPolicy

__all__ = ["DEFAULT_CONSOLE_URL", "DEFAULT_LOCAL_URL", "EXPORTERS", "MODES", "GalileoConfig"]

DEFAULT_LOCAL_URL: Final = "http://localhost:8088"
DEFAULT_CONSOLE_URL: Final = "https://app.galileo.ai/"
_GALILEO_API_URL: Final = "https://api.galileo.ai"
MODES: Final = ("batch", "distributed")
EXPORTERS: Final = ("galileo", "otlp", "both")
#: The standard variables that name an OTLP endpoint (read by the OTLP exporter itself).
_OTEL_ENDPOINTS: Final = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_OTEL_MODULES: Final = ("opentelemetry.sdk.trace", "opentelemetry.exporter.otlp.proto.http.trace_exporter")
_NO_OTEL: Final = (
    "exporting to OTLP needs the optional packages opentelemetry-sdk and opentelemetry-exporter-otlp-proto-"
    "http: pip install 'galileo[otel]'"
)

_DEFAULT_NAME: Final = "default"
_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})
_HEADER_NAME: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADERS_SHAPE: Final = "must be a JSON object of strings (header name -> value)"
_NOT_UNICODE: Final = (
    "is not valid Unicode: it holds a lone surrogate (U+D800..U+DFFF, what bytes that are not UTF-8 decode "
    "to in os.environ or os.fsdecode); give it as UTF-8 text"
)

_log = logging.getLogger("galileo")
_announce_lock = threading.Lock()
_announced = False


@functools.lru_cache(maxsize=64)
def _payload_policy(max_chars: int, redact: Callable[[str, Any], Any] | None) -> PayloadPolicy:
    return PayloadPolicy(max_chars=max_chars, redact=redact)


def _freeze_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(headers))


def _mask_headers(headers: Mapping[str, str]) -> str:
    return "{" + ", ".join(f"{name!r}: '***'" for name in headers) + "}"


@attrs.frozen(kw_only=True)
class GalileoConfig:
    """Resolved, immutable configuration. Build it with :meth:`resolve`; change it with ``attrs.evolve``."""

    api_url: str
    api_key: str | None = attrs.field(default=None, repr=False)
    console_url: str | None = None
    project: str | None = _DEFAULT_NAME
    project_id: str | None = None
    log_stream: str | None = _DEFAULT_NAME
    log_stream_id: str | None = None
    experiment_id: str | None = None
    mode: str = "batch"
    logging_disabled: bool = False
    extra_headers: Mapping[str, str] = attrs.field(
        factory=dict, converter=_freeze_headers, repr=_mask_headers, hash=False
    )
    max_payload_chars: int = DEFAULT_MAX_CHARS
    redact: Callable[[str, Any], Any] | None = None
    timeout: float = 10.0
    sender_workers: int = 8
    queue_size: int = 10_000
    retry_window: float = 120.0
    otlp_endpoint: str | None = None
    exporter: str = "galileo"
    is_local_default: bool = False

    @property
    def payload_policy(self) -> PayloadPolicy:
        """The coercion/truncation/redaction policy these settings describe (shared, not rebuilt)."""
        return _payload_policy(self.max_payload_chars, self.redact)

    @classmethod
    def resolve(
        cls,
        *,
        api_key: str | None = None,
        console_url: str | None = None,
        api_url: str | None = None,
        project: str | None = None,
        project_id: str | None = None,
        log_stream: str | None = None,
        log_stream_id: str | None = None,
        experiment_id: str | None = None,
        mode: str | None = None,
        logging_disabled: bool | None = None,
        extra_headers: Mapping[str, str] | None = None,
        max_payload_chars: int | None = None,
        redact: Callable[[str, Any], Any] | None = None,
        timeout: float | None = None,
        sender_workers: int | None = None,
        queue_size: int | None = None,
        retry_window: float | None = None,
        otlp_endpoint: str | None = None,
        exporter: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> GalileoConfig:
        """Every argument wins over its environment variable (``environ`` defaults to ``os.environ``)."""
        env: Mapping[str, str] = os.environ if environ is None else environ

        key = _string(api_key, env, "GALILEO_API_KEY", secret=True)
        if key is not None and any(c in key for c in "\r\n\0"):
            raise ConfigurationError("GALILEO_API_KEY", "must not contain line breaks or NUL characters")
        console = _string(console_url, env, "GALILEO_CONSOLE_URL")
        explicit = _string(api_url, env, "GALILEO_API_URL")
        if explicit is not None:
            url, is_local = _http_url("GALILEO_API_URL", explicit), False
        elif key is not None or console is not None:
            console = console or DEFAULT_CONSOLE_URL
            url, is_local = _derive_api_url(console), False
        else:
            url, is_local = DEFAULT_LOCAL_URL, True

        if redact is not None and not callable(redact):
            raise ConfigurationError("redact", "must be a callable redact(field, value) -> value or None")
        pid = _uuid(project_id, env, "GALILEO_PROJECT_ID")
        stream, sid, experiment = _destination(log_stream, log_stream_id, experiment_id, env)
        config = cls(
            api_url=url,
            api_key=key,
            console_url=console,
            project=_string(project, env, "GALILEO_PROJECT") or (None if pid else _DEFAULT_NAME),
            project_id=pid,
            log_stream=stream,
            log_stream_id=sid,
            experiment_id=experiment,
            mode=_mode(mode, env),
            logging_disabled=_bool(logging_disabled, env, "GALILEO_LOGGING_DISABLED"),
            extra_headers=_headers(extra_headers, env),
            max_payload_chars=int(
                _number(max_payload_chars, env, "GALILEO_MAX_PAYLOAD_CHARS", DEFAULT_MAX_CHARS, 1)
            ),
            redact=redact,
            timeout=_number(timeout, env, "GALILEO_TIMEOUT", 10.0, 0.0, integer=False, strict=True),
            sender_workers=int(_number(sender_workers, env, "GALILEO_SENDER_WORKERS", 8, 1, 64)),
            queue_size=int(_number(queue_size, env, "GALILEO_QUEUE_SIZE", 10_000, 1)),
            retry_window=_number(retry_window, env, "GALILEO_RETRY_WINDOW", 120.0, 0.0, integer=False),
            **_export(otlp_endpoint, exporter, env),
            is_local_default=is_local,
        )
        if is_local and not config.logging_disabled:
            _announce_local_default()
        return config


def _announce_local_default() -> None:
    global _announced
    with _announce_lock:
        if _announced:
            return
        _announced = True
    _log.info(
        "no GALILEO_API_URL / GALILEO_CONSOLE_URL / GALILEO_API_KEY set: sending to the local "
        "collector at %s (start it with `galileo-collector serve`)",
        DEFAULT_LOCAL_URL,
    )


def _destination(
    log_stream: str | None, log_stream_id: str | None, experiment_id: str | None, env: Mapping[str, str]
) -> tuple[str | None, str | None, str | None]:
    """``(log_stream, log_stream_id, experiment_id)``: a log stream or an experiment (module docstring)."""
    by_argument = _raw(log_stream, {}, "") is not None or _raw(log_stream_id, {}, "") is not None
    experiment_argument = _uuid(experiment_id, {}, "GALILEO_EXPERIMENT_ID")
    if by_argument and experiment_argument is not None:
        raise ConfigurationError(
            "experiment_id",
            "give a log stream (log_stream / log_stream_id) or an experiment (experiment_id), not both",
        )
    if experiment_argument is not None:
        return None, None, experiment_argument
    if not by_argument:
        experiment = _uuid(None, env, "GALILEO_EXPERIMENT_ID")
        if experiment is not None:
            return None, None, experiment
    sid = _uuid(log_stream_id, env, "GALILEO_LOG_STREAM_ID")
    name = _string(log_stream, env, "GALILEO_LOG_STREAM") or (None if sid else _DEFAULT_NAME)
    return name, sid, None


def _export(endpoint: str | None, exporter: str | None, env: Mapping[str, str]) -> dict[str, Any]:
    """``otlp_endpoint`` and ``exporter`` (see the module docstring's table)."""
    url = _string(endpoint, env, "GALILEO_OTLP_ENDPOINT")
    if url is not None:
        url = _http_url("GALILEO_OTLP_ENDPOINT", url)
        if not urlsplit(url).path.strip("/"):
            url += "/v1/traces"
    choice = _string(exporter, env, "GALILEO_EXPORTER")
    if choice is not None and choice.lower() not in EXPORTERS:
        raise ConfigurationError(
            "GALILEO_EXPORTER", f"must be one of {', '.join(EXPORTERS)}; got {choice!r}", choice
        )
    if choice is None and url is None:  # the OTEL_EXPORTER_OTLP_* variables alone: export if we can
        elsewhere = any(_raw(None, env, var) is not None for var in _OTEL_ENDPOINTS)
        choice = "both" if elsewhere and _otlp_installed() else "galileo"
    choice = (choice or "both").lower()
    if choice != "galileo" and not _otlp_installed():
        var = "GALILEO_OTLP_ENDPOINT" if url is not None and exporter is None else "GALILEO_EXPORTER"
        raise ConfigurationError(var, _NO_OTEL)
    return {"otlp_endpoint": url, "exporter": choice}


def _otlp_installed() -> bool:
    """Whether opentelemetry-sdk and its OTLP/HTTP exporter can be imported (without importing them)."""
    try:
        return all(importlib.util.find_spec(name) is not None for name in _OTEL_MODULES)
    except (ImportError, ValueError):
        return False


def _raw(arg: object, env: Mapping[str, str], var: str) -> object:
    """The argument when given, else the environment value; blank strings count as unset (None)."""
    value = arg if arg is not None else env.get(var)
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _string(arg: str | None, env: Mapping[str, str], var: str, *, secret: bool = False) -> str | None:
    """A string setting, stripped; it must be valid Unicode (echoed in the error unless ``secret`` or it
    looks like a URL with credentials)."""
    value = _raw(arg, env, var)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigurationError(var, f"must be a string, got {type(value).__name__}")
    if has_surrogates(value):
        if secret or "@" in value:
            raise ConfigurationError(var, _NOT_UNICODE)
        raise ConfigurationError(var, f"{_NOT_UNICODE}; got {value!r}", value)
    return value.strip()


def _uuid(arg: str | None, env: Mapping[str, str], var: str) -> str | None:
    value = _string(arg, env, var)
    if value is None:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ConfigurationError(var, f"must be a UUID, got {value!r}", value) from None


def _mode(arg: str | None, env: Mapping[str, str]) -> str:
    value = _string(arg, env, "GALILEO_MODE")
    if value is None:
        return MODES[0]
    if value.lower() not in MODES:
        raise ConfigurationError("GALILEO_MODE", f"must be one of {', '.join(MODES)}; got {value!r}", value)
    return value.lower()


def _bool(arg: bool | None, env: Mapping[str, str], var: str) -> bool:
    if isinstance(arg, bool):
        return arg
    value = arg if arg is not None else env.get(var, "")
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(var, f"must be one of 1/true/yes/on or 0/false/no/off; got {value!r}", value)


def _number(
    arg: float | None,
    env: Mapping[str, str],
    var: str,
    default: float,
    low: float,
    high: float | None = None,
    *,
    integer: bool = True,
    strict: bool = False,
) -> float:
    """A number in [low, high] (or (low, high] when ``strict``), from the argument or the environment."""
    value = _raw(arg, env, var)
    if value is None:
        return default
    what = "an integer" if integer else "a number"
    bound = f"> {low:g}" if strict else f">= {low:g}"
    wanted = f"{what} {bound}" if high is None else f"{what} from {low:g} to {high:g}"
    number: float
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError
        if integer:
            if isinstance(value, float):
                raise ValueError
            number = int(value)
        else:
            number = float(value)
    except ValueError:
        raise ConfigurationError(var, f"must be {wanted}; got {value!r}", value) from None
    if (
        not math.isfinite(number)
        or number < low
        or (strict and number == low)
        or (high is not None and number > high)
    ):
        raise ConfigurationError(var, f"must be {wanted}; got {value!r}", value)
    return number


def _headers(arg: Mapping[str, str] | None, env: Mapping[str, str]) -> dict[str, str]:
    var = "GALILEO_EXTRA_HEADERS"
    value: object = arg
    if value is None:
        raw = env.get(var, "")
        if not raw.strip():
            return {}
        try:
            value = json.loads(raw)
        except ValueError:  # the raw text may hold secrets: neither echoed nor chained
            raise ConfigurationError(var, f"{_HEADERS_SHAPE}; it is not valid JSON") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(var, f"{_HEADERS_SHAPE}; got {type(value).__name__}")
    headers: dict[str, str] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not isinstance(item, str):
            raise ConfigurationError(var, _HEADERS_SHAPE)
        if not _HEADER_NAME.fullmatch(name):
            raise ConfigurationError(var, f"{name!r} is not a valid header name")
        if any(c in item for c in "\r\n\0"):
            raise ConfigurationError(var, f"the value of {name!r} contains a line break or NUL character")
        if has_surrogates(item):
            raise ConfigurationError(var, f"the value of {name!r} {_NOT_UNICODE}")
        headers[name] = item
    return headers


def _http_url(var: str, raw: str) -> str:
    """``raw`` as an http(s) base URL without a trailing slash; errors echo it only without credentials."""
    shown = "" if "@" in raw else f"; got {raw!r}"
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        raise ConfigurationError(var, f"must be an http(s) URL{shown}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(var, f"must be an http(s) URL with a host{shown}")
    if "@" in parts.netloc:
        raise ConfigurationError(
            var, "must not contain credentials (use GALILEO_API_KEY or GALILEO_EXTRA_HEADERS)"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(var, f"must be a base URL without a query or fragment{shown}")
    return f"{parts.scheme.lower()}://{parts.netloc}{parts.path}".rstrip("/")


def _derive_api_url(console_url: str) -> str:
    """The API URL of a console URL, by galileo_core's ``set_api_url`` rule (see the module docstring)."""
    var = "GALILEO_CONSOLE_URL"
    if "://" not in console_url:  # galileo_core: a value that does not start with http(s) gets https://
        console_url = f"https://{console_url}"
    normalized = _http_url(var, console_url)
    parts = urlsplit(normalized)  # host lowercased as galileo_core's URL type makes it (no credentials here)
    normalized = f"{parts.scheme}://{parts.netloc.lower()}{parts.path}"
    if "localhost" in normalized or "127.0.0.1" in normalized:
        return DEFAULT_LOCAL_URL
    if "app.galileo.ai" in normalized:
        return _GALILEO_API_URL
    return _http_url(var, normalized.replace("console", "api"))
