"""Browser fixtures: one headless Chromium for the session, driven by Selenium, with screenshots of failures.

* ``browser`` (session): Debian's ``chromium`` with its ``chromedriver`` (``.ci/system-packages`` installs
  them). Without them the browser tests skip, unless ``GALILEO_REQUIRE_BROWSER=1`` (set by ``.ci/run``)
  makes that a failure: in CI they always run.
* ``page`` (function): the shared browser, with a screenshot saved to ``test-artifacts/`` (or
  ``$GALILEO_TEST_ARTIFACTS``) when the test fails.
* :func:`wait_until`: poll a condition on the page, looking elements up again when the page replaced them.
* :func:`span_rows`: a trace page's visible span rows.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["ARTIFACTS", "WAIT", "browser", "page", "span_rows", "wait_until"]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(
    os.environ.get("GALILEO_TEST_ARTIFACTS") or Path(__file__).resolve().parents[1] / "test-artifacts"
)
#: How long a browser test waits for what it expects to see.
WAIT = 10.0


def wait_until(driver: Any, condition: Any, timeout: float = WAIT) -> Any:
    """``condition(driver)`` once it is truthy (its value), polling for ``timeout`` seconds. An element the
    page replaced meanwhile (redrawn, or a form post rendering a new page) is stale: the condition is tried
    again on the next poll, where it looks the element up afresh."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,)).until(
        condition
    )


def span_rows(driver: Any) -> list[tuple[str | None, str | None, str]]:
    """The trace page's visible span rows: (depth, type, name) each."""
    rows = [row for row in driver.find_elements("css selector", ".span-row") if row.is_displayed()]
    return [
        (
            row.get_attribute("data-depth"),
            row.get_attribute("data-type"),
            row.find_element("css selector", ".name").text,
        )
        for row in rows
    ]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    setattr(item, f"report_{report.when}", report)  # read by ``page`` at teardown
    return report


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{', '.join(missing)} not installed (run .ci/system-packages as root)"
        if os.environ.get("GALILEO_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,900"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    yield browser
    reports = [getattr(request.node, f"report_{when}", None) for when in ("setup", "call")]
    failed = any(report is not None and report.failed for report in reports)
    if failed:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.-]+", "_", request.node.nodeid)[-150:]
        browser.save_screenshot(str(ARTIFACTS / f"{name}.png"))
