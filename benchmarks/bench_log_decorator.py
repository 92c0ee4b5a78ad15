"""What ``@log`` costs a call: µs per decorated no-op call against the same undecorated call, in one run.

For each mode (batch, distributed, and in requests served through ``TracingMiddleware``) it prints:

- a decorated no-op call nested inside an active trace (inside an outer decorated call), as a leaf
  (``span_type="tool"``) and as a level (the default workflow span, opened and concluded), in µs per call,
  next to the undecorated call measured in the same run, and the difference;
- the outermost decorated call, which starts a trace, concludes it and hands it to the sender (outside
  requests: in a request the request's trace is there already);
- the network calls made on the caller's thread while timing (goal 0: records go from the sender's threads).

"decorated µs" is wall-clock time per call; "caller's CPU µs" the calling thread's own CPU time per call
(``time.thread_time_ns``). They differ by the time the caller waits for the GIL while the sender's threads
turn records into requests, which in distributed mode happens during the loop (in batch mode, at the end).

Against the tests' collector subprocess on loopback, which the sender posts to in the background; the figure
is the median of the rounds. Run: ``python benchmarks/bench_log_decorator.py [--calls N] [--rounds R]``.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import urllib3

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, start_collector
from sdk_helpers import called_by_the_sdk
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import galileo
from galileo import galileo_context, log
from galileo.middleware import TracingMiddleware


class _CallerThreadSpy:
    """Counts the SDK's HTTP exchanges (its urllib3 pool's ``urlopen``) made on threads other than the
    sender's (the tests' ``http_spy`` tells them from urllib3's retries and from ``requests``)."""

    def __init__(self) -> None:
        self.on_caller = 0
        self._real = urllib3.HTTPConnectionPool.urlopen

    def __enter__(self) -> _CallerThreadSpy:
        spy, real = self, self._real

        def request(
            pool: urllib3.HTTPConnectionPool, method: str, url: str, *args: Any, **kwargs: Any
        ) -> Any:
            sender = threading.current_thread().name.startswith("galileo-sender-")
            if not sender and called_by_the_sdk(sys._getframe(1)):
                spy.on_caller += 1
            return real(pool, method, url, *args, **kwargs)

        urllib3.HTTPConnectionPool.urlopen = request  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        urllib3.HTTPConnectionPool.urlopen = self._real  # type: ignore[method-assign]


#: Nested calls per trace: a trace of a few hundred spans is already a big one.
PER_TRACE = 100


def noop(x: int) -> int:
    return x


@log(span_type="tool")
def leaf(x: int) -> int:
    return x


@log
def level(x: int) -> int:
    return x


def _timed_ns(func: Callable[[int], int], calls: int) -> tuple[int, int]:
    """(wall-clock ns, the calling thread's CPU ns) for ``calls`` calls of ``func``."""
    started, cpu = time.perf_counter_ns(), time.thread_time_ns()
    for i in range(calls):
        func(i)
    return time.perf_counter_ns() - started, time.thread_time_ns() - cpu


