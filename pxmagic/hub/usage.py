"""Memory and CPU of engine processes on the hub's host, read from ``/proc``.

The hub knows the pid of every engine it started and of every engine that
registered from its host, so it can read their use without a message to
them and without psutil (a test-only dependency): ``/proc/PID/statm`` gives
the resident set, ``/proc/PID/stat`` the CPU time, and the CPU share is the
CPU time used between two samples over the wall time between them (100 is
one core).  Engines on other hosts are not sampled here.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_percent: float | None


def _read(pid: int) -> tuple[int, float]:
    """(resident bytes, CPU seconds so far) of ``pid``; OSError if it is gone or not readable."""
    with open(f"/proc/{pid}/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    with open(f"/proc/{pid}/stat") as stat:
        # the command name, in parentheses, may hold spaces: the fields after it are fixed
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return resident_pages * PAGE_SIZE, (utime + stime) / CLOCK_TICKS


class UsageSampler:
    """Samples processes; a process's CPU share is over the time since its previous sample."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        #: pid -> (when, CPU seconds) at its last sample
        self._last: dict[int, tuple[float, float]] = {}

    def sample(self, pid: int | None) -> Usage | None:
        """The use of ``pid`` now (CPU share None at its first sample); None if it cannot be read."""
        if pid is None:
            return None
        try:
            rss, cpu_seconds = _read(pid)
        except (OSError, ValueError, IndexError):
            self._last.pop(pid, None)
            return None
        now = self._clock()
        previous = self._last.get(pid)
        self._last[pid] = (now, cpu_seconds)
        if previous is None or now <= previous[0]:
            return Usage(rss, None)
        return Usage(rss, 100.0 * (cpu_seconds - previous[1]) / (now - previous[0]))

    def forget(self, live_pids: set[int]) -> None:
        """Drop the samples of processes no longer watched."""
        for pid in set(self._last) - live_pids:
            del self._last[pid]
