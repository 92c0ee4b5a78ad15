"""A collector safe to leave running: test endpoints off, Host checks, an API key for every route.

Each test starts ``galileo-collector serve`` as a user would and talks to it over HTTP (the SDK and the CLI
included), asserting what a client, a browser or an attacker's page would get.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from collector_process import CollectorProcess, free_port

import galileo
from galileo import GalileoLogger

KEY = "k3y-for-tests-" + "x" * 16
TEST_ROUTES = [("GET", "/api/requests"), ("DELETE", "/api/requests"), ("GET", "/api/faults"),
               ("PUT", "/api/faults"), ("DELETE", "/api/faults")]  # fmt: skip


def _id() -> str:
    return str(uuid.uuid4())


# Test endpoints ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    """``galileo-collector serve`` as a user starts it: no flags."""
    with CollectorProcess(tmp_path_factory.mktemp("plain") / "c.db", test_endpoints=False) as process:
        yield process


@pytest.mark.parametrize(("method", "path"), TEST_ROUTES)
def test_test_endpoints_are_404_unless_asked_for(
    plain: CollectorProcess, collector: CollectorProcess, method: str, path: str
) -> None:
    body = {"fail_count": 5} if method == "PUT" else None
    assert requests.request(method, f"{plain.url}{path}", json=body, timeout=10).status_code == 404
    if method == "GET":  # the suite's collector runs with --test-endpoints
        assert requests.get(f"{collector.url}{path}", timeout=10).status_code == 200
    assert requests.post(f"{plain.url}/v2/projects/{_id()}/traces", timeout=10).status_code == 401


# Host checks (DNS rebinding) --------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/api/traces", "/api/viewer/traces", "/healthcheck"])
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8088", "127.0.0.1.evil.example", "10.0.0.1"])
def test_a_host_that_is_not_the_collector_is_421(plain: CollectorProcess, host: str, path: str) -> None:
    response = requests.get(f"{plain.url}{path}", headers={"Host": host}, timeout=10)
    assert response.status_code == 421
    assert "--allowed-host" in response.json()["detail"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:1234", "127.0.0.1", "[::1]:8088", "localhost."])
def test_loopback_names_are_accepted_with_any_port(plain: CollectorProcess, host: str) -> None:
    assert requests.get(f"{plain.url}/api/traces", headers={"Host": host}, timeout=10).status_code == 200


def test_allowed_hosts_are_added_and_a_wildcard_bind_says_how(tmp_path: Path) -> None:
    args = ("--allowed-host", "collector.internal", "--allowed-host", "10.1.2.3")
    with CollectorProcess(tmp_path / "c.db", args=args, test_endpoints=False) as process:
        for host in ("collector.internal", "collector.internal:8088", "10.1.2.3", "localhost"):
            response = requests.get(f"{process.url}/healthcheck", headers={"Host": host}, timeout=10)
            assert response.status_code == 200, host
        assert requests.get(f"{process.url}/", headers={"Host": "other"}, timeout=10).status_code == 421
    log = _serve_briefly(tmp_path, "--host", "0.0.0.0", "--allowed-host", "traces.example")
    assert "every interface" in log and "traces.example" in log and "--allowed-host" in log
    assert "WARNING" in log and "without an API key" in log


def _serve_briefly(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """What ``serve`` prints while it starts (stdout and stderr), then stop it."""
    with CollectorProcess(
        tmp_path / f"brief-{_id()}.db", args=args, env=env, test_endpoints=False
    ) as process:
        pass
    return process.log_text()


def test_a_loopback_bind_warns_about_nothing(tmp_path: Path) -> None:
    assert "WARNING" not in _serve_briefly(tmp_path)


# Cross-origin writes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("origin", ["http://evil.example", "null", "http://localhost:1"])
def test_a_cross_origin_write_is_403(collector: CollectorProcess, origin: str) -> None:
    headers = {"Origin": origin, "Content-Type": "application/json"}
    response = requests.put(f"{collector.url}/api/faults", data="{}", headers=headers, timeout=10)
    assert response.status_code == 403
    same = {"Origin": collector.url, "Content-Type": "application/json"}
    assert requests.put(f"{collector.url}/api/faults", data="{}", headers=same, timeout=10).status_code == 200


# An API key -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    db = tmp_path_factory.mktemp("keyed") / "c.db"
    env = {"GALILEO_COLLECTOR_API_KEY": KEY}
    with CollectorProcess(db, env=env, args=("--host", "0.0.0.0")) as process:
        yield process


def _login(process: CollectorProcess, key: str) -> requests.Response:
    return requests.post(f"{process.url}/login/api_key", json={"api_key": key}, timeout=10)


@pytest.mark.parametrize(
    "path",
    ["/api/traces", f"/api/traces/{_id()}", "/api/viewer/traces", "/api/viewer/locations", "/api/requests",
     "/projects", "/current_user"],
)  # fmt: skip
def test_with_a_key_every_route_needs_it(keyed: CollectorProcess, path: str) -> None:
    url = f"{keyed.url}{path}"
    assert requests.get(url, timeout=10).status_code == 401
    assert requests.get(url, headers={"Galileo-API-Key": "wrong" * 8}, timeout=10).status_code == 401
    token = _login(keyed, KEY).json()["access_token"]
    for headers in ({"Galileo-API-Key": KEY}, {"Authorization": f"Bearer {token}"}):
        assert requests.get(url, headers=headers, timeout=10).status_code in (200, 404), headers


def test_with_a_key_only_it_logs_in_and_its_start_does_not_warn(keyed: CollectorProcess) -> None:
    assert requests.get(f"{keyed.url}/healthcheck", timeout=10).status_code == 200
    refused = _login(keyed, "test-api-key")
    assert refused.status_code == 401 and KEY not in refused.text
    assert _login(keyed, KEY).status_code == 200
    log = keyed.log_text()
    assert "without an API key" not in log and KEY not in log


def test_a_token_issued_before_the_key_was_set_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    with CollectorProcess(db, test_endpoints=False) as open_collector:
        old = open_collector.login("anything")
        port = open_collector.port
    with CollectorProcess(db, port=port, env={"GALILEO_COLLECTOR_API_KEY": KEY}) as locked:
        answer = requests.get(
            f"{locked.url}/current_user", headers={"Authorization": f"Bearer {old}"}, timeout=10
        )
        assert answer.status_code == 401


def test_the_sdk_and_the_published_clients_log_in_with_the_key(
    keyed: CollectorProcess, monkeypatch: pytest.MonkeyPatch, fresh_sdk: None
) -> None:
    for name in [n for n in os.environ if n.startswith("GALILEO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_API_URL", keyed.url)
    monkeypatch.setenv("GALILEO_API_KEY", KEY)
    logger = GalileoLogger(project="keyed", log_stream="svc")
    trace = logger.start_trace(input="q", name="with a key")
    logger.conclude(output="a")
    assert logger.flush(timeout=10).pending == 0
    headers = {"Galileo-API-Key": KEY}
    stored = requests.get(f"{keyed.url}/api/traces/{trace.id}", headers=headers, timeout=10)
    assert stored.status_code == 200 and stored.json()["name"] == "with a key"
    assert galileo.stats()["sent"] == 1


def test_the_cli_reads_with_the_key(keyed: CollectorProcess) -> None:
    command = [sys.executable, "-m", "galileo.collector", "traces", "--url", keyed.url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALILEO_")}
    refused = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 1 and "Not authenticated" in refused.stderr
    env["GALILEO_COLLECTOR_API_KEY"] = KEY
    assert subprocess.run(command, capture_output=True, text=True, env=env, timeout=60).returncode == 0
    with_flag = subprocess.run([*command, "--api-key", KEY], capture_output=True, text=True, timeout=60)
    assert with_flag.returncode == 0


def _browser_get(process: CollectorProcess, path: str, session: requests.Session) -> requests.Response:
    return session.get(
        f"{process.url}{path}", headers={"Accept": "text/html"}, allow_redirects=False, timeout=10
    )


def test_the_viewer_asks_a_browser_to_log_in_and_keeps_it_in_a_strict_cookie(keyed: CollectorProcess) -> None:
    with requests.Session() as browser:
        page = _browser_get(keyed, "/traces/abc?span=1", browser)
        assert (
            page.status_code == 303 and page.headers["Location"] == "/login?next=%2Ftraces%2Fabc%3Fspan%3D1"
        )
        form = browser.get(f"{keyed.url}/login?next=/traces/abc", timeout=10)
        assert form.status_code == 200 and 'name="api_key"' in form.text and "/traces/abc" in form.text
        wrong = browser.post(
            f"{keyed.url}/login", data={"api_key": "nope", "next": "/"}, allow_redirects=False, timeout=10
        )
        assert wrong.status_code == 401 and "not this collector" in wrong.text and not browser.cookies
        right = browser.post(
            f"{keyed.url}/login",
            data={"api_key": KEY, "next": "/traces/abc"},
            allow_redirects=False,
            timeout=10,
        )
        assert right.status_code == 303 and right.headers["Location"] == "/traces/abc"
        cookie = right.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie and KEY not in cookie
        assert _browser_get(keyed, "/", browser).status_code == 200
        assert browser.get(f"{keyed.url}/api/viewer/traces", timeout=10).status_code == 200


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/", "/\\evil.example"])
def test_the_login_never_sends_a_browser_elsewhere(keyed: CollectorProcess, target: str) -> None:
    answer = requests.post(
        f"{keyed.url}/login", data={"api_key": KEY, "next": target}, allow_redirects=False, timeout=10
    )
    assert answer.status_code == 303 and answer.headers["Location"] == "/"


def test_a_cross_site_login_post_is_403(keyed: CollectorProcess) -> None:
    answer = requests.post(
        f"{keyed.url}/login",
        data={"api_key": KEY, "next": "/"},
        headers={"Origin": "http://evil.example"},
        allow_redirects=False,
        timeout=10,
    )
    assert answer.status_code == 403 and "Set-Cookie" not in answer.headers


@pytest.mark.parametrize("key", ["short", " " * 20, "tab\tin-the-middle-of-it"])
def test_a_weak_or_odd_key_is_refused_at_start_without_showing_it(tmp_path: Path, key: str) -> None:
    command = [sys.executable, "-m", "galileo.collector", "serve", "--port", str(free_port()), "--db",
               str(tmp_path / "c.db"), "--api-key", key]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "at least 16" in result.stderr
    assert (key not in result.stderr) or not key.strip()


# Start-up ---------------------------------------------------------------------------------------------------


def test_a_port_in_use_is_one_clear_error_and_no_banner(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        command = [sys.executable, "-m", "galileo.collector", "serve", "--port", str(port), "--db",
                   str(tmp_path / "c.db")]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "on http://" not in result.stdout
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr and "Traceback" not in result.stderr


# Found in review --------------------------------------------------------------------------------------------


def test_a_public_route_takes_no_body_larger_than_a_login(keyed: CollectorProcess) -> None:
    """Without the key, /login/api_key parsed up to --max-body-mb of JSON on the event loop (9.8 s for 31 MB)
    and held that much per connection."""
    big = b'{"api_key": "' + b"x" * (128 * 1024) + b'"}'
    headers = {"Content-Type": "application/json"}
    answer = requests.post(f"{keyed.url}/login/api_key", data=big, headers=headers, timeout=10)
    assert answer.status_code == 413 and "KiB" in answer.json()["detail"]
    assert _login(keyed, KEY).status_code == 200


@pytest.mark.parametrize(
    "credential",
    ["bearer", "cookie"],
)
def test_a_crafted_token_is_401_not_500(keyed: CollectorProcess, credential: str) -> None:
    import base64

    header = base64.urlsafe_b64encode(b"[" * 3000).decode().rstrip("=")
    token = f"{header}.e30.x"
    headers = (
        {"Authorization": f"Bearer {token}"}
        if credential == "bearer"
        else {"Cookie": f"galileo_collector_session={token}"}
    )
    assert requests.get(f"{keyed.url}/api/traces", headers=headers, timeout=10).status_code == 401


def test_a_login_form_with_too_many_fields_is_400(keyed: CollectorProcess) -> None:
    fields = {f"f{i}": "1" for i in range(12)} | {"api_key": KEY}
    answer = requests.post(f"{keyed.url}/login", data=fields, allow_redirects=False, timeout=10)
    assert answer.status_code == 400 and "Set-Cookie" not in answer.headers


def test_head_healthcheck_needs_no_key(keyed: CollectorProcess) -> None:
    assert requests.head(f"{keyed.url}/healthcheck", timeout=10).status_code == 200


def test_any_host_without_a_key_warns(tmp_path: Path) -> None:
    log = _serve_briefly(tmp_path, "--allowed-host", "*")
    assert "WARNING" in log and "DNS rebinding" in log


def test_a_key_that_is_not_ascii_is_refused_at_start(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "galileo.collector", "serve", "--port", str(free_port()), "--db",
               str(tmp_path / "c.db"), "--api-key", "clé-" + "x" * 20]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "ASCII" in result.stderr
