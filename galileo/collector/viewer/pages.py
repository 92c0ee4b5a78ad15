"""The viewer's HTML pages and static assets, shipped inside the package (no network, no CDN).

``GET /`` (the trace list) and ``GET /traces/{trace_id}`` (one trace; ``?span=ID`` opens a span) answer the
same small HTML shell, filled in on the server with escaped values only (the view's name, the trace id, the
version); the page's script (``static/viewer.js`` and its modules) draws everything else from the JSON API
(:mod:`galileo.collector.viewer.api`), putting user text in the page with DOM text nodes only. A trace
page for an id of which no record is stored (neither the trace record nor a span) answers 404 with the same
shell, which then says so.

Every page carries a Content-Security-Policy allowing only the collector's own scripts, styles and
connections: even a rendering mistake could not run a span's text as script.
"""

from __future__ import annotations

import html
import re
import uuid
from functools import lru_cache
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from galileo._version import __version__
from galileo.collector.store import Store

__all__ = ["PAGE_HEADERS", "STATIC_PATH", "page_routes", "render", "static_dir", "templates_dir"]

STATIC_PATH = "/viewer/static"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self';"
        " base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _package_dir(name: str) -> Path:
    return Path(str(resources.files("galileo.collector.viewer").joinpath(name)))


def templates_dir() -> Path:
    """Where the page templates are, inside the installed package."""
    return _package_dir("templates")


def static_dir() -> Path:
    """Where the page's scripts and styles are, inside the installed package."""
    return _package_dir("static")


@lru_cache(maxsize=8)
def _template(name: str) -> str:
    return (templates_dir() / name).read_text("utf-8")


def render(name: str, **values: str) -> str:
    """The template ``name`` with each ``{{ key }}`` replaced by ``values[key]``, HTML-escaped.

    A placeholder without a value is an error (KeyError): a template never shows a raw ``{{ }}``.
    """
    return _PLACEHOLDER.sub(lambda match: html.escape(values[match.group(1)], quote=True), _template(name))


class _Pages:
    def __init__(self, store: Store) -> None:
        self.store = store

    def _shell(self, view: str, trace_id: str = "", status: int = 200) -> Response:
        title = "Traces" if view == "list" else f"Trace {trace_id}"
        page = render(
            "page.html", title=title, view=view, trace_id=trace_id, version=__version__, static=STATIC_PATH
        )
        return HTMLResponse(page, status_code=status, headers=PAGE_HEADERS)

    async def trace_list(self, request: Request) -> Response:
        return self._shell("list")

    async def trace(self, request: Request) -> Response:
        raw = request.path_params["trace_id"]
        try:
            trace_id = str(uuid.UUID(raw))
        except ValueError:
            return self._shell("trace", raw, status=404)
        found = self.store.query(  # its trace record, or a span of it (the record may be missing)
            "SELECT 1 FROM records WHERE trace_id = ? AND (type != 'trace' OR id = trace_id) LIMIT 1",
            (trace_id,),
        )
        return self._shell("trace", trace_id, status=200 if found else 404)


def page_routes(store: Store) -> list[BaseRoute]:
    """``/``, ``/traces/{trace_id}`` and the static assets under :data:`STATIC_PATH`."""
    pages = _Pages(store)
    return [
        Route("/", pages.trace_list, methods=["GET"]),
        Route("/traces/{trace_id}", pages.trace, methods=["GET"]),
        Mount(STATIC_PATH, app=StaticFiles(directory=static_dir()), name="viewer-static"),
    ]
