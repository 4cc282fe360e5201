"""``--engines mpi``: the engines are the ranks of one ``mpiexec`` job.

The hub runs ``mpiexec -n N python -m pxmagic.engine --register FILE --mpi
--job JOB``.  Each rank initializes MPI, starts its kernel and registers;
the hub reserved ids for the job's ranks, so engine id == ``COMM_WORLD``
rank.  Because the hub owns the ``mpiexec`` process, ``pxcluster stop``
stops the job, and the job ending by itself (a rank crashed, so Open MPI
aborted the rest) fails the work of every engine in it at once.

MPI ranks cannot be restarted one by one, and a rank blocked in a
collective does not see interrupts (its main thread never returns to
Python).  So when interrupted engines have not finished within
``interrupt_timeout``, the hub stops the whole job (:meth:`stop_job`).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..engines import EngineStartError
from . import LaunchContext, Launcher

log = logging.getLogger("pxmagic.hub")

#: seconds mpiexec gets to end the job after SIGTERM before everything in its session is killed
TERM_GRACE = 5.0


def engine_environment(environ: dict[str, str]) -> dict[str, str]:
    """The environment of ``mpiexec`` and its ranks.

    Open MPI refuses to run as root, and to start more ranks than a host has
    cores, unless told.  A hub running as root means it, and engines mostly
    wait for work, so more engines than cores is a normal request.  These
    variables are Open MPI's (other MPIs ignore them); a value already in the
    environment wins.  ``JPY_PARENT_PID`` of a
    kernel that started the hub must not reach the engines, whose parent is
    an MPI daemon.
    """
    env = {k: v for k, v in environ.items() if k != "JPY_PARENT_PID"}
    if os.geteuid() == 0:
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT", "1")
        env.setdefault("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
    env.setdefault("OMPI_MCA_rmaps_base_oversubscribe", "1")
    return env


def mpiexec_command(mpiexec: str, mpi_args: Sequence[str], n: int, engine_file: Path, job: str) -> list[str]:
    return [mpiexec, *mpi_args, "-n", str(n), sys.executable, "-m", "pxmagic.engine",
            "--register", str(engine_file), "--mpi", "--job", job]


class MpiLauncher(Launcher):
    """One ``mpiexec`` job of ``n`` engine ranks."""

    label = "MPI"
    stuck_hint = " (an MPI rank blocked in a collective cannot be interrupted)"

    def __init__(self, mpiexec: str = "mpiexec", mpi_args: str | Sequence[str] = (),
                 interrupt_timeout: float = 10.0):
        super().__init__()
        self.mpiexec = mpiexec
        self.mpi_args = shlex.split(mpi_args) if isinstance(mpi_args, str) else list(mpi_args)
        self.interrupt_timeout = interrupt_timeout
        self.process: asyncio.subprocess.Process | None = None
        self._waiter: asyncio.Task | None = None
        self._stopping = False

    async def start(self, n: int, context: LaunchContext) -> None:
        executable = shutil.which(self.mpiexec)
        if executable is None:
            raise EngineStartError(
                f"no {self.mpiexec!r} on PATH: install an MPI (Debian: `apt-get install openmpi-bin "
                "libopenmpi-dev`) and mpi4py (`pip install 'pxmagic[mpi]'`), or name mpiexec with --mpiexec"
            )
        job = f"mpi-{secrets.token_hex(4)}"
        self.job_engine_ids = context.reserve(job, n)
        command = mpiexec_command(executable, self.mpi_args, n, context.engine_file, job)
        log.info("starting %d MPI engines: %s", n, shlex.join(command))
        # a session of its own: the job's processes are found, and killed, through it
        self.process = await asyncio.create_subprocess_exec(
            *command, stdin=subprocess.DEVNULL, env=engine_environment(dict(os.environ)), start_new_session=True
        )
        self._waiter = asyncio.create_task(self._wait())

    async def _wait(self) -> None:
        assert self.process is not None
        status = await self.process.wait()
        if self._stopping:
            reason = "was stopped with its MPI job"
        else:
            reason = f"died: its MPI job ended (mpiexec pid {self.process.pid} exited with status {status})"
        log.info("the MPI job ended (mpiexec exited with status %s)", status)
        self._job_ended(reason)

    async def stop_job(self) -> None:
        """SIGTERM to mpiexec, which ends its ranks; SIGKILL to the job's whole session after a grace."""
        if self.process is None or self.process.returncode is not None:
            return
        self._stopping = True
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._ended.wait()), TERM_GRACE)
        except asyncio.TimeoutError:
            log.warning("mpiexec did not end the job within %.0f s of SIGTERM; killing it", TERM_GRACE)
            kill_session(self.process.pid)
            await self._ended.wait()

    async def stop(self, grace: float = 5.0) -> None:
        """Let the engines, asked to shut down, end the job; stop it if they do not in ``grace`` s."""
        if self.process is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self._ended.wait()), grace)
        except asyncio.TimeoutError:
            await self.stop_job()


def kill_session(session_id: int) -> None:
    """SIGKILL every process of a session: mpiexec and the ranks it started on this host.

    Open MPI puts each local rank in a process group of its own, but all stay
    in mpiexec's session.  Linux's /proc tells which processes those are.
    """
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state, ppid, pgrp, session
        if int(fields[3]) == session_id:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(stat.parent.name), signal.SIGKILL)
