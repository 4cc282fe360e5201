"""``--engines slurm``: the engines are the tasks of one Slurm batch job.

The hub submits ``sbatch --ntasks N [--sbatch-args] --wrap "srun PYTHON -m
pxmagic.engine --register FILE --job JOB"``.  Each task starts its kernel on
the node Slurm gave it and registers; its rank is ``SLURM_PROCID``, so engine
ids follow task order.  Engines see the job's ``SLURM_*`` variables
(``SLURM_JOB_ID`` among them), since they are ordinary Slurm tasks.

The registration file is named by path, as batch jobs usually find their
input: the profile's security directory must be on a filesystem the nodes
share (home directories on clusters are).  The job's output goes to
``profile_<p>/log/pxmagic-slurm-<job id>.out``.

The hub owns the job: ``pxcluster stop`` asks the engines to shut down and
cancels the job (``scancel``) if it has not ended a few seconds later, and
the job ending by itself (cancelled, out of time) fails the work of all its
engines at once.  Whether it ended is asked of ``squeue`` every few seconds.
"""
from __future__ import annotations

import asyncio
import logging
import secrets
import shlex
import shutil
import sys
from collections.abc import Sequence

from ..engines import EngineStartError
from . import LaunchContext, Launcher

log = logging.getLogger("pxmagic.hub")

#: seconds between the hub's questions to squeue about the job
POLL_PERIOD = 2.0
#: job states after which no task runs any more (squeue's long names)
ENDED_STATES = {"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
                "PREEMPTED", "TIMEOUT"}


def sbatch_command(sbatch: str, sbatch_args: Sequence[str], n: int, output: str, python: str,
                   engine_file: str, job: str) -> list[str]:
    """The ``sbatch`` command that submits ``n`` engine tasks."""
    task = [python, "-m", "pxmagic.engine", "--register", engine_file, "--job", job]
    return [sbatch, "--parsable", f"--job-name=pxmagic-{job}", f"--ntasks={n}", f"--output={output}",
            *sbatch_args, f"--wrap=srun {shlex.join(task)}"]


async def _run(*command: str) -> tuple[int, str]:
    """Run a Slurm command; its exit status and its output (stdout, then stderr)."""
    process = await asyncio.create_subprocess_exec(*command, stdout=asyncio.subprocess.PIPE,
                                                   stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    return process.returncode or 0, (out + err).decode(errors="replace").strip()


class SlurmLauncher(Launcher):
    """One ``sbatch`` job of ``n`` engine tasks."""

    label = "Slurm"

    def __init__(self, sbatch_args: str | Sequence[str] = (), python: str | None = None):
        super().__init__()
        self.sbatch_args = shlex.split(sbatch_args) if isinstance(sbatch_args, str) else list(sbatch_args)
        self.python = python or sys.executable
        self.job_id: str | None = None
        self._poller: asyncio.Task | None = None
        self._stopping = False

    async def start(self, n: int, context: LaunchContext) -> None:
        for tool in ("sbatch", "squeue", "scancel"):
            if shutil.which(tool) is None:
                raise EngineStartError(f"no {tool!r} on PATH: --engines slurm needs Slurm's client commands "
                                       "(Debian: `apt-get install slurm-client`) on the hub's host")
        job = f"slurm-{secrets.token_hex(4)}"
        self.job_engine_ids = context.reserve(job, n)
        log_dir = context.security_dir.parent / "log"
        log_dir.mkdir(parents=True, exist_ok=True)
        command = sbatch_command("sbatch", self.sbatch_args, n, str(log_dir / "pxmagic-slurm-%j.out"),
                                 self.python, str(context.engine_file), job)
        log.info("submitting %d Slurm engines: %s", n, shlex.join(command))
        status, output = await _run(*command)
        job_id = output.split(";")[0].strip()  # --parsable: "ID" or "ID;CLUSTER"
        if status != 0 or not job_id.isdigit():
            raise EngineStartError(f"sbatch did not submit the engines' job (status {status}): {output}")
        self.job_id = job_id
        log.info("Slurm job %s submitted; its output goes to %s", job_id, log_dir / f"pxmagic-slurm-{job_id}.out")
        self._poller = asyncio.create_task(self._poll())

    async def job_state(self) -> str | None:
        """The job's state as squeue tells it; None once squeue no longer knows the job."""
        # --states=all: by default squeue hides jobs that ended, which is what we ask about
        status, output = await _run("squeue", "--noheader", "--states=all", f"--jobs={self.job_id}",
                                    "--format=%T")
        if status != 0 or not output:
            return None
        return output.split()[0]

    async def _poll(self) -> None:
        while True:
            state = await self.job_state()
            if state is None or state in ENDED_STATES:
                break
            await asyncio.sleep(POLL_PERIOD)
        if self._stopping:
            reason = f"was stopped with its Slurm job {self.job_id}"
        else:
            reason = f"died: its Slurm job {self.job_id} ended ({state or 'gone from squeue'})"
        log.info("Slurm job %s ended (%s)", self.job_id, state or "gone from squeue")
        self._job_ended(reason)

    async def stop_job(self) -> None:
        """Cancel the job now."""
        if self.job_id is None or self._ended.is_set():
            return
        self._stopping = True
        status, output = await _run("scancel", self.job_id)
        if status != 0:
            log.warning("scancel %s failed (status %d): %s", self.job_id, status, output)

    async def stop(self, grace: float = 5.0) -> None:
        """Let the engines, asked to shut down, end the job; cancel it if they do not in ``grace`` s."""
        if self.job_id is None:
            return
        self._stopping = True
        try:
            await asyncio.wait_for(asyncio.shield(self._ended.wait()), grace)
        except asyncio.TimeoutError:
            await self.stop_job()
            try:
                await asyncio.wait_for(asyncio.shield(self._ended.wait()), 3 * POLL_PERIOD)
            except asyncio.TimeoutError:
                log.warning("Slurm job %s still listed by squeue after scancel", self.job_id)
        if self._poller is not None:
            self._poller.cancel()
