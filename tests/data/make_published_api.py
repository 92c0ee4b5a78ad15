"""Write published_api_2.7.0.json, the tracing API of the published ``galileo``, for test_public_api.py.

Run it with an interpreter that has the published package installed, from a directory where this repository's
``galileo`` does not shadow it::

    cd /tmp && /path/to/venv-with-galileo-2.7.0/bin/python /path/to/tests/data/make_published_api.py

It is not needed at test time: the JSON it writes is checked in. What it records, per entry:

- ``callable``: the parameters of ``inspect.signature`` (name, kind, default; annotations are left out, since
  ours name our own types), e.g. ``galileo.GalileoLogger.add_llm_span`` (``self`` dropped).
- ``record``: the public field names of a pydantic (or attrs) record type, e.g. ``galileo.LlmSpan``;
  pydantic's own members (``model_dump``, ``dict``, ``copy``, ...) are out of scope.
- ``attributes``: the public attributes of a ``GalileoLogger`` instance (the published logger's model fields).
- ``enum``: member names and values; ``exception``: an exception class; ``name``: a public name only.

Which of the published ``galileo.__all__`` names belong to the tracing API, and why the others do not, is
written into the file (``tracing_names``, ``excluded_names``).
"""

from __future__ import annotations

import enum
import inspect
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("published_api_2.7.0.json")

# The tracing API among galileo.__all__: name -> what is compared.
TRACING: dict[str, str] = {
    "GalileoLogger": "callable",  # its __init__, methods and attributes get their own entries below
    "GalileoLoggerException": "exception",
    "GalileoDecorator": "name",  # the class of galileo_context
    "galileo_context": "name",  # its methods get their own entries below
    "log": "callable",
    "start_session": "callable",
    "get_tracing_headers": "callable",
    "Trace": "record",
    "LlmSpan": "record",
    "RetrieverSpan": "record",
    "ToolSpan": "record",
    "WorkflowSpan": "record",
    "AgentSpan": "record",
    "StepWithChildSpans": "record",
    "Session": "record",
    "Message": "record",
    "ToolCall": "record",
    "ToolCallFunction": "record",
    "Document": "record",
    "MessageRole": "enum",
    "StepType": "enum",
    "Span": "name",  # a typing.Annotated union of the span types, for annotations only
}

_EXCLUDED_GROUPS: list[tuple[str, list[str]]] = [
    (
        "annotation queues: a platform API, not tracing",
        [
            "AnnotationField",
            "AnnotationQueue",
            "AnnotationQueueRecordSelector",
            "AnnotationQueueUser",
            "AnnotationQueues",
            "add_records_to_annotation_queue",
            "create_annotation_queue",
            "create_annotation_queue_field",
            "delete_annotation_queue",
            "delete_annotation_queue_field",
            "get_annotation_queue",
            "get_annotation_queue_records",
            "list_annotation_queue_fields",
            "list_annotation_queue_users",
            "list_annotation_queues",
            "remove_annotation_queue_user",
            "remove_records_from_annotation_queue",
            "share_annotation_queue",
            "update_annotation_queue",
            "update_annotation_queue_field",
            "update_annotation_queue_user",
        ],
    ),
    (
        "protect (guardrails) and its stages: a separate product API; its spans are logged through "
        "GalileoLogger.add_protect_span, compared as a logger method",
        [
            "ExecutionStatus",
            "Payload",
            "Request",
            "Response",
            "Ruleset",
            "StageType",
            "ainvoke_protect",
            "invoke_protect",
            "create_protect_stage",
            "get_protect_stage",
            "pause_protect_stage",
            "resume_protect_stage",
            "update_protect_stage",
        ],
    ),
    (
        "agent control: a separate product integration (galileo's agent_control package); its spans are "
        "logged through GalileoLogger.add_control_span, compared as a logger method",
        [
            "AgentControlTarget",
            "AgentControlTargetUnresolvedError",
            "ControlAppliesTo",
            "ControlCheckStage",
            "ControlResult",
            "ControlSpan",
            "GalileoAgentControlBridge",
            "get_agent_control_target",
            "setup_agent_control_bridge",
        ],
    ),
    (
        "datasets, experiments, prompts, projects, log-stream management, metrics and scorers: platform APIs",
        [
            "CodeMetric",
            "Dataset",
            "Experiment",
            "GalileoMetric",
            "GalileoMetrics",
            "GalileoScorers",
            "LlmMetric",
            "LocalMetric",
            "LogStream",
            "Metric",
            "MetricSpec",
            "Project",
            "Prompt",
            "SyncState",
        ],
    ),
    (
        "model providers, integrations, collaborators, API keys: platform administration",
        [
            "AnthropicProvider",
            "AzureProvider",
            "BedrockProvider",
            "OpenAIProvider",
            "Provider",
            "Integration",
            "Model",
            "Collaborator",
            "CollaboratorRole",
            "create_api_key",
            "delete_api_key",
            "list_api_keys",
        ],
    ),
    (
        "errors of the platform API client (HTTP status errors); ours never raises network errors to the "
        "caller (the sender reports them in galileo.stats() and the log)",
        [
            "APIError",
            "AuthenticationError",
            "BadRequestError",
            "ConflictError",
            "ForbiddenError",
            "GalileoAPIError",
            "GalileoFutureError",
            "NotFoundError",
            "RateLimitError",
            "ResourceConflictError",
            "ResourceNotFoundError",
            "ServerError",
            "ValidationError",
        ],
    ),
    (
        "configuration of the platform client: galileo.Configuration is the published client's settings "
        "object; galileo.ConfigurationError is published as a plain Exception raised when no credentials are "
        "set, ours (same name) is a GalileoLoggerException and ValueError naming the variable to fix, and "
        "ours needs no credentials (the local collector is the default)",
        ["Configuration", "ConfigurationError"],
    ),
    (
        "helpers of the published package's own tooling, not tracing",
        ["enable_console_logging", "is_dependency_available"],
    ),
]
EXCLUDED: dict[str, str] = {name: reason for reason, names in _EXCLUDED_GROUPS for name in names}

