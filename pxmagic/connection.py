"""Where a cluster's connection files live, and reading and writing them.

A cluster is named by an IPython profile and an optional cluster id.  Its hub
writes ``$IPYTHONDIR/profile_<profile>/security/pxmagic-client[-<id>].json``
(mode 0600) once every engine is ready, and removes it when it stops; the
file's existence is what tells a client or ``pxcluster`` that it is running.
"""
from __future__ import annotations

import fcntl
import json
import os
import re
from pathlib import Path
from socket import gethostname

from .error import ConnectionFileError
from .protocol import ENGINE_FILE_PREFIX, ProtocolError, check_connection_info, hub_url

CLIENT_FILE_PREFIX = "pxmagic-client"


def ipython_dir() -> Path:
    """IPython's directory: ``$IPYTHONDIR`` or ``~/.ipython``."""
    from IPython.paths import get_ipython_dir

    return Path(get_ipython_dir())


def profile_dir(profile: str) -> Path:
    return ipython_dir() / f"profile_{profile}"


def security_dir(profile: str) -> Path:
    path = profile_dir(profile) / "security"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def log_dir(profile: str) -> Path:
    path = profile_dir(profile) / "log"
    path.mkdir(parents=True, exist_ok=True)
    return path


def hub_log(profile: str = "default", cluster_id: str = "") -> Path:
    """Path of the log of the hub of cluster ``profile``/``cluster_id`` (its engines log there too)."""
    return log_dir(profile) / f"pxmagic-hub{'-' + cluster_id if cluster_id else ''}.log"


def client_file(profile: str = "default", cluster_id: str = "") -> Path:
    """Path of the connection file of the cluster ``profile``/``cluster_id``."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return security_dir(profile) / f"{CLIENT_FILE_PREFIX}{suffix}.json"


def engine_file(profile: str = "default", cluster_id: str = "") -> Path:
    """Path of the file that tells engines started outside the hub how to register."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return security_dir(profile) / f"{ENGINE_FILE_PREFIX}{suffix}.json"


def results_file(profile: str = "default", cluster_id: str = "") -> Path:
    """Path of the SQLite file in which the hub of ``--store sqlite`` keeps results."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return profile_dir(profile) / "pxmagic" / f"results{suffix}.sqlite"


#: the hub's exit status when another hub already holds its cluster's lock
CLUSTER_RUNNING = 3


def lock_file(profile: str = "default", cluster_id: str = "") -> Path:
    """Path of the file whose lock the one hub of ``profile``/``cluster_id`` holds while it runs."""
    suffix = f"-{cluster_id}" if cluster_id else ""
    return security_dir(profile) / f"pxmagic-hub{suffix}.lock"


def hold_cluster_lock(profile: str = "default", cluster_id: str = "") -> int | None:
    """Take the cluster's lock for this process and write its pid in it; None if another holds it.

    The lock, not the connection file, is what makes one hub per cluster:
    two starts at once both see no connection file, but only one gets the
    lock.  The kernel drops it when its holder exits, however it exits.  A
    lock taken on a file that a finishing hub unlinked in between is worth
    nothing, so the inode is checked and the take retried.
    """
    path = lock_file(profile, cluster_id)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


def release_cluster_lock(fd: int, profile: str = "default", cluster_id: str = "") -> None:
    """Remove the lock file, then let go of the lock (in that order: see :func:`hold_cluster_lock`)."""
    lock_file(profile, cluster_id).unlink(missing_ok=True)
    os.close(fd)


def lock_holder(profile: str = "default", cluster_id: str = "") -> int | None:
    """The pid written in the cluster's lock file, if one is there and it can be read."""
    try:
        return int(lock_file(profile, cluster_id).read_text())
    except (OSError, ValueError):
        return None


def cluster_running(profile: str, cluster_id: str, pid: int | None) -> str:
    """What to tell someone who starts a cluster that is already running."""
    named = f"profile {profile!r}" + (f" and cluster id {cluster_id!r}" if cluster_id else "")
    held = f" (hub pid {pid})" if pid else ""
    return f"a cluster is already running for {named}{held}; stop it with `pxcluster stop` first"


#: names of the files a hub and its local engines leave in ``security/`` (with the hub's pid)
_HUB_FILE = re.compile(r"pxmagic-(?:hub|kernel)-(\d+)-")


def remove_dead_hub_files(profile: str, cluster_id: str) -> list[Path]:
    """Remove what hubs that no longer run left in the profile's ``security/``; return what went.

    Only the holder of the cluster's lock calls this, so the cluster's own
    connection files are a dead hub's.  A hub killed with SIGKILL cannot
    remove its IPC sockets and its engines' connection files either; they
    carry its pid, which tells them from those of other clusters' hubs.
    """
    removed = [path for path in (client_file(profile, cluster_id), engine_file(profile, cluster_id))
               if path.exists()]
    for path in security_dir(profile).iterdir():
        found = _HUB_FILE.match(path.name)
        if found and not pid_alive(int(found.group(1))):
            removed.append(path)
    for path in removed:
        path.unlink(missing_ok=True)
    return removed


