"""The outboxes' state machines (galileo._sender._trace, ._outbox, ._plan): every rule of their docstrings.

Pure unit tests: no network, no threads, no clock. Each test drives a :class:`TraceOutbox` or
:class:`BatchOutbox` through its own interface (add / conclude / complete / take / take_trace / settle /
abandon / idle / pending / has_ready / not_before) with real records, passes ``now`` itself and plays the
server by settling each request with a :class:`Result`. What a request carries is read from its body
(:meth:`Request.body`), as the server would see it. The last test replays random histories (random trees,
conclude orders, outcomes, shared POSTs, time and shutdowns) and checks the invariants after every step.
"""

from __future__ import annotations

import collections
import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schema_validation import validate

from galileo import schema
from galileo._sender._outbox import (
    AUTH_PAUSE,
    BACKOFF_BASE,
    BACKOFF_MAX,
    MAX_RECORDS_PER_REQUEST,
    BatchOutbox,
    Outbox,
    Request,
    Tally,
)
from galileo._sender._plan import MAX_TRACES_PER_REQUEST, plan
from galileo._sender._trace import TraceOutbox
from galileo._sessions import SessionRef
from galileo._transport import Client, Outcome, Result, Target

CLIENT = Client("http://127.0.0.1:9", "x" * 20)  # never used: an outbox only compares it
TARGET = Target("outbox-tests", None, "stream", None)
WINDOW = 60.0

OK = Result(Outcome.OK, 200)
UNAVAILABLE = Result(Outcome.RETRY, 503, detail="HTTP 503")
NO_ANSWER = Result(Outcome.RETRY, None, detail="connection refused")
PARENT_MISSING = Result(Outcome.PARENT_MISSING, 404, detail="HTTP 404: parent not found")
AUTH = Result(Outcome.AUTH, 401, detail="HTTP 401")
SCHEMA_REJECTED = Result(Outcome.REJECTED, 422, detail="HTTP 422: bad field")
TOO_LARGE = Result(Outcome.REJECTED, 413, detail="HTTP 413: 9000000 bytes was too large")
BAD_REQUEST = Result(Outcome.REJECTED, 400, detail="HTTP 400")
TIMEOUT = Result(Outcome.RETRY, 408)
TOO_MANY = Result(Outcome.RETRY, 429)
TRANSIENT = [UNAVAILABLE, NO_ANSWER, TIMEOUT, TOO_MANY, PARENT_MISSING, AUTH]


# -- helpers ---------------------------------------------------------------------------------------------
def _trace_outbox(
    *,
    window: float = WINDOW,
    session: SessionRef | None = None,
    client: Client = CLIENT,
    target: Target = TARGET,
) -> tuple[TraceOutbox, schema.Trace]:
    """An owned outbox holding a new trace record, as a logger's start_trace leaves it."""
    trace = schema.Trace(name="trace", input="question")
    outbox = TraceOutbox(client, target, window, trace.id, owned=True)
    outbox.session = session
    assert outbox.add(trace, None) is None
    return outbox, trace


def _add(
    outbox: TraceOutbox, parent: schema.Record | str, name: str, kind: type[schema.Span] = schema.ToolSpan
) -> Any:
    """A span ``name`` under ``parent`` (a record, or the id of one another service sent), handed over."""
    span = kind(name=name)
    if isinstance(parent, schema.ParentRecord):
        parent.spans.append(span)
    parent_id = parent if isinstance(parent, str) else parent.id
    assert outbox.add(span, parent_id) is None
    return span


def _shape(wire: dict[str, Any]) -> Any:
    """A wire record as its name, or (name, [children...]) when records travel nested in it."""
    children = wire.get("spans") or []
    return (wire["name"], [_shape(c) for c in children]) if children else wire["name"]


def _sent(request: Request) -> tuple[str, str, Any]:
    """(method, path, what the body carries): the trees of a POST (a span POST's with its parent id)."""
    method, path, body = request.body()
    if path == "/traces":
        return method, path, [_shape(t) for t in body["traces"]]
    if path == "/spans":
        return method, path, (body["parent_id"], [_shape(s) for s in body["spans"]])
    return method, path, body


def _take(outbox: TraceOutbox, others_busy: bool = False) -> Request:
    assert outbox.has_ready(others_busy)
    request = outbox.take(others_busy)
    assert request is not None
    return request


def _nothing_ready(outbox: TraceOutbox, others_busy: bool = False) -> None:
    assert not outbox.has_ready(others_busy)
    assert outbox.take(others_busy) is None


def _fails_until_given_up(outbox: Outbox, result: Result, start: float) -> tuple[list[float], float, Tally]:
    """Fail every attempt with ``result``, each at its ``not_before``: the delays, the last attempt's time
    and the give-up's tally."""
    now, delays = start, list[float]()
    for _ in range(1000):
        request = outbox.take()
        assert request is not None
        tally = outbox.settle(request, result, now)
        if not tally.retried:
            return delays, now, tally
        assert outbox.not_before > now
        delays.append(outbox.not_before - now)
        now = outbox.not_before
    raise AssertionError("never given up")


# -- Request.body(): what each kind of request sends ------------------------------------------------------
def test_a_trace_post_carries_its_records_nested_and_validates() -> None:
    session = SessionRef("5b4a2f43-7c52-4e8b-9d6b-27a6a5e1c0de", {"external_id": "conversation-7"})
    outbox, trace = _trace_outbox(session=session)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    _add(outbox, workflow, "llm", schema.LlmSpan)
    _add(outbox, trace, "tool")
    request = _take(outbox)
    assert request.kind == "traces" and request.records == 4
    method, path, body = request.body()
    assert (method, path) == ("POST", "/traces")
    validate("LogTracesIngestRequest", body)
    assert [_shape(t) for t in body["traces"]] == [("trace", [("workflow", ["llm"]), "tool"])]
    assert body["is_complete"] is False
    assert (body["session_id"], body["session_external_id"]) == (session.id, "conversation-7")
    assert body["traces"][0]["id"] == trace.id


