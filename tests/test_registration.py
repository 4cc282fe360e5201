"""Engines the hub did not start: registration, heartbeats, forged registrations, a thousand at once."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest
import zmq

from pxmagic import Client, Cluster, EngineError, connection
from pxmagic.hub.registration import assign_engine_id
from pxmagic.protocol import ProtocolError, check_registration, rank_from_env, registration_content
from helpers import signed_frames
from helpers import wait_until

SIMULATOR = Path(__file__).with_name("simulated_engines.py")


def sleeper(seconds: float):
    def sleep():
        import time

        time.sleep(seconds)
        return seconds

    return sleep


def busy(seconds: float):
    def spin():
        import time

        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
        return "done"

    return spin


@pytest.fixture
def engines():
    """Start engine processes by hand, as mpiexec, srun or ssh would; kill leftovers afterwards."""
    started: list[subprocess.Popen] = []

    def start(engine_file: Path, *options: str, env: dict | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            [sys.executable, "-m", "pxmagic.engine", "--register", str(engine_file), *options],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})},
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=1, profile="registration")
    cluster.start()
    yield cluster
    cluster.stop()


def engine_file(cluster: Cluster) -> Path:
    return connection.engine_file(cluster.profile, cluster.cluster_id)


def registrations(rc: Client) -> dict:
    return rc._hub_request("hub_info_request", 10)["content"]["registrations"]



KERNEL = {"transport": "tcp", "ip": "10.0.0.7", "shell_port": 5001, "iopub_port": 5002, "stdin_port": 5003,
          "control_port": 5004, "hb_port": 5005, "key": "secret", "signature_scheme": "hmac-sha256"}


def test_a_registration_carries_the_kernel_address_but_not_its_key():
    content = registration_content(KERNEL, 3, "mpi-1", "node7", 42, "/x/kernel.json")
    assert check_registration(content) == content
    assert "key" not in content["connection_info"] and content["connection_info"]["ip"] == "10.0.0.7"


@pytest.mark.parametrize(("change", "problem"), [
    ({"connection_info": None}, "needs a 'connection_info' object"),
    ({"rank": -1}, "rank must be a non-negative integer"),
    ({"rank": True}, "rank must be a non-negative integer"),
    ({"job": 5}, "job must be a string"),
    ({"pid": "1"}, "pid must be an integer"),
    ({"host": None}, "host must be a string"),
])
def test_a_malformed_registration_is_refused_with_the_reason(change, problem):
    content = {**registration_content(KERNEL, None, None, "h", 1, ""), **change}
    with pytest.raises(ProtocolError, match=problem):
        check_registration(content)


def test_a_registration_needs_every_kernel_port():
    content = registration_content(KERNEL, None, None, "h", 1, "")
    content["connection_info"]["hb_port"] = 70000
    with pytest.raises(ProtocolError, match="no valid hb_port"):
        check_registration(content)


def test_engine_ids_follow_job_ranks_then_requested_ranks_then_the_next_free_id():
    jobs = {"mpi-a": range(4, 8)}
    assert assign_engine_id(2, "mpi-a", jobs, taken=[0, 1]) == 6
    assert assign_engine_id(None, None, jobs, taken=[0, 1]) == 8, "ids reserved for a job are skipped"
    assert assign_engine_id(2, None, jobs, taken=[0, 1]) == 2
    with pytest.raises(ProtocolError, match="already taken"):
        assign_engine_id(1, None, jobs, taken=[0, 1])
    with pytest.raises(ProtocolError, match="reserved for a job"):
        assign_engine_id(5, None, jobs, taken=[])
    with pytest.raises(ProtocolError, match="has ranks 0 to 3, not 4"):
        assign_engine_id(4, "mpi-a", jobs, taken=[])
    with pytest.raises(ProtocolError, match="launched no job 'mpi-b'"):
        assign_engine_id(0, "mpi-b", jobs, taken=[])


def test_the_rank_comes_from_whichever_launcher_set_it():
    assert rank_from_env({"OMPI_COMM_WORLD_RANK": "3", "PMI_RANK": "9"}) == 3
    assert rank_from_env({"PMI_RANK": "5"}) == 5
    assert rank_from_env({"SLURM_PROCID": "2"}) == 2
    assert rank_from_env({"PMI_RANK": ""}) is None and rank_from_env({}) is None


def test_the_engine_file_is_private_and_names_the_registration_socket(cluster):
    path = engine_file(cluster)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    info = json.loads(path.read_text())
    assert info["registration"].startswith("tcp://127.0.0.1:")
    assert len(info["key"]) == 64 and info["signature_scheme"] == "hmac-sha256"


def test_a_killed_registered_engine_is_found_dead_by_missed_heartbeats(cluster, rc, engines):
    engine = engines(engine_file(cluster))
    rc.wait_for_engines(2, timeout=60)
    new_id = max(rc.ids)
    assert rc[new_id].apply_sync(os.getpid) == engine.pid
    assert rc[new_id].apply_sync(busy(1.5)) == "done", "a busy engine still answers heartbeats"
    outstanding = rc[new_id].apply_async(sleeper(60))
    time.sleep(0.5)
    start = time.monotonic()
    engine.kill()
    with pytest.raises(EngineError) as info:
        outstanding.get(15)
    detected = time.monotonic() - start
    assert detected < 5, f"detected after {detected:.1f} s"
    assert f"engine {new_id} stopped answering heartbeats" in info.value.evalue
    assert outstanding.msg_ids[0] in info.value.evalue
    assert wait_until(lambda: new_id not in rc.ids, 5)
    assert rc[0].apply_sync(lambda: "the others go on") == "the others go on"
    print(f"\nSIGKILLed registered engine detected dead after {detected:.2f} s (default heartbeat)")


def test_the_heartbeat_period_is_configurable(engines):
    cluster = Cluster(n=1, profile="registration-fast", heartbeat_period=0.2)
    with cluster as rc:
        engine = engines(engine_file(cluster))
        rc.wait_for_engines(2, timeout=60)
        assert rc[1].apply_sync(busy(1.0)) == "done", "busy for 5 periods, never missing a beat"
        outstanding = rc[1].apply_async(sleeper(60))
        time.sleep(0.3)
        start = time.monotonic()
        engine.kill()
        with pytest.raises(EngineError, match="engine 1 stopped answering heartbeats \\(6 pings 0.2 s apart"):
            outstanding.get(15)
        detected = time.monotonic() - start
        assert detected < 2.5, f"6 missed beats of 0.2 s, detected after {detected:.1f} s"


def forged_registration(key: bytes, content: dict) -> list[bytes]:
    header = json.dumps({"msg_id": uuid.uuid4().hex, "msg_type": "registration_request", "session": "x",
                         "username": "forger", "date": datetime.now(timezone.utc).isoformat(),
                         "version": "5.3"}).encode()
    return signed_frames(key, header, content=json.dumps(content).encode())


def test_registrations_with_a_bad_signature_are_dropped_and_counted(cluster, rc):
    info = json.loads(engine_file(cluster).read_text())
    before = registrations(rc)
    ids = rc.ids
    content = {"connection_info": {"transport": "tcp", "ip": "127.0.0.1", "shell_port": 1, "iopub_port": 2,
                                   "stdin_port": 3, "control_port": 4, "hb_port": 5},
               "rank": None, "job": None, "host": "forger", "pid": 1, "connection_file": ""}
    wrong_key = forged_registration(b"not the cluster key", content)
    unsigned = [b"<IDS|MSG>", b"", *forged_registration(b"", content)[2:]]
    garbage = [b"\x00\xff" * 20]
    malformed = forged_registration(info["key"].encode(), {**content, "rank": -1})
    with zmq.Context() as context, context.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        dealer.connect(info["registration"])
        for frames in (wrong_key, unsigned, garbage):
            dealer.send_multipart(frames)
        assert not dealer.poll(1000), "a message with a bad signature gets no answer"
        dealer.send_multipart(malformed)
        assert dealer.poll(10_000), "a signed but malformed registration is answered"
        answer = json.loads(dealer.recv_multipart()[-1])
    assert answer["status"] == "error" and "rank must be a non-negative integer" in answer["evalue"]
    after = registrations(rc)
    assert after["rejected"] == before["rejected"] + 4
    assert after["accepted"] == before["accepted"]
    assert rc.ids == ids
    assert rc[:].apply_sync(lambda: "unharmed") == ["unharmed"] * len(ids)


def test_an_engine_with_the_wrong_key_gives_up_with_a_clear_error(cluster, engines, tmp_path):
    info = json.loads(engine_file(cluster).read_text())
    wrong = tmp_path / "pxmagic-engine.json"
    wrong.write_text(json.dumps({**info, "key": "0" * 64}))
    engine = engines(wrong, "--registration-timeout", "3")
    _, stderr = engine.communicate(timeout=60)
    assert engine.returncode == 1
    assert "did not answer the registration within 3 s" in stderr


def test_an_engine_asking_for_a_taken_id_is_refused(cluster, rc, engines):
    engine = engines(engine_file(cluster), env={"PMI_RANK": "0"})
    _, stderr = engine.communicate(timeout=60)
    assert engine.returncode == 1
    assert "the hub refused this engine: engine id 0 is already taken" in stderr


def test_a_thousand_engines_register_within_a_minute(tmp_path):
    """1,000 simulated engines in 4 processes register at once with a hub started with --engines external."""
    n, processes = 1000, 4
    profile, cluster_id = "registration-scale", "thousand"
    engine_path = connection.engine_file(profile, cluster_id)
    client_path = connection.client_file(profile, cluster_id)
    log = open(tmp_path / "hub.log", "w")
    hub = subprocess.Popen([sys.executable, "-m", "pxmagic.hub", "-n", str(n), "--engines", "external",
                            "--profile", profile, "--cluster-id", cluster_id, "--start-timeout", "90"],
                           stdout=log, stderr=subprocess.STDOUT)
    simulators: list[subprocess.Popen] = []
    try:
        assert wait_until(engine_path.exists, 30), "the hub writes its engine file"
        hub_process = psutil.Process(hub.pid)
        idle_rss = hub_process.memory_info().rss
        start = time.monotonic()
        simulators = [subprocess.Popen([sys.executable, str(SIMULATOR), str(engine_path), str(n // processes)],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                      for _ in range(processes)]
        reports = [json.loads(simulator.stdout.readline()) for simulator in simulators]
        registered = time.monotonic() - start
        assert wait_until(client_path.exists, 90 - registered), "the hub is ready once all are"
        ready = time.monotonic() - start
        ids = sorted(engine_id for report in reports for engine_id in report["ids"])
        assert [r["refused"] for r in reports] == [[]] * processes
        assert ids == list(range(n)), "every engine got its own id, none was lost"
        assert ready < 60, f"ready after {ready:.1f} s"
        rss_ready = hub_process.memory_info().rss
        with Client(client_path, timeout=30) as rc:
            assert rc.ids == list(range(n))
            assert registrations(rc) == {"accepted": n, "rejected": 0}
            time.sleep(5)  # five heartbeat rounds over a thousand engines
            assert rc.ids == list(range(n)), "no engine was declared dead"
            rss_later = hub_process.memory_info().rss
            stop = time.monotonic()
            rc.shutdown()
        assert hub.wait(60) == 0
        stopped = time.monotonic() - stop
        assert rss_ready < 500e6 and rss_later - rss_ready < 20e6, (rss_ready, rss_later)
        print(f"\n{n} engines: all registered {registered:.1f} s and ready {ready:.1f} s after their processes "
              f"started; hub RSS {idle_rss / 1e6:.0f} MB idle, {rss_ready / 1e6:.0f} MB with {n} engines, "
              f"{rss_later / 1e6:.0f} MB 5 s later; stopped in {stopped:.1f} s")
    finally:
        for simulator in simulators:
            simulator.stdin.close()
            simulator.wait(30)
        if hub.poll() is None:
            hub.kill()
            hub.wait(10)
        log.close()


def test_a_registered_engine_exits_when_its_hub_is_gone(engines):
    cluster = Cluster(n=1, profile="registration-orphan")
    with cluster as rc:
        engine = engines(engine_file(cluster))
        rc.wait_for_engines(2, timeout=60)
        kernel_file = Path(rc.engine_connection_file(1))
        assert kernel_file.exists()
        hub = psutil.Process(json.loads(rc.connection_file.read_text())["hub_pid"])
        hub.kill()
        hub.wait(10)
        start = time.monotonic()
        _, stderr = engine.communicate(timeout=30)
        gone = time.monotonic() - start
        assert "the hub has been silent for" in stderr
        assert gone < 15, f"the engine exited {gone:.1f} s after its hub"
        assert not kernel_file.exists(), "the engine removed its connection file"


def test_with_curve_an_engine_registers_and_hears_the_hub_through_curvezmq(engines):
    cluster = Cluster(n=1, profile="registration-curve", curve=True)
    with cluster as rc:
        info = json.loads(engine_file(cluster).read_text())
        assert len(info["curve_serverkey"]) == 40
        engine = engines(engine_file(cluster))
        rc.wait_for_engines(2, timeout=60)
        assert rc[1].apply_sync(os.getpid) == engine.pid
        time.sleep(12)  # longer than the engine's hub timeout: it hears the (encrypted) heartbeat
        assert engine.poll() is None and rc.ids == [0, 1]


def test_an_engine_elsewhere_reports_its_own_memory_and_cpu(cluster, rc, engines):
    """An engine that does not share the hub's host (here: told not to use shared memory, as one on
    another host cannot) is not read from /proc by the hub: it reports its use itself."""
    engine = engines(engine_file(cluster), env={"PXMAGIC_SHARED_MEMORY": "0"})
    assert wait_until(lambda: len(rc.ids) >= 2, 60)
    new_id = max(rc.ids)
    assert rc[new_id].apply_sync(os.getpid) == engine.pid
    assert wait_until(lambda: rc.status().engine(new_id).rss_bytes is not None, 10)
    status = rc.status().engine(new_id)
    assert status.kind == "registered" and status.cpu_percent is not None
    assert status.rss_bytes == pytest.approx(psutil.Process(engine.pid).memory_info().rss, rel=0.3)
    rc[new_id].apply_async(busy(3.0))
    assert wait_until(lambda: (rc.status().engine(new_id).cpu_percent or 0) > 50, 10), "a busy engine reports too"
