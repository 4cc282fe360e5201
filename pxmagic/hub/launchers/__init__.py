"""Where a hub's engines come from: one module per way of starting them.

A launcher starts the cluster's ``n`` engines when the hub is up, and owns
whatever it started (kernel processes, an ``mpiexec`` job): it stops it when
the hub stops, says when it ended by itself, and, for jobs whose engines
cannot be stopped one by one, stops the whole job when an engine is stuck.

Launchers live in the hub, not in :mod:`pxmagic.cluster`, because the hub
is the one process that lives as long as the engines: it starts the job only
once its registration socket is up, notices when the job ends, kills it when
an engine is stuck in an MPI collective, and stops it on ``pxcluster stop``.
``pxmagic.cluster`` only starts a hub with ``--engines KIND``.

* ``local`` (:mod:`.local`): kernels started by jupyter_client on this host.
* ``mpi`` (:mod:`.mpi`): one ``mpiexec`` job whose ranks register as engines.
* ``ssh`` (:mod:`.ssh`): one ``ssh`` process per engine, on other hosts.
* ``slurm`` (:mod:`.slurm`): one ``sbatch`` job whose tasks register as engines.
* ``external``: this base class; nothing is started, the hub waits for ``n``
  engines started by hand (``python -m pxmagic.engine --register FILE``).
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.session import Session


@dataclass
class LaunchContext:
    """What the hub gives a launcher to start engines with."""

    session: Session
    #: the cluster's security directory (connection files)
    security_dir: Path
    #: the engine registration file that engines started outside the hub read
    engine_file: Path
    #: hand an engine the hub should connect to and wait for
    admit: Callable[[Any], None]
    #: reserve engine ids for the ranks of a job: ``reserve(job, size) -> ids``
    reserve: Callable[[str, int], range]


class Launcher:
    """Starts nothing: engines register by themselves (``--engines external``)."""

    #: how messages name what this launcher started
    label = "external"
    #: seconds an interrupted engine gets to finish its work before its whole job is stopped;
    #: None where engines can be restarted one by one instead
    interrupt_timeout: float | None = None
    #: what usually keeps an engine of such a job from stopping, for error messages
    stuck_hint = ""

    def __init__(self) -> None:
        #: ids of the engines of the job this launcher started, which live and die together
        self.job_engine_ids: range = range(0)
        self._ended = asyncio.Event()
        self.end_reason: str | None = None

    async def start(self, n: int, context: LaunchContext) -> None:
        """Begin starting ``n`` engines; they reach the hub through ``context.admit`` or by registering."""

    def stuck_reason(self, stuck: list[int]) -> str:
        """Why the job's engines are gone once ``stuck`` ignored an interrupt (completes "engine <id> ...")."""
        names = f"engine{'s' if len(stuck) > 1 else ''} {', '.join(map(str, stuck))}"
        job = self.job_engine_ids
        return (f"was stopped with its whole {self.label} job (engines {job.start}-{job.stop - 1}): {names} "
                f"did not finish within {self.interrupt_timeout:g} s of an interrupt{self.stuck_hint}")

    def _job_ended(self, reason: str) -> None:
        self.end_reason = reason
        self._ended.set()

    async def wait_ended(self) -> str:
        """Return, once the launched job ended by itself, why (completing "engine <id> ...")."""
        await self._ended.wait()
        return self.end_reason or "died"

    async def stop_job(self) -> None:
        """Stop the launched job at once (its engines are stuck)."""

    async def stop(self) -> None:
        """Stop what was started, after the hub asked every engine to shut down."""
