"""Authentication tags of a message's buffer frames, so that its signature covers them.

The Jupyter signature covers a message's header, parent, metadata and
content, not the binary frames after them.  pxmagic puts a tag of each
buffer in the (signed) metadata, and whoever unpickles buffers (an engine, a
client) checks them first, so a captured message cannot be replayed with
other buffers.  The hub never unpickles and forwards buffers unread.

A large buffer's tag is a Poly1305 MAC under a one-time key derived from the
cluster's key and a fresh random nonce (HMAC-SHA256), written
``poly1305:<nonce>:<tag>``.  Poly1305 runs several times faster than
SHA-256: every large transfer pays this cost twice (sender and receiver),
and on a small machine the CPU it takes is the transfer's bottleneck
(``PXMAGIC_SHARED_MEMORY=0 benchmarks/data.py``).  The one-time key is what makes Poly1305
safe: no key ever tags two different buffers.  Deriving it costs more than
hashing a small buffer, so buffers under :data:`MAC_MIN` bytes are described by
their SHA-256 instead, ``sha256:<digest>``, which the signature covers as well.
"""
from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence
from typing import Any

from . import sharedmem

#: buffers at least this large get a Poly1305 tag, smaller ones their SHA-256
MAC_MIN = 64 * 1024
_NONCE_BYTES = 16
_Poly1305: Any = None


def _one_time_key(key: bytes, nonce: bytes) -> bytes:
    return hmac.digest(key, b"pxmagic buffer tag\0" + nonce, "sha256")


def _mac(key: bytes, nonce: bytes, data: memoryview) -> bytes:
    global _Poly1305
    if _Poly1305 is None:  # imported on first use: cryptography's import is slow, and most processes need none
        from cryptography.hazmat.primitives.poly1305 import Poly1305 as _Poly1305
    return _Poly1305.generate_tag(_one_time_key(key, nonce), data)


def _tag(key: bytes, frame: Any) -> str:
    data = memoryview(frame).cast("B")
    if data.nbytes < MAC_MIN:
        return "sha256:" + hashlib.sha256(data).hexdigest()
    nonce = os.urandom(_NONCE_BYTES)
    return f"poly1305:{nonce.hex()}:{_mac(key, nonce, data).hex()}"


def _is_tag_of(key: bytes, entry: Any, frame: Any) -> bool:
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


def tag_frames(key: bytes, frames: Sequence[Any]) -> list[str]:
    """A tag of each buffer frame under ``key``, for a message's signed metadata."""
    return [_tag(key, frame) for frame in frames]


def matches(key: bytes, expected: Any, frames: Sequence[Any]) -> bool:
    """Whether ``frames`` are the buffers that the signed tags ``expected`` describe."""
    return (isinstance(expected, list) and len(expected) == len(frames)
            and all(_is_tag_of(key, entry, frame) for entry, frame in zip(expected, frames)))


class BuffersRefused(ValueError):
    """A message's buffers are not what its signed metadata describes; nothing of them was unpickled."""


def describe(key: bytes, buffers: Sequence[Any], pool: "sharedmem.Pool | None" = None) -> tuple[list[str], list]:
    """The signed descriptors of a message's buffers, and the frames that travel with it.

    With a ``pool``, each buffer of at least :data:`sharedmem.THRESHOLD`
    bytes is written into one of its segments and described by reference
    (no frame); the others are frames, described by their tags.
    """
    descriptors, frames = [], []
    for buffer in buffers:
        view = memoryview(buffer)
        if pool is not None and view.nbytes >= sharedmem.THRESHOLD:
            descriptors.append(pool.lend(view))
        else:
            descriptors.append(_tag(key, view))
            frames.append(buffer)
    return descriptors, frames


def resolve(key: bytes, tag: str, descriptors: Any, frames: Sequence[Any]) -> list:
    """The buffers that signed ``descriptors`` describe: ``frames`` checked against their tags, segments mapped.

    Raises BuffersRefused, naming what is wrong, before any buffer is used.
    """
    if not isinstance(descriptors, list) or not all(isinstance(entry, str) for entry in descriptors):
        raise BuffersRefused("its buffers do not match their signed tags: it signs no list of strings for them")
    framed = [entry for entry in descriptors if not entry.startswith(sharedmem.SCHEME)]
    if not matches(key, framed, frames):
        raise BuffersRefused("its buffers do not match their signed tags")
    pending = iter(frames)
    try:
        return [sharedmem.open_segment(tag, entry) if entry.startswith(sharedmem.SCHEME) else next(pending)
                for entry in descriptors]
    except sharedmem.SegmentRefused as error:
        raise BuffersRefused(str(error)) from None


def segment_names(descriptors: Any) -> list[str]:
    """The names of the segments that ``descriptors`` refer to (unchecked: for bookkeeping only)."""
    if not isinstance(descriptors, list):
        return []
    return [sharedmem.split_reference(entry)[0] for entry in descriptors
            if isinstance(entry, str) and entry.startswith(sharedmem.SCHEME)]


def segment_bytes(descriptors: Any) -> int:
    """How many bytes of a message's buffers travel in segments."""
    if not isinstance(descriptors, list):
        return 0
    sizes = [sharedmem.split_reference(entry)[1] for entry in descriptors
             if isinstance(entry, str) and entry.startswith(sharedmem.SCHEME)]
    return sum(int(size) for size in sizes if size.isdigit())
