"""Fixtures of the fault tests: a fresh collector the SDK points at, and its fault settings."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess

#: The project every fault test logs to.
PROJECT = "faults"


@pytest.fixture
def sdk_backend(
    fresh_collector: CollectorProcess, monkeypatch: pytest.MonkeyPatch, fresh_sdk: None
) -> CollectorProcess:
    """A collector of the test's own, with the SDK pointed at it (``GALILEO_API_URL``, a dummy key, project
    ``faults``; every other ``GALILEO_*`` variable cleared) and a fresh process-wide sender."""
    for name in [n for n in os.environ if n.startswith("GALILEO_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_API_URL", fresh_collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    monkeypatch.setenv("GALILEO_PROJECT", PROJECT)
    return fresh_collector


@pytest.fixture
def set_faults() -> Callable[..., dict[str, Any]]:
    """``set_faults(collector, **settings)``: ``PUT /api/faults``, checked; the settings now in force."""

    def put(collector: CollectorProcess, **settings: Any) -> dict[str, Any]:
        answer = requests.put(f"{collector.url}/api/faults", json=settings, timeout=10)
        assert answer.status_code == 200, answer.text
        now: dict[str, Any] = answer.json()
        return now

    return put
