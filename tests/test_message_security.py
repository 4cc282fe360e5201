"""Messages whose signature does not verify are dropped by the hub and by the
engines before anything in them is unpickled or executed."""
from __future__ import annotations

import json
import os
import time

import zmq
from jupyter_client.session import Session

from pxmagic import serialize
from conftest import engine_shell_url


class Plant:
    """Unpickling this creates a file: proof that a payload was loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def forged_messages(path: str, key: bytes) -> list[list[bytes]]:
    """An apply_request with a pickle that plants ``path``, and an execute_request that does too."""
    attacker = Session(key=key, signature_scheme="hmac-sha256")
    apply_msg = attacker.msg("apply_request", {}, metadata={"targets": [0, 1, 2, 3]})
    apply_frames = attacker.serialize(apply_msg) + [bytes(f) for f in serialize.pack(Plant(path))]
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
    send_all(f"tcp://127.0.0.1:{info['request_port']}", forged_messages(target, b"not-the-key"))
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[:].apply_sync(lambda: "alive") == ["alive"] * len(rc.ids)


def test_the_same_payload_signed_with_the_key_does_run(rc, tmp_path):
    """The control: the forged messages above would act if their signature verified."""
    info = json.loads(rc.connection_file.read_text())
    target = str(tmp_path / "planted-with-key")
    send_all(f"tcp://127.0.0.1:{info['request_port']}", forged_messages(target, info["key"].encode()))
    assert os.path.isdir(target) and os.path.isdir(target + "-exec")


def test_hub_drops_unsigned_and_truncated_messages(rc, tmp_path):
    info = json.loads(rc.connection_file.read_text())
    target = str(tmp_path / "planted-unsigned")
    messages = forged_messages(target, b"")
    messages.append([b"<IDS|MSG>", b"garbage"])
    send_all(f"tcp://127.0.0.1:{info['request_port']}", messages)
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[0].apply_sync(lambda: 1) == 1


def test_engine_drops_messages_with_a_wrong_key(rc, tmp_path):
    target = str(tmp_path / "planted-at-engine")
    send_all(engine_shell_url(rc.engine_connection_file(2)), forged_messages(target, b"wrong"))
    assert not os.path.exists(target) and not os.path.exists(target + "-exec")
    assert rc[2].apply_sync(lambda: "engine alive") == "engine alive"
