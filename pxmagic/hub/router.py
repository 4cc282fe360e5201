"""The hub's routing and scheduling state, free of sockets.

The hub feeds this every request a client sends, every reply an engine
sends, and every engine's arrival and death; it answers with what to send
where.  Keeping the bookkeeping here makes the rules testable and leaves the
hub's loop only moving frames.

Direct requests go to the engines they name at once.  Load-balanced tasks
wait here until one of their candidate engines has fewer than
``high_water_mark`` requests outstanding, then go to the least loaded of
those, so no short task queues behind a long one inside a busy engine.

An engine being restarted (after it died, with ``--restart-engines``, or on
request) is not gone: requests for it wait here until its fresh kernel is
ready, so a call made during a restart runs on the new kernel instead of
failing with "engine does not exist".

A load-balanced task sent with ``retries=N`` is tried again, up to N more
times, when its engine dies under it (or, with ``retry_errors``, when it
raises), on another engine if one of its candidates is left; its client
hears of each new try (a :class:`Retry`) and of the last outcome only.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from ..protocol import (
    CONTROL_REQUESTS,
    ENGINE_REQUESTS,
    RequestTerms,
    engine_error_content,
    error_content,
    per_engine_header,
)


@dataclass
class Pending:
    """A request copy sent to an engine whose reply has not come back yet."""

    client: bytes
    engine_id: int
    header: dict
    terms: RequestTerms = RequestTerms()
    #: it ran past ``terms.timeout``, and its client has been told
    timed_out: bool = False
    #: the load-balanced task it is, kept while it may be tried again
    task: Task | None = None


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
class Retry:
    """Tell ``client`` that the task ``parent`` failed on ``engine_id`` (``reason``) and goes for try ``tries``."""

    client: bytes
    parent: dict
    engine_id: int
    reason: str
    tries: int


@dataclass
class Routing:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    retries: list[Retry] = field(default_factory=list)


@dataclass
class Task:
    """A load-balanced request waiting for an engine with room."""

    client: bytes
    header: dict
    candidates: list[int] | None
    payload: Any
    terms: RequestTerms = RequestTerms()
    #: further tries it may still have, and tries so far
    retries_left: int = 0
    tries: int = 1
    #: the engine it last failed on, which it goes back to only if no other candidate is left
    avoid: int | None = None


@dataclass
class Held:
    """A direct request copy waiting for its engine's restart."""

    client: bytes
    header: dict
    payload: Any
    terms: RequestTerms = RequestTerms()


@dataclass
class Stop:
    """What stopping some requests takes: replies for those dropped here, aborts and interrupts for engines."""

    aborted: list[Failure] = field(default_factory=list)
    #: engine id -> msg_ids it holds and has not started
    abort: dict[int, list[str]] = field(default_factory=dict)
    #: engines running one of the requests
    interrupt: list[int] = field(default_factory=list)


