"""Starting a hub (with its engines) as a background process, and stopping it.

Shared by ``pxcluster`` and :class:`pxmagic.Cluster`.  A start returns only
when the hub has written its connection file, which it does once every
engine is ready, so a ``Client()`` right after it finds all engines.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import connection, encryption
from ..hub.options import StoreOptions, hub_arguments


class ClusterError(RuntimeError):
    """A cluster could not be started or stopped."""


def _read_info(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start_hub(
    n: int,
    profile: str = "default",
    cluster_id: str = "",
    ip: str = "127.0.0.1",
    kernel_name: str | None = None,
    timeout: float = 90.0,
    tied_to_caller: bool = False,
    curve: bool | None = None,
    restart_engines: bool = False,
    store: StoreOptions | None = None,
    hub_options: Sequence[str] = (),
) -> subprocess.Popen:
    """Start a hub and ``n`` engines in the background; return once all are ready.

    ``tied_to_caller`` makes the hub stop when the calling process exits,
    however it exits.  ``curve`` encrypts client traffic with CurveZMQ; by
    default a hub bound beyond loopback does, and one told not to warns.  ``restart_engines``
    replaces an engine that dies by a fresh one with the same id.  ``store``
    says how the hub keeps results.  ``hub_options`` are more of the hub's
    command-line options, such as those that say where engines come from
    (:func:`pxmagic.hub.options.engine_options`).
    """
    if curve is None:
        curve = not encryption.is_loopback(ip)
    warning = encryption.exposure_warning(ip, curve)
    if warning:
        warnings.warn(warning, UserWarning, stacklevel=2)
    path = connection.client_file(profile, cluster_id)
    info = _read_info(path)
    if info and connection.pid_alive(int(info.get("hub_pid", -1))):
        raise ClusterError(connection.cluster_running(profile, cluster_id, info["hub_pid"]))
    log_path = connection.hub_log(profile, cluster_id)
    command = [sys.executable, "-m", "pxmagic.hub",
               *hub_arguments(n, profile, cluster_id, ip, timeout, curve, kernel_name, restart_engines, store,
                              os.getpid() if tied_to_caller else None, hub_options)]
    # glibc >= 2.35 backs large malloc'd blocks (every big ZMQ frame) with transparent huge pages:
    # far fewer page faults per received array; other libcs and older glibcs ignore it
    env = {**os.environ, "GLIBC_TUNABLES": os.environ.get("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")}
    with open(log_path, "ab") as log:
        hub = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True, env=env)
    deadline = time.monotonic() + timeout + 10
    while True:
        info = _read_info(path)
        if info and info.get("hub_pid") == hub.pid:
            return hub
        if hub.poll() == connection.CLUSTER_RUNNING:
            raise ClusterError(connection.cluster_running(profile, cluster_id,
                                                          connection.lock_holder(profile, cluster_id)))
        if hub.poll() is not None:
            raise ClusterError(f"the hub exited with status {hub.returncode}; its log "
                               f"({log_path}) ends with:\n{_log_tail(log_path)}")
        if time.monotonic() > deadline:
            hub.kill()
            raise ClusterError(f"the cluster was not ready after {timeout:.0f} s; see {log_path}")
        time.sleep(0.02)


#: seconds a hub that did not answer the shutdown request gets to stop on SIGTERM
UNANSWERED_STOP_TIMEOUT = 5.0


def stop_hub(profile: str = "default", cluster_id: str = "", timeout: float = 30.0,
             say: Callable[[str], None] = lambda message: None) -> bool:
    """Stop the cluster's hub and engines; False if none was running.

    A hub that is stopped (SIGSTOP, Ctrl-Z) cannot stop its engines, and one
    that does not answer may never: both are killed with their local engines,
    and ``say`` is told so.  Whatever a killed hub leaves in ``security/``
    is removed.
    """
    from ..client import Client

    path = connection.client_file(profile, cluster_id)
    info = _read_info(path) or {}
    pid = int(info.get("hub_pid") or connection.lock_holder(profile, cluster_id) or -1)
    running = connection.pid_alive(pid)
    if running:
        engines = _local_engine_pids(pid)
        if _is_stopped(pid):
            say(f"the hub (pid {pid}) is stopped (SIGSTOP or Ctrl-Z); killing it and {len(engines)} local engines")
            _kill(pid, engines)
        else:
            try:
                with Client(path, timeout=5) as client:
                    client.shutdown()
            except Exception as error:
                say(f"the hub (pid {pid}) did not take the shutdown request ({error}); sending it SIGTERM")
                os.kill(pid, signal.SIGTERM)
                timeout = min(timeout, UNANSWERED_STOP_TIMEOUT)  # a hub that cannot answer may never stop
            if not _wait_exit(pid, timeout):
                say(f"the hub (pid {pid}) did not exit within {timeout:g} s; killing it and "
                    f"{len(engines)} local engines")
                _kill(pid, engines)
    _remove_leftovers(profile, cluster_id)
    return running


def _local_engine_pids(hub_pid: int) -> list[int]:
    """Pids of the kernels this hub started on this host (their command lines name its pid)."""
    marker = f"pxmagic-kernel-{hub_pid}-".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def _is_stopped(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("T", "t")


def _kill(hub_pid: int, engines: list[int]) -> None:
    for pid in engines:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(hub_pid, signal.SIGKILL)
    _wait_exit(hub_pid, 5)


def _remove_leftovers(profile: str, cluster_id: str) -> None:
    """Remove a dead hub's files, unless a new hub of the cluster holds its lock already."""
    lock = connection.hold_cluster_lock(profile, cluster_id)
    if lock is not None:
        connection.remove_dead_hub_files(profile, cluster_id)
        connection.release_cluster_lock(lock, profile, cluster_id)


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(pid, os.WNOHANG)
            if finished:
                return True
        except ChildProcessError:
            if not connection.pid_alive(pid):
                return True
        time.sleep(0.02)
    return False
