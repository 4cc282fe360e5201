"""The engine kernel: ipykernel's IPythonKernel plus an ``apply_request`` handler.

``execute_request`` and everything else are ipykernel's own, so an engine
behaves exactly like a notebook kernel; ``apply_request`` calls a function
serialized by :mod:`pxmagic.serialize` and replies with the serialized result,
or with the error's name, value and traceback.
"""
from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zmq
from ipykernel.iostream import OutStream
from ipykernel.ipkernel import IPythonKernel
from ipykernel.zmqshell import ZMQExitAutocall
from jupyter_client.session import utcnow
from traitlets import Float

from .. import serialize, sharedmem, tags, usage, wire
from ..error import RemoteError
from ..protocol import (
    APPLY_REPLY,
    ENGINE_ABORT_REQUEST,
    ENGINE_ID_ENV,
    ENGINE_USAGE,
    USAGE_TOPIC,
    error_content,
    reply_type,
)
from ..replay import RefusalLog


def _safe_str(error: BaseException) -> str:
    """``str(error)``, or a sentence saying why it could not be had.

    The user's ``__str__`` runs here, on the engine's shell loop: whatever it
    raises must end up in the reply, never escape into the loop.
    """
    try:
        return str(error)
    except BaseException as failure:  # the user's __str__ may raise anything
        return (f"<the {type(error).__name__} could not be described: "
                f"its __str__ raised {type(failure).__name__}>")


def _notes(error: BaseException) -> list[str]:
    """The exception's ``__notes__`` that are strings; a note about any that are not."""
    try:
        notes = getattr(error, "__notes__", None)
        if notes is None:
            return []
        if not isinstance(notes, (list, tuple)):
            return [f"(its __notes__ is a {type(notes).__name__}, not a list of strings)"]
        kept = [note for note in notes if isinstance(note, str)]
        if len(kept) < len(notes):
            kept.append(f"({len(notes) - len(kept)} of its __notes__ are not strings)")
        return kept
    except BaseException:  # a __notes__ property may raise anything
        return ["(its __notes__ could not be read)"]


def _traceback_lines(error: BaseException) -> list[str]:
    """The formatted traceback, starting in the user's function (this handler's frame is dropped)."""
    tb = error.__traceback__.tb_next if error.__traceback__ else None
    try:
        return "".join(traceback.format_exception(type(error), error, tb)).splitlines()
    except BaseException:  # formatting runs the user's __str__ and __notes__
        return [*traceback.format_list(traceback.extract_tb(tb)), f"{type(error).__name__}: {_safe_str(error)}"]


def _error_reply(error: BaseException) -> dict:
    """Reply content for an exception raised by the applied function."""
    evalue = error.evalue if isinstance(error, RemoteError) else _safe_str(error)
    notes = _notes(error)
    if isinstance(error, SystemExit):
        notes = [*notes, "(sys.exit() on an engine ends the call, not the engine)"]
    return error_content(type(error).__name__, " ".join([evalue, *notes]), _traceback_lines(error))


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
    always waits for a round trip through the IOPub thread, even with
    nothing to send.  ``writes`` counts writes, so the
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


class _MainThreadOnly:
    """What an engine has in place of ipykernel 7's shell-channel thread (see ``EngineApp``).

    ipykernel's ``do_execute`` reads ``shell_channel_thread.parent_thread``
    to choose how SIGINT cancels an async cell, even without subshells;
    everything else only tests the attribute for truth.
    """

    parent_thread = threading.main_thread()

    def __bool__(self) -> bool:
        return False


class _ExitRefused(ZMQExitAutocall):
    """``exit`` and ``quit`` on an engine: a cell that calls them fails, and the engine serves on.

    In a notebook kernel ``exit()`` ends the kernel; on an engine that would
    lose its namespace and fail the cluster's work behind the caller's back.
    ``sys.exit()`` in an applied function is refused the same way.
    """

    def __call__(self, code: object = None) -> None:
        raise SystemExit(f"exit() on an engine ends the cell, not the engine (asked with {code!r}); "
                         "restart it with rc.restart_engine(id), or stop the cluster with rc.shutdown()")


