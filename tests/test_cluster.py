"""Starting and stopping clusters with pxcluster and with pxmagic.Cluster."""
from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from pxmagic import Client, Cluster, EngineError, RemoteError, connection
from helpers import wait_until

PXCLUSTER = str(Path(sys.executable).with_name("pxcluster"))


def pxcluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PXCLUSTER, *args], capture_output=True, text=True, timeout=timeout)


def security_files(profile: str) -> list[str]:
    return sorted(p.name for p in connection.security_dir(profile).iterdir())


def assert_gone(pids: list[int], timeout: float = 10) -> None:
    def alive() -> list[int]:
        return [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]

    assert wait_until(lambda: not alive(), timeout=timeout), f"processes still running: {alive()}"


def test_pxcluster_start_list_stop():
    started = pxcluster("start", "-n", "2", "--profile", "clitest", "--daemonize")
    assert started.returncode == 0, started.stderr
    assert "2 engines ready" in started.stdout

    path = connection.client_file("clitest")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["transport"] == "ipc" and info["signature_scheme"] == "hmac-sha256"
    assert info["ip"].startswith(str(connection.security_dir("clitest")))  # IPC sockets in the 0700 directory

    # no sleep: --daemonize returned only once every engine was ready
    with Client(profile="clitest") as rc:
        assert rc.ids == [0, 1]
        assert rc[:].apply_sync(lambda: "ok") == ["ok", "ok"]
        for engine_id in rc.ids:
            mode = Path(rc.engine_connection_file(engine_id)).stat().st_mode
            assert stat.S_IMODE(mode) == 0o600
    hub = psutil.Process(info["hub_pid"])
    processes = [hub.pid] + [child.pid for child in hub.children(recursive=True)]
    assert len(processes) >= 3

    listing = pxcluster("list")
    assert "clitest" in listing.stdout and str(info["hub_pid"]) in listing.stdout

    again = pxcluster("start", "-n", "2", "--profile", "clitest", "--daemonize")
    assert again.returncode == 1 and "already running" in again.stderr

    stopped = pxcluster("stop", "--profile", "clitest")
    assert stopped.returncode == 0, stopped.stderr
    assert_gone(processes)
    assert security_files("clitest") == []
    assert "clitest" not in pxcluster("list").stdout


def test_pxcluster_stop_without_a_cluster():
    result = pxcluster("stop", "--profile", "nothing-here")
    assert result.returncode == 1 and "no cluster running" in result.stderr


def test_pxcluster_rejects_bad_engine_counts():
    result = pxcluster("start", "-n", "0", "--profile", "clitest", "--daemonize")
    assert result.returncode == 2 and "at least 1" in result.stderr


def test_pxcluster_reports_a_missing_kernelspec():
    result = pxcluster("start", "-n", "1", "--profile", "nokernel", "--kernel-name", "no-such-kernel",
                       "--daemonize")
    assert result.returncode == 1
    assert "no kernelspec named 'no-such-kernel'" in result.stderr
    assert security_files("nokernel") == []


