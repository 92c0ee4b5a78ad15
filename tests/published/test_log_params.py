"""``@log(name=, span_type=, params=, dataset_record=)`` as the published SDK's docs and decorator show
it, run on ours against the collector: span fields filled from arguments, the ``params`` mapping, output
shapes."""

from __future__ import annotations

import enum
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from collector_process import CollectorProcess
from pydantic import BaseModel, Field
from sdk_helpers import tree_lines

from galileo import galileo_context, log


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    project = f"published-log-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("GALILEO_PROJECT", project)
    monkeypatch.setenv("GALILEO_LOG_STREAM", "params")
    galileo_context.reset()
    yield project
    galileo_context.reset()


def stored_traces(collector: CollectorProcess, project: str, count: int) -> list[dict[str, Any]]:
    """The project's stored trees, oldest first, once ``count`` are there."""
    assert galileo_context.flush(timeout=10) == 0

    def listed() -> list[dict[str, Any]]:
        mine = [t for t in collector.traces(limit=500) if t.get("project_name") == project]
        return mine if len(mine) >= count else []

    found = collector.wait_for(listed)
    trees = [collector.trace(t["id"]) for t in reversed(found)]
    assert all(tree is not None for tree in trees)
    return [tree for tree in trees if tree is not None]


def only_trace(collector: CollectorProcess, project: str) -> dict[str, Any]:
    (tree,) = stored_traces(collector, project, 1)
    return tree


# -- span fields from arguments of the same name -------------------------------------------------------------
def test_llm_span_fields_come_from_arguments_of_the_same_name_defaults_included(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="llm", name="GPT-4 Call")
    def call_llm(prompt: str, model: str = "gpt-4o", temperature: float = 0.7, **kwargs: Any) -> str:
        return f"echo: {prompt}"

    @log(span_type="llm")
    def chat(
        prompt: str,
        model: str,
        tools: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        tags: list[str] | None = None,
    ) -> str:
        return "ok"

    @log
    def answer(question: str) -> str:
        call_llm(question)
        chat(
            question,
            "small-model",
            tools=[{"type": "function", "function": {"name": "f"}}],
            metadata={"user": "u1"},
            tags=["t1"],
        )
        return "done"

    answer("hi")
    tree = only_trace(collector_env, _env)
    assert tree_lines(tree) == ["trace:answer", "  workflow:answer", "    llm:GPT-4 Call", "    llm:chat"]
    first, second = tree["spans"][0]["spans"]
    assert (first["model"], first["temperature"]) == ("gpt-4o", 0.7)
    assert first["output"]["content"] == "echo: hi"
    assert (second["model"], second["user_metadata"], second["tags"]) == (
        "small-model",
        {"user": "u1"},
        ["t1"],
    )
    assert second["tools"] == [{"type": "function", "function": {"name": "f"}}]
    assert second["temperature"] is None


def test_tool_and_agent_spans_take_tool_call_id_and_agent_type(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="tool")
    def tool_call(input: str = "tool call input", tool_call_id: str = "call-1") -> str:
        return "tool call output"

    @log(span_type="agent")
    def plan(goal: str, agent_type: str = "planner", tags: list[str] | None = None) -> str:
        return tool_call(input=goal)

    plan("ship it", tags=["agents"])
    tree = only_trace(collector_env, _env)
    agent = tree["spans"][0]
    tool = agent["spans"][0]
    assert (agent["type"], agent["agent_type"], agent["tags"]) == ("agent", "planner", ["agents"])
    assert (tool["type"], tool["tool_call_id"], tool["output"]) == ("tool", "call-1", "tool call output")
    assert json.loads(tool["input"]) == {"input": "ship it"}


def test_an_enum_agent_type_and_an_empty_tools_default_are_kept(
    collector_env: CollectorProcess, _env: str, caplog: pytest.LogCaptureFixture
) -> None:
    class AgentType(str, enum.Enum):
        planner = "planner"

    @log(span_type="llm")
    def chat(prompt: str, model: str = "gpt-4o", tools: list[dict[str, Any]] = []) -> str:  # noqa: B006
        return "ok"

    @log(span_type="agent")
    def plan(goal: str, agent_type: AgentType = AgentType.planner) -> str:
        return chat(goal)

    with caplog.at_level(logging.WARNING, logger="galileo"):
        plan("ship it")
    tree = only_trace(collector_env, _env)
    agent = tree["spans"][0]
    assert (agent["agent_type"], agent["spans"][0]["tools"]) == ("planner", [])
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_params_redacted_output_reaches_workflow_and_agent_spans(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="agent", params={"redacted_output": "[agent answer]"})
    def agent(question: str) -> str:
        return "agent secret"

    @log(params={"redacted_output": "[workflow answer]"})
    def workflow(question: str) -> str:
        return agent(question)

    workflow("q")
    tree = only_trace(collector_env, _env)
    outer = tree["spans"][0]
    inner = outer["spans"][0]
    assert (outer["output"], outer["redacted_output"]) == ("agent secret", "[workflow answer]")
    assert (inner["output"], inner["redacted_output"]) == ("agent secret", "[agent answer]")


def test_an_argument_called_name_names_the_span_unless_log_names_it(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="tool")
    def greet(name: str) -> str:
        return f"hello {name}"

    @log(span_type="tool", name="Greeter")
    def greet_named(name: str) -> str:
        return f"hello {name}"

    @log
    def flow() -> None:
        greet("Ada")
        greet_named("Bob")

    flow()
    tree = only_trace(collector_env, _env)
    assert tree_lines(tree) == ["trace:flow", "  workflow:flow", "    tool:Ada", "    tool:Greeter"]