def test_a_span_post_names_trace_and_parent_and_no_session() -> None:
    session = SessionRef("5b4a2f43-7c52-4e8b-9d6b-27a6a5e1c0de")
    outbox, trace = _trace_outbox(session=session)
    outbox.settle(_take(outbox), OK, 0.0)
    agent = _add(outbox, trace, "agent", schema.AgentSpan)
    _add(outbox, agent, "retriever", schema.RetrieverSpan)
    request = _take(outbox)
    method, path, body = request.body()
    assert (method, path) == ("POST", "/spans")
    validate("LogSpansIngestRequest", body)
    assert (body["trace_id"], body["parent_id"]) == (trace.id, trace.id)
    assert [_shape(s) for s in body["spans"]] == [("agent", ["retriever"])]
    assert "session_id" not in body


def test_update_bodies_patch_the_record_they_name() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    workflow.output, workflow.status_code = "done", 200
    outbox.conclude(workflow.id)
    patch = _take(outbox)
    method, path, body = patch.body()
    assert (patch.kind, method, path) == ("span_update", "PATCH", f"/spans/{workflow.id}")
    validate("LogSpanUpdateRequest", body)
    assert (body["span_id"], body["output"], body["status_code"]) == (workflow.id, "done", 200)
    outbox.settle(patch, OK, 0.0)
    trace.output = "answer"
    outbox.complete(trace)
    completion = _take(outbox)
    method, path, body = completion.body()
    assert (completion.kind, method, path) == ("trace_update", "PATCH", f"/traces/{trace.id}")
    validate("LogTraceUpdateRequest", body)
    assert (body["trace_id"], body["output"], body["is_complete"]) == (trace.id, "answer", True)


def test_a_body_holds_what_was_planned_not_what_came_later() -> None:
    outbox, trace = _trace_outbox()
    _add(outbox, trace, "early")
    request = _take(outbox)
    _add(outbox, trace, "late")  # while the POST is on its way to an I/O thread
    assert _sent(request) == ("POST", "/traces", [("trace", ["early"])])


def test_a_batch_posts_its_traces_whole_and_complete() -> None:
    traces = [schema.Trace(name=f"t{i}", input="q") for i in range(2)]
    traces[0].spans.append(schema.LlmSpan(name="llm"))
    session = SessionRef("5b4a2f43-7c52-4e8b-9d6b-27a6a5e1c0de")
    outbox = BatchOutbox(CLIENT, TARGET, WINDOW, traces, 3, session)
    assert outbox.has_ready() and outbox.pending() == 3 and not outbox.idle()
    request = outbox.take()
    assert request is not None and request.kind == "batch" and outbox.take() is None
    method, path, body = request.body()
    assert (method, path) == ("POST", "/traces")
    validate("LogTracesIngestRequest", body)
    assert [_shape(t) for t in body["traces"]] == [("t0", ["llm"]), "t1"]
    assert body["is_complete"] is True and body["session_id"] == session.id
    assert outbox.pending() == 3 and not outbox.has_ready()  # in flight
    tally = outbox.settle(request, OK, 0.0)
    assert tally.sent == 3 and not tally.dropped
    assert outbox.idle() and outbox.pending() == 0 and outbox.take() is None


# -- rule 1: parents first ------------------------------------------------------------------------------
def test_a_span_waits_for_its_parents_acknowledgement() -> None:
    outbox, trace = _trace_outbox()
    trace_post = _take(outbox)
    _add(outbox, trace, "child")  # its parent's POST is under way, without it
    _nothing_ready(outbox)
    outbox.settle(trace_post, UNAVAILABLE, 0.0)
    assert _sent(_take(outbox)) == ("POST", "/traces", [("trace", ["child"])])  # nested in the retry


def test_a_span_goes_once_its_parent_is_acknowledged() -> None:
    outbox, trace = _trace_outbox()
    trace_post = _take(outbox)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    _nothing_ready(outbox)
    outbox.settle(trace_post, OK, 0.0)
    workflow_post = _take(outbox)
    assert _sent(workflow_post) == ("POST", "/spans", (trace.id, ["workflow"]))
    _add(outbox, workflow, "grandchild")
    _nothing_ready(outbox)
    outbox.settle(workflow_post, OK, 0.0)
    assert _sent(_take(outbox)) == ("POST", "/spans", (workflow.id, ["grandchild"]))


def test_a_parent_this_outbox_never_saw_counts_as_acknowledged() -> None:
    trace_id, upstream_span = schema.new_id(), schema.new_id()
    outbox = TraceOutbox(CLIENT, TARGET, WINDOW, trace_id, owned=False)  # continues another service's trace
    workflow = _add(outbox, upstream_span, "downstream", schema.WorkflowSpan)
    _add(outbox, workflow, "llm", schema.LlmSpan)
    request = _take(outbox)
    _, _, body = request.body()
    assert (body["trace_id"], body["parent_id"]) == (trace_id, upstream_span)
    assert [_shape(s) for s in body["spans"]] == [("downstream", ["llm"])]


# -- rule 2: coalescing ---------------------------------------------------------------------------------
def test_a_record_not_sent_travels_in_its_nearest_ancestor_not_sent() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    outer = _add(outbox, trace, "outer", schema.WorkflowSpan)
    inner = _add(outbox, outer, "inner", schema.AgentSpan)
    _add(outbox, inner, "llm", schema.LlmSpan)
    _add(outbox, outer, "tool")
    request = _take(outbox)
    assert _sent(request) == ("POST", "/spans", (trace.id, [("outer", [("inner", ["llm"]), "tool"])]))
    _nothing_ready(outbox)


def test_ready_siblings_share_one_span_post() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    _add(outbox, trace, "a")
    workflow = _add(outbox, trace, "b", schema.WorkflowSpan)
    _add(outbox, workflow, "b1")
    _add(outbox, trace, "c")
    assert _sent(_take(outbox)) == ("POST", "/spans", (trace.id, ["a", ("b", ["b1"]), "c"]))
    _nothing_ready(outbox)


