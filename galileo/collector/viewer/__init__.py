"""The trace viewer: a web page in the local collector for looking at what arrived.

``galileo-collector serve``, then open http://localhost:8088/ : the latest traces (newest first, filtered by
project and log stream, searched by name or id, updated live), and for each trace a collapsible waterfall of
its spans on a shared time axis, coloured by span type, errors and service boundaries marked, with each
span's input, output, metadata and timings one click away. ``/traces/{id}`` and ``/traces/{id}?span={id}``
are deep links.

Design, one module per concern:

* :mod:`galileo.collector.viewer.queries` — the reads from the store, shaped for the page and fast with
  100,000 traces stored (keyset pagination over covering indexes, span counts and services kept by the
  store on insert);
* :mod:`galileo.collector.viewer.api` — the JSON API under ``/api/viewer/`` that the page draws from;
* :mod:`galileo.collector.viewer._params` — validation of its query strings (400 with a clear message);
* :mod:`galileo.collector.viewer.pages` — the HTML shell and the static assets (``templates/``,
  ``static/``: plain ES modules and CSS, no build step, no third-party code, no network).

User data (names, inputs, outputs, metadata) only ever reaches the page as JSON, and the page's script puts
it in the document as text nodes; the shell's few server-side values are HTML-escaped.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from galileo.collector.store import Store
from galileo.collector.viewer.api import api_routes
from galileo.collector.viewer.pages import page_routes

__all__ = ["viewer_routes"]


def viewer_routes(store: Store) -> list[BaseRoute]:
    """The viewer's JSON API and pages over ``store``, to add to the collector's routes."""
    return [*api_routes(store), *page_routes(store)]
