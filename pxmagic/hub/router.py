"""The hub's routing state, free of sockets.

The hub feeds this every request a client sends, every reply an engine
sends, and every engine death; it answers with what to send where.  Keeping
the bookkeeping here makes the rules testable and leaves the hub's loop only
moving frames.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..protocol import ENGINE_REQUESTS, engine_error_content, per_engine_header


@dataclass
class Pending:
    """A request copy sent to an engine whose reply has not come back yet."""

    client: bytes
    engine_id: int
    header: dict


@dataclass
class Delivery:
    """Send a copy of the request with ``header`` to engine ``engine_id``."""

    engine_id: int
    header: dict


@dataclass
class Failure:
    """Tell ``client`` that the request copy ``parent`` failed, with reply ``content``."""

    client: bytes
    reply_type: str
    parent: dict
    content: dict


@dataclass
class Routing:
    deliveries: list[Delivery] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


class Router:
    """Which engines exist, and which client waits for which reply."""

    def __init__(self) -> None:
        self.engines: set[int] = set()
        self.pending: dict[str, Pending] = {}

    def add_engine(self, engine_id: int) -> None:
        self.engines.add(engine_id)

    def route_request(self, client: bytes, header: dict, targets: list[int]) -> Routing:
        """Fan a client's request out to its targets; unknown targets fail at once."""
        routing = Routing()
        reply_type = ENGINE_REQUESTS[header["msg_type"]]
        for engine_id in targets:
            copy = per_engine_header(header, engine_id)
            if engine_id in self.engines:
                self.pending[copy["msg_id"]] = Pending(client, engine_id, copy)
                routing.deliveries.append(Delivery(engine_id, copy))
            else:
                content = engine_error_content(engine_id, copy["msg_id"], "does not exist")
                routing.failures.append(Failure(client, reply_type, copy, content))
        return routing

    def reply_client(self, parent_msg_id: str) -> bytes | None:
        """The client waiting for the reply to ``parent_msg_id``; forgets the request."""
        pending = self.pending.pop(parent_msg_id, None)
        return pending.client if pending else None

    def remove_engine(self, engine_id: int, reason: str) -> list[Failure]:
        """Forget a dead engine; every request still waiting on it fails."""
        self.engines.discard(engine_id)
        lost = [mid for mid, p in self.pending.items() if p.engine_id == engine_id]
        failures = []
        for msg_id in lost:
            pending = self.pending.pop(msg_id)
            reply_type = ENGINE_REQUESTS[pending.header["msg_type"]]
            content = engine_error_content(engine_id, msg_id, reason)
            failures.append(Failure(pending.client, reply_type, pending.header, content))
        return failures
