"""What ``@log`` costs a call: µs per decorated no-op call against the same undecorated call, in one run.

For each mode (batch, distributed) it prints:

- a decorated no-op call nested inside an active trace (inside an outer decorated call), as a leaf
  (``span_type="tool"``) and as a level (the default workflow span, opened and concluded), in µs per call,
  next to the undecorated call measured in the same run, and the difference;
- the outermost decorated call, which starts a trace, concludes it and hands it to the sender;
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
from collections.abc import Callable
from typing import Any

import requests

sys.path.insert(0, os.path.dirname(__file__))
from _common import median, start_collector

import galileo
from galileo import galileo_context, log


class _CallerThreadSpy:
    """Counts requests.Session calls made on the thread timing the calls (delegating to the real thing)."""

    def __init__(self) -> None:
        self.on_caller = 0
        self.caller = threading.get_ident()
        self._real = requests.Session.request

    def __enter__(self) -> _CallerThreadSpy:
        spy, real = self, self._real

        def request(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == spy.caller:
                spy.on_caller += 1
            return real(session, method, url, *args, **kwargs)

        requests.Session.request = request  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        requests.Session.request = self._real  # type: ignore[method-assign]


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
        galileo.shutdown(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
