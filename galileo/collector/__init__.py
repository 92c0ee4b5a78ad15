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

It also takes OpenTelemetry spans over OTLP/HTTP (protobuf or JSON): point any OTLP exporter at
``http://localhost:8088/v1/traces`` (``OTEL_EXPORTER_OTLP_ENDPOINT=http://localhost:8088``), or the published
SDK's ``GalileoOTLPExporter`` at ``/otel/traces``; the spans become records beside the SDK's, in one tree
with them when their ids meet (:mod:`galileo.collector._otlp_routes`).

``serve`` options: ``--host`` (127.0.0.1), ``--port`` (8088), ``--db`` (``~/.galileo/collector.db``),
``--token-ttl`` (seconds a login token lives, 3600), ``--api-key``, ``--allowed-host``, ``--max-body-mb``,
``--test-endpoints``, ``--access-log``: see :mod:`galileo.collector.cli`. ``tree`` and ``traces`` take
``--url`` (default ``$GALILEO_API_URL`` or ``http://localhost:8088``) and ``--api-key``.

Design, one module per concern:

* :mod:`galileo.collector._guard` — the checks before any route: Host, Origin, credentials, body size/type;
* :mod:`galileo.collector.app` — the Starlette routes (Galileo's plus a small ``/api`` for tools);
* :mod:`galileo.collector._body` — JSON bodies: depth limit, text that is not valid Unicode made so;
* :mod:`galileo.collector._otlp_routes`, :mod:`galileo.collector._otlp` (decoding),
  :mod:`galileo.collector._otlp_records` (spans as records, their parents) — OTLP/HTTP trace ingest;
* :mod:`galileo.collector.store` — the SQLite store: idempotent writes by record id, nested spans flattened,
  late spans linked by id when a tree is read, traces spanning several log streams (schema in ``_schema``);
* :mod:`galileo.collector._validation` — JSON Schema validation of write bodies (needs ``jsonschema``);
* :mod:`galileo.collector._auth` — the HS256 bearer tokens, signed with a secret kept in the database;
* :mod:`galileo.collector._login` — the viewer's login form, for a collector with an API key;
* :mod:`galileo.collector._request_log`, :mod:`galileo.collector._faults` — the test endpoints;
* :mod:`galileo.collector.cli` — the ``galileo-collector`` command;
* :mod:`galileo.collector.viewer` — the trace viewer at ``/`` (its pages, static assets and ``/api/viewer/``).

Safe to leave running (see :mod:`galileo.collector._guard`): it answers only to the names of the address it
is bound to (``--allowed-host`` adds others), refuses cross-origin writes, caps bodies (``--max-body-mb``,
32 by default) and their nesting, and serves the test endpoints (``/api/requests``, ``/api/faults``) only
with ``--test-endpoints``. Without ``--api-key`` (or ``GALILEO_COLLECTOR_API_KEY``) any API key logs in and
the viewer is open: fine on loopback, the default bind. With a key, every route but the health check and
the logins needs it (the viewer has a login form), and it should sit behind a TLS proxy when reached over a
network: the key travels in clear over plain HTTP.

A trace whose trace record has not arrived is shown from the spans that did (``"trace_record": false``) on
``/api/traces`` and in the viewer; Galileo's ``GET /v2/projects/{pid}/traces/{id}`` answers 404 for it
until the record arrives.

In Python, :func:`create_app` returns the ASGI app, e.g. for ``uvicorn`` or Starlette's ``TestClient``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["MIN_API_KEY_LENGTH", "create_app"]


#: The shortest API key the collector takes: a key guards every trace it holds.
MIN_API_KEY_LENGTH = 16


def create_app(
    db_path: str,
    *,
    token_ttl: float = 3600.0,
    latency_ms: float = 0.0,
    api_key: str | None = None,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_body_mb: float = 32,
    test_endpoints: bool = False,
) -> Starlette:
    """The collector as an ASGI app storing into the SQLite file ``db_path`` (created if missing).

    ``token_ttl`` is how many seconds a token from ``POST /login/api_key`` (or the viewer's login) stays
    valid; ``latency_ms`` delays every trace/span write (see :mod:`galileo.collector._faults`). ``api_key``
    (at least :data:`MIN_API_KEY_LENGTH` characters), when given, is the only key that logs in and every
    route but the health check and the logins needs it; ``host`` is the address the app is served on and,
    unless it is a wildcard, a name the app answers to besides localhost, 127.0.0.1 and [::1];
    ``allowed_hosts`` adds names (``"*"``: any); ``max_body_mb`` caps a request body;
    ``test_endpoints`` serves ``/api/requests`` and ``/api/faults``. See :mod:`galileo.collector._guard`.
    The app owns its store and closes it when the app's lifespan ends. A bad setting raises ValueError
    naming it (the key's value is never shown).
    """
    # Imported here so that ``galileo.collector.cli`` (tree, traces) works without the server's dependencies.
    from galileo.collector._faults import Faults
    from galileo.collector._guard import Access
    from galileo.collector.app import build_app
    from galileo.collector.store import Store

    if not token_ttl > 0:
        raise ValueError(f"token_ttl must be a positive number of seconds, got {token_ttl!r}")
    if not max_body_mb > 0:
        raise ValueError(f"max_body_mb must be a positive number of MiB, got {max_body_mb!r}")
    if api_key is not None and (
        len(api_key.strip()) < MIN_API_KEY_LENGTH or not api_key.isprintable() or not api_key.isascii()
    ):
        raise ValueError(
            f"the API key must be at least {MIN_API_KEY_LENGTH} printable ASCII characters"
            f" (it has {len(api_key)});"
            ' make one with: python -c "import secrets; print(secrets.token_urlsafe(24))"'
        )
    hosts = list(allowed_hosts)
    for name in hosts:
        if not name or any(c in name for c in "/@ ") or not name.isprintable():
            raise ValueError(
                f"allowed host must be a host name or address without a scheme or path: {name!r}"
            )
    faults = Faults()
    faults.update({"latency_ms": latency_ms})
    store = Store(db_path)
    access = Access.create(
        store.secret, api_key=api_key, bind_host=host, allowed_hosts=hosts, max_body_mb=max_body_mb
    )
    return build_app(store, token_ttl=token_ttl, access=access, faults=faults, test_endpoints=test_endpoints)
