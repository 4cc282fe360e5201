"""Liveness of engines the hub did not start: pings on each kernel's heartbeat channel.

A Jupyter kernel echoes whatever reaches its ``hb`` socket from a thread
that runs in libzmq without the GIL, so it answers while Python code (or an
MPI collective) keeps the kernel busy, and stops answering only when the
process is gone or frozen.  The hub pings every registered engine once a
``period``; an engine that leaves ``misses`` pings in a row unanswered is
dead.  Counting ticks rather than seconds means a hub that was itself
stalled for a while does not blame its engines for it.

One tick drains every heartbeat socket without blocking and pings each once:
a few microseconds an engine, so a thousand engines cost a few milliseconds
a period, and none of these sockets is on the hub's message path.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import zmq

from .. import encryption
from .options import DEFAULT_MISSES, DEFAULT_PERIOD

log = logging.getLogger("pxmagic.hub")

PING = b"ping"


@dataclass
class Heart:
    socket: zmq.Socket
    on_dead: Callable[[str], None]
    pinged: bool = False
    answered: bool = False
    missed: int = 0
    #: when (time.monotonic) it last answered
    last_answer: float | None = None


class HeartMonitor:
    """Pings engines' heartbeat channels; calls an engine's ``on_dead`` when it stops answering."""

    def __init__(self, context: zmq.Context, period: float = DEFAULT_PERIOD, misses: int = DEFAULT_MISSES):
        if period <= 0 or misses < 1:
            raise ValueError(f"heartbeat period must be > 0 and misses >= 1, not {period}, {misses}")
        self.context = context
        self.period = period
        self.misses = misses
        self._hearts: dict[int, Heart] = {}

    def __len__(self) -> int:
        return len(self._hearts)

    def add(self, engine_id: int, url: str, on_dead: Callable[[str], None], curve_serverkey: str | None = None) -> None:
        """Watch the kernel whose heartbeat channel is at ``url`` (encrypted, if it has a CurveZMQ key)."""
        socket = self.context.socket(zmq.DEALER)
        socket.linger = 0
        socket.sndhwm = socket.rcvhwm = 2 * self.misses
        if curve_serverkey:
            encryption.make_client(socket, curve_serverkey)
        socket.connect(url)
        self.discard(engine_id)
        self._hearts[engine_id] = Heart(socket, on_dead)

    def discard(self, engine_id: int) -> None:
        heart = self._hearts.pop(engine_id, None)
        if heart is not None:
            heart.socket.close(linger=0)

    def close(self) -> None:
        for engine_id in list(self._hearts):
            self.discard(engine_id)

    async def run(self) -> None:
        while True:
            self.tick()
            await asyncio.sleep(self.period)

    def last_answer(self, engine_id: int) -> float | None:
        """When engine ``engine_id``'s heartbeat last answered (None: not watched, or never yet)."""
        heart = self._hearts.get(engine_id)
        return None if heart is None else heart.last_answer

    @property
    def tolerated_stall(self) -> float:
        """The longest freeze an engine survives: death takes ``misses`` pings in a row unanswered,
        sent ``period`` apart, so the engine was frozen for at least ``(misses - 1) * period``."""
        return (self.misses - 1) * self.period

    def tick(self) -> None:
        """Count the answers to the last pings, bury the silent, ping again."""
        for engine_id, heart in list(self._hearts.items()):
            while heart.socket.get(zmq.EVENTS) & zmq.POLLIN:
                heart.socket.recv()
                heart.answered = True
                heart.last_answer = time.monotonic()
            if heart.answered or not heart.pinged:
                heart.missed = 0
            else:
                heart.missed += 1
            if heart.missed >= self.misses:
                self.discard(engine_id)
                reason = (f"stopped answering heartbeats ({heart.missed} pings {self.period:g} s apart "
                          "went unanswered)")
                log.error("engine %d %s", engine_id, reason)
                heart.on_dead(reason)
                continue
            heart.answered = False
            # Again: pings already queued for a peer that does not read them; it is missing this one too
            with contextlib.suppress(zmq.Again):
                heart.socket.send(PING, zmq.NOBLOCK)
            heart.pinged = True
