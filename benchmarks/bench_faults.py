"""What the SDK costs a request handler when the backend is slow, failing or gone, and where the records go.

The seed handler of ``bench_request_path.py`` (``get_request_logger()`` + ``add_workflow_span`` + ``conclude``
+ ``flush``, behind ``TracingMiddleware``; each request logs 2 records: the request's own trace and its
workflow span) and the same app without the SDK are served by uvicorn (threads of this process) and loaded
by 20 concurrent clients in another process, paced at ``--rate`` requests/s in all, the two apps interleaved
round by round. Backend scenarios, each on a fresh collector and a fresh sender:

- ``healthy``: the collector as is;
- ``300 ms``: every trace/span write delayed 300 ms (``PUT /api/faults {"latency_ms": 300}``);
- ``500s``: every write answered 500 (``PUT /api/faults {"fail_count": 10**9, "fail_status": 500}``);
- ``down``: the collector stopped (connections refused).

The warm-up (login, project and log stream resolution, 10 requests) runs against the healthy collector;
the fault is switched on after it, as when a backend starts misbehaving under a running service. For
``500s`` and ``down`` GALILEO_RETRY_WINDOW is set to ``--retry-window`` (10 s by default instead of 120 s) so
that the records are given up within the run; the output says so.

Printed per scenario: client-side request latency p50 (bare / SDK) and the p50 and p99 ratios SDK ÷ bare
(median over rounds; goal ≤ 1.2x whatever the backend does), the records logged during the load, how many of
them the collector stored (its SQLite database, read directly), how many the sender dropped (by reason,
from ``galileo.stats()``, which counts records; a trace's ``is_complete`` PATCH is an update, counted apart)
and how many were still queued when the wait for the sender to settle ended. A
second table shows ``threading.active_count()`` after the warm-up, at its peak during the load (sampled
between loads), once the sender settled, and after ``galileo.shutdown()``: the sender's threads are a fixed
pool, whatever the backend does.

Run: ``python benchmarks/bench_faults.py [--quick] [--clients C] [--requests N] [--rounds R] [--rate RPS]
[--only NAME]`` (about 2.5 minutes; ``--quick``: about 1.5 minutes; ``--only 500s`` runs one scenario).
Loopback only; bounded; prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, percentile, sender_settled, serve, stored_records
from bench_request_path import _apps, _load, sdk_backend

import galileo

#: Records each seed request logs: the request's trace (opened at the first span) and its workflow span.
RECORDS_PER_REQUEST = 2
#: Requests of the warm-up (2 clients x 5), whose records are delivered before the fault is switched on.
_WARMUP_CLIENTS, _WARMUP_PER_CLIENT = 2, 5


@dataclass
class Scenario:
    name: str
    #: What to PUT on /api/faults after the warm-up; None: nothing; "down": stop the collector.
    fault: dict[str, Any] | str | None
    #: GALILEO_RETRY_WINDOW for this scenario (None: the default, 120 s).
    retry_window: float | None = None
    #: How long to wait, after the load, for the sender to deliver or give up everything.
    settle_s: float = 60.0


@dataclass
class Outcome:
    scenario: Scenario
    bare_ms: list[float] = field(default_factory=list)
    sdk_ms: list[float] = field(default_factory=list)
    ratios50: list[float] = field(default_factory=list)
    ratios99: list[float] = field(default_factory=list)
    logged: int = 0
    delivered: int = 0
    dropped: int = 0
    dropped_by_reason: dict[str, int] = field(default_factory=dict)
    queued: int = 0
    retried: int = 0
    settled_after: float | None = None
    waited: float = 0.0
    threads_warm: int = 0
    threads_peak: int = 0
    threads_settled: int = 0
    threads_after_shutdown: int = 0


def _scenarios(retry_window: float) -> list[Scenario]:
    short = retry_window + 30.0  # the window, the last backoff step and some slack
    return [
        Scenario("healthy", None),
        Scenario("300 ms latency", {"latency_ms": 300}, settle_s=90.0),
        Scenario("persistent 500s", {"fail_count": 10**9, "fail_status": 500}, retry_window, short),
        Scenario("backend down", "down", retry_window, short),
    ]


def _wait_settled(deadline_s: float) -> float | None:
    """Seconds until the sender holds nothing (all delivered or given up), or None past the deadline."""
    started = time.monotonic()
    while time.monotonic() - started < deadline_s:
        if sender_settled():
            return time.monotonic() - started
        time.sleep(0.1)
    return None


def run(scenario: Scenario, clients: int, per_client: int, rounds: int, rate: float) -> Outcome:
    out = Outcome(scenario)
    with sdk_backend(f"faults-{scenario.name.replace(' ', '-')}") as collector:
        if scenario.retry_window is None:
            os.environ.pop("GALILEO_RETRY_WINDOW", None)
        else:
            os.environ["GALILEO_RETRY_WINDOW"] = f"{scenario.retry_window:g}"
        sdk_ns: list[int] = []
        with_sdk, without = _apps(sdk_ns)
        with serve(without) as bare_url, serve(with_sdk) as sdk_url:
            _load(sdk_url, _WARMUP_CLIENTS, _WARMUP_PER_CLIENT)  # login, project and log stream resolution
            _load(bare_url, _WARMUP_CLIENTS, _WARMUP_PER_CLIENT)
            warm_records = _WARMUP_CLIENTS * _WARMUP_PER_CLIENT * RECORDS_PER_REQUEST
            collector.wait_for(lambda: stored_records(collector) >= warm_records, timeout=30)
            _wait_settled(30)
            before = galileo.stats()
            stored_before = stored_records(collector)
            handled_before = len(sdk_ns)
            out.threads_warm = out.threads_peak = threading.active_count()

            if scenario.fault == "down":
                collector.stop()
            elif scenario.fault is not None:
                answer = requests.put(f"{collector.url}/api/faults", json=scenario.fault, timeout=5)
                answer.raise_for_status()

            for _ in range(rounds):  # interleaved rounds; the ratio reported is the median round's
                bare = _load(bare_url, clients, per_client, rate)
                out.threads_peak = max(out.threads_peak, threading.active_count())
                sdk = _load(sdk_url, clients, per_client, rate)
                out.threads_peak = max(out.threads_peak, threading.active_count())
                out.ratios50.append(percentile(sdk, 50) / percentile(bare, 50))
                out.ratios99.append(percentile(sdk, 99) / percentile(bare, 99))
                out.bare_ms += bare
                out.sdk_ms += sdk
            load_end = time.monotonic()
            out.settled_after = _wait_settled(scenario.settle_s)
            out.waited = time.monotonic() - load_end
            out.threads_settled = threading.active_count()
            after = galileo.stats()

        out.logged = (len(sdk_ns) - handled_before) * RECORDS_PER_REQUEST
        out.delivered = stored_records(collector) - stored_before
        out.dropped = after["dropped"] - before["dropped"]
        reasons = Counter(after["dropped_by_reason"])
        reasons.subtract(before["dropped_by_reason"])
        out.dropped_by_reason = {reason: n for reason, n in sorted(reasons.items()) if n}
        out.queued = after["queued"]
        out.retried = after["retried"] - before["retried"]
        galileo.shutdown(timeout=2)  # what is left is given up (counted as shutdown_timeout)
        out.threads_after_shutdown = _threads_after_shutdown()
    return out


def _threads_after_shutdown() -> int:
    """Thread count once the stopped sender's workers (daemon threads, told to stop) have exited."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(
        t.name.startswith("galileo-sender-") for t in threading.enumerate()
    ):
        time.sleep(0.05)
    return threading.active_count()


