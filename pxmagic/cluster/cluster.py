"""Cluster: start and stop a hub with its engines from Python."""
from __future__ import annotations

import atexit
import importlib.util
import secrets
import subprocess
from pathlib import Path
from typing import Any

from .. import connection
from ..dashboard import NEEDS_BOKEH
from ..hub.options import DEFAULT_MAX_BYTES, DEFAULT_MAX_RESULTS, MB, StoreOptions, engine_options, settle_engines
from ..protocol import ENGINE_KINDS
from .launcher import start_hub, stop_hub


class Cluster:
    """A cluster of ``n`` engines: local kernels, the ranks of an mpiexec job (``engines="mpi"``),
    kernels on other hosts over ssh (``engines="ssh", hosts="node1:2,node2:2", ip=...``) or the tasks
    of a Slurm job (``engines="slurm"``).

    ``with Cluster(n=4) as rc:`` starts it, hands over a connected Client and
    stops everything on exit.  Each Cluster gets its own ``cluster_id``, so it
    never disturbs a cluster started by ``pxcluster`` on the same profile.
    With ``shutdown_atexit`` (the default) the cluster lives no longer than
    the Python process that started it, even if that process is killed.

    ``engines``, and the ``engine_settings`` (``heartbeat_period``,
    ``mpiexec``, ``mpi_args``, ``mpi_interrupt_timeout``, ``hosts``, ``ssh``,
    ``ssh_options``, ``engine_python``, ``sbatch_args``), are the options of
    ``pxcluster start`` of the same names.  ``n`` defaults to 4, or to as
    many engines as ``hosts`` names.  ``curve`` (CurveZMQ encryption) is on
    when ``ip`` is not loopback or engines come over ssh, unless ``False``.

    ``dashboard=True`` (or a port) has the hub serve a live page of the
    cluster (``pxmagic[dashboard]``); ``rc.dashboard_link`` gives its URL.

    ``store="sqlite"`` keeps every result on disk as well as in the hub's
    memory, where at most ``max_results`` results and ``max_results_mb`` MB
    are kept (``python -m pxmagic.hub --help`` says more).
    """

    def __init__(
        self,
        n: int | None = None,
        profile: str = "default",
        cluster_id: str | None = None,
        ip: str = "127.0.0.1",
        kernel_name: str | None = None,
        timeout: float = 90.0,
        shutdown_atexit: bool = True,
        curve: bool | None = None,
        restart_engines: bool = False,
        store: str = "memory",
        max_results: int = DEFAULT_MAX_RESULTS,
        max_results_mb: float = DEFAULT_MAX_BYTES / MB,
        engines: str = "local",
        dashboard: bool | int = False,
        **engine_settings: str | float | None,
    ):
        if engines not in ENGINE_KINDS:
            raise ValueError(f"engines must be one of {', '.join(ENGINE_KINDS)}, not {engines!r}")
        self._hub_options = engine_options(engines, **engine_settings)
        if dashboard is not False:
            port = 0 if dashboard is True else dashboard
            if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"dashboard is True, False or a port number, not {dashboard!r}")
            if importlib.util.find_spec("bokeh") is None:
                raise ImportError(NEEDS_BOKEH)
            self._hub_options += ["--dashboard", str(port)]
        n, curve = settle_engines(engines, engine_settings.get("hosts") or "", n, curve, ip, default_n=4)
        if n < 1:
            raise ValueError(f"a cluster needs at least one engine, not n={n}")
        self.store = StoreOptions(store, max_results, int(max_results_mb * MB))
        self.n = n
        self.profile = profile
        self.cluster_id = secrets.token_hex(4) if cluster_id is None else cluster_id
        self.ip = ip
        self.kernel_name = kernel_name
        self.timeout = timeout
        self.shutdown_atexit = shutdown_atexit
        self.engines = engines
        self.curve = curve
        self.restart_engines = restart_engines
        self._hub: subprocess.Popen | None = None
        self._clients: list[Any] = []
        self._controller: Any = None

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (f"<Cluster n={self.n} engines={self.engines!r} profile={self.profile!r} "
                f"cluster_id={self.cluster_id!r} {state}>")

    @property
    def running(self) -> bool:
        return self._hub is not None and self._hub.poll() is None

    @property
    def log_file(self) -> Path:
        """Where the hub, and the engines it started, write their logs."""
        return connection.hub_log(self.profile, self.cluster_id)

    def start(self) -> None:
        """Start the hub and engines; returns once every engine is ready."""
        if self.running:
            return
        self._hub = start_hub(self.n, self.profile, self.cluster_id, self.ip, self.kernel_name, self.timeout,
                              tied_to_caller=self.shutdown_atexit, curve=self.curve,
                              restart_engines=self.restart_engines, store=self.store,
                              hub_options=self._hub_options)
        if self.shutdown_atexit:
            atexit.register(self.stop)

    def connect_client(self, **kwargs: Any) -> Any:
        """A Client connected to this cluster."""
        from ..client import Client

        client = Client(profile=self.profile, cluster_id=self.cluster_id, **kwargs)
        self._clients.append(client)
        return client

    def start_and_connect_sync(self, activate: bool = False) -> Any:
        """Start the cluster and return a connected Client; ``activate``: ``%px`` targets all its engines."""
        self.start()
        client = self.connect_client()
        if activate:
            client[:].activate()
        return client

    def start_engines(self, n: int) -> list[int]:
        """Add ``n`` engines to the running cluster (local engines only); returns their ids."""
        ids = self._control().start_engines(n, timeout=self.timeout)
        self.n += len(ids)
        return ids

    def stop_engines(self, engine_ids: int | list[int]) -> None:
        """Stop some engines of the running cluster; their ids go to the next :meth:`start_engines`."""
        ids = [engine_ids] if isinstance(engine_ids, int) else list(engine_ids)
        self._control().stop_engines(ids)
        self.n -= len(set(ids))

    def _control(self) -> Any:
        """The client this Cluster asks the hub through (made on first use)."""
        if not self.running:
            raise RuntimeError(f"{self!r} is not running: start() it first")
        if self._controller is None:
            self._controller = self.connect_client()
        return self._controller

    def stop(self) -> None:
        """Stop every engine and the hub, and close the clients made by this Cluster."""
        for client in self._clients:
            client.close()
        self._clients.clear()
        self._controller = None
        if self._hub is not None:
            stop_hub(self.profile, self.cluster_id)
            self._hub.wait()
            self._hub = None
        atexit.unregister(self.stop)

    #: ipyparallel's names, so that code written for it runs
    start_cluster_sync = start
    connect_client_sync = connect_client
    stop_cluster_sync = stop
    start_engines_sync = start_engines
    stop_engines_sync = stop_engines

    def __enter__(self) -> Any:
        return self.start_and_connect_sync()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
