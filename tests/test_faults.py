"""Nothing hangs when a process dies: real engines and hubs killed mid-task."""
from __future__ import annotations

import json
import os
import signal
import time

import psutil
import pytest

from pxmagic import Cluster, CompositeError, EngineError


@pytest.fixture
def cluster():
    cluster = Cluster(n=3, profile="faults")
    cluster.start()
    yield cluster
    cluster.stop()


def engine_pid(rc, engine_id: int) -> int:
    return rc[engine_id].apply_sync(os.getpid)


def test_a_killed_engine_fails_its_work_and_the_others_go_on(cluster):
    rc = cluster.connect_client()
    victim = engine_pid(rc, 2)
    ar = rc[:].apply_async(lambda: __import__("time").sleep(1.5) or "done")
    time.sleep(0.3)
    start = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(CompositeError) as info:
        ar.get(30)
    assert time.monotonic() - start < 5
    errors = dict(info.value.elist)
    assert list(errors) == [2] and isinstance(errors[2], EngineError)
    assert "engine 2 died" in errors[2].evalue and ar.msg_ids[2] in errors[2].evalue
    deadline = time.monotonic() + 5
    while 2 in rc.ids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rc.ids == [0, 1]
    assert rc[:].apply_sync(lambda: "still here") == ["still here"] * 2


def test_exit_inside_apply_is_an_engine_error(cluster):
    rc = cluster.connect_client()
    start = time.monotonic()
    with pytest.raises(EngineError, match="engine 1 died"):
        rc[1].apply_sync(lambda: __import__("os")._exit(1))
    assert time.monotonic() - start < 5
    assert rc[0].apply_sync(lambda: 1) == 1


def test_a_dead_hub_fails_outstanding_work_instead_of_hanging(cluster):
    rc = cluster.connect_client()
    hub = psutil.Process(json.loads(rc.connection_file.read_text())["hub_pid"])
    engines = [psutil.Process(engine_pid(rc, i)) for i in rc.ids]
    ar = rc[0].apply_async(lambda: __import__("time").sleep(60))
    time.sleep(0.3)
    hub.kill()
    start = time.monotonic()
    with pytest.raises(EngineError, match="hub .* is unreachable"):
        ar.get(30)
    assert time.monotonic() - start < rc.hub_timeout + 3
    _, orphans = psutil.wait_procs(engines, timeout=10)
    assert orphans == [], "engines exit when their hub is gone"
