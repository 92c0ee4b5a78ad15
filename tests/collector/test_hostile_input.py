"""Hostile and odd bodies never cost the collector more than they should, and never a 500.

Text that is not valid Unicode is stored with U+FFFD in place of each lone surrogate; nesting and size are
capped (422 and 413, documented limits), credentials are checked before a body is read, and the memory the
collector keeps does not grow with what it refused. All against the collector as a real subprocess.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from collector_process import CollectorProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from galileo.collector._body import MAX_JSON_DEPTH

_SURROGATE = re.compile("[\ud800-\udfff]")
# Any code point, surrogates included (plain st.text() never yields one).
_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)


def _id() -> str:
    return str(uuid.uuid4())


def _fixed(text: str) -> str:
    return _SURROGATE.sub("\ufffd", text)


class _Writer:
    """Authenticated writes to one project and log stream of a collector."""

    def __init__(self, collector: CollectorProcess) -> None:
        self.collector = collector
        self.headers = collector.auth_headers()
        self.project = self._post("/projects", {"name": f"hostile-{_id()}"}).json()
        self.stream = self._post(f"/projects/{self.project['id']}/log_streams", {"name": "svc"}).json()
        self.traces_path = f"/v2/projects/{self.project['id']}/traces"

    def _post(self, path: str, body: Any) -> requests.Response:
        return self.post_raw(path, json.dumps(body).encode())

    def post_raw(self, path: str, data: Any, **headers: str) -> requests.Response:
        merged = {**self.headers, "Content-Type": "application/json", **headers}
        return requests.post(f"{self.collector.url}{path}", data=data, headers=merged, timeout=10)

    def trace_body(self, trace: dict[str, Any]) -> bytes:
        """A traces POST for ``trace``, encoded as Python's json does by default (ASCII, ``\\u`` escapes)."""
        return json.dumps({"log_stream_id": self.stream["id"], "traces": [trace]}).encode()


@pytest.fixture(scope="module")
def writer(collector: CollectorProcess) -> _Writer:
    return _Writer(collector)


def _trace(**fields: Any) -> dict[str, Any]:
    return {"type": "trace", "id": _id(), "name": "t", "input": "q", **fields}


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=_ANY_TEXT, text=_ANY_TEXT, key=_ANY_TEXT, tag=_ANY_TEXT)
def test_text_with_lone_surrogates_is_stored_with_replacement_characters(
    writer: _Writer, name: str, text: str, key: str, tag: str
) -> None:
    span = {"type": "tool", "id": _id(), "name": name, "input": text, "output": text, "tags": [tag]}
    trace = _trace(name=name, input=text, output=text, user_metadata={key: text}, spans=[span])
    response = writer.post_raw(writer.traces_path, writer.trace_body(trace))
    assert response.status_code == 200, response.text
    stored = writer.collector.trace(trace["id"])
    assert stored is not None
    assert (stored["name"], stored["input"], stored["output"]) == (_fixed(name), _fixed(text), _fixed(text))
    assert stored["user_metadata"] == {_fixed(key): _fixed(text)}
    (tool,) = stored["spans"]
    assert (tool["name"], tool["input"], tool["tags"]) == (_fixed(name), _fixed(text), [_fixed(tag)])


def test_a_good_trace_sharing_a_post_with_a_lone_surrogate_is_stored(writer: _Writer) -> None:
    poisoned, good = _trace(input="file \udcff"), _trace(input="fine")
    body = json.dumps({"log_stream_id": writer.stream["id"], "traces": [poisoned, good]}).encode()
    assert writer.post_raw(writer.traces_path, body).status_code == 200
    assert writer.collector.trace(poisoned["id"])["input"] == "file \ufffd"  # type: ignore[index]
    assert writer.collector.trace(good["id"])["input"] == "fine"  # type: ignore[index]
    listed = requests.get(f"{writer.collector.url}/api/viewer/records/{poisoned['id']}", timeout=10)
    assert listed.json()["input"] == "file \ufffd"


def test_bytes_that_are_not_utf8_are_stored_with_replacement_characters(writer: _Writer) -> None:
    trace = _trace(input="@@")
    raw = writer.trace_body(trace).replace(b"@@", b"caf\xe9 \xed\xb3\xbf")  # Latin-1, an encoded surrogate
    assert writer.post_raw(writer.traces_path, raw).status_code == 200
    stored = writer.collector.trace(trace["id"])
    assert stored is not None and stored["input"].startswith("caf\ufffd ") and "\ufffd" in stored["input"][5:]


def _nested_spans(levels: int, *, typed: bool = True) -> dict[str, Any]:
    span: dict[str, Any] = {"id": _id(), "name": "leaf", "input": "x"}
    if typed:
        span["type"] = "tool"
    for level in range(levels - 1):
        span = {"id": _id(), "name": f"level {level}", "input": "x", "spans": [span]}
        if typed:
            span["type"] = "workflow"
    return span