# -- params --------------------------------------------------------------------------------------------------
def test_params_maps_span_fields_to_arguments_values_and_functions(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(
        span_type="llm",
        params={
            "model": "engine",  # an argument's name: its value
            "temperature": lambda args: args["heat"] / 10,  # a function of every argument, defaults included
            "metadata": lambda args: {"user": args["user"]},
            "tags": "not-an-argument",  # a string naming no argument: itself
            "num_input_tokens": "n_in",
        },
    )
    def complete(prompt: str, engine: str, user: str, heat: int = 5, n_in: int = 12) -> str:
        return "completion"

    complete("p", "big-model", user="u7")
    llm = only_trace(collector_env, _env)["spans"][0]
    assert (llm["model"], llm["temperature"], llm["user_metadata"]) == ("big-model", 0.5, {"user": "u7"})
    assert llm["tags"] == ["not-an-argument"]
    assert llm["metrics"]["num_input_tokens"] == 12


def test_params_win_over_arguments_of_the_same_name_and_can_set_the_output(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="llm", params={"model": "deployment", "output": "canned"})
    def complete(
        prompt: str, model: str = "ignored", deployment: str = "prod-gpt", canned: str = "fixed"
    ) -> str:
        return "returned"

    @log(params={"status_code": "code", "name": "title"})
    def step(title: str, code: int) -> str:
        return complete("p")

    step("Named by params", 207)
    tree = only_trace(collector_env, _env)
    workflow = tree["spans"][0]
    llm = workflow["spans"][0]
    assert (workflow["name"], workflow["status_code"]) == ("Named by params", 207)
    assert (llm["model"], llm["output"]["content"]) == ("prod-gpt", "fixed")


def test_a_value_of_the_wrong_type_is_left_out_with_a_warning(
    collector_env: CollectorProcess, _env: str, caplog: pytest.LogCaptureFixture
) -> None:
    @log(span_type="llm")
    def call(prompt: str, temperature: Any = "hot", agent_type: str = "x") -> str:
        return "still runs"

    with caplog.at_level(logging.WARNING, logger="galileo"):
        assert call("p") == "still runs"
    llm = only_trace(collector_env, _env)["spans"][0]
    assert llm["temperature"] is None
    assert [r.getMessage() for r in caplog.records if "temperature" in r.getMessage()]


# -- output shapes -------------------------------------------------------------------------------------------
class Doc(BaseModel):
    """Shaped like galileo_core's Document (which is a pydantic model with these fields)."""

    content: str = Field(validation_alias="page_content")
    metadata: dict[str, Any] = Field(default_factory=dict)


def test_an_llm_span_returning_a_list_logs_the_whole_list_as_json(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="llm")
    def several(prompt: str) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": "one"}, {"role": "assistant", "content": "two"}]

    several("p")
    llm = only_trace(collector_env, _env)["spans"][0]
    assert llm["output"]["role"] == "assistant"
    assert json.loads(llm["output"]["content"]) == [
        {"role": "assistant", "content": "one"},
        {"role": "assistant", "content": "two"},
    ]


def test_retriever_documents_from_document_objects_and_document_shaped_values(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="retriever")
    def retrieve_documents(query: str) -> list[Any]:
        return [
            Doc(page_content="from a Document", metadata={"source": "kb", "score": 0.5}),
            {"content": "from a dict", "metadata": {"page": 2}},
            "plain text",
        ]

    @log(span_type="retriever")
    def retrieve_one(query: str) -> Doc:
        return Doc(page_content="alone")

    @log
    def rag(query: str) -> None:
        retrieve_documents(query=query)
        retrieve_one(query)

    rag("history")
    many, one = only_trace(collector_env, _env)["spans"][0]["spans"]
    assert many["output"] == [
        {"content": "from a Document", "metadata": {"source": "kb", "score": 0.5}},
        {"content": "from a dict", "metadata": {"page": 2}},
        {"content": "plain text", "metadata": {}},
    ]
    assert one["output"] == [{"content": "alone", "metadata": {}}]


class Query(BaseModel):
    text: str
    k: int = 3
    filters: dict[str, str] | None = None


def test_pydantic_arguments_are_logged_without_unset_defaults(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="tool")
    def search(query: Query, limit: int = 10) -> Query:
        return Query(text=query.text.upper(), k=5)

    search(Query(text="cats"))
    tool = only_trace(collector_env, _env)["spans"][0]
    assert json.loads(tool["input"]) == {"query": {"text": "cats"}}
    assert json.loads(tool["output"]) == {"text": "CATS", "k": 5}


def test_a_trace_takes_an_llm_message_child_output_as_that_message_json(
    collector_env: CollectorProcess, _env: str
) -> None:
    @log(span_type="llm")
    def call_llm(prompt: str) -> dict[str, str]:
        return {"role": "assistant", "content": "The answer"}

    call_llm("q")
    tree = only_trace(collector_env, _env)
    assert tree["spans"][0]["output"] == {
        "content": "The answer",
        "role": "assistant",
        "tool_call_id": None,
        "tool_calls": None,
    }
    assert json.loads(tree["output"]) == {"content": "The answer", "role": "assistant"}


# -- dataset_record ------------------------------------------------------------------------------------------
class Record(BaseModel):
    input: str
    output: str | None = None
    metadata: dict[str, str] | None = None


def test_dataset_record_gives_the_trace_its_dataset_fields(
    collector_env: CollectorProcess, _env: str
) -> None:
    record = Record(input="What is 2+2?", output="4", metadata={"split": "test"})

    @log(dataset_record=record)
    def solve(question: str) -> str:
        return "4"

    solve("What is 2+2?")
    tree = only_trace(collector_env, _env)
    assert (tree["dataset_input"], tree["dataset_output"]) == ("What is 2+2?", "4")
    assert tree["dataset_metadata"] == {"split": "test"}
