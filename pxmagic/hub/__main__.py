"""``python -m pxmagic.hub -n 4 [--engines local|mpi|ssh|slurm|external] [--profile NAME] [--cluster-id ID]
[--ip IP [--curve]] [--store sqlite]``."""
from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import sys

from .. import connection
from ..dashboard import NEEDS_BOKEH
from .archive import ArchiveError
from .engines import EngineStartError
from .hub import Hub
from .launchers import Launcher
from .options import (KERNEL_NAME, add_curve_option, add_dashboard_option, add_engine_options, add_store_options,
                      settle_engines, store_options)


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
    add_store_options(parser)
    args = parser.parse_args(argv)
    try:
        args.n, args.curve = settle_engines(args.engines, args.hosts, args.n, args.curve, args.ip, default_n=2)
    except ValueError as error:
        parser.error(str(error))
    if args.n < 1:
        parser.error("-n must be at least 1")
    if args.heartbeat_period <= 0:
        parser.error("--heartbeat-period must be positive")
    if args.dashboard is not None and not 0 <= args.dashboard <= 65535:
        parser.error(f"--dashboard takes a port number from 0 to 65535, not {args.dashboard}")
    if args.dashboard is not None and importlib.util.find_spec("bokeh") is None:
        parser.error(NEEDS_BOKEH)
    try:
        store = store_options(args)
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
