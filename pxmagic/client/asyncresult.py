"""AsyncResult: a concurrent.futures.Future for one request to one or more engines.

The client's I/O thread hands each engine's reply to :meth:`AsyncResult._deliver`;
when every target has answered, the future completes with one value (a view
on a single engine) or a list in target order, or fails with a RemoteError or
a CompositeError.
"""
from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

from ..error import RemoteError, TimeoutError, composite
from . import timing


@dataclass
class Output:
    """One iopub message an engine produced while serving a request."""

    engine_id: int | None
    msg_type: str
    content: dict
    metadata: dict = field(default_factory=dict)
    received: float = field(default_factory=time.monotonic)


class AsyncResult(futures.Future):
    """The pending result of one or more requests to engines.

    It has one slot per ``msg_id``: a direct request on N engines fills N
    slots, a map split into K tasks fills K.  When every slot is filled the
    future completes with ``join`` of the values in slot order (the bare value
    for a call on a single engine), or fails with a RemoteError (single
    engine) or a CompositeError.

    It stays pending (never ``running()``) until then, because work on
    engines can always be stopped: :meth:`cancel` drops what waits and
    interrupts what runs.
    """

    def __init__(
        self,
        msg_ids: list[str],
        engine_ids: list[int | None],
        single: bool,
        method: str,
        join: Callable[[list], Any] | None = None,
        *,
        sizes: Sequence[int] | None = None,
        return_exceptions: bool = False,
        stop: Callable[[AsyncResult, bool], Any] | None = None,
    ):
        super().__init__()
        self.msg_ids = list(msg_ids)
        self.engine_ids = list(engine_ids)
        self.method = method
        self._single = single
        self._join = join
        #: how many elements each slot's value holds (a map's chunks), so that an error can stand in for each
        self._sizes = None if sizes is None else list(sizes)
        #: complete with the RemoteErrors in place of the values they stand for, instead of raising
        self.return_exceptions = return_exceptions
        self._values: dict[int, Any] = {}
        self._errors: dict[int, RemoteError] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._arrivals: list[int] = []
        #: tries each slot has had so far (a load-balanced task with ``retries`` may need several)
        self._tries = [1] * len(self.msg_ids)
        #: (slot, engine_id, reason) of each failed try that was tried again
        self.retried: list[tuple[int, int, str]] = []
        self._trackers: list = []
        self.outputs: list[Output] = []
        #: the client's way to stop this result's work (``interrupt``: what runs too, else only what waits)
        self._stop = stop
        self._output_slots_open = len(self.msg_ids)
        #: stream text as it arrives, per stream name and engine; joined when read (appending to
        #: one string would copy all of it again for every chunk)
        self._streams: dict[str, dict[int, list[str]]] = {"stdout": {}, "stderr": {}}
        self.submitted = time.monotonic()
        self.completed: float | None = None
        submitted = timing.utc_now()
        self._times = [timing.TaskTimes(engine_id, submitted) for engine_id in self.engine_ids]
        if not msg_ids:  # a map over nothing
            self.completed = self.submitted
            self._finish()

    def __repr__(self) -> str:
        state = "finished" if self.done() else "pending"
        return f"<AsyncResult({self.method}): {state}>"

    # -- called by the client's I/O thread ------------------------------
    def _deliver(self, index: int, engine_id: int | None, value: Any, error: RemoteError | None) -> None:
        with self._lock:
            self.engine_ids[index] = engine_id
            if error is None:
                self._values[index] = value
            else:
                self._errors[index] = error
            self._arrivals.append(index)
            self._changed.notify_all()
            finished = len(self._arrivals) == len(self.msg_ids)
        if finished:
            self.completed = time.monotonic()
            self._finish()

    def _replied(self, index: int, engine_id: int | None, msg: dict) -> None:
        """Note the timestamps of a slot's reply (before it is delivered)."""
        with self._lock:
            self._times[index].replied(engine_id, msg)

    def _retried(self, index: int, notice: dict) -> None:
        with self._lock:
            self._tries[index] = notice.get("tries", self._tries[index] + 1)
            self.retried.append((index, notice.get("engine_id"), notice.get("reason", "")))

    def _finish(self) -> None:
        try:
            self._settle()
        except futures.InvalidStateError:  # cancelled meanwhile: the late replies change nothing
            pass

    def _settle(self) -> None:
        if self._errors and not self.return_exceptions:
            if self._single:
                self.set_exception(next(iter(self._errors.values())))
            else:
                ordered = [(self.engine_ids[i], self._errors[i]) for i in sorted(self._errors)]
                results = [(self.engine_ids[i], self._values[i]) for i in sorted(self._values)]
                self.set_exception(composite(ordered, self.method, results))
            return
        self.set_result(self._joined_in_place())

    def _in_place(self, index: int) -> Any:
        """A filled slot's value, or its error standing in for each element the value would hold."""
        if index not in self._errors:
            return self._values[index]
        error = self._errors[index]
        return [error] * self._sizes[index] if self._sizes is not None else error

    def _joined_in_place(self) -> Any:
        values = [self._in_place(i) for i in range(len(self.msg_ids))]
        if self._join is not None:
            return self._join(values)
        return values[0] if self._single else values

    def _slot_outcome(self, index: int) -> tuple[int | None, Any, RemoteError | None]:
        """``(engine_id, value, error)`` of a filled slot."""
        with self._lock:
            return self.engine_ids[index], self._values.get(index), self._errors.get(index)

    def _slot_value(self, index: int) -> Any:
        """The value of one slot once it is filled (its error is raised)."""
        with self._changed:
            self._changed.wait_for(lambda: index in self._values or index in self._errors)
        if index in self._errors and not self.return_exceptions:
            raise self._errors[index]
        return self._in_place(index)

    def _slots_as_completed(self) -> Iterator[int]:
        """Slot indices in the order their replies arrived, waiting for each."""
        for position in range(len(self.msg_ids)):
            with self._changed:
                self._changed.wait_for(lambda n=position + 1: len(self._arrivals) >= n)
                slot = self._arrivals[position]
            yield slot

    def _add_output(self, output: Output) -> None:
        with self._changed:
            self.outputs.append(output)
            if output.msg_type == "stream":
                streams = self._streams["stdout" if output.content["name"] == "stdout" else "stderr"]
                streams.setdefault(output.engine_id, []).append(output.content["text"])
            self._changed.notify_all()

    @property
    def stdout(self) -> dict[int, str]:
        """What each engine printed to stdout for this request so far."""
        return self._joined("stdout")

    @property
    def stderr(self) -> dict[int, str]:
        """What each engine printed to stderr for this request so far."""
        return self._joined("stderr")

    def _joined(self, name: str) -> dict[int, str]:
        with self._lock:
            return {engine_id: "".join(parts) for engine_id, parts in self._streams[name].items()}

    def _output_finished(self) -> None:
        """One slot's engine went idle (or died): it will produce no more output."""
        with self._changed:
            self._output_slots_open -= 1
            self._changed.notify_all()

    def wait_for_output(self, timeout: float | None = None) -> bool:
        """Wait until every engine has sent all output of this request; True if it has."""
        with self._changed:
            return self._changed.wait_for(lambda: self._output_slots_open <= 0, timeout)

    def iter_outputs(self, timeout: float | None = None, heartbeat: float | None = None) -> Iterator[Output | None]:
        """Outputs as they arrive, until all engines are done with this request.

        With ``heartbeat``, None is yielded whenever that many seconds pass
        without output, so a caller can update a progress display.  Raises
        TimeoutError if ``timeout`` seconds pass without completion.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        shown = 0
        while True:
            with self._changed:
                wait = heartbeat
                if deadline is not None:
                    remaining = max(0.0, deadline - time.monotonic())
                    wait = remaining if wait is None else min(wait, remaining)
                self._changed.wait_for(
                    lambda n=shown: len(self.outputs) > n or self._output_slots_open <= 0, wait)
                fresh = self.outputs[shown:]
                finished = self._output_slots_open <= 0
            yield from fresh
            shown += len(fresh)
            if finished and not fresh:
                return
            if not fresh:
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError("Output not complete.")
                yield None

    # -- the familiar surface --------------------------------------------
    def get(self, timeout: float | None = None, return_exceptions: bool = False) -> Any:
        """The result; waits ``timeout`` seconds at most (None or -1: no limit).

        ``return_exceptions``: the engines' errors in place of their values, instead of raised.
        """
        if timeout is not None and timeout < 0:
            timeout = None
        try:
            if return_exceptions and not self.return_exceptions:
                self.exception(timeout)
                with self._lock:
                    return self._joined_in_place()
            return self.result(timeout)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        except futures.TimeoutError as error:
            if isinstance(error, TimeoutError) or self.done():
                raise
            raise TimeoutError("Result not ready.") from None

    @property
    def tries(self) -> int | list[int]:
        """How many tries the task took (per task for several); more than 1 only with ``retries``."""
        return self._tries[0] if self._single else list(self._tries)

    @property
    def remote_errors(self) -> list[RemoteError]:
        """The errors of the engines that failed so far, in slot order."""
        with self._lock:
            return [self._errors[i] for i in sorted(self._errors)]

    @property
    def progress(self) -> int:
        """How many of this result's tasks have finished."""
        return len(self._arrivals)

    def wait_interactive(self, timeout: float | None = None, interval: float = 0.2) -> bool:
        """Wait like :meth:`wait`, showing a progress bar once the wait passes a second.

        Ctrl-C interrupts the engines still working, as it does in :meth:`get`.
        """
        from .progress import Progress

        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            with Progress(len(self.msg_ids), self.method) as bar:
                while not self.done():
                    if deadline is not None and time.monotonic() >= deadline:
                        break
                    futures.wait([self], timeout=interval)
                    bar.update(self.progress)
        except KeyboardInterrupt:
            self.interrupt()
            raise
        return self.done()

    def cancel(self) -> bool:
        """Stop this result's work, wherever it is: drop what has not started, interrupt the engines
        running it.  True unless it had already completed; :meth:`result` then raises CancelledError."""
        if self.done():
            return self.cancelled()
        if self._stop is not None:
            self._stop(self, True)
        if not super().cancel():
            return False
        self.set_running_or_notify_cancel()  # what an executor does on dropping it: futures.wait sees it done
        return True

    def __await__(self) -> Generator[Any, None, Any]:
        """``await ar`` in asyncio code or an async notebook cell: what :meth:`get` returns.

        Cancelling the awaiting task cancels this result, and so the engines' work.
        """
        return asyncio.wrap_future(self).__await__()

    def abort(self) -> None:
        """Drop this request's work that has not started; what runs goes on (see :meth:`interrupt`)."""
        if self._stop is not None and not self.done():
            self._stop(self, False)

    def interrupt(self) -> None:
        """Stop this request's work: interrupt (as a kernel interrupt) the engines running
        it, and drop what has not started, wherever it waits (the hub, an engine)."""
        if self._stop is not None and not self.done():
            self._stop(self, True)

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
        """The results of a call on several engines as a dict keyed by engine id."""
        result = self.get(timeout)
        values = [result] if self._single else result
        if len(values) != len(self.engine_ids) or len(set(self.engine_ids)) != len(values):
            raise ValueError("get_dict needs one result per engine; this result has "
                             f"{len(values)} values from engines {self.engine_ids}")
        return dict(zip(self.engine_ids, values))

    @property
    def elapsed(self) -> float:
        """Seconds from submission to completion (or to now, while pending)."""
        return (self.completed or time.monotonic()) - self.submitted

    @property
    def metadata(self) -> dict | list[dict]:
        """Each task's ``engine_id``, ``submitted``, ``started`` and ``completed`` (datetimes, None until known);
        one dict for a call on one engine."""
        with self._lock:
            entries = [times.as_dict() for times in self._times]
        return entries[0] if self._single else entries

    @property
    def wall_time(self) -> float | None:
        """Seconds from submission to the last engine's reply, once all replied (by the engines' clocks)."""
        with self._lock:
            return timing.wall_time(self._times)

    @property
    def serial_time(self) -> float:
        """Seconds the engines spent on this request, summed over them."""
        with self._lock:
            return timing.serial_time(self._times)

    @property
    def sent(self) -> bool:
        """Whether ZMQ has finished sending the request (see ``track``)."""
        return all(tracker.done for tracker in self._trackers)

    def wait_for_send(self, timeout: float | None = None) -> None:
        """Block until ZMQ no longer needs the buffers of the request."""
        for tracker in self._trackers:
            tracker.wait(-1 if timeout is None or timeout < 0 else timeout)  # pyzmq's "no limit" is -1
