"""The ``galileo-collector`` command (also ``python -m galileo.collector``).

Subcommands:

``serve [--host 127.0.0.1] [--port 8088] [--db ~/.galileo/collector.db] [--token-ttl 3600] [--access-log]
[--latency MS]``
    Run the collector with uvicorn (the ``collector`` extra). Prints one line with the URL, then serves
    until interrupted.
``tree TRACE_ID [--url URL]``
    Print one trace as an indented tree, one line per record: type, name, duration, status and, where a
    span was logged to another log stream than its parent, ``[project / log stream]``. Spans whose parent
    has not arrived are listed after the tree; the last line is the trace's URL in the collector's trace
    viewer. Exit status 1 when the trace is unknown.
``traces [--url URL] [--limit 20]``
    List the latest traces.

``--url`` defaults to ``$GALILEO_API_URL``, else ``http://localhost:8088``. :func:`format_tree` renders a
tree as ``tree`` prints it.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from galileo._version import __version__

__all__ = ["DEFAULT_DB", "DEFAULT_PORT", "default_url", "format_tree", "main", "viewer_url"]

DEFAULT_PORT = 8088
DEFAULT_DB = Path("~/.galileo/collector.db")
_TIMEOUT = 10.0


class _CliError(Exception):
    """A failure to report on stderr with exit status 1."""


def default_url() -> str:
    """``$GALILEO_API_URL`` or the local collector's default address."""
    return os.environ.get("GALILEO_API_URL") or f"http://localhost:{DEFAULT_PORT}"


# Rendering -------------------------------------------------------------------------------------------------


def _duration(node: Mapping[str, Any]) -> str:
    metrics = node.get("metrics")
    duration = metrics.get("duration_ns") if isinstance(metrics, Mapping) else None
    if not isinstance(duration, (int, float)) or isinstance(duration, bool):
        return "…"
    return f"{duration / 1e6:.1f} ms"


def _location(node: Mapping[str, Any]) -> str:
    project = node.get("project_name") or node.get("project_id") or "?"
    if node.get("log_stream_id") is None:
        return f"[{project}]"
    return f"[{project} / {node.get('log_stream_name') or node.get('log_stream_id')}]"


def _name(node: Mapping[str, Any]) -> str:
    if node.get("name"):
        return str(node["name"])
    return "(trace record missing)" if node.get("trace_record") is False else "(unnamed)"


def _errors(count: object) -> str:
    """How many of a trace's spans failed, as text ("2 errors"); empty when none did."""
    if not isinstance(count, int) or count < 1:
        return ""
    return f"{count} error{'s' if count > 1 else ''}"


def _line(node: Mapping[str, Any], parent: Mapping[str, Any] | None) -> str:
    parts = [str(node.get("type") or "?"), _name(node), _duration(node)]
    status = node.get("status_code")
    if node.get("trace_record") is False:  # a stand-in: only spans of the trace arrived
        parts.append("incomplete")
    elif node.get("type") == "trace":
        if status is not None:
            parts.append(str(status))
        parts.append("complete" if node.get("is_complete") else "open")
    elif status is not None:
        parts.append(str(status))
    else:
        parts.append("open" if _duration(node) == "…" else "ok")
    moved = parent is not None and any(
        node.get(key) != parent.get(key) for key in ("project_id", "log_stream_id")
    )
    if parent is None and _errors(node.get("error_count")):
        parts.append(_errors(node.get("error_count")))
    if (parent is None and node.get("trace_record") is not False) or moved:
        parts.append(_location(node))
    return "  ".join(parts)