class Router:
    """Which engines exist, which client waits for which reply, and queued tasks."""

    def __init__(self, high_water_mark: int = 1) -> None:
        self.high_water_mark = high_water_mark
        self.load: dict[int, int] = {}
        self.pending: dict[str, Pending] = {}
        #: engine id -> msg_ids of the requests sent to it and not answered, oldest first
        self.sent: dict[int, dict[str, None]] = {}
        self.queue: deque[Task] = deque()
        #: engines being restarted, and the direct requests waiting for each
        self.restarting: dict[int, list[Held]] = {}
        #: engine id -> requests it has answered (control requests aside), and of those with an error
        self.completed: Counter[int] = Counter()
        self.failed: Counter[int] = Counter()

    def add_engine(self, engine_id: int) -> Routing:
        """An engine is ready (a restarted one gets what waited for it, in order)."""
        self.load[engine_id] = 0
        self.sent[engine_id] = {}
        held = self.restarting.pop(engine_id, [])
        deliveries = [self._send(h.client, engine_id, h.header, h.payload, h.terms) for h in held]
        return Routing(deliveries=deliveries + self._dispatch())

    def known(self, engine_id: int) -> bool:
        """Whether requests for ``engine_id`` are taken: it is up, or coming back from a restart."""
        return engine_id in self.load or engine_id in self.restarting

    def route_request(self, client: bytes, header: dict, targets: list[int], payload: Any,
                      terms: RequestTerms = RequestTerms()) -> Routing:
        """Fan a client's request out to its targets; unknown targets fail at once."""
        routing = Routing()
        for engine_id in targets:
            copy = per_engine_header(header, engine_id)
            if engine_id in self.load:
                routing.deliveries.append(self._send(client, engine_id, copy, payload, terms))
            elif engine_id in self.restarting:
                self.restarting[engine_id].append(Held(client, copy, payload, terms))
            else:
                routing.failures.append(self._failure(client, copy, engine_id, "does not exist"))
        return routing

    def route_task(self, client: bytes, header: dict, candidates: list[int] | None, payload: Any,
                   terms: RequestTerms = RequestTerms()) -> Routing:
        """Queue a load-balanced task and send whatever can go now."""
        unknown = [e for e in candidates or () if not self.known(e)]
        if unknown:
            return Routing(failures=[self._failure(client, header, unknown[0], "does not exist")])
        self.queue.append(Task(client, header, candidates, payload, terms, terms.retries))
        return Routing(deliveries=self._dispatch())

    def on_reply(self, parent_msg_id: str, failed: bool = False) -> tuple[bytes | None, list[Delivery]]:
        """The client waiting for this reply (None if none is, or it was told of a timeout),
        and the queued tasks the freed engine can take."""
        pending = self._answered(parent_msg_id)
        if pending is None:
            return None, []
        if pending.header["msg_type"] not in CONTROL_REQUESTS:
            self.completed[pending.engine_id] += 1
            self.failed[pending.engine_id] += failed
        return None if pending.timed_out else pending.client, self._dispatch()

    def retries_errors(self, msg_id: str) -> bool:
        """Whether an error reply to ``msg_id`` is to be tried again rather than passed on."""
        pending = self.pending.get(msg_id)
        return (pending is not None and pending.task is not None and pending.terms.retry_errors
                and pending.task.retries_left > 0 and not pending.timed_out)

    def retry(self, msg_id: str, reason: str) -> Routing:
        """Engine's reply to ``msg_id`` was an error (``reason``) that :meth:`retries_errors` allows to retry."""
        pending = self._answered(msg_id)
        notice = self._requeue(pending, reason)
        return Routing(deliveries=self._dispatch(), retries=[notice])

    def running(self, engine_id: int) -> Pending | None:
        """The request engine ``engine_id`` runs now: its oldest outstanding one (control requests aside,
        which it serves at once).  An engine serves its requests in the order they were sent."""
        for msg_id in self.sent.get(engine_id, ()):
            pending = self.pending[msg_id]
            if pending.header["msg_type"] not in CONTROL_REQUESTS:
                return pending
        return None

    def tasks(self) -> dict:
        """Per engine, the task it runs and those waiting for it (in it, or here while it restarts), each
        as ``{msg_id, name, label}``, and how many it answered and of those failed; and the load-balanced
        tasks no engine has taken yet."""
        engines = {}
        for engine_id in sorted(set(self.load) | set(self.restarting)):
            sent = (self.pending[msg_id] for msg_id in self.sent.get(engine_id, ()))
            outstanding = [_listed(p.header, p.terms) for p in sent if p.header["msg_type"] not in CONTROL_REQUESTS]
            held = [_listed(h.header, h.terms) for h in self.restarting.get(engine_id, [])]
            engines[engine_id] = {"running": outstanding[:1], "queue": outstanding[1:] + held,
                                  "completed": self.completed[engine_id], "failed": self.failed[engine_id]}
        return {"engines": engines, "unassigned": [_listed(t.header, t.terms) for t in self.queue]}

    def time_out(self, msg_id: str, engine_id: int, elapsed: float) -> Failure | None:
        """Request ``msg_id`` ran ``elapsed`` seconds on ``engine_id``, past its timeout: the failure its
        client gets now.  The engine still owes its reply (it is interrupted), which then goes nowhere."""
        pending = self.pending.get(msg_id)
        if pending is None or pending.timed_out or pending.engine_id != engine_id:
            return None
        pending.timed_out = True
        content = error_content("TaskTimeout", f"engine {engine_id} ran request {msg_id} for {elapsed:.3g} s, "
                                f"past its timeout of {pending.terms.timeout:g} s; the engine was interrupted",
                                engine_id=engine_id)
        return Failure(pending.client, ENGINE_REQUESTS[pending.header["msg_type"]], pending.header, content,
                       engine_id)

    def outstanding(self, msg_id: str) -> bool:
        """Whether a reply to ``msg_id`` is still to come: sent to an engine, or waiting here."""
        return (msg_id in self.pending or any(task.header["msg_id"] == msg_id for task in self.queue)
                or any(h.header["msg_id"] == msg_id for held in self.restarting.values() for h in held))

    def stop(self, msg_ids: list[str], interrupt: bool = False) -> Stop:
        """Stop the requests ``msg_ids``: drop those waiting here (their clients are told),
        say which engines hold the others, not started, and, with ``interrupt``,
        which engines are running one of them.

        An engine serves its requests in the order they were sent, so the one
        it runs is its oldest outstanding one (interrupts aside, which its
        control channel serves at once).
        """
        wanted = set(msg_ids)
        stop = Stop()
        for task in [t for t in self.queue if t.header["msg_id"] in wanted]:
            self.queue.remove(task)
            stop.aborted.append(self._aborted(task.client, task.header))
        for engine_id, held in self.restarting.items():
            for waiting in [h for h in held if h.header["msg_id"] in wanted]:
                held.remove(waiting)
                stop.aborted.append(self._aborted(waiting.client, waiting.header))
        for msg_id in [m for m in wanted.intersection(self.pending) if not self.pending[m].timed_out]:
            engine_id = self.pending[msg_id].engine_id
            if interrupt and self.running(engine_id) is self.pending[msg_id]:
                stop.interrupt.append(engine_id)
            else:
                stop.abort.setdefault(engine_id, []).append(msg_id)
        stop.interrupt.sort()
        return stop

    def restart_engine(self, engine_id: int, reason: str) -> Routing:
        """A fresh kernel is coming for ``engine_id``: what the old one owed fails (``reason``) or goes for
        another try, and requests for it wait for :meth:`add_engine` of the new one."""
        self.restarting.setdefault(engine_id, [])
        return self.remove_engine(engine_id, reason) if engine_id in self.load else Routing()

    def remove_engine(self, engine_id: int, reason: str) -> Routing:
        """Forget a dead engine: what it owed fails, or goes for another try, and tasks no engine is left
        for fail."""
        del self.load[engine_id]
        routing = Routing()
        for msg_id in self.sent.pop(engine_id):
            pending = self.pending.pop(msg_id)
            if pending.timed_out:
                continue
            if pending.task is not None and pending.task.retries_left > 0:
                routing.retries.append(self._requeue(pending, reason))
            else:
                routing.failures.append(self._failure(pending.client, pending.header, engine_id, reason))
        routing.failures += self._fail_stranded_tasks(engine_id, reason)
        routing.deliveries = self._dispatch()
        return routing

    def restart_failed(self, engine_id: int, reason: str) -> list[Failure]:
        """An engine did not come back: what waited for it fails."""
        held = self.restarting.pop(engine_id, [])
        failures = [self._failure(h.client, h.header, engine_id, reason) for h in held]
        return failures + self._fail_stranded_tasks(engine_id, reason)

    def _fail_stranded_tasks(self, engine_id: int, reason: str) -> list[Failure]:
        failures = []
        for task in list(self.queue):
            if not self._live_candidates(task):
                self.queue.remove(task)
                failures.append(self._failure(task.client, task.header, engine_id, reason))
        return failures

    def _live_candidates(self, task: Task) -> list[int]:
        """Engines that are up or restarting, among those the task may run on."""
        if task.candidates is None:
            return [*self.load, *self.restarting]
        return [e for e in task.candidates if self.known(e)]

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
            if task.avoid is not None and any(e != task.avoid for e in self._live_candidates(task)):
                room = room - {task.avoid}
            if not room:
                skipped.append(task)
                continue
            engine_id = min(room, key=lambda e: (self.load[e], e))
            deliveries.append(self._send(task.client, engine_id, task.header, task.payload, task.terms))
            if task.retries_left > 0:
                self.pending[task.header["msg_id"]].task = task
            if self.load[engine_id] >= self.high_water_mark:
                free.discard(engine_id)
        self.queue.extendleft(reversed(skipped))
        return deliveries

    def _send(self, client: bytes, engine_id: int, header: dict, payload: Any,
              terms: RequestTerms = RequestTerms()) -> Delivery:
        self.pending[header["msg_id"]] = Pending(client, engine_id, header, terms)
        self.sent[engine_id][header["msg_id"]] = None
        self.load[engine_id] += 1
        return Delivery(engine_id, header, payload)

    def _answered(self, msg_id: str) -> Pending | None:
        """Forget the request copy ``msg_id`` its engine answered (or failed), if it was outstanding."""
        pending = self.pending.pop(msg_id, None)
        if pending is not None:
            self.load[pending.engine_id] -= 1
            del self.sent[pending.engine_id][msg_id]
        return pending

    def _requeue(self, pending: Pending, reason: str) -> Retry:
        """Put a failed task back at the head of the queue for one more try."""
        task = pending.task
        task.retries_left -= 1
        task.tries += 1
        task.avoid = pending.engine_id
        self.queue.appendleft(task)
        return Retry(task.client, task.header, pending.engine_id, reason, task.tries)

    @staticmethod
    def _aborted(client: bytes, header: dict) -> Failure:
        return Failure(client, ENGINE_REQUESTS[header["msg_type"]], header, {"status": "aborted"})

    @staticmethod
    def _failure(client: bytes, header: dict, engine_id: int, reason: str) -> Failure:
        content = engine_error_content(engine_id, header["msg_id"], reason)
        return Failure(client, ENGINE_REQUESTS[header["msg_type"]], header, content, engine_id)


def _listed(header: dict, terms: RequestTerms) -> dict:
    return {"msg_id": header["msg_id"], "name": terms.name, "label": terms.label}
