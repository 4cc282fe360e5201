"""``/metrics``: the cluster in Prometheus's text exposition format, from plain values.

Written out here rather than through prometheus_client: four metric
families whose format is a stable, documented text, and the hub stays free
of another dependency; the tests read it back with prometheus_client's
own parser.
"""
from __future__ import annotations

from ..hub.status import ENGINE_STATES

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_text(status: dict, totals: dict[str, int], bytes_moved: int) -> str:
    """``status`` is a ``hub_status_reply`` content; ``totals`` tasks finished by outcome."""
    states = {state: 0 for state in ENGINE_STATES}
    for engine in status["engines"]:
        states[engine["state"]] = states.get(engine["state"], 0) + 1
    queued = len(status["unassigned"]) + sum(len(e["queue"]) for e in status["engines"])
    lines = ["# HELP pxmagic_engines Engines of the cluster, by state.", "# TYPE pxmagic_engines gauge"]
    lines += [f'pxmagic_engines{{state="{state}"}} {count}' for state, count in states.items()]
    lines += ["# HELP pxmagic_tasks Tasks finished since the hub started, by outcome.",
              "# TYPE pxmagic_tasks counter"]
    lines += [f'pxmagic_tasks_total{{outcome="{outcome}"}} {totals.get(outcome, 0)}' for outcome in ("ok", "error")]
    lines += ["# HELP pxmagic_queue_length Tasks waiting: in the hub's queue or behind another in an engine.",
              "# TYPE pxmagic_queue_length gauge", f"pxmagic_queue_length {queued}",
              "# HELP pxmagic_bytes_moved Bytes of requests and replies, frames and shared memory alike.",
              "# TYPE pxmagic_bytes_moved counter", f"pxmagic_bytes_moved_total {bytes_moved}"]
    return "\n".join(lines) + "\n"
