"""A local, Galileo-compatible collector: see your traces without a Galileo account.

The collector speaks the part of Galileo's HTTP API that logging clients use (login, projects, log streams,
trace and span writes), validates every write against Galileo's published JSON Schemas, and stores what it
receives in a SQLite file. It is the SDK's default local backend (``http://localhost:8088``) and the backend
of the test suite; any Galileo client works against it unchanged, the published ``galileo`` SDK included::

    pip install 'galileo[collector]'
    galileo-collector serve                      # or: python -m galileo.collector serve
    export GALILEO_API_URL=http://localhost:8088 GALILEO_API_KEY=anything
    python my_service.py                         # logs traces as it would to Galileo
    galileo-collector traces                     # the latest traces
    galileo-collector tree <trace id>            # one trace as an indented tree
    open http://localhost:8088/                  # the trace viewer

``serve`` options: ``--host`` (127.0.0.1), ``--port`` (8088), ``--db`` (``~/.galileo/collector.db``),
``--token-ttl`` (seconds a login token lives, 3600), ``--access-log``. ``tree`` and ``traces`` take ``--url``
(default ``$GALILEO_API_URL`` or ``http://localhost:8088``).

Design, one module per concern:

* :mod:`galileo.collector.app` — the Starlette routes (Galileo's plus a small ``/api`` for tools);
* :mod:`galileo.collector.store` — the SQLite store: idempotent writes by record id, nested spans flattened,
  late spans linked by id when a tree is read, traces spanning several log streams;
* :mod:`galileo.collector._validation` — JSON Schema validation of write bodies (needs ``jsonschema``);
* :mod:`galileo.collector._auth` — the HS256 bearer tokens, signed with a secret kept in the database;
* :mod:`galileo.collector.cli` — the ``galileo-collector`` command;
* :mod:`galileo.collector.viewer` — the trace viewer at ``/`` (its pages, static assets and ``/api/viewer/``).

Any API key is accepted: this is a local tool, not a security boundary. Bind it to loopback (the default).
Reading a trace whose trace record has not arrived yet answers 404 on every route, even if some of its spans
are stored; they show up as soon as the trace record does.

In Python, :func:`create_app` returns the ASGI app, e.g. for ``uvicorn`` or Starlette's ``TestClient``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["create_app"]


def create_app(db_path: str, *, token_ttl: float = 3600.0, latency_ms: float = 0.0) -> Starlette:
    """The collector as an ASGI app storing into the SQLite file ``db_path`` (created if missing).

    ``token_ttl`` is how many seconds a token from ``POST /login/api_key`` stays valid;
    ``latency_ms`` delays every trace/span write (see :mod:`galileo.collector._faults`; also changed at run
    time through ``/api/faults``). The app owns its
    store and closes it when the app's lifespan ends.
    """
    # Imported here so that ``galileo.collector.cli`` (tree, traces) works without the server's dependencies.
    from galileo.collector._faults import Faults
    from galileo.collector.app import build_app
    from galileo.collector.store import Store

    if not token_ttl > 0:
        raise ValueError(f"token_ttl must be a positive number of seconds, got {token_ttl!r}")
    faults = Faults()
    faults.update({"latency_ms": latency_ms})
    return build_app(Store(db_path), token_ttl=token_ttl, faults=faults)
