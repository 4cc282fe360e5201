"""Progress bars for long blocking waits, shown only in interactive IPython sessions.

A bar appears once a wait has lasted a second.  In a terminal it is tqdm's
text bar.  In a kernel it is an HTML ``<progress>`` display updated in place
and blanked when the wait ends: unlike a widget, whose saved form is its
first state, it leaves nothing stale in a notebook executed headless.
``PXMAGIC_NONINTERACTIVE=1`` turns bars, and the streaming of %px output,
off for batch runs.

:func:`progress` shows the bar of work the user does not wait for: a
background thread advances it while the notebook (or terminal) goes on.
"""
from __future__ import annotations

import contextvars
import os
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .asyncresult import AsyncResult

#: seconds a wait lasts before its bar appears
DELAY = 1.0


def noninteractive() -> bool:
    return os.environ.get("PXMAGIC_NONINTERACTIVE", "") not in ("", "0")


def _shell() -> Any:
    if noninteractive() or "IPython" not in sys.modules:
        return None
    from IPython import get_ipython

    return get_ipython()


def interactive() -> bool:
    """True inside an IPython session (terminal or kernel) unless turned off."""
    return _shell() is not None


class Progress:
    """A bar of finished tasks out of ``total``; does nothing outside interactive sessions."""

    def __init__(self, total: int, description: str, delay: float = DELAY):
        self.total = total
        self.description = description
        self.delay = delay
        self._started = time.monotonic()
        self._bar: Any = None
        self._display: Any = None
        shell = _shell()
        self._enabled = shell is not None and total > 0
        self._in_kernel = shell is not None and hasattr(shell, "kernel")

    def update(self, finished: int) -> None:
        """Record progress; the bar appears at the first update after the delay."""
        if not self._enabled or time.monotonic() - self._started < self.delay:
            return
        if self._in_kernel:
            self._update_html(finished)
        else:
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=self.total, desc=self.description, unit="tasks", leave=False)
            self._bar.update(finished - self._bar.n)

    def _update_html(self, finished: int) -> None:
        from IPython.display import display

        text = f"{self.description}: {finished}/{self.total} tasks"
        html = f'<progress value="{finished}" max="{self.total}"></progress> {text}'
        data = {"text/plain": text, "text/html": html}
        if self._display is None:
            self._display = display(data, raw=True, display_id=True)
        else:
            self._display.update(data, raw=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        if self._display is not None:
            self._display.update({"text/plain": ""}, raw=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def progress(result: AsyncResult, interval: float = 0.2) -> threading.Thread:
    """Show ``result``'s progress without waiting for it: a bar (an HTML one in a notebook, tqdm's in a
    terminal) that a background thread advances until the result is done, then leaves as a summary line.

    Returns the thread, which a caller may ``join``.
    """
    context = contextvars.copy_context()  # the cell's parent header: its outputs land under this cell
    shell = _shell()
    in_kernel = shell is not None and hasattr(shell, "kernel")
    watcher = threading.Thread(target=context.run, args=(_follow, result, interval, in_kernel),
                               name="pxmagic-progress", daemon=True)
    watcher.start()
    return watcher


def _follow(result: AsyncResult, interval: float, in_kernel: bool) -> None:
    total, name = len(result.msg_ids), result.method
    if in_kernel:
        from IPython.display import display

        handle = display(_bar_data(name, 0, total), raw=True, display_id=True)
        while not result.done():
            result.wait(interval)
            handle.update(_bar_data(name, result.progress, total), raw=True)
        handle.update(_summary_data(result), raw=True)
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=name, unit="tasks") as bar:
        while not result.done():
            result.wait(interval)
            bar.update(result.progress - bar.n)
        bar.update(result.progress - bar.n)


def _bar_data(name: str, finished: int, total: int) -> dict:
    text = f"{name}: {finished}/{total} tasks"
    return {"text/plain": text, "text/html": f'<progress value="{finished}" max="{total}"></progress> {text}'}


def _summary_data(result: AsyncResult) -> dict:
    total = len(result.msg_ids)
    if result.cancelled():
        outcome = "cancelled"
    elif result.exception() is not None:
        outcome = f"failed: {type(result.exception()).__name__}"
    else:
        outcome = f"done in {result.elapsed:.1f} s"
    text = f"{result.method}: {result.progress}/{total} tasks, {outcome}"
    return {"text/plain": text, "text/html": f'<progress value="{result.progress}" max="{total}"></progress> '
                                             f"{text}"}