def write_secret_json(path: Path, data: dict) -> None:
    """Write ``data`` to ``path`` readable by its owner only, replacing it atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        json.dump(data, stream, indent=1)
    os.replace(tmp, path)


def read_client_file(path: Path) -> dict:
    """The connection info in ``path``, with an error that says how to fix a missing file."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConnectionFileError(
            f"no pxmagic cluster connection file at {path}. Start a cluster first, "
            "for example with `pxcluster start -n 4 --daemonize`, or pass the path "
            "of its pxmagic-client.json to Client()."
        ) from None
    try:
        return check_connection_info(json.loads(text), str(path))
    except json.JSONDecodeError as error:
        raise ProtocolError(f"{path} is not valid JSON: {error}") from None


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running_clusters() -> list[tuple[Path, dict]]:
    """Connection files of every cluster whose hub process is alive."""
    found = []
    for path in sorted(ipython_dir().glob(f"profile_*/security/{CLIENT_FILE_PREFIX}*.json")):
        try:
            info = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and pid_alive(int(info.get("hub_pid", -1))):
            found.append((path, info))
    return found


def find_client_file(profile: str = "default", cluster_id: str | None = None) -> Path:
    """The connection file a ``Client(profile=..., cluster_id=...)`` means.

    With no ``cluster_id``, the cluster without one if it runs, else the one
    running cluster of ``profile`` (``Cluster()`` gives each cluster an id);
    several of them are an error that names them.
    """
    if cluster_id is not None:
        return client_file(profile, cluster_id)
    default = client_file(profile)
    if default.exists():
        return default
    running = [(path, info) for path, info in running_clusters() if path.parent == security_dir(profile)]
    if len(running) == 1:
        return running[0][0]
    if len(running) > 1:
        ids = ", ".join(repr(info.get("cluster_id", "")) for _, info in running)
        raise ConnectionFileError(f"{len(running)} pxmagic clusters of profile {profile!r} are running "
                                  f"(cluster ids {ids}): say which with Client(cluster_id=...)")
    return default


#: longest IPC socket path (the kernel's limit is ~107 bytes, with a suffix to come)
MAX_IPC_PREFIX = 90


def hub_ipc_prefix(profile: str) -> str | None:
    """Where a hub puts IPC sockets for clients on its host, or None if the path is too long."""
    prefix = str(security_dir(profile) / f"pxmagic-hub-{os.getpid()}")
    return prefix if len(prefix) <= MAX_IPC_PREFIX else None


def hub_addresses(info: dict) -> tuple[str, str]:
    """The ZMQ addresses of a hub's request and output sockets, for a client.

    A client on the hub's own host uses the hub's IPC sockets: Unix sockets
    move large buffers faster than loopback TCP (``benchmarks/data.py``).  Elsewhere (or if
    the socket file is not there) it uses TCP.
    """
    prefix = info.get("local_ipc")
    if prefix and _here(info, f"{prefix}-requests"):
        return f"ipc://{prefix}-requests", f"ipc://{prefix}-iopub"
    return hub_url(info, "request_port"), hub_url(info, "iopub_port")


def bulk_address(info: dict) -> str | tuple[str, int] | None:
    """Where a client reaches its hub's bulk stream (``pxmagic.hub.bulk``): a Unix path, (host, port), or None."""
    path = info.get("bulk_path")
    if path and _here(info, path):
        return path
    if info.get("bulk_port") and info.get("transport") == "tcp":
        return info["ip"], info["bulk_port"]
    return None


def _here(info: dict, path: str) -> bool:
    """Whether the hub's socket file ``path`` is one this process can reach: the hub runs on this host."""
    return info.get("hostname") == gethostname() and os.path.exists(path)


#: a profile's defaults for ``pxcluster start``
CLUSTER_CONFIG = "pxcluster.json"


def cluster_config(profile: str) -> dict:
    """``pxcluster start`` defaults from ``profile_<profile>/pxcluster.json`` ({} if there is none).

    Keys are the options' names without dashes (``n``, ``engines``,
    ``mpi_args``...), so a profile can remember how its cluster starts.
    """
    path = profile_dir(profile) / CLUSTER_CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except ValueError as error:
        raise ConnectionFileError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ConnectionFileError(f"{path} must hold a JSON object of pxcluster start options")
    return {key.lstrip("-").replace("-", "_"): value for key, value in config.items()}