# Public members of the published GalileoLogger that are not tracing.
LOGGER_EXCLUDED = {
    "enable_agent_control": "agent control integration (see excluded_names)",
    "disable_agent_control": "agent control integration (see excluded_names)",
}


def _default(value: Any) -> Any:
    if value is inspect.Parameter.empty:
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    return {"repr": repr(value), "type": type(value).__name__}


def _parameters(sig: inspect.Signature, *, drop_first: bool = False) -> list[dict[str, Any]]:
    params = list(sig.parameters.values())
    if drop_first:
        params = params[1:]
    return [{"name": p.name, "kind": p.kind.name, "default": _default(p.default)} for p in params]


def _callable(obj: Any, *, method: bool = False) -> dict[str, Any]:
    return {"kind": "callable", "parameters": _parameters(inspect.signature(obj), drop_first=method)}


def _record(cls: type) -> dict[str, Any]:
    fields = getattr(cls, "model_fields", None)
    if fields is None:  # the published galileo.Document is an attrs class of the generated API client
        fields = {a.name: a for a in cls.__attrs_attrs__}  # type: ignore[attr-defined]
    return {"kind": "record", "fields": [name for name in fields if not name.startswith("_")]}


def main() -> None:
    from pydantic import BaseModel

    import galileo
    import galileo.middleware

    if Path(galileo.__file__).resolve().is_relative_to(Path(__file__).resolve().parents[2]):
        sys.exit(
            "this imported the repository's galileo, not the published one: run it from another directory"
        )
    published = set(galileo.__all__)
    unsorted = published - set(TRACING) - set(EXCLUDED)
    if unsorted or set(TRACING) & set(EXCLUDED) or not set(TRACING) <= published:
        sys.exit(f"sort these names into TRACING or EXCLUDED: {sorted(unsorted)}")

    entries: dict[str, Any] = {}
    for name, kind in TRACING.items():
        obj = getattr(galileo, name)
        if kind == "callable" and name != "GalileoLogger":
            entries[f"galileo.{name}"] = _callable(obj)
        elif kind == "record":
            entries[f"galileo.{name}"] = _record(obj)
        elif kind == "enum":
            assert issubclass(obj, enum.Enum)
            entries[f"galileo.{name}"] = {"kind": "enum", "members": {m.name: m.value for m in obj}}
        elif kind == "exception":
            entries[f"galileo.{name}"] = {"kind": "exception"}
        elif name != "GalileoLogger":
            entries[f"galileo.{name}"] = {"kind": "name"}

    logger = galileo.GalileoLogger
    entries["galileo.GalileoLogger.__init__"] = _callable(logger.__init__, method=True)
    entries["galileo.GalileoLogger"] = {
        "kind": "attributes",
        "attributes": [name for name in logger.model_fields if not name.startswith("_")],
    }
    for name in sorted(dir(logger)):
        if name.startswith("_") or hasattr(BaseModel, name) or name in LOGGER_EXCLUDED:
            continue
        member = inspect.getattr_static(logger, name)
        if inspect.isfunction(member):
            entries[f"galileo.GalileoLogger.{name}"] = _callable(member, method=True)

    context = galileo.galileo_context
    decorator = type(context)
    for name in sorted(vars(decorator)):
        member = inspect.getattr_static(decorator, name)
        if name in ("__call__", "__enter__", "__exit__") or (
            not name.startswith("_") and inspect.isfunction(member)
        ):
            entries[f"galileo.galileo_context.{name}"] = _callable(getattr(context, name))

    for name in galileo.middleware.__all__:
        entries[f"galileo.middleware.{name}"] = _callable(getattr(galileo.middleware, name))
    entries["galileo.middleware.TracingMiddleware.dispatch"] = _callable(
        galileo.middleware.TracingMiddleware.dispatch, method=True
    )

    data = {
        "source": {
            "galileo": metadata.version("galileo"),
            "galileo-core": metadata.version("galileo-core"),
            "python": ".".join(map(str, sys.version_info[:3])),
        },
        "generated_by": "tests/data/make_published_api.py (see its docstring)",
        "notes": [
            "galileo.otel joins this list with the OpenTelemetry issue.",
            "Defaults: null for a required parameter, {'value': v} for a literal, else {'repr', 'type'}.",
            "Pydantic's own members (model_dump, dict, copy, ...) are out of scope; record types compare "
            "their public field names.",
        ],
        "tracing_names": dict(sorted(TRACING.items())),
        "excluded_names": dict(sorted(EXCLUDED.items())),
        "excluded_logger_members": LOGGER_EXCLUDED,
        "entries": dict(sorted(entries.items())),
    }
    OUT.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {len(entries)} entries to {OUT}")


if __name__ == "__main__":
    main()
