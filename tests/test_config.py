"""galileo.config: resolution order, defaults, URL derivation, validation, secrecy, immutability."""

from __future__ import annotations

import logging
import os
import uuid
from typing import Any

import attrs
import pytest

from galileo import config as config_module
from galileo.config import DEFAULT_CONSOLE_URL, DEFAULT_LOCAL_URL, MODES, GalileoConfig
from galileo.exceptions import ConfigurationError, GalileoLoggerException
from galileo.schema import PayloadPolicy

SECRET = "sk-SECRET-123"
HEADER_SECRET = "hv-HEADER-SECRET-456"
PID = "660c8e6f-9018-48f5-b14b-677c06593b71"
SID = "c3d9d849-691f-4f2f-b88b-062f4bd73128"
EID = "4a3ebdf0-544b-41a0-9336-fe0cd2a10e7a"


@pytest.fixture(autouse=True)
def _fresh_announcement(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_module, "_announced", False)


def resolve(env: dict[str, str] | None = None, **kwargs: Any) -> GalileoConfig:
    return GalileoConfig.resolve(environ=env or {}, **kwargs)


def announcements(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "galileo" and "local collector" in r.getMessage()]


# --- defaults -----------------------------------------------------------------------------------------------


def test_defaults_send_to_the_local_collector() -> None:
    config = resolve()
    assert config.api_url == DEFAULT_LOCAL_URL == "http://localhost:8088"
    assert config.is_local_default is True
    assert config.api_key is None
    assert config.console_url is None
    assert (config.project, config.project_id) == ("default", None)
    assert (config.log_stream, config.log_stream_id) == ("default", None)
    assert config.experiment_id is None
    assert config.mode == "batch" == MODES[0]
    assert config.logging_disabled is False
    assert dict(config.extra_headers) == {}
    assert config.max_payload_chars == 100_000
    assert config.timeout == 10.0
    assert config.sender_workers == 8
    assert config.queue_size == 10_000
    assert config.retry_window == 120.0
    assert config.redact is None


def test_local_default_is_announced_once_at_info(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="galileo"):
        resolve()
        resolve()
        GalileoConfig.resolve(environ={})
    lines = announcements(caplog)
    assert len(lines) == 1
    assert lines[0].levelno == logging.INFO
    message = lines[0].getMessage()
    assert "http://localhost:8088" in message
    assert "galileo-collector serve" in message
    assert "GALILEO_API_URL" in message


@pytest.mark.parametrize(
    "env",
    [
        {"GALILEO_API_URL": "http://localhost:9000"},
        {"GALILEO_API_KEY": SECRET},
        {"GALILEO_CONSOLE_URL": "https://app.galileo.ai"},
        {"GALILEO_LOGGING_DISABLED": "1"},
    ],
)
def test_no_announcement_when_not_the_local_default(
    env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="galileo"):
        resolve(env)
    assert announcements(caplog) == []


def test_names_default_only_without_ids() -> None:
    config = resolve({"GALILEO_PROJECT_ID": PID, "GALILEO_LOG_STREAM_ID": SID})
    assert (config.project, config.project_id) == (None, PID)
    assert (config.log_stream, config.log_stream_id) == (None, SID)
    config = resolve({"GALILEO_PROJECT": "shop", "GALILEO_LOG_STREAM": "prod"})
    assert (config.project, config.log_stream) == ("shop", "prod")


def test_ids_are_canonical() -> None:
    config = resolve(project_id=PID.upper(), log_stream_id="{" + SID + "}")
    assert (config.project_id, config.log_stream_id) == (PID, SID)
    assert resolve(experiment_id=EID.replace("-", "")).experiment_id == EID


def test_environ_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("GALILEO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_API_URL", "https://gw.example.com/galileo/")
    monkeypatch.setenv("GALILEO_MODE", "distributed")
    config = GalileoConfig.resolve()
    assert config.api_url == "https://gw.example.com/galileo"
    assert config.mode == "distributed"


def test_blank_values_count_as_unset() -> None:
    env = {
        name: "  " for name in ("GALILEO_API_URL", "GALILEO_API_KEY", "GALILEO_PROJECT", "GALILEO_TIMEOUT")
    }
    env["GALILEO_MODE"] = ""
    env["GALILEO_EXTRA_HEADERS"] = ""
    config = resolve(env)
    assert config.is_local_default
    assert config.project == "default"
    assert config.timeout == 10.0
    assert config.mode == "batch"


