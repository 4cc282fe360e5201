"""The client's sockets to the hub, owned by one background I/O thread.

ZMQ sockets must not be shared between threads, so user threads hand their
already signed frames to the I/O thread over an inproc socket, and the I/O
thread alone touches the sockets connected to the hub.  It calls back with
every reply and every iopub message it receives.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import zmq

from .. import connection, encryption

log = logging.getLogger("pxmagic.client")

_STOP = b"stop"
#: how often the I/O thread checks how long the hub has been silent
SILENCE_CHECK_MS = 500


class HubChannel:
    """A DEALER for requests and replies and a SUB for output, served by a thread."""

    def __init__(
        self,
        info: dict,
        on_reply: Callable[[list], None],
        on_output: Callable[[list], None],
        on_silence: Callable[[float], None],
    ):
        self.context = zmq.Context()
        self._on_reply = on_reply
        self._on_output = on_output
        self._on_silence = on_silence
        #: when the hub was last heard from (any message, heartbeats included)
        self.last_heard = time.monotonic()
        self._requests = self.context.socket(zmq.DEALER)
        self._requests.linger = 1000
        self._output = self.context.socket(zmq.SUB)
        self._output.linger = 0
        self._output.setsockopt(zmq.SUBSCRIBE, b"")
        if info.get("curve_serverkey"):
            for socket in (self._requests, self._output):
                encryption.make_client(socket, info["curve_serverkey"])
        request_address, output_address = connection.hub_addresses(info)
        self._requests.connect(request_address)
        self._output.connect(output_address)
        inbox_url = f"inproc://pxmagic-client-{id(self)}"
        self._inbox = self.context.socket(zmq.PULL)
        self._inbox.bind(inbox_url)
        self._outbox = self.context.socket(zmq.PUSH)
        self._outbox.connect(inbox_url)
        self._outbox_lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="pxmagic-io", daemon=True)
        self._thread.start()

    def send(self, frames: list, track: bool = False) -> zmq.MessageTracker | None:
        """Queue a signed message for the hub; with ``track``, a tracker of its buffers."""
        with self._outbox_lock:
            return self._outbox.send_multipart(frames, copy=False, track=track)

    @property
    def closed(self) -> bool:
        return not self._thread.is_alive()

    def close(self) -> None:
        if self.closed:
            return
        with self._outbox_lock:
            self._outbox.send(_STOP)
        self._thread.join(5)
        self._outbox.close(linger=0)
        self.context.term()

    def _serve(self) -> None:
        poller = zmq.Poller()
        for socket in (self._inbox, self._requests, self._output):
            poller.register(socket, zmq.POLLIN)
        while True:
            events = poller.poll(SILENCE_CHECK_MS)
            silence = time.monotonic() - self.last_heard
            if silence > SILENCE_CHECK_MS / 1000:
                self._on_silence(silence)
            for socket, _ in events:
                frames = socket.recv_multipart(copy=False)
                if socket is not self._inbox:
                    self.last_heard = time.monotonic()
                if socket is self._inbox:
                    if len(frames) == 1 and frames[0].bytes == _STOP:
                        for own in (self._inbox, self._requests, self._output):
                            own.close()
                        return
                    self._requests.send_multipart(frames, copy=False)
                    continue
                handler = self._on_reply if socket is self._requests else self._on_output
                try:
                    handler(frames)
                except Exception:
                    log.exception("error handling a message from the hub")
                # a big reply would otherwise be freed (~10 ms for 128 MB) on the next request's path
                del frames
