"""How fast large data moves: pxmagic beside ipyparallel and Dask, measured in one run.

For each implementation, in its own interpreter, on a local cluster of
``--engines`` engines (Dask: worker processes, one thread each):

* push and pull of 128 MB and 1 GB float64 arrays to one engine (GB/s,
  median), and ``np.copy`` of 128 MB in the client as the machine's yardstick;
  and the pull of a new array of that size the engine computed (``y = x * 1.0``,
  not timed): pulling back a pushed array unchanged moves nothing with
  pxmagic's shared memory, a computed one is copied once;
* a 256 MB push to every engine, first, on a fresh cluster: seconds, and
  copies held afterwards (memory held machine-wide once each engine has read
  its array, over 256 MB, counted from before the first push: each process's
  PSS without its shared-memory pages, plus ``/dev/shm``, where those pages
  are counted once, warm pool segments included);
* scatter + gather of ``np.arange(10_000_000)`` (seconds).

Dask's push is ``client.scatter(arr, workers=[w], direct=True)`` and its pull
``future.result()``; its broadcast ``scatter(..., broadcast=True)``.  The
script prints each figure and pxmagic's ratio to the others.  With
``--threshold`` it instead times pxmagic pushes of 128 KB to 8 MB through
shared memory and as frames (how ``sharedmem.THRESHOLD`` was chosen).

Run from the repository root; set ``PXMAGIC_SHARED_MEMORY=0`` to measure
pxmagic as a client on another host would see it::

    .venv/bin/python benchmarks/data.py --ipyparallel-python /work/.venv-ipp/bin/python \\
        --dask-python /work/.venv-dask/bin/python [--engines 4] [--json out.json]

A script run on demand, not a test: this machine is shared, so compare
ratios from one run, not times from different runs.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

MB = 1 << 20


def median_of(samples: list[float]) -> float:
    return statistics.median(samples)


def private_pss(pid: int) -> int:
    """PSS of ``pid`` without shared-memory pages, which :func:`held` counts once in ``/dev/shm``."""
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as file:
        for line in file:
            name, _, rest = line.partition(":")
            if name in ("Pss", "Pss_Shmem"):
                fields[name] = int(rest.split()[0]) * 1024
    return fields["Pss"] - fields.get("Pss_Shmem", 0)


def held(pids: list[int]) -> int:
    info = os.statvfs("/dev/shm")
    return sum(private_pss(pid) for pid in pids) + (info.f_blocks - info.f_bfree) * info.f_frsize


def rate(nbytes: int, call: Callable[[], Any], reps: int, between: Callable[[], Any] = lambda: None) -> float:
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        call()
        samples.append(nbytes / 1e9 / (time.perf_counter() - start))
        between()
    return median_of(samples)


class Direct:
    """pxmagic or ipyparallel: the same Direct interface."""

    def __init__(self, module: str, engines: int):
        self.module = __import__(module)
        self.cluster = self.module.Cluster(n=engines)
        self.rc = self.cluster.start_and_connect_sync()
        self.rc.wait_for_engines(engines, timeout=60)
        self.dv = self.rc[:]
        self.dv.block = True
        self.engine_pids = self.dv.apply_sync(os.getpid)
        self.purge_local_results = self.rc.purge_local_results

    def push_one(self, arr):
        self.dv.push({"x": arr}, targets=0)

    def pull_one(self):
        return self.dv.pull("x", targets=0)

    def compute_one(self):
        self.dv.execute("y = x * 1.0", targets=0)

    def pull_computed(self):
        return self.dv.pull("y", targets=0)

    def push_all(self, arr):
        self.dv.push({"x": arr})

    def touch_all(self):
        self.dv.execute("_s = float(x.sum())")

    def drop(self):
        self.dv.execute("x = None; y = None")
        self.rc.purge_local_results("all")

    def scatter_gather(self, arr):
        self.dv.scatter("part", arr)
        return self.dv.gather("part")

    def close(self):
        self.rc.close()
        self.cluster.stop_cluster_sync() if hasattr(self.cluster, "stop_cluster_sync") else self.cluster.stop()


class Dask:
    def __init__(self, engines: int):
        from distributed import Client, LocalCluster

        self.cluster = LocalCluster(n_workers=engines, threads_per_worker=1, processes=True, dashboard_address=None)
        self.client = Client(self.cluster)
        self.workers = sorted(self.client.scheduler_info()["workers"])
        self.engine_pids = list(self.client.run(os.getpid).values())
        self.futures: list = []
        self.computed = None

    def push_one(self, arr):
        self.futures = [self.client.scatter(arr, workers=[self.workers[0]], direct=True)]

    def pull_one(self):
        return self.futures[0].result()

    def compute_one(self):
        from distributed import wait

        self.computed = self.client.submit(lambda a: a * 1.0, self.futures[0], workers=[self.workers[0]], pure=False)
        wait(self.computed)

    def pull_computed(self):
        return self.computed.result()

    def push_all(self, arr):
        self.futures = [self.client.scatter(arr, broadcast=True, direct=True)]

    def touch_all(self):
        future = self.futures[0]
        self.client.run(lambda dask_worker: float(dask_worker.data[future.key].sum()))

    def drop(self):
        self.futures = []
        self.computed = None
        time.sleep(0.2)

    def purge_local_results(self, which: str) -> None:
        """Nothing to do: a Dask future's data goes when the future does."""

    def scatter_gather(self, arr):
        import numpy as np

        parts = self.client.scatter(np.array_split(arr, len(self.workers)), direct=True)
        return np.concatenate(self.client.gather(parts, direct=True))

    def close(self):
        self.client.close()
        self.cluster.close()