# --- precedence ---------------------------------------------------------------------------------------------

PRECEDENCE = [
    ("api_key", "GALILEO_API_KEY", "env-key", "arg-key", "env-key", "arg-key"),
    ("api_url", "GALILEO_API_URL", "http://env:1", "https://arg", "http://env:1", "https://arg"),
    ("console_url", "GALILEO_CONSOLE_URL", "https://console.env.io", "https://console.arg.io", None, None),
    ("project", "GALILEO_PROJECT", "env-p", "arg-p", "env-p", "arg-p"),
    ("project_id", "GALILEO_PROJECT_ID", PID, SID, PID, SID),
    ("log_stream", "GALILEO_LOG_STREAM", "env-s", "arg-s", "env-s", "arg-s"),
    ("log_stream_id", "GALILEO_LOG_STREAM_ID", SID, PID, SID, PID),
    ("experiment_id", "GALILEO_EXPERIMENT_ID", EID, PID, EID, PID),
    ("mode", "GALILEO_MODE", "distributed", "batch", "distributed", "batch"),
    ("logging_disabled", "GALILEO_LOGGING_DISABLED", "yes", False, True, False),
    ("max_payload_chars", "GALILEO_MAX_PAYLOAD_CHARS", "500", 7, 500, 7),
    ("timeout", "GALILEO_TIMEOUT", "2.5", 1, 2.5, 1),
    ("sender_workers", "GALILEO_SENDER_WORKERS", "3", 64, 3, 64),
    ("queue_size", "GALILEO_QUEUE_SIZE", "12", 99, 12, 99),
    ("retry_window", "GALILEO_RETRY_WINDOW", "0", 30.5, 0.0, 30.5),
]


@pytest.mark.parametrize(("arg", "var", "env_value", "arg_value", "from_env", "from_arg"), PRECEDENCE)
def test_argument_wins_over_environment(
    arg: str, var: str, env_value: str, arg_value: Any, from_env: Any, from_arg: Any
) -> None:
    env = {var: env_value}
    if from_env is not None:
        assert getattr(resolve(env), arg) == from_env
        assert getattr(resolve(env, **{arg: arg_value}), arg) == from_arg
    else:  # console_url: observed through the derived API URL
        assert resolve(env).api_url == "https://api.env.io"
        assert resolve(env, **{arg: arg_value}).api_url == "https://api.arg.io"


def test_extra_headers_and_redact_arguments() -> None:
    env = {"GALILEO_EXTRA_HEADERS": '{"X-Env": "1"}'}
    assert dict(resolve(env).extra_headers) == {"X-Env": "1"}
    assert dict(resolve(env, extra_headers={"X-Arg": "2"}).extra_headers) == {"X-Arg": "2"}

    def hook(field: str, value: Any) -> Any:
        return None

    config = resolve(redact=hook, max_payload_chars=42)
    assert config.redact is hook
    assert config.payload_policy == PayloadPolicy(max_chars=42, redact=hook)


# --- URL resolution -----------------------------------------------------------------------------------------


# galileo_core's set_api_url rule, as WIRE.md states it; checked against galileo 2.7.0 / galileo_core.
@pytest.mark.parametrize(
    ("console", "api"),
    [
        ("https://app.galileo.ai/", "https://api.galileo.ai"),
        ("https://app.galileo.ai", "https://api.galileo.ai"),
        ("https://app.galileo.ai/some/page", "https://api.galileo.ai"),
        ("HTTPS://APP.Galileo.AI", "https://api.galileo.ai"),
        ("https://console.acme.galileo.ai", "https://api.acme.galileo.ai"),
        ("http://console.internal:8080/", "http://api.internal:8080"),
        ("https://galileo-console.acme.com", "https://galileo-api.acme.com"),
        ("https://Console.Acme.com", "https://api.acme.com"),
        # "console" replaced wherever it appears, the path included
        ("https://console.acme.com/console/", "https://api.acme.com/api"),
        # a URL without "console" is used as it is
        ("http://localtest:8088", "http://localtest:8088"),
        ("https://galileo.acme.com", "https://galileo.acme.com"),
        ("https://app.acme.galileo.ai/some/page", "https://app.acme.galileo.ai/some/page"),
        ("https://gw.acme.com:9443/galileo/", "https://gw.acme.com:9443/galileo"),
        # a local console is the local API, whatever its port
        ("http://localhost:3000", "http://localhost:8088"),
        ("http://127.0.0.1:3000/", "http://localhost:8088"),
        ("https://console.localhost", "http://localhost:8088"),
        # a value without a scheme gets https://
        ("console.acme.io", "https://api.acme.io"),
        ("galileo.ai", "https://galileo.ai"),
        ("localhost:3000", "http://localhost:8088"),
        ("app.galileo.ai", "https://api.galileo.ai"),
    ],
)
def test_api_url_derived_from_console_url(console: str, api: str) -> None:
    config = resolve({"GALILEO_CONSOLE_URL": console})
    assert config.api_url == api
    assert config.console_url == console
    assert config.is_local_default is False


