"""The engine kernel: ipykernel's IPythonKernel plus an ``apply_request`` handler.

``execute_request`` and everything else are ipykernel's own, so an engine
behaves exactly like a notebook kernel; ``apply_request`` calls a function
serialized by :mod:`pxmagic.serialize` and replies with the serialized result,
or with the error's name, value and traceback.
"""
from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq
from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel

from .. import digest, serialize, wire
from ..error import RemoteError
from ..protocol import APPLY_REPLY, ENGINE_ABORT_REQUEST, ENGINE_ID_ENV, error_content


def _error_reply(error: BaseException) -> dict:
    """Reply content for an exception raised by the applied function.

    The traceback starts in the user's function: this handler's own frame is
    dropped.
    """
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    lines = "".join(traceback.format_exception(type(error), error, tb)).splitlines()
    evalue = error.evalue if isinstance(error, RemoteError) else str(error)
    notes = getattr(error, "__notes__", [])
    if isinstance(error, SystemExit):
        notes = [*notes, "(sys.exit() on an engine ends the call, not the engine)"]
    return error_content(type(error).__name__, " ".join([evalue, *notes]), lines)


@contextmanager
def _forks_stay_out() -> Iterator[None]:
    """Run user code; a process it forks that comes back here exits at once.

    A forked child shares the kernel's ZMQ sockets, which must not be used
    from two processes: replying from the child would corrupt the engine's
    channels.  The parent replies as usual, with what the code returned.
    """
    pid = os.getpid()
    try:
        yield
    finally:
        if os.getpid() != pid:
            os._exit(0)


class EngineOutStream(OutStream):
    """sys.stdout/err whose flush returns at once when nothing is buffered.

    The kernel flushes both streams after every request; ipykernel's flush
    always waits for a round trip through the IOPub thread (~0.25 ms each
    here), even with nothing to send.  ``writes`` counts writes, so the
    engine can tell whether a request printed anything.
    """

    writes = 0

    def write(self, string: str) -> int | None:
        self.writes += 1
        return super().write(string)

    def flush(self) -> None:
        if self.echo is None and not (self._buffers or self._flush_pending or self._subprocess_flush_pending):
            return
        super().flush()