def test_sixty_levels_of_nested_spans_are_stored(writer: _Writer) -> None:
    trace = _trace(spans=[_nested_spans(60)])
    assert writer.post_raw(writer.traces_path, writer.trace_body(trace)).status_code == 200
    node = writer.collector.trace(trace["id"])
    depth = 0
    while node is not None and node["spans"]:
        node, depth = node["spans"][0], depth + 1
    assert depth == 60


@pytest.mark.parametrize(
    "raw",
    [b"[" * 2000, b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), b'{"a":' * 5000],
    ids=["2000 unclosed", "one level too deep", "5000 objects"],
)
def test_json_nested_too_deep_is_422_and_the_collector_keeps_serving(writer: _Writer, raw: bytes) -> None:
    response = writer.post_raw(writer.traces_path, raw)
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["type"] == "json_too_deep" and str(MAX_JSON_DEPTH) in problem["msg"]
    assert requests.get(f"{writer.collector.url}/healthcheck", timeout=10).ok


def test_spans_without_a_type_are_refused_at_once_however_deep(writer: _Writer) -> None:
    """A body of untyped nested spans made the validator try every span schema at every level: some 5x more
    work per level, minutes for a dozen levels. Galileo's discriminator requires ``type``."""
    trace = _trace(spans=[_nested_spans(14, typed=False)])
    response = writer.post_raw(writer.traces_path, writer.trace_body(trace))  # the client's 10 s timeout
    assert response.status_code == 422
    assert any("'type' is a required property" in p["msg"] for p in response.json()["detail"])


@pytest.mark.parametrize("levels", [6, 12])
def test_a_deep_body_with_one_bad_leaf_is_explained_at_once(writer: _Writer, levels: int) -> None:
    trace = _trace(spans=[_nested_spans(levels)])
    leaf = trace["spans"][0]
    while leaf.get("spans"):
        leaf = leaf["spans"][0]
    leaf["input"] = 5
    response = writer.post_raw(writer.traces_path, writer.trace_body(trace))  # the client's 10 s timeout
    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][-1] == "input" and problem["loc"].count("spans") == levels


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_route_refuses_a_body_that_is_not_json_with_415(
    writer: _Writer, content_type: str | None
) -> None:
    headers = {**writer.headers}
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = writer.trace_body(_trace())
    response = requests.post(
        f"{writer.collector.url}{writer.traces_path}", data=body, headers=headers, timeout=10
    )
    assert response.status_code == 415
    assert writer.post_raw(writer.traces_path, body, **{"Content-Type": "application/json; charset=utf-8"}).ok


# A collector with a small body limit ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CollectorProcess]:
    db = tmp_path_factory.mktemp("small") / "small.db"
    with CollectorProcess(db, args=("--max-body-mb", "1")) as process:
        yield process


def test_a_body_over_the_limit_is_413_whether_its_length_is_declared_or_not(
    small_collector: CollectorProcess,
) -> None:
    writer = _Writer(small_collector)
    big = _trace(input="x" * (1024 * 1024 + 10))
    declared = writer.post_raw(writer.traces_path, writer.trace_body(big))
    assert declared.status_code == 413 and "1 MiB" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        body = writer.trace_body(big)
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    streamed = writer.post_raw(writer.traces_path, chunks())
    assert streamed.status_code == 413
    small = _trace(input="x" * (512 * 1024))
    assert writer.post_raw(writer.traces_path, writer.trace_body(small)).status_code == 200
    assert small_collector.trace(big["id"]) is None
    assert small_collector.trace(small["id"]) is not None


