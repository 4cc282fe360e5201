"""AsyncResult: a concurrent.futures.Future for one request to one or more engines.

The client's I/O thread hands each engine's reply to :meth:`AsyncResult._deliver`;
when every target has answered, the future completes with one value (a view
on a single engine) or a list in target order, or fails with a RemoteError or
a CompositeError.
"""
from __future__ import annotations

import threading
import time
from concurrent import futures
from typing import Any

from .. import serialize
from ..error import RemoteError, TimeoutError, composite
from ..protocol import engine_msg_id


def decode_reply(msg: dict, engine_id: int, sign_buffers: bool) -> tuple[Any, RemoteError | None]:
    """The value, or the error, that an engine's reply message carries."""
    content = msg["content"]
    status = content.get("status")
    if status == "ok":
        if msg["msg_type"] != "apply_reply":
            return None, None
        buffers = msg["buffers"]
        if sign_buffers and msg["metadata"].get("buffer_digests") != serialize.digests(buffers):
            return None, RemoteError("PermissionError", "reply buffers do not match their signed digests",
                                     engine_id=engine_id)
        try:
            return serialize.unpack(buffers), None
        except Exception as error:
            return None, RemoteError(type(error).__name__, f"could not load the result: {error}",
                                     engine_id=engine_id)
    if status == "aborted":
        return None, RemoteError("AbortedTask", "the engine aborted this request", engine_id=engine_id)
    traceback = "\n".join(content.get("traceback") or [])
    return None, RemoteError(content.get("ename", "Error"), content.get("evalue", ""), traceback, engine_id)


class AsyncResult(futures.Future):
    """The pending result of a call on one or more engines."""

    def __init__(self, request_id: str, targets: list[int], single: bool, method: str):
        super().__init__()
        self.set_running_or_notify_cancel()
        self.engine_ids = list(targets)
        self.msg_ids = [engine_msg_id(request_id, e) for e in targets]
        self.method = method
        self._single = single
        self._values: dict[int, Any] = {}
        self._errors: dict[int, RemoteError] = {}
        self._lock = threading.Lock()
        self._tracker: Any = None
        self.stdout = {e: "" for e in targets}
        self.stderr = {e: "" for e in targets}
        self.submitted = time.monotonic()
        self.completed: float | None = None

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<AsyncResult({self.method}): {state}>"

    # -- called by the client's I/O thread ------------------------------
    def _deliver(self, engine_id: int, value: Any, error: RemoteError | None) -> None:
        with self._lock:
            if error is None:
                self._values[engine_id] = value
            else:
                self._errors[engine_id] = error
            finished = len(self._values) + len(self._errors) == len(self.engine_ids)
        if finished:
            self.completed = time.monotonic()
            self._finish()

    def _finish(self) -> None:
        if self._errors:
            if self._single:
                self.set_exception(next(iter(self._errors.values())))
            else:
                self.set_exception(composite(self._errors, self.method))
        elif self._single:
            self.set_result(self._values[self.engine_ids[0]])
        else:
            self.set_result([self._values[e] for e in self.engine_ids])

    def _add_output(self, engine_id: int, stream: str, text: str) -> None:
        outputs = self.stdout if stream == "stdout" else self.stderr
        outputs[engine_id] = outputs.get(engine_id, "") + text

    # -- the familiar surface --------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """The result; waits ``timeout`` seconds at most (None or -1: no limit)."""
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            return self.result(timeout)
        except futures.TimeoutError as error:
            if isinstance(error, TimeoutError) or self.done():
                raise
            raise TimeoutError("Result not ready.") from None

    @property
    def r(self) -> Any:
        """Shorthand for :meth:`get`."""
        return self.get()

    def ready(self) -> bool:
        return self.done()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the result is ready or ``timeout`` passes; True if ready."""
        futures.wait([self], timeout=None if timeout is not None and timeout < 0 else timeout)
        return self.done()

    def successful(self) -> bool:
        """Whether the call completed without an error; ValueError if it has not completed."""
        if not self.done():
            raise ValueError(f"{self!r} is not ready")
        return self.exception() is None

    def get_dict(self, timeout: float | None = None) -> dict[int, Any]:
        """The results as a dict keyed by engine id."""
        result = self.get(timeout)
        values = [result] if self._single else result
        return dict(zip(self.engine_ids, values))

    @property
    def elapsed(self) -> float:
        """Seconds from submission to completion (or to now, while pending)."""
        return (self.completed or time.monotonic()) - self.submitted

    @property
    def sent(self) -> bool:
        """Whether ZMQ has finished sending the request (see ``track``)."""
        return self._tracker is None or self._tracker.done

    def wait_for_send(self, timeout: float | None = None) -> None:
        """Block until ZMQ no longer needs the buffers of the request."""
        if self._tracker is not None:
            self._tracker.wait(timeout if timeout is None or timeout >= 0 else None)
