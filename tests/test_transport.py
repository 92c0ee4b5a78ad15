"""The transport against real collectors: auth, token refresh, re-login, resolution, status handling."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from collector_process import CollectorProcess, free_port
from sdk_helpers import HttpSpy

from galileo import schema
from galileo._transport import Client, Outcome, Target, classify
from galileo.config import GalileoConfig

TARGET = Target(project="transport", project_id=None, log_stream="t", log_stream_id=None)


def _trace_body() -> dict[str, object]:
    return schema.traces_ingest_body([schema.Trace(input="q", name="t")], log_stream_id=None)


def test_write_logs_in_resolves_and_posts(collector: CollectorProcess, http_spy: HttpSpy) -> None:
    client = Client(collector.url, "key")
    result = client.write("POST", TARGET, "/traces", _trace_body())
    assert result.outcome is Outcome.OK and result.status == 200
    assert http_spy.paths()[:2] == ["healthcheck", "login/api_key"]
    ids = client.resolve(TARGET)
    assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
    assert client.resolve(TARGET) is ids, "ids are cached on the client"
    assert http_spy.count("POST", "/login/api_key") == 1
    write = http_spy.calls[-1]
    assert (write.method, write.url) == ("POST", f"{collector.url}/v2/projects/{ids.project_id}/traces")
    assert write.body is not None and write.headers["Authorization"].startswith("Bearer ")
    sent = json.loads(write.body)
    assert (sent["log_stream_id"], sent["traces"][0]["input"]) == (ids.log_stream_id, "q")


def test_token_is_refreshed_before_it_expires(tmp_path: Path, http_spy: HttpSpy) -> None:
    with CollectorProcess(tmp_path / "c.db", token_ttl=2) as collector:
        client = Client(collector.url, "key")
        assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
        # the client logs in again shortly before the token's exp (a 2 s token: 0.4 s before)
        time.sleep(max(0.0, client._token_refresh_at - time.time()) + 0.05)
        assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
    assert http_spy.count("POST", "/login/api_key") == 2
    statuses = [c.status for c in http_spy.calls if c.url.endswith("/traces")]
    assert statuses == [200, 200], "the refresh happened before a 401, not after"


def test_revoked_token_gets_one_fresh_login(tmp_path: Path, http_spy: HttpSpy) -> None:
    port = free_port()
    with CollectorProcess(tmp_path / "a.db", port=port) as first:
        client = Client(first.url, "key")
        assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
    # another server (another signing secret) on the same address: the old token is refused
    before = len(http_spy.calls)
    with CollectorProcess(tmp_path / "b.db", port=port):
        client._ids.clear()  # the new server has other project ids
        assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
    after = [
        (c.method, c.url.split("/", 3)[3].split("?")[0], c.status)
        for c in http_spy.calls[before:]
        if "health" not in c.url
    ]
    assert after[:2] == [("GET", "projects", 401), ("POST", "login/api_key", 200)]
    assert http_spy.count("POST", "/login/api_key") == 2


def test_unreachable_backend_is_transient_never_raises(http_spy: HttpSpy) -> None:
    client = Client(f"http://127.0.0.1:{free_port()}", "key", timeout=2)
    result = client.write("POST", TARGET, "/traces", _trace_body())
    assert result.outcome is Outcome.RETRY
    assert "ConnectionError" in result.detail
    # one exchange (the health check), its immediate connection retries inside it
    assert [(c.method, c.status) for c in http_spy.calls] == [("GET", None)]


def test_schema_error_is_rejected_with_detail(collector: CollectorProcess) -> None:
    client = Client(collector.url, "key")
    body = _trace_body()
    body["traces"][0]["id"] = "not-a-uuid"  # type: ignore[index]
    result = client.write("POST", TARGET, "/traces", body)
    assert (result.outcome, result.status) == (Outcome.REJECTED, 422)
    assert "uuid" in result.detail.lower()


def test_span_under_unknown_trace_is_accepted(collector: CollectorProcess) -> None:
    client = Client(collector.url, "key")
    span = schema.ToolSpan(input="x", output="y")
    body = schema.spans_ingest_body(
        [span], trace_id=schema.new_id(), parent_id=schema.new_id(), log_stream_id=None
    )
    assert client.write("POST", TARGET, "/spans", body).outcome is Outcome.OK


@pytest.mark.parametrize(
    ("status", "body", "span_post", "outcome"),
    [
        (200, "", False, Outcome.OK),
        (204, "", True, Outcome.OK),
        (408, "", False, Outcome.RETRY),
        (429, "", False, Outcome.RETRY),
        (500, "", False, Outcome.RETRY),
        (503, "", True, Outcome.RETRY),
        (401, "", False, Outcome.AUTH),
        (403, "", True, Outcome.AUTH),
        (404, "", True, Outcome.PARENT_MISSING),
        (404, "", False, Outcome.REJECTED),
        (422, "parent_id 1234 not found", True, Outcome.PARENT_MISSING),
        (422, "id is not a uuid4", True, Outcome.REJECTED),
        (413, "", False, Outcome.REJECTED),
        (400, "", False, Outcome.REJECTED),
    ],
)
def test_status_classification(status: int, body: str, span_post: bool, outcome: Outcome) -> None:
    assert classify(status, body, is_span_post=span_post) is outcome


def test_client_repr_and_errors_hide_the_key(collector: CollectorProcess) -> None:
    secret = "sk-SECRET-transport-99"
    client = Client(collector.url, secret)
    assert secret not in repr(client)
    refused = Client(f"http://127.0.0.1:{free_port()}", secret, timeout=1)
    result = refused.write("POST", TARGET, "/traces", _trace_body())
    assert secret not in repr(result)


def test_extra_headers_and_sdk_header_are_sent(collector: CollectorProcess, http_spy: HttpSpy) -> None:
    config = GalileoConfig.resolve(
        api_url=collector.url, api_key="k", extra_headers={"X-Gateway": "yes"}, environ={}
    )
    client = Client(config.api_url, config.api_key, extra_headers=config.extra_headers)
    assert client.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
    assert any(r["path"].endswith("/traces") for r in collector.requests())  # (not the SDK's: not spied)
    assert http_spy.calls
    for call in http_spy.calls:  # every exchange: the health check, login, look-ups and the write
        assert call.headers["X-Gateway"] == "yes"
        assert call.headers["X-Galileo-SDK"].startswith("galileo-starlette/")


def test_proxy_settings_from_the_environment_are_honoured(
    collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch, http_spy: HttpSpy
) -> None:
    dead_proxy = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead_proxy)
    monkeypatch.setenv("NO_PROXY", "")
    monkeypatch.delenv("no_proxy", raising=False)
    via_proxy = Client(collector.url, "key", timeout=2)
    assert via_proxy.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.RETRY
    # the proxy's pool was asked for the whole URL (a proxy's request form), and got no answer
    assert [(c.url, c.status) for c in http_spy.calls] == [(f"{collector.url}/healthcheck", None)]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = Client(collector.url, "key", timeout=2)
    assert direct.write("POST", TARGET, "/traces", _trace_body()).outcome is Outcome.OK
