"""What ``rc.status()`` shows, assembled from plain facts the hub gathers: no sockets here.

The hub collects, per engine, what it knows of the process (kind, host,
pid, heartbeat, memory and CPU) and asks the router for the tasks; this
module decides each engine's state and lays it all out as the JSON content
of a ``hub_status_reply``, which ``pxmagic.client.status`` reads back.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..usage import Usage

ENGINE_STATES = ("starting", "idle", "busy", "dead", "restarting")


@dataclass(frozen=True)
class EngineFacts:
    """What the hub knows of one engine's process."""

    engine_id: int
    kind: str
    host: str
    pid: int | None
    #: "up" (serving), "starting", "restarting" or "dead": busy or idle is decided from its tasks
    lifecycle: str
    #: seconds since its heartbeat last answered (None: not watched by heartbeats)
    heartbeat_age: float | None = None
    usage: Usage | None = None


def engine_state(lifecycle: str, running: list) -> str:
    if lifecycle == "up":
        return "busy" if running else "idle"
    return lifecycle


def status_content(engines: list[EngineFacts], tasks: dict, started: dict[str, float], now: float,
                   wall_now: float, clients: int, results: int, results_bytes: int, uptime: float) -> dict:
    """The reply content: ``tasks`` is ``Router.tasks()``; ``started`` maps a running msg_id to when (by the
    monotonic clock ``now`` is read from) it started; ``wall_now`` is ``time.time()`` at ``now``."""
    listed = []
    for facts in sorted(engines, key=lambda f: f.engine_id):
        queues = tasks["engines"].get(facts.engine_id, {"running": [], "queue": [], "completed": 0, "failed": 0})
        running = []
        for task in queues["running"]:
            since = started.get(task["msg_id"])
            running.append({**task, "started": None if since is None else wall_now - (now - since),
                            "seconds": None if since is None else now - since})
        listed.append({
            "engine_id": facts.engine_id, "kind": facts.kind, "host": facts.host, "pid": facts.pid,
            "state": engine_state(facts.lifecycle, running),
            "running": running, "queue": queues["queue"],
            "completed": queues["completed"], "failed": queues["failed"],
            "heartbeat_age": facts.heartbeat_age,
            "rss_bytes": None if facts.usage is None else facts.usage.rss_bytes,
            "cpu_percent": None if facts.usage is None else facts.usage.cpu_percent,
        })
    return {"status": "ok", "engines": listed, "unassigned": tasks["unassigned"], "clients": clients,
            "results": results, "results_bytes": results_bytes, "uptime": uptime}
