"""The hub's options: their command-line form, their checks, and the one hub command line.

``python -m pxmagic.hub``, ``pxcluster start`` and :class:`pxmagic.Cluster`
take the same options; this module is where they are declared, checked and
turned back into a hub command line.  It imports neither ZMQ nor the rest
of the hub, so starting a cluster from a notebook loads no hub code into
the notebook's kernel.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

from .. import encryption
from ..protocol import ENGINE_KINDS

#: the kernelspec that starts local engines
KERNEL_NAME = "pxmagic-engine"
#: seconds between heartbeats to registered engines; one that leaves DEFAULT_MISSES in a row unanswered
#: is dead.  A dead engine is then found 3 to 3.5 s after it died, within the 5 s promised for its work
#: to fail even on a loaded machine, while a stall shorter than 2.5 s (a swap storm, a brief SIGSTOP, a
#: network hiccup) is never taken for death: the work of a frozen engine is not failed lightly.
DEFAULT_PERIOD = 0.5
DEFAULT_MISSES = 6

MB = 2**20
DEFAULT_MAX_RESULTS = 10_000
DEFAULT_MAX_BYTES = 256 * MB
STORES = ("memory", "sqlite")

#: the hub's options that say where engines come from and how they are watched (see pxmagic.hub --help)
ENGINE_SETTINGS = ("heartbeat_period", "mpiexec", "mpi_args", "mpi_interrupt_timeout", "hosts", "ssh",
                   "ssh_options", "engine_python", "sbatch_args")


@dataclass
class StoreOptions:
    """How the hub keeps results: ``kind`` is ``"memory"`` or ``"sqlite"``, plus the memory limits."""

    kind: str = "memory"
    max_results: int = DEFAULT_MAX_RESULTS
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        if self.kind not in STORES:
            raise ValueError(f"unknown result store {self.kind!r}: choose one of {', '.join(STORES)}")
        if self.max_results < 0 or self.max_bytes < 0:
            raise ValueError(f"result store limits cannot be negative: max_results={self.max_results}, "
                             f"max_bytes={self.max_bytes}")

    def arguments(self) -> list[str]:
        """These options as ``python -m pxmagic.hub`` arguments."""
        return ["--store", self.kind, "--max-results", str(self.max_results),
                "--max-results-mb", repr(self.max_bytes / MB)]


STORE_HELP = f"""\
Every result (an engine's reply) is forwarded to the client that asked and
kept in the hub's memory, so a client can fetch it later by msg_id with
rc.get_result(msg_id), even a result of another client or of one that died.
The oldest are culled first once more than --max-results results or
--max-results-mb MB are kept; a result bigger than --max-results-mb on its
own is not kept in memory, and one of 1 MB or more leaves memory once the
client that asked has it.  rc.purge_results() frees them at once.
--store sqlite also writes every result to
$IPYTHONDIR/profile_<profile>/pxmagic/results[-<cluster id>].sqlite,
where it stays, culled from memory or not, until purged.
Defaults: --store memory --max-results {DEFAULT_MAX_RESULTS} --max-results-mb {DEFAULT_MAX_BYTES // MB}."""


def add_store_options(parser: argparse.ArgumentParser) -> None:
    """The result store's options (``python -m pxmagic.hub`` and ``pxcluster start``)."""
    group = parser.add_argument_group("result store", STORE_HELP)
    group.add_argument("--store", choices=STORES, default="memory",
                       help="memory only, or sqlite as well (default: memory)")
    group.add_argument("--max-results", type=int, default=DEFAULT_MAX_RESULTS,
                       help=f"results kept in memory at most (default: {DEFAULT_MAX_RESULTS})")
    group.add_argument("--max-results-mb", type=float, default=DEFAULT_MAX_BYTES / MB,
                       help=f"MB of results kept in memory at most (default: {DEFAULT_MAX_BYTES // MB})")


def store_options(args: argparse.Namespace) -> StoreOptions:
    """The StoreOptions of parsed :func:`add_store_options`; ValueError names a bad one."""
    return StoreOptions(args.store, args.max_results, int(args.max_results_mb * MB))


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


def parse_hosts(spec: str) -> list[tuple[str, int]]:
    """``"host1:2,user@host2:3,host3"`` as ``[(host, engines), ...]``; ValueError names a bad entry."""
    hosts = []
    for entry in (part.strip() for part in spec.split(",")):
        if not entry:
            continue
        host, _, count = entry.rpartition(":") if ":" in entry else (entry, "", "1")
        if not host or not count.isdigit() or int(count) < 1:
            raise ValueError(f"--hosts entry {entry!r} is not HOST or HOST:ENGINES (ENGINES a positive integer)")
        hosts.append((host, int(count)))
    if not hosts:
        raise ValueError("--hosts names no host: give HOST[:ENGINES],... (for example node1:2,node2:2)")
    return hosts


def settle_engines(engines: str, hosts: str, n: int | None, curve: bool | None, ip: str,
                   default_n: int) -> tuple[int, bool]:
    """The number of engines and whether to encrypt, for these options; ValueError says what is wrong.

    A hub that listens beyond loopback encrypts with CurveZMQ unless told
    ``--no-curve``; ssh engines talk to the hub across a network, so they
    imply it too.  Their number comes from ``--hosts``, and an ``-n`` given
    too must agree.
    """
    if curve is None:
        curve = engines == "ssh" or not encryption.is_loopback(ip)
    if engines != "ssh":
        if hosts:
            raise ValueError("--hosts is for --engines ssh")
        return (default_n if n is None else n), curve
    count = sum(engines_on_host for _, engines_on_host in parse_hosts(hosts))
    if n is not None and n != count:
        raise ValueError(f"-n {n} does not match --hosts {hosts!r}, which asks for {count} engines")
    return count, curve


def engine_options(engines: str = "local", **settings: str | float | None) -> list[str]:
    """The hub's command-line options for these engine settings (None: the hub's default).

    ``settings`` are named like the hub's options (``mpi_args`` for ``--mpi-args``).
    """
    unknown = sorted(set(settings) - set(ENGINE_SETTINGS))
    if unknown:
        raise TypeError(f"unknown engine settings {', '.join(unknown)}; known: {', '.join(ENGINE_SETTINGS)}")
    options = [f"--engines={engines}"]
    for name, value in settings.items():
        if value is not None:
            options.append(f"--{name.replace('_', '-')}={value}")  # one word: a value may itself start with "--"
    return options


def hub_arguments(n: int, profile: str, cluster_id: str, ip: str, start_timeout: float, curve: bool,
                  kernel_name: str | None = None, restart_engines: bool = False, store: StoreOptions | None = None,
                  parent_pid: int | None = None, more: Sequence[str] = ()) -> list[str]:
    """The arguments of ``python -m pxmagic.hub`` for these settings (``more``: engine and dashboard options)."""
    arguments = ["-n", str(n), "--profile", profile, "--cluster-id", cluster_id, "--ip", ip,
                 "--start-timeout", str(start_timeout), *more]
    if kernel_name:
        arguments += ["--kernel-name", kernel_name]
    if parent_pid is not None:
        arguments += ["--parent-pid", str(parent_pid)]
    arguments.append("--curve" if curve else "--no-curve")
    if restart_engines:
        arguments.append("--restart-engines")
    if store is not None and store != StoreOptions():
        arguments += store.arguments()
    return arguments
