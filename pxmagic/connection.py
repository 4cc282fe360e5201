"""Where a cluster's connection files live, and reading and writing them.

A cluster is named by an IPython profile and an optional cluster id.  Its hub
writes ``$IPYTHONDIR/profile_<profile>/security/pxmagic-client[-<id>].json``
(mode 0600) once every engine is ready, and removes it when it stops; the
file's existence is what tells a client or ``pxcluster`` that it is running.
"""
from __future__ import annotations

import json
import os
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


#: longest IPC socket path (the kernel's limit is ~107 bytes, with a suffix to come)
MAX_IPC_PREFIX = 90


def hub_ipc_prefix(profile: str) -> str | None:
    """Where a hub puts IPC sockets for clients on its host, or None if the path is too long."""
    prefix = str(security_dir(profile) / f"pxmagic-hub-{os.getpid()}")
    return prefix if len(prefix) <= MAX_IPC_PREFIX else None


def hub_addresses(info: dict) -> tuple[str, str]:
    """The ZMQ addresses of a hub's request and output sockets, for a client.

    A client on the hub's own host uses the hub's IPC sockets: Unix sockets
    move large buffers ~40% faster than loopback TCP here.  Elsewhere (or if
    the socket file is not there) it uses TCP.
    """
    prefix = info.get("local_ipc")
    if prefix and info.get("hostname") == gethostname() and os.path.exists(f"{prefix}-requests"):
        return f"ipc://{prefix}-requests", f"ipc://{prefix}-iopub"
    return hub_url(info, "request_port"), hub_url(info, "iopub_port")


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
