"""Replayed requests never run, however long the cluster has lived, and every refusal is answered."""
from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import zmq

from conftest import engine_shell_url
from helpers import reply_contents, signed_frames
from pxmagic import Cluster, connection



@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=2, profile="replays")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def rc(cluster):
    client = cluster.connect_client()
    client.wait_for_engines(2, timeout=30)
    yield client
    client.close()


def marker():
    """A function that leaves a mark in a file, made in a closure so it travels to engines by value."""

    def mark(path: str) -> None:
        with open(path, "a") as marks:
            marks.write("ran\n")

    return mark


mark = marker()


def marks(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def frame_bytes(frame: object) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


def capture_requests(rc) -> list[list[bytes]]:
    """Record the signed frames this client sends to the hub, as someone on the wire could."""
    captured: list[list[bytes]] = []
    send = rc._channel.send

    def recording(frames: list, track: bool = False):
        captured.append([frame_bytes(frame) for frame in frames])
        return send(frames, track)

    rc._channel.send = recording
    return captured


def signed(key: bytes, header: dict, rest: list[bytes]) -> list[bytes]:
    return signed_frames(key, json.dumps(header).encode(), *rest[:3]) + rest[3:]


def now_iso(offset: float = 0) -> str:
    return (datetime.now(timezone.utc) + timedelta(seconds=offset)).isoformat()


def test_captured_requests_never_run_again_after_heavy_traffic_and_a_restart(rc, tmp_path, figure):
    info = json.loads(rc.connection_file.read_text())
    key = info["key"].encode()
    path = tmp_path / "marks"
    captured = capture_requests(rc)
    for _ in range(20):
        rc[0].apply_sync(mark, str(path))
    requests = [frames for frames in captured if json.loads(frames[2])["msg_type"] == "apply_request"]
    assert len(requests) == 20 and marks(path) == 20

    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(connection.hub_addresses(info)[0])
        # far past the 65,536 signatures jupyter_client's replay history keeps
        session = uuid.uuid4().hex
        for batch in range(26):
            for n in range(5000):
                header = {"msg_id": f"{session}_{batch}_{n}", "msg_type": "hub_info_request", "session": session,
                          "username": "traffic", "date": now_iso(), "version": "5.3"}
                sock.send_multipart(signed(key, header, [b"{}", b"{}", b"{}"]))
            assert len(reply_contents(sock, 5000, timeout=60)) == 5000
        rc.restart_engine(0)
        for frames in requests:
            sock.send_multipart(frames)
        replies = reply_contents(sock, 20)
        time.sleep(1)
    figure("replays accepted (20 captured requests, after 130,000 more and a restart)", marks(path) - 20, "",
           "must be 0")
    assert marks(path) == 20
    assert len(replies) == 20, "each replay is answered"
    assert all(r["status"] == "error" and "received before (a replay)" in r["evalue"] for r in replies), replies[0]


def test_a_capture_older_than_the_window_is_refused_and_answered(rc, tmp_path):
    info = json.loads(rc.connection_file.read_text())
    path = tmp_path / "marks"
    captured = capture_requests(rc)
    rc[1].apply_sync(mark, str(path))
    frames = captured[-1]
    header = {**json.loads(frames[2]), "msg_id": uuid.uuid4().hex, "date": now_iso(-7200)}
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(connection.hub_addresses(info)[0])
        sock.send_multipart(signed(info["key"].encode(), header, frames[3:]))
        [reply] = reply_contents(sock, 1)
        time.sleep(0.5)
    assert reply["status"] == "error" and "dated 7200 s ago" in reply["evalue"]
    assert marks(path) == 1


def test_an_engine_answers_the_requests_it_refuses(rc, tmp_path):
    """An engine that refused in silence would leave its request outstanding at the hub for ever."""
    info = json.loads(rc.connection_file.read_text())
    key = info["key"].encode()
    path = tmp_path / "marks"
    captured = capture_requests(rc)
    rc[0].apply_sync(mark, str(path))
    frames = captured[-1]
    request = {**json.loads(frames[2]), "msg_id": uuid.uuid4().hex, "date": now_iso()}
    stale = {**request, "msg_id": uuid.uuid4().hex, "date": now_iso(-7200)}
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(engine_shell_url(rc.engine_connection_file(0)))
        fresh = signed(key, request, frames[3:])
        sock.send_multipart(fresh)
        sock.send_multipart(fresh)
        sock.send_multipart(signed(key, stale, frames[3:]))
        first, again, old = reply_contents(sock, 3)
    assert first["status"] == "ok"
    assert again["status"] == "error" and "received before (a replay)" in again["evalue"]
    assert old["status"] == "error" and "dated 7200 s ago" in old["evalue"]
    assert "engine 0 refused apply_request" in again["evalue"]
    assert marks(path) == 2
    assert rc[0].apply_sync(lambda: "alive") == "alive"
