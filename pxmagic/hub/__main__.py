"""``python -m pxmagic.hub -n 4 [--profile NAME] [--cluster-id ID] [--ip IP [--curve]] [--store sqlite]``."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from .archive import ArchiveError
from .engines import KERNEL_NAME, EngineStartError
from .hub import Hub
from .store import options_from_arguments, store_arguments


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pxmagic.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", "--engines", type=int, default=2, help="number of engines to start")
    parser.add_argument("--profile", default="default", help="IPython profile (default: default)")
    parser.add_argument("--cluster-id", default="", help="name that tells clusters of one profile apart")
    parser.add_argument("--ip", default="127.0.0.1", help="interface the hub binds (default: 127.0.0.1)")
    parser.add_argument("--curve", action="store_true",
                        help="encrypt client traffic with CurveZMQ (advised when --ip is not loopback)")
    parser.add_argument("--restart-engines", action="store_true",
                        help="replace an engine that dies by a fresh one with the same id")
    parser.add_argument("--kernel-name", default=KERNEL_NAME, help="kernelspec that starts engines")
    parser.add_argument("--start-timeout", type=float, default=60.0, help="seconds for engines to start")
    parser.add_argument("--parent-pid", type=int, default=None,
                        help="stop when this process (the one that started the hub) exits")
    parser.add_argument("--log-level", default="INFO")
    store_arguments(parser)
    args = parser.parse_args(argv)
    if args.engines < 1:
        parser.error("--engines must be at least 1")
    try:
        store = options_from_arguments(args)
    except ValueError as error:
        parser.error(str(error))
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        hub = Hub(args.engines, args.profile, args.cluster_id, args.ip, args.kernel_name, args.start_timeout,
                  args.parent_pid, args.curve, args.restart_engines, store)
        asyncio.run(hub.run())
    except (EngineStartError, ArchiveError) as error:
        logging.getLogger("pxmagic.hub").error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
