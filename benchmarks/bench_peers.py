"""What tracing a request costs the service with our SDK and with its peers, measured side by side in one run.

Six subjects serve the same seed handler on uvicorn, each in a process of its own (see ``_peers.py``): the app
without tracing (``bare``), the same app again in another process (``bare-again``, the A/A control), ours
(``TracingMiddleware`` + the seed's SDK calls, to our collector, ``galileo-collector serve`` on loopback),
OpenTelemetry (``otel``: the ASGI instrumentation, a child span, ``BatchSpanProcessor``, OTLP/HTTP to a local
sink), OpenTelemetry lean (``otel-lean``: the same without the instrumentation's ``http send``/``receive``
spans, ``exclude_spans=["receive", "send"]``) and Sentry (``sentry``: the Starlette integration,
``traces_sample_rate=1.0``, DSN to the sink). Each traces one request span and one child span per request.

As in ``bench_request_path.py``, the subjects share half the CPUs; the load generator (its lean asyncio
clients, in a process of its own), the collector and the sink (both at nice 19) share the other half. Three
loads, each run for ``--rounds`` interleaved rounds (every subject once a round, the order rotated by one each
round): paced (``--rate`` requests/s spread over ``--clients`` clients), bursts (all clients at once, 4
bursts a second) and saturating (back to back).

Per subject and load, medians over the rounds with each per-round range (min-max):

- latency p50 (ms) and p50/p99 against ``bare`` in the same round (``bare-again``'s figure there is the A/A
  control: how far this machine's noise alone moves a ratio);
- server CPU µs per request: the serving process's CPU time (``time.process_time()`` read through a control
  endpoint no instrumentation sees; every thread, the exporters' and senders' included) from the start of
  one round to the start of the next, over that round's requests. A round's interval holds the work its
  requests deferred (OpenTelemetry exports every 5 s, Sentry's span batcher flushes every 5 s); the last
  round's closes once every sink holds what it should (or after :data:`_DRAIN_S`). The interval also holds
  the idle process's own work (uvicorn's 10 ticks a second), the same for every subject;
- of that CPU, what the process's threads other than uvicorn's event loop used (exporters, senders; read per
  thread with ``time.pthread_getcpuclockid``);
- CPU added over ``bare`` in the same round, and the A/A control's (``bare-again``'s) beside it in every row;
- spans each subject's sink received for that load against what it should have (records stored by our
  collector for ours): a subject that delivered fewer is marked ``SHORT``.

Then, per load, the ratio ours CPU added / ``otel-lean`` CPU added (issue 20's goal: ≤ 0.5x under bursts and
saturating load; paced load reported, not a goal): the median of the per-round ratios with their range, and
the ratio of the two medians; and a footnote on the paced load's trade.

Run: ``python benchmarks/bench_peers.py [--rounds 5] [--quick] [--clients 20] [--requests N] [--rate 100]
[--loads paced,bursts,saturating] [--subjects bare,ours,...]`` (about 4 minutes by default on the 2-CPU
development machine, 1 with ``--quick``). Needs the ``bench`` extra (``pip install -e
'.[bench,collector,test]'``). With ``BENCH_PROFILE=PATH`` each subject profiles its threads and writes
``PATH.{subject}.{thread}`` at exit (cProfile in thread CPU time, several times slower: for where the time
goes, not for the figures). Loopback only; bounded; prints figures, never asserts.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, NamedTuple

import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import median, percentile, start_collector, stored_records
from _peers import CPU_PATH, SPANS_PER_REQUEST, SUBJECTS
from bench_request_path import _load, _other_cpus, _split_cpus
from collector_process import CollectorProcess, free_port

_PEERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_peers.py")
_LOG_STREAM = "peers"
#: How long a load's last round may wait for every sink to hold what it should (OpenTelemetry exports every
#: 5 s, Sentry's batcher flushes every 5 s).
_DRAIN_S = 20.0


class _Load(NamedTuple):
    name: str
    rate: float  # requests/s in all; 0: back to back
    burst: bool
    per_client: int  # requests per client per round, measured (each client sends one more first, to connect)

    def served(self, clients: int) -> int:
        """Requests a subject serves in a round: the measured ones and each client's first."""
        return clients * (self.per_client + 1)


