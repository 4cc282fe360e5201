"""Showing engines' outputs in IPython: streams, results and rich displays, tagged by engine.

Outputs are shown from the thread that runs the cell (never from the
client's I/O thread), so in a notebook they land in the cell that asked.
"""
from __future__ import annotations

import sys
from collections.abc import Iterable

from .client.asyncresult import Output


def _text(output: Output) -> str:
    return output.content.get("data", {}).get("text/plain", "")


def show(output: Output) -> None:
    """Show one engine output, prefixed with the engine it came from."""
    engine, kind, content = output.engine_id, output.msg_type, output.content
    if kind == "stream":
        stream = sys.stderr if content["name"] == "stderr" else sys.stdout
        text = content["text"]
        separator = "\n" if text.count("\n") > 1 else " "
        print(f"[{content['name']}:{engine}]{separator}{text}", end="" if text.endswith("\n") else "\n",
              file=stream, flush=True)
    elif kind == "execute_result":
        prefix = f"Out[{engine}:{content.get('execution_count')}]:"
        data = content.get("data", {})
        if set(data) <= {"text/plain"}:
            text = _text(output)
            print(f"{prefix}{chr(10) if chr(10) in text else ' '}{text}", flush=True)
        else:
            print(prefix, flush=True)
            _display(output)
    elif kind in ("display_data", "update_display_data"):
        print(f"[output:{engine}]", flush=True)
        _display(output)


def _display(output: Output) -> None:
    from IPython.display import display

    display(output.content.get("data", {}), raw=True, metadata=output.content.get("metadata", {}))


def show_all(outputs: Iterable[Output], group: str | None = None) -> None:
    """Show outputs in arrival order, or grouped by ``"engine"`` or by output ``"type"``."""
    outputs = list(outputs)
    if group == "engine":
        outputs.sort(key=lambda o: (o.engine_id if o.engine_id is not None else -1))
    elif group == "type":
        order = {"stream": 0, "display_data": 1, "update_display_data": 1, "execute_result": 2}
        outputs.sort(key=lambda o: (order.get(o.msg_type, 3), o.engine_id or 0))
    for output in outputs:
        show(output)
