"""The client's end of its bulk stream from the hub: large reply buffers read into huge-page memory.

See ``pxmagic.hub.bulk`` for why the stream exists and what the hub writes
on it.  Each buffer gets a private anonymous mapping of its own, advised for
transparent huge pages (faulted in 2 MiB at a time, where malloc's would be
4 KiB pages); it becomes the user's array and goes when the array does.
"""
from __future__ import annotations

import logging
import mmap
import socket

log = logging.getLogger("pxmagic.client")

#: buffers this large are worth huge pages (one huge page)
HUGE_PAGE = 2 << 20


class BulkReader:
    """A connected, greeted stream to the hub; :meth:`read` takes the buffers of one reply off it."""

    def __init__(self, address: str | tuple[str, int], hello: bytes, timeout: float):
        if isinstance(address, str):
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._sock.settimeout(timeout)
            try:
                self._sock.connect(address)
            except OSError:
                self._sock.close()
                raise
        else:
            self._sock = socket.create_connection(address, timeout)
        self._sock.sendall(hello)

    def read(self, sizes: list[int]) -> list[memoryview]:
        """The next buffers on the stream, of these sizes; OSError if the stream breaks or stays silent."""
        return [self._read_one(size) for size in sizes]

    def _read_one(self, size: int) -> memoryview:
        if size == 0:
            return memoryview(b"")
        buffer = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)
        if size >= HUGE_PAGE and hasattr(mmap, "MADV_HUGEPAGE"):
            buffer.madvise(mmap.MADV_HUGEPAGE)
        view = memoryview(buffer)
        done = 0
        while done < size:
            got = self._sock.recv_into(view[done:], size - done)
            if not got:
                raise ConnectionError("the hub closed the bulk stream in the middle of a reply")
            done += got
        return view

    def close(self) -> None:
        self._sock.close()
