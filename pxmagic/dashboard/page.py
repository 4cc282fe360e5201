"""One browser session's page: the engines table, the task stream, rates over time, memory per engine.

The engines table is the HTML one ``rc.status()`` shows in a notebook.

Every half second it reads the hub's status and the tasks finished since
the last look, and pushes only the changes to the browser over Bokeh's
websocket.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable

from bokeh.document import Document
from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource, Div, Range1d, SingleIntervalTicker
from bokeh.palettes import Category20
from bokeh.plotting import figure

from ..client.status import ClusterStatus
from ..hub.history import Finished, TaskHistory

UPDATE_MS = 500
#: seconds of rates kept, and of the task stream shown (less while the cluster is young)
WINDOW = 300.0
STREAM_SPAN = 60.0
ERROR_COLOUR = "#d62728"
MB = 1024 * 1024
TABLE_STYLE = """
table.pxmagic-status { border-collapse: collapse; font: 13px sans-serif; }
table.pxmagic-status th, table.pxmagic-status td { padding: 3px 10px; border-bottom: 1px solid #ddd; text-align: left; }
"""


def _colour(name: str) -> str:
    """The same colour for the same function, in every session."""
    palette = [c for c in Category20[20] if c != ERROR_COLOUR]
    return palette[zlib.crc32(name.encode()) % len(palette)]


def _ms(seconds: float) -> float:
    """Bokeh's datetime axis counts milliseconds since the epoch."""
    return seconds * 1000.0


def _bars(tasks: list[Finished]) -> dict:
    return {"engine": [t.engine_id for t in tasks], "start": [_ms(t.started) for t in tasks],
            "end": [_ms(t.finished) for t in tasks], "name": [t.label or t.name for t in tasks],
            "colour": [ERROR_COLOUR if t.failed else _colour(t.name) for t in tasks],
            "failed": [t.failed for t in tasks]}


def make_document(doc: Document, status: Callable[[], dict], history: TaskHistory) -> None:
    table = Div(text="", name="engines-table", width=1100, stylesheets=[TABLE_STYLE])

    stream = ColumnDataSource(_bars([]), name="task-stream-source")
    running = ColumnDataSource(_bars([]), name="running-source")
    opened = time.time()
    stream_plot = figure(title="Task stream (one row an engine; red: failed)", x_axis_type="datetime", height=260,
                         x_range=Range1d(_ms(opened - 10.0), _ms(opened + 1.0)),
                         width=1100, tools="xpan,xwheel_zoom,reset,hover", name="task-stream",
                         tooltips=[("task", "@name"), ("engine", "@engine")])
    for source, alpha in ((stream, 0.9), (running, 0.5)):
        stream_plot.hbar(y="engine", left="start", right="end", height=0.8, fill_color="colour",
                         line_color="colour", fill_alpha=alpha, source=source)
    stream_plot.yaxis.axis_label = "engine"
    stream_plot.yaxis.ticker = SingleIntervalTicker(interval=1)

    rates = ColumnDataSource({"time": [], "tasks": [], "mbytes": []}, name="rates-source")
    rate_plot = figure(title="Tasks/s and MB/s moved", x_axis_type="datetime", height=220, width=540)
    rate_plot.line("time", "tasks", source=rates, legend_label="tasks/s", line_width=2)
    rate_plot.line("time", "mbytes", source=rates, legend_label="MB/s", line_width=2, color="#ff7f0e")
    memory = ColumnDataSource({"engine": [], "mb": []}, name="memory-source")
    memory_plot = figure(title="Memory per engine (MB)", height=220, width=540)
    memory_plot.vbar(x="engine", top="mb", width=0.8, source=memory)
    memory_plot.xaxis.ticker = SingleIntervalTicker(interval=1)
    memory_plot.xaxis.axis_label = "engine"

    doc.title = "pxmagic cluster"
    doc.add_root(column(Div(text="<h2>pxmagic cluster</h2>"), table, stream_plot,
                        row(rate_plot, memory_plot)))
    last = {"seen": time.time() - WINDOW, "time": time.time(), "done": sum(history.totals.values()),
            "bytes": history.bytes_moved}

    def update() -> None:
        now = time.time()
        content = status()
        shown = ClusterStatus.from_content(content)
        table.text = shown._repr_html_()
        fresh = history.since(last["seen"])
        if fresh:
            stream.stream(_bars(fresh), rollover=5000)
            last["seen"] = fresh[-1].finished
        running.data = _bars([Finished(e.engine_id, t.msg_id, t.name, t.label, t.started, now, False)
                              for e in shown.engines for t in e.running if t.started is not None])
        first = min(stream.data["start"], default=_ms(now)) / 1000.0
        stream_plot.x_range.start = _ms(max(now - STREAM_SPAN, min(first, now - 10.0)))
        stream_plot.x_range.end = _ms(now + 1.0)
        elapsed = max(now - last["time"], 1e-3)
        done, moved = sum(history.totals.values()), history.bytes_moved
        rates.stream({"time": [_ms(now)], "tasks": [(done - last["done"]) / elapsed],
                      "mbytes": [(moved - last["bytes"]) / elapsed / MB]}, rollover=int(WINDOW * 1000 / UPDATE_MS))
        last.update(time=now, done=done, bytes=moved)
        memory.data = {"engine": [e.engine_id for e in shown.engines],
                       "mb": [(e.rss_bytes or 0) / MB for e in shown.engines]}

    update()
    doc.add_periodic_callback(update, UPDATE_MS)
