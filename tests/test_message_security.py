"""Messages whose signature does not verify are dropped by the hub and by the
engines before anything in them is unpickled or executed."""
from __future__ import annotations

import json
import os
import time

import zmq
from jupyter_client.session import Session

from pxmagic import connection, serialize
from pxmagic.tags import tag_frames
from pxmagic.protocol import request_metadata
from conftest import engine_shell_url
from helpers import reply_contents


class Plant:
    """Unpickling this creates a file: proof that a payload was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def forged_messages(path: str, key: bytes) -> list[list[bytes]]:
    """An apply_request with a pickle that plants ``path``, and an execute_request that does too."""
    attacker = Session(key=key, signature_scheme="hmac-sha256")
    buffers = [bytes(f) for f in serialize.pack(Plant(path))]
    apply_msg = attacker.msg("apply_request", {}, metadata=request_metadata([0, 1, 2, 3], tag_frames(key, buffers)))
    apply_frames = attacker.serialize(apply_msg) + buffers
    code = f"import os; os.mkdir({path + '-exec'!r})"
    execute_msg = attacker.msg("execute_request", {"code": code, "silent": False},
                               metadata={"targets": [0, 1, 2, 3]})
    return [apply_frames, attacker.serialize(execute_msg)]


def send_all(url: str, messages: list[list[bytes]]) -> None:
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 1000
        sock.connect(url)
        for frames in messages:
            sock.send_multipart(frames)
        time.sleep(1.0)


def test_hub_drops_messages_with_a_wrong_key(rc, tmp_path):
    info = json.loads(rc.connection_file.read_text())
    target = str(tmp_path / "planted-through-hub")
    send_all(connection.hub_addresses(info)[0], forged_messages(target, b"not-the-key"))
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[:].apply_sync(lambda: "alive") == ["alive"] * len(rc.ids)


def test_the_same_payload_signed_with_the_key_does_run(rc, tmp_path):
    """The control: the forged messages above would act if their signature verified."""
    info = json.loads(rc.connection_file.read_text())
    target = str(tmp_path / "planted-with-key")
    send_all(connection.hub_addresses(info)[0], forged_messages(target, info["key"].encode()))
    assert os.path.isdir(target) and os.path.isdir(target + "-exec")


def test_hub_drops_unsigned_and_truncated_messages(rc, tmp_path):
    info = json.loads(rc.connection_file.read_text())
    target = str(tmp_path / "planted-unsigned")
    messages = forged_messages(target, b"")
    messages.append([b"<IDS|MSG>", b"garbage"])
    send_all(connection.hub_addresses(info)[0], messages)
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[0].apply_sync(lambda: 1) == 1


def test_engine_drops_messages_with_a_wrong_key(cluster, rc, tmp_path):
    """Straight to an engine's shell: refused, and counted once each, before anything is loaded."""
    def refused() -> int:
        return rc[2].apply_sync(lambda: get_ipython().kernel.refusals.total)  # noqa: F821

    before = refused()
    target = str(tmp_path / "planted-at-engine")
    send_all(engine_shell_url(rc.engine_connection_file(2)), forged_messages(target, b"wrong"))
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[2].apply_sync(lambda: "engine alive") == "engine alive"
    assert refused() - before == 2


def signed_apply(key: bytes, payload: object, signed_buffers: list[bytes] | None) -> tuple[list[bytes], list[bytes]]:
    """A correctly signed apply_request carrying ``payload``'s buffers, whose signed
    tags are those of ``signed_buffers`` (None: no tags at all)."""
    session = Session(key=key, signature_scheme="hmac-sha256")
    buffers = [bytes(f) for f in serialize.pack(payload)]
    metadata = {"targets": [1]}
    if signed_buffers is not None:
        metadata["buffer_tags"] = tag_frames(key, signed_buffers)
    return session.serialize(session.msg("apply_request", {}, metadata=metadata)), buffers


def exchange(url: str, messages: list[list[bytes]], replies: int, wait: float = 10) -> list[dict]:
    """Send ``messages`` to the hub; return the content of the replies (at most ``replies``)
    that came within ``wait`` seconds of each other."""
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        sock.connect(url)
        for frames in messages:
            sock.send_multipart(frames)
        return reply_contents(sock, replies, wait)


def test_buffers_swapped_under_a_signature_are_not_unpickled(rc, tmp_path):
    """The key holder's signature covers the buffers too: other buffers under it are refused."""
    info = json.loads(rc.connection_file.read_text())
    url = connection.hub_addresses(info)[0]
    key = info["key"].encode()
    harmless = [bytes(f) for f in serialize.pack_call(len, ("abc",), {})]
    target = str(tmp_path / "planted-by-swap")
    swapped = signed_apply(key, Plant(target), signed_buffers=harmless)
    unsigned = signed_apply(key, Plant(target + "-unsigned"), signed_buffers=None)
    replies = exchange(url, [swapped[0] + swapped[1], unsigned[0] + unsigned[1]], replies=2)
    assert [r["ename"] for r in replies] == ["PermissionError", "PermissionError"]
    assert all("do not match their signed tags" in r["evalue"] for r in replies)
    assert not os.path.exists(target) and not os.path.exists(target + "-unsigned")
    assert rc[1].apply_sync(lambda: "engine alive") == "engine alive"


def test_a_replayed_message_with_swapped_buffers_is_refused(rc, tmp_path):
    """A captured message sent again, with the attacker's buffers, never reaches an engine; the hub says why."""
    info = json.loads(rc.connection_file.read_text())
    url = connection.hub_addresses(info)[0]
    session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    call = [bytes(f) for f in serialize.pack_call(len, ("abc",), {})]
    metadata = request_metadata([1], tag_frames(session.key, call))
    captured = session.serialize(session.msg("apply_request", {}, metadata=metadata))
    assert exchange(url, [captured + call], replies=1)[0]["status"] == "ok"
    target = str(tmp_path / "planted-by-replay")
    replayed = captured + [bytes(f) for f in serialize.pack(Plant(target))]
    [refusal] = exchange(url, [replayed], replies=1, wait=3)
    assert refusal["status"] == "error" and "a replay" in refusal["evalue"]
    assert not os.path.exists(target)
    assert rc[1].apply_sync(lambda: "engine alive") == "engine alive"