def _children(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    spans = node.get("spans")
    return [child for child in spans if isinstance(child, Mapping)] if isinstance(spans, list) else []


def _render_children(node: Mapping[str, Any], prefix: str, lines: list[str]) -> None:
    # Iterative depth-first walk: (node, its parent, prefix of its line, is it the last sibling).
    stack = [(child, node, prefix, i == len(_children(node)) - 1) for i, child in enumerate(_children(node))]
    stack.reverse()
    while stack:
        child, parent, indent, last = stack.pop()
        lines.append(f"{indent}{'└─ ' if last else '├─ '}{_line(child, parent)}")
        grandchildren = _children(child)
        deeper = indent + ("   " if last else "│  ")
        stack.extend(
            (grandchild, child, deeper, i == len(grandchildren) - 1)
            for i, grandchild in reversed(list(enumerate(grandchildren)))
        )


def format_tree(tree: Mapping[str, Any]) -> str:
    """A trace tree (as ``GET /api/traces/{id}`` returns it) as indented text, one line per record.

    The first line is the trace's, with how many of its spans failed (``2 errors``); a trace whose record has
    not arrived reads ``trace  (trace record missing)  …  incomplete``, the spans that did below it.
    """
    lines = [_line(tree, None)]
    _render_children(tree, "", lines)
    orphans = tree.get("orphans")
    if isinstance(orphans, list) and orphans:
        lines.append("")
        lines.append("orphans (parent not stored yet):")
        _render_children({**tree, "spans": orphans}, "", lines)
    return "\n".join(lines)


def _format_traces(traces: Sequence[Mapping[str, Any]]) -> str:
    """Trace summaries (``GET /api/traces``) as a table; ``errors`` counts failed spans."""
    if not traces:
        return "no traces yet"
    header = ("id", "name", "created_at", "spans", "errors", "status", "complete")
    rows = [header] + [
        (
            str(t.get("id")),
            _name(t),
            str(t.get("created_at") or ""),
            str(t.get("span_count", "")),
            str(t.get("error_count", "")),
            "" if t.get("status_code") is None else str(t.get("status_code")),
            "yes" if t.get("is_complete") else "no",
        )
        for t in traces
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


# Commands --------------------------------------------------------------------------------------------------


def _get(url: str, path: str, params: Mapping[str, Any] | None = None) -> Any:
    base = url.rstrip("/")
    try:
        response = requests.get(f"{base}{path}", params=params, timeout=_TIMEOUT)
    except requests.RequestException as exc:
        raise _CliError(f"cannot reach the collector at {base}: {exc}") from exc
    if response.status_code != 200:
        try:
            detail = response.json().get("detail")
        except ValueError:
            detail = response.text[:200]
        raise _CliError(f"{detail} (HTTP {response.status_code} from {base}{path})")
    return response.json()


def _utf8_safe_stdout() -> None:
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(errors="replace")


def viewer_url(url: str, trace_id: str) -> str:
    """The trace viewer's page for one trace on the collector at ``url``."""
    return f"{url.rstrip('/')}/traces/{trace_id}"


def _cmd_tree(args: argparse.Namespace) -> int:
    _utf8_safe_stdout()
    tree = _get(args.url, f"/api/traces/{args.trace_id}")
    print(format_tree(tree))
    print(f"\nin the trace viewer: {viewer_url(args.url, str(tree.get('id') or args.trace_id))}")
    return 0


def _cmd_traces(args: argparse.Namespace) -> int:
    _utf8_safe_stdout()
    print(_format_traces(_get(args.url, "/api/traces", {"limit": args.limit})))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("galileo-collector serve needs uvicorn: pip install 'galileo[collector]'", file=sys.stderr)
        return 2
    from galileo.collector import create_app

    db_path = Path(args.db).expanduser()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    app = create_app(str(db_path), token_ttl=args.token_ttl, latency_ms=args.latency)
    print(
        f"galileo-collector {__version__} on http://{args.host}:{args.port} (db: {db_path});"
        f" trace viewer: http://{args.host}:{args.port}/",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        access_log=args.access_log,
        log_level="info" if args.access_log else "warning",
    )
    return 0


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="galileo-collector", description="A local Galileo-compatible collector"
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default: %(default)s)")
    serve.add_argument("--db", default=str(DEFAULT_DB), help="SQLite file (default: %(default)s)")
    ttl_help = "token lifetime in seconds (default: %(default)s)"
    serve.add_argument("--token-ttl", type=_positive_float, default=3600.0, help=ttl_help)
    serve.add_argument("--access-log", action="store_true", help="log every request")
    latency_help = "delay every trace/span write by this many milliseconds, to test clients (default: 0)"
    serve.add_argument("--latency", type=float, default=0.0, metavar="MS", help=latency_help)
    serve.set_defaults(handler=_cmd_serve)

    tree = commands.add_parser("tree", help="print one trace as a tree")
    tree.add_argument("trace_id")
    tree.add_argument("--url", default=default_url(), help="collector URL (default: %(default)s)")
    tree.set_defaults(handler=_cmd_tree)

    traces = commands.add_parser("traces", help="list the latest traces")
    traces.add_argument("--url", default=default_url(), help="collector URL (default: %(default)s)")
    traces.add_argument("--limit", type=_positive_int, default=20, help="how many (default: %(default)s)")
    traces.set_defaults(handler=_cmd_traces)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except _CliError as exc:
        print(f"galileo-collector: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