def measure(impl: str, engines: int) -> dict[str, float]:
    import numpy as np

    runner = Dask(engines) if impl == "dask" else Direct(impl, engines)
    figures: dict[str, float] = {}
    pids = [*runner.engine_pids, os.getpid()]
    try:
        arr = np.random.default_rng(0).random(256 * MB // 8)
        gc.collect()
        time.sleep(0.5)
        before = held(pids)
        seconds, copies = [], []
        for _ in range(3):
            start = time.perf_counter()
            runner.push_all(arr)
            seconds.append(time.perf_counter() - start)
            runner.touch_all()
            time.sleep(0.5)
            copies.append((held(pids) - before) / arr.nbytes)
            runner.drop()
            gc.collect()
        figures["bcast_256MB_s"] = median_of(seconds)
        figures["bcast_256MB_copies"] = median_of(copies)
        del arr

        def release() -> None:
            """What a user done with a pulled array does: drop it, and the client's record of it."""
            runner.purge_local_results("all")
            gc.collect()

        for mb, reps in ((128, 5), (1024, 4)):  # 4: a push while the last one is held needs a second segment
            arr = np.ones(mb * MB // 8)
            runner.push_one(arr)  # warm-up
            runner.pull_one()
            runner.drop()
            figures[f"push_{mb}MB_GBps"] = rate(arr.nbytes, lambda: runner.push_one(arr), reps)
            figures[f"pull_{mb}MB_GBps"] = rate(arr.nbytes, runner.pull_one, reps, release)
            runner.compute_one()
            figures[f"pull_computed_{mb}MB_GBps"] = rate(arr.nbytes, runner.pull_computed, reps,
                                                         lambda: (release(), runner.compute_one()))
            runner.drop()
            del arr
            gc.collect()
        arr = np.ones(128 * MB // 8)
        figures["np_copy_128MB_GBps"] = rate(arr.nbytes, lambda: np.copy(arr), 5)
        arr = np.arange(10_000_000)
        samples = []
        for _ in range(5):
            start = time.perf_counter()
            back = runner.scatter_gather(arr)
            samples.append(time.perf_counter() - start)
        assert np.array_equal(back, arr)
        figures["scatter_gather_1e7_s"] = median_of(samples)
    finally:
        runner.close()
    return figures


def threshold_sweep(engines: int) -> dict[str, float]:
    import numpy as np
    from pxmagic import sharedmem

    runner = Direct("pxmagic", engines)
    figures = {}
    try:
        for kb in (128, 256, 512, 1024, 8192):
            arr = np.ones(kb * 1024 // 8)
            for label, threshold in (("frames", 1 << 62), ("shm", 1)):
                sharedmem.THRESHOLD = threshold
                samples = []
                for _ in range(40):
                    start = time.perf_counter()
                    runner.push_one(arr)
                    samples.append(time.perf_counter() - start)
                    runner.rc.purge_local_results("all")
                figures[f"push_{kb}KB_{label}_ms"] = median_of(samples[10:]) * 1e3
    finally:
        runner.close()
    return figures


def elsewhere(python: str, impl: str, engines: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as ipython_dir:
        env = {**os.environ, "IPYTHONDIR": ipython_dir}
        out = subprocess.run([python, __file__, "--impl", impl, "--engines", str(engines), "--raw"],
                             env=env, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} in {python} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--impl", default="pxmagic")
    parser.add_argument("--engines", type=int, default=2)
    parser.add_argument("--ipyparallel-python")
    parser.add_argument("--dask-python")
    parser.add_argument("--threshold", action="store_true")
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    if args.raw:
        print(json.dumps(measure(args.impl, args.engines)))
        return
    if args.threshold:
        for name, value in threshold_sweep(args.engines).items():
            print(f"{name:<28} {value:8.2f}")
        return
    results = {"pxmagic": elsewhere(sys.executable, "pxmagic", args.engines)}
    for impl, python in (("ipyparallel", args.ipyparallel_python), ("dask", args.dask_python)):
        if python:
            results[impl] = elsewhere(python, impl, args.engines)
    peers = [impl for impl in results if impl != "pxmagic"]
    print(f"{'figure':<28}" + "".join(f"{impl:>13}" for impl in results)
          + "".join(f"{'px/' + impl[:4]:>10}" for impl in peers))
    for name, ours in results["pxmagic"].items():
        row = f"{name:<28}" + "".join(f"{results[impl].get(name, float('nan')):13.3f}" for impl in results)
        row += "".join(f"{ours / results[impl][name]:10.2f}" if results[impl].get(name) else f"{'':>10}"
                       for impl in peers)
        print(row)
    if args.json:
        with open(args.json, "w") as file:
            json.dump({"engines": args.engines, "results": results}, file, indent=1)


if __name__ == "__main__":
    main()
