"""Memory of a pxmagic cluster, and proof that pushing a large array copies nothing.

Prints, for a local cluster of four engines:

* the hub's resident memory with the engines idle,
* an engine's resident memory next to a stock ipykernel's (both idle),
* how much a 1 GB ``push`` to one engine raises the client's peak resident
  memory: well under 1 GB means the array was sent without a copy.

Run it from the repository root with the project's venv (``psutil`` and
``numpy`` needed)::

    .venv/bin/python benchmarks/memory.py
"""
from __future__ import annotations

import json
import resource
import time

import numpy as np
import psutil
from jupyter_client import KernelManager

from pxmagic import Cluster

MB = 2**20
PUSHED_BYTES = 2**30


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def stock_kernel_rss_mb() -> float:
    """An idle stock python3 ipykernel, for comparison with an engine."""
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel()
    try:
        client = manager.client()
        client.start_channels()
        client.wait_for_ready(timeout=60)
        client.stop_channels()
        time.sleep(1)
        return rss_mb(manager.provisioner.process.pid)
    finally:
        manager.shutdown_kernel(now=True)


def main() -> None:
    with Cluster(n=4) as rc:
        hub_pid = json.loads(rc.connection_file.read_text())["hub_pid"]
        engine_pids = rc[:].apply_sync(__import__("os").getpid)
        time.sleep(1)
        print(f"hub, 4 engines idle:        {rss_mb(hub_pid):7.1f} MB")
        engines = [rss_mb(pid) for pid in engine_pids]
        print(f"engine (median of 4), idle: {sorted(engines)[len(engines) // 2]:7.1f} MB")
        print(f"stock ipykernel, idle:      {stock_kernel_rss_mb():7.1f} MB")

        array = np.ones(PUSHED_BYTES // 8)
        before = peak_rss_mb()
        start = time.perf_counter()
        rc[0].push({"big": array}, block=True)
        elapsed = time.perf_counter() - start
        rise = peak_rss_mb() - before
        print(f"push of 1 GB to one engine: {elapsed:.2f} s; client peak RSS rose by {rise:.0f} MB")
        rc[0].execute("big = None", block=True)


if __name__ == "__main__":
    main()
