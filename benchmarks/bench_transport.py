"""What one write costs the sender thread in CPU: ``Client.write`` against a bare ``http.client`` exchange.

The SDK's sender threads run in the application's process: every µs of CPU they spend per HTTP write is
taken from the request handlers (the same cores, the same GIL). This measures that CPU, per write, for:

- ``raw http.client``: a keep-alive ``http.client.HTTPConnection`` POSTing the bytes the SDK sends, to the
  same path, with the same headers, reading the answer in full: the floor any Python HTTP client sits on;
- ``urllib3 pool.urlopen``: the same through the client's own urllib3 connection pool, called as the client
  calls it, and nothing else: the floor for an exchange with urllib3's pool and retries;
- ``Client.write before``: the exchange path as it was before the pool's ``urlopen`` was called directly (a
  copy kept here for comparison only: ``PoolManager.urlopen`` with the full URL, header dicts and a
  ``json.dumps`` encoder built per call, the answer copied into an object of its own);
- ``Client.write``: the SDK's write as shipped (JSON-encoding the body dict, as the sender hands it over);
- ``Client.write, bytes body``: the same with the body already encoded, like the raw exchange.

Each figure is the calling thread's CPU time (``time.thread_time_ns``) over a short block of writes,
divided by the count: the median over the rounds, with the middle half of the rounds (p25-p75). A round
runs one block of each variant, in turn (each round starts with the next one), so that load from other
processes weighs on all of them alike; "x raw" is the median over the rounds of each block's ratio to the
raw exchange's block in the same round. The writes go to the tests' collector subprocess on loopback, the
same trace each time (stored by id, so the database does not grow); its CPU is another process's and not
counted. A few untimed writes before each block keep the connections warm.

Run: ``python benchmarks/bench_transport.py [--writes N] [--rounds R] [--quick]``. Loopback only; bounded
(``--writes`` per block, at most 1,000; ``--rounds``, at most 200).
"""

from __future__ import annotations

import argparse
import http.client
import importlib.metadata
import json
import os
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from typing import Any

import urllib3

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, percentile, start_collector

from galileo import schema
from galileo._transport import (
    _RETRY,
    SDK_HEADER,
    Client,
    Outcome,
    Result,
    Target,
    _ExchangeError,
    _failure,
    _pool_manager,
)

TARGET = Target(project="bench-transport", project_id=None, log_stream="writes", log_stream_id=None)
#: Untimed writes before each block: a keep-alive connection the collector closed while idle is replaced.
WARM_UP = 5


class _BeforeAnswer:
    """The answer object of the path before: the status, headers and body copied out of urllib3's."""

    __slots__ = ("data", "headers", "status")

    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self.status = status
        self.headers = headers
        self.data = data


