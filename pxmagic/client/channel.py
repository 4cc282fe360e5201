"""The client's sockets to the hub: requests go out from the caller's thread, replies come in on one I/O thread.

ZMQ sockets must not be used by two threads at once, but one may pass from
thread to thread under a lock (a full memory barrier).  So a user thread
sends its signed frames itself, holding :attr:`HubChannel._lock`, instead of
handing them to the I/O thread: that hand-off costs a thread wake-up on
every request.  The I/O thread waits on the request socket's FD
without the lock and takes the lock only to receive.

A ZMQ socket's FD signals a change, not readiness, and a send can consume the
signal of a reply that arrived meanwhile.  So after each send the sender
checks the socket for input and, if some waits, wakes the I/O thread through
a pipe.  The I/O thread calls back with every reply and every iopub message.

Without CURVE the channel also opens the hub's bulk stream (``pxmagic.hub.bulk``),
greeted with ``hello(routing_id)``, and the I/O thread reads there the
buffers of the large replies that say they follow on it.  A reply whose
buffers the stream lost (it broke) goes to ``on_lost`` instead, without them.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from collections.abc import Callable

import zmq

from .. import connection, encryption
from ..protocol import ProtocolError, bulk_sizes
from .bulk import BulkReader

log = logging.getLogger("pxmagic.client")

#: how often the I/O thread checks how long the hub has been silent
SILENCE_CHECK_MS = 500
#: a poll that returns this much later than asked was not listening for that long (GIL held, process stopped)
STALL_SLACK = 0.25
#: seconds the bulk stream may stay silent in the middle of a reply's buffers (a hub that was killed closes it)
BULK_STALL = 30.0
#: messages taken from one socket before the other gets a turn
BATCH = 64
POLLIN = int(zmq.POLLIN)


class HubChannel:
    """A DEALER for requests and replies and a SUB for output, read by a thread."""

    def __init__(
        self,
        info: dict,
        on_reply: Callable[[list], None],
        on_output: Callable[[list], None],
        on_silence: Callable[[float], None],
        send_timeout: float = 5.0,
        hello: Callable[[bytes], bytes] | None = None,
        on_lost: Callable[[list], None] | None = None,
    ):
        self.context = zmq.Context()
        self.send_timeout = send_timeout
        self._on_reply = on_reply
        self._on_output = on_output
        self._on_silence = on_silence
        self._on_lost = on_lost or on_reply
        #: whether a message (any, heartbeats included) came since the last silence check
        self._heard = False
        self._requests = self.context.socket(zmq.DEALER)
        self._requests.linger = 1000
        self._output = self.context.socket(zmq.SUB)
        self._output.linger = 0
        self._output.rcvhwm = 0  # output waits here, not in the hub's bounded queue (it drops past that)
        self._output.setsockopt(zmq.SUBSCRIBE, b"")
        if info.get("curve_serverkey"):
            for socket in (self._requests, self._output):
                encryption.make_client(socket, info["curve_serverkey"])
        request_address, output_address = connection.hub_addresses(info)
        self.address = request_address
        routing_id = b"px" + secrets.token_bytes(14)
        self._requests.setsockopt(zmq.ROUTING_ID, routing_id)
        self._requests.connect(request_address)
        self._output.connect(output_address)
        self._bulk = self._open_bulk(info, hello, routing_id)
        #: held by whichever thread uses the request socket
        self._lock = threading.Lock()
        self._closing = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._thread = threading.Thread(target=self._serve, name="pxmagic-io", daemon=True)
        self._thread.start()

    def _open_bulk(self, info: dict, hello: Callable[[bytes], bytes] | None, routing_id: bytes) -> BulkReader | None:
        address = connection.bulk_address(info)
        if hello is None or address is None:  # a hub under CURVE offers no stream
            return None
        try:
            return BulkReader(address, hello(routing_id), max(self.send_timeout, BULK_STALL))
        except OSError as error:
            log.info("no bulk stream to the hub at %s (%s): large replies come by ZMQ", address, error)
            return None

    def send(self, frames: list, track: bool = False) -> zmq.MessageTracker | None:
        """Send a signed message to the hub; with ``track``, a tracker of its buffers.

        ZMQ queues requests while the hub is away, up to its high-water mark;
        past it a send would block for good if the hub is dead.  So a full
        queue is retried without the lock (the I/O thread keeps watching the
        hub's silence) and gives up with ConnectionError after ``send_timeout``.
        """
        deadline = None
        while True:
            with self._lock:
                if self._closing:
                    raise RuntimeError("this client is closed")
                try:
                    return self._requests.send_multipart(frames, copy=False, track=track, flags=zmq.NOBLOCK)
                except zmq.Again:
                    pass
                finally:  # a send, even a refused one, may take the signal of a reply that came meanwhile
                    if self._requests.get(zmq.EVENTS) & POLLIN:
                        self._wake()
            now = time.monotonic()
            deadline = deadline or now + self.send_timeout
            if now >= deadline:
                raise ConnectionError(f"the hub at {self.address} took no request for {self.send_timeout:g} s: "
                                      "it is unreachable")
            time.sleep(0.005)

    @property
    def closed(self) -> bool:
        return not self._thread.is_alive()

    def close(self) -> None:
        if self.closed:
            return
        with self._lock:
            self._closing = True
        self._wake()
        self._thread.join(5)
        os.close(self._wake_write)
        self.context.term()

    def _wake(self) -> None:
        try:
            os.write(self._wake_write, b"!")
        except BlockingIOError:  # the pipe is full of wake-ups already
            pass
        except BrokenPipeError:  # the I/O thread has stopped (a close() raced it): nothing to wake
            pass

    def _serve(self) -> None:
        poller = zmq.Poller()
        poller.register(self._wake_read, zmq.POLLIN)
        poller.register(self._requests.FD, zmq.POLLIN)
        poller.register(self._output, zmq.POLLIN)
        more = False
        silence, turn_started = 0.0, time.monotonic()
        try:
            while not self._closing:
                timeout = 0 if more else SILENCE_CHECK_MS
                events = dict(poller.poll(timeout))
                if self._wake_read in events:
                    os.read(self._wake_read, 4096)
                more = self._receive_replies()
                if self._output in events:
                    self._receive_output()
                silence = self._hub_silence(silence, turn_started, timeout)
                turn_started = time.monotonic()
        finally:
            with self._lock:
                for socket in (self._requests, self._output):
                    socket.close()
            if self._bulk is not None:
                self._bulk.close()
            os.close(self._wake_read)

    def _hub_silence(self, silence: float, turn_started: float, timeout_ms: int) -> float:
        """The hub's silence so far, counted only while this thread could listen; judged after reading.

        Replies and heartbeats that came while this process was stopped, or
        while another thread held the GIL, wait in the sockets: they are read
        first, so a stall of the client is never taken for a silent hub.
        """
        if self._heard:
            self._heard = False
            return 0.0
        silence += min(time.monotonic() - turn_started, timeout_ms / 1000 + STALL_SLACK)
        if silence > SILENCE_CHECK_MS / 1000:
            self._on_silence(silence)
        return silence

    def _receive_replies(self) -> bool:
        """Handle the replies waiting on the request socket, whether its FD fired or not; True if more wait."""
        for _ in range(BATCH):
            with self._lock:
                if self._closing or not self._requests.get(zmq.EVENTS) & POLLIN:
                    return False
                frames = self._requests.recv_multipart(copy=False)
            whole = self._with_bulk_buffers(frames)
            if whole is None:
                self._handle(self._on_lost, frames[1:])
            else:
                self._handle(self._on_reply, whole)
        return True

    def _with_bulk_buffers(self, frames: list) -> list | None:
        """A reply whose buffers follow on the bulk stream, with them; None if they were lost (a broken stream is
        closed: the hub sends by ZMQ again)."""
        try:
            sizes = bulk_sizes(frames[0])
        except ProtocolError as error:
            log.error("a reply's bulk frame is malformed: %s", error)
            return None
        if sizes is None:
            return frames
        if self._bulk is None:
            log.error("a reply's buffers come on a bulk stream this client does not have")
            return None
        try:
            return [*frames[1:], *self._bulk.read(sizes)]
        except OSError as error:
            log.error("the bulk stream from the hub broke (%s): large replies come by ZMQ from now on", error)
            self._bulk.close()
            self._bulk = None
            return None

    def _receive_output(self) -> None:
        for _ in range(BATCH):
            if not self._output.get(zmq.EVENTS) & POLLIN:
                return
            self._handle(self._on_output, self._output.recv_multipart(copy=False))

    def _handle(self, handler: Callable[[list], None], frames: list) -> None:
        self._heard = True
        try:
            handler(frames)
        except Exception:
            log.exception("error handling a message from the hub")
