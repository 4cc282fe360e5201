"""Memory and CPU of a process, read from ``/proc``.

The hub reads the engines on its own host this way (it knows their pids),
without a message to them and without psutil (a test-only dependency);
engines on other hosts read themselves and report (:data:`REPORT_PERIOD`).
``/proc/PID/statm`` gives
the resident set, ``/proc/PID/stat`` the CPU time, and the CPU share is the
CPU time used between two samples over the wall time between them (100 is
one core), and at a process's first sample its average since it started.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
#: seconds between an engine's reports of its own use to the hub
REPORT_PERIOD = 2.0


@dataclass(frozen=True)
class Usage:
    rss_bytes: int
    cpu_percent: float | None


def _read(pid: int) -> tuple[int, float, float]:
    """(resident bytes, CPU seconds so far, seconds since it started) of ``pid``; OSError if it is gone."""
    with open(f"/proc/{pid}/statm") as statm:
        resident_pages = int(statm.read().split()[1])
    with open(f"/proc/{pid}/stat") as stat:
        # the command name, in parentheses, may hold spaces: the fields after it are fixed
        fields = stat.read().rsplit(")", 1)[1].split()
    utime, stime, started = int(fields[11]), int(fields[12]), int(fields[19])
    with open("/proc/uptime") as uptime:
        age = float(uptime.read().split()[0]) - started / CLOCK_TICKS
    return resident_pages * PAGE_SIZE, (utime + stime) / CLOCK_TICKS, age


class UsageSampler:
    """Samples processes; a process's CPU share is over the time since its previous sample."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        #: pid -> (when, CPU seconds) at its last sample
        self._last: dict[int, tuple[float, float]] = {}

    def sample(self, pid: int | None) -> Usage | None:
        """The use of ``pid`` now; None if it cannot be read."""
        if pid is None:
            return None
        try:
            rss, cpu_seconds, age = _read(pid)
        except (OSError, ValueError, IndexError):
            self._last.pop(pid, None)
            return None
        now = self._clock()
        previous = self._last.get(pid)
        self._last[pid] = (now, cpu_seconds)
        if previous is None or now <= previous[0]:
            return Usage(rss, 100.0 * cpu_seconds / age if age > 0 else None)
        return Usage(rss, 100.0 * (cpu_seconds - previous[1]) / (now - previous[0]))

    def forget(self, live_pids: set[int]) -> None:
        """Drop the samples of processes no longer watched."""
        for pid in set(self._last) - live_pids:
            del self._last[pid]