def test_spans_under_different_parents_go_in_posts_of_their_own() -> None:
    outbox, trace = _trace_outbox()
    left = _add(outbox, trace, "left", schema.WorkflowSpan)
    right = _add(outbox, trace, "right", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    _add(outbox, left, "l1")
    _add(outbox, right, "r1")
    _add(outbox, left, "l2")
    first, second = _take(outbox), _take(outbox)
    assert _sent(first) == ("POST", "/spans", (left.id, ["l1", "l2"]))
    assert _sent(second) == ("POST", "/spans", (right.id, ["r1"]))


def test_a_body_holds_at_most_the_record_limit() -> None:
    outbox, trace = _trace_outbox()
    for i in range(MAX_RECORDS_PER_REQUEST + 100):
        _add(outbox, trace, f"s{i}")
    first = _take(outbox)
    assert first.records == MAX_RECORDS_PER_REQUEST
    assert len(_sent(first)[2][0][1]) == MAX_RECORDS_PER_REQUEST - 1  # the trace and its first spans
    _nothing_ready(outbox)  # the rest wait for the trace's acknowledgement
    outbox.settle(first, OK, 0.0)
    for i in range(3 * MAX_RECORDS_PER_REQUEST):
        _add(outbox, trace, f"more{i}")
    sizes = []
    while outbox.has_ready():
        request = _take(outbox)
        assert request.kind == "spans"
        sizes.append(len(_sent(request)[2][1]))
    assert sizes == [MAX_RECORDS_PER_REQUEST] * 3 + [101]
    assert outbox.pending() == 3 * MAX_RECORDS_PER_REQUEST + 101


def test_a_subtree_over_the_limit_goes_in_parts_parents_first() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    for i in range(MAX_RECORDS_PER_REQUEST):
        _add(outbox, workflow, f"s{i}")
    first = _take(outbox)
    assert first.records == MAX_RECORDS_PER_REQUEST
    assert _sent(first)[2][1][0][0] == "workflow"
    _nothing_ready(outbox)  # the one left waits for the workflow's acknowledgement
    outbox.settle(first, OK, 0.0)
    assert _sent(_take(outbox)) == ("POST", "/spans", (workflow.id, [f"s{MAX_RECORDS_PER_REQUEST - 1}"]))


# -- rule 3: concluded once -----------------------------------------------------------------------------
def test_a_level_concluded_before_its_post_goes_once_concluded() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    workflow.output = "done"
    outbox.conclude(workflow.id)
    request = _take(outbox)
    assert request.body()[2]["traces"][0]["spans"][0]["output"] == "done"
    tally = outbox.settle(request, OK, 0.0)
    assert tally.sent == 2 and tally.updates_sent == 0
    _nothing_ready(outbox)
    assert outbox.idle()


def test_a_level_concluded_while_its_post_is_under_way_gets_one_patch_after_it() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    request = _take(outbox)
    outbox.conclude(workflow.id)
    outbox.conclude(workflow.id)  # twice: still one PATCH
    _nothing_ready(outbox)  # the PATCH waits for the POST's acknowledgement
    assert not outbox.idle()
    outbox.settle(request, OK, 0.0)
    patch = _take(outbox)
    assert patch.kind == "span_update" and patch.body()[1] == f"/spans/{workflow.id}"
    _nothing_ready(outbox)
    assert outbox.settle(patch, OK, 0.0).updates_sent == 1
    _nothing_ready(outbox)
    assert outbox.idle()


def test_a_level_concluded_after_its_post_was_acknowledged_gets_one_patch() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    assert outbox.idle()
    outbox.conclude(workflow.id)
    assert not outbox.idle() and outbox.pending() == 0  # an update is not a record
    patch = _take(outbox)
    assert patch.kind == "span_update"
    outbox.conclude(workflow.id)
    _nothing_ready(outbox)


def test_a_level_concluded_while_its_failed_post_was_under_way_goes_again_concluded_without_patch() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    request = _take(outbox)
    outbox.conclude(workflow.id)
    outbox.settle(request, UNAVAILABLE, 0.0)
    again = _take(outbox)
    assert outbox.settle(again, OK, 1.0).sent == 2
    _nothing_ready(outbox)  # its final state went in the POST: no PATCH


def test_a_failed_patch_is_retried_then_counted_as_an_update_given_up() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    outbox.conclude(workflow.id)
    assert outbox.settle(_take(outbox), UNAVAILABLE, 0.0).retried == 1
    again = _take(outbox)  # goes again as it went the first time
    assert again.kind == "span_update" and again.body()[1] == f"/spans/{workflow.id}"
    assert outbox.settle(again, OK, 1.0).updates_sent == 1
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    outbox.conclude(workflow.id)
    tally = outbox.settle(_take(outbox), SCHEMA_REJECTED, 0.0)
    assert tally.updates_dropped == {"schema_rejected": 1} and not tally.dropped
    _nothing_ready(outbox)
    assert outbox.idle()


# -- rule 4: complete last ------------------------------------------------------------------------------
def test_a_trace_concluded_before_its_post_goes_complete_in_it_and_no_patch_follows() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    _add(outbox, workflow, "llm", schema.LlmSpan)
    outbox.conclude(workflow.id)
    assert outbox.complete(trace) is None
    request = _take(outbox)
    assert request.complete and request.body()[2]["is_complete"] is True
    tally = outbox.settle(request, OK, 0.0)
    assert (tally.sent, tally.updates_sent) == (3, 0)
    _nothing_ready(outbox)
    assert outbox.idle()


def test_a_trace_post_is_not_complete_while_a_level_in_it_is_open() -> None:
    outbox, trace = _trace_outbox()
    _add(outbox, trace, "workflow", schema.WorkflowSpan)  # not concluded
    outbox.complete(trace)
    assert _take(outbox).body()[2]["is_complete"] is False


def test_is_complete_goes_last_after_every_other_record_and_update() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    workflow_post = _take(outbox)
    outbox.conclude(workflow.id)  # a PATCH will follow the POST
    outbox.complete(trace)
    _nothing_ready(outbox)
    outbox.settle(workflow_post, OK, 0.0)
    patch = _take(outbox)
    assert patch.kind == "span_update"
    _nothing_ready(outbox)  # not while the PATCH is under way
    outbox.settle(patch, OK, 0.0)
    completion = _take(outbox)
    assert completion.kind == "trace_update"
    _nothing_ready(outbox)
    assert not outbox.idle()
    assert outbox.settle(completion, OK, 0.0).updates_sent == 1
    assert outbox.idle()


def test_a_trace_post_is_not_complete_when_records_of_the_trace_stay_behind() -> None:
    outbox, trace = _trace_outbox()
    for i in range(MAX_RECORDS_PER_REQUEST):  # one more than the body holds
        _add(outbox, trace, f"s{i}")
    outbox.complete(trace)
    post = _take(outbox)
    assert post.records == MAX_RECORDS_PER_REQUEST and not post.complete
    assert post.body()[2]["is_complete"] is False
    outbox.settle(post, OK, 0.0)
    rest = _take(outbox)
    assert rest.kind == "spans" and rest.records == 1
    _nothing_ready(outbox)
    outbox.settle(rest, OK, 0.0)
    assert _take(outbox).kind == "trace_update"


def test_is_complete_waits_for_the_other_loggers_of_the_trace() -> None:
    outbox, trace = _trace_outbox()
    outbox.complete(trace)
    post = _take(outbox, others_busy=True)
    assert not post.complete  # another outbox of this trace still has records
    outbox.settle(post, OK, 0.0)
    _nothing_ready(outbox, others_busy=True)
    assert not outbox.idle()
    assert _take(outbox, others_busy=False).kind == "trace_update"


def test_a_record_given_up_does_not_hold_is_complete_back() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    _add(outbox, trace, "bad")
    outbox.complete(trace)
    assert outbox.settle(_take(outbox), SCHEMA_REJECTED, 0.0).dropped == {"schema_rejected": 1}
    assert _take(outbox).kind == "trace_update"


@pytest.mark.parametrize("complete_first", [True, False], ids=["completed-first", "failed-first"])
def test_the_completion_of_a_trace_given_up_is_counted_not_sent(complete_first: bool) -> None:
    outbox, trace = _trace_outbox()
    post = _take(outbox)
    tallies = [outbox.complete(trace)] if complete_first else []
    tallies.append(outbox.settle(post, SCHEMA_REJECTED, 0.0))
    if not complete_first:
        tallies.append(outbox.complete(trace))
    dropped = sum((t.dropped for t in tallies if t), Counter())
    updates = sum((t.updates_dropped for t in tallies if t), Counter())
    assert dropped == {"schema_rejected": 1} and updates == {"parent_failed": 1}
    _nothing_ready(outbox)
    assert outbox.idle()


def test_a_logger_continuing_a_trace_never_completes_it() -> None:
    trace = schema.Trace(name="upstream")
    outbox = TraceOutbox(CLIENT, TARGET, WINDOW, trace.id, owned=False)
    _add(outbox, trace.id, "downstream")
    assert outbox.complete(trace) is None
    outbox.settle(_take(outbox), OK, 0.0)
    _nothing_ready(outbox)
    assert outbox.idle()


# -- rule 5: failure spreads down, never up -------------------------------------------------------------
def test_a_record_given_up_takes_the_records_below_it() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    post = _take(outbox)
    child = _add(outbox, workflow, "child", schema.AgentSpan)  # not in the POST
    _add(outbox, child, "grandchild")
    tally = outbox.settle(post, SCHEMA_REJECTED, 0.0)
    # the two records the server rejected, under its reason; the two below them, under parent_failed
    assert tally.dropped == {"schema_rejected": 2, "parent_failed": 2}
    assert "HTTP 422" in tally.detail
    assert outbox.pending() == 0
    _nothing_ready(outbox)


def test_a_child_added_under_a_record_given_up_is_given_up_at_once() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), SCHEMA_REJECTED, 0.0)
    child = schema.AgentSpan(name="child")
    tally = outbox.add(child, workflow.id)
    assert tally is not None and tally.dropped == {"parent_failed": 1}
    tally = outbox.add(schema.ToolSpan(name="grandchild"), child.id)
    assert tally is not None and tally.dropped == {"parent_failed": 1}
    assert outbox.pending() == 0
    _nothing_ready(outbox)