def _spread(ratios: list[float]) -> str:
    """``median (min-max)`` over rounds."""
    return f"{median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})" if ratios else "-"


def _report(outcomes: list[Outcome], threads_at_start: int, report: Callable[[str], None]) -> None:
    report("")
    report(
        "| scenario | p50 ms bare / SDK | p50 ratio (rounds' range) | p99 ratio (rounds' range) | "
        "records logged | delivered | "
        "not delivered | dropped (by reason) | still queued |"
    )
    report("|---|---|---|---|---|---|---|---|---|")
    for o in outcomes:
        reasons = ", ".join(f"{n} {reason}" for reason, n in o.dropped_by_reason.items())
        dropped = f"{o.dropped} ({reasons})" if reasons else str(o.dropped)
        report(
            f"| {o.scenario.name} | {percentile(o.bare_ms, 50):.2f} / {percentile(o.sdk_ms, 50):.2f} | "
            f"{_spread(o.ratios50)} | {_spread(o.ratios99)} | {o.logged} | {o.delivered} | "
            f"{o.logged - o.delivered} | {dropped} | {o.queued} |"
        )
    report("")
    report(
        "| scenario | sender settled after load | requests retried | threads after warm-up | "
        "peak during load | after settling | after shutdown() |"
    )
    report("|---|---|---|---|---|---|---|")
    for o in outcomes:
        settled = (
            f"{o.settled_after:.1f} s" if o.settled_after is not None else f"NOT within {o.waited:.0f} s"
        )
        report(
            f"| {o.scenario.name} | {settled} | {o.retried} | {o.threads_warm} | {o.threads_peak} | "
            f"{o.threads_settled} | {o.threads_after_shutdown} |"
        )
    report("")
    report(
        "records logged: handled SDK requests x 2 (trace + workflow span); delivered: records the collector "
        "stored; dropped and still queued: galileo.stats() (records; is_complete PATCHes are updates, "
        "counted apart)"
    )
    report(f"threads: {threads_at_start} at start, {threading.active_count()} at the end")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short run (2 rounds of 3 requests per client)"
    )
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, help="requests per client per round (default 5; quick 3)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 4; quick 2)")
    parser.add_argument(
        "--rate", type=float, default=100.0, help="paced load, requests/s in all (default 100)"
    )
    parser.add_argument(
        "--retry-window", type=float, default=10.0, help="GALILEO_RETRY_WINDOW for 500s / down (default 10)"
    )
    parser.add_argument(
        "--only", action="append", help="run the scenarios whose name contains this (repeatable), e.g. 500s"
    )
    args = parser.parse_args()
    per_client = args.requests or (3 if args.quick else 5)
    rounds = args.rounds or (2 if args.quick else 4)
    threads_at_start = threading.active_count()
    print(
        f"seed handler on uvicorn, loopback; {args.clients} concurrent clients (another process), "
        f"{args.rate:g} requests/s in all, {per_client} requests per client per round, {rounds} interleaved "
        f"rounds per app; ratios SDK / bare: median over rounds; {RECORDS_PER_REQUEST} records per request"
    )
    print(
        f"persistent 500s and backend down run with GALILEO_RETRY_WINDOW={args.retry_window:g} s "
        "(default 120 s) so that the records are given up within the run",
        flush=True,
    )
    outcomes = []
    for scenario in _scenarios(args.retry_window):
        if args.only and not any(part in scenario.name for part in args.only):
            continue
        started = time.monotonic()
        outcomes.append(run(scenario, args.clients, per_client, rounds, args.rate))
        print(f"{scenario.name}: done in {time.monotonic() - started:.0f} s", flush=True)
    os.environ.pop("GALILEO_RETRY_WINDOW", None)
    _report(outcomes, threads_at_start, print)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
