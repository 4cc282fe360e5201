"""Large buffers between processes of one host travel through shared memory: one copy, private writes, nothing left.

Real clusters, real ``/dev/shm`` segments; a remote-style client (shared
memory turned off, as on another host) still gets every buffer by frames.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from jupyter_client.session import Session

from pxmagic import connection, serialize, sharedmem
from pxmagic.protocol import request_metadata
from helpers import wait_until
from test_message_security import exchange

MB = 1 << 20


def segments(tag: str) -> list[str]:
    return sorted(name for name in os.listdir(sharedmem.DIRECTORY) if name.startswith(f"pxmagic-{tag}-"))


def tag_of(rc) -> str:
    return sharedmem.cluster_tag(rc.session.key)


def pss(pid: int) -> int:
    """Proportional set size of a process in bytes: a page shared by N processes counts 1/N in each."""
    with open(f"/proc/{pid}/smaps_rollup") as file:
        for line in file:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"no Pss line for {pid}")



def test_a_pushed_array_is_equal_everywhere_and_writes_stay_private(rc, dview):
    data = np.random.default_rng(0).random(4 * MB)  # 32 MB
    dview.push({"shared": data})
    assert dview.apply_sync(lambda: float(shared.sum())) == [float(data.sum())] * len(rc.ids)  # noqa: F821

    def scribble():
        shared[:10] = -1.0  # noqa: F821
        return float(shared[0])  # noqa: F821

    assert rc[0].apply_sync(scribble) == -1.0
    assert rc[1].apply_sync(lambda: float(shared[0])) == data[0]  # noqa: F821
    assert dview.pull("shared", targets=1).tobytes() == data.tobytes()
    assert data[0] != -1.0
    assert any(name.startswith(f"pxmagic-{tag_of(rc)}-{os.getpid()}-") for name in segments(tag_of(rc)))


def test_a_broadcast_is_held_once_by_all_engines(rc, dview):
    nbytes = 128 * MB
    data = np.ones(nbytes // 8)
    dview.execute("shared = None")
    pids = dview.apply_sync(os.getpid)
    before = sum(map(pss, pids))
    dview.push({"shared": data})
    dview.execute("touched = float(shared.sum())")  # every engine reads every page
    copies = (sum(map(pss, pids)) - before) / nbytes
    assert dview.pull("touched") == [float(nbytes // 8)] * len(pids)
    assert copies < 1.3, f"{len(pids)} engines hold {copies:.2f} copies of one broadcast"
    dview.execute("shared = None")


def test_a_big_result_stays_right_after_its_segment_is_gone(rc):
    data = np.arange(8 * MB, dtype=np.int64)
    rc[0].push({"big": data}, block=True)
    pulled = rc[0].pull("big", block=True)
    rc[0].execute("big = None", block=True)
    rc.purge_results("all")
    sharedmem.sweep(tag_of(rc), everything=True)  # every name of the cluster's segments gone
    assert np.array_equal(pulled, data)
    pulled[:3] = 7  # the client's copy is its own, too
    assert rc[0].apply_sync(lambda: "alive") == "alive"


def backing_file(array: np.ndarray) -> str:
    """The file that the pages of ``array``, in this process, are mapped from ('' for private memory)."""
    address = array.ctypes.data
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            start, end = (int(bound, 16) for bound in fields[0].split("-"))
            if start <= address < end:
                return fields[5] if len(fields) > 5 else ""
    raise AssertionError(f"{address:#x} is in no mapping")


def test_an_array_sent_back_unchanged_comes_from_the_segment_it_went_in(rc):
    data = np.random.default_rng(1).random(2 * MB)  # 16 MB
    rc[0].push({"trip": data}, block=True)
    engine = rc[0].apply_sync(os.getpid)
    pulled = rc[0].pull("trip", block=True)
    tail = rc[0].apply_sync(lambda: trip[1000:])  # noqa: F821 (a view that starts off a page)
    assert np.array_equal(pulled, data) and np.array_equal(tail, data[1000:])
    own = f"/pxmagic-{tag_of(rc)}-{os.getpid()}-"
    assert own in backing_file(pulled) and own in backing_file(tail), "the engine named the client's segment again"

    rc[0].execute("trip[300_000] = -1.0")  # one page becomes the engine's own
    changed = rc[0].pull("trip", block=True)
    assert changed[300_000] == -1.0 and pulled[300_000] == data[300_000] != -1.0
    assert np.array_equal(changed[:300_000], data[:300_000])
    assert f"-{engine}-" in backing_file(changed), "a changed array is copied into a segment of the engine's"
    rc[0].execute("trip = None", block=True)


def test_a_forged_or_foreign_segment_is_refused_before_mapping(rc, tmp_path):
    info = json.loads(rc.connection_file.read_text())
    key = info["key"].encode()
    session = Session(key=key, signature_scheme="hmac-sha256")
    call = [bytes(f) for f in serialize.pack_call(len, (np.zeros(MB // 4),), {})]
    own = sharedmem.cluster_tag(key)
    foreign = sharedmem.cluster_tag(b"another cluster")
    small = tmp_path / "small"
    short = os.path.join(sharedmem.DIRECTORY, f"pxmagic-{own}-{os.getpid()}-999999")
    loose = os.path.join(sharedmem.DIRECTORY, f"pxmagic-{own}-{os.getpid()}-999998")
    for path, size, mode in ((short, 100, 0o600), (loose, 4 * MB, 0o644)):
        with open(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode), "wb") as file:
            file.write(b"\0" * size)
        os.chmod(path, mode)
    cases = {
        f"shm:pxmagic-{foreign}-{os.getpid()}-1:{len(call[1])}": "belongs to another cluster",
        f"shm:../../{small}:10": "is not the name of a pxmagic segment",
        f"shm:pxmagic-{own}-{os.getpid()}-999999:{len(call[1])}": "holds 100 bytes",
        f"shm:{os.path.basename(loose)}:{MB}": "not a 0600 file",
    }
    try:
        for descriptor, reason in cases.items():
            metadata = request_metadata([0], [buffer_tag(key, call[0]), descriptor])
            message = session.serialize(session.msg("apply_request", {}, metadata=metadata)) + [call[0]]
            reply = exchange(connection.hub_addresses(info)[0], [message], replies=1)[0]
            assert reply["ename"] == "PermissionError" and reason in reply["evalue"], (descriptor, reply)
    finally:
        for path in (short, loose):
            os.unlink(path)
    assert rc[0].apply_sync(lambda: "alive") == "alive"


def buffer_tag(key: bytes, frame: bytes) -> str:
    from pxmagic.tags import tag_frames

    return tag_frames(key, [frame])[0]


CLIENT = textwrap.dedent("""
    import sys, numpy as np
    from pxmagic import Client
    rc = Client(url_file=sys.argv[1])
    data = np.random.default_rng(1).random(4 << 20)
    rc[:].push({"remote": data}, block=True)
    pulled = rc[0].pull("remote", block=True)
    same = rc[:].apply_sync(lambda: float(remote.sum()))
    print(np.array_equal(pulled, data) and same == [float(data.sum())] * len(rc.ids), flush=True)
    if len(sys.argv) > 2:
        while True:
            rc[0].push({"remote": data}, block=True)