def test_failure_never_spreads_up_nor_to_siblings() -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    left = _add(outbox, trace, "left", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    right = _add(outbox, trace, "right", schema.WorkflowSpan)
    right_post = _take(outbox)
    _add(outbox, left, "left-child")
    left_post = _take(outbox)
    assert outbox.settle(right_post, BAD_REQUEST, 0.0).dropped == {"rejected_400": 1}
    assert outbox.settle(left_post, OK, 0.0).sent == 1
    outbox.conclude(left.id)
    outbox.conclude(right.id)  # given up: no PATCH
    assert _take(outbox).body()[1] == f"/spans/{left.id}"
    _add(outbox, trace, "later")
    assert _sent(_take(outbox)) == ("POST", "/spans", (trace.id, ["later"]))


# -- rule 6 and the retry rules ---------------------------------------------------------------------------
@pytest.mark.parametrize("result", TRANSIENT, ids=lambda r: f"{r.outcome.value}-{r.status}")
def test_a_transient_failure_puts_the_request_back_as_it_went(result: Result) -> None:
    outbox, trace = _trace_outbox()
    outbox.settle(_take(outbox), OK, 0.0)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    _add(outbox, workflow, "llm", schema.LlmSpan)
    first = _take(outbox)
    tally = outbox.settle(first, result, 10.0)
    assert tally.retried == 1 and not tally.dropped and tally.sent == 0
    assert outbox.pending() == 2 and outbox.not_before > 10.0
    again = _take(outbox)
    assert _sent(again) == _sent(first) == ("POST", "/spans", (trace.id, [("workflow", ["llm"])]))


def test_backoff_doubles_with_jitter_up_to_its_cap() -> None:
    outbox, _ = _trace_outbox(window=10_000.0)
    delays, _, _ = _fails_until_given_up(outbox, UNAVAILABLE, 0.0)
    assert len(delays) > 12
    for attempt, delay in enumerate(delays[:12], start=1):
        backoff = min(BACKOFF_BASE * 2 ** (attempt - 1), BACKOFF_MAX)
        assert 0.5 * backoff <= delay <= backoff, (attempt, delay)
    assert len({round(d / min(BACKOFF_BASE * 2**i, BACKOFF_MAX), 6) for i, d in enumerate(delays[:12])}) > 1


def test_a_success_starts_the_backoff_and_the_window_over() -> None:
    outbox, trace = _trace_outbox(window=5.0)
    for now in (0.0, 1.0, 2.0, 3.0):
        outbox.settle(_take(outbox), UNAVAILABLE, now)
    assert outbox.not_before - 3.0 > BACKOFF_BASE  # the fourth backoff
    outbox.settle(_take(outbox), OK, 4.0)
    _add(outbox, trace, "later")
    tally = outbox.settle(_take(outbox), UNAVAILABLE, 100.0)  # long after the first window ended
    assert tally.retried == 1
    assert BACKOFF_BASE / 2 <= outbox.not_before - 100.0 <= BACKOFF_BASE


@pytest.mark.parametrize("retry_after", [0.1, 5.0, 40.0])
def test_retry_after_is_a_floor_for_the_next_attempt(retry_after: float) -> None:
    outbox, _ = _trace_outbox(window=100.0)
    result = Result(Outcome.RETRY, 429, retry_after=retry_after)
    outbox.settle(_take(outbox), result, 50.0)
    assert outbox.not_before - 50.0 >= max(retry_after, BACKOFF_BASE / 2)
    assert outbox.not_before - 50.0 <= max(retry_after, BACKOFF_BASE)


def test_refused_credentials_pause_at_least_auth_pause() -> None:
    outbox, _ = _trace_outbox(window=1000.0)
    outbox.settle(_take(outbox), AUTH, 0.0)
    assert outbox.not_before == pytest.approx(AUTH_PAUSE)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (UNAVAILABLE, "retry_window_exceeded"),
        (PARENT_MISSING, "retry_window_exceeded"),
        (AUTH, "auth_failed"),
    ],
    ids=["retry", "parent-missing", "auth"],
)
def test_the_last_attempt_goes_when_the_window_ends_then_the_records_are_given_up(
    result: Result, reason: str
) -> None:
    window = 3.0
    outbox, trace = _trace_outbox(window=window)
    outbox.settle(_take(outbox), OK, 0.0)
    _add(outbox, trace, "span")
    delays, last, tally = _fails_until_given_up(outbox, result, 7.0)
    assert last == pytest.approx(7.0 + window, abs=0.002)  # not a whole backoff after the window
    assert sum(delays) == pytest.approx(window, abs=0.002)
    assert tally.dropped == {reason: 1} and tally.detail == result.detail
    assert outbox.pending() == 0


