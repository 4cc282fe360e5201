"""Soak: many small apply calls through one cluster, and the memory of the hub and the client.

Sends ``--calls`` (default 100,000) small ``apply`` calls through one local
cluster of two engines, ``--window`` of them outstanding at a time, spread
over the engines, and prints the resident memory (RSS) of the hub and of
this client process after the first ``--baseline`` calls (default 10,000),
after each further ``--baseline`` calls, and at the end.  A hub or client that keeps something per call would grow
without end; bounded stores (the hub's result store, the client's
``max_results``) stop growing once full, which the first 10,000 calls fill.

Run it from the repository root with the project's venv (``psutil``)::

    export IPYTHONDIR=/tmp/ipy-bench JUPYTER_PATH=/tmp/devjp
    .venv/bin/python benchmarks/soak.py [--calls 100000] [--store sqlite] [--json out.json]

``tests/test_soak.py`` runs a shorter soak and asserts the bound.
"""
from __future__ import annotations

import argparse
import collections
import gc
import json
import operator
import time
from pathlib import Path
from typing import Any

import psutil

from pxmagic import Cluster

MB = 2**20
ENGINES = 2


def rss_mb(process: psutil.Process) -> float:
    return process.memory_info().rss / MB


def soak(rc: Any, calls: int, baseline: int, window: int, report: Any = print) -> dict[str, float]:
    """Run ``calls`` apply calls; RSS of hub and client (MB) after ``baseline`` calls and at the end."""
    hub = psutil.Process(json.loads(Path(rc.connection_file).read_text())["hub_pid"])
    client = psutil.Process()
    views = [rc[i] for i in rc.ids]
    outstanding: collections.deque = collections.deque()
    figures: dict[str, float] = {}
    started = time.perf_counter()
    for i in range(calls):
        if len(outstanding) >= window:
            result, expected = outstanding.popleft()
            if result.get(60) != expected:
                raise AssertionError(f"call {i - window} returned {result.get()}, not {expected}")
        # operator.add travels by reference: the call is as small as a call gets
        outstanding.append((views[i % len(views)].apply_async(operator.add, i, 1), i + 1))
        done = i + 1
        if done % baseline == 0 or done == calls:
            while outstanding:
                result, expected = outstanding.popleft()
                assert result.get(60) == expected
            gc.collect()
            hub_mb, client_mb, seconds = rss_mb(hub), rss_mb(client), time.perf_counter() - started
            report(f"after {done:>7,} calls ({seconds:6.1f} s): hub {hub_mb:6.1f} MB, client {client_mb:6.1f} MB")
            for label in [x for x, at in (("baseline", baseline), ("end", calls)) if at == done]:
                figures.update({f"hub_{label}_mb": hub_mb, f"client_{label}_mb": client_mb,
                                f"{label}_seconds": seconds})
    figures["hub_growth_mb"] = figures["hub_end_mb"] - figures["hub_baseline_mb"]
    figures["client_growth_mb"] = figures["client_end_mb"] - figures["client_baseline_mb"]
    figures["calls_per_second"] = calls / figures["end_seconds"]
    return figures


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100_000)
    parser.add_argument("--baseline", type=int, default=10_000, help="calls before the first measurement")
    parser.add_argument("--window", type=int, default=64, help="calls outstanding at a time")
    parser.add_argument("--store", choices=["memory", "sqlite"], default="memory", help="the hub's result store")
    parser.add_argument("--json", metavar="PATH", help="write the figures here")
    args = parser.parse_args(argv)
    if not 0 < args.baseline < args.calls:
        parser.error("--baseline must be between 0 and --calls")
    with Cluster(n=ENGINES, store=args.store) as rc:
        rc.wait_for_engines(ENGINES)
        figures = soak(rc, args.calls, args.baseline, args.window)
    print(f"{args.calls:,} calls at {figures['calls_per_second']:.0f} calls/s; growth after the first "
          f"{args.baseline:,}: hub {figures['hub_growth_mb']:+.1f} MB, client {figures['client_growth_mb']:+.1f} MB")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
