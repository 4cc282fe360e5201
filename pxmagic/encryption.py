"""CurveZMQ on the hub's client-facing sockets, and when to ask for it.

The HMAC key proves who sent a message; it does not hide it.  On loopback
nobody else can listen, so the hub binds 127.0.0.1 by default and sends in
the clear.  A hub bound to another interface can encrypt with CurveZMQ
(``--curve``): it makes a key pair per cluster, keeps the secret half, and
writes the public half into the 0600 client connection file, from which
clients take it; each client makes its own key pair per connection.
"""
from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where keys are made: checking options (pxmagic.hub.options) loads no ZMQ
    import zmq

LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(ip: str) -> bool:
    """Whether only this host can reach ``ip``."""
    if ip in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def exposure_warning(ip: str, curve: bool) -> str | None:
    """What to tell a user who binds a hub to ``ip``, or None when that is safe."""
    if curve or is_loopback(ip):
        return None
    return (f"the hub listens on {ip}, beyond this host, without encryption (--no-curve): anyone on that "
            "network can read code, data and results (though not forge messages without the key); "
            "leave out --no-curve (Cluster(curve=False)) to encrypt with CurveZMQ")


def server_keys() -> tuple[bytes, bytes]:
    """A fresh (public, secret) CurveZMQ key pair for a hub."""
    import zmq

    if not zmq.has("curve"):
        raise RuntimeError("this libzmq was built without CurveZMQ support; --curve is not available")
    return zmq.curve_keypair()


def make_server(socket: zmq.Socket, public: bytes, secret: bytes) -> None:
    """Make ``socket`` (before it binds) accept only CurveZMQ clients."""
    socket.curve_server = True
    socket.curve_publickey = public
    socket.curve_secretkey = secret


def make_client(socket: zmq.Socket, server_public: str) -> None:
    """Make ``socket`` (before it connects) talk CurveZMQ to the server with that public key."""
    import zmq

    public, secret = zmq.curve_keypair()
    socket.curve_serverkey = server_public.encode()
    socket.curve_publickey = public
    socket.curve_secretkey = secret