def test_retry_after_beyond_the_window_moves_the_last_attempt_to_the_windows_end() -> None:
    outbox, _ = _trace_outbox(window=2.0)
    result = Result(Outcome.RETRY, 503, retry_after=60.0)
    _, last, tally = _fails_until_given_up(outbox, result, 0.0)
    assert last == pytest.approx(2.0, abs=0.002) and tally.dropped == {"retry_window_exceeded": 1}


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (SCHEMA_REJECTED, "schema_rejected"),
        (TOO_LARGE, "too_large"),
        (BAD_REQUEST, "rejected_400"),
        (Result(Outcome.REJECTED, 404), "rejected_404"),
        (Result(Outcome.REJECTED, None, detail="could not build the request: ValueError"), "rejected"),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_a_permanent_outcome_gives_the_records_up_at_once(result: Result, reason: str) -> None:
    outbox, trace = _trace_outbox()
    _add(outbox, trace, "span")
    tally = outbox.settle(_take(outbox), result, 0.0)
    assert tally.retried == 0 and tally.dropped == {reason: 2} and tally.detail == result.detail
    assert outbox.pending() == 0
    _nothing_ready(outbox)


def test_a_batch_keeps_the_same_retry_rules() -> None:
    traces = [schema.Trace(name="t")]
    outbox = BatchOutbox(CLIENT, TARGET, 2.0, traces, 1)
    delays, last, tally = _fails_until_given_up(outbox, Result(Outcome.RETRY, 429, retry_after=0.5), 0.0)
    assert all(d >= 0.5 for d in delays[:-1]) and last == pytest.approx(2.0, abs=0.002)
    assert tally.dropped == {"retry_window_exceeded": 1} and outbox.idle() and outbox.pending() == 0
    outbox = BatchOutbox(CLIENT, TARGET, 2.0, traces, 1)
    assert _fails_until_given_up(outbox, AUTH, 0.0)[2].dropped == {"auth_failed": 1}
    outbox = BatchOutbox(CLIENT, TARGET, 2.0, traces, 1)
    delays, _, tally = _fails_until_given_up(outbox, TOO_LARGE, 0.0)
    assert delays == [] and tally.dropped == {"too_large": 1} and tally.detail == TOO_LARGE.detail
    outbox = BatchOutbox(CLIENT, TARGET, 2.0, traces, 1)
    request = outbox.take()
    assert request is not None and outbox.settle(request, AUTH, 0.0).retried == 1
    assert outbox.not_before == pytest.approx(2.001)  # AUTH_PAUSE, cut to the window's end


# -- rule 7: shared fate, twice at most -------------------------------------------------------------------
class _Handle:
    """What the dispatcher keeps per outbox, as plan() sees it: the outbox."""

    def __init__(self, outbox: TraceOutbox) -> None:
        self.outbox = outbox


def _planned(outboxes: list[TraceOutbox], complete: bool = False) -> Request:
    first = _take(outboxes[0])
    if complete:
        assert first.complete
    return plan(first, collections.deque(_Handle(o) for o in outboxes[1:]), lambda handle: False)


def _settle_shared(request: Request, result: Result, now: float) -> list[Tally]:
    assert request.parts is not None
    return [part.outbox.settle(part, result, now, shared=True) for part in request.parts]


def test_ready_traces_share_one_post() -> None:
    opened = [_trace_outbox() for _ in range(3)]
    _add(*opened[1], "child")
    outboxes = [outbox for outbox, _ in opened]
    shared = _planned(outboxes)
    assert shared.parts is not None and len(shared.parts) == 3 and shared.records == 4
    method, path, body = shared.body()
    assert (method, path) == ("POST", "/traces")
    validate("LogTracesIngestRequest", body)
    assert [_shape(t) for t in body["traces"]] == ["trace", ("trace", ["child"]), "trace"]
    assert [t["id"] for t in body["traces"]] == [trace.id for _, trace in opened]
    tallies = _settle_shared(shared, OK, 0.0)
    assert [t.sent for t in tallies] == [1, 2, 1]
    assert all(o.idle() and o.pending() == 0 for o in outboxes)