class _Round(NamedTuple):
    latencies: list[float]  # ms, as the clients saw them
    cpu_s: float  # the serving process's CPU over the round's interval
    background_s: float  # of which its threads other than the event loop's (exporters, senders)


def _app_cpus() -> None:
    split = _split_cpus()
    if split is not None:
        os.sched_setaffinity(0, split[0])


def _backend_cpus() -> None:
    """The CPUs of the clients, at the lowest priority: the collector and the sink stand in for servers that
    run on machines of their own, and catch up whenever the clients wait."""
    _other_cpus()
    os.nice(19)


@contextlib.contextmanager
def _process(args: list[str], env: dict[str, str], preexec: Any, ready_url: str) -> Iterator[str]:
    """``python _peers.py *args`` until the block ends; yields ``ready_url`` once it answers."""
    process = subprocess.Popen([sys.executable, _PEERS, *args], env=env, preexec_fn=preexec)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(ready_url, timeout=2).raise_for_status()
                break
            except requests.RequestException:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{args} did not start (exit code {process.poll()})") from None
                time.sleep(0.1)
        yield ready_url
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def _subjects(names: list[str], sink: str, collector: CollectorProcess) -> Iterator[dict[str, str]]:
    """Every subject served in a process of its own on the app's CPUs: {name: base URL}."""
    env = dict(
        os.environ,
        GALILEO_API_URL=collector.url,
        GALILEO_API_KEY="bench",
        GALILEO_PROJECT="bench",
        GALILEO_LOG_STREAM=_LOG_STREAM,
    )
    with contextlib.ExitStack() as stack:
        urls = {}
        for name in names:
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            stack.enter_context(_process(["serve", name, str(port), sink], env, _app_cpus, url + CPU_PATH))
            urls[name] = url
        yield urls


def _control(url: str) -> dict[str, Any]:
    answer = requests.get(url + CPU_PATH, timeout=10)
    answer.raise_for_status()
    control: dict[str, Any] = answer.json()
    return control


def _delivered(sink: str, collector: CollectorProcess) -> dict[str, dict[str, int]]:
    """{subject: {"spans": ..., "posts": ...}} so far; ours: records stored (posts: :func:`_writes`)."""
    counts: dict[str, dict[str, int]] = requests.get(f"{sink}/counts", timeout=10).json()
    counts["ours"] = {"spans": stored_records(collector, _LOG_STREAM), "posts": 0}
    return counts


def _writes(collector: CollectorProcess) -> int:
    """Write requests (POST, PATCH) the collector logged since its log was last cleared."""
    return sum(1 for entry in collector.requests() if entry["method"] in ("POST", "PATCH"))


def _drain(
    names: list[str],
    sink: str,
    collector: CollectorProcess,
    before: dict[str, dict[str, int]],
    requests_: int,
) -> None:
    """Wait until the sinks hold what ``requests_`` more requests to each of ``names`` delivered, at most
    :data:`_DRAIN_S`."""
    deadline = time.monotonic() + _DRAIN_S
    while time.monotonic() < deadline:
        now = _delivered(sink, collector)
        if all(
            now.get(name, {}).get("spans", 0) - before.get(name, {}).get("spans", 0)
            >= SPANS_PER_REQUEST[name] * requests_
            for name in names
        ):
            return
        time.sleep(0.2)


def _run_load(
    load: _Load, urls: dict[str, str], clients: int, rounds: int, sink: str, collector: CollectorProcess
) -> tuple[dict[str, list[_Round]], dict[str, dict[str, int]]]:
    """``rounds`` interleaved rounds of ``load``: per subject its rounds, and what its sink received."""
    names = list(urls)
    per_round = load.served(clients)
    collector.clear_requests()
    before = _delivered(sink, collector)
    marks = {name: [_control(url)] for name, url in urls.items()}
    latencies: dict[str, list[list[float]]] = {name: [] for name in names}
    for i in range(rounds):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            latencies[name].append(_load(urls[name], clients, load.per_client, load.rate, load.burst))
        if i == rounds - 1:
            _drain(names, sink, collector, before, per_round * rounds)
        for name, url in urls.items():
            marks[name].append(_control(url))
    after = _delivered(sink, collector)
    after["ours"]["posts"] = _writes(collector)
    received = {
        name: {
            key: after.get(name, {}).get(key, 0) - before.get(name, {}).get(key, 0)
            for key in ("spans", "posts", "own")
        }
        for name in names
    }
    measured = {
        name: [
            _Round(
                latencies[name][r],
                marks[name][r + 1]["cpu"] - marks[name][r]["cpu"],
                marks[name][r + 1]["background"] - marks[name][r]["background"],
            )
            for r in range(rounds)
        ]
        for name in names
    }
    return measured, received


