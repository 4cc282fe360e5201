"""An engine the hub did not start: how it joins the hub, and leaves when the hub is gone.

``mpiexec``, ``srun`` or ``ssh`` start ``python -m pxmagic.engine --register
<pxmagic-engine.json>`` on some host.  The file, written by the hub (mode
0600), names the hub's registration socket and carries the cluster's key.
The engine starts as an ordinary kernel signed with that key, binds its own
ports on the interface that faces the hub, then sends the hub its connection
info in one signed ``registration_request``.  The hub answers with the
engine's id and connects to the kernel like to one it started itself.

A registered engine has no parent process to outlive: it listens to the
hub's heartbeat and exits once the hub has been silent for ``hub_timeout``.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import zmq
from jupyter_client.session import Session

from .. import encryption, sharedmem, wire
from ..protocol import (
    HUB_HEARTBEAT_TOPIC,
    REGISTRATION_REPLY,
    REGISTRATION_REQUEST,
    ProtocolError,
    registration_content,
)

log = logging.getLogger("pxmagic.engine")

ENGINE_FILE_KEYS = ("registration", "hub_iopub", "key", "signature_scheme")


class RegistrationError(RuntimeError):
    """The hub refused this engine, or did not answer."""


def read_engine_file(path: str | Path) -> dict:
    """The hub's ``pxmagic-engine.json``, with an error that names what is wrong.

    ``-`` reads it from standard input: ``ssh`` sends it that way, so the
    cluster's key never lands in a file on a host the hub does not share a
    filesystem with.
    """
    try:
        info = json.loads(sys.stdin.read() if str(path) == "-" else Path(path).read_text())
    except FileNotFoundError:
        raise RegistrationError(f"no engine registration file at {path}: is the hub running?") from None
    except (OSError, ValueError) as error:
        raise RegistrationError(f"cannot read the engine registration file {path}: {error}") from None
    missing = [k for k in ENGINE_FILE_KEYS if not isinstance(info, dict) or k not in info]
    if missing:
        raise RegistrationError(f"{path} lacks {', '.join(missing)}: is it a pxmagic-engine.json?")
    return info


def address_facing(url: str) -> str:
    """This host's address on the route to ``url``'s host: where the hub can reach us.

    Connecting a UDP socket sends nothing; it only makes the kernel pick the
    outgoing interface, whose address getsockname() then tells.
    """
    host = urlsplit(url).hostname or "127.0.0.1"
    family, _, _, _, address = socket.getaddrinfo(host, 9, type=socket.SOCK_DGRAM)[0]
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.connect(address)
        return probe.getsockname()[0]


def register(
    engine_file: dict,
    session: Session,
    connection_info: dict,
    rank: int | None,
    job: str | None,
    connection_file: str,
    timeout: float,
) -> int:
    """Send the hub our connection info; return the engine id it gives us.

    The request is sent once: ZMQ queues it until the connection is up and
    delivers it whole, so a slow hub (a thousand engines registering at once)
    means waiting, never resending.
    """
    content = registration_content(connection_info, rank, job, socket.gethostname(), os.getpid(),
                                   connection_file, sharedmem.host_id() if sharedmem.enabled() else "")
    with zmq.Context() as context, context.socket(zmq.DEALER) as dealer:
        dealer.linger = 0
        if engine_file.get("curve_serverkey"):
            encryption.make_client(dealer, engine_file["curve_serverkey"])
        dealer.connect(engine_file["registration"])
        header = wire.new_header(session, REGISTRATION_REQUEST)
        dealer.send_multipart(wire.build(session, REGISTRATION_REQUEST, content, header=header))
        if not dealer.poll(timeout * 1000):
            raise RegistrationError(
                f"the hub at {engine_file['registration']} did not answer the registration within "
                f"{timeout:.0f} s (is it running, and is this its key?)"
            )
        _, parts = session.feed_identities(dealer.recv_multipart(copy=False), copy=False)
    refusal = wire.check(session, parts, wire.UNSEEN)
    if refusal is not None:
        raise RegistrationError(f"the hub's answer to the registration is refused: {refusal.reason}")
    reply = wire.message(parts)
    if reply["msg_type"] != REGISTRATION_REPLY or reply["parent_header"].get("msg_id") != header["msg_id"]:
        raise ProtocolError(f"expected a {REGISTRATION_REPLY} to our registration, got {reply['msg_type']}")
    answer = reply["content"]
    if answer.get("status") != "ok":
        raise RegistrationError(f"the hub refused this engine: {answer.get('evalue', answer)}")
    return int(answer["engine_id"])


class HubWatch(threading.Thread):
    """Calls ``on_gone`` once the hub's heartbeat has been silent for ``timeout`` seconds.

    The hub beats on its iopub socket (the one clients listen to), a single
    unsigned frame: a forged beat could only keep an engine alive a little
    longer, never make it run anything.
    """

    def __init__(self, engine_file: dict, timeout: float, on_gone: Callable[[float], None]):
        super().__init__(name="pxmagic-hub-watch", daemon=True)
        self.hub_iopub = engine_file["hub_iopub"]
        self.curve_serverkey = engine_file.get("curve_serverkey")
        self.timeout = timeout
        self.on_gone = on_gone

    def run(self) -> None:
        context = zmq.Context()
        beats = context.socket(zmq.SUB)
        beats.linger = 0
        beats.setsockopt(zmq.SUBSCRIBE, HUB_HEARTBEAT_TOPIC)
        if self.curve_serverkey:
            encryption.make_client(beats, self.curve_serverkey)
        beats.connect(self.hub_iopub)
        last_heard = time.monotonic()
        while (silence := time.monotonic() - last_heard) < self.timeout:
            if beats.poll(500):
                while beats.poll(0):
                    beats.recv()
                last_heard = time.monotonic()
        self.on_gone(silence)
