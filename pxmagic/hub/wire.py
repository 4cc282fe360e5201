"""Sending a signed Jupyter message on an asyncio ZMQ socket.

``Session.send`` cannot take pyzmq's asyncio sockets here (it shadows them
without their context), so the hub signs with ``Session.serialize`` and
sends the frames itself.
"""
from __future__ import annotations

from typing import Any
from collections.abc import Sequence

from jupyter_client.session import Session


def send(
    session: Session,
    socket: Any,
    msg_type: str,
    content: dict | bytes,
    parent: dict | None = None,
    header: dict | None = None,
    metadata: dict | None = None,
    buffers: Sequence = (),
    ident: bytes | None = None,
) -> None:
    msg = session.msg(msg_type, content, parent=parent, header=header, metadata=metadata)
    socket.send_multipart([*session.serialize(msg, ident), *buffers], copy=False)
