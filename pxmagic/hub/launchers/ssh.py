"""``--engines ssh``: engines started on other hosts with the system's ``ssh`` client.

For each engine the hub runs ``ssh -o BatchMode=yes [--ssh-options] HOST
PYTHON -m pxmagic.engine --register - --job JOB --rank R`` and writes the
engine registration file (the cluster's key among it) to that command's
standard input, then closes it: the key reaches the remote host only
through the ssh connection, never a file there, and no filesystem is
assumed shared.  The engine binds its ports on its interface that faces the
hub and registers; its id is its place in ``--hosts`` order.

ssh is the user's own: keys, agent and ``~/.ssh/config`` (user, port,
identity, jump hosts) work as in a shell; ``--ssh-options`` adds options,
such as ``-F CONFIG``.  BatchMode makes ssh fail instead of asking for a
password nobody can type.

Each engine lives and dies alone (its ssh process ending is the engine
ending, and the hub's heartbeats notice it), so no engine's death takes the
others down.  Until all engines are ready, though, an ssh that fails (host
unreachable, key refused, no pxmagic there) ends the start at once with
its exit status.  On stop, engines asked to shut down end their ssh
sessions; ssh processes still running after a grace are terminated, and
their remote engines exit once the hub's heartbeat has been silent.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence

from ..engines import EngineStartError
from ..options import parse_hosts
from . import LaunchContext, Launcher

log = logging.getLogger("pxmagic.hub")

#: ssh options the hub always passes: never prompt, give up on a dead host quickly
BASE_OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=20", "-o", "ServerAliveInterval=15")
#: seconds ssh processes get to end by themselves after the engines were asked to shut down
STOP_GRACE = 5.0


def ssh_command(ssh: str, options: Sequence[str], host: str, python: str, job: str, rank: int) -> list[str]:
    """The local command that starts engine ``rank`` of ``job`` on ``host``."""
    remote = [python, "-m", "pxmagic.engine", "--register", "-", "--job", job, "--rank", str(rank)]
    # ssh hands the remote shell one string: quote each word so paths with spaces survive
    return [ssh, *BASE_OPTIONS, *options, host, shlex.join(remote)]


class SshLauncher(Launcher):
    """One ``ssh`` process per engine, on the hosts of ``--hosts``."""

    label = "ssh"

    def __init__(self, hosts: str, ssh: str = "ssh", ssh_options: str | Sequence[str] = (),
                 python: str | None = None):
        super().__init__()
        self.hosts = parse_hosts(hosts)
        self.ssh = ssh
        self.ssh_options = shlex.split(ssh_options) if isinstance(ssh_options, str) else list(ssh_options)
        self.python = python or sys.executable
        self.processes: list[tuple[str, asyncio.subprocess.Process]] = []
        self._waiters: list[asyncio.Task] = []
        self._stopping = False

    async def start(self, n: int, context: LaunchContext) -> None:
        executable = shutil.which(self.ssh)
        if executable is None:
            raise EngineStartError(f"no {self.ssh!r} on PATH: install an ssh client (Debian: `apt-get install "
                                   "openssh-client`) or name one with --ssh")
        if n != sum(count for _, count in self.hosts):
            raise EngineStartError(f"-n {n} does not match --hosts, which asks for "
                                   f"{sum(count for _, count in self.hosts)} engines")
        engine_file = context.engine_file.read_bytes()
        job = f"ssh-{secrets.token_hex(4)}"
        # ids in --hosts order; the engines are not one job that lives and dies together
        context.reserve(job, n)
        ranks = ((host, rank) for rank, host in enumerate(h for h, count in self.hosts for _ in range(count)))
        for host, rank in ranks:
            command = ssh_command(executable, self.ssh_options, host, self.python, job, rank)
            log.info("starting engine %d on %s: %s", rank, host, shlex.join(command))
            process = await asyncio.create_subprocess_exec(
                *command, stdin=subprocess.PIPE, env=_ssh_environment(os.environ), start_new_session=True
            )
            assert process.stdin is not None
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # ssh failed: _wait says how
                process.stdin.write(engine_file)
                await process.stdin.drain()
                process.stdin.close()
            self.processes.append((host, process))
            self._waiters.append(asyncio.create_task(self._wait(host, rank, process)))

    async def _wait(self, host: str, rank: int, process: asyncio.subprocess.Process) -> None:
        status = await process.wait()
        if self._stopping:
            return
        log.warning("ssh to %s for engine %d exited with status %s", host, rank, status)
        if self.end_reason is None:
            # ends a start still waiting for engines; the hub's heartbeats tell when a ready engine died
            hint = " (255: ssh itself failed: host, key or options)" if status == 255 else ""
            self._job_ended(f"on {host} ended: `ssh {host}` for engine {rank} exited with status {status}{hint}")

    async def stop(self, grace: float = STOP_GRACE) -> None:
        """Let the engines, asked to shut down, end their ssh sessions; terminate the ssh processes left."""
        self._stopping = True
        running = [p for _, p in self.processes if p.returncode is None]
        if running:
            _, pending = await asyncio.wait([asyncio.create_task(p.wait()) for p in running], timeout=grace)
            for process in running:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.terminate()
            if pending:
                await asyncio.wait(pending, timeout=grace)
        for waiter in self._waiters:
            waiter.cancel()


def _ssh_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """ssh's environment: a kernel's ``JPY_PARENT_PID`` must not reach (with SendEnv) remote engines."""
    return {k: v for k, v in environ.items() if k != "JPY_PARENT_PID"}