def test_only_traces_that_may_share_a_body_share_it() -> None:
    session_a = SessionRef("5b4a2f43-7c52-4e8b-9d6b-27a6a5e1c0de")
    session_b = SessionRef("0b0c5a8e-8f9e-4d1c-a7b2-3f6f6c3d9e11")
    first, _ = _trace_outbox(session=session_a)
    same, _ = _trace_outbox(session=SessionRef(session_a.id))
    others = [
        _trace_outbox(session=session_b)[0],  # another session
        _trace_outbox()[0],  # no session
        _trace_outbox(session=session_a, target=Target("other", None, "stream", None))[0],
        _trace_outbox(session=session_a, client=Client("http://127.0.0.1:9", "y" * 20))[0],
    ]
    completed, completed_trace = _trace_outbox(session=session_a)
    completed.complete(completed_trace)  # goes complete: is_complete is the whole body's
    backing_off, _ = _trace_outbox(session=session_a)
    backing_off.settle(_take(backing_off), UNAVAILABLE, 0.0)  # keeps its own backoff
    sent_already, sent_trace = _trace_outbox(session=session_a)
    sent_already.settle(_take(sent_already), OK, 0.0)
    _add(sent_already, sent_trace, "span")  # sends a span next
    shared = _planned([first, *others, completed, backing_off, sent_already, same])
    assert shared.parts is not None and [p.outbox for p in shared.parts] == [first, same]
    assert shared.body()[2]["session_id"] == session_a.id


def test_a_trace_too_big_for_the_room_left_goes_alone() -> None:
    big, trace = _trace_outbox()
    for i in range(MAX_RECORDS_PER_REQUEST - 2):
        _add(big, trace, f"s{i}")
    small, big2 = _trace_outbox()[0], _trace_outbox()
    _add(big2[0], big2[1], "x")
    _add(big2[0], big2[1], "y")
    shared = _planned([big, big2[0], small])
    assert shared.parts is not None and [p.outbox for p in shared.parts] == [big, small]
    assert shared.records == MAX_RECORDS_PER_REQUEST
    assert big2[0].take_trace(2, False, False) is None and big2[0].take_trace(3, False, False) is not None


def test_at_most_max_traces_share_one_post() -> None:
    outboxes = [_trace_outbox()[0] for _ in range(MAX_TRACES_PER_REQUEST + 5)]
    shared = _planned(outboxes)
    assert shared.parts is not None and len(shared.parts) == MAX_TRACES_PER_REQUEST
    assert all(o.has_ready() for o in outboxes[MAX_TRACES_PER_REQUEST:])


def test_complete_traces_share_a_post_with_complete_ones_only() -> None:
    outboxes = []
    for complete in (True, False, True):
        outbox, trace = _trace_outbox()
        if complete:
            outbox.complete(trace)
        outboxes.append(outbox)
    shared = _planned(outboxes, complete=True)
    assert shared.parts is not None and [p.outbox for p in shared.parts] == [outboxes[0], outboxes[2]]
    assert shared.body()[2]["is_complete"] is True
    _settle_shared(shared, OK, 0.0)
    assert outboxes[0].idle() and outboxes[2].idle() and not outboxes[1].idle()


def test_a_rejected_shared_post_gives_nothing_up_and_each_trace_goes_alone_at_once() -> None:
    outboxes = [_trace_outbox()[0] for _ in range(3)]
    shared = _planned(outboxes)
    tallies = _settle_shared(shared, SCHEMA_REJECTED, 5.0)
    assert all(not t.dropped and not t.retried for t in tallies)
    for outbox in outboxes:
        assert outbox.pending() == 1 and outbox.not_before <= 5.0  # no backoff
    alone = _planned(outboxes)  # the first one's own POST: nothing joins a solo trace...
    assert alone.parts is None and alone.outbox is outboxes[0]
    assert outboxes[1].take_trace(MAX_RECORDS_PER_REQUEST, False, False) is None  # ...nor is joined
    assert outboxes[0].settle(alone, SCHEMA_REJECTED, 6.0).dropped == {"schema_rejected": 1}  # its own fault
    second = _take(outboxes[1])
    assert outboxes[1].settle(second, OK, 6.0).sent == 1


def test_a_shared_post_failing_twice_sends_its_traces_alone() -> None:
    first, second, third, fourth = (_trace_outbox()[0] for _ in range(4))
    shared = _planned([first, second])
    assert all(t.retried == 1 for t in _settle_shared(shared, UNAVAILABLE, 0.0))
    assert second.take_trace(MAX_RECORDS_PER_REQUEST, False, False) is None  # backing off: joins nobody
    again = _planned([first, second, third])  # once is not yet twice: first's retry still carries others
    assert again.parts is not None and [p.outbox for p in again.parts] == [first, third]
    assert all(t.retried == 1 for t in _settle_shared(again, UNAVAILABLE, 1.0))
    alone = _planned([first, fourth])  # twice: first goes solo
    assert alone.parts is None and alone.outbox is first
    assert first.settle(alone, OK, 2.0).sent == 1
    assert fourth.has_ready()


# -- pending(), idle() and abandon() ----------------------------------------------------------------------
def test_pending_counts_records_neither_delivered_nor_given_up() -> None:
    outbox, trace = _trace_outbox()
    assert (outbox.pending(), outbox.idle()) == (1, False)
    post = _take(outbox)
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    assert outbox.pending() == 2  # one in flight, one waiting
    outbox.settle(post, OK, 0.0)
    assert outbox.pending() == 1
    outbox.conclude(workflow.id)
    outbox.settle(_take(outbox), BAD_REQUEST, 0.0)
    assert (outbox.pending(), outbox.idle()) == (0, True)
    outbox.complete(trace)
    assert (outbox.pending(), outbox.idle()) == (0, False)  # the completion is still to go
    outbox.settle(_take(outbox), OK, 0.0)
    assert (outbox.pending(), outbox.idle()) == (0, True)


def test_abandon_gives_up_what_waits_and_leaves_what_is_in_flight_to_its_answer() -> None:
    outbox, trace = _trace_outbox()
    first = _add(outbox, trace, "first", schema.WorkflowSpan)
    post = _take(outbox)
    outbox.conclude(first.id)  # a PATCH to follow
    child = _add(outbox, first, "child", schema.AgentSpan)
    _add(outbox, child, "grandchild")
    outbox.complete(trace)
    tally = outbox.abandon("shutdown_timeout")
    assert tally.dropped == {"shutdown_timeout": 2} and tally.updates_dropped == {"shutdown_timeout": 1}
    assert outbox.pending() == 2 and not outbox.idle()  # the POST under way
    tally = outbox.settle(post, OK, 0.0)
    assert tally.sent == 2
    patch = _take(outbox)  # the PATCH for a record delivered is still owed
    assert outbox.settle(patch, OK, 0.0).updates_sent == 1
    _nothing_ready(outbox)
    assert outbox.idle() and outbox.pending() == 0