def test_a_console_url_without_console_is_the_api_url() -> None:
    """The issue's case: a console served on a host without "console" in its name was refused."""
    config = resolve({"GALILEO_CONSOLE_URL": "http://localtest:8088", "GALILEO_API_KEY": SECRET})
    assert config.api_url == "http://localtest:8088"
    assert config.is_local_default is False


def test_api_key_alone_uses_the_default_console() -> None:
    config = resolve({"GALILEO_API_KEY": SECRET})
    assert config.api_url == "https://api.galileo.ai"
    assert config.console_url == DEFAULT_CONSOLE_URL
    assert config.api_key == SECRET


def test_explicit_api_url_wins() -> None:
    env = {"GALILEO_API_URL": "http://127.0.0.1:8088/", "GALILEO_CONSOLE_URL": "https://app.galileo.ai"}
    config = resolve(env, api_key=SECRET)
    assert config.api_url == "http://127.0.0.1:8088"
    assert config.is_local_default is False
    assert resolve({"GALILEO_API_URL": "https://[::1]:8443/base//"}).api_url == "https://[::1]:8443/base"


# --- log stream or experiment ------------------------------------------------------------------------------


def test_experiment_argument_with_log_stream_argument_raises_the_published_exception() -> None:
    with pytest.raises(GalileoLoggerException, match="not both"):
        resolve(log_stream="prod", experiment_id=EID)


def test_logger_with_log_stream_and_experiment_raises_at_construction() -> None:
    from galileo import GalileoLogger

    with pytest.raises(GalileoLoggerException, match="not both"):
        GalileoLogger(project="shop", log_stream="prod", experiment_id=EID, logging_disabled=True)
    with pytest.raises(GalileoLoggerException, match="not both"):
        GalileoLogger(project="shop", log_stream_id=SID, experiment_id=EID, logging_disabled=True)


def test_experiment_argument_wins_over_log_stream_environment() -> None:
    env = {"GALILEO_LOG_STREAM": "prod", "GALILEO_LOG_STREAM_ID": SID}
    config = resolve(env, experiment_id=EID)
    assert (config.log_stream, config.log_stream_id, config.experiment_id) == (None, None, EID)


def test_log_stream_argument_wins_over_experiment_environment() -> None:
    config = resolve({"GALILEO_EXPERIMENT_ID": EID}, log_stream="prod")
    assert (config.log_stream, config.log_stream_id, config.experiment_id) == ("prod", None, None)
    config = resolve({"GALILEO_EXPERIMENT_ID": EID}, log_stream_id=SID)
    assert (config.log_stream, config.log_stream_id, config.experiment_id) == (None, SID, None)


def test_experiment_environment_wins_over_log_stream_environment() -> None:
    config = resolve({"GALILEO_EXPERIMENT_ID": EID, "GALILEO_LOG_STREAM": "prod"})
    assert (config.log_stream, config.log_stream_id, config.experiment_id) == (None, None, EID)


# --- misconfiguration ---------------------------------------------------------------------------------------

