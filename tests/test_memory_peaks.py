"""A 1 GB push and pull cost each process at most one copy of the array at its peak
(issue 14: no Python-level copy on client, hub or engine), with shared memory and with frames.

Peaks are the kernel's own high-water mark of resident memory (``VmHWM``),
reset before each transfer through ``/proc/PID/clear_refs``.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pxmagic import Cluster

GB = 1 << 30
#: allowance over one copy: interpreter, ZMQ and message overheads
SLACK = 64 << 20


def reset_peak(pid: int) -> int:
    """Reset ``pid``'s resident high-water mark; its resident bytes now."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return _status_kb(pid, "VmRSS") * 1024


def peak(pid: int) -> int:
    return _status_kb(pid, "VmHWM") * 1024


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


@pytest.fixture(scope="module", params=["shared memory", "frames"])
def transfer_cluster(request):
    saved = os.environ.get("PXMAGIC_SHARED_MEMORY")
    if request.param == "frames":
        os.environ["PXMAGIC_SHARED_MEMORY"] = "0"
    cluster = Cluster(n=1)
    try:
        rc = cluster.start_and_connect_sync()
        rc.wait_for_engines(1, timeout=60)
        yield request.param, cluster, rc
    finally:
        cluster.stop()
        if saved is None:
            os.environ.pop("PXMAGIC_SHARED_MEMORY", None)
        else:
            os.environ["PXMAGIC_SHARED_MEMORY"] = saved


@pytest.mark.timeout(300)
def test_a_1gb_push_and_pull_hold_one_copy_at_most(transfer_cluster):
    mode, cluster, rc = transfer_cluster
    engine_pid = rc[0].apply_sync(os.getpid)
    hub_pid = cluster._hub.pid
    array = np.ones(GB // 8)
    pids = {"client": os.getpid(), "engine": engine_pid, "hub": hub_pid}

    before = {name: reset_peak(pid) for name, pid in pids.items()}
    rc[0].push({"big": array}, block=True)
    grown = {name: peak(pid) - before[name] for name, pid in pids.items()}
    assert grown["client"] <= GB + SLACK, f"{mode} push: client peak grew {grown['client'] / GB:.2f} GB"
    assert grown["engine"] <= GB + SLACK, f"{mode} push: engine peak grew {grown['engine'] / GB:.2f} GB"
    assert grown["hub"] <= GB + SLACK, f"{mode} push: hub peak grew {grown['hub'] / GB:.2f} GB"
    assert rc[0].apply_sync(lambda: float(big.sum())) == GB // 8  # noqa: F821 (the engine's name)

    del array
    before = {name: reset_peak(pid) for name, pid in pids.items()}
    pulled = rc[0].pull("big", block=True)
    grown = {name: peak(pid) - before[name] for name, pid in pids.items()}
    assert pulled.shape == (GB // 8,) and pulled[0] == 1.0 and pulled[-1] == 1.0
    assert grown["client"] <= GB + SLACK, f"{mode} pull: client peak grew {grown['client'] / GB:.2f} GB"
    assert grown["engine"] <= GB + SLACK, f"{mode} pull: engine peak grew {grown['engine'] / GB:.2f} GB"
    assert grown["hub"] <= GB + SLACK, f"{mode} pull: hub peak grew {grown['hub'] / GB:.2f} GB"
    print(f"\n{mode}: peaks grew (GB) on pull: " + ", ".join(f"{k} {v / GB:.2f}" for k, v in grown.items()))
    del pulled
    rc.purge_local_results("all")
