"""Checking, reading and sending signed Jupyter messages frame by frame.

``Session.deserialize`` costs ~130 us a message here, mostly turning header
dates into datetimes with dateutil and adapting protocol versions, none of
which pxmagic uses.  The hub and the client check the signature themselves
(same HMAC, same replay check) and parse only the JSON parts they read.
``Session.send`` cannot take pyzmq's asyncio sockets (it shadows them
without their context), so messages are signed with ``Session.serialize``
and sent here.
"""
from __future__ import annotations

import hmac
import json
from collections.abc import Sequence
from typing import Any

from jupyter_client.session import Session

from .protocol import ProtocolError, check_header

DELIM = b"<IDS|MSG>"


def verify(session: Session, parts: list) -> bool:
    """Whether ``parts`` (signature, header, parent, metadata, content, ...) is signed by our key.

    A signature seen before is refused (replay), as ``Session.deserialize`` does.
    """
    if len(parts) < 5:
        return False
    signature = parts[0].bytes
    if not signature or signature in session.digest_history:
        return False
    if not hmac.compare_digest(signature, session.sign(parts[1:5])):
        return False
    session._add_digest(signature)
    return True


def signed(session: Session, parts: list) -> bool:
    """Whether ``parts`` carries our key's signature, without the replay check.

    For a stored result that the hub sends again inside a fresh, verified
    message: the same result may rightly arrive more than once.
    """
    if len(parts) < 5 or not parts[0].bytes:
        return False
    return hmac.compare_digest(parts[0].bytes, session.sign(parts[1:5]))


def signed_and_unseen(session: Session, parts: list) -> bool:
    """Whether ``parts`` would pass :func:`verify`, without recording its signature as seen."""
    return signed(session, parts) and parts[0].bytes not in session.digest_history


def load(frame: Any) -> Any:
    """The JSON value of one frame."""
    return json.loads(frame.bytes)


def envelope(parts: list) -> tuple[dict, dict, dict]:
    """Header, metadata and content of a verified message; ProtocolError says what is malformed.

    A signature proves who sent a message, not that it is well formed: the
    hub reads these parts, so each must be a JSON object of the right shape.
    """
    names = ("header", "parent header", "metadata", "content")
    values = []
    for name, frame in zip(names, parts[1:5]):
        try:
            value = load(frame)
        except ValueError:
            raise ProtocolError(f"its {name} is not JSON") from None
        if not isinstance(value, dict):
            raise ProtocolError(f"its {name} is a JSON {type(value).__name__}, not an object")
        values.append(value)
    header, _, metadata, content = values
    return check_header(header), metadata, content


def message(parts: list) -> dict:
    """A verified message as a dict shaped like ``Session.deserialize``'s (dates stay strings)."""
    header = load(parts[1])
    return {
        "header": header,
        "msg_id": header["msg_id"],
        "msg_type": header["msg_type"],
        "parent_header": load(parts[2]),
        "metadata": load(parts[3]),
        "content": load(parts[4]),
        "buffers": [memoryview(frame) for frame in parts[5:]],
    }


def forward(session: Session, socket: Any, header: dict, rest: list) -> None:
    """Send a message with a new ``header`` and the received frames ``rest``.

    ``rest`` is parent, metadata, content and buffers, forwarded untouched:
    only the header is packed, and the message signed again.
    """
    packed = session.pack(header)
    signature = session.sign([packed, *rest[:3]])
    socket.send_multipart([DELIM, signature, packed, *rest], copy=False)


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
    """Build, sign and send a message."""
    socket.send_multipart([*build(session, msg_type, content, parent, header, metadata, ident), *buffers],
                          copy=False)


def build(
    session: Session,
    msg_type: str,
    content: dict | bytes,
    parent: dict | None = None,
    header: dict | None = None,
    metadata: dict | None = None,
    ident: Any = None,
) -> list:
    """The signed frames of a new message, for a sender that sends them its own way."""
    msg = session.msg(msg_type, content, parent=parent, header=header or new_header(session, msg_type),
                      metadata=metadata)
    return session.serialize(msg, ident)


def new_header(session: Session, msg_type: str) -> dict:
    """A new message header, its date already an ISO 8601 string.

    ``Session.msg_header`` gives a datetime, which the packer turns into a
    string through a Python callback: half the cost of packing a header.
    """
    fields = session.msg_header(msg_type)
    fields["date"] = fields["date"].isoformat().replace("+00:00", "Z")
    return fields


#: the content of every successful apply_reply, packed once
_OK = b'{"status": "ok"}'


def reply(session: Session, msg_type: str, request: list, content: dict, metadata: dict, idents: list) -> list:
    """Signed frames of a reply to the verified request whose parts are ``request``.

    The request's header frame is the reply's parent header as it came: the
    same JSON, not parsed and packed again.
    """
    body = _OK if content == {"status": "ok"} else session.pack(content)
    packed = [session.pack(new_header(session, msg_type)), request[1], session.pack(metadata), body]
    return [*idents, DELIM, session.sign(packed), *packed]