BAD: list[tuple[dict[str, str], dict[str, Any], str, str]] = [
    ({"GALILEO_API_URL": "localhost:8088"}, {}, "GALILEO_API_URL", "http"),
    ({"GALILEO_API_URL": "ftp://example.com"}, {}, "GALILEO_API_URL", "http"),
    ({"GALILEO_API_URL": "https://"}, {}, "GALILEO_API_URL", "host"),
    ({"GALILEO_API_URL": "http://h:notaport"}, {}, "GALILEO_API_URL", "URL"),
    ({"GALILEO_API_URL": "https://h/?x=1"}, {}, "GALILEO_API_URL", "query"),
    ({"GALILEO_API_URL": f"https://user:{SECRET}@h"}, {}, "GALILEO_API_URL", "credentials"),
    ({}, {"api_url": "not a url"}, "GALILEO_API_URL", "http"),
    ({"GALILEO_CONSOLE_URL": "ftp://console.acme.com"}, {}, "GALILEO_CONSOLE_URL", "http"),
    ({"GALILEO_CONSOLE_URL": "https://console.acme.com/?x=1"}, {}, "GALILEO_CONSOLE_URL", "query"),
    ({"GALILEO_CONSOLE_URL": f"https://u:{SECRET}@console.a.io"}, {}, "GALILEO_CONSOLE_URL", "credentials"),
    ({}, {"log_stream": "prod", "experiment_id": EID}, "experiment_id", "not both"),
    ({}, {"log_stream_id": SID, "experiment_id": EID}, "experiment_id", "not both"),
    ({"GALILEO_MODE": "streaming"}, {}, "GALILEO_MODE", "batch, distributed"),
    ({}, {"mode": "fast"}, "GALILEO_MODE", "batch, distributed"),
    ({"GALILEO_LOGGING_DISABLED": "maybe"}, {}, "GALILEO_LOGGING_DISABLED", "true"),
    ({"GALILEO_EXTRA_HEADERS": "{not json"}, {}, "GALILEO_EXTRA_HEADERS", "JSON object of strings"),
    ({"GALILEO_EXTRA_HEADERS": '["a"]'}, {}, "GALILEO_EXTRA_HEADERS", "JSON object of strings"),
    ({"GALILEO_EXTRA_HEADERS": '{"X-A": 1}'}, {}, "GALILEO_EXTRA_HEADERS", "JSON object of strings"),
    ({"GALILEO_EXTRA_HEADERS": '{"bad name": "v"}'}, {}, "GALILEO_EXTRA_HEADERS", "header name"),
    ({}, {"extra_headers": {"X-A": "a\r\nX-Injected: 1"}}, "GALILEO_EXTRA_HEADERS", "line break"),
    ({"GALILEO_MAX_PAYLOAD_CHARS": "lots"}, {}, "GALILEO_MAX_PAYLOAD_CHARS", "integer"),
    ({"GALILEO_MAX_PAYLOAD_CHARS": "0"}, {}, "GALILEO_MAX_PAYLOAD_CHARS", ">= 1"),
    ({"GALILEO_MAX_PAYLOAD_CHARS": "1.5"}, {}, "GALILEO_MAX_PAYLOAD_CHARS", "integer"),
    ({}, {"max_payload_chars": True}, "GALILEO_MAX_PAYLOAD_CHARS", "integer"),
    ({"GALILEO_TIMEOUT": "soon"}, {}, "GALILEO_TIMEOUT", "number"),
    ({"GALILEO_TIMEOUT": "0"}, {}, "GALILEO_TIMEOUT", "> 0"),
    ({"GALILEO_TIMEOUT": "nan"}, {}, "GALILEO_TIMEOUT", "number"),
    ({}, {"timeout": float("inf")}, "GALILEO_TIMEOUT", "number"),
    ({"GALILEO_SENDER_WORKERS": "0"}, {}, "GALILEO_SENDER_WORKERS", "1 to 64"),
    ({"GALILEO_SENDER_WORKERS": "65"}, {}, "GALILEO_SENDER_WORKERS", "1 to 64"),
    ({"GALILEO_QUEUE_SIZE": "-5"}, {}, "GALILEO_QUEUE_SIZE", ">= 1"),
    ({"GALILEO_RETRY_WINDOW": "-1"}, {}, "GALILEO_RETRY_WINDOW", ">= 0"),
    ({"GALILEO_PROJECT_ID": "my-project"}, {}, "GALILEO_PROJECT_ID", "UUID"),
    ({"GALILEO_LOG_STREAM_ID": "42"}, {}, "GALILEO_LOG_STREAM_ID", "UUID"),
    ({"GALILEO_EXPERIMENT_ID": "x"}, {}, "GALILEO_EXPERIMENT_ID", "UUID"),
    ({}, {"api_key": "abc\ndef"}, "GALILEO_API_KEY", "line breaks"),
    ({}, {"redact": "not callable"}, "redact", "callable"),
    ({}, {"project": 5}, "GALILEO_PROJECT", "string"),
]


