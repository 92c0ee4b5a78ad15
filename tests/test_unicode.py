"""Only valid Unicode leaves the SDK: lone surrogates in any text become U+FFFD, one each.

A Python ``str`` can hold code points U+D800..U+DFFF that are not characters (``os.fsdecode`` of a file name
that is not UTF-8 gives ``"file \\udcff"``). They are not valid Unicode, so no UTF-8 encoder and no JSON
parser on a server accepts them. These tests send such text through the real SDK (a batch logger, a
distributed logger, ``@log``) to the real collector and check what a user would see stored: every trace,
with each surrogate replaced by U+FFFD and nothing else changed, and a good trace that shared the request
with a poisoned one stored as well. ``st.text()`` alone never draws surrogates: the strategies here include
the ``Cs`` category and put at least one surrogate in every value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from collector_process import CollectorProcess
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sdk_helpers import sent_shape, strip_store_keys, tree_lines

import galileo
from galileo import ConfigurationError, GalileoConfig, GalileoLogger, galileo_context, log
from galileo._unicode import utf8_json

_SURROGATE = re.compile("[\ud800-\udfff]")
#: Any code point a str can hold, surrogates included (the default excludes the Cs category).
_ANY_CHAR = st.characters(exclude_categories=())
any_text = st.text(_ANY_CHAR, max_size=12)
#: Text holding at least one lone surrogate, anywhere.
poisoned = st.builds(
    lambda head, surrogate, tail: head + surrogate + tail,
    any_text,
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    any_text,
)
_ROUND_TRIPS = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def fixed(value: Any) -> Any:
    """``value`` with every surrogate in its strings (keys too) replaced by U+FFFD: what must be stored."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {fixed(k): fixed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [fixed(v) for v in value]
    return value


