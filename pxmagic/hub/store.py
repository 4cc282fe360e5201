"""The hub's result store: every result, as its engine sent it, by msg_id.

The hub forwards each reply to the client that asked at once; a client that
has died, or closed before its work finished, would never see it.  So the
hub also keeps the reply's frames here (signature, header, parent, metadata,
content, buffers: signed, byte for byte as received), and any client can
fetch them later by msg_id (``rc.get_result``) and check them as it checks
any reply.

Memory is bounded: past ``max_results`` results or ``max_bytes`` bytes the
oldest are culled first, and a result bigger than ``max_bytes`` on its own is
forwarded but not kept in memory.  A large result (``RELEASE_MIN``) leaves
memory as soon as the client that asked says it has it: keeping a copy of
data the client holds doubled the memory of every big pull, and every big
message the hub received then landed in fresh memory, whose page faults
cost more than the copy (``benchmarks/data.py``).  An archive (:mod:`.archive`, ``--store
sqlite``) keeps every result on disk as well, culled or not.

Nothing here touches a socket: frames are any sized buffers (``zmq.Frame``,
bytes), so the rules are testable on their own.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ..protocol import RELEASE_MIN, RESULT_DONE, RESULT_MISSING, RESULT_PENDING, Found
from .options import DEFAULT_MAX_BYTES, DEFAULT_MAX_RESULTS, MB

#: received frames smaller than this are copied into the store: ZMQ reads small messages into
#: shared 8 KB buffers, and keeping such a frame keeps its whole buffer alive, several times the
#: result's size; bigger frames have buffers of their own and are kept as they are
COPY_BELOW = 64 * 1024


@dataclass(slots=True)
class Stored:
    """One result: the engine that produced it and the frames of its reply."""

    engine_id: int | None
    parts: list
    nbytes: int
    #: all the reply's buffers, its segments mapped (which keeps them from being reused), if it has segments
    buffers: list | None = None


@dataclass(slots=True)
class Waiter:
    """A client that asked for a result still to come, and the header of its request."""

    client: bytes
    parent: dict


class Archive(Protocol):
    """Where results are kept beyond memory (see :class:`.archive.SqliteArchive`)."""

    path: Path

    def put(self, msg_id: str, engine_id: int | None, parts: list) -> None: ...

    def get_many(self, msg_ids: list[str]) -> dict[str, Stored]: ...

    def purge(self, everything: bool, msg_ids: list[str], engine_ids: list[int]) -> None: ...

    def close(self) -> None: ...




class ResultStore:
    """Results by msg_id in arrival order, and the clients waiting for results still to come."""

    def __init__(self, max_results: int = DEFAULT_MAX_RESULTS, max_bytes: int = DEFAULT_MAX_BYTES,
                 archive: Archive | None = None):
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.archive = archive
        self._results: OrderedDict[str, Stored] = OrderedDict()
        self._waiters: dict[str, list[Waiter]] = {}
        #: bytes of the results held in memory
        self.nbytes = 0
        #: results dropped from memory to respect the limits, and results too big to keep at all
        self.culled = 0
        self.too_big = 0
        #: large results dropped from memory because their client has them
        self.released = 0
        #: why recent results are no longer here, so a client asking for one is told (bounded: see _forget)
        self._gone: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    def __contains__(self, msg_id: str) -> bool:
        return msg_id in self._results

    def add(self, msg_id: str, engine_id: int | None, parts: list, buffers: list | None = None) -> list[Waiter]:
        """Keep a result; returns the clients that asked for it before it came.

        This is on the path of every reply: it copies small frames (a few
        microseconds) and keeps big ones as received.  ``buffers`` are all
        the result's buffers when some travel in shared memory segments
        (mapped, not copied); the archive writes those.
        """
        if parts and hasattr(parts[0], "bytes"):  # zmq.Frames, see COPY_BELOW
            parts = [part.bytes if len(part) < COPY_BELOW else part for part in parts]
        if self.archive is not None:
            self.archive.put(msg_id, engine_id, parts if buffers is None else [*parts[:5], *buffers])
        nbytes = sum(map(len, parts)) + sum(memoryview(b).nbytes for b in buffers or ())
        old = self._results.pop(msg_id, None)
        if old is not None:
            self.nbytes -= old.nbytes
        if nbytes > self.max_bytes:
            self.too_big += 1
            self._forget(msg_id, f"its result ({nbytes / MB:.1f} MB) was larger than the hub's result store "
                                 f"limit ({self.max_bytes / MB:g} MB, --max-results-mb), so the hub did not keep it")
        else:
            self._results[msg_id] = Stored(engine_id, parts, nbytes, buffers)
            self.nbytes += nbytes
            self._cull()
        return self._waiters.pop(msg_id, []) if self._waiters else []

    def _cull(self) -> None:
        """Drop the oldest results until both limits hold."""
        results = self._results
        while len(results) > self.max_results or self.nbytes > self.max_bytes:
            msg_id, oldest = results.popitem(last=False)
            self.nbytes -= oldest.nbytes
            self.culled += 1
            self._forget(msg_id, f"culled from the hub's result store, which keeps the latest {self.max_results} "
                                 f"results and {self.max_bytes / MB:g} MB (--max-results, --max-results-mb)")

    def release(self, msg_ids: Iterable[str]) -> None:
        """Drop from memory the large results among ``msg_ids``, which their client has (an archive keeps them)."""
        for msg_id in msg_ids:
            stored = self._results.get(msg_id)
            if stored is not None and stored.nbytes >= RELEASE_MIN:
                del self._results[msg_id]
                self.nbytes -= stored.nbytes
                self.released += 1
                self._forget(msg_id, "released from the hub's memory once the client that asked had it")

    def find(self, msg_ids: Iterable[str], outstanding: Callable[[str], bool], waiter: Waiter) -> list[Found]:
        """What the store knows of each result asked for (a :class:`Found` each).

        A result whose buffers are in segments comes with all of them mapped
        after its first five parts, to be sent as frames (its descriptors
        still name the segments: see ``wire.with_framed_buffers``).

        A result still outstanding (``outstanding(msg_id)``: sent to an
        engine, or queued) is RESULT_PENDING, and ``waiter`` is remembered so
        the result goes to it when it comes (see :meth:`add`).
        """
        msg_ids = list(msg_ids)
        found = {m: self._results[m] for m in msg_ids if m in self._results}
        elsewhere = [m for m in msg_ids if m not in found]
        if elsewhere and self.archive is not None:
            found.update(self.archive.get_many(elsewhere))
        answer: list[Found] = []
        for msg_id in msg_ids:
            stored = found.get(msg_id)
            if stored is not None:
                parts = stored.parts if stored.buffers is None else [*stored.parts[:5], *stored.buffers]
                answer.append(Found(msg_id, RESULT_DONE, stored.engine_id, parts))
            elif outstanding(msg_id):
                self._waiters.setdefault(msg_id, []).append(waiter)
                answer.append(Found(msg_id, RESULT_PENDING, None, []))
            else:
                answer.append(Found(msg_id, RESULT_MISSING, None, []))
        return answer

    def purge(self, everything: bool = False, msg_ids: Iterable[str] = (), engine_ids: Iterable[int] = ()) -> int:
        """Forget results (all of them, these msg_ids, or those of these engines); how many went from memory."""
        msg_ids, engine_ids = list(msg_ids), set(engine_ids)
        if everything:
            doomed = list(self._results)
        else:
            doomed = [m for m in msg_ids if m in self._results]
            if engine_ids:
                doomed += [m for m, stored in self._results.items() if stored.engine_id in engine_ids]
        purged = 0
        for msg_id in doomed:
            stored = self._results.pop(msg_id, None)
            if stored is not None:
                self.nbytes -= stored.nbytes
                purged += 1
                self._forget(msg_id, "purged (purge_results)")
        if self.archive is not None:
            self.archive.purge(everything, msg_ids, sorted(engine_ids))
        return purged

    def _forget(self, msg_id: str, reason: str) -> None:
        """Remember why ``msg_id``'s result is gone, for as many msg_ids as the store keeps results."""
        self._gone[msg_id] = reason
        self._gone.move_to_end(msg_id)
        while len(self._gone) > max(self.max_results, DEFAULT_MAX_RESULTS):
            self._gone.popitem(last=False)

    def why_missing(self, msg_id: str) -> str:
        """Why the store has no result for ``msg_id``, as far as it remembers."""
        return self._gone.get(msg_id, "never submitted, or gone from the hub's result store long ago")

    def close(self) -> None:
        """Write what the archive has not written yet."""
        if self.archive is not None:
            self.archive.close()

    def __repr__(self) -> str:
        archive = f"; archive {self.archive.path}" if self.archive is not None else ""
        return (f"<ResultStore {len(self._results)} results, {self.nbytes / MB:.1f} MB in memory "
                f"(limits {self.max_results}, {self.max_bytes / MB:.0f} MB); {self.culled} culled, {self.released} released, "
                f"{self.too_big} too big to keep{archive}>")
