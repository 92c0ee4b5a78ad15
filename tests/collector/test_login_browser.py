"""The viewer of a collector with an API key, in a real headless Chromium: log in, then see the traces."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from browser_helpers import wait_until
from collector_process import CollectorProcess

pytestmark = pytest.mark.browser

KEY = "browser-login-key-" + "y" * 12


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    db: Path = tmp_path_factory.mktemp("keyed-browser") / "c.db"
    with CollectorProcess(db, env={"GALILEO_COLLECTOR_API_KEY": KEY}, test_endpoints=False) as process:
        yield process


def _a_trace(collector: CollectorProcess, name: str) -> str:
    headers = {"Galileo-API-Key": KEY}
    url = f"{collector.url}/projects"
    project = requests.post(url, json={"name": "p"}, headers=headers, timeout=10).json()
    trace_id = str(uuid.uuid4())
    body = {"traces": [{"type": "trace", "id": trace_id, "name": name, "input": "q"}]}
    path = f"{collector.url}/v2/projects/{project['id']}/traces"
    assert requests.post(path, json=body, headers=headers, timeout=10).ok
    return trace_id


def test_a_browser_logs_in_and_lands_on_the_page_it_asked_for(keyed: CollectorProcess, page: Any) -> None:
    from selenium.webdriver.common.by import By

    trace_id = _a_trace(keyed, "behind a key")
    page.delete_all_cookies()
    page.get(f"{keyed.url}/traces/{trace_id}")
    field = wait_until(page, lambda d: d.find_element(By.CSS_SELECTOR, "input[name=api_key]"))
    assert "/login" in page.current_url and page.title.startswith("Log in")

    field.send_keys("not the key")
    page.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(page, lambda d: "not this collector" in d.find_element(By.CSS_SELECTOR, ".login .error").text)

    page.find_element(By.CSS_SELECTOR, "input[name=api_key]").send_keys(KEY)
    page.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    wait_until(page, lambda d: "behind a key" in d.find_element(By.CSS_SELECTOR, ".trace-head h1").text)
    assert page.current_url == f"{keyed.url}/traces/{trace_id}"
    (cookie,) = page.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and KEY not in cookie["value"]
