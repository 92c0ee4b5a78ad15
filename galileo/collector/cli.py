"""The ``galileo-collector`` command (also ``python -m galileo.collector``).

Subcommands:

``serve [--host 127.0.0.1] [--port 8088] [--db ~/.galileo/collector.db] [--token-ttl 3600]
[--api-key KEY] [--allowed-host NAME ...] [--max-body-mb 32] [--test-endpoints] [--access-log]
[--latency MS]``
    Run the collector with uvicorn (the ``collector`` extra). Binds first, then prints one line with the URL
    (a port already in use is one clear error, exit status 1), then serves until interrupted. ``--api-key``
    (or ``GALILEO_COLLECTOR_API_KEY``, better: a command line is visible to every user of the machine) is the
    only key that logs in, and every route but the health check and the logins needs it. ``--allowed-host``
    (repeatable) names a Host the collector answers to besides localhost, 127.0.0.1, [::1] and the bound
    address (``*``: any). Binding to an address other machines can reach without a key prints a WARNING;
    binding to every interface (``0.0.0.0``, ``::``) says which names it answers to.
``tree TRACE_ID [--url URL] [--api-key KEY]``
    Print one trace as an indented tree, one line per record: type, name, duration, status and, where a
    span was logged to another log stream than its parent, ``[project / log stream]``. Spans whose parent
    has not arrived are listed after the tree; the last line is the trace's URL in the collector's trace
    viewer. Exit status 1 when the trace is unknown.
``traces [--url URL] [--limit 20] [--api-key KEY]``
    List the latest traces.

``--url`` defaults to ``$GALILEO_API_URL``, else ``http://localhost:8088``; ``--api-key`` to
``$GALILEO_COLLECTOR_API_KEY`` (sent as ``Galileo-API-Key``; needed when the collector has one).
:func:`format_tree` renders a tree as ``tree`` prints it.
"""

from __future__ import annotations

import argparse
import io
import os
import socket
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

from galileo._version import __version__

__all__ = ["API_KEY_ENV", "DEFAULT_DB", "DEFAULT_PORT", "default_url", "format_tree", "main", "viewer_url"]

DEFAULT_PORT = 8088
DEFAULT_DB = Path("~/.galileo/collector.db")
API_KEY_ENV = "GALILEO_COLLECTOR_API_KEY"
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


def _get(url: str, path: str, params: Mapping[str, Any] | None = None, api_key: str | None = None) -> Any:
    base = url.rstrip("/")
    headers = {"Galileo-API-Key": api_key} if api_key else {}
    try:
        response = requests.get(f"{base}{path}", params=params, headers=headers, timeout=_TIMEOUT)
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
    tree = _get(args.url, f"/api/traces/{args.trace_id}", api_key=args.api_key)
    print(format_tree(tree))
    print(f"\nin the trace viewer: {viewer_url(args.url, str(tree.get('id') or args.trace_id))}")
    return 0


def _cmd_traces(args: argparse.Namespace) -> int:
    _utf8_safe_stdout()
    print(_format_traces(_get(args.url, "/api/traces", {"limit": args.limit}, api_key=args.api_key)))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        print("galileo-collector serve needs uvicorn: pip install 'galileo[collector]'", file=sys.stderr)
        return 2
    from galileo.collector import create_app
    from galileo.collector._guard import WILDCARD_HOSTS, host_name, is_loopback

    db_path = Path(args.db).expanduser()
    db_path.parent.mkdir(parents=True, exist_ok=True)
    api_key = args.api_key or os.environ.get(API_KEY_ENV) or None
    try:
        app = create_app(
            str(db_path),
            token_ttl=args.token_ttl,
            latency_ms=args.latency,
            api_key=api_key,
            host=args.host,
            allowed_hosts=args.allowed_host,
            max_body_mb=args.max_body_mb,
            test_endpoints=args.test_endpoints,
        )
    except ValueError as exc:
        raise _CliError(str(exc)) from None
    try:
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        sock = socket.create_server((args.host.strip("[]"), args.port), family=family)
    except OSError as exc:
        raise _CliError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    url = f"http://{'localhost' if host_name(args.host) in WILDCARD_HOSTS else shown}:{args.port}"
    print(f"galileo-collector {__version__} on {url} (db: {db_path}); trace viewer: {url}/", flush=True)
    if host_name(args.host) in WILDCARD_HOSTS:
        names = ", ".join(sorted({"localhost", "127.0.0.1", "[::1]", *args.allowed_host}))
        print(
            f"listening on every interface: answering to Host {names} only; add the names remote clients"
            " use with --allowed-host NAME",
            file=sys.stderr,
            flush=True,
        )
    if "*" in args.allowed_host and api_key is None:
        print(
            "WARNING: --allowed-host '*' without an API key: any web page this machine's browser opens can"
            " reach the collector through DNS rebinding and read every trace. Set GALILEO_COLLECTOR_API_KEY.",
            file=sys.stderr,
            flush=True,
        )
    if not is_loopback(args.host) and api_key is None:
        print(
            f"WARNING: bound to {args.host}, reachable from other machines, without an API key: anyone who"
            " reaches it can read and write every trace. Set GALILEO_COLLECTOR_API_KEY (or --api-key) and"
            " put a TLS proxy in front of it.",
            file=sys.stderr,
            flush=True,
        )
    config = uvicorn.Config(
        app, access_log=args.access_log, log_level="info" if args.access_log else "warning"
    )
    uvicorn.Server(config).run(sockets=[sock])
    return 0


def _positive_mb(text: str) -> float:
    value = _positive_float(text)
    if value > 4096:
        raise argparse.ArgumentTypeError(f"must be at most 4096 MiB: {text!r}")
    return value


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


def _add_api_key(command: argparse.ArgumentParser) -> None:
    key_help = f"the collector's API key, when it has one (default: ${API_KEY_ENV})"
    command.add_argument("--api-key", default=os.environ.get(API_KEY_ENV), metavar="KEY", help=key_help)


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
    key_help = (
        f"the only API key that logs in; every route but /healthcheck needs it (default: ${API_KEY_ENV})"
    )
    serve.add_argument("--api-key", default=None, metavar="KEY", help=key_help)
    host_help = "a Host name to answer to besides localhost and the bound address; repeatable; '*' for any"
    serve.add_argument("--allowed-host", action="append", default=[], metavar="NAME", help=host_help)
    body_help = "largest request body in MiB; larger ones are answered 413 (default: %(default)s)"
    serve.add_argument("--max-body-mb", type=_positive_mb, default=32.0, metavar="MB", help=body_help)
    test_help = "serve the test endpoints /api/requests and /api/faults (off: 404)"
    serve.add_argument("--test-endpoints", action="store_true", help=test_help)
    serve.set_defaults(handler=_cmd_serve)

    tree = commands.add_parser("tree", help="print one trace as a tree")
    tree.add_argument("trace_id")
    tree.add_argument("--url", default=default_url(), help="collector URL (default: %(default)s)")
    _add_api_key(tree)
    tree.set_defaults(handler=_cmd_tree)

    traces = commands.add_parser("traces", help="list the latest traces")
    traces.add_argument("--url", default=default_url(), help="collector URL (default: %(default)s)")
    traces.add_argument("--limit", type=_positive_int, default=20, help="how many (default: %(default)s)")
    _add_api_key(traces)
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
