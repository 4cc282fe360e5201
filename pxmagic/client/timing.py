"""When each task of a request was submitted, started and completed: ``AsyncResult.metadata``.

``submitted`` is the client's clock; ``started`` and ``completed`` are the
engine's (its reply says when it began the request, and its header's date
is when it answered), as in ipyparallel, whose names these are.  Engines on
other hosts must keep their clocks in step (NTP) for the differences of the
two to mean anything; ``serial_time`` uses the engine's clock alone.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _as_datetime(value: Any) -> datetime | None:
    """A timestamp from a message: a datetime (headers) or an ISO string (metadata), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, str):
        try:
            return _as_datetime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return None


@dataclass
class TaskTimes:
    """One task's timestamps (None until known)."""

    engine_id: int | None
    submitted: datetime
    started: datetime | None = None
    completed: datetime | None = None

    def replied(self, engine_id: int | None, msg: dict) -> None:
        """Take the engine's timestamps from its reply."""
        self.engine_id = engine_id
        self.started = _as_datetime(msg.get("metadata", {}).get("started"))
        self.completed = _as_datetime(msg.get("header", {}).get("date"))

    def as_dict(self) -> dict:
        return asdict(self)


def wall_time(times: list[TaskTimes]) -> float | None:
    """Seconds from the first submission to the last completion, once all completed."""
    if not times or any(t.completed is None for t in times):
        return None
    return (max(t.completed for t in times) - min(t.submitted for t in times)).total_seconds()


def serial_time(times: list[TaskTimes]) -> float:
    """Seconds the engines spent on the tasks, summed (tasks without both timestamps count nothing)."""
    return sum((t.completed - t.started).total_seconds() for t in times
               if t.started is not None and t.completed is not None)
