"""What a cluster on loopback exposes to others on its host, and what a subscriber that never reads costs."""
from __future__ import annotations

import json
import time

import psutil
import pytest
import zmq

from pxmagic import Cluster, connection


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=2, profile="transport")
    cluster.start()
    yield cluster
    cluster.stop()


def tcp_listeners(pid: int) -> set[int]:
    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}


def test_a_loopback_cluster_serves_no_data_over_tcp(cluster, rc):
    info = json.loads(rc.connection_file.read_text())
    assert info["transport"] == "ipc"
    assert connection.hub_addresses(info)[0].startswith(f"ipc://{connection.security_dir('transport')}/")
    hub = psutil.Process(info["hub_pid"])
    registration = json.loads(connection.engine_file("transport", cluster.cluster_id).read_text())["registration"]
    # the registrar answers only messages signed with the key, and sends nothing else
    assert tcp_listeners(hub.pid) == {int(registration.rsplit(":", 1)[1])}
    # ipykernel's engines take forked subprocesses' output on a loopback PULL socket, which keeps
    # only messages that carry a secret id of the engine's; nothing is sent from it
    pipes = rc[:].apply_sync(lambda: get_ipython().kernel.iopub_thread._pipe_port)  # noqa: F821
    for engine, pipe in zip(sorted(hub.children(), key=lambda p: p.pid), sorted(pipes)):
        assert tcp_listeners(engine.pid) <= set(pipes), engine.cmdline()
    assert rc[:].apply_sync(lambda: "served") == ["served", "served"]


def test_a_subscriber_that_never_reads_costs_the_hub_a_bounded_queue(cluster, rc, figure):
    info = json.loads(rc.connection_file.read_text())
    hub = psutil.Process(info["hub_pid"])

    def emit(count: int, size: int) -> None:
        import sys

        line = "x" * (size - 1)
        for _ in range(count):
            print(line)
            sys.stdout.flush()

    with zmq.Context() as context, context.socket(zmq.SUB) as idle:
        idle.rcvhwm = 1
        idle.setsockopt(zmq.SUBSCRIBE, b"")
        idle.connect(connection.hub_addresses(info)[1])
        time.sleep(0.5)
        before = hub.memory_info().rss
        largest = before
        ar = rc[0].apply_async(emit, 40_000, 5_000)  # 200 MB of output
        while not ar.done():
            largest = max(largest, hub.memory_info().rss)
            time.sleep(0.05)
        ar.get()
        ar.wait_for_output(30)
        largest = max(largest, hub.memory_info().rss)
    growth = (largest - before) / 2**20
    figure("hub memory growth under a non-reading subscriber (200 MB of output)", growth, "MB", "< 120")
    assert growth < 120
    assert len(ar.stdout[0]) == 40_000 * 5_000, "the client that reads loses no output"