def _nested(func: Callable[[int], int], calls: int) -> tuple[float, float]:
    """µs per call (wall, caller's CPU) of ``func`` inside outer decorated calls (active traces of
    :data:`PER_TRACE` spans each), the outer calls not counted."""
    spent: list[tuple[int, int]] = []

    @log(name="outer")
    def outer(n: int) -> None:
        spent.append(_timed_ns(func, n))

    for _ in range(max(1, calls // PER_TRACE)):
        outer(PER_TRACE)
    galileo_context.flush(timeout=60)  # between figures, not timed: each starts with an idle sender
    n = PER_TRACE * len(spent) * 1000
    return sum(w for w, _ in spent) / n, sum(c for _, c in spent) / n


def _outermost(func: Callable[[int], int], calls: int) -> tuple[float, float]:
    """µs per call (wall, caller's CPU) of ``func`` outside any trace: each call starts, concludes and hands
    over a trace of its own."""
    wall, cpu = _timed_ns(func, calls)
    galileo_context.flush(timeout=60)
    return wall / calls / 1000, cpu / calls / 1000


def _request_app(spent: list[tuple[int, int]]) -> Starlette:
    """A handler timing PER_TRACE calls of the function its query names, inside a decorated workflow call."""
    functions = {"noop": noop, "leaf": leaf, "level": level}

    @log(name="outer")
    def outer(func: Callable[[int], int]) -> None:
        spent.append(_timed_ns(func, PER_TRACE))

    async def handler(request: Request) -> Response:
        outer(functions[request.query_params["func"]])
        return Response("ok")

    return Starlette(routes=[Route("/", handler)], middleware=[Middleware(TracingMiddleware)])


def run_in_requests(calls: int, rounds: int, report: Callable[[str], None]) -> None:
    """The same nested calls in requests served through TracingMiddleware (in-process, Starlette's
    TestClient): the request's logger, in distributed mode, while the sender yields to requests in flight."""
    with warnings.catch_warnings():  # Starlette's TestClient warns at import when it runs on httpx
        warnings.simplefilter("ignore")
        from starlette.testclient import TestClient

    from galileo.middleware import _request

    _request.reset()
    os.environ["GALILEO_LOG_STREAM"] = "bench-log-request"
    spent: list[tuple[int, int]] = []
    figures: dict[str, list[tuple[float, float]]] = {"noop": [], "leaf": [], "level": []}
    with TestClient(_request_app(spent)) as client, _CallerThreadSpy() as spy:
        client.get("/", params={"func": "leaf"})  # warm-up
        for _ in range(rounds):
            for func in figures:
                spent.clear()
                for _ in range(max(1, calls // PER_TRACE)):
                    client.get("/", params={"func": func})
                galileo.shutdown(timeout=60)  # not timed: request loggers' records delivered between figures
                n = PER_TRACE * len(spent) * 1000
                figures[func].append((sum(w for w, _ in spent) / n, sum(c for _, c in spent) / n))
        on_caller = spy.on_caller
    bare = median([w for w, _ in figures["noop"]])
    for label, key in (("nested leaf (tool)", "leaf"), ("nested level (workflow)", "level")):
        wall, cpu = median([w for w, _ in figures[key]]), median([c for _, c in figures[key]])
        added = wall - bare
        report(
            f"| in a request | {label} | {bare:.2f} | {wall:.2f} | {added:.2f} | {cpu:.2f} | {on_caller} |"
        )


def run(mode: str, calls: int, rounds: int, report: Callable[[str], None]) -> None:
    os.environ["GALILEO_MODE"] = mode
    os.environ["GALILEO_LOG_STREAM"] = f"bench-log-{mode}"
    galileo_context.reset()
    _nested(leaf, 10)  # warm-up: the logger, project and log stream resolution, the sender's threads
    level(0)
    galileo_context.flush(timeout=30)
    figures: dict[str, list[tuple[float, float]]] = {"bare": [], "leaf": [], "level": [], "outermost": []}
    with _CallerThreadSpy() as spy:
        for _ in range(rounds):  # interleaved, so that each round compares like with like
            figures["bare"].append(_nested(noop, calls))
            figures["leaf"].append(_nested(leaf, calls))
            figures["level"].append(_nested(level, calls))
            figures["outermost"].append(_outermost(level, max(1, calls // 4)))
        on_caller = spy.on_caller  # flush() waits on this thread, but the sender's threads send
    pending = galileo_context.flush(timeout=60)
    bare = median([w for w, _ in figures["bare"]])
    for label, key in (
        ("nested leaf (tool)", "leaf"),
        ("nested level (workflow)", "level"),
        ("outermost (starts a trace)", "outermost"),
    ):
        wall, cpu = median([w for w, _ in figures[key]]), median([c for _, c in figures[key]])
        added = wall - bare
        report(f"| {mode} | {label} | {bare:.2f} | {wall:.2f} | {added:.2f} | {cpu:.2f} | {on_caller} |")
    stats = galileo.stats()
    sender = f"sender: {stats['sent']} sent, {stats['dropped']} dropped, {pending} pending after flush"
    report(f"|  | ({sender}) ||||||")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000, help="calls per round (default 1000)")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args()
    with start_collector() as collector:
        os.environ.update(GALILEO_API_URL=collector.url, GALILEO_API_KEY="bench", GALILEO_PROJECT="bench")
        print(f"{args.calls} calls x {args.rounds} rounds per figure, median round; loopback collector")
        print(
            "| mode | call | undecorated µs | decorated µs | added µs | caller's CPU µs | "
            "network calls on caller's thread |"
        )
        print("|---|---|---:|---:|---:|---:|---:|")
        for mode in ("batch", "distributed"):
            run(mode, args.calls, args.rounds, print)
        run_in_requests(args.calls, args.rounds, print)
        galileo.shutdown(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
