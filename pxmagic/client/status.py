"""``rc.status()``: the cluster as the hub sees it, as text in a terminal and a table in a notebook.

The hub lays out the content (``pxmagic.hub.status``); this reads it into
small dataclasses, and renders the one table that ``rc.status()``,
``%pxstatus`` and ``pxcluster status`` show.
"""
from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from typing import Any

MB = 1024 * 1024


@dataclass(frozen=True)
class TaskStatus:
    msg_id: str
    name: str = ""
    label: str = ""
    #: when it started (seconds since the epoch) and how long it has run, for a running task
    started: float | None = None
    seconds: float | None = None

    @property
    def title(self) -> str:
        """What the task is, in a few words: its label, else its function or first line of code."""
        return self.label or self.name or self.msg_id


@dataclass(frozen=True)
class EngineStatus:
    engine_id: int
    kind: str
    host: str
    pid: int | None
    state: str
    running: list[TaskStatus] = field(default_factory=list)
    queue: list[TaskStatus] = field(default_factory=list)
    completed: int = 0
    failed: int = 0
    #: seconds since its heartbeat last answered (None: not watched by heartbeats)
    heartbeat_age: float | None = None
    rss_bytes: int | None = None
    cpu_percent: float | None = None


@dataclass(frozen=True)
class ClusterStatus:
    engines: list[EngineStatus]
    unassigned: list[TaskStatus]
    clients: int
    results: int
    results_bytes: int
    uptime: float
    #: when the hub answered (seconds since the epoch)
    taken: float = field(default_factory=time.time)

    @classmethod
    def from_content(cls, content: dict) -> ClusterStatus:
        def tasks(entries: list[dict]) -> list[TaskStatus]:
            return [TaskStatus(**entry) for entry in entries]

        engines = [EngineStatus(**{**entry, "running": tasks(entry["running"]), "queue": tasks(entry["queue"])})
                   for entry in content["engines"]]
        return cls(engines, tasks(content["unassigned"]), content["clients"], content["results"],
                   content["results_bytes"], content["uptime"])

    def engine(self, engine_id: int) -> EngineStatus:
        for entry in self.engines:
            if entry.engine_id == engine_id:
                return entry
        raise KeyError(f"no engine {engine_id} in this status: engines are {[e.engine_id for e in self.engines]}")

    # -- one table, as text and as HTML ---------------------------------------
    HEADINGS = ("engine", "state", "kind", "host", "pid", "running", "queued", "done", "failed", "memory", "cpu",
                "heartbeat")

    def rows(self) -> list[tuple[str, ...]]:
        rows = []
        for e in self.engines:
            running = ", ".join(f"{t.title} ({t.seconds:.1f} s)" if t.seconds is not None else t.title
                                for t in e.running)
            rows.append((str(e.engine_id), e.state, e.kind, e.host, "" if e.pid is None else str(e.pid),
                         running, str(len(e.queue)), str(e.completed), str(e.failed),
                         "" if e.rss_bytes is None else f"{e.rss_bytes / MB:.0f} MB",
                         "" if e.cpu_percent is None else f"{e.cpu_percent:.0f} %",
                         "" if e.heartbeat_age is None else f"{e.heartbeat_age:.1f} s ago"))
        return rows

    def summary(self) -> str:
        states = {state: sum(e.state == state for e in self.engines) for state in
                  ("busy", "idle", "starting", "restarting", "dead")}
        counted = ", ".join(f"{n} {state}" for state, n in states.items() if n)
        return (f"{len(self.engines)} engines ({counted or 'none'}); {len(self.unassigned)} tasks unassigned; "
                f"{self.clients} clients; {self.results} results held ({self.results_bytes / MB:.1f} MB); "
                f"up {self.uptime:.0f} s")

    def __str__(self) -> str:
        rows = [self.HEADINGS, *self.rows()]
        widths = [max(len(row[i]) for row in rows) for i in range(len(self.HEADINGS))]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
        return "\n".join([self.summary(), *lines])

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.HEADINGS)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                       for row in self.rows())
        return (f"<p>{html.escape(self.summary())}</p>"
                f"<table class='pxmagic-status'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def queue_status(self, verbose: bool = False) -> dict[Any, Any]:
        """ipyparallel's shape: per engine id ``queue``, ``running``, ``completed``; and ``unassigned``."""
        def shown(tasks: list[TaskStatus]) -> list[str] | int:
            return [t.msg_id for t in tasks] if verbose else len(tasks)

        status: dict[Any, Any] = {e.engine_id: {"queue": shown(e.queue), "running": shown(e.running),
                                                "completed": e.completed} for e in self.engines}
        status["unassigned"] = shown(self.unassigned)
        return status