@pytest.fixture(autouse=True)
def _env(collector_env: CollectorProcess, fresh_sdk: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Short enough that a body the collector refuses is given up within the test's wait (the old behaviour
    # fails fast instead of retrying for two minutes); long enough for the local collector's answers.
    monkeypatch.setenv("GALILEO_RETRY_WINDOW", "3")
    galileo_context.reset()
    yield
    galileo_context.reset()


def delivered(collector: CollectorProcess, trace_id: str) -> dict[str, Any]:
    stored = collector.wait_for(lambda: collector.trace(trace_id))
    assert stored is not None
    return stored


def no_drops() -> None:
    stats = galileo.stats()
    assert stats["dropped"] == 0 and stats["updates_dropped"] == 0, stats


# -- the encoder -------------------------------------------------------------------------------------------
_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text | poisoned
_bodies = st.recursive(
    _leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text | poisoned, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(body=_bodies)
def test_encoded_bodies_are_utf8_json_of_the_text_with_surrogates_replaced(body: Any) -> None:
    data = utf8_json(body)
    assert json.loads(data.decode("utf-8")) == fixed(body)  # strict UTF-8: raises on an encoded surrogate
    if fixed(body) == body:  # no surrogate: exactly what json.dumps gives, in UTF-8
        assert data == json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def test_one_replacement_character_per_surrogate_code_point() -> None:
    assert json.loads(utf8_json({"k\udcff": ["file \udcff", "\ud83d\ude00", "\udc80\udc81 é €"]})) == {
        "k\ufffd": ["file \ufffd", "\ufffd\ufffd", "\ufffd\ufffd é €"]
    }


# -- what a user would see stored ----------------------------------------------------------------------------
def log_poisoned_trace(logger: GalileoLogger, t: list[str]) -> galileo.schema.Trace:
    """A trace with text from ``t`` in every field a user can fill: inputs and outputs of every shape,
    messages, tool calls, documents and their metadata, redacted copies, names, tags, metadata, model."""
    trace = logger.start_trace(
        input=t[0], name=t[1], tags=[t[2], "plain"], metadata={"k-" + t[3]: t[4]}, external_id=t[5]
    )
    logger.add_workflow_span(input={"path": t[6]}, name=t[7], metadata={"k": t[8]}, tags=[t[9]])
    logger.add_llm_span(
        input=[
            {"role": "system", "content": t[10]},
            {"role": "user", "content": [{"type": "text", "text": t[11]}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": t[12], "function": {"name": t[13], "arguments": {"path": t[14]}}}],
            },
            {"role": "tool", "content": t[15], "tool_call_id": t[12]},
        ],
        output={"role": "assistant", "content": t[16]},
        model=t[17],
        tools=[{"type": "function", "function": {"name": t[13], "description": t[18]}}],
        finish_reason=t[19],
        name=t[20],
    )
    logger.add_retriever_span(
        input=t[21], output=[t[22], {"content": t[23], "metadata": {"m-" + t[24]: t[25], "page": 2}}]
    )
    logger.add_tool_span(input=t[26], output=t[27], tool_call_id=t[12], redacted_input=t[28])
    logger.conclude(output=t[29])
    logger.conclude(output=t[30])
    return trace


def check_stored(stored: dict[str, Any], trace: galileo.schema.Trace, t: list[str]) -> None:
    """What the collector stored is what was built, with each surrogate replaced by U+FFFD."""
    f = fixed(t)
    assert stored["input"] == f[0] and stored["name"] == f[1] and stored["output"] == f[30]
    assert stored["tags"] == [f[2], "plain"] and stored["user_metadata"] == {"k-" + f[3]: f[4]}
    workflow = stored["spans"][0]
    assert workflow["input"] == json.dumps({"path": f[6]}, ensure_ascii=False)
    llm, retriever, tool = workflow["spans"]
    assert llm["input"][2]["tool_calls"][0]["function"]["arguments"] == json.dumps(
        {"path": f[14]}, ensure_ascii=False
    )
    assert llm["output"]["content"] == f[16] and llm["model"] == f[17]
    assert retriever["output"][1] == {"content": f[23], "metadata": {"m-" + f[24]: f[25], "page": 2}}
    assert tool["redacted_input"] == f[28]
    assert strip_store_keys(stored) == fixed(sent_shape(trace.to_wire())), "every other field, exactly"


@_ROUND_TRIPS
@given(t=st.lists(poisoned, min_size=31, max_size=31), redacted=poisoned)
def test_batch_stores_every_trace_and_the_good_one_sharing_its_post(
    collector_env: CollectorProcess, t: list[str], redacted: str
) -> None:
    logger = GalileoLogger(project="unicode", log_stream="batch", redact=lambda field, value: redacted)
    poisoned_trace = log_poisoned_trace(logger, t)
    good = logger.start_trace(input="fine", name="good")
    logger.conclude(output="still fine")
    collector_env.clear_requests()

    flushed = logger.flush(timeout=10)

    no_drops()
    assert flushed.pending == 0
    posts = [r for r in collector_env.requests() if r["path"].endswith("/traces")]
    assert len(posts) == 1 and len(posts[0]["body"]["traces"]) == 2, "both traces went in one POST"
    stored = delivered(collector_env, poisoned_trace.id)
    check_stored(stored, poisoned_trace, t)
    assert stored["redacted_input"] == fixed(redacted)
    good_stored = delivered(collector_env, good.id)
    assert (good_stored["input"], good_stored["output"]) == ("fine", "still fine")


@_ROUND_TRIPS
@given(t=st.lists(poisoned, min_size=31, max_size=31))
def test_distributed_stores_every_record_as_it_happens(collector_env: CollectorProcess, t: list[str]) -> None:
    logger = GalileoLogger(project="unicode", log_stream="distributed", mode="distributed")
    good = GalileoLogger(project="unicode", log_stream="distributed", mode="distributed")
    good_trace = good.start_trace(input="fine", name="good")
    poisoned_trace = log_poisoned_trace(logger, t)
    good.add_tool_span(input="x", output="y", name="tool")
    good.conclude(output="still fine")

    assert logger.flush(timeout=10).pending == 0 and good.flush(timeout=10).pending == 0
    no_drops()

    stored = delivered(collector_env, poisoned_trace.id)
    assert stored["is_complete"]
    check_stored(stored, poisoned_trace, t)
    good_stored = delivered(collector_env, good_trace.id)
    assert good_stored["is_complete"] and tree_lines(good_stored) == ["trace:good", "  tool:tool"]


@_ROUND_TRIPS
@given(path=poisoned, content=poisoned, tag=poisoned)
def test_decorated_calls_store_their_arguments_and_results(
    collector_env: CollectorProcess, path: str, content: str, tag: str
) -> None:
    seen: dict[str, str] = {}

    @log(span_type="tool", name="read " + tag)
    def read(path: str) -> str:
        return content

    @log
    def handle(path: str) -> dict[str, str]:
        seen["trace"] = galileo_context.get_logger_instance().trace_id or ""
        return {"path": path, "text": read(path)}

    assert handle(path) == {"path": path, "text": content}, "the user's values are theirs, untouched"
    assert galileo_context.flush(timeout=10) == 0
    no_drops()

    stored = delivered(collector_env, seen["trace"])
    f_path, f_content = fixed(path), fixed(content)
    arguments = json.dumps({"path": f_path}, ensure_ascii=False)
    result = json.dumps({"path": f_path, "text": f_content}, ensure_ascii=False)
    assert (stored["input"], stored["output"]) == (arguments, result)
    (workflow,) = stored["spans"]
    (tool,) = workflow["spans"]
    assert (workflow["input"], workflow["output"]) == (arguments, result)
    assert (tool["name"], tool["input"], tool["output"]) == (fixed("read " + tag), arguments, f_content)


# -- where records go: configuration, not user data ---------------------------------------------------------
@pytest.mark.parametrize(
    ("argument", "variable"),
    [
        ("project", "GALILEO_PROJECT"),
        ("log_stream", "GALILEO_LOG_STREAM"),
        ("api_key", "GALILEO_API_KEY"),
        ("api_url", "GALILEO_API_URL"),
    ],
)
def test_a_setting_that_is_not_valid_unicode_is_a_clear_configuration_error(
    monkeypatch: pytest.MonkeyPatch, argument: str, variable: str
) -> None:
    value = "http://files-\udcff.example" if argument == "api_url" else "files-\udcff"
    with pytest.raises(ConfigurationError, match=f"{variable}: .*not valid Unicode") as raised:
        GalileoConfig.resolve(**{argument: value})
    assert raised.value.variable == variable
    if argument == "api_key":
        assert raised.value.value is None and "files" not in str(raised.value), "a secret is never echoed"

    monkeypatch.setenv(variable, value)  # the same from the environment (os.environ holds surrogates so)
    with pytest.raises(ConfigurationError, match=f"{variable}: .*not valid Unicode"):
        GalileoLogger()


def test_extra_headers_that_are_not_valid_unicode_are_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"GALILEO_EXTRA_HEADERS: .*not valid Unicode") as raised:
        GalileoConfig.resolve(extra_headers={"X-Team": "files-\udcff"})
    assert "files" not in str(raised.value), "header values may be secrets: never echoed"


def test_names_of_a_config_built_around_resolve_are_repaired(collector_env: CollectorProcess) -> None:
    """``attrs.evolve`` skips :meth:`GalileoConfig.resolve`'s checks: the names are then treated as data."""
    config = attrs.evolve(GalileoConfig.resolve(), project="files-\udcff", log_stream="stream \ud800")
    logger = GalileoLogger(config=config)
    trace = logger.start_trace(input="q", name="named")
    logger.conclude(output="a")
    assert logger.flush(timeout=10).pending == 0
    no_drops()
    stored = delivered(collector_env, trace.id)
    assert (stored["project_name"], stored["log_stream_name"]) == ("files-\ufffd", "stream \ufffd")