# Credentials before bodies; memory bounded by what was accepted ---------------------------------------------


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_unauthenticated_bodies_are_not_read_nor_parsed(collector: CollectorProcess) -> None:
    deep = b"[" * 5000
    url = f"{collector.url}/v2/projects/{_id()}/traces"
    response = requests.post(url, data=deep, headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == 401


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the collector's RSS from /proc")
def test_refused_bodies_leave_no_trace_in_memory(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "rss.db") as collector:
        assert collector.pid is not None
        writer = _Writer(collector)
        before = _rss_mb(collector.pid)
        body = b"x" * (20 * 1024 * 1024)
        with requests.Session() as session:
            for _ in range(30):  # 600 MB of unauthenticated POSTs
                answer = session.post(
                    f"{collector.url}{writer.traces_path}",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
                assert answer.status_code == 401
        invalid = writer.trace_body(_trace(input=5, output="y" * (5 * 1024 * 1024)))
        for _ in range(10):  # 50 MB of authenticated bodies the schema refuses
            assert writer.post_raw(writer.traces_path, invalid).status_code == 422
        grown = _rss_mb(collector.pid) - before
        assert grown < 100, f"the collector grew by {grown:.0f} MB"
        refused = [entry for entry in collector.requests() if entry["status"] == 422]
        assert len(refused) == 10 and all(entry["body"] is None for entry in refused)


def test_the_request_log_keeps_at_most_its_byte_budget_of_bodies(tmp_path: Path) -> None:
    with CollectorProcess(tmp_path / "log.db") as collector:
        writer = _Writer(collector)
        for _ in range(80):  # 80 accepted bodies of 1 MiB: more than the log's 64 MiB
            body = writer.trace_body(_trace(input="z" * (1024 * 1024)))
            assert writer.post_raw(writer.traces_path, body).status_code == 200
        entries = collector.requests()
        kept = sum(len(json.dumps(entry["body"])) for entry in entries if entry["body"] is not None)
        assert kept <= 64 * 1024 * 1024 + 80 * 1024, kept
        assert len(entries) < 81 and entries[-1]["body"] is not None  # the oldest went first


# Found in review: what one accepted request could do to everyone else -----------------------------------


@pytest.mark.parametrize(
    ("field", "number"),
    [("metrics", b'{"duration_ns": 1' + b"0" * 400 + b"}"), ("metrics", b'{"duration_ns": 1e400}')],
    ids=["400-digit integer", "1e400"],
)
def test_numbers_beyond_64_bits_or_a_double_are_422_and_the_list_keeps_working(
    writer: _Writer, field: str, number: bytes
) -> None:
    """A 400-digit duration was stored, read back by SQLite as infinity, and every trace list answered 500;
    with ``created_at`` in year 9999 it stayed first for good."""
    trace = _trace(created_at="9999-12-31T00:00:00Z", **{field: {}})
    raw = writer.trace_body(trace).replace(b'"metrics": {}', b'"metrics": ' + number)
    response = writer.post_raw(writer.traces_path, raw)
    assert response.status_code == 422 and "out of" in response.json()["detail"][0]["msg"]
    for path in ("/api/traces", "/api/viewer/traces"):
        assert requests.get(f"{writer.collector.url}{path}", timeout=10).status_code == 200


def test_a_body_over_the_threadpool_threshold_is_stored(writer: _Writer) -> None:
    trace = _trace(input="w" * (400 * 1024), spans=[_nested_spans(3)])
    assert writer.post_raw(writer.traces_path, writer.trace_body(trace)).status_code == 200
    stored = writer.collector.trace(trace["id"])
    assert stored is not None and len(stored["input"]) == 400 * 1024 and stored["spans"]


def test_a_chain_of_spans_too_deep_for_a_json_tree_is_422_and_flat_in_the_viewer(writer: _Writer) -> None:
    """Each span posted on its own may name the previous one as its parent: the stored tree has no depth
    limit, where a body has one."""
    trace = _trace()
    assert writer.post_raw(writer.traces_path, writer.trace_body(trace)).status_code == 200
    parent = trace["id"]
    spans_path = writer.traces_path.replace("/traces", "/spans")
    for _ in range(1100):
        span = {"type": "workflow", "id": _id(), "name": "s", "input": "x"}
        body = {
            "log_stream_id": writer.stream["id"],
            "trace_id": trace["id"],
            "parent_id": parent,
            "spans": [span],
        }
        assert writer.post_raw(spans_path, json.dumps(body).encode()).status_code == 200
        parent = span["id"]
    url = writer.collector.url
    answer = requests.get(f"{url}/api/traces/{trace['id']}", timeout=10)
    assert answer.status_code == 422 and "/api/viewer/traces/" in answer.json()["detail"]
    flat = requests.get(f"{url}/api/viewer/traces/{trace['id']}", timeout=10)
    assert flat.status_code == 200 and len(flat.json()["rows"]) == 1101


def test_session_search_finds_a_session_by_id_beyond_the_first_page_and_bounds_its_numbers(
    writer: _Writer,
) -> None:
    pid, stream = writer.project["id"], writer.stream["id"]
    ids = [
        writer._post(f"/v2/projects/{pid}/sessions", {"log_stream_id": stream, "name": f"s{i}"}).json()["id"]
        for i in range(3)
    ]
    search = f"/v2/projects/{pid}/sessions/search"
    by_id = {"type": "id", "column_id": "id", "operator": "eq", "value": ids[2]}
    found = writer._post(search, {"log_stream_id": stream, "limit": 1, "filters": [by_id]}).json()["records"]
    assert [s["id"] for s in found] == [ids[2]]
    for numbers in ({"limit": 10**30}, {"starting_token": 10**19}, {"starting_token": 2**62, "limit": 2**62}):
        assert writer._post(search, {"log_stream_id": stream, **numbers}).status_code in (400, 422), numbers
    paged = f"{writer.collector.url}/projects/{pid}/log_streams/paginated?starting_token=99999999999999999999"
    assert requests.get(paged, headers=writer.headers, timeout=10).status_code == 422


def test_a_patch_reaches_no_record_of_another_project(writer: _Writer, collector: CollectorProcess) -> None:
    trace = _trace(input="mine")
    assert writer.post_raw(writer.traces_path, writer.trace_body(trace)).status_code == 200
    other = _Writer(collector)
    path = f"/v2/projects/{other.project['id']}/traces/{trace['id']}"
    body = json.dumps({"trace_id": trace["id"], "output": "theirs", "log_stream_id": other.stream["id"]})
    answer = requests.patch(
        f"{collector.url}{path}",
        data=body,
        headers={**other.headers, "Content-Type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 404
    assert "output" not in collector.trace(trace["id"])  # type: ignore[operator]
