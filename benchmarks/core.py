"""Core speed of pxmagic: apply latency, push/pull throughput, map and scatter/gather.

Starts a local cluster of two engines, measures

* ``rc[0].apply_sync(f)`` and ``rc[:].apply_sync(f)`` round trips
  (median, p10, p90 over 300 calls after a warm-up),
* ``push`` and ``pull`` of a 128 MB float64 array to one engine (GB/s,
  median of 5),
* ``map_sync(lambda x: x * x, range(10_000))`` on the DirectView and on the
  load-balanced view, and ``scatter`` + ``gather`` of
  ``np.arange(10_000_000)`` over all engines (seconds, median of 3),

prints them, and stops the cluster.  Given ``--ipyparallel-python PATH``,
an interpreter with ipyparallel installed, it runs the same measurements
against ipyparallel in that interpreter afterwards and prints the ratios
pxmagic/ipyparallel, so both are compared on one machine in one sitting.

Run it from the repository root with the project's venv::

    export IPYTHONDIR=/tmp/ipy-bench JUPYTER_PATH=/tmp/devjp
    .venv/bin/python benchmarks/core.py [--ipyparallel-python .venv-ipp/bin/python] [--json out.json]

``JUPYTER_PATH`` must reach the ``pxmagic-engine`` kernelspec (an editable
install does not install it).  This is a script run on demand, not a test.
"""
from __future__ import annotations

import argparse
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ENGINES = 2
LATENCY_WARMUP = 30
LATENCY_CALLS = 300
TRANSFER_REPS = 5
TRANSFER_BYTES = 128 * 2**20
MAP_ITEMS = 10_000
SCATTER_ITEMS = 10_000_000
BULK_REPS = 3

#: metric name -> unit; "ms" is better lower, "GB/s" better higher
METRICS = {
    "apply_sync one engine": "ms",
    "apply_sync all engines": "ms",
    "push 128 MB one engine": "GB/s",
    "pull 128 MB one engine": "GB/s",
    "map_sync 10k, direct": "s",
    "map_sync 10k, load-balanced": "s",
    "scatter+gather 1e7": "s",
}

Results = dict[str, dict[str, float]]


def noop() -> None:
    """The cheapest remote call: what is measured is the round trip itself."""


def summarize(samples: list[float]) -> dict[str, float]:
    """Median and spread: medians resist the scheduling noise of a 2-core machine."""
    deciles = statistics.quantiles(samples, n=10, method="inclusive")
    return {"median": statistics.median(samples), "p10": deciles[0], "p90": deciles[-1]}


def time_calls(call: Callable[[], Any], warmup: int, reps: int) -> list[float]:
    """Seconds taken by each of ``reps`` calls, after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


def measure(rc: Any) -> Results:
    """Run every workload on a connected client of either implementation."""
    one, everyone = rc[0], rc[:]
    array = np.random.default_rng(0).random(TRANSFER_BYTES // 8)
    results = {}
    for name, call in {
        "apply_sync one engine": lambda: one.apply_sync(noop),
        "apply_sync all engines": lambda: everyone.apply_sync(noop),
    }.items():
        seconds = time_calls(call, LATENCY_WARMUP, LATENCY_CALLS)
        results[name] = summarize([s * 1e3 for s in seconds])
    for name, call in {  # in this order: pull fetches the x that push left on engine 0
        "push 128 MB one engine": lambda: one.push({"x": array}, block=True),
        "pull 128 MB one engine": lambda: one.pull("x", block=True),
    }.items():
        seconds = time_calls(call, 1, TRANSFER_REPS)
        results[name] = summarize([array.nbytes / s / 1e9 for s in seconds])
    one.execute("x = None", block=True)
    balanced, numbers = rc.load_balanced_view(), np.arange(SCATTER_ITEMS)

    def scatter_gather() -> None:
        everyone.scatter("x", numbers, block=True)
        everyone.gather("x", block=True)

    for name, call in {
        "map_sync 10k, direct": lambda: everyone.map_sync(lambda x: x * x, range(MAP_ITEMS)),
        "map_sync 10k, load-balanced": lambda: balanced.map_sync(lambda x: x * x, range(MAP_ITEMS)),
        "scatter+gather 1e7": scatter_gather,
    }.items():
        results[name] = summarize(time_calls(call, 0, BULK_REPS))
    return results


def run(impl: str) -> Results:
    """Start a cluster of ``impl`` (pxmagic or ipyparallel), measure it, stop it.

    Both packages offer ``Cluster(n).start_and_connect_sync()`` and
    ``stop_cluster_sync()``, so the same code drives either.
    """
    cluster = importlib.import_module(impl).Cluster(n=ENGINES)
    started = time.perf_counter()
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(ENGINES)
        print(f"{impl}: {ENGINES} engines up in {time.perf_counter() - started:.1f} s", flush=True)
        return measure(rc)
    finally:
        cluster.stop_cluster_sync()


def run_elsewhere(python: str, impl: str) -> Results | None:
    """Measure ``impl`` in another interpreter: ipyparallel lives in its own venv.

    Returns None (and says why) when ``impl`` is not importable there.
    """
    probe = subprocess.run([python, "-c", f"import {impl}"], capture_output=True, text=True)
    if probe.returncode != 0:
        print(f"skipping {impl}: not importable in {python}\n{probe.stderr.strip()}")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        subprocess.run([python, __file__, "--impl", impl, "--json", str(out)], check=True)
        return json.loads(out.read_text())[impl]


def print_results(impl: str, results: Results) -> None:
    print(f"\n{impl}")
    for name, unit in METRICS.items():
        r = results[name]
        print(f"  {name:<28} {r['median']:8.3f} {unit:<5} (p10 {r['p10']:.3f}, p90 {r['p90']:.3f})")


def print_ratios(ours: Results, theirs: Results) -> None:
    print("\npxmagic / ipyparallel (medians; ms and s: lower is better, GB/s: higher is better)")
    for name, unit in METRICS.items():
        print(f"  {name:<28} {ours[name]['median'] / theirs[name]['median']:6.2f}x  ({unit})")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--impl", choices=["pxmagic", "ipyparallel"], default="pxmagic",
                        help="implementation to measure in this interpreter (default: pxmagic)")
    parser.add_argument("--ipyparallel-python", metavar="PATH",
                        help="an interpreter with ipyparallel, to compare against")
    parser.add_argument("--json", metavar="PATH", help="write the results here, keyed by implementation")
    args = parser.parse_args(argv)

    all_results = {args.impl: run(args.impl)}
    print_results(args.impl, all_results[args.impl])
    if args.ipyparallel_python and args.impl == "pxmagic":
        theirs = run_elsewhere(args.ipyparallel_python, "ipyparallel")
        if theirs is not None:
            all_results["ipyparallel"] = theirs
            print_ratios(all_results["pxmagic"], theirs)
    if args.json:
        Path(args.json).write_text(json.dumps(all_results, indent=1))


if __name__ == "__main__":
    main()