def _spread(values: list[float], fmt: str) -> str:
    """The median and the range of per-round figures."""
    return f"{median(values):{fmt}} ({min(values):{fmt}}..{max(values):{fmt}})"


def _per_round(measured: dict[str, list[_Round]], name: str, per_round: int) -> dict[str, list[float]]:
    """Per-round figures of subject ``name`` against ``bare`` in the same round."""
    rows: dict[str, list[float]] = {"p50": [], "p50x": [], "p99x": [], "cpu": [], "added": [], "bg": []}
    for own, bare in zip(measured[name], measured["bare"], strict=True):
        rows["p50"].append(percentile(own.latencies, 50))
        rows["p50x"].append(percentile(own.latencies, 50) / percentile(bare.latencies, 50))
        rows["p99x"].append(percentile(own.latencies, 99) / percentile(bare.latencies, 99))
        rows["cpu"].append(own.cpu_s / per_round * 1e6)
        rows["added"].append((own.cpu_s - bare.cpu_s) / per_round * 1e6)
        rows["bg"].append(own.background_s / per_round * 1e6)
    return rows


def _report(
    load: _Load, measured: dict[str, list[_Round]], received: dict[str, dict[str, int]], clients: int
) -> str | None:
    """Print the load's rows; return ours CPU added / otel-lean CPU added (None without either): the median
    of the per-round ratios with their range, and the ratio of the two medians."""
    per_round = load.served(clients)
    figures = {name: _per_round(measured, name, per_round) for name in measured}
    control = figures.get("bare-again")
    aa = f"{_spread(control['p50x'], '.2f')} · {_spread(control['added'], '+.0f')}" if control else "-"
    for name, rows in figures.items():
        expected = SPANS_PER_REQUEST[name] * per_round * len(measured[name])
        got = received[name]["spans"]
        spans = f"{got} / {expected}" + (" SHORT" if got < expected else "") if expected else "-"
        print(
            f"| {load.name} | {name} | {_spread(rows['p50'], '.2f')} | {_spread(rows['p50x'], '.2f')} | "
            f"{_spread(rows['p99x'], '.2f')} | {_spread(rows['cpu'], '.0f')} | "
            f"{_spread(rows['bg'], '.0f')} | "
            f"{_spread(rows['added'], '+.0f') if name != 'bare' else '-'} | {aa} | {spans} |"
        )
    if "ours" not in figures or "otel-lean" not in figures:
        return None
    ours, lean = figures["ours"]["added"], figures["otel-lean"]["added"]
    per_round = [a / b for a, b in zip(ours, lean, strict=True)]
    return f"{_spread(per_round, '.2f')} per round; {median(ours) / median(lean):.2f} from the medians"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per load (default 5)")
    parser.add_argument("--clients", type=int, default=20, help="concurrent clients (default 20)")
    parser.add_argument(
        "--requests", type=int, default=0, help="requests per client per round (default 8; 16 saturating)"
    )
    parser.add_argument("--rate", type=float, default=100.0, help="paced load, requests/s (default 100)")
    parser.add_argument("--loads", default="paced,bursts,saturating", help="comma-separated (default: all)")
    parser.add_argument("--subjects", default=",".join(SUBJECTS), help="comma-separated (bare is needed)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 rounds, 3 (6) requests/client")
    args = parser.parse_args()
    rounds = 2 if args.quick else args.rounds
    few, many = (3, 6) if args.quick else (8, 16)
    loads = {
        "paced": _Load(f"paced {args.rate:g}/s", args.rate, False, args.requests or few),
        "bursts": _Load(f"bursts of {args.clients}, 4/s", args.clients * 4.0, True, args.requests or few),
        "saturating": _Load("saturating", 0.0, False, args.requests or many),
    }
    names = args.subjects.split(",")
    if _split_cpus() is not None:
        _other_cpus()  # this process mostly waits: it stays off the subjects' CPUs
    print(
        f"seed handler on uvicorn, loopback, one process per subject; {args.clients} concurrent clients; "
        f"{rounds} interleaved rounds, order rotated; figures: median (min..max over rounds)"
    )
    print(
        "| load | subject | p50 ms | p50 x bare | p99 x bare | server CPU µs/req | "
        "of which off the event loop | CPU added µs/req | A/A control: p50 x bare · CPU added | "
        "spans received / expected |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    ratios: dict[str, str | None] = {}
    received: dict[str, dict[str, dict[str, int]]] = {}
    with start_collector() as collector, contextlib.ExitStack() as stack:
        assert collector.pid is not None
        os.setpriority(os.PRIO_PROCESS, collector.pid, 19)
        if (split := _split_cpus()) is not None:
            os.sched_setaffinity(collector.pid, split[1])
        port = free_port()
        sink = stack.enter_context(
            _process(["sink", str(port)], dict(os.environ), _backend_cpus, f"http://127.0.0.1:{port}/counts")
        ).removesuffix("/counts")
        urls = stack.enter_context(_subjects(names, sink, collector))
        before = _delivered(sink, collector)
        warm_up = _Load("warm-up", 0.0, False, 5)  # imports, connections, ours' login and log stream
        for url in urls.values():
            _load(url, 2, warm_up.per_client)
        _drain(names, sink, collector, before, warm_up.served(2))
        for key in args.loads.split(","):
            measured, received[key] = _run_load(loads[key], urls, args.clients, rounds, sink, collector)
            ratios[key] = _report(loads[key], measured, received[key], args.clients)
        stats = _control(urls["ours"])["stats"] if "ours" in urls else None
    print()
    for key, ratio in ratios.items():
        if ratio is not None:
            goal = "reported, not a goal" if key == "paced" else "goal <= 0.5"
            print(f"ours CPU added / otel-lean CPU added, {loads[key].name}: {ratio} ({goal})")
    if stats is not None:
        print(f"ours, galileo.stats() at the end: {stats}")
    _footnotes(received, {key: loads[key].served(args.clients) * rounds for key in received})
    return 0


def _footnotes(received: dict[str, dict[str, dict[str, int]]], served: dict[str, int]) -> None:
    """Exchanges per request (the paced load's trade), and what Sentry traced of its own exports."""
    if all("ours" in load and "otel-lean" in load for load in received.values()):
        per_100 = {
            key: {name: load[name]["posts"] / served[key] * 100 for name in load}
            for key, load in received.items()
        }
        rates = ", ".join(f"{key} {n['ours']:.1f} / {n['otel-lean']:.1f}" for key, n in per_100.items())
        print(
            "\nHTTP exchanges per 100 requests, ours (writes to the collector) / otel-lean (OTLP posts): "
            f"{rates}."
            " The paced load's trade: our sender sends a trace within tens of milliseconds of its "
            "request, once no request is in flight (LINGER, QUIET, YIELD_CAP in galileo's sender), so "
            "that records are visible at once and each child goes after its parent's acknowledgement: at "
            "100 requests/s only the few traces that are ready together share an exchange, and an "
            "exchange costs about as much CPU as several trivial requests. OpenTelemetry's "
            "BatchSpanProcessor holds spans in memory for up to 5 s (or 512 spans) and pays one exchange "
            "per batch: less CPU per request while a service is quiet, for spans seconds late. In bursts "
            "and under saturation ours coalesces more (up to 64 traces to a POST)."
        )
    own = {key: load["sentry"]["own"] for key, load in received.items() if load.get("sentry", {}).get("own")}
    if own:
        print(
            "sentry-sdk also traced its own envelope POSTs (http.client spans under the requests' segments, "
            f"from its httplib integration), not counted above: {own}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
