"""Frozen engines: a registered engine stopped past the hub's patience never runs the work reported failed."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pxmagic import Cluster, EngineError, connection


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=1, profile="faults-frozen")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def registered(cluster, rc):
    """One engine started by hand, as mpiexec or ssh would, registered with the module's cluster."""
    before = set(rc.ids)
    process = subprocess.Popen(
        [sys.executable, "-m", "pxmagic.engine", "--register",
         str(connection.engine_file(cluster.profile, cluster.cluster_id))],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rc.wait_for_engines(len(before) + 1, timeout=60)
    [engine_id] = set(rc.ids) - before
    assert rc[engine_id].apply_sync(os.getpid) == process.pid
    yield engine_id, process
    if process.poll() is None:
        process.kill()
    process.wait(10)


def touch(path: str):
    def write():
        import pathlib

        pathlib.Path(path).touch()
        return "ran"

    return write


def wait_for_exit(process: subprocess.Popen, timeout: float) -> float | None:
    start = time.monotonic()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - start


def test_a_frozen_engine_is_failed_once_and_never_runs_that_work(rc, registered, tmp_path, figure):
    engine_id, process = registered
    side_effect = tmp_path / "ran"
    os.kill(process.pid, signal.SIGSTOP)
    stopped = time.monotonic()
    ar = rc[engine_id].apply_async(touch(str(side_effect)))
    with pytest.raises(EngineError, match=f"engine {engine_id} stopped answering heartbeats"):
        ar.get(15)
    failed_after = time.monotonic() - stopped
    figure("seconds to EngineError: registered engine frozen (SIGSTOP)", failed_after, "s", "2.5 to 5")
    assert 2.5 <= failed_after < 5, "a short stall is tolerated, a long one fails the work within 5 s"
    os.kill(process.pid, signal.SIGCONT)
    exited_after = wait_for_exit(process, 10)
    figure("seconds for a dropped engine to exit once it wakes", exited_after or -1, "s", "< 2")
    assert exited_after is not None and exited_after < 2, "an engine the hub let go leaves when it wakes"
    time.sleep(0.5)
    ran = int(side_effect.exists())
    figure("requests run after being reported failed", ran, "", "must be 0")
    assert ran == 0
    assert engine_id not in rc.ids
    assert rc[0].apply_sync(lambda: "the cluster goes on") == "the cluster goes on"


def test_a_short_freeze_is_waited_for(rc, registered, tmp_path):
    engine_id, process = registered
    ar = rc[engine_id].apply_async(lambda: __import__("time").sleep(0.5) or "done")
    os.kill(process.pid, signal.SIGSTOP)
    time.sleep(1.8)
    os.kill(process.pid, signal.SIGCONT)
    assert ar.get(10) == "done"
    assert rc[engine_id].apply_sync(lambda: "still engine") == "still engine"
    assert process.poll() is None and psutil.Process(process.pid).status() != psutil.STATUS_STOPPED


def test_a_frozen_engine_that_really_dies_fails_within_five_seconds(rc, registered, figure):
    engine_id, process = registered
    ar = rc[engine_id].apply_async(lambda: __import__("time").sleep(60))
    time.sleep(0.3)
    os.kill(process.pid, signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(EngineError, match="stopped answering heartbeats"):
        ar.get(15)
    figure("seconds to EngineError: registered engine killed", time.monotonic() - start, "s", "< 5")
    assert time.monotonic() - start < 5


@pytest.fixture(scope="module")
def rc(cluster):
    client = cluster.connect_client()
    yield client
    client.close()
