"""@log and galileo_context outside requests, against the real collector: what a user would see stored."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import logging
import os
import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from collector_process import REPO_ROOT, CollectorProcess, free_port
from sdk_helpers import HttpSpy, tree_lines
from starlette.concurrency import run_in_threadpool

import galileo
from galileo import galileo_context, log
from galileo.decorator import MAX_CHARS


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("GALILEO_PROJECT", "decorator")
    monkeypatch.setenv("GALILEO_LOG_STREAM", "tests")
    galileo_context.reset()
    yield
    galileo_context.reset()


def trace_id_here() -> str:
    """The trace decorated calls in this context go to."""
    trace_id = galileo_context.get_logger_instance().trace_id
    assert trace_id is not None
    return trace_id


def stored(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    assert galileo_context.flush(timeout=10) == 0
    tree = collector.wait_for(lambda: collector.trace(trace_id))
    return tree


def find(tree: dict[str, Any], name: str) -> dict[str, Any]:
    if tree.get("name") == name:
        return tree
    for child in tree.get("spans", []):
        found = find(child, name) if isinstance(child, dict) else None
        if found:
            return found
    return {}


# -- function kinds and nesting ----------------------------------------------------------------------------
@log(span_type="retriever")
def retrieve(query: str, k: int = 2) -> list[str]:
    return [f"doc {i} for {query}" for i in range(k)]


@log(span_type="llm", name="chat")
async def chat(prompt: str) -> dict[str, str]:
    await asyncio.sleep(0)
    return {"role": "assistant", "content": f"answer to {prompt}"}


@log(span_type="tool")
def tokens(text: str) -> Iterator[str]:
    yield from text.split()


@log(span_type="agent")
async def stream(text: str) -> AsyncIterator[str]:
    for word in text.split():
        await asyncio.sleep(0)
        yield word.upper()


class Pipeline:
    @log
    def run(self, question: str) -> str:
        documents = retrieve(question)
        words = list(tokens("to be continued"))
        loud = asyncio.run(self.arun(question))
        return f"{len(documents)} documents, {len(words)} words, {loud}"

    @log(name="arun")
    async def arun(self, question: str) -> str:
        reply = await chat(question)
        shouted = [word async for word in stream("jupiter moons")]
        return reply["content"] + " " + " ".join(shouted)

    @log(span_type="tool")
    @classmethod
    def kind(cls, label: str) -> str:
        return label


def test_each_function_kind_nests_like_the_calls(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}

    @log
    def main(question: str) -> str:
        seen["trace"] = trace_id_here()
        Pipeline.kind("label")
        return Pipeline().run(question)

    result = main("what moons")
    assert result == "2 documents, 3 words, answer to what moons JUPITER MOONS"
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree) == [
        "trace:main",
        "  workflow:main",
        "    tool:kind",
        "    workflow:run",
        "      retriever:retrieve",
        "      tool:tokens",
        "      workflow:arun",
        "        llm:chat",
        "        agent:stream",
    ]
    assert (tree["input"], tree["output"], tree["is_complete"]) == (
        '{"question": "what moons"}',
        result,
        True,
    )
    run = find(tree, "run")
    assert run["input"] == '{"question": "what moons"}', "self is left out"
    assert find(tree, "kind")["input"] == '{"label": "label"}', "cls is left out"
    assert find(tree, "retrieve")["input"] == '{"query": "what moons"}', "arguments as passed"
    assert [d["content"] for d in find(tree, "retrieve")["output"]] == [
        "doc 0 for what moons",
        "doc 1 for what moons",
    ]
    assert find(tree, "chat")["output"]["content"] == "answer to what moons"
    assert find(tree, "tokens")["output"] == "tobecontinued", "yielded strings are concatenated"
    assert find(tree, "stream")["output"] == "JUPITERMOONS"
    assert find(tree, "arun")["output"] == "answer to what moons JUPITER MOONS"
    for record in (run, find(tree, "chat"), find(tree, "tokens"), find(tree, "stream")):
        assert record["metrics"]["duration_ns"] > 0
        assert record["status_code"] is None


def test_siblings_stay_siblings_and_leaves_do_not_open_levels(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}

    @log(span_type="tool")
    def outer_tool() -> str:
        return inner_tool()

    @log(span_type="tool")
    def inner_tool() -> str:
        return "inner"

    @log(span_type="agent")
    def agent() -> None:
        seen["trace"] = trace_id_here()
        outer_tool()
        outer_tool()

    agent()
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree) == [
        "trace:agent",
        "  agent:agent",
        "    tool:outer_tool",  # stored in start order: a leaf's span is recorded when it returns
        "    tool:inner_tool",
        "    tool:outer_tool",
        "    tool:inner_tool",
    ]
    assert tree["spans"][0]["output"] == "inner", (
        "a workflow/agent returning None takes its last child's output"
    )


def test_each_outermost_call_is_a_trace_of_its_own(collector_env: CollectorProcess) -> None:
    ids: list[str] = []

    @log(span_type="tool")
    def lookup(key: str) -> str:
        ids.append(trace_id_here())
        return key

    lookup("a")
    lookup("b")
    assert len(set(ids)) == 2
    for trace_id, key in zip(ids, "ab", strict=True):
        tree = stored(collector_env, trace_id)
        assert tree_lines(tree) == ["trace:lookup", "  tool:lookup"]
        assert (tree["input"], tree["output"], tree["spans"][0]["output"]) == (
            f'{{"key": "{key}"}}',
            key,
            key,
        )
    assert galileo_context.get_logger_instance().trace_id is None, "nothing left open after the call"


# -- exceptions -------------------------------------------------------------------------------------------
class Boom(Exception):
    pass


def test_exceptions_are_recorded_and_propagate_unchanged(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}
    raised = Boom("the disk is full")

    @log(span_type="tool")
    def fails() -> None:
        raise raised

    @log
    async def afails() -> None:
        await asyncio.sleep(0)
        fails()

    @log
    def main() -> None:
        seen["trace"] = trace_id_here()
        try:
            asyncio.run(afails())
        except Boom as exc:
            seen["caught"] = exc
        fails()

    with pytest.raises(Boom) as info:
        main()
    assert info.value is raised and seen["caught"] is raised
    assert info.traceback[-1].name == "fails", "the traceback still ends where the error was raised"
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree) == [
        "trace:main",
        "  workflow:main",
        "    workflow:afails",
        "      tool:fails",
        "    tool:fails",
    ]
    for name in ("main", "afails", "fails"):
        record = find(tree, name)
        assert (record["status_code"], record["output"]) == (500, "Boom: the disk is full")
    assert tree["status_code"] == 500


# -- generators ---------------------------------------------------------------------------------------------
def test_generator_is_the_parent_only_while_its_body_runs(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}
    ran: list[str] = []

    @log(span_type="tool")
    def step(label: str) -> str:
        return label

    @log
    def produce(n: int) -> Iterator[int]:
        ran.append("body")
        for i in range(n):
            step(f"inside {i}")
            yield i

    @log
    def consume() -> list[int]:
        seen["trace"] = trace_id_here()
        items = produce(2)
        assert ran == [], "calling a generator function runs nothing"
        out = []
        for item in items:
            step(f"between {item}")
            out.append(item)
        return out

    assert consume() == [0, 1]
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree) == [
        "trace:consume",
        "  workflow:consume",
        "    workflow:produce",
        "      tool:step",
        "      tool:step",
        "    tool:step",
        "    tool:step",
    ]
    assert [s["input"] for s in find(tree, "produce")["spans"]] == [
        '{"label": "inside 0"}',
        '{"label": "inside 1"}',
    ]
    assert find(tree, "produce")["output"] == "0\n1", "non-string items, one per line"


def test_generator_closed_early_or_failing_concludes_its_span(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}
    cleaned: list[str] = []

    @log(span_type="tool")
    def numbers() -> Iterator[str]:
        try:
            yield "one"
            yield "two"
            yield "three"
        finally:
            cleaned.append("sync")

    @log(span_type="tool")
    async def anumbers() -> AsyncIterator[str]:
        try:
            yield "uno"
            raise Boom("stream broke")
        finally:
            cleaned.append("async")

    async def use_async() -> None:
        with pytest.raises(Boom):
            async for _ in anumbers():
                pass

    @log
    def main() -> None:
        seen["trace"] = trace_id_here()
        gen = numbers()
        assert next(gen) == "one" and gen.send(None) == "two"
        gen.close()
        asyncio.run(use_async())

    main()
    assert cleaned == ["sync", "async"]
    tree = stored(collector_env, seen["trace"])
    closed, failed = tree["spans"][0]["spans"]
    assert (closed["name"], closed["output"], closed["status_code"]) == ("numbers", "onetwo", None)
    assert (failed["name"], failed["output"], failed["status_code"]) == (
        "anumbers",
        "Boom: stream broke",
        500,
    )


def test_generator_send_and_throw_reach_the_body() -> None:
    @log
    def echo() -> Iterator[str]:
        received = yield "ready"
        while True:
            try:
                received = yield f"got {received}"
            except KeyError:
                received = "a KeyError"

    gen = echo()
    assert next(gen) == "ready"
    assert gen.send("x") == "got x"
    assert gen.throw(KeyError("k")) == "got a KeyError"
    gen.close()


def test_signatures_and_kinds_are_preserved() -> None:
    def plain(a: int, b: str = "x", *rest: int, flag: bool = False, **extra: Any) -> str:
        return b

    async def coro(a: int) -> int:
        return a

    def gen(a: int) -> Iterator[int]:
        yield a

    async def agen(a: int) -> AsyncIterator[int]:
        yield a

    for func, check in (
        (plain, inspect.isfunction),
        (coro, inspect.iscoroutinefunction),
        (gen, inspect.isgeneratorfunction),
        (agen, inspect.isasyncgenfunction),
    ):
        wrapped = log(span_type="tool")(func)
        assert check(wrapped)
        assert inspect.signature(wrapped) == inspect.signature(func)
        assert (wrapped.__name__, wrapped.__doc__, wrapped.__wrapped__) == (func.__name__, func.__doc__, func)  # type: ignore[attr-defined]
    assert functools.partial(log(plain), 1)(b="y") == "y"
    with pytest.raises(ValueError, match="span_type"):
        log(span_type="banana")(plain)  # type: ignore[call-overload]


# -- inputs -------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Point:
    x: int
    y: int


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class Hostile:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


def test_inputs_are_json_with_fallbacks_and_capped(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}

    @log(span_type="tool")
    def takes(*args: Any, **kwargs: Any) -> Any:
        return args[0]

    @log
    def main() -> None:
        seen["trace"] = trace_id_here()
        takes(Point(1, 2), Opaque(), {1, 2}, key=Hostile())
        circular: list[Any] = []
        circular.append(circular)
        takes(circular)
        takes("x" * (MAX_CHARS * 2))

    main()
    tree = stored(collector_env, seen["trace"])
    objects, circular, big = tree["spans"][0]["spans"]
    assert (
        objects["input"]
        == '{"args": [{"x": 1, "y": 2}, "<Opaque thing>", [1, 2]], "kwargs": {"key": "<Hostile object>"}}'
    )
    assert objects["output"] == '{"x": 1, "y": 2}'
    assert circular["input"].startswith("{'args': ([[...]],)")
    assert len(big["input"]) < MAX_CHARS + 40 and big["input"].endswith(
        f"…[truncated {MAX_CHARS + 14} chars]"
    )


# -- context propagation and isolation ----------------------------------------------------------------------
def test_parent_follows_gather_to_thread_and_run_in_threadpool(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}

    @log(span_type="tool")
    def blocking(label: str) -> str:
        return label

    @log
    async def branch(label: str) -> str:
        await asyncio.sleep(0.005 if label == "a" else 0)
        await asyncio.to_thread(blocking, f"{label} in to_thread")
        await run_in_threadpool(blocking, f"{label} in threadpool")
        return label

    @log
    async def main() -> None:
        seen["trace"] = trace_id_here()
        await asyncio.gather(branch("a"), branch("b"))

    asyncio.run(main())
    tree = stored(collector_env, seen["trace"])
    main_span = tree["spans"][0]
    branches = {s["input"]: s for s in main_span["spans"]}
    assert set(branches) == {'{"label": "a"}', '{"label": "b"}'}
    for label in "ab":
        children = branches[f'{{"label": "{label}"}}']["spans"]
        assert [c["input"] for c in children] == [
            f'{{"label": "{label} in to_thread"}}',
            f'{{"label": "{label} in threadpool"}}',
        ]


def test_concurrent_outermost_calls_never_share_a_trace(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}
    lock = threading.Lock()

    @log(span_type="tool")
    async def leaf(tag: str, i: int) -> str:
        await asyncio.sleep(0.001 * (i % 3))
        return f"{tag}-{i}"

    @log
    async def job(tag: str) -> str:
        with lock:
            seen[tag] = trace_id_here()
        parts = await asyncio.gather(*(leaf(tag, i) for i in range(3)))
        return ",".join(parts)

    @log
    def threaded_job(tag: str) -> str:
        with lock:
            seen[tag] = trace_id_here()
        return asyncio.run(job(f"{tag}-inner"))

    async def many() -> None:
        await asyncio.gather(*(job(f"task{i}") for i in range(10)))

    threads = [threading.Thread(target=threaded_job, args=(f"thread{i}",)) for i in range(5)]
    for t in threads:
        t.start()
    asyncio.run(many())
    for t in threads:
        t.join()
    traces = {tag: seen[tag] for tag in seen if not tag.endswith("-inner")}
    assert len(set(traces.values())) == 15
    for i in range(5):
        assert seen[f"thread{i}-inner"] == seen[f"thread{i}"], "a call inside a trace joins it"
    for tag, trace_id in traces.items():
        tree = stored(collector_env, trace_id)
        if tag.startswith("task"):
            assert tree_lines(tree) == [
                "trace:job",
                "  workflow:job",
                "    tool:leaf",
                "    tool:leaf",
                "    tool:leaf",
            ]
            assert {s["output"] for s in tree["spans"][0]["spans"]} == {f"{tag}-{i}" for i in range(3)}
        else:
            assert tree_lines(tree)[:3] == [
                "trace:threaded_job",
                "  workflow:threaded_job",
                "    workflow:job",
            ]
            assert {s["output"] for s in tree["spans"][0]["spans"][0]["spans"]} == {
                f"{tag}-inner-{i}" for i in range(3)
            }


# -- galileo_context ---------------------------------------------------------------------------------------
def test_galileo_context_scopes_project_and_log_stream(collector_env: CollectorProcess) -> None:
    seen: dict[str, Any] = {}

    @log(span_type="tool")
    def where() -> str:
        seen.setdefault("traces", []).append(trace_id_here())
        return "here"

    with galileo_context(project="scoped", log_stream="block"):
        where()

    async def in_async_block() -> None:
        async with galileo_context(project="scoped", log_stream="async-block"):
            where()

    asyncio.run(in_async_block())
    where()
    first, second, third = (stored(collector_env, t) for t in seen["traces"])
    assert (first["project_name"], first["log_stream_name"]) == ("scoped", "block")
    assert (second["project_name"], second["log_stream_name"]) == ("scoped", "async-block")
    assert (third["project_name"], third["log_stream_name"]) == ("decorator", "tests")


def test_galileo_context_continues_an_upstream_trace(collector_env: CollectorProcess) -> None:
    trace_id, span_id = str(uuid.uuid4()), str(uuid.uuid4())

    @log(span_type="tool")
    def tool(x: int) -> int:
        return x + 1

    @log
    def work() -> int:
        return tool(1)

    collector_env.clear_requests()
    with galileo_context(project="upstream", log_stream="continued", trace_id=trace_id, span_id=span_id):
        assert work() == 2
        assert galileo_context.get_logger_instance().trace_id == trace_id
    assert galileo_context.flush(timeout=10) == 0
    galileo.shutdown(timeout=10)
    posts = [r["body"] for r in collector_env.requests() if r["method"] == "POST" and "/v2/" in r["path"]]
    assert posts and all("/spans" in r["path"] for r in collector_env.requests() if "/v2/" in r["path"])
    assert {b["trace_id"] for b in posts} == {trace_id}, "no trace record of its own, the upstream trace"
    roots = [s for b in posts if b["parent_id"] == span_id for s in b["spans"]]
    assert [s["name"] for s in roots] == ["work"]
    children = roots[0]["spans"] or [s for b in posts if b["parent_id"] == roots[0]["id"] for s in b["spans"]]
    assert [(c["name"], c["output"]) for c in children] == [("tool", "2")]


def test_a_bad_context_is_a_warning_and_a_new_trace(
    collector_env: CollectorProcess, caplog: pytest.LogCaptureFixture
) -> None:
    seen: dict[str, str] = {}

    @log
    def work() -> str:
        seen["trace"] = trace_id_here()
        return "fine"

    with caplog.at_level(logging.WARNING, logger="galileo"), galileo_context(trace_id="not-a-uuid"):
        assert work() == "fine"
    assert "trace_id" in caplog.text and "ignored" in caplog.text
    assert tree_lines(stored(collector_env, seen["trace"])) == ["trace:work", "  workflow:work"]


def test_get_logger_instance_one_per_pair_with_trees_per_context(collector_env: CollectorProcess) -> None:
    logger = galileo_context.get_logger_instance(project="shared", log_stream="pair")
    assert galileo_context.get_logger_instance(project="shared", log_stream="pair") is logger
    assert galileo_context.get_logger_instance(project="shared", log_stream="other") is not logger
    started: dict[str, str] = {}

    async def task(tag: str) -> None:
        logger.start_trace(input=tag, name=tag)
        started[tag] = logger.trace_id or ""
        await asyncio.sleep(0.01)
        logger.add_tool_span(input=tag, output=tag, name=f"tool-{tag}")
        await asyncio.sleep(0.01)
        logger.conclude(output=tag)
        logger.flush()  # on the loop's thread: hands over, never waits

    async def both() -> None:
        await asyncio.gather(task("a"), task("b"))

    asyncio.run(both())
    assert logger.trace_id is None, "this context never started a trace"
    for tag in "ab":
        tree = stored(collector_env, started[tag])
        assert tree_lines(tree) == [f"trace:{tag}", f"  tool:tool-{tag}"]
        assert tree["output"] == tag and tree["spans"][0]["input"] == tag


def test_logger_calls_inside_a_decorated_call_nest_under_it(collector_env: CollectorProcess) -> None:
    seen: dict[str, str] = {}

    @log(span_type="agent")
    def agent() -> str:
        logger = galileo_context.get_logger_instance()
        seen["trace"] = logger.trace_id or ""
        logger.add_llm_span(input="hi", output="hello", model="m", name="manual-llm")
        logger.add_workflow_span(input="manual", name="manual-wf")
        step()  # under the level the logger opened itself
        logger.conclude(output="manual done")
        step()
        logger.conclude()  # nothing of the logger's own open: the trace is the decorated call's, left alone
        step()
        return "ok"

    @log(span_type="tool")
    def step() -> str:
        return "step"

    agent()
    tree = stored(collector_env, seen["trace"])
    assert tree_lines(tree) == [
        "trace:agent",
        "  agent:agent",
        "    llm:manual-llm",
        "    workflow:manual-wf",
        "      tool:step",
        "    tool:step",
        "    tool:step",
    ]
    assert tree["is_complete"] and tree["spans"][0]["output"] == "ok"


# -- never breaks the user's code, never flushed by hand ----------------------------------------------
def test_a_dead_backend_never_breaks_decorated_calls(
    monkeypatch: pytest.MonkeyPatch, http_spy: HttpSpy
) -> None:
    monkeypatch.setenv("GALILEO_API_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("GALILEO_RETRY_WINDOW", "0")
    monkeypatch.setenv("GALILEO_MODE", "distributed")

    @log
    async def work(x: int) -> int:
        return x * 2

    assert asyncio.run(work(21)) == 42
    galileo_context.flush(timeout=5)
    assert http_spy.calls, "the sender did try"
    assert all(c.thread.startswith("galileo-sender-") for c in http_spy.calls), "never on the caller's thread"
    assert all(c.status is None for c in http_spy.calls)


def test_a_misconfiguration_runs_the_function_untraced(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_TIMEOUT", "-1")

    @log(span_type="tool")
    def work() -> str:
        return "still works"

    with caplog.at_level(logging.WARNING, logger="galileo"):
        assert work() == "still works"
        assert work() == "still works"
    assert caplog.text.count("running it untraced") == 1
    assert "GALILEO_TIMEOUT" in caplog.text


def _one_line_and_a_debug_traceback(caplog: pytest.LogCaptureFixture, expected: str) -> None:
    """Exactly one WARNING, ``expected``, with no traceback; the traceback in one DEBUG record; no secret."""
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert warnings[0].exc_info is None and warnings[0].exc_text is None, "no traceback at WARNING"
    assert warnings[0].getMessage() == expected
    tracebacks = [r for r in caplog.records if r.levelno == logging.DEBUG and r.exc_info]
    assert len(tracebacks) == 1
    assert isinstance(tracebacks[0].exc_info[1], galileo.ConfigurationError)  # type: ignore[index]
    assert "sk-do-not-print" not in caplog.text


_BAD_TIMEOUT = "GALILEO_TIMEOUT: must be a number > 0; got 'soon'"


def test_a_bad_setting_is_one_warning_line_from_log_and_the_traceback_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_TIMEOUT", "soon")
    monkeypatch.setenv("GALILEO_API_KEY", "sk-do-not-print")

    @log(span_type="tool")
    def double(x: int) -> int:
        return 2 * x

    @log
    async def answer(x: int) -> int:
        return double(x)

    with caplog.at_level(logging.DEBUG, logger="galileo"):
        assert [double(i) for i in range(3)] == [0, 2, 4]
        assert asyncio.run(answer(21)) == 42
    _one_line_and_a_debug_traceback(
        caplog, f"galileo: @log could not trace a call ({_BAD_TIMEOUT}); running it untraced"
    )


def test_a_bad_setting_is_one_warning_line_from_galileo_context_and_the_traceback_at_debug(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("GALILEO_TIMEOUT", "soon")
    monkeypatch.setenv("GALILEO_API_KEY", "sk-do-not-print")
    with caplog.at_level(logging.DEBUG, logger="galileo"):
        for _ in range(3):
            with galileo_context(project="elsewhere") as block:
                assert block.logger is None
    _one_line_and_a_debug_traceback(
        caplog, f"galileo: galileo_context(...) ignored: cannot set it up ({_BAD_TIMEOUT})"
    )


@pytest.mark.parametrize("mode", ["batch", "distributed"])
def test_delivered_without_a_flush_when_the_process_exits(collector_env: CollectorProcess, mode: str) -> None:
    script = textwrap.dedent(
        """
        import asyncio
        from galileo import log

        @log(span_type="tool")
        def double(x):
            return 2 * x

        @log
        async def main(x):
            return double(x)

        print(asyncio.run(main(21)))
        """
    )
    env = dict(os.environ, GALILEO_MODE=mode, GALILEO_LOG_STREAM=f"exit-{mode}-{uuid.uuid4()}")
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout.strip(), out.stderr) == (0, "42", "")
    traces = [t for t in collector_env.traces(limit=50) if t["log_stream_name"] == env["GALILEO_LOG_STREAM"]]
    assert len(traces) == 1
    tree = collector_env.trace(traces[0]["id"])
    assert tree is not None and tree["is_complete"] is True
    assert tree_lines(tree) == ["trace:main", "  workflow:main", "    tool:double"]
    assert tree["output"] == "42"
