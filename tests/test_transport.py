"""The transport against real collectors: auth, token refresh, re-login, resolution, status handling."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests.utils
import urllib3
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


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", None])
def test_https_is_verified_against_the_environment_s_ca_bundle(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, variable: str | None
) -> None:
    for name in (
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    bundle = str(tmp_path / "ca.pem")
    if variable is not None:
        monkeypatch.setenv(variable, bundle)
    pool = Client("https://api.example.invalid/api", "key")._connect().pool  # (no connection made yet)
    assert isinstance(pool, urllib3.HTTPSConnectionPool)
    assert (pool.host, pool.port) == ("api.example.invalid", 443)
    assert pool.ca_certs == (bundle if variable else requests.utils.DEFAULT_CA_BUNDLE_PATH)
    assert pool.cert_reqs == "CERT_REQUIRED"


class _EncodingServer(http.server.ThreadingHTTPServer):
    """A stand-in API that answers compressed (``Content-Encoding``), and remembers the paths it saw."""

    daemon_threads = True

    def __init__(self, encoding: str) -> None:
        super().__init__(("127.0.0.1", 0), _EncodingHandler)
        self.encoding = encoding
        self.paths: list[str] = []


class _EncodingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _EncodingServer

    def _answer(self, status: int, payload: object) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.paths.append(self.path)
        raw = json.dumps(payload).encode()
        body = gzip.compress(raw) if self.server.encoding == "gzip" else zlib.compress(raw)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Encoding", self.server.encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._answer(200, {"status": "ok"})

    def do_POST(self) -> None:
        if self.path.endswith("/login/api_key"):
            self._answer(200, {"access_token": "not.a-jwt.token"})
        else:
            self._answer(422, {"detail": "parent_id 1234 not found"})

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(params=["gzip", "deflate"])
def encoding_server(request: pytest.FixtureRequest) -> Iterator[_EncodingServer]:
    server = _EncodingServer(request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_compressed_answers_are_decoded_and_the_api_url_path_is_kept(
    encoding_server: _EncodingServer,
) -> None:
    client = Client(f"http://127.0.0.1:{encoding_server.server_port}/api/", "key")
    target = Target(project=None, project_id="p", log_stream=None, log_stream_id="s")
    span = schema.ToolSpan(input="x", output="y")
    body = schema.spans_ingest_body([span], trace_id=schema.new_id(), parent_id="1234", log_stream_id=None)
    result = client.write("POST", target, "/spans", body)  # the login's JSON answer was compressed too
    assert (result.outcome, result.status) == (Outcome.PARENT_MISSING, 422)
    assert result.detail == 'HTTP 422: {"detail": "parent_id 1234 not found"}'
    assert encoding_server.paths == ["/api/healthcheck", "/api/login/api_key", "/api/v2/projects/p/spans"]
