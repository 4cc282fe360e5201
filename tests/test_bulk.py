"""A client without shared memory reads large results off a stream beside ZMQ, into huge pages.

Real clusters, real sockets: the client is in this process with shared memory
turned off (as on another host), or a separate process to kill.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from jupyter_client.session import Session

from pxmagic import Client, wire
from pxmagic.protocol import BULK_HELLO, HUB_INFO_REQUEST
from helpers import wait_until

MB = 1 << 20


def huge_page_bytes(array: np.ndarray) -> int:
    """How much of the mapping that holds ``array``, in this process, is transparent huge pages."""
    address, inside = array.ctypes.data, False
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            fields = line.split()
            if "-" in fields[0] and len(fields) >= 5:
                start, end = (int(bound, 16) for bound in fields[0].split("-"))
                inside = start <= address < end
            elif inside and fields[0] == "AnonHugePages:":
                return int(fields[1]) * 1024
    return 0


def thp_advised() -> bool:
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as file:
            return "[never]" not in file.read()
    except OSError:
        return False


@pytest.fixture
def remote_style(rc, monkeypatch):
    """A client of the module's cluster that uses no shared memory, as one on another host."""
    monkeypatch.setenv("PXMAGIC_SHARED_MEMORY", "0")
    client = Client(rc.connection_file)
    yield client
    client.close()


def refused(rc) -> int:
    return rc._hub_request(HUB_INFO_REQUEST, 5)["content"]["refused"]


def test_a_large_result_is_read_off_the_stream_into_huge_pages(rc, remote_style):
    data = np.random.default_rng(3).random(4 * MB)  # 32 MB
    rc[0].push({"big": data}, block=True)
    pulled = remote_style[0].pull("big", block=True)
    assert np.array_equal(pulled, data)
    assert pulled.flags.writeable, "the client's own memory, not a ZMQ frame's"
    if thp_advised():
        assert huge_page_bytes(pulled) >= 16 * MB
    small = remote_style[0].apply_sync(lambda: big[:1000].copy())  # noqa: F821 (below the threshold: by ZMQ)
    assert np.array_equal(small, data[:1000])
    rc[0].execute("big = None", block=True)


def test_a_stored_large_result_fetched_by_another_client_comes_on_its_stream(rc, remote_style):
    data = np.random.default_rng(4).random(2 * MB)  # 16 MB
    rc[0].push({"big": data}, block=True)
    doubled = rc[0].apply_async(lambda: big * 2)  # noqa: F821
    assert np.array_equal(doubled.get(30), data * 2)
    fetched = remote_style.get_result(doubled.msg_ids[0]).get(30)
    assert np.array_equal(fetched, data * 2)
    if thp_advised():
        assert huge_page_bytes(fetched) >= 8 * MB
    rc[0].execute("big = None", block=True)


def test_a_client_whose_stream_broke_gets_large_results_by_zmq(rc, remote_style):
    data = np.arange(4 * MB, dtype=np.int64)
    rc[0].push({"big": data}, block=True)
    assert np.array_equal(remote_style[0].pull("big", block=True), data)
    remote_style._channel._bulk._sock.shutdown(socket.SHUT_RDWR)  # as a broken connection does
    time.sleep(0.5)
    for _ in range(2):
        again = remote_style[0].pull("big", block=True)
        assert np.array_equal(again, data)
    rc[0].execute("big = None", block=True)


def hello(key: bytes, routing_id: bytes) -> list:
    return wire.build(Session(key=key, signature_scheme="hmac-sha256"), BULK_HELLO, {"routing_id": routing_id.hex()})


def greet(path: str, data: bytes) -> bytes:
    """Send ``data`` on a new stream to the hub; what the hub sends back before it closes or 2 s pass."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        sock.connect(path)
        sock.sendall(data)
        try:
            return sock.recv(100)
        except TimeoutError:
            return b"(still open)"
        except ConnectionResetError:  # closed with some of what was sent unread
            return b""


def test_a_forged_replayed_or_malformed_hello_is_refused_and_closed(rc):
    info = json.loads(rc.connection_file.read_text())
    key = info["key"].encode()
    before = refused(rc)
    real = wire.to_stream(hello(key, b"px" + os.urandom(14)))
    assert greet(info["bulk_path"], real) == b"(still open)", "a signed hello opens a stream"
    assert greet(info["bulk_path"], real) == b"", "the same hello again is a replay"
    assert greet(info["bulk_path"], wire.to_stream(hello(b"not the key", b"px1"))) == b""
    assert greet(info["bulk_path"], b"\xff\xff\xff\xff" + os.urandom(64)) == b""
    assert greet(info["bulk_path"], wire.to_stream([b"x" * 70_000])) == b""
    wait_until(lambda: refused(rc) >= before + 4, timeout=5)
    assert refused(rc) == before + 4
    assert rc[0].apply_sync(lambda: "alive") == "alive"


KILLED_CLIENT = textwrap.dedent("""
    import sys
    from pxmagic import Client
    rc = Client(sys.argv[1])
    print("ready", flush=True)
    while True:
        rc[0].pull("huge", block=True)
""")


def test_a_client_killed_while_the_hub_streams_to_it_breaks_nothing(rc, tmp_path):
    data = np.ones(256 * MB // 8)
    rc[0].push({"huge": data}, block=True)
    script = tmp_path / "client.py"
    script.write_text(KILLED_CLIENT)
    env = {**os.environ, "PXMAGIC_SHARED_MEMORY": "0"}
    client = subprocess.Popen([sys.executable, str(script), str(rc.connection_file)], env=env,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "ready"
        time.sleep(1.5)  # pulls under way
    finally:
        client.send_signal(signal.SIGKILL)
        client.wait(10)
    assert rc[0].apply_sync(lambda: float(huge.sum())) == float(data.size)  # noqa: F821
    rc[0].execute("huge = None", block=True)
    with Client(rc.connection_file) as other:
        assert other[1].apply_sync(lambda: "alive") == "alive"


@pytest.fixture
def breaking_stream(monkeypatch):
    """The client's bulk stream breaks in the middle of the next buffer it reads: its socket is shut down, for real,
    after the first MB (as a connection lost under way)."""
    from pxmagic.client import bulk

    read_one = bulk.BulkReader._read_one

    def break_then_read(self, size):
        self._sock.recv(MB, socket.MSG_WAITALL)
        self._sock.shutdown(socket.SHUT_RDWR)
        monkeypatch.setattr(bulk.BulkReader, "_read_one", read_one)
        return read_one(self, size)

    monkeypatch.setattr(bulk.BulkReader, "_read_one", break_then_read)


def test_a_result_whose_buffers_a_broken_stream_lost_is_fetched_again(rc, remote_style, breaking_stream):
    data = np.random.default_rng(5).random(4 * MB)
    rc[0].push({"big": data}, block=True)
    assert np.array_equal(remote_style[0].pull("big", block=False).get(30), data)
    assert np.array_equal(remote_style[0].pull("big", block=False).get(30), data), "and the next by ZMQ"
    rc[0].execute("big = None", block=True)
