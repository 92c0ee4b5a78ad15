"""README stays true: its two set-up commands, its demo, and its Python examples run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from collector_process import CollectorProcess
from starlette.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_test_one() -> None:
    setup = [b.strip() for b in _blocks("bash") if b.strip().startswith("python3 -m venv")]
    assert len(setup) == 2
    demo, tests = setup
    assert demo.endswith("python examples/demo.py") and "[demo]" in demo
    assert tests.endswith("python -m pytest -q")
    ci_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert tests in ci_lines, ".ci/run must run the README's test command as written"


def test_demo_prints_the_tree_it_sent(collector: CollectorProcess) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GALILEO_")}
    env["GALILEO_API_URL"] = collector.url  # the demo reuses a running collector
    out = subprocess.run(
        [sys.executable, "examples/demo.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = [re.sub(r"\s+[\d.]+ ms", "", line) for line in out.stdout.splitlines()[3:]]
    assert lines == [
        "trace  GET /ask  200  complete  [demo / gateway]",
        "└─ workflow  gateway-workflow  ok",
        "   ├─ workflow  retriever-service  ok  [demo / retriever]",
        "   │  └─ retriever  vector-search  ok",
        "   └─ llm  compose-answer  ok",
    ]


@pytest.mark.usefixtures("fresh_sdk")
@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_python_examples_run_as_written(index: int, collector_env: CollectorProcess) -> None:
    code = _blocks("python")[index]
    if code.lstrip().startswith(">>>"):
        code = "\n".join(line[4:] for line in code.splitlines() if line.startswith(">>> "))
        code = "import galileo\n" + code
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    app = namespace.get("app")
    if app is not None:  # a service example: serve it through TestClient and call its route
        with TestClient(app) as client:
            route = app.routes[-1].path  # the example's own route (FastAPI's docs routes come first)
            assert client.get(route, params={"q": "telescope"}).status_code == 200