def test_abandon_with_an_in_flight_reason_counts_what_is_under_way_apart() -> None:
    outbox, trace = _trace_outbox()
    workflow = _add(outbox, trace, "workflow", schema.WorkflowSpan)
    outbox.settle(_take(outbox), OK, 0.0)
    outbox.conclude(workflow.id)
    patch = _take(outbox)
    _add(outbox, trace, "waiting")
    post = _take(outbox)
    _add(outbox, trace, "queued")
    outbox.complete(trace)
    tally = outbox.abandon("shutdown_timeout", "shutdown_in_flight")
    assert tally.dropped == {"shutdown_timeout": 1, "shutdown_in_flight": 1}
    assert tally.updates_dropped == {"shutdown_timeout": 1, "shutdown_in_flight": 1}  # completion, PATCH
    assert outbox.idle() and outbox.pending() == 0
    _nothing_ready(outbox)
    assert (patch.kind, post.kind) == ("span_update", "spans")  # their answers are not waited for


def test_a_batch_is_abandoned_whole_waiting_or_in_flight() -> None:
    traces = [schema.Trace(name="t")]
    outbox = BatchOutbox(CLIENT, TARGET, WINDOW, traces, 4)
    assert outbox.abandon("shutdown_timeout").dropped == {"shutdown_timeout": 4}
    assert outbox.idle() and outbox.pending() == 0 and outbox.take() is None
    outbox = BatchOutbox(CLIENT, TARGET, WINDOW, traces, 4)
    request = outbox.take()
    assert request is not None
    assert not outbox.abandon("shutdown_timeout").dropped  # left to its answer
    assert outbox.abandon("shutdown_timeout", "shutdown_in_flight").dropped == {"shutdown_in_flight": 4}
    assert outbox.idle() and outbox.pending() == 0
    outbox = BatchOutbox(CLIENT, TARGET, WINDOW, traces, 4)
    request = outbox.take()
    assert request is not None and outbox.settle(request, OK, 0.0).sent == 4
    assert not outbox.abandon("shutdown_timeout", "shutdown_in_flight").dropped


# -- every rule at once, over random histories ------------------------------------------------------------
_OUTCOMES = [OK] * 6 + [UNAVAILABLE, Result(Outcome.RETRY, 429, retry_after=3.0), PARENT_MISSING, AUTH]
_OUTCOMES += [SCHEMA_REJECTED, TOO_LARGE]
_REASONS = {
    "retry_window_exceeded",
    "auth_failed",
    "schema_rejected",
    "too_large",
    "parent_failed",
    "shutdown_timeout",
    "shutdown_in_flight",
}


def _scripts(draw: Callable[..., Any], owned: bool, trace: schema.Trace) -> list[tuple[str, Any, Any]]:
    """What one logger hands over for one trace, in an order a logger can: levels open and close like a
    stack, a level is concluded after its children were added, the trace completes last."""
    script: list[tuple[str, Any, Any]] = []
    root: Any = trace if owned else schema.new_id()  # another service's span
    if owned:
        script.append(("add", trace, None))
    stack = [root]
    for step in range(draw(st.integers(0, 14))):
        action = draw(st.sampled_from(["open", "leaf", "leaf", "close"]))
        parent = stack[-1]
        parent_id = parent if isinstance(parent, str) else parent.id
        if action == "close" and len(stack) > 1:
            script.append(("conclude", stack.pop().id, None))
        elif action == "open":
            kind = draw(st.sampled_from([schema.WorkflowSpan, schema.AgentSpan]))
            span = kind(name=f"level{step}")
            script.append(("add", span, parent_id))
            stack.append(span)
        else:
            kind = draw(st.sampled_from([schema.LlmSpan, schema.ToolSpan, schema.RetrieverSpan]))
            script.append(("add", kind(name=f"leaf{step}"), parent_id))
    while len(stack) > 1:
        script.append(("conclude", stack.pop().id, None))
    if owned:
        script.append(("complete", trace, None))
    return script


class _Model:
    """One outbox and what the server and its counters should see of it."""

    def __init__(self, outbox: TraceOutbox, script: list[tuple[str, Any, Any]]) -> None:
        self.outbox = outbox
        self.script = collections.deque(script)
        self.parent: dict[str, str | None] = {}
        self.levels: set[str] = set()
        self.concluded: dict[str, int] = {}  # record id -> step it was concluded at
        self.completed = False
        self.sent: set[str] = set()  # records the server acknowledged
        self.taken_at: dict[str, int] = {}  # record id -> step its last POST was taken at
        self.acked_taken_at: dict[str, int] = {}  # record id -> step its acknowledged POST was taken at
        self.counted: Counter[str] = Counter()  # sent + dropped by reason, from the tallies
        self.updates = 0  # updates counted (sent or given up)
        self.completed_in_post = False
        self.completing = False  # a POST saying is_complete is under way
        self.completion_taken = False  # is_complete was delivered, or its PATCH taken

    def count(self, tally: Tally | None) -> None:
        if tally is not None:
            self.counted["sent"] += tally.sent
            self.counted.update(tally.dropped)
            self.updates += tally.updates_sent + sum(tally.updates_dropped.values())
            assert set(tally.dropped) | set(tally.updates_dropped) <= _REASONS

    def settled(self) -> int:
        return sum(self.counted.values())


def _walk(wires: list[dict[str, Any]], parent: str | None) -> Iterator[tuple[str, str | None]]:
    """(id, parent id) of every record in ``wires``, nested ones included, parents first."""
    for wire in wires:
        yield wire["id"], parent
        yield from _walk(wire.get("spans") or [], wire["id"])


_ACTIONS = ["hand", "hand", "take", "take", "settle", "settle", "time", "wait"]


