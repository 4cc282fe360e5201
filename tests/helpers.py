"""Small helpers the test modules share."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def interactive(source: str) -> Callable:
    """The function ``source`` defines, as if typed in a notebook: it travels to the engines by value
    (a function of a test module would go by reference, and engines cannot import test modules)."""
    namespace: dict = {}
    exec(source, namespace)
    return next(value for name, value in namespace.items() if name != "__builtins__")


DELIM = b"<IDS|MSG>"


def signed_frames(key: bytes, header: bytes, parent: bytes = b"{}", metadata: bytes = b"{}",
                  content: bytes = b"{}") -> list[bytes]:
    """A message signed by hand with HMAC-SHA256, as a foreign or hostile sender would make it (no pxmagic
    code builds it, so a test can send what pxmagic itself never would)."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in (header, parent, metadata, content):
        mac.update(part)
    return [DELIM, mac.hexdigest().encode(), header, parent, metadata, content]


def reply_contents(sock: Any, count: int, timeout: float = 10) -> list[dict]:
    """The content of the next ``count`` replies on a raw DEALER ``sock`` (fewer if they stop coming:
    ``timeout`` seconds is the longest wait for each)."""
    got = []
    while len(got) < count and sock.poll(timeout * 1000):
        frames = sock.recv_multipart()
        got.append(json.loads(frames[frames.index(DELIM) + 5]))
    return got
