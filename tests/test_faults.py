"""Nothing hangs when a process dies: real engines and hubs killed mid-task."""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone

import psutil
import pytest

from pxmagic import Cluster, CompositeError, EngineError, RemoteError, connection
from pxmagic.protocol import HUB_INFO_REQUEST
from conftest import engine_shell_url
from helpers import signed_frames, wait_until


@pytest.fixture
def cluster():
    cluster = Cluster(n=3, profile="faults")
    cluster.start()
    yield cluster
    cluster.stop()


def engine_pid(rc, engine_id: int) -> int:
    return rc[engine_id].apply_sync(os.getpid)


def test_a_killed_engine_fails_its_work_and_the_others_go_on(cluster, figure):
    rc = cluster.connect_client()
    victim = engine_pid(rc, 2)
    ar = rc[:].apply_async(lambda: __import__("time").sleep(1.5) or "done")
    time.sleep(0.3)
    start = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(CompositeError) as info:
        ar.get(30)
    figure("seconds to EngineError: local engine SIGKILLed mid-call", time.monotonic() - start, "s", "< 5")
    assert time.monotonic() - start < 5
    errors = dict(info.value.elist)
    assert list(errors) == [2] and isinstance(errors[2], EngineError)
    assert info.value.results == [(0, "done"), (1, "done")]
    assert "engine 2 died" in errors[2].evalue and ar.msg_ids[2] in errors[2].evalue
    wait_until(lambda: 2 not in rc.ids, timeout=5)
    assert rc.ids == [0, 1]
    assert rc[:].apply_sync(lambda: "still here") == ["still here"] * 2


DEATHS = {
    "os._exit": lambda: __import__("os")._exit(1),
    "segfault": lambda: __import__("ctypes").string_at(0),
}


@pytest.mark.parametrize("death", DEATHS.values(), ids=DEATHS.keys())
def test_an_engine_dying_inside_apply_is_an_engine_error(cluster, death, request, figure):
    rc = cluster.connect_client()
    start = time.monotonic()
    with pytest.raises(EngineError, match="engine 1 died"):
        rc[1].apply_sync(death)
    figure(f"seconds to EngineError: {request.node.callspec.id} inside a call", time.monotonic() - start, "s", "< 5")
    assert time.monotonic() - start < 5
    assert rc[0].apply_sync(lambda: 1) == 1


def test_auto_restart_brings_a_dead_engine_back_with_its_id():
    with Cluster(n=2, profile="faults", restart_engines=True) as rc:
        rc[1].push({"before": 1}, block=True)
        old_pid = engine_pid(rc, 1)
        outstanding = rc[1].apply_async(lambda: __import__("time").sleep(30))
        time.sleep(0.3)
        os.kill(old_pid, signal.SIGKILL)
        with pytest.raises(EngineError, match="engine 1 died"):
            outstanding.get(5)
        deadline = time.monotonic() + 30
        new_pid = old_pid
        while new_pid == old_pid and time.monotonic() < deadline:
            time.sleep(0.2)
            with contextlib.suppress(IndexError, EngineError):
                new_pid = engine_pid(rc, 1)
        assert new_pid != old_pid and rc.ids == [0, 1]
        with pytest.raises(RemoteError, match="before"):
            rc[1].pull("before", block=True)
        assert rc[:].apply_sync(lambda: "both up") == ["both up"] * 2


def test_a_dead_hub_fails_outstanding_work_instead_of_hanging(cluster, figure):
    rc = cluster.connect_client()
    hub = psutil.Process(json.loads(rc.connection_file.read_text())["hub_pid"])
    engines = [psutil.Process(engine_pid(rc, i)) for i in rc.ids]
    ar = rc[0].apply_async(lambda: __import__("time").sleep(60))
    time.sleep(0.3)
    hub.kill()
    start = time.monotonic()
    with pytest.raises(EngineError, match="hub .* is unreachable"):
        ar.get(30)
    figure("seconds to EngineError: hub SIGKILLed", time.monotonic() - start, "s", f"< {rc.hub_timeout + 3:g}")
    assert time.monotonic() - start < rc.hub_timeout + 3
    _, orphans = psutil.wait_procs(engines, timeout=10)
    assert orphans == [], "engines exit when their hub is gone"
    # requests wait in ZMQ's queue while the hub is away; once it is full, a request fails instead of blocking
    outcome: list = []

    def submit_many() -> None:
        try:
            for _ in range(5000):
                rc[0].apply_async(lambda: None)
        except Exception as error:
            outcome.append(error)

    submitter = threading.Thread(target=submit_many, daemon=True)
    submitter.start()
    submitter.join(rc.hub_timeout + 30)
    assert not submitter.is_alive(), "a request to a dead hub blocked its caller"
    assert outcome and isinstance(outcome[0], ConnectionError)
    assert "took no request for 5 s: it is unreachable" in str(outcome[0])


