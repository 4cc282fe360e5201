"""The hub's routing and scheduling state, free of sockets.

The hub feeds this every request a client sends, every reply an engine
sends, and every engine's arrival and death; it answers with what to send
where.  Keeping the bookkeeping here makes the rules testable and leaves the
hub's loop only moving frames.

Direct requests go to the engines they name at once.  Load-balanced tasks
wait here until one of their candidate engines has fewer than
``high_water_mark`` requests outstanding, then go to the least loaded of
those, so no short task queues behind a long one inside a busy engine.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import ENGINE_REQUESTS, engine_error_content, per_engine_header


@dataclass
class Pending:
    """A request copy sent to an engine whose reply has not come back yet."""

    client: bytes
    engine_id: int
    header: dict


@dataclass
class Delivery:
    """Send the request with ``header`` and ``payload`` to engine ``engine_id``."""

    engine_id: int
    header: dict
    payload: Any


@dataclass
class Failure:
    """Tell ``client`` that the request copy ``parent`` failed, with reply ``content``."""

    client: bytes
    reply_type: str
    parent: dict
    content: dict
    engine_id: int | None = None


@dataclass
class Routing:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


@dataclass
class Task:
    """A load-balanced request waiting for an engine with room."""

    client: bytes
    header: dict
    candidates: list[int] | None
    payload: Any


class Router:
    """Which engines exist, which client waits for which reply, and queued tasks."""

    def __init__(self, high_water_mark: int = 1) -> None:
        self.high_water_mark = high_water_mark
        self.load: dict[int, int] = {}
        self.pending: dict[str, Pending] = {}
        self.queue: deque[Task] = deque()

    @property
    def engines(self) -> list[int]:
        return sorted(self.load)

    def add_engine(self, engine_id: int) -> Routing:
        self.load[engine_id] = 0
        return Routing(deliveries=self._dispatch())

    def route_request(self, client: bytes, header: dict, targets: list[int], payload: Any) -> Routing:
        """Fan a client's request out to its targets; unknown targets fail at once."""
        routing = Routing()
        for engine_id in targets:
            copy = per_engine_header(header, engine_id)
            if engine_id in self.load:
                routing.deliveries.append(self._send(client, engine_id, copy, payload))
            else:
                routing.failures.append(self._failure(client, copy, engine_id, "does not exist"))
        return routing

    def route_task(self, client: bytes, header: dict, candidates: list[int] | None, payload: Any) -> Routing:
        """Queue a load-balanced task and send whatever can go now."""
        unknown = [e for e in candidates or () if e not in self.load]
        if unknown:
            return Routing(failures=[self._failure(client, header, unknown[0], "does not exist")])
        self.queue.append(Task(client, header, candidates, payload))
        return Routing(deliveries=self._dispatch())

    def on_reply(self, parent_msg_id: str) -> tuple[bytes | None, list[Delivery]]:
        """The client waiting for this reply, and the queued tasks the freed engine can take."""
        pending = self.pending.pop(parent_msg_id, None)
        if pending is None:
            return None, []
        self.load[pending.engine_id] -= 1
        return pending.client, self._dispatch()

    def outstanding(self, msg_id: str) -> bool:
        """Whether a reply to ``msg_id`` is still to come: sent to an engine, or queued."""
        return msg_id in self.pending or any(task.header["msg_id"] == msg_id for task in self.queue)

    def abort(self, msg_ids: list[str]) -> tuple[list[Failure], dict[int, list[str]]]:
        """Drop queued tasks among ``msg_ids`` (their clients are told), and say which
        engines hold the others that are still outstanding, so they can be told too."""
        wanted = set(msg_ids)
        aborted = []
        for task in [t for t in self.queue if t.header["msg_id"] in wanted]:
            self.queue.remove(task)
            reply_type = ENGINE_REQUESTS[task.header["msg_type"]]
            aborted.append(Failure(task.client, reply_type, task.header, {"status": "aborted"}))
        by_engine: dict[int, list[str]] = {}
        for msg_id in wanted.intersection(self.pending):
            by_engine.setdefault(self.pending[msg_id].engine_id, []).append(msg_id)
        return aborted, by_engine

    def remove_engine(self, engine_id: int, reason: str) -> list[Failure]:
        """Forget a dead engine: what it owed fails, and so do tasks no engine is left for."""
        del self.load[engine_id]
        failures = []
        for msg_id in [mid for mid, p in self.pending.items() if p.engine_id == engine_id]:
            pending = self.pending.pop(msg_id)
            failures.append(self._failure(pending.client, pending.header, engine_id, reason))
        for task in list(self.queue):
            if not self._live_candidates(task):
                self.queue.remove(task)
                failures.append(self._failure(task.client, task.header, engine_id, reason))
        return failures

    def _live_candidates(self, task: Task) -> list[int]:
        if task.candidates is None:
            return list(self.load)
        return [e for e in task.candidates if e in self.load]

    def _dispatch(self) -> list[Delivery]:
        """Send queued tasks, oldest first, each to its least loaded candidate with room.

        Scanning stops as soon as no engine has room, so a long queue costs
        nothing while every engine is busy.
        """
        if not self.queue:  # every direct reply lands here: no scan of the engines for nothing
            return []
        deliveries = []
        skipped: list[Task] = []
        free = {e for e, n in self.load.items() if n < self.high_water_mark}
        while free and self.queue:
            task = self.queue.popleft()
            room = free if task.candidates is None else free.intersection(task.candidates)
            if not room:
                skipped.append(task)
                continue
            engine_id = min(room, key=lambda e: (self.load[e], e))
            deliveries.append(self._send(task.client, engine_id, task.header, task.payload))
            if self.load[engine_id] >= self.high_water_mark:
                free.discard(engine_id)
        self.queue.extendleft(reversed(skipped))
        return deliveries

    def _send(self, client: bytes, engine_id: int, header: dict, payload: Any) -> Delivery:
        self.pending[header["msg_id"]] = Pending(client, engine_id, header)
        self.load[engine_id] += 1
        return Delivery(engine_id, header, payload)

    @staticmethod
    def _failure(client: bytes, header: dict, engine_id: int, reason: str) -> Failure:
        content = engine_error_content(engine_id, header["msg_id"], reason)
        return Failure(client, ENGINE_REQUESTS[header["msg_type"]], header, content, engine_id)
