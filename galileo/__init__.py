"""galileo: distributed traces of LLM and agent work, from Starlette and FastAPI services to Galileo.

The public façade. Data flows one way: a request handler calls a :class:`GalileoLogger` (which builds the
span tree), the logger hands records to the process-wide sender (a bounded queue and worker threads), and
the sender's transport speaks Galileo's HTTP API. Functions decorated with :func:`log` are traced without
a logger in hand, joining the current request's trace (see :mod:`galileo.decorator`). With nothing
configured, records go to the local collector (``galileo-collector serve``) at http://localhost:8088.

The record types the tracing API returns and takes (:class:`Trace`, the span types, :class:`Message`,
:class:`Document`, ...) carry the names and attributes of the published SDK's; they are attrs classes.
"""

from __future__ import annotations

from galileo._ingestion import TracesIngestRequest
from galileo._sender import shutdown, stats
from galileo._version import __version__
from galileo.config import GalileoConfig
from galileo.decorator import GalileoContext, galileo_context, log, start_session
from galileo.exceptions import ConfigurationError, GalileoLoggerException
from galileo.logger import GalileoLogger
from galileo.propagation import get_tracing_headers
from galileo.schema import (
    AgentSpan,
    Document,
    LlmSpan,
    Message,
    MessageRole,
    RetrieverSpan,
    Session,
    Span,
    StepType,
    StepWithChildSpans,
    ToolCall,
    ToolCallFunction,
    ToolSpan,
    Trace,
    WorkflowSpan,
)

#: The published name of :data:`galileo_context`'s type.
GalileoDecorator = GalileoContext

__all__ = [
    "AgentSpan",
    "ConfigurationError",
    "Document",
    "GalileoConfig",
    "GalileoDecorator",
    "GalileoLogger",
    "GalileoLoggerException",
    "LlmSpan",
    "Message",
    "MessageRole",
    "RetrieverSpan",
    "Session",
    "Span",
    "StepType",
    "StepWithChildSpans",
    "ToolCall",
    "ToolCallFunction",
    "ToolSpan",
    "Trace",
    "TracesIngestRequest",
    "WorkflowSpan",
    "__version__",
    "galileo_context",
    "get_tracing_headers",
    "log",
    "shutdown",
    "start_session",
    "stats",
]