class EngineKernel(IPythonKernel):
    """An IPython kernel that also answers ``apply_request``."""

    implementation = "pxmagic-engine"
    control_msg_types = [*IPythonKernel.control_msg_types, ENGINE_ABORT_REQUEST]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        #: msg_ids to answer "aborted" instead of running, when their turn comes
        self.aborted: set[str] = set()
        self.engine_id = int(os.environ.get(ENGINE_ID_ENV, "-1"))
        #: shell messages refused (bad or replayed signature) and requests refused for their buffers
        self.rejected_messages = 0
        self.rejected_buffers = 0
        #: display messages published so far (stream writes are counted by EngineOutStream)
        self.displays = 0
        self.shell.display_pub.register_hook(self._count_display)

    def _count_display(self, msg: dict) -> dict:
        self.displays += 1
        return msg

    def _outputs_so_far(self) -> int:
        """A number that grows whenever user code prints or displays something."""
        streams = (getattr(sys.stdout, "writes", 0), getattr(sys.stderr, "writes", 0))
        return self.displays + sum(streams)

    def _check_buffers(self, parent: dict) -> None:
        """Refuse buffers that their signed digests do not describe, before anything is unpickled."""
        if not digest.matches(self.session.key, parent.get("metadata", {}).get("buffer_digests"), parent["buffers"]):
            self.rejected_buffers += 1
            self.log.warning("refused apply_request %s: its buffers do not match their signed digests "
                             "(%d so far)", parent["header"].get("msg_id"), self.rejected_buffers)
            raise PermissionError("request buffers do not match their signed digests; nothing was unpickled")

    def abort_request(self, stream: Any, ident: Any, parent: dict) -> None:
        """On the control channel, so it overtakes the queued requests it names."""
        self.aborted.update(parent["content"].get("msg_ids", []))
        self.session.send(stream, "abort_reply", {"status": "ok"}, parent, ident=ident)

    def should_handle(self, stream: Any, msg: dict, idents: Any) -> bool:
        msg_id = msg["header"]["msg_id"]
        if msg_id in self.aborted:
            self.aborted.discard(msg_id)
            self._send_abort_reply(stream, msg, idents)
            return False
        return True

    async def shell_main(self, subshell_id: str | None, msg: list) -> None:
        """Serve ``apply_request`` on a short path; everything else as ipykernel does.

        ipykernel's dispatch publishes "busy" and "idle" statuses through the
        IOPub thread and parses the message with ``Session.deserialize``
        (dates through dateutil): ~30% of an engine's CPU per apply here.
        Nothing waits for "busy".  "idle" tells clients that a request's
        output is complete; a call that printed and displayed nothing says
        so in its reply's metadata (``quiet``) instead.
        """
        try:
            idents, parts = self.session.feed_identities(msg, copy=False)
            is_apply = wire.load(parts[1]).get("msg_type") == "apply_request"  # JSON only, nothing unpickled
            # ipykernel's own check records the signature of what it serves: only peek at it here
            authentic = wire.verify(self.session, parts) if is_apply else wire.signed_and_unseen(self.session, parts)
        except Exception:
            authentic = False
        if not authentic:
            self.rejected_messages += 1
            self.log.warning("refused a shell message (%d so far): its signature is missing, wrong or replayed",
                             self.rejected_messages)
            return
        if not is_apply:
            await super().shell_main(subshell_id, msg)
            return
        async with self._main_asyncio_lock:
            self._serve_apply(idents, parts)

    def _serve_apply(self, idents: list, parts: list) -> None:
        msg = wire.message(parts)
        self.set_parent(idents, msg, channel="shell")
        if not self.should_handle(self.shell_stream, msg, idents):
            self._publish_status_and_flush("idle", "shell", self.shell_stream)
            return
        outputs_before = self._outputs_so_far()
        self.pre_handler_hook()
        try:
            content, reply_frames = self._call(msg)
        finally:
            self.post_handler_hook()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()  # the output goes out before the reply
        quiet = self._outputs_so_far() == outputs_before
        metadata = {"engine_id": self.engine_id, "quiet": quiet,
                    "buffer_digests": digest.digests(self.session.key, reply_frames)}
        self.session.send(self.shell_stream, APPLY_REPLY, content, msg, ident=idents, buffers=reply_frames,
                          metadata=metadata)
        if quiet:
            # the shell ZMQStream queues sends until the event loop's next turn: send the reply now
            self.shell_stream.flush(zmq.POLLOUT)
        else:
            self._publish_status_and_flush("idle", "shell", self.shell_stream)

    async def do_execute(self, *args: Any, **kwargs: Any) -> Any:
        with _forks_stay_out():
            return await super().do_execute(*args, **kwargs)

    def _call(self, parent: dict) -> tuple[dict, list]:
        """Run the call an apply_request carries: the reply's content and buffer frames."""
        reply_frames: list = []
        try:
            self._check_buffers(parent)
            func, args, kwargs = serialize.unpack(parent["buffers"])
        except Exception as error:
            content = error_content(type(error).__name__, f"could not load the call: {error}")
        else:
            try:
                with _forks_stay_out():
                    result = func(*args, **kwargs)
            except BaseException as error:  # KeyboardInterrupt from an interrupt, too
                content = _error_reply(error)
            else:
                try:
                    reply_frames = serialize.pack(result)
                    content = {"status": "ok"}
                except Exception as error:
                    kind = type(result)
                    content = error_content(
                        "SerializationError",
                        f"cannot send back a result of type {kind.__module__}.{kind.__qualname__}: {error}",
                    )
        return content, reply_frames
