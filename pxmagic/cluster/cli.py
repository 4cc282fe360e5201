"""``pxcluster``: start, stop and list pxmagic clusters."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .. import connection
from ..error import PxError
from ..hub.archive import ArchiveError
from ..hub.store import options_from_arguments, store_arguments
from .launcher import ClusterError, start_hub, stop_hub


def _start(args: argparse.Namespace) -> int:
    if args.n < 1:
        print("pxcluster: -n must be at least 1", file=sys.stderr)
        return 2
    try:
        store = options_from_arguments(args)
    except ValueError as error:
        print(f"pxcluster: {error}", file=sys.stderr)
        return 2
    if args.daemonize:
        hub = start_hub(args.n, args.profile, args.cluster_id, args.ip, args.kernel_name, args.timeout,
                        curve=args.curve, restart_engines=args.restart_engines, store=store)
        print(f"cluster started: {args.n} engines ready, hub pid {hub.pid}, "
              f"connection file {connection.client_file(args.profile, args.cluster_id)}")
        return 0
    from ..hub.engines import KERNEL_NAME
    from ..hub.hub import Hub

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    hub = Hub(args.n, args.profile, args.cluster_id, args.ip, args.kernel_name or KERNEL_NAME, args.timeout,
              curve=args.curve, restart_engines=args.restart_engines, store=store)
    asyncio.run(hub.run())
    return 0


def _stop(args: argparse.Namespace) -> int:
    if stop_hub(args.profile, args.cluster_id):
        print(f"cluster stopped (profile {args.profile!r})")
        return 0
    print(f"no cluster running for profile {args.profile!r}", file=sys.stderr)
    return 1


def _restart_engine(args: argparse.Namespace) -> int:
    from ..client import Client

    with Client(profile=args.profile, cluster_id=args.cluster_id) as client:
        client.restart_engine(args.engine_id)
    print(f"engine {args.engine_id} restarted")
    return 0


def _list(args: argparse.Namespace) -> int:
    clusters = connection.running_clusters()
    if not clusters:
        print("no clusters running")
        return 0
    print(f"{'profile':<12} {'cluster id':<12} {'engines':>7} {'hub pid':>8}  connection file")
    for path, info in clusters:
        print(f"{info.get('profile', '?'):<12} {info.get('cluster_id') or '-':<12} "
              f"{info.get('engines', '?'):>7} {info.get('hub_pid'):>8}  {path}")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(prog="pxcluster", description="Start, stop and list pxmagic clusters.")
    commands = main_parser.add_subparsers(dest="command", required=True)

    def with_cluster_options(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--profile", default="default", help="IPython profile (default: default)")
        sub.add_argument("--cluster-id", default="", help="tells clusters of one profile apart")
        return sub

    start = with_cluster_options(commands.add_parser("start", help="start a hub and its engines",
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    start.add_argument("-n", type=int, default=4, help="number of engines (default: 4)")
    start.add_argument("--daemonize", action="store_true",
                       help="run in the background; return once every engine is ready")
    start.add_argument("--ip", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    start.add_argument("--curve", action="store_true",
                       help="encrypt client traffic with CurveZMQ (advised when --ip is not loopback)")
    start.add_argument("--restart-engines", action="store_true",
                       help="replace an engine that dies by a fresh one with the same id")
    start.add_argument("--kernelspec", "--kernel-name", dest="kernel_name", default=None,
                       help="kernelspec that starts engines (default: pxmagic-engine); its "
                            "kernel provisioner, if it names one, launches them")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the engines")
    store_arguments(start)
    start.set_defaults(run=_start)
    stop = with_cluster_options(commands.add_parser("stop", help="stop a cluster's hub and engines"))
    stop.set_defaults(run=_stop)
    restart = with_cluster_options(commands.add_parser("restart-engine", help="replace an engine by a fresh one"))
    restart.add_argument("engine_id", type=int, help="the id of the engine to restart")
    restart.set_defaults(run=_restart_engine)
    commands.add_parser("list", help="list running clusters").set_defaults(run=_list)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (ClusterError, PxError, ArchiveError) as error:
        print(f"pxcluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
