"""The client's book of its requests, free of sockets and threads.

Every msg_id a client waits on has one :class:`Slot` here, from the
request's sending until both its reply and the end of its output
(``status: idle``) came; the AsyncResults of recent requests stay findable
by msg_id for ``get_result``.  The client's I/O thread feeds this the
messages it verified, and the user's thread the requests it sends: each
step is one plain call, so the rules (which reply fills which slot, what a
silent hub fails, what a late reply becomes) are unit-tested without a
cluster, as the hub's router is.
"""
from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass
from typing import Any

from .. import tags
from ..error import EngineError, RemoteError
from ..protocol import RELEASE_MIN
from .asyncresult import AsyncResult, Output

log = logging.getLogger("pxmagic.client")

#: iopub messages that an AsyncResult keeps as outputs of its request
SHOWN_OUTPUTS = {"stream", "display_data", "update_display_data", "execute_result", "error", "clear_output"}

#: turns a verified reply into a slot's value or error: ``decode(msg, engine_id)``
Decode = Callable[[dict, "int | None"], "tuple[Any, RemoteError | None]"]


@dataclass
class Slot:
    """One msg_id a client waits on: which result slot it fills, and what is still to come for it."""

    result: AsyncResult
    index: int
    awaiting_reply: bool = True
    awaiting_output: bool = True


