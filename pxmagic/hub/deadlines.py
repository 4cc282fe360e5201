"""When running tasks must end: the clock of ``timeout=``, free of sockets.

A task's time starts when it starts on its engine, not when it was sent:
an engine serves its requests in order, so a task waiting behind another in
the engine (or in the hub's queue) is not running late.  The hub tells this
book which request each engine runs after every change (a delivery to an
idle engine, a reply that frees it for the next) and asks it, a few times a
second, which ones are past their time; it then interrupts those engines
and fails those tasks with ``TaskTimeout`` (see ``Router.time_out``).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Overrun:
    """Request ``msg_id`` has run ``elapsed`` seconds on ``engine_id``, past its timeout."""

    engine_id: int
    msg_id: str
    elapsed: float


class Deadlines:
    def __init__(self) -> None:
        #: engine id -> (msg_id it runs, when it started, its timeout or None)
        self._running: dict[int, tuple[str, float, float | None]] = {}

    def running(self, engine_id: int, msg_id: str | None, timeout: float | None, now: float) -> None:
        """Engine ``engine_id`` runs ``msg_id`` (None: nothing); its clock starts when that changes."""
        if msg_id is None:
            self._running.pop(engine_id, None)
        elif self._running.get(engine_id, ("",))[0] != msg_id:
            self._running[engine_id] = (msg_id, now, timeout)

    def overruns(self, now: float) -> list[Overrun]:
        """Tasks past their timeout, each reported once."""
        late = []
        for engine_id, (msg_id, started, timeout) in self._running.items():
            if timeout is not None and now - started >= timeout:
                late.append(Overrun(engine_id, msg_id, now - started))
        for overrun in late:
            self._running[overrun.engine_id] = (overrun.msg_id, self._running[overrun.engine_id][1], None)
        return late

    def started(self) -> dict[str, float]:
        """When each running request started, by msg_id."""
        return {msg_id: since for msg_id, since, _ in self._running.values()}

    def started_at(self, engine_id: int, msg_id: str) -> float | None:
        """When engine ``engine_id`` started ``msg_id``, if that is what it runs."""
        running = self._running.get(engine_id)
        return running[1] if running is not None and running[0] == msg_id else None

    def forget_engine(self, engine_id: int) -> None:
        self._running.pop(engine_id, None)
