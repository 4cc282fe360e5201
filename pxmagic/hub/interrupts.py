"""Interrupted work that does not end: engines stuck where an interrupt cannot reach.

A kernel interrupt raises KeyboardInterrupt when the engine's main thread
next runs Python code.  An MPI rank blocked in a collective (``Barrier``,
``allreduce`` waiting for a peer) never does, so the interrupt does nothing.
For engines whose launcher can stop their whole job, the hub remembers what
each interrupted engine was running; whatever is still running
``timeout`` seconds later marks its engine as stuck.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Collection

from ..protocol import CONTROL_REQUESTS
from .router import Router


class StuckWatch:
    """Calls ``on_stuck(engine_ids)`` when interrupted work outlives ``timeout``."""

    def __init__(self, router: Router, timeout: float, on_stuck: Callable[[list[int]], None]):
        self.router = router
        self.timeout = timeout
        self.on_stuck = on_stuck

    def interrupted(self, engine_ids: Collection[int]) -> None:
        """The engines were just sent an interrupt: check on their running work later."""
        running = {
            msg_id: engine_id
            for engine_id in engine_ids
            for msg_id in self.router.sent.get(engine_id, ())
            if self.router.pending[msg_id].header["msg_type"] not in CONTROL_REQUESTS
        }
        if running:
            asyncio.get_running_loop().call_later(self.timeout, self._check, running)

    def _check(self, running: dict[str, int]) -> None:
        stuck = sorted({engine_id for msg_id, engine_id in running.items() if msg_id in self.router.pending})
        if stuck:
            self.on_stuck(stuck)
