"""``python -m pxmagic.hub -n 4 [--engines local|mpi|ssh|slurm|external] [--profile NAME] [--cluster-id ID]
[--ip IP [--curve]] [--store sqlite]``."""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys

from .. import connection, encryption
from ..dashboard import NEEDS_BOKEH
from ..protocol import ENGINE_KINDS
from .archive import ArchiveError
from .engines import KERNEL_NAME, EngineStartError
from .heartbeat import DEFAULT_MISSES, DEFAULT_PERIOD
from .hub import Hub
from .launchers import Launcher
from .store import options_from_arguments, store_arguments


def make_launcher(args: argparse.Namespace) -> Launcher:
    """The launcher ``--engines`` names, configured from the command line."""
    if args.engines == "local":
        from .launchers.local import LocalLauncher

        return LocalLauncher(args.kernel_name)
    if args.engines == "mpi":
        from .launchers.mpi import MpiLauncher

        return MpiLauncher(args.mpiexec, args.mpi_args, args.mpi_interrupt_timeout)
    if args.engines == "ssh":
        from .launchers.ssh import SshLauncher

        return SshLauncher(args.hosts, args.ssh, args.ssh_options, args.engine_python)
    if args.engines == "slurm":
        from .launchers.slurm import SlurmLauncher

        return SlurmLauncher(args.sbatch_args, args.engine_python)
    return Launcher()


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Options that choose and tune where engines come from; pxcluster passes them on."""
    parser.add_argument("--engines", choices=ENGINE_KINDS, default="local",
                        help="local: kernels on this host; mpi: the ranks of one mpiexec job; "
                             "ssh: over ssh on --hosts (implies --curve); slurm: the tasks of one sbatch job; "
                             "external: wait for engines started by hand with "
                             "`python -m pxmagic.engine --register <pxmagic-engine.json>`")
    parser.add_argument("--heartbeat-period", type=float, default=DEFAULT_PERIOD,
                        help="seconds between heartbeats to registered engines; one that misses "
                             f"{DEFAULT_MISSES} in a row is dead (default: {DEFAULT_PERIOD:g})")
    parser.add_argument("--mpiexec", default="mpiexec", help="the MPI launcher to run (default: mpiexec)")
    parser.add_argument("--mpi-args", default="", help="extra arguments for mpiexec, as one string")
    parser.add_argument("--mpi-interrupt-timeout", type=float, default=10.0,
                        help="seconds interrupted MPI engines get to finish before the whole job is stopped "
                             "(default: 10)")
    parser.add_argument("--hosts", default="", help="ssh: where engines run, HOST[:ENGINES],... "
                                                    "(for example node1:2,user@node2:2)")
    parser.add_argument("--ssh", default="ssh", help="ssh: the ssh client to run (default: ssh)")
    parser.add_argument("--ssh-options", default="",
                        help="ssh: extra options for ssh, as one string (for example '-F ~/.ssh/cluster.conf')")
    parser.add_argument("--engine-python", default=None,
                        help="ssh, slurm: the Python, with pxmagic installed, that runs engines on the other "
                             "hosts (default: this hub's own, the same path there)")
    parser.add_argument("--sbatch-args", default="", help="slurm: extra arguments for sbatch, as one string")


def add_curve_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve", action=argparse.BooleanOptionalAction, default=None,
                        help="encrypt client and engine traffic with CurveZMQ (default: when --ip is not "
                             "loopback, or engines come over ssh; --no-curve opts out)")


def add_dashboard_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dashboard", type=int, nargs="?", const=0, default=None, metavar="PORT",
                        help="serve the live dashboard on --ip, at PORT (default: a free one); "
                             "needs pip install 'pxmagic[dashboard]'")


def check_engine_options(args: argparse.Namespace, default_n: int) -> str | None:
    """Settle ``args.n`` and ``args.curve`` for the chosen engines; say what is wrong, if anything.

    A hub that listens beyond loopback encrypts with CurveZMQ unless told
    ``--no-curve``; ssh engines talk to the hub across a network, so they
    imply it too.  Their number comes from ``--hosts``, and an ``-n`` given
    too must agree.
    """
    if args.curve is None:
        args.curve = args.engines == "ssh" or not encryption.is_loopback(args.ip)
    if args.engines != "ssh":
        if args.hosts:
            return "--hosts is for --engines ssh"
        args.n = default_n if args.n is None else args.n
        return None
    from .launchers.ssh import engine_count

    try:
        count = engine_count(args.hosts)
    except ValueError as error:
        return str(error)
    if args.n is not None and args.n != count:
        return f"-n {args.n} does not match --hosts {args.hosts!r}, which asks for {count} engines"
    args.n = count
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxmagic.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=None,
                        help="number of engines to start or wait for (default: 2, or as many as --hosts names)")
    parser.add_argument("--profile", default="default", help="IPython profile (default: default)")
    parser.add_argument("--cluster-id", default="", help="name that tells clusters of one profile apart")
    parser.add_argument("--ip", default="127.0.0.1", help="interface the hub binds (default: 127.0.0.1)")
    add_curve_option(parser)
    parser.add_argument("--restart-engines", action="store_true",
                        help="replace a local engine that dies by a fresh one with the same id")
    parser.add_argument("--kernel-name", default=KERNEL_NAME, help="kernelspec that starts local engines")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds for engines to start")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the one that started the hub) exits")
    parser.add_argument("--log-level", default="INFO")
    add_dashboard_option(parser)
    add_engine_options(parser)
    store_arguments(parser)
    args = parser.parse_args(argv)
    problem = check_engine_options(args, default_n=2)
    if problem:
        parser.error(problem)
    if args.n < 1:
        parser.error("-n must be at least 1")
    if args.heartbeat_period <= 0:
        parser.error("--heartbeat-period must be positive")
    if args.dashboard is not None and not 0 <= args.dashboard <= 65535:
        parser.error(f"--dashboard takes a port number from 0 to 65535, not {args.dashboard}")
    if args.dashboard is not None and importlib.util.find_spec("bokeh") is None:
        parser.error(NEEDS_BOKEH)
    try:
        store = options_from_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    log = logging.getLogger("pxmagic.hub")
    lock = connection.hold_cluster_lock(args.profile, args.cluster_id)
    if lock is None:
        holder = connection.lock_holder(args.profile, args.cluster_id)
        log.error("%s", connection.cluster_running(args.profile, args.cluster_id, holder))
        return connection.CLUSTER_RUNNING
    for path in connection.remove_dead_hub_files(args.profile, args.cluster_id):
        log.info("removed %s, left by a hub that no longer runs", path.name)
    try:
        hub = Hub(args.n, args.profile, args.cluster_id, args.ip, args.kernel_name, args.start_timeout,
                  args.parent_pid, args.curve, args.restart_engines, store, make_launcher(args),
                  args.heartbeat_period, args.dashboard)
        asyncio.run(hub.run())
    except (EngineStartError, ArchiveError) as error:
        log.error("%s", error)
        return 1
    finally:
        connection.release_cluster_lock(lock, args.profile, args.cluster_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
