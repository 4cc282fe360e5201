"""Authentication tags of a message's buffer frames, so that its signature covers them.

The Jupyter signature covers a message's header, parent, metadata and
content, not the binary frames after them.  pxmagic puts a tag of each
buffer in the (signed) metadata, and whoever unpickles buffers (an engine, a
client) checks them first, so a captured message cannot be replayed with
other buffers.  The hub never unpickles and forwards buffers unread.

A large buffer's tag is a Poly1305 MAC under a one-time key derived from the
cluster's key and a fresh random nonce (HMAC-SHA256), written
``poly1305:<nonce>:<tag>``.  Poly1305 runs at ~5 GB/s on one core here,
where SHA-256 runs at ~1.4 GB/s: every large transfer pays this cost twice
(sender and receiver), and on a small machine the CPU it takes is the
transfer's bottleneck.  The one-time key is what makes Poly1305 safe: no key
ever tags two different buffers.  Deriving it costs ~9 us a buffer, more than
hashing a small one, so buffers under :data:`MAC_MIN` bytes are described by
their SHA-256 instead, ``sha256:<digest>``, which the signature covers as well.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

#: buffers at least this large get a Poly1305 tag, smaller ones their SHA-256
MAC_MIN = 64 * 1024
_NONCE_BYTES = 16
_Poly1305: Any = None


def _one_time_key(key: bytes, nonce: bytes) -> bytes:
    return hmac.digest(key, b"pxmagic buffer tag\0" + nonce, "sha256")


def _mac(key: bytes, nonce: bytes, data: memoryview) -> bytes:
    global _Poly1305
    if _Poly1305 is None:  # imported on first use: it adds ~13 ms to a process's start
        from cryptography.hazmat.primitives.poly1305 import Poly1305 as _Poly1305
    return _Poly1305.generate_tag(_one_time_key(key, nonce), data)


def _describe(key: bytes, frame: Any) -> str:
    data = memoryview(frame).cast("B")
    if data.nbytes < MAC_MIN:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    nonce = os.urandom(_NONCE_BYTES)
    return f"poly1305:{nonce.hex()}:{_mac(key, nonce, data).hex()}"


def _describes(key: bytes, entry: Any, frame: Any) -> bool:
    if not isinstance(entry, str):
        return False
    data = memoryview(frame).cast("B")
    scheme, _, rest = entry.partition(":")
    if scheme == "sha256" and data.nbytes < MAC_MIN:
        return hmac.compare_digest(hashlib.sha256(data).hexdigest(), rest)
    nonce_hex, _, tag_hex = rest.partition(":")
    try:
        nonce, tag = bytes.fromhex(nonce_hex), bytes.fromhex(tag_hex)
    except ValueError:
        return False
    return (scheme == "poly1305" and data.nbytes >= MAC_MIN and len(nonce) == _NONCE_BYTES
            and hmac.compare_digest(_mac(key, nonce, data), tag))


def digests(key: bytes, frames: Sequence[Any]) -> list[str]:
    """A tag of each buffer frame under ``key``, for a message's signed metadata."""
    return [_describe(key, frame) for frame in frames]


def matches(key: bytes, expected: Any, frames: Sequence[Any]) -> bool:
    """Whether ``frames`` are the buffers that the signed tags ``expected`` describe."""
    return (isinstance(expected, list) and len(expected) == len(frames)
            and all(_describes(key, entry, frame) for entry, frame in zip(expected, frames)))
