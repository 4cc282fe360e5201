"""Checking, reading and sending signed Jupyter messages frame by frame.

``Session.deserialize`` spends most of a small message's handling turning
header dates into datetimes with dateutil and adapting protocol versions,
none of which pxmagic uses.  The hub and the client check the signature themselves
(same HMAC, same replay check) and parse only the JSON parts they read.
``Session.send`` cannot take pyzmq's asyncio sockets (it shadows them
without their context), so messages are signed with ``Session.serialize``
and sent here.
"""
from __future__ import annotations

import hmac
import json
import struct
import weakref
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, NamedTuple

from jupyter_client.session import Session

from . import serialize, tags
from .error import RemoteError, content_error
from .protocol import ProtocolError, check_header
from .replay import ReplayGuard

DELIM = b"<IDS|MSG>"


class Refusal(NamedTuple):
    """Why a message is refused; ``authentic`` if it carries our key's signature, so a request may be answered."""

    reason: str
    authentic: bool


#: what :func:`check` makes of a message that comes again.  A request must be fresh: recent, and never
#: received before (:mod:`pxmagic.replay`), since acting on it twice would run its code twice.
FRESH = "fresh"
#: a reply or output must not be among the last signatures seen, as ``Session.deserialize`` checks:
#: its receiver ignores a second answer to one request anyway
UNSEEN = "unseen"
#: a stored result that the hub sends again inside a fresh, checked reply may rightly come more than once
AGAIN = "again"

#: each session's memory of the requests it received (one per process, shared by its sockets)
_guards: weakref.WeakKeyDictionary[Session, ReplayGuard] = weakref.WeakKeyDictionary()


def check(session: Session, parts: list, replay: str) -> Refusal | None:
    """Why ``parts`` (signature, header, parent, metadata, content, ...) must not be acted on, or None.

    Every message pxmagic receives is checked here before any part of it is
    read: it must carry our key's signature, and meet the ``replay`` rule
    (:data:`FRESH`, :data:`UNSEEN` or :data:`AGAIN`); an accepted one is
    remembered as received.
    """
    if len(parts) < 5:
        return Refusal(f"it has {len(parts)} parts after the delimiter, not at least 5", False)
    signature = bytes(parts[0])
    if not signature or not hmac.compare_digest(signature, session.sign(parts[1:5])):
        return Refusal("its signature is missing or wrong", False)
    if replay == AGAIN:
        return None
    if replay == UNSEEN:
        if signature in session.digest_history:
            return Refusal("it was received before (a replay)", True)
        session._add_digest(signature)
        return None
    try:
        header = load(parts[1])
    except ValueError:
        return Refusal("its header is not JSON", True)
    date = header.get("date") if isinstance(header, dict) else None
    reason = _guards.setdefault(session, ReplayGuard()).refusal(signature, date)
    return None if reason is None else Refusal(reason, True)


def load(frame: Any) -> Any:
    """The JSON value of one frame (a zmq.Frame, or a buffer read from a stream)."""
    return json.loads(bytes(frame))


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


def reply_value(msg: dict, engine_id: int | None, key: bytes, segment_tag: str) -> tuple[Any, RemoteError | None]:
    """The value, or the error, that an engine's verified reply carries.

    Its buffers are checked before anything is unpickled: frames against
    their tags under ``key``, segments against the cluster ``segment_tag``.
    """
    content = msg["content"]
    status = content.get("status")
    if status == "ok":
        if msg["msg_type"] != "apply_reply":
            return None, None
        try:
            buffers = tags.resolve(key, segment_tag, msg["metadata"].get("buffer_tags"), msg["buffers"])
        except tags.BuffersRefused as error:
            return None, RemoteError("PermissionError", f"reply refused: {error}", engine_id=engine_id)
        try:
            return serialize.unpack(buffers), None
        except Exception as error:
            return None, RemoteError(type(error).__name__, f"could not load the result: {error}",
                                     engine_id=engine_id)
    if status == "aborted":
        return None, RemoteError("AbortedTask", "the engine aborted this request", engine_id=engine_id)
    return None, content_error(content, engine_id)


def forwarded(session: Session, header: dict, rest: list) -> list:
    """The frames of a message with a new ``header`` and the received frames ``rest``.

    ``rest`` is parent, metadata, content and buffers, forwarded untouched:
    only the header is packed, and the message signed again.  The header is
    dated now: the receiver refuses requests that are not recent, and one
    may have waited in the hub's queue for a while.
    """
    packed = session.pack({**header, "date": _now()})
    signature = session.sign([packed, *rest[:3]])
    return [DELIM, signature, packed, *rest]


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
    fields["date"] = _now()
    return fields


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


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


def with_framed_buffers(session: Session, parts: list, buffers: Sequence) -> list:
    """A verified message's ``parts`` with all its ``buffers`` as frames, tagged and signed again.

    For a receiver that cannot map the shared memory segments the message
    names (another host), or a result written to disk or kept beyond its
    segments' life.
    """
    head = [bytes(parts[1]), bytes(parts[2]), framed_metadata(session, parts[3], buffers), bytes(parts[4])]
    return [session.sign(head), *head, *buffers]


def framed_metadata(session: Session, metadata_frame: Any, buffers: Sequence) -> bytes:
    """A message's metadata, its buffer descriptors now the tags of ``buffers`` as frames (to be signed)."""
    metadata = json.loads(bytes(metadata_frame))
    metadata["buffer_tags"] = tags.tag_frames(session.key, buffers)
    return session.pack(metadata)


def to_stream(frames: Sequence) -> bytes:
    """A message's frames as bytes for a plain stream socket: a count, then each frame after its length."""
    out = [struct.pack("!I", len(frames))]
    for frame in frames:
        data = bytes(frame)
        out += [struct.pack("!I", len(data)), data]
    return b"".join(out)


def from_stream(data: bytes | bytearray, limit: int) -> list | None:
    """The frames of a message at the start of ``data`` (as :func:`to_stream` wrote them), None if not all there.

    ProtocolError if what is there is not such a message of at most ``limit`` bytes.
    """
    if len(data) > limit:
        raise ProtocolError(f"it is over {limit} bytes")
    if len(data) < 4:
        return None
    (count,), at, frames = struct.unpack_from("!I", data), 4, []
    if count > 16:
        raise ProtocolError(f"it claims {count} frames")
    for _ in range(count):
        if len(data) < at + 4:
            return None
        (size,) = struct.unpack_from("!I", data, at)
        if at + 4 + size > limit:
            raise ProtocolError(f"it is over {limit} bytes")
        if len(data) < at + 4 + size:
            return None
        frames.append(bytes(data[at + 4:at + 4 + size]))
        at += 4 + size
    return frames