@pytest.mark.parametrize(("env", "kwargs", "variable", "text"), BAD)
def test_misconfiguration_names_the_variable(
    env: dict[str, str], kwargs: dict[str, Any], variable: str, text: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        resolve(env, **kwargs)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert text in str(caught.value)
    assert isinstance(caught.value, GalileoLoggerException)
    assert isinstance(caught.value, ValueError)


# --- secrets ------------------------------------------------------------------------------------------------


def test_api_key_is_never_shown() -> None:
    config = resolve({"GALILEO_API_KEY": SECRET})
    assert config.api_key == SECRET
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert SECRET not in text
        assert "api_key" not in text


@pytest.mark.parametrize(("env", "kwargs", "variable", "text"), BAD)
def test_secrets_never_in_error_messages(
    env: dict[str, str], kwargs: dict[str, Any], variable: str, text: str
) -> None:
    env = {"GALILEO_API_KEY": SECRET, "GALILEO_EXTRA_HEADERS": f'{{"X-Key": "{HEADER_SECRET}"}}', **env}
    with pytest.raises(ConfigurationError) as caught:
        resolve(env, **kwargs)
    for shown in (str(caught.value), repr(caught.value), repr(caught.value.value), repr(caught.value.args)):
        assert SECRET not in shown
        assert HEADER_SECRET not in shown


def test_bad_api_key_and_headers_are_not_echoed() -> None:
    key = f"{SECRET}\n"
    with pytest.raises(ConfigurationError) as caught:
        resolve({"GALILEO_API_KEY": key + "x"})
    assert SECRET not in str(caught.value)
    assert caught.value.value is None
    raw = f'{{"X-Key": "{HEADER_SECRET}", '  # truncated JSON holding a secret
    with pytest.raises(ConfigurationError) as caught:
        resolve({"GALILEO_EXTRA_HEADERS": raw})
    assert HEADER_SECRET not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    with pytest.raises(ConfigurationError) as caught:
        resolve(extra_headers={"X-Key": HEADER_SECRET + "\r\n"})
    assert HEADER_SECRET not in str(caught.value)


def test_extra_header_values_are_masked_and_read_only() -> None:
    config = resolve({"GALILEO_EXTRA_HEADERS": f'{{"X-Gateway-Key": "{HEADER_SECRET}", "X-Team": "search"}}'})
    assert config.extra_headers["X-Gateway-Key"] == HEADER_SECRET
    text = repr(config)
    assert "X-Gateway-Key" in text
    assert "X-Team" in text
    assert HEADER_SECRET not in text
    assert "search" not in text
    with pytest.raises(TypeError):
        config.extra_headers["X-New"] = "1"  # type: ignore[index]
    given = {"X-A": "1"}
    config = resolve(extra_headers=given)
    given["X-A"] = "changed"
    assert config.extra_headers["X-A"] == "1"  # a copy, not a view of the caller's dict


# --- immutability and values --------------------------------------------------------------------------------


def test_config_is_frozen_and_comparable() -> None:
    config = resolve({"GALILEO_API_KEY": SECRET})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.api_url = "http://elsewhere"  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.api_key = None  # type: ignore[misc]
    assert config == resolve({"GALILEO_API_KEY": SECRET})
    assert hash(config) == hash(resolve({"GALILEO_API_KEY": SECRET}))
    changed = attrs.evolve(config, mode="distributed")
    assert (changed.mode, config.mode) == ("distributed", "batch")


@pytest.mark.parametrize(("raw", "expected"), [("1", True), ("TRUE", True), ("Yes", True), (" on ", True)])
def test_logging_disabled_true_values(raw: str, expected: bool) -> None:
    assert resolve({"GALILEO_LOGGING_DISABLED": raw}).logging_disabled is expected


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF", ""])
def test_logging_disabled_false_values(raw: str) -> None:
    assert resolve({"GALILEO_LOGGING_DISABLED": raw}).logging_disabled is False


def test_mode_is_case_insensitive() -> None:
    assert resolve({"GALILEO_MODE": " Distributed "}).mode == "distributed"
    assert resolve(mode="BATCH").mode == "batch"


def test_numbers_accept_ints_floats_and_strings() -> None:
    config = resolve(
        {"GALILEO_TIMEOUT": "0.25", "GALILEO_RETRY_WINDOW": "1e2", "GALILEO_QUEUE_SIZE": " 5 "},
        sender_workers=1,
    )
    assert (config.timeout, config.retry_window, config.queue_size, config.sender_workers) == (
        0.25,
        100.0,
        5,
        1,
    )
    assert isinstance(config.queue_size, int)
    assert isinstance(config.timeout, float)


def test_uuid_helpers_accept_any_uuid_version() -> None:
    legacy = str(uuid.uuid1())
    assert resolve(project_id=legacy).project_id == legacy
