"""A real single-node Slurm for the tests: munged, slurmctld and slurmd on a config of our own.

Everything lives in one temp directory (config, state, spool, logs, the
munge socket) and uses free ports, so it touches no system Slurm and
several can run side by side.  Debian's ``slurm-wlm`` and ``munge``
packages provide the daemons; munged runs as the ``munge`` user, with the
key the package made.  ``SLURM_CONF`` points Slurm's commands (sbatch,
squeue, scancel, and srun inside jobs) at the config.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
MUNGE_KEY = Path("/etc/munge/munge.key")


def available() -> bool:
    return all(os.path.exists(d) for d in DAEMONS) and MUNGE_KEY.exists() and shutil.which("sbatch") is not None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _config(directory: Path, node: str, munge_socket: Path) -> str:
    return "\n".join([
        "ClusterName=pxmagic-test",
        f"SlurmctldHost={node}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={munge_socket}",
        f"SlurmctldPort={_free_port()}",
        f"SlurmdPort={_free_port()}",
        f"StateSaveLocation={directory / 'state'}",
        f"SlurmdSpoolDir={directory / 'spool'}",
        f"SlurmctldPidFile={directory / 'slurmctld.pid'}",
        f"SlurmdPidFile={directory / 'slurmd.pid'}",
        f"SlurmctldLogFile={directory / 'slurmctld.log'}",
        f"SlurmdLogFile={directory / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_CPU",
        "MpiDefault=none",
        "ReturnToService=2",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "SchedulerType=sched/builtin",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN",
        f"PartitionName=pxmagic Nodes={node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4",
        "",
    ])


def _wait_until(check, timeout: float, what: str, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise TimeoutError(f"{what} within {timeout:.0f} s\n{tail}")
        time.sleep(0.2)


@contextlib.contextmanager
def slurm_cluster() -> Iterator[dict[str, str]]:
    """Run a one-node Slurm; yields the environment (``SLURM_CONF``) its commands need.

    Its directory is made in /tmp, not pytest's (mode 0700) temp dir: munged,
    running as user munge, insists that everyone can reach its socket.
    """
    directory = Path(tempfile.mkdtemp(prefix="pxmagic-slurm-", dir="/tmp"))
    try:
        with _daemons(directory) as env:
            yield env
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def _daemons(directory: Path) -> Iterator[dict[str, str]]:
    node = socket.gethostname().split(".")[0]
    munge_dir = directory / "munge"
    for sub in ("state", "spool", "munge"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    shutil.chown(munge_dir, "munge", "munge")
    munge_dir.chmod(0o755)  # munged insists that everyone can reach its socket
    directory.chmod(0o755)  # munged, as user munge, must reach its directory
    munge_socket = munge_dir / "munge.socket"
    config = directory / "slurm.conf"
    config.write_text(_config(directory, node, munge_socket))
    env = {**os.environ, "SLURM_CONF": str(config)}
    daemons: list[subprocess.Popen] = []
    try:
        daemons.append(subprocess.Popen(
            ["runuser", "-u", "munge", "--", "/usr/sbin/munged", "--foreground", f"--socket={munge_socket}",
             f"--pid-file={munge_dir / 'munged.pid'}", f"--log-file={munge_dir / 'munged.log'}",
             f"--seed-file={munge_dir / 'munged.seed'}", f"--key-file={MUNGE_KEY}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        _wait_until(munge_socket.exists, 10, "munged did not make its socket", munge_dir / "munged.log")
        daemons.append(subprocess.Popen(["/usr/sbin/slurmctld", "-D", "-i", "-f", str(config)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        daemons.append(subprocess.Popen(["/usr/sbin/slurmd", "-D", "-f", str(config)], env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))

        def node_is_up() -> bool:
            state = subprocess.run(["sinfo", "--noheader", "--format=%t"], env=env, capture_output=True,
                                   text=True, timeout=10).stdout.strip()
            return state in ("idle", "mix", "alloc")

        _wait_until(node_is_up, 60, "the Slurm node did not come up", directory / "slurmctld.log")
        yield {"SLURM_CONF": str(config)}
    finally:
        if len(daemons) == len(DAEMONS):
            subprocess.run(["scancel", "--full", f"--user={os.geteuid()}"], env=env, capture_output=True, timeout=20)
            with contextlib.suppress(TimeoutError):
                _wait_until(lambda: not subprocess.run(["squeue", "--noheader"], env=env, capture_output=True,
                                                       text=True, timeout=10).stdout.strip(),
                            10, "jobs did not end")
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                daemon.kill()
                daemon.wait(5)
        for pid in _processes_of(config):  # slurmstepd and job tasks outlive slurmd
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _processes_of(config: Path) -> list[int]:
    """Processes started by this Slurm: daemons pass ``SLURM_CONF`` on to job steps and their tasks."""
    marker = f"SLURM_CONF={config}".encode()
    pids = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError):
            if marker in environ.read_bytes().split(b"\0") and int(environ.parent.name) != os.getpid():
                pids.append(int(environ.parent.name))
    return pids
