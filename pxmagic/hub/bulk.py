"""The buffers of large replies, from the hub to a client over a plain stream, into memory the client chooses.

ZMQ receives a message into memory libzmq allocates: in a client, fresh
4 KiB pages from malloc, whose first touch costs more than the copy on a
machine like ours (see FACTS; the hub and engines get huge pages from glibc,
a user's process cannot be told to after it started).  A client that reads
a reply's buffers itself reads them with ``recv_into`` into memory advised
for huge pages.  So a client opens one stream to the hub beside its ZMQ
sockets and says who it is in a signed, fresh hello (its ZMQ routing id);
from then on the hub writes the buffers of the large replies it forwards to
that client on the stream, in the order it sends the replies, and each reply
on ZMQ carries the buffers' sizes in a frame before its delimiter.  The
buffers are still checked against the reply's signed tags, so nothing read
from the stream is trusted.  Under CURVE the stream would carry plaintext
beside encrypted sockets, so the hub opens none.

The hub writes from its event loop (``sock_sendall``): a slow reader costs
it memory it holds anyway (the result store keeps the reply), never a stall.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from jupyter_client.session import Session

from .. import wire
from ..protocol import BULK_HELLO, ProtocolError, bulk_sizes_frame

log = logging.getLogger("pxmagic.hub")

#: a reply whose largest buffer is at least this large goes by the stream; below, ZMQ costs as little
THRESHOLD = 1 << 20
#: the most a hello may take
HELLO_LIMIT = 1 << 16


@dataclass
class _Link:
    sock: socket.socket
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    writer: asyncio.Task | None = None


class BulkLinks:
    """The hub's end of every client's bulk stream."""

    def __init__(self, session: Session, refused: Callable[[str, str], None]):
        self.session = session
        self._refused = refused
        self._listeners: list[socket.socket] = []
        self._links: dict[bytes, _Link] = {}
        self._path: str | None = None

    def listen(self, ipc_prefix: str | None, ip: str | None) -> dict:
        """Listen on a Unix socket beside the IPC sockets and, with ``ip``, on a TCP port; connection file entries."""
        entries: dict = {}
        if ipc_prefix:
            self._path = f"{ipc_prefix}-bulk"
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(self._path)
            entries["bulk_path"] = self._path
            self._serve(listener)
        if ip:
            listener = socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM)
            listener.bind((ip, 0))
            entries["bulk_port"] = listener.getsockname()[1]
            self._serve(listener)
        return entries

    def divert(self, client: bytes, frames: list, buffers: int) -> list:
        """What to send ``client`` on ZMQ for a reply of ``frames`` ending in ``buffers`` buffers: the reply, or,
        if it is large and the client has a stream, the reply without them, its buffers queued for the stream."""
        link = self._links.get(client)
        if link is None or not buffers or max(len(frame) for frame in frames[-buffers:]) < THRESHOLD:
            return frames
        data = frames[-buffers:]
        link.queue.put_nowait(data)
        return [bulk_sizes_frame(len(frame) for frame in data), *frames[:-buffers]]

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        for listener in self._listeners:
            loop.remove_reader(listener.fileno())
            listener.close()
        for client in list(self._links):
            self._drop(client)
        if self._path:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass

    def _serve(self, listener: socket.socket) -> None:
        listener.listen(64)
        listener.setblocking(False)
        self._listeners.append(listener)
        asyncio.get_running_loop().add_reader(listener.fileno(), self._accept, listener)

    def _accept(self, listener: socket.socket) -> None:
        try:
            sock, _ = listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        asyncio.get_running_loop().add_reader(sock.fileno(), self._read_hello, sock, bytearray())

    def _read_hello(self, sock: socket.socket, received: bytearray) -> None:
        loop = asyncio.get_running_loop()
        try:
            chunk = sock.recv(HELLO_LIMIT)
            received += chunk
            parts = wire.from_stream(received, HELLO_LIMIT) if chunk else None
            if not chunk:
                raise ProtocolError("it closed before saying who it is")
        except (OSError, ProtocolError) as error:
            loop.remove_reader(sock.fileno())
            sock.close()
            self._refused("a bulk stream", str(error))
            return
        if parts is None:
            return
        loop.remove_reader(sock.fileno())
        client = self._client_of(parts)
        if client is None:
            sock.close()
            return
        self._drop(client)
        link = self._links[client] = _Link(sock)
        link.writer = asyncio.ensure_future(self._write(client, link))
        loop.add_reader(sock.fileno(), self._closed, client, link)

    def _client_of(self, parts: list) -> bytes | None:
        """The routing id a hello proves, or None (refused, with its reason logged)."""
        if not parts or parts[0] != wire.DELIM:
            self._refused("a bulk stream's hello", "it has no <IDS|MSG> delimiter first")
            return None
        refusal = wire.check(self.session, parts[1:], wire.FRESH)
        if refusal is not None:
            self._refused("a bulk stream's hello", refusal.reason)
            return None
        try:
            header, _, content = wire.envelope(parts[1:])
            if header["msg_type"] != BULK_HELLO:
                raise ProtocolError(f"it is a {header['msg_type']}, not a {BULK_HELLO}")
            return bytes.fromhex(content["routing_id"])
        except (ProtocolError, KeyError, TypeError, ValueError) as error:
            self._refused("a bulk stream's hello", f"it names no routing id: {error}")
            return None

    async def _write(self, client: bytes, link: _Link) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                for frame in await link.queue.get():
                    await loop.sock_sendall(link.sock, memoryview(frame))
        except OSError as error:
            log.info("the bulk stream of a client broke (%s): its replies go by ZMQ", error)
            self._drop(client, link)

    def _closed(self, client: bytes, link: _Link) -> None:
        """The client closed its stream (it says nothing after its hello): its replies go by ZMQ again."""
        self._drop(client, link)

    def _drop(self, client: bytes, link: _Link | None = None) -> None:
        current = self._links.get(client)
        if current is None or (link is not None and current is not link):
            return
        del self._links[client]
        asyncio.get_running_loop().remove_reader(current.sock.fileno())
        if current.writer is not None and current.writer is not asyncio.current_task():
            current.writer.cancel()
        current.sock.close()
