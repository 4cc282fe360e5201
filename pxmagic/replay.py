"""Refusing replayed requests for a cluster's whole life, and telling of refusals without flooding a log.

A signed request captured on the wire could be sent again by anyone who
can reach the socket.  jupyter_client's ``Session`` remembers the last
65,536 signatures and then forgets some at random, so an old capture runs
again once enough traffic has gone by.  Here a request must also be
recent: its header's date, which the signature covers, must be within
``window`` seconds of the receiver's clock.  A signature is remembered for
exactly as long as its date would pass that test, so memory is bounded by
the rate of requests, and no replay ever passes, however long the cluster
lives.

Only requests (what makes a receiver act) need this.  A replayed reply or
output names a request that was answered already, which the hub's router
and the client ignore.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone

#: seconds a request may be older (or, with a clock ahead, newer) than the receiver's clock.
#: A request that waits longer in the buffers of a frozen process is refused: it cannot be told
#: from a replay.  Clocks of hosts in one cluster must agree to well within it (NTP does).
REQUEST_WINDOW = 600.0


def _timestamp(date: object) -> float | None:
    if not isinstance(date, str):
        return None
    try:
        when = datetime.fromisoformat(date.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)  # jupyter_client's dates are UTC
    return when.timestamp()


class ReplayGuard:
    """Which signed requests are fresh: recent and never seen before."""

    def __init__(self, window: float = REQUEST_WINDOW, clock: Callable[[], float] = time.time):
        self.window = window
        self._clock = clock
        self._seen: set[int] = set()
        #: whole second after which a remembered signature's date is too old anyway -> its keys
        self._forget_at: dict[int, list[int]] = {}
        self._swept = int(clock())

    def __len__(self) -> int:
        return len(self._seen)

    def refusal(self, signature: bytes, date: object) -> str | None:
        """Why a request with a valid ``signature`` and header ``date`` is refused, or None (and remember it)."""
        now = self._clock()
        self._sweep(now)
        when = _timestamp(date)
        if when is None:
            return f"its header's date {date!r} is not an ISO 8601 time"
        if when < now - self.window:
            return (f"it is dated {now - when:.0f} s ago, and requests older than {self.window:g} s are "
                    "refused as replays (or the sender's clock is behind this host's)")
        if when > now + self.window:
            return (f"it is dated {when - now:.0f} s ahead of this host's clock, more than the "
                    f"{self.window:g} s allowed (the sender's clock is ahead)")
        key = hash(signature)  # the signature is an HMAC: its hash tells signatures apart well enough
        if key in self._seen:
            return "it was received before (a replay)"
        self._seen.add(key)
        self._forget_at.setdefault(int(when + self.window) + 1, []).append(key)
        return None

    def _sweep(self, now: float) -> None:
        if int(now) <= self._swept:
            return
        self._swept = int(now)
        for second in [second for second in self._forget_at if second <= now]:
            self._seen.difference_update(self._forget_at.pop(second))


class RefusalLog:
    """Counts refused messages, and logs one line a ``period`` at most about them.

    The first refusal is logged at once; a flood of junk then costs a line
    every ``period`` seconds, each saying how many went unlogged.
    """

    def __init__(self, logger: logging.Logger, period: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.logger = logger
        self.period = period
        self._clock = clock
        self.total = 0
        self._unlogged = 0
        self._next_line = float("-inf")

    def refused(self, what: str, reason: str) -> None:
        self.total += 1
        now = self._clock()
        if now < self._next_line:
            self._unlogged += 1
            return
        more = f", {self._unlogged} more unlogged since the last line" if self._unlogged else ""
        self.logger.warning("refused %s (%d refused so far%s): %s", what, self.total, more, reason)
        self._unlogged = 0
        self._next_line = now + self.period