class Ledger:
    """Which AsyncResult slot each reply and output fills, and the results kept for ``get_result``."""

    def __init__(self, decode: Decode, max_results: int = 10_000) -> None:
        self.decode = decode
        self.max_results = max_results
        self.slots: dict[str, Slot] = {}
        #: msg_id -> AsyncResult of the last ``max_results`` msg_ids, for get_result
        self.results: OrderedDict[str, AsyncResult] = OrderedDict()
        #: msg_ids failed because the hub fell silent: their replies, if they come, are still delivered
        self._given_up: OrderedDict[str, None] = OrderedDict()
        #: large results received since the last request, which the hub may now drop
        self._received: deque[str] = deque()

    # -- the user's side --------------------------------------------------------
    def add(self, result: AsyncResult) -> None:
        """A request was made: each of ``result``'s msg_ids awaits its reply and its output."""
        for index, msg_id in enumerate(result.msg_ids):
            self.slots[msg_id] = Slot(result, index)
            self.remember(msg_id, result)

    def expect(self, result: AsyncResult, slots: dict[str, int]) -> None:
        """Replies the hub will send for ``get_result`` (msg_id -> slot of ``result``); their output went
        to whoever submitted the work."""
        for msg_id, index in slots.items():
            self.slots[msg_id] = Slot(result, index, awaiting_output=False)

    def unexpect(self, result: AsyncResult, msg_ids: Iterable[str]) -> None:
        """The hub will not send these after all (the ask failed)."""
        for msg_id in msg_ids:
            slot = self.slots.get(msg_id)
            if slot is not None and slot.result is result:
                del self.slots[msg_id]

    def remember(self, msg_id: str, result: AsyncResult) -> None:
        self.results[msg_id] = result
        if len(self.results) > self.max_results:
            self.results.popitem(last=False)

    def find(self, msg_id: str) -> AsyncResult | None:
        """The AsyncResult that holds or awaits ``msg_id`` here, if any."""
        if msg_id in self.results:
            return self.results[msg_id]
        slot = self.slots.get(msg_id)
        return None if slot is None else slot.result

    def awaiting(self, msg_id: str) -> bool:
        slot = self.slots.get(msg_id)
        return slot is not None and slot.awaiting_reply

    def outstanding(self, engines: set[int] | None = None) -> list[str]:
        """msg_ids whose reply is still to come (of requests to ``engines``, if given)."""
        waiting = [(msg_id, slot) for msg_id, slot in list(self.slots.items()) if slot.awaiting_reply]
        return [msg_id for msg_id, slot in waiting
                if engines is None or slot.result.engine_ids[slot.index] in engines]

    def results_of(self, jobs: Any) -> set[futures.Future]:
        """The futures ``jobs`` names: AsyncResults (or any Future), msg_ids, or everything outstanding."""
        if jobs is None:
            return {slot.result for slot in list(self.slots.values()) if slot.awaiting_reply}
        if isinstance(jobs, (futures.Future, str)):
            jobs = [jobs]
        results = set()
        for job in jobs:
            if isinstance(job, futures.Future):
                results.add(job)
            elif isinstance(job, str) and job in self.results:
                results.add(self.results[job])
            elif not isinstance(job, str):
                raise TypeError(f"jobs are AsyncResults, futures or msg_ids, not {job!r}")
        return results

    def take_received(self) -> list[str]:
        """The large results received since last asked, for the next request to tell the hub of."""
        taken = []
        while self._received:
            try:
                taken.append(self._received.popleft())
            except IndexError:  # another thread took the last one
                break
        return taken

    # -- the I/O thread's side ---------------------------------------------------
    def reply(self, msg: dict, engine_id: int | None = None, stored: bool = False) -> None:
        """Fill the slot that waits for this verified reply; note a large one as received (the hub may
        drop it then), unless it is a ``stored`` result the hub keeps for other clients too."""
        parent_id = msg["parent_header"].get("msg_id")
        slot = self._take_reply(parent_id)
        if slot is None:
            self._fail_refused_request(parent_id, msg)
            return
        result, index = slot.result, slot.index
        content = msg["content"]
        if engine_id is None:
            engine_id = result.engine_ids[index]
        if engine_id is None:  # a balanced task: the reply says which engine ran it
            engine_id = msg["metadata"].get("engine_id", content.get("engine_id"))
        # an engine that died sends no "idle"; a call that printed nothing says so in its reply
        if content.get("ename") == "EngineError" or msg["metadata"].get("quiet"):
            self.end_output(parent_id)
        result._replied(index, engine_id, msg)
        result._deliver(index, engine_id, *self.decode(msg, engine_id))
        if stored:
            return
        mapped = tags.segment_bytes(msg["metadata"].get("buffer_tags"))
        if mapped + sum(buffer.nbytes for buffer in msg["buffers"]) >= RELEASE_MIN:
            self._received.append(parent_id)

    def retried(self, msg_id: str, notice: dict) -> None:
        """The hub sends task ``msg_id`` for another try."""
        slot = self.slots.get(msg_id)
        if slot is not None and slot.awaiting_reply:
            slot.result._retried(slot.index, notice)

    def unsigned_stored_result(self, msg_id: str, engine_id: int | None) -> None:
        """The hub sent a stored result for ``msg_id`` that our key did not sign: its slot fails with that."""
        self._fail(msg_id, "PermissionError", f"the stored result of {msg_id} is not signed with this cluster's key",
                   engine_id)

    def lost(self, msg_id: str, why: str) -> None:
        """The reply to ``msg_id`` cannot be had: its slot fails with ``why``."""
        self._fail(msg_id, "ConnectionError", why)

    def _fail(self, msg_id: str, ename: str, why: str, engine_id: int | None = None) -> None:
        slot = self._take_reply(msg_id)
        if slot is not None:
            if engine_id is None:
                engine_id = slot.result.engine_ids[slot.index]
            slot.result._deliver(slot.index, engine_id, None, RemoteError(ename, why, engine_id=engine_id))

    def output(self, engine_id: int | None, msg: dict) -> None:
        """An engine's output for one of our requests (its ``idle`` status ends the output)."""
        parent_id = msg["parent_header"].get("msg_id")
        slot = self.slots.get(parent_id)
        if slot is None or not slot.awaiting_output:
            return
        msg_type, content = msg["msg_type"], msg["content"]
        if msg_type == "status":
            if content.get("execution_state") == "idle":
                self.end_output(parent_id)
        elif msg_type in SHOWN_OUTPUTS:
            slot.result._add_output(Output(engine_id, msg_type, content, msg["metadata"]))

    def end_output(self, msg_id: str) -> None:
        """No more output will come for ``msg_id``: its AsyncResult stops waiting for it."""
        slot = self.slots.get(msg_id)
        if slot is None or not slot.awaiting_output:
            return
        slot.awaiting_output = False
        if not slot.awaiting_reply:
            self.slots.pop(msg_id, None)
        slot.result._output_finished()

    def give_up(self, reason: str) -> None:
        """The hub fell silent: every reply still awaited fails with an EngineError saying ``reason``.

        The work may still have run (a hub paused, not dead, keeps results):
        a reply that comes later, or ``get_result``, gets the real outcome.
        """
        for msg_id in self.outstanding():
            slot = self._take_reply(msg_id)
            if slot is None:
                continue
            if self.results.get(msg_id) is slot.result:  # so that get_result asks the hub
                self.results.pop(msg_id, None)
            self._given_up[msg_id] = None
            if len(self._given_up) > self.max_results:
                self._given_up.popitem(last=False)
            self.end_output(msg_id)
            engine_id = slot.result.engine_ids[slot.index]
            error = EngineError("EngineError", f"{reason}; request {msg_id} did not complete", "", engine_id)
            slot.result._deliver(slot.index, engine_id, None, error)

    def _take_reply(self, msg_id: str) -> Slot | None:
        """The slot awaiting the reply to ``msg_id``, now no longer awaiting it (a late reply to a request
        given up gets a fresh result, for get_result)."""
        slot = self.slots.get(msg_id)
        if slot is not None and slot.awaiting_reply:
            slot.awaiting_reply = False
            if not slot.awaiting_output:
                self.slots.pop(msg_id, None)
            return slot
        if msg_id in self._given_up:
            del self._given_up[msg_id]
            late = AsyncResult([msg_id], [None], True, "get_result")
            late._output_finished()
            self.remember(msg_id, late)
            return Slot(late, 0, awaiting_reply=False, awaiting_output=False)
        return None

    def _fail_refused_request(self, request_id: str, msg: dict) -> None:
        """The hub refused a whole request, answering its own msg_id: every engine's copy fails with that."""
        copies = [msg_id for msg_id in self.outstanding() if msg_id.startswith(request_id + "/")]
        if not copies or msg["content"].get("status") != "error":
            log.debug("reply to unknown request %s", request_id)
            return
        for msg_id in copies:
            slot = self.slots[msg_id]
            self.end_output(msg_id)  # nothing ran
            self.reply({**msg, "parent_header": {**msg["parent_header"], "msg_id": msg_id}},
                       slot.result.engine_ids[slot.index])