class EngineKernel(IPythonKernel):
    """An IPython kernel that also answers ``apply_request``."""

    implementation = "pxmagic-engine"
    # ipykernel sleeps 0.5 ms before every execute_reply, so that output tends
    # to reach clients before the reply.  pxmagic's clients take a request's
    # output as complete on its "idle" status, which IOPub sends after the
    # output in order, so the sleep only slowed every execute (and %px) down.
    _execute_sleep = Float(0.0).tag(config=True)
    control_msg_types = [*IPythonKernel.control_msg_types, ENGINE_ABORT_REQUEST]

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self.shell_channel_thread = _MainThreadOnly()
        #: msg_ids to answer "aborted" instead of running, when their turn comes
        self.aborted: set[str] = set()
        self.engine_id = int(os.environ.get(ENGINE_ID_ENV, "-1"))
        #: requests refused (bad signature or buffers, stale or replayed), logged at a bounded rate
        self.refusals = RefusalLog(self.log)
        #: display messages published so far (stream writes are counted by EngineOutStream)
        self.displays = 0
        self._outputs_at_execute = 0
        self.shell.display_pub.register_hook(self._count_display)
        self.shell.keepkernel_on_exit = True  # get_ipython().ask_exit() must not end the engine either
        #: segments holding large results, for clients on this host (see pxmagic.sharedmem)
        self.segments = sharedmem.Pool(sharedmem.cluster_tag(self.session.key)) if sharedmem.enabled() else None
        self.shell.exiter = self.shell.user_ns["exit"] = self.shell.user_ns["quit"] = _ExitRefused(self.shell)

    @property
    def _supports_kernel_subshells(self) -> bool:
        return False

    def _count_display(self, msg: dict) -> dict:
        self.displays += 1
        return msg

    def _outputs_so_far(self) -> int:
        """A number that grows whenever user code prints or displays something."""
        streams = (getattr(sys.stdout, "writes", 0), getattr(sys.stderr, "writes", 0))
        return self.displays + sum(streams)

    def _request_buffers(self, parent: dict) -> list:
        """The request's buffers, checked against their signed descriptors before anything is unpickled."""
        try:
            return tags.resolve(self.session.key, sharedmem.cluster_tag(self.session.key),
                                  parent.get("metadata", {}).get("buffer_tags"), parent["buffers"])
        except tags.BuffersRefused as error:
            self.refusals.refused(f"apply_request {parent['header'].get('msg_id')}", str(error))
            raise PermissionError(f"request refused: {error}; nothing was unpickled") from None

    def _result_pool(self, parent: dict) -> sharedmem.Pool | None:
        """Where a large result goes: a segment if the client that asked shares this host, else frames."""
        asker = parent.get("metadata", {}).get("shared_memory")
        return self.segments if asker and asker == sharedmem.host_id() else None

    def _segments_taken(self, header_frame: Any) -> None:
        """The hub maps the segments named (results it keeps), so this engine may reuse them once nobody does."""
        if self.segments is not None and b"segments_taken" in header_frame.bytes:
            names = wire.load(header_frame).get("segments_taken")
            if isinstance(names, list):
                self.segments.give_back(name for name in names if isinstance(name, str))

    def abort_request(self, stream: Any, ident: Any, parent: dict) -> None:
        """On the control channel, so it overtakes the queued requests it names."""
        self.aborted.update(parent["content"].get("msg_ids", []))
        stream.send_multipart(wire.build(self.session, "abort_reply", {"status": "ok"}, parent=parent, ident=ident))

    def should_handle(self, stream: Any, msg: dict, idents: Any) -> bool:
        msg_id = msg["header"]["msg_id"]
        if msg_id in self.aborted:
            self.aborted.discard(msg_id)
            self._send_abort_reply(stream, msg, idents)
            return False
        return True

    def _send_abort_reply(self, stream: Any, msg: dict, idents: Any) -> None:
        """Answer an aborted request straight on the shell socket.

        ipykernel queues the reply on the ZMQStream and then flushes the
        stream; from inside the stream's own receive callback (the fast path
        of :meth:`_on_shell_message`), with requests waiting, that flush
        spun forever.
        """
        self.log.info("aborting %s: %s", msg["header"]["msg_id"], msg["header"]["msg_type"])
        status = {"status": "aborted"}
        metadata = {**self.finish_metadata(msg, self.init_metadata(msg), status), **status}
        self._send_on_shell(wire.build(self.session, reply_type(msg["header"]["msg_type"]), status, parent=msg,
                                       metadata=metadata, ident=idents))

    def start(self) -> None:
        """Read the shell channel with :meth:`_on_shell_message` instead of ipykernel's task per message."""
        super().start()
        #: the one context every shell message is handled in, so ContextVars set by a cell persist
        self._engine_context = contextvars.copy_context()
        #: shell messages handed to tasks and not finished; an apply may skip the queue only when it is empty
        self._shell_backlog = 0
        self.shell_stream.on_recv(self._on_shell_message, copy=False)
        self._wake_on_signals()
        threading.Thread(target=self._report_usage, name="pxmagic-usage", daemon=True).start()

    def _report_usage(self) -> None:
        """Tell the hub this engine's memory and CPU every few seconds, from a thread, so that a busy
        engine reports too (the hub reads engines on its own host itself; those elsewhere need this)."""
        sampler = usage.UsageSampler()
        while True:
            sample = sampler.sample(os.getpid())
            if sample is not None:
                report = {"rss_bytes": sample.rss_bytes, "cpu_percent": sample.cpu_percent}
                self.iopub_socket.send_multipart(wire.build(self.session, ENGINE_USAGE, report, ident=USAGE_TOPIC))
            time.sleep(usage.REPORT_PERIOD)

    def _wake_on_signals(self) -> None:
        """Let a signal wake the event loop at once.

        Linux may hand an interrupt's SIGINT to any of the engine's threads.
        The main thread, asleep in the loop's poll, then runs Python's handler
        only at its next timer: a cell awaiting ``asyncio.sleep(30)`` stopped
        after the 30 s.  Python writes each signal to the wakeup fd, which the
        loop watches.
        """
        reader, writer = self._signal_wakeup = socket.socketpair()
        for end in (reader, writer):
            end.setblocking(False)
        signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        self.io_loop.add_handler(reader, lambda *_: reader.recv(4096), self.io_loop.READ)

    def _on_shell_message(self, msg: list) -> None:
        """Serve an ``apply_request`` at once, when nothing is queued before it; queue the rest in order.

        ipykernel makes two asyncio tasks of every shell message and takes a
        lock.  Serving an apply inside this callback, and sending its reply at
        once (:meth:`_send_on_shell`), takes about a third off an apply's CPU in
        the engine (``benchmarks/core.py`` times the round trip).  Requests keep their order, because an apply
        skips the queue only when no earlier message is still in it.
        """
        if self._shell_backlog == 0:
            try:
                idents, parts = self.session.feed_identities(msg, copy=False)
                is_apply = wire.load(parts[1]).get("msg_type") == "apply_request"  # JSON only, nothing unpickled
            except Exception:
                is_apply = False  # shell_main refuses it
            if is_apply:
                self._engine_context.run(self._serve_verified_apply, idents, parts)
                return
        self._shell_backlog += 1
        task = asyncio.create_task(self.shell_main(None, msg), context=self._engine_context)
        task.add_done_callback(self._shell_task_done)

    def _shell_task_done(self, task: asyncio.Task) -> None:
        self._shell_backlog -= 1
        if not task.cancelled() and task.exception() is not None:
            self.log.error("error handling a shell message", exc_info=task.exception())

    def _is_fresh(self, idents: list, parts: list, channel: str) -> bool:
        """Whether a request may be served; if not, count it, and answer it if it is ours (stale or replayed).

        The answer keeps the hub's books true: a request it forwarded and the
        engine refused silently would stay outstanding for ever.
        """
        refusal = wire.check(self.session, parts, wire.FRESH)
        if refusal is None:
            self._segments_taken(parts[1])
            return True
        self.refusals.refused(f"a {channel} message", refusal.reason)
        try:
            header = wire.load(parts[1])
            parent = {"header": header, "msg_id": header["msg_id"], "msg_type": header["msg_type"]}
        except (ValueError, TypeError, KeyError):
            return False
        if refusal.authentic:
            content = error_content("ProtocolError", f"engine {self.engine_id} refused {header['msg_type']} "
                                                     f"{header['msg_id']}: {refusal.reason}")
            frames = wire.build(self.session, reply_type(str(parent["msg_type"])), content, parent=parent,
                                metadata={"engine_id": self.engine_id}, ident=idents)
            if channel == "shell":
                self._send_on_shell(frames)
            else:
                self.control_stream.send_multipart(frames)
        return False

    def _serve_verified_apply(self, idents: list, parts: list) -> None:
        if self._is_fresh(idents, parts, "shell"):
            self._serve_apply(idents, parts)

    async def shell_main(self, subshell_id: str | None, msg: list) -> None:
        """Handle a queued shell message: an ``apply_request`` on the short path, the rest as ipykernel does.

        ipykernel's dispatch publishes "busy" and "idle" statuses through the
        IOPub thread and parses the message with ``Session.deserialize``
        (dates through dateutil), the largest share of an engine's CPU per apply.
        Nothing waits for "busy".  "idle" tells clients that a request's
        output is complete; a call that printed and displayed nothing says
        so in its reply's metadata (``quiet``) instead.
        """
        try:
            idents, parts = self.session.feed_identities(msg, copy=False)
            is_apply = wire.load(parts[1]).get("msg_type") == "apply_request"  # JSON only, nothing unpickled
        except Exception:
            self.refusals.refused("a shell message", "it is not a Jupyter message")
            return
        if is_apply:
            async with self._main_asyncio_lock:
                self._serve_verified_apply(idents, parts)
        elif self._is_fresh(idents, parts, "shell"):
            await super().shell_main(subshell_id, msg)

    async def process_control(self, msg: list) -> None:
        """Serve a control request (abort, interrupt, shutdown) as ipykernel does, once it is known fresh."""
        try:
            idents, parts = self.session.feed_identities(msg, copy=False)
        except ValueError:
            self.refusals.refused("a control message", "it is not a Jupyter message")
            return
        if self._is_fresh(idents, parts, "control"):
            await super().process_control(msg)

    def _serve_apply(self, idents: list, parts: list) -> None:
        msg = wire.message(parts)
        self.set_parent(idents, msg, channel="shell")
        if not self.should_handle(self.shell_stream, msg, idents):
            self._publish_status("idle", "shell")
            return
        outputs_before = self._outputs_so_far()
        started = utcnow()
        self.pre_handler_hook()
        try:
            content, reply_frames = self._call(msg)
        except BaseException as error:  # never silence: whatever escapes is the caller's error
            content, reply_frames = error_content(type(error).__name__, f"the engine failed to serve the call: "
                                                  f"{_safe_str(error)}"), []
        finally:
            self.post_handler_hook()
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()  # the output goes out before the reply
        quiet = self._outputs_so_far() == outputs_before
        descriptors, reply_frames = self._describe_result(msg, reply_frames)
        metadata = {"engine_id": self.engine_id, "quiet": quiet, "buffer_tags": descriptors, "started": started}
        frames = wire.reply(self.session, APPLY_REPLY, parts, content, metadata, idents)
        self._send_on_shell(frames + reply_frames)
        if not quiet:
            self._publish_status("idle", "shell")

    def _describe_result(self, parent: dict, frames: list) -> tuple[list[str], list]:
        try:
            return tags.describe(self.session.key, frames, self._result_pool(parent))
        except OSError as error:  # /dev/shm full: the frames still go
            self.log.warning("could not put a result in shared memory (%s); sending it as frames", error)
            return tags.describe(self.session.key, frames)

    def _send_on_shell(self, frames: list) -> None:
        """Send on the shell socket now, not through the ZMQStream's queue (which waits for the loop's next turn).

        A send can take the FD signal of a request that arrived meanwhile; the
        stream re-checks after a callback of its own, but not after a task's
        step, so a waiting request is flushed to :meth:`_on_shell_message` here.
        """
        socket = self.shell_stream.socket
        socket.send_multipart(frames, copy=False)
        if socket.get(zmq.EVENTS) & zmq.POLLIN:
            self.io_loop.add_callback(self.shell_stream.flush, zmq.POLLIN)

    def init_metadata(self, parent: dict) -> dict:
        """Note the outputs so far: :meth:`finish_metadata` tells whether the cell added any."""
        self._outputs_at_execute = self._outputs_so_far()
        return super().init_metadata(parent)

    def finish_metadata(self, parent: dict, metadata: dict, reply_content: dict) -> dict:
        """Say in the reply when a cell put out nothing, as apply replies do (``quiet``).

        A client then takes the request's output as complete at the reply,
        instead of at its "idle" status, which comes through the IOPub
        thread after a thread hop: %px would wait for it.  An expression's value
        (execute_result) comes through the displayhook, not the counters.
        """
        metadata = super().finish_metadata(parent, metadata, reply_content)
        last = self.shell.last_execution_result
        metadata["quiet"] = (reply_content.get("status") == "ok"
                             and self._outputs_so_far() == self._outputs_at_execute
                             and (last is None or last.result is None))
        return metadata

    async def do_execute(self, *args: Any, **kwargs: Any) -> Any:
        with _forks_stay_out():
            return await super().do_execute(*args, **kwargs)

    def _call(self, parent: dict) -> tuple[dict, list]:
        """Run the call an apply_request carries: the reply's content and buffer frames.

        Unpickling the call and pickling its result run user code too
        (``__setstate__``, ``__reduce__``), and an interrupt may land in
        either: anything they raise, KeyboardInterrupt and SystemExit
        included, becomes the error reply.
        """
        try:
            func, args, kwargs = serialize.unpack(self._request_buffers(parent))
        except BaseException as error:  # an interrupt or a __setstate__'s SystemExit, too
            return error_content(type(error).__name__, f"could not load the call: {_safe_str(error)}"), []
        try:
            with _forks_stay_out():
                result = func(*args, **kwargs)
        except BaseException as error:  # KeyboardInterrupt from an interrupt, too
            return _error_reply(error), []
        try:
            return {"status": "ok"}, serialize.pack(result)
        except BaseException as error:  # a __reduce__ may raise anything
            kind = type(result)
            return error_content(
                "SerializationError",
                f"cannot send back a result of type {kind.__module__}.{kind.__qualname__}: "
                f"{type(error).__name__}: {_safe_str(error)}",
            ), []