def sleeper(seconds: float):
    def sleep():
        import time

        time.sleep(seconds)
        return seconds

    return sleep


def test_abort_drops_queued_work_that_has_not_started(cluster):
    rc = cluster.connect_client()
    lview = rc.load_balanced_view()
    running = [lview.apply_async(sleeper(1.5)) for _ in rc.ids]
    queued = [lview.apply_async(sleeper(0)) for _ in range(4)]
    time.sleep(0.3)
    for ar in queued:
        ar.abort()
    for ar in queued:
        with pytest.raises(RemoteError, match="AbortedTask"):
            ar.get(5)
    assert [ar.get(30) for ar in running] == [1.5] * len(rc.ids)

    first = rc[0].apply_async(sleeper(1.0))
    waiting = rc[0].apply_async(sleeper(0))
    time.sleep(0.2)
    waiting.abort()
    with pytest.raises(RemoteError, match="AbortedTask"):
        waiting.get(30)
    assert first.get(30) == 1.0 and rc[0].apply_sync(lambda: "ok") == "ok"


def test_interrupt_stops_running_work(cluster):
    rc = cluster.connect_client()
    view = rc[:]
    ar = view.apply_async(sleeper(30))
    time.sleep(0.5)
    start = time.monotonic()
    view.interrupt()
    with pytest.raises(CompositeError) as info:
        ar.get(10)
    assert time.monotonic() - start < 2
    assert {err.ename for _, err in info.value.elist} == {"KeyboardInterrupt"}
    assert view.apply_sync(lambda: "usable") == ["usable"] * len(rc.ids)


def test_ctrl_c_in_a_blocking_call_interrupts_the_engines(cluster, figure):
    rc = cluster.connect_client()
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        rc[:].apply_sync(sleeper(30))
    assert rc[:].apply_sync(lambda: "usable") == ["usable"] * len(rc.ids)
    figure("seconds from Ctrl-C to free engines (direct apply)", time.monotonic() - start - 0.5, "s", "< 2")
    assert time.monotonic() - start < 2.5, "the engines stopped sleeping"


def malformed_messages(key: bytes, count: int, seed: int = 0) -> list[tuple[list[bytes], bool]]:
    """Random frames, bad signatures, truncated JSON, wrong types, unknown types and engines; each with
    whether an engine that gets it directly refuses it (it passes signed, well-formed messages of types it
    does not serve to ipykernel, which ignores them)."""
    import random

    rng = random.Random(seed)
    signed = functools.partial(signed_frames, key)

    def header(msg_type: str) -> bytes:
        date = datetime.now(timezone.utc).isoformat()  # recent: the fuzz reaches past the replay check
        return json.dumps({"msg_id": f"fuzz-{rng.random()}", "msg_type": msg_type, "session": "s",
                           "username": "u", "date": date, "version": "5.3"}).encode()

    makers = [
        (lambda: [rng.randbytes(rng.randint(0, 64)) for _ in range(rng.randint(1, 8))], True),
        (lambda: [b"<IDS|MSG>", b"not-a-signature", header("apply_request"), b"{}", b"{}", b"{}"], True),
        (lambda: signed(b'{"msg_id": "x", "msg_type": "apply_req'), True),
        (lambda: signed(header("apply_request"), metadata=b'{"targets": "all"}'), True),
        (lambda: signed(header("apply_request"), metadata=b'{"targets": [99]}') + [b"\x80\x05junk"], True),
        (lambda: signed(header("execute_request"), metadata=b'{"targets": [0]}', content=b"[1, 2]"), False),
        (lambda: signed(header("no_such_request")), False),
        (lambda: signed(header("hub_abort_request"), content=b'{"msg_ids": 5}'), False),
        (lambda: signed(b"[]"), True),
        (lambda: signed(header("apply_request"), metadata=b'{"targets": [0]}') + [b"\x80\x05junk"], True),
        (lambda: [b"<IDS|MSG>"], True),
        (lambda: signed(json.dumps({"msg_type": "x" * 100_000}).encode()), True),
    ]
    chosen = [rng.choice(makers) for _ in range(count)]
    return [(make(), engine_refuses) for make, engine_refuses in chosen]


def refusal_lines(log_file) -> int:
    """How many lines of the log of the hub and the engines it started are about refused messages."""
    return sum(" refused " in line for line in log_file.read_text(errors="replace").splitlines())


