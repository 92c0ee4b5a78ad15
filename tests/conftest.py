"""Shared fixtures: a real collector subprocess to send traces to.

* ``collector`` (session): one collector for the whole run. Tests share it, so each uses its own project,
  log stream or fresh record ids, and clears ``/api/requests`` before reading it.
* ``fresh_collector`` (function): a collector with its own process and database, for tests that stop and
  restart it (``.stop()`` / ``.start()`` keep the port and the database).
* ``collector_env``: points the SDK at the shared collector (``GALILEO_API_URL``, a dummy
  ``GALILEO_API_KEY``) and clears every other ``GALILEO_*`` variable.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from collector_process import CollectorProcess

pytest_plugins = ["sdk_helpers", "browser_helpers"]


@pytest.fixture(scope="session")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    process = CollectorProcess(tmp_path_factory.mktemp("collector") / "collector.db").start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def fresh_collector(tmp_path: os.PathLike[str]) -> Iterator[CollectorProcess]:
    process = CollectorProcess(os.path.join(tmp_path, "collector.db")).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def collector_env(monkeypatch: pytest.MonkeyPatch, collector: CollectorProcess) -> CollectorProcess:
    for name in list(os.environ):
        if name.startswith("GALILEO_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GALILEO_API_URL", collector.url)
    monkeypatch.setenv("GALILEO_API_KEY", "test-api-key")
    return collector