class _History:
    """Replays a random history over several outboxes and checks every rule after each step."""

    def __init__(self, draw: Callable[..., Any]) -> None:
        self.draw = draw
        self.models: list[_Model] = []
        for i in range(draw(st.integers(1, 3))):
            owned = i == 0 or draw(st.booleans())
            trace = schema.Trace(name=f"trace{i}")
            trace_id = trace.id if owned else schema.new_id()
            outbox = TraceOutbox(CLIENT, TARGET, 10.0, trace_id, owned=owned)
            self.models.append(_Model(outbox, _scripts(draw, owned, trace)))
        self.by_outbox = {id(m.outbox): m for m in self.models}
        self.in_flight: list[Request] = []
        self.now = 0.0
        self.clock = itertools.count()  # orders the events

    def model(self, outbox: Outbox) -> _Model:
        return self.by_outbox[id(outbox)]

    # -- the logger's events
    def hand_over(self, model: _Model) -> None:
        kind, a, b = model.script.popleft()
        outbox = model.outbox
        if kind == "add":
            model.parent[a.id] = b
            if isinstance(a, (schema.WorkflowSpan, schema.AgentSpan)):
                model.levels.add(a.id)
            model.count(outbox.add(a, b))
        elif kind == "conclude":
            model.concluded[a] = next(self.clock)
            outbox.conclude(a)
        else:
            model.completed = True
            model.count(outbox.complete(a))

    # -- the dispatcher's
    def take(self, model: _Model, others_busy: bool) -> None:
        outbox = model.outbox
        ready = outbox.has_ready(others_busy)
        request = outbox.take(others_busy)
        assert (request is not None) == ready, "has_ready() says what take() does"
        if request is None:
            return
        self.now = max(self.now, outbox.not_before)
        if request.kind == "traces":
            others = self.draw(st.permutations([m.outbox for m in self.models if m is not model]))
            request = plan(request, collections.deque(_Handle(o) for o in others), lambda h: others_busy)
        for part in request.parts or [request]:
            self.check_taken(self.model(part.outbox), part, others_busy)
        self.in_flight.append(request)

    def check_taken(self, model: _Model, request: Request, others_busy: bool) -> None:
        outbox = model.outbox
        assert not model.completing, "nothing goes while a POST saying is_complete is under way"
        if model.completion_taken:  # nothing goes after is_complete but its PATCH again, after a failure
            assert request.kind == "trace_update", "nothing goes after is_complete"
        _, path, body = request.body()
        if request.kind == "trace_update":
            assert model.completed and not others_busy
            assert model.settled() == len(model.parent), "is_complete after every record settled"
            assert not any(p.outbox is outbox for r in self.in_flight for p in r.parts or [r])
            model.completion_taken = True
            return
        if request.kind == "span_update":
            span_id = body["span_id"]
            assert span_id in model.levels and span_id in model.sent and span_id in model.concluded
            return
        wires = body["traces"] if path == "/traces" else body["spans"]
        root_parent = None if path == "/traces" else body["parent_id"]
        ids = []
        for record_id, parent in _walk(wires, root_parent):
            ids.append(record_id)
            assert model.parent[record_id] == parent, "nested under its own parent"
            assert record_id not in model.sent
            model.taken_at[record_id] = next(self.clock)
        assert len(ids) == request.records <= MAX_RECORDS_PER_REQUEST
        if root_parent is not None:
            assert root_parent in model.sent or root_parent not in model.parent, "rule 1: parents first"
        if body.get("is_complete"):
            assert model.completed and not others_busy
            assert model.settled() + len(ids) == len(model.parent), "complete: every record in it"
            assert all(i in model.concluded for i in ids if i in model.levels)
            model.completing = True

    def settle(self, request: Request, result: Result) -> None:
        self.in_flight.remove(request)
        for part in request.parts or [request]:
            model = self.model(part.outbox)
            tally = part.outbox.settle(part, result, self.now, shared=request.parts is not None)
            model.count(tally)
            if part.complete:
                model.completing = False
                model.completion_taken = result.outcome is Outcome.OK
            if result.outcome is Outcome.OK and part.kind in ("traces", "spans"):
                _, path, body = part.body()
                for record_id, _ in _walk(body["traces" if path == "/traces" else "spans"], None):
                    model.sent.add(record_id)
                    model.acked_taken_at[record_id] = model.taken_at[record_id]
                model.completed_in_post |= part.complete

    def check(self) -> None:
        for model in self.models:
            outbox = model.outbox
            assert model.counted["sent"] == len(model.sent), "sent: the records the server acknowledged"
            assert outbox.pending() == len(model.parent) - model.settled(), "every record counted once"
            if outbox.idle():
                assert outbox.pending() == 0
                assert not any(p.outbox is outbox for r in self.in_flight for p in r.parts or [r])

    def run(self) -> None:
        draw = self.draw
        for _ in range(draw(st.integers(0, 60))):
            models = [m for m in self.models if m.script]
            action = draw(st.sampled_from(_ACTIONS))
            if action == "hand" and models:
                self.hand_over(draw(st.sampled_from(models)))
            elif action == "take":
                self.take(draw(st.sampled_from(self.models)), draw(st.booleans()) and draw(st.booleans()))
            elif action == "settle" and self.in_flight:
                self.settle(draw(st.sampled_from(self.in_flight)), draw(st.sampled_from(_OUTCOMES)))
            elif action == "time":
                self.now += draw(st.sampled_from([0.1, 1.0, 4.0, 11.0]))
            elif action == "wait":  # a ready outbox whose API is down gives up when its window ends
                model = draw(st.sampled_from(self.models))
                if model.outbox.has_ready() and model.outbox.expired(self.now):
                    model.count(model.outbox.abandon("retry_window_exceeded"))
            self.check()

    def finish(self, shutdown: bool) -> None:
        """Hand the rest over; then either shut down, or let every request succeed until all is idle."""
        for model in self.models:
            while model.script:
                self.hand_over(model)
        self.check()
        if shutdown:
            for model in self.models:
                model.count(model.outbox.abandon("shutdown_timeout", "shutdown_in_flight"))
            self.in_flight.clear()
        for _ in range(10_000):
            if not self.in_flight and not any(m.outbox.has_ready() for m in self.models):
                break
            for model in self.models:
                while model.outbox.has_ready():
                    self.take(model, False)
            while self.in_flight:
                self.settle(self.in_flight[0], OK)
            self.check()
        for model in self.models:
            outbox = model.outbox
            assert outbox.idle() and outbox.pending() == 0
            assert model.settled() == len(model.parent), "every record sent or dropped exactly once"
            patches = sum(
                1
                for i in model.levels
                if i in model.acked_taken_at and model.concluded.get(i, -1) >= model.acked_taken_at[i]
            )
            completion = int(model.completed and not model.completed_in_post)
            assert model.updates == patches + completion, "every update sent or given up exactly once"


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), st.booleans())
def test_random_histories_keep_every_rule(data: st.DataObject, shutdown: bool) -> None:
    history = _History(data.draw)
    history.run()
    history.finish(shutdown)