def test_a_thousand_malformed_messages_break_nothing(cluster):
    """Each malformed message is refused once, a few log lines tell of them all; hub and engines keep working."""
    import zmq

    rc = cluster.connect_client()
    info = json.loads(rc.connection_file.read_text())
    fuzz = malformed_messages(info["key"].encode(), 1000)
    messages = [frames for frames, _ in fuzz]
    engine_refuses = sum(refuses for _, refuses in fuzz)
    lines_before = refusal_lines(cluster.log_file)

    def refused() -> tuple[int, int]:
        """Messages refused so far by the hub, and by engine 0 (some the hub forwards, for their buffers)."""
        engine = rc[0].apply_sync(lambda: get_ipython().kernel.refusals.total)  # noqa: F821
        return rc._hub_request(HUB_INFO_REQUEST, 5)["content"]["refused"], engine

    def wait_for(count: Callable[[], int], target: int) -> int:
        deadline = time.monotonic() + 20
        while count() < target and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # a message refused twice would show now
        return count()

    hub_before, engine_before = refused()
    with zmq.Context() as context:
        for url in (connection.hub_addresses(info)[0], engine_shell_url(rc.engine_connection_file(0))):
            with context.socket(zmq.DEALER) as sock:
                sock.linger = 2000
                sock.connect(url)
                for frames in messages:
                    sock.send_multipart(frames)
                if url == connection.hub_addresses(info)[0]:
                    assert wait_for(lambda: sum(refused()), hub_before + engine_before + 1000) == \
                        hub_before + engine_before + 1000, "through the hub: each refused once, by hub or engine"
                    hub_before, engine_before = refused()
                else:
                    assert wait_for(lambda: refused()[1], engine_before + engine_refuses) == \
                        engine_before + engine_refuses, "sent to the engine itself: each malformed one refused once"
                    assert refused()[0] == hub_before, "the hub saw none of those"
        time.sleep(1)
    assert 1 <= refusal_lines(cluster.log_file) - lines_before <= 12  # the hub's and the engines', rate-limited
    assert rc[:].apply_sync(lambda: "alive") == ["alive"] * len(rc.ids)
    assert rc.load_balanced_view().apply_sync(lambda: 1) == 1
    assert info["key"] not in cluster.log_file.read_text(errors="replace")


def test_restart_engine_gives_a_fresh_kernel_with_the_same_id(cluster):
    rc = cluster.connect_client()
    rc[1].push({"before": 1}, block=True)
    old_pid = engine_pid(rc, 1)
    outstanding = rc[1].apply_async(sleeper(30))
    time.sleep(0.3)
    rc.restart_engine(1)
    with pytest.raises(EngineError, match="engine 1 was restarted"):
        outstanding.get(5)
    assert rc.ids == [0, 1, 2]
    assert engine_pid(rc, 1) != old_pid
    with pytest.raises(RemoteError, match="before"):
        rc[1].pull("before", block=True)
    assert rc[:].apply_sync(lambda: "all up") == ["all up"] * 3


def test_a_dead_engine_can_be_restarted_from_the_command_line(cluster):
    import subprocess
    import sys
    from pathlib import Path

    rc = cluster.connect_client()
    os.kill(engine_pid(rc, 0), signal.SIGKILL)
    assert wait_until(lambda: 0 not in rc.ids, timeout=10)
    pxcluster = str(Path(sys.executable).with_name("pxcluster"))
    restarted = subprocess.run([pxcluster, "restart-engine", "0", "--profile", "faults",
                                "--cluster-id", cluster.cluster_id], capture_output=True, text=True, timeout=120)
    assert restarted.returncode == 0, restarted.stderr
    rc.wait_for_engines(3, timeout=10)
    assert rc[0].apply_sync(lambda: "back") == "back"
    unknown = subprocess.run([pxcluster, "restart-engine", "7", "--profile", "faults",
                              "--cluster-id", cluster.cluster_id], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "no engine 7" in unknown.stderr


def test_an_engine_whose_kernelspec_asks_for_sigint_is_interrupted_with_it(tmp_path, monkeypatch):
    spec_dir = tmp_path / "jupyter" / "kernels" / "pxtest-sigint-engine"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["python", "-m", "pxmagic.engine", "-f", "{connection_file}"],
        "display_name": "pxmagic engine, interrupted by signal",
        "language": "python",
        "interrupt_mode": "signal",
    }))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(filter(None, [str(tmp_path / "jupyter"),
                                                                     os.environ.get("JUPYTER_PATH")])))
    cluster = Cluster(n=2, profile="faults", kernel_name="pxtest-sigint-engine")
    with cluster as rc:
        running = rc[:].apply_async(lambda: __import__("time").sleep(30))
        time.sleep(0.5)
        start = time.monotonic()
        rc.interrupt().get(10)
        with pytest.raises(CompositeError) as raised:
            running.get(10)
        assert time.monotonic() - start < 2
        assert [error.ename for _, error in raised.value.elist] == ["KeyboardInterrupt"] * 2
        assert rc[:].apply_sync(lambda: "usable") == ["usable", "usable"]
        assert cluster.log_file.read_text().count("with SIGINT (its kernelspec's interrupt_mode)") == 2
