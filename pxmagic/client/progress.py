"""Progress bars for long blocking waits, shown only in interactive IPython sessions.

A bar appears once a wait has lasted a second (tqdm's ``delay``): a text bar
in a terminal, tqdm's widget in a notebook.  ``PXMAGIC_NONINTERACTIVE=1``
turns bars, and the streaming of %px output, off for batch runs.
"""
from __future__ import annotations

import os
import sys
from typing import Any

#: seconds a wait lasts before its bar appears
DELAY = 1.0


def noninteractive() -> bool:
    return os.environ.get("PXMAGIC_NONINTERACTIVE", "") not in ("", "0")


def interactive() -> bool:
    """True inside an IPython session (terminal or kernel) unless turned off."""
    if noninteractive() or "IPython" not in sys.modules:
        return False
    from IPython import get_ipython

    return get_ipython() is not None


class Progress:
    """A bar of finished tasks out of ``total``; does nothing outside interactive sessions."""

    def __init__(self, total: int, description: str):
        self._bar: Any = None
        if interactive() and total > 0:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=description, unit="tasks", delay=DELAY, leave=False)

    def update(self, finished: int) -> None:
        """Record progress; also what makes the bar appear once the delay has passed."""
        if self._bar is not None:
            self._bar.update(finished - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
