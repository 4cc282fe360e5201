"""What the cluster did lately: finished tasks for the dashboard's task stream, and running totals.

The hub tells this room of every reply (which engine, which task, when it
started and ended, whether it failed) and of the bytes that pass through it
or through shared memory; the dashboard and ``/metrics`` read it back.  It
keeps the last ``keep`` tasks, so a long-lived cluster costs a bounded
amount of memory.
"""
from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass


@dataclass(frozen=True)
class Finished:
    """One task's run on an engine; times are seconds since the epoch."""

    engine_id: int
    msg_id: str
    name: str
    label: str
    started: float
    finished: float
    failed: bool


class TaskHistory:
    def __init__(self, keep: int = 10_000) -> None:
        self._finished: deque[Finished] = deque(maxlen=keep)
        #: tasks finished since the hub started, by outcome ("ok", "error")
        self.totals: Counter[str] = Counter()
        #: bytes of requests and replies since the hub started, frames and shared memory alike
        self.bytes_moved = 0

    def finished(self, task: Finished) -> None:
        self._finished.append(task)
        self.totals["error" if task.failed else "ok"] += 1

    def moved(self, nbytes: int) -> None:
        self.bytes_moved += nbytes

    def since(self, when: float) -> list[Finished]:
        """Tasks that finished after ``when``, oldest first (replies come in finishing order).

        Walks back from the newest, so a dashboard asking every second for the
        last second's tasks reads those, not the whole history.
        """
        recent = []
        for task in reversed(self._finished):
            if task.finished <= when:
                break
            recent.append(task)
        return recent[::-1]
