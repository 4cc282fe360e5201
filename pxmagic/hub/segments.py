"""The hub's book of result segments: which it maps, until when, and which engines must hear of it.

An engine writes a large result into a segment of its own (``pxmagic.sharedmem``)
and may write the next one into it once nobody maps it; a result that lies
unchanged in a segment the engine received is sent in that one, and the engine
keeps its mapping until told, as for its own.  The hub maps every
result segment it forwards, so it holds the segment until the client that
asked has it (the client says so in its next request, ``received``) and, if
the result store keeps the result, for as long as it does.  The engine must
not look at a segment before the hub maps it, so the hub tells it, on the
next request it sends that engine (``segments_taken`` in the header).

A client that dies before saying it has a result would pin the segment for
ever; the hub lets go after :data:`PATIENCE` seconds, long after any live
client's I/O thread has mapped what it received.  No sockets here.
"""
from __future__ import annotations

import json
from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from jupyter_client.session import Session

from .. import tags, wire
from ..sharedmem import SCHEME, cluster_tag

#: seconds the hub maps a forwarded result segment that its client has not said it received
PATIENCE = 60.0


class SegmentBook:
    def __init__(self, patience: float = PATIENCE):
        self.patience = patience
        #: msg_id -> (mapped buffers, when forwarded): held until the client has them
        self._in_transit: OrderedDict[str, tuple[list, float]] = OrderedDict()
        self._untold: defaultdict[int, list[str]] = defaultdict(list)

    def forwarded(self, msg_id: str, engine_id: int, names: list[str], mapped: list, now: float) -> None:
        """The hub mapped ``names`` (``mapped``), the segments of engine ``engine_id``'s reply ``msg_id``."""
        self._in_transit[msg_id] = (mapped, now)
        self._untold[engine_id].extend(names)

    def received(self, msg_ids: Iterable[str]) -> None:
        """The client has these results: their segments are its to hold now."""
        for msg_id in msg_ids:
            self._in_transit.pop(msg_id, None)

    def expire(self, now: float) -> None:
        """Let go of segments forwarded more than :data:`PATIENCE` seconds ago to a client that never said."""
        while self._in_transit:
            msg_id, (_, since) = next(iter(self._in_transit.items()))
            if now - since < self.patience:
                break
            del self._in_transit[msg_id]

    def announcements(self, engine_id: int) -> list[str]:
        """Segments of this engine that the hub has mapped since it last told it (told once)."""
        return self._untold.pop(engine_id, [])

    def forget_engine(self, engine_id: int) -> None:
        self._untold.pop(engine_id, None)

    def __len__(self) -> int:
        return len(self._in_transit)


def reply_segments(key: bytes, tag: str, parts: list) -> tuple[list[str], list] | None:
    """The segment names of a verified reply and all its buffers, segments mapped; None if it has no segments.

    Raises ``tags.BuffersRefused`` for a reply whose segments cannot be mapped.
    """
    if SCHEME.encode() not in parts[3].bytes:
        return None
    descriptors = json.loads(parts[3].bytes).get("buffer_tags")
    return tags.segment_names(descriptors), tags.resolve(key, tag, descriptors, parts[5:])


def framed(session: Session, parts: list) -> list:
    """A stored result's parts as a client on any host can read them: buffers in segments become frames."""
    if len(parts) < 5 or SCHEME.encode() not in bytes(parts[3]):
        return parts
    return wire.with_framed_buffers(session, parts, parts[5:])


def framed_request(session: Session, payload: list) -> list:
    """A request's parent, metadata, content and buffers, its segments read into frames, for an engine on
    another host.  (The request is verified; its segments are the client's, of this cluster.)"""
    if SCHEME.encode() not in bytes(payload[1]):
        return payload
    descriptors = json.loads(bytes(payload[1])).get("buffer_tags")
    try:
        buffers = tags.resolve(session.key, cluster_tag(session.key), descriptors, payload[3:])
    except tags.BuffersRefused:
        return payload  # the engine refuses it and says why
    return [payload[0], wire.framed_metadata(session, payload[1], buffers), payload[2], *buffers]