class _BeforeClient(Client):
    """``Client`` with the exchange path as it was before (comparison only; login and look-ups unchanged)."""

    def __init__(self, api_url: str, api_key: str) -> None:
        super().__init__(api_url, api_key)
        self._manager: urllib3.PoolManager | None = None
        self._manager_lock = threading.Lock()
        self._before_headers = {**self._extra_headers, "X-Galileo-SDK": SDK_HEADER}

    def _connections(self) -> urllib3.PoolManager:
        manager = self._manager
        if manager is None:
            with self._manager_lock:
                manager = self._manager
                if manager is None:
                    manager = self._manager = _pool_manager(self.api_url, self._timeout)
        return manager

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: Mapping[str, Any] | None = None,
        token: str | None = None,
    ) -> Any:
        headers = {**self._before_headers, "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = self.api_url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            answer = self._connections().urlopen(method, url, body=body, headers=headers, redirect=False)
            return _BeforeAnswer(answer.status, answer.headers, answer.data)
        except urllib3.exceptions.HTTPError as exc:
            raise _ExchangeError(_failure(exc, self.timeout)) from exc

    def write(self, method: str, target: Target, path: str, body: dict[str, Any] | bytes) -> Result:
        try:
            ids = self.resolve(target)
            if isinstance(body, dict):
                body = dict(body, log_stream_id=ids.log_stream_id, experiment_id=ids.experiment_id)
                data = json.dumps(body, separators=(",", ":"), default=str).encode()
            else:
                data = body
            response = self.call(method, f"/v2/projects/{ids.project_id}{path}", body=data)
        except _ExchangeError as exc:
            return exc.result
        except Exception as exc:
            return Result(Outcome.RETRY, detail=f"unexpected {type(exc).__name__}")
        status = response.status
        if 200 <= status < 300:
            return Result(Outcome.OK, status)
        return Result(Outcome.REJECTED, status, detail=f"HTTP {status}")  # (never reached here)


def _body() -> dict[str, Any]:
    """A trace with a workflow span, as a request handler's ``conclude`` + ``flush`` sends it."""
    trace = schema.Trace(input="What did Galileo see?", name="GET /ask", output="Jupiter's moons")
    trace.spans.append(
        schema.WorkflowSpan(input="What did Galileo see?", name="answer", output="Jupiter's moons")
    )
    return schema.traces_ingest_body([trace], log_stream_id=None)


def _cpu_us_per_call(call: Callable[[], bool], count: int) -> tuple[float, int]:
    """(µs of this thread's CPU per call, how many calls failed) for ``count`` calls."""
    failed = 0
    started = time.thread_time_ns()
    for _ in range(count):
        if not call():
            failed += 1
    return (time.thread_time_ns() - started) / count / 1000, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--writes", type=int, default=100, help="writes per variant per round (a block)")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--quick", action="store_true", help="10 rounds of 100 writes")
    args = parser.parse_args()
    writes = min(1000, max(1, args.writes))
    rounds = 10 if args.quick else min(200, max(1, args.rounds))

    with start_collector() as collector:
        client = Client(collector.url, "bench-key")
        before = _BeforeClient(collector.url, "bench-key")
        body = _body()
        for sdk in (client, before):
            first = sdk.write("POST", TARGET, "/traces", body)  # logs in, resolves project and log stream
            if first.outcome is not Outcome.OK:
                print(f"the collector refused the first write: {first.detail}")
                return
        ids = client.resolve(TARGET)
        path = f"/v2/projects/{ids.project_id}/traces"
        data = json.dumps(
            dict(body, log_stream_id=ids.log_stream_id, experiment_id=ids.experiment_id),
            separators=(",", ":"),
            default=str,
        ).encode()
        headers = {  # what the SDK sends (urllib3 adds its User-Agent; http.client adds the rest alike)
            "X-Galileo-SDK": SDK_HEADER,
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {client._current_token()}",
            "User-Agent": f"python-urllib3/{importlib.metadata.version('urllib3')}",
        }
        route = client._route  # (set up by the first write)
        if route is None or route.pool is None:
            print("the client goes through a proxy (HTTP_PROXY): unset it, or add 127.0.0.1 to NO_PROXY")
            return
        pool, timeout = route.pool, client._timeout
        raw = http.client.HTTPConnection("127.0.0.1", collector.port, timeout=10)
        sdk_headers = {name: value for name, value in headers.items() if name != "User-Agent"}

        def raw_write() -> bool:
            try:
                raw.request("POST", path, data, headers)
                answer = raw.getresponse()
                answer.read()
            except (http.client.HTTPException, OSError):  # (the collector closed it while idle)
                raw.close()  # reconnects on the next request
                return False
            return answer.status == 200

        def pool_write() -> bool:
            answer = pool.urlopen(
                "POST",
                path,
                body=data,
                headers=sdk_headers,
                retries=_RETRY,
                redirect=False,
                assert_same_host=False,
                timeout=timeout,
            )
            return answer.status == 200

        variants: dict[str, Callable[[], bool]] = {
            "raw http.client (the floor)": raw_write,
            "urllib3 pool.urlopen": pool_write,
            "Client.write before": lambda: (
                before.write("POST", TARGET, "/traces", body).outcome is Outcome.OK
            ),
            "Client.write": lambda: client.write("POST", TARGET, "/traces", body).outcome is Outcome.OK,
            "Client.write, bytes body": lambda: (
                client.write("POST", TARGET, "/traces", data).outcome is Outcome.OK
            ),
        }
        names = list(variants)
        figures: dict[str, list[float]] = {name: [] for name in names}
        failures = dict.fromkeys(names, 0)
        print(
            f"{rounds} rounds of {writes} writes per variant, a {len(data):,}-byte body, to {collector.url}"
        )
        for round_ in range(rounds):
            for name in names[round_ % len(names) :] + names[: round_ % len(names)]:
                _cpu_us_per_call(variants[name], WARM_UP)
                us, failed = _cpu_us_per_call(variants[name], writes)
                figures[name].append(us)
                failures[name] += failed
        raw.close()

    floor = figures[names[0]]
    print()
    print(f"{'µs of CPU per write':<30}{'median':>8}{'p25':>8}{'p75':>8}{'x raw':>8}")
    for name in names:
        values = figures[name]
        ratio = median([value / raw_us for value, raw_us in zip(values, floor, strict=True)])
        note = f"  ({failures[name]} writes failed)" if failures[name] else ""
        print(
            f"{name:<30}{median(values):>8.1f}{percentile(values, 25):>8.1f}{percentile(values, 75):>8.1f}"
            f"{ratio:>8.2f}{note}"
        )
    old, new = median(figures["Client.write before"]), median(figures["Client.write"])
    print()
    print(f"Client.write: {old - new:.1f} µs less CPU per write than before ({(old - new) / old:.0%});")
    print(f"{new - median(floor):.1f} µs above the raw exchange (before: {old - median(floor):.1f} µs).")


if __name__ == "__main__":
    main()
