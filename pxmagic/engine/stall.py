"""A registered engine that was frozen longer than its hub tolerates exits on waking, running nothing.

The hub takes a registered engine for dead when it stops answering
heartbeats, and fails its outstanding work at once (pxmagic.hub.heartbeat).
The engine may only have been frozen (SIGSTOP or Ctrl-Z, a suspended VM):
when it wakes, the requests still in its shell socket would run, though
their callers were told they failed, and a retry would run them twice.

A process learns that it was stopped from the SIGCONT that continues it.
Its handler runs in the main thread, which alone serves the shell socket,
and before that thread runs anything else: every other thread has SIGCONT
blocked (see :func:`block_in_new_threads`), so the kernel delivers it to
the main thread, whose interrupted system call runs Python's handlers
before returning (PEP 475).  How long the stop lasted is read off a thread
that ticks ten times a second, frozen with everything else.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable

log = logging.getLogger("pxmagic.engine")

TICK = 0.1
#: the tick's own lateness that counts as a stop it lived through (else only its last tick tells)
LATE_TICK = 1.0


def block_in_new_threads() -> None:
    """Block SIGCONT's handler in this (the main) thread and so in every thread it starts from now on.

    Call it before the kernel starts its threads; :meth:`StallGuard.start`
    unblocks it in the main thread only.  A blocked SIGCONT still continues
    the process: only where its handler runs changes.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCONT})


class StallGuard:
    """Calls ``on_stall(seconds)`` when the process wakes from a stop of at least ``tolerated`` seconds."""

    def __init__(self, tolerated: float, on_stall: Callable[[float], None]):
        self.tolerated = tolerated
        self.on_stall = on_stall
        self._last_tick = time.monotonic()
        #: (when, how long) of the ticker's latest late tick
        self._late: tuple[float, float] = (0.0, 0.0)

    def start(self) -> None:
        """Watch from now on; call from the main thread, after :func:`block_in_new_threads`."""
        threading.Thread(target=self._tick, name="pxmagic-stall-guard", daemon=True).start()
        signal.signal(signal.SIGCONT, self._continued)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCONT})

    def _tick(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            if now - self._last_tick > LATE_TICK:
                self._late = (now, now - self._last_tick)
            self._last_tick = now

    def stopped_for(self) -> float:
        """How long the process was just stopped, as far as the ticker tells."""
        now = time.monotonic()
        late_at, late_by = self._late
        recent_late = late_by if now - late_at < LATE_TICK else 0.0
        return max(now - self._last_tick, recent_late)

    def _continued(self, signum: int, frame: object) -> None:
        seconds = self.stopped_for()
        if seconds >= self.tolerated:
            self.on_stall(seconds)
        else:
            log.info("this engine was stopped for %.1f s, less than the hub tolerates (%.1f s)",
                     seconds, self.tolerated)
