"""Digests of a message's buffer frames, so that its signature covers them.

The Jupyter signature covers a message's header, parent, metadata and
content, not the binary frames after them.  pxmagic puts a digest of each
buffer in the (signed) metadata, and whoever unpickles buffers (an engine, a
client) checks them first, so a captured message cannot be replayed with
other buffers.  The hub never unpickles and forwards buffers unread.

SHA-256 runs at ~1.4 GB/s on one core here, a cost paid at both ends of
every large transfer.  hashlib releases the GIL, so a large frame is hashed
as ``PARTS`` equal parts on a thread pool and its digest is the SHA-256 of
the parts' digests.  The split depends only on the frame's length, so sender
and receiver agree whatever their number of cores.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

#: frames at least this large are hashed in parts, in parallel
PARALLEL_MIN = 4 * 1024 * 1024
PARTS = 4

_pool: ThreadPoolExecutor | None = None


def _part_digest(part: memoryview) -> bytes:
    return hashlib.sha256(part).digest()


def _frame_digest(frame: Any) -> str:
    view = memoryview(frame)
    if view.nbytes < PARALLEL_MIN:
        return hashlib.sha256(view).hexdigest()
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(min(PARTS, os.cpu_count() or 1), thread_name_prefix="pxmagic-digest")
    data = view.cast("B") if view.format != "B" or view.ndim != 1 else view
    step = -(-data.nbytes // PARTS)
    parts = [data[start:start + step] for start in range(0, data.nbytes, step)]
    return f"sha256x{PARTS}:" + hashlib.sha256(b"".join(_pool.map(_part_digest, parts))).hexdigest()


def digests(frames: Sequence[Any]) -> list[str]:
    """The digest of each buffer frame, for a message's signed metadata."""
    return [_frame_digest(frame) for frame in frames]


def matches(expected: Any, frames: Sequence[Any]) -> bool:
    """Whether ``frames`` are the buffers that the signed ``expected`` digests describe."""
    return isinstance(expected, list) and len(expected) == len(frames) and expected == digests(frames)
