"""``pxcluster``: start, stop and list pxmagic clusters."""
from __future__ import annotations

import argparse
import sys
import time

from .. import connection
from ..error import PxError
from ..hub.options import (ENGINE_SETTINGS, add_curve_option, add_dashboard_option, add_engine_options,
                           add_store_options, engine_options, hub_arguments, settle_engines, store_options)
from .launcher import ClusterError, start_hub, stop_hub


def _start(args: argparse.Namespace) -> int:
    try:
        args.n, args.curve = settle_engines(args.engines, args.hosts, args.n, args.curve, args.ip, default_n=4)
        if args.n < 1:
            raise ValueError("-n must be at least 1")
        store = store_options(args)
    except ValueError as error:
        print(f"pxcluster: {error}", file=sys.stderr)
        return 2
    options = engine_options(args.engines, **{name: getattr(args, name) for name in ENGINE_SETTINGS})
    if args.dashboard is not None:
        options += ["--dashboard", str(args.dashboard)]
    if args.daemonize:
        hub = start_hub(args.n, args.profile, args.cluster_id, args.ip, args.kernel_name, args.timeout,
                        curve=args.curve, restart_engines=args.restart_engines, store=store, hub_options=options)
        path = connection.client_file(args.profile, args.cluster_id)
        print(f"cluster started: {args.n} engines ready ({args.engines}), hub pid {hub.pid}, "
              f"connection file {path}")
        dashboard = connection.read_client_file(path).get("dashboard_url")
        if dashboard:
            print(f"dashboard: {dashboard}")
        return 0
    from ..hub.__main__ import main as hub_main

    return hub_main(hub_arguments(args.n, args.profile, args.cluster_id, args.ip, args.timeout, args.curve,
                                  args.kernel_name, args.restart_engines, store, more=options))


def _stop(args: argparse.Namespace) -> int:
    if stop_hub(args.profile, args.cluster_id, say=lambda message: print(f"pxcluster: {message}", file=sys.stderr)):
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


def _status(args: argparse.Namespace) -> int:
    """Print the engines table once, or with ``--watch`` every ``--interval`` seconds until Ctrl-C."""
    from ..client import Client

    with Client(profile=args.profile, cluster_id=args.cluster_id or None) as client:
        try:
            while True:
                table = str(client.status())
                if args.watch and sys.stdout.isatty():
                    print("\033[2J\033[H", end="")  # clear the screen, as watch(1) does
                print(table, flush=True)
                if not args.watch:
                    return 0
                time.sleep(args.interval)
                if not sys.stdout.isatty():
                    print()
        except KeyboardInterrupt:
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


def parser(start_defaults: dict | None = None) -> argparse.ArgumentParser:
    """pxcluster's parser; ``start_defaults`` (a profile's pxcluster.json) replace start's own defaults."""
    main_parser = argparse.ArgumentParser(prog="pxcluster", description="Start, stop and list pxmagic clusters.")
    commands = main_parser.add_subparsers(dest="command", required=True)

    def with_cluster_options(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument("--profile", default="default", help="IPython profile (default: default)")
        sub.add_argument("--cluster-id", default="", help="tells clusters of one profile apart")
        return sub

    start = with_cluster_options(commands.add_parser("start", help="start a hub and its engines",
                                                         formatter_class=argparse.RawDescriptionHelpFormatter))
    start.add_argument("-n", type=int, default=None,
                       help="number of engines (default: 4, or as many as --hosts names)")
    start.add_argument("--daemonize", action="store_true",
                       help="run in the background; return once every engine is ready")
    start.add_argument("--ip", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    add_curve_option(start)
    start.add_argument("--restart-engines", action="store_true",
                       help="replace an engine that dies by a fresh one with the same id")
    start.add_argument("--kernelspec", "--kernel-name", dest="kernel_name", default=None,
                       help="kernelspec that starts engines (default: pxmagic-engine); its "
                            "kernel provisioner, if it names one, launches them")
    start.add_argument("--timeout", type=float, default=90.0, help="seconds to wait for the engines")
    add_engine_options(start)
    add_dashboard_option(start)
    # only what the user sets is passed on: the hub knows its own defaults
    start.set_defaults(**{name: None for name in ENGINE_SETTINGS if name != "hosts"})
    add_store_options(start)
    if start_defaults:
        known = {action.dest for action in start._actions} - {"help", "profile", "cluster_id"}
        unknown = sorted(set(start_defaults) - known)
        if unknown:
            raise ClusterError(f"{connection.CLUSTER_CONFIG} names unknown options {', '.join(unknown)}; "
                               f"known: {', '.join(sorted(known))}")
        start.set_defaults(**start_defaults)
    start.set_defaults(run=_start)
    stop = with_cluster_options(commands.add_parser("stop", help="stop a cluster's hub and engines"))
    stop.set_defaults(run=_stop)
    restart = with_cluster_options(commands.add_parser("restart-engine", help="replace an engine by a fresh one"))
    restart.add_argument("engine_id", type=int, help="the id of the engine to restart")
    restart.set_defaults(run=_restart_engine)
    status = with_cluster_options(commands.add_parser("status", help="show each engine's state and work"))
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default: 2)")
    status.set_defaults(run=_status)
    commands.add_parser("list", help="list running clusters").set_defaults(run=_list)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "start":
            # the profile's pxcluster.json supplies what the command line leaves out
            args = parser(connection.cluster_config(args.profile)).parse_args(argv)
        return args.run(args)
    except (ClusterError, PxError) as error:
        print(f"pxcluster: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
