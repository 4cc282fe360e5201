"""Reading many ZMQ sockets from one asyncio loop, fairly and without losing a wake-up.

The hub reads plain (not zmq.asyncio) sockets from loop callbacks: a
zmq.asyncio future per recv and per send costs more than the rest of a
small request's routing.  Each socket has its own reader, so a message
costs the same with 4 or 1,000 engines (polling every socket costs in
proportion to the engines; ``tests/test_registration.py`` starts 1,000).

A ZMQ socket's FD only signals a change, and a send on a socket can consume
the signal of messages that arrived on it meanwhile.  So every send on a
served socket goes through :meth:`SocketPump.send`, and each socket
written to is checked once more before the loop moves on (a reply sent to a
client, say, is checked for the client's next request).  A socket written to
after its check gets another one on the loop's next turn, and at most
``DRAIN_BATCH`` messages are taken from a socket at a time, so one busy
socket cannot starve the others.  :meth:`SocketPump.sweep`, called
periodically, catches input whose signal a send outside ``wrote`` consumed.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable

import zmq

log = logging.getLogger("pxmagic.hub")

#: messages handled from one socket before the others get a turn
DRAIN_BATCH = 64
POLLIN = int(zmq.POLLIN)


class SocketPump:
    """Hands every message a served socket receives to that socket's handler."""

    def __init__(self) -> None:
        self._handlers: dict[zmq.Socket, Callable[[list], None]] = {}
        #: served sockets sent on while draining, and sockets to check on the loop's next turn
        self._written: set[zmq.Socket] = set()
        self._recheck: set[zmq.Socket] = set()
        self._draining = False

    def serve(self, socket: zmq.Socket, handler: Callable[[list], None]) -> None:
        """Call ``handler(frames)`` for each message ``socket`` receives, on the loop's thread."""
        self._handlers[socket] = handler
        asyncio.get_running_loop().add_reader(socket.FD, self._drain, socket)
        self._drain(socket)

    def unserve(self, socket: zmq.Socket) -> None:
        """Stop reading ``socket`` (before it is closed)."""
        if self._handlers.pop(socket, None) is not None:
            asyncio.get_running_loop().remove_reader(socket.FD)

    def close(self) -> None:
        """Stop reading every socket."""
        for socket in list(self._handlers):
            self.unserve(socket)

    def send(self, socket: zmq.Socket, frames: list) -> None:
        """Send a message on a served socket, frames not copied, and note the send (see :meth:`wrote`)."""
        socket.send_multipart(frames, copy=False)
        self.wrote(socket)

    def wrote(self, socket: zmq.Socket) -> None:
        """Note a send on a served socket: it is checked for input whose signal the send took."""
        if self._draining:
            self._written.add(socket)
        else:
            self._recheck_soon(socket)

    def sweep(self, sockets: Iterable[zmq.Socket]) -> None:
        """Check ``sockets`` for input whose signal was lost (a send that bypassed :meth:`wrote`)."""
        for socket in sockets:
            if socket in self._handlers and socket.get(zmq.EVENTS) & POLLIN:
                log.warning("input on %s was found by the sweep, not signalled", socket)
                self._drain(socket)

    def _drain(self, socket: zmq.Socket) -> None:
        """Handle the messages waiting on ``socket``, then on the sockets that handling wrote to."""
        if self._draining:
            self._written.add(socket)
            return
        self._draining = True
        try:
            pending, checked = [socket], set()
            while pending:
                current = pending.pop()
                checked.add(current)
                self._handle_waiting(current)
                for written in self._written:
                    if written in checked:
                        self._recheck_soon(written)
                    else:
                        pending.append(written)
                self._written.clear()
        finally:
            self._draining = False

    def _handle_waiting(self, socket: zmq.Socket) -> None:
        for _ in range(DRAIN_BATCH):
            if socket not in self._handlers or not socket.get(zmq.EVENTS) & POLLIN:
                return
            frames = socket.recv_multipart(copy=False)
            try:
                self._handlers[socket](frames)
            except Exception:
                log.exception("error handling a message")
            # drop big frames now, not when the next message arrives
            del frames
        self._recheck_soon(socket)

    def _recheck_soon(self, socket: zmq.Socket) -> None:
        self._recheck.add(socket)
        if len(self._recheck) == 1:
            asyncio.get_running_loop().call_soon(self._run_rechecks)

    def _run_rechecks(self) -> None:
        sockets, self._recheck = self._recheck, set()
        for socket in sockets:
            self._drain(socket)