""")


def test_a_client_without_shared_memory_gets_every_buffer_by_frames(rc, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    before = segments(tag_of(rc))
    env = {**os.environ, "PXMAGIC_SHARED_MEMORY": "0"}
    out = subprocess.run([sys.executable, str(script), str(rc.connection_file)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
    assert not [n for n in segments(tag_of(rc)) if n not in before]


def test_a_killed_clients_segments_are_removed(rc, tmp_path):
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    child = subprocess.Popen([sys.executable, str(script), str(rc.connection_file), "loop"],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "True"
    mine = f"pxmagic-{tag_of(rc)}-{child.pid}-"
    assert any(n.startswith(mine) for n in segments(tag_of(rc)))
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert wait_until(lambda: not any(n.startswith(mine) for n in segments(tag_of(rc))), 5)
    assert rc[:].apply_sync(lambda: float(remote.sum())) == [rc[0].apply_sync(lambda: float(remote.sum()))] * len(rc.ids)  # noqa: F821


@pytest.mark.parametrize("victim", ["engine", "hub", "stop"])
def test_nothing_of_a_cluster_stays_in_shared_memory(victim):
    from pxmagic import Cluster

    cluster = Cluster(n=2)
    rc = cluster.start_and_connect_sync()
    tag = tag_of(rc)
    try:
        data = np.ones(16 * MB)
        rc[:].push({"x": data}, block=True)
        rc[0].pull("x", block=True)
        engine_pid = rc[0].apply_sync(os.getpid)
        pending = rc[0].apply_async(lambda: (__import__("time").sleep(0.3), x * 2)[1])  # noqa: F821
        assert segments(tag)
        if victim == "engine":
            os.kill(engine_pid, signal.SIGKILL)
            theirs = f"pxmagic-{tag}-{engine_pid}-"
            assert wait_until(lambda: not any(n.startswith(theirs) for n in segments(tag)), 5)
            pending.exception(timeout=10)
            return
        if victim == "hub":
            os.kill(json.loads(rc.connection_file.read_text())["hub_pid"], signal.SIGKILL)
            assert wait_until(lambda: not segments(tag), rc.hub_timeout + 5), segments(tag)
            return
        pending.result(timeout=10)
    finally:
        rc.close()
        cluster.stop()
    assert wait_until(lambda: not segments(tag), 5), segments(tag)


def test_an_engine_without_shared_memory_gets_frames_from_the_hub(rc, cluster):
    """As an engine on another host: the hub reads the client's segments into frames for it."""
    before = set(rc.ids)
    process = subprocess.Popen(
        [sys.executable, "-m", "pxmagic.engine", "--register",
         str(connection.engine_file(cluster.profile, cluster.cluster_id))],
        env={**os.environ, "PXMAGIC_SHARED_MEMORY": "0"},
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc.wait_for_engines(len(before) + 1, timeout=60)
        [far] = set(rc.ids) - before
        data = np.random.default_rng(2).random(2 * MB)
        view = rc[[far, 0]]
        view.push({"mixed": data}, block=True)
        assert view.apply_sync(lambda: float(mixed.sum())) == [float(data.sum())] * 2  # noqa: F821
        assert np.array_equal(rc[far].pull("mixed", block=True), data)
        assert rc[far].apply_sync(lambda: __import__("os").listdir("/proc/self/map_files") and
                                  not any("pxmagic-" in __import__("os").readlink(f"/proc/self/map_files/{m}")
                                          for m in __import__("os").listdir("/proc/self/map_files")))
    finally:
        process.kill()
        process.wait(10)


def test_a_stored_result_in_shared_memory_reaches_a_client_without_it(rc, tmp_path):
    data = np.random.default_rng(3).random(2 * MB)
    rc[0].push({"kept": data}, block=True)
    ar = rc[0].apply_async(lambda: kept)  # noqa: F821
    ar.get(timeout=30)
    script = tmp_path / "fetch.py"
    script.write_text(textwrap.dedent(f"""
        import sys, numpy as np
        from pxmagic import Client
        rc = Client(url_file=sys.argv[1])
        value = rc.get_result({ar.msg_ids[0]!r}).get(timeout=30)
        print(float(value.sum()), flush=True)
    """))
    env = {**os.environ, "PXMAGIC_SHARED_MEMORY": "0"}
    out = subprocess.run([sys.executable, str(script), str(rc.connection_file)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.stdout.strip() == repr(float(data.sum())), out.stderr


def test_purged_results_let_go_of_their_segments(rc):
    """Neither the client nor a view's history keeps a purged result's data mapped, so its engine reuses it."""
    engine_pid = rc[0].apply_sync(os.getpid)
    view = rc[0]
    view.push({"again": np.ones(4 * MB)}, block=True)

    def mapped_from_engine() -> set[str]:
        with open("/proc/self/maps") as maps:
            return {line.split()[-1] for line in maps if f"-{engine_pid}-" in line and "pxmagic-" in line}

    for _ in range(3):
        assert view.pull("again", block=True).shape == (4 * MB,)
        rc.purge_local_results("all")
        assert not mapped_from_engine()
    theirs = [n for n in segments(tag_of(rc)) if f"-{engine_pid}-" in n]
    assert len(theirs) <= 2, theirs