def test_foreground_pxcluster_stops_on_interrupt():
    hub = subprocess.Popen([PXCLUSTER, "start", "-n", "1", "--profile", "fgtest"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        path = connection.client_file("fgtest")
        deadline = time.monotonic() + 60
        while not path.exists():
            assert hub.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        with Client(profile="fgtest") as rc:
            assert rc[0].apply_sync(lambda: 5) == 5
        engines = [c.pid for c in psutil.Process(hub.pid).children(recursive=True)]
        hub.send_signal(signal.SIGINT)
        assert hub.wait(30) == 0
        assert_gone(engines)
        assert not path.exists()
    finally:
        if hub.poll() is None:
            hub.kill()


def test_cluster_context_manager_starts_and_stops_everything():
    with Cluster(n=2, profile="apitest") as rc:
        assert rc.ids == [0, 1]
        pids = rc[:].apply_sync(os.getpid)
        assert len(set(pids)) == 2 and os.getpid() not in pids
        hub = psutil.Process(json.loads(rc.connection_file.read_text())["hub_pid"])
        processes = [hub.pid] + [c.pid for c in hub.children(recursive=True)]
    assert_gone(processes)
    assert security_files("apitest") == []


def test_cluster_start_and_connect_sync_then_stop():
    cluster = Cluster(n=1, profile="apitest")
    rc = cluster.start_and_connect_sync()
    assert cluster.running and rc[0].apply_sync(lambda: 1) == 1
    cluster.stop_cluster_sync()
    assert not cluster.running
    with pytest.raises(FileNotFoundError):
        Client(profile="apitest", cluster_id=cluster.cluster_id)


def test_client_finds_the_one_running_cluster_of_its_profile():
    first = Cluster(n=1)
    first.start_cluster_sync()  # ipyparallel's name for start()
    try:
        with Client() as rc:
            assert rc[0].apply_sync(lambda: 7) == 7
            assert rc.connection_file == connection.client_file("default", first.cluster_id)
        second = Cluster(n=1)
        second.start()
        try:
            with pytest.raises(connection.ConnectionFileError) as raised:
                Client()
            message = str(raised.value)
            assert "2 pxmagic clusters of profile 'default'" in message and "Client(cluster_id=...)" in message
            assert repr(first.cluster_id) in message and repr(second.cluster_id) in message
            with Client(cluster_id=second.cluster_id) as rc:
                assert rc[0].apply_sync(lambda: 8) == 8
            assert second.connect_client_sync().connection_file == connection.client_file("default",
                                                                                          second.cluster_id)
        finally:
            second.stop()
    finally:
        first.stop()


def test_engines_added_and_stopped_on_a_running_cluster():
    cluster = Cluster(n=2)
    rc = cluster.start_and_connect_sync()
    try:
        rc.wait_for_engines(2, timeout=30)
        rc[:].execute("kept = 'old'", block=True)
        pids = rc[:].apply_sync(os.getpid)
        running = rc[1].apply_async(time.sleep, 30)
        cluster.stop_engines([1])
        with pytest.raises(EngineError, match="engine 1 was stopped"):
            running.get(timeout=10)
        assert rc.ids == [0] and cluster.n == 1
        assert_gone([pids[1]])
        assert cluster.start_engines(2) == [1, 2], "the stopped engine's id comes back first"
        assert rc.ids == [0, 1, 2] and cluster.n == 3
        assert rc[:].apply_sync(lambda: "kept" in globals()) == [True, False, False]
        with pytest.raises(RemoteError, match="no engine 7: engines are"):
            cluster.stop_engines([7])
        with pytest.raises(ValueError, match="start_engines takes a number of engines, 1 or more, not 0"):
            cluster.start_engines(0)
        assert rc.ids == [0, 1, 2]
    finally:
        cluster.stop()
    assert_gone(pids)


def test_cluster_rejects_zero_engines():
    with pytest.raises(ValueError, match="at least one engine"):
        Cluster(n=0)


@pytest.mark.parametrize("how", ["exits", "is killed"])
def test_a_cluster_lives_no_longer_than_its_process(tmp_path, how):
    script = tmp_path / "owner.py"
    script.write_text(
        "import json, os, sys, pxmagic\n"
        "cluster = pxmagic.Cluster(n=1, profile='owned')\n"
        "rc = cluster.start_and_connect_sync()\n"
        "print(json.loads(rc.connection_file.read_text())['hub_pid'], flush=True)\n"
        "if sys.argv[1] == 'is killed':\n"
        "    os.kill(os.getpid(), 9)\n"
    )
    owner = subprocess.run([sys.executable, str(script), how], capture_output=True, text=True, timeout=120)
    assert owner.stdout.strip().isdigit(), owner.stderr
    assert_gone([int(owner.stdout)], timeout=20)
    assert security_files("owned") == [], "the hub removed its connection files"


def test_clients_on_the_hubs_host_use_its_ipc_sockets_and_others_tcp(tmp_path):
    from test_encryption import host_address

    address = host_address()
    if address is None:
        pytest.skip("this host has no address beyond loopback")
    with Cluster(n=1, ip=address, timeout=60) as rc:
        info = json.loads(rc.connection_file.read_text())
        assert connection.hub_addresses(info) == (f"ipc://{info['local_ipc']}-requests",
                                                  f"ipc://{info['local_ipc']}-iopub")
        elsewhere = {**info, "hostname": "another-host"}
        assert connection.hub_addresses(elsewhere)[0] == f"tcp://{address}:{info['request_port']}"
        copied = tmp_path / "pxmagic-client-copied.json"
        connection.write_secret_json(copied, elsewhere)
        with Client(copied) as remote:
            assert remote[0].apply_sync(lambda: "over tcp") == "over tcp"
        assert rc[0].apply_sync(lambda: "over ipc") == "over ipc"


def test_a_profiles_pxcluster_json_sets_how_its_cluster_starts():
    """`pxcluster start --profile P` takes its options from profile_P/pxcluster.json, and
    Client(profile=P) finds that cluster; the command line still wins."""
    config = connection.security_dir("configured").parent / connection.CLUSTER_CONFIG
    config.write_text(json.dumps({"n": 3, "engines": "local", "restart-engines": True}))
    try:
        started = pxcluster("start", "--profile", "configured", "--daemonize")
        assert started.returncode == 0, started.stderr
        assert "3 engines ready" in started.stdout
        with Client(profile="configured") as rc:
            assert rc.ids == [0, 1, 2]
        assert pxcluster("stop", "--profile", "configured").returncode == 0
        started = pxcluster("start", "--profile", "configured", "--daemonize", "-n", "1")
        assert started.returncode == 0 and "1 engines ready" in started.stdout, started.stderr
        assert pxcluster("stop", "--profile", "configured").returncode == 0
        config.write_text(json.dumps({"n": 2, "engine_count": 5}))
        refused = pxcluster("start", "--profile", "configured", "--daemonize")
        assert refused.returncode == 1 and "unknown options engine_count" in refused.stderr
        config.write_text("{not json")
        refused = pxcluster("start", "--profile", "configured", "--daemonize")
        assert refused.returncode == 1 and "pxcluster.json is not valid JSON" in refused.stderr
    finally:
        config.unlink()
        pxcluster("stop", "--profile", "configured")
