"""Where clients reach the hub: its request and output sockets, and the bulk stream beside them.

A hub on loopback serves only clients of its host, so it listens on IPC
sockets in the profile's 0700 ``security/`` directory: a TCP port on
127.0.0.1 would let anyone on the host subscribe to every engine's output.
Beyond loopback it listens on TCP (encrypted unless told not to), and on IPC
as well for the clients of its own host.  The bulk stream (``.bulk``) follows
the same rule, and a hub under CURVE opens none.
"""
from __future__ import annotations

import logging
from pathlib import Path

import zmq

from .. import connection, encryption
from .bulk import BulkLinks

log = logging.getLogger("pxmagic.hub")

_IPC_SUFFIXES = ("-requests", "-iopub")


def bind(requests: zmq.Socket, publisher: zmq.Socket, bulk: BulkLinks | None, profile: str,
         ip: str) -> tuple[dict, str | None]:
    """Bind the sockets clients use; return where they are, as the connection file says it, and the prefix
    of the IPC socket paths (None: TCP only)."""
    prefix = connection.hub_ipc_prefix(profile)
    if prefix:
        requests.bind(f"ipc://{prefix}{_IPC_SUFFIXES[0]}")
        publisher.bind(f"ipc://{prefix}{_IPC_SUFFIXES[1]}")
        if encryption.is_loopback(ip):
            entries = bulk.listen(prefix, None) if bulk else {}
            return {"transport": "ipc", "ip": prefix, "request_port": "requests", "iopub_port": "iopub",
                    "local_ipc": None, **entries}, prefix
    else:
        log.warning("the profile's directory is too deep for IPC socket paths; clients use TCP on %s", ip)
    entries = bulk.listen(prefix, ip) if bulk else {}
    return {"transport": "tcp", "ip": ip, "local_ipc": prefix,
            "request_port": requests.bind_to_random_port(f"tcp://{ip}"),
            "iopub_port": publisher.bind_to_random_port(f"tcp://{ip}"), **entries}, prefix


def unlink(prefix: str | None) -> None:
    """Remove the IPC socket files (the bulk stream's goes with it, ``BulkLinks.close``)."""
    if prefix:
        for suffix in _IPC_SUFFIXES:
            Path(prefix + suffix).unlink(missing_ok=True)
