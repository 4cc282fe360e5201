"""Results on disk, for ``--store sqlite``: kept after delivery, after culling, after the client exited.

The file lives as long as the user keeps it (``rc.purge_results`` empties
it), so a result stays fetchable across hub restarts too, when the cluster
keeps its profile and cluster id.

The hub's loop must not wait for the disk on every reply: it only queues
references to frames it already holds, and a background thread writes them
in batches, one transaction every :data:`FLUSH_DELAY` seconds at most.
Reads (a client asking for a result no longer in memory) are rare; they run
on the hub's loop through their own connection, which WAL journaling lets
read beside the writer.

A row holds a reply's frames as received, signature included.  A result
written during an earlier run of the hub was signed, and its buffers tagged,
with that run's key, so it is tagged and signed again with this cluster's
key when read: the file is the user's own (0600, in a 0700 directory), as
safe as the connection file that holds the key.
"""
from __future__ import annotations

import logging
import os
import queue
import sqlite3
import struct
import threading
import time
from pathlib import Path
from typing import Any

from jupyter_client.session import Session

from .. import wire
from ..sharedmem import SCHEME
from .options import StoreOptions
from .store import ResultStore, Stored

log = logging.getLogger("pxmagic.hub")

#: the writer waits this long after a first queued result, so one transaction takes all that came meanwhile
FLUSH_DELAY = 0.2
#: how many msg_ids one SELECT asks for (SQLite limits the number of parameters)
READ_CHUNK = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    msg_id TEXT PRIMARY KEY,
    engine_id INTEGER,
    received REAL NOT NULL,
    frames BLOB NOT NULL
)
"""
INSERT = "INSERT OR REPLACE INTO results (msg_id, engine_id, received, frames) VALUES (?, ?, ?, ?)"


class ArchiveError(RuntimeError):
    """The result store's file cannot be used."""


def encode_frames(parts: list) -> bytes:
    """One blob for a message's frames: their count, their lengths, then their bytes."""
    head = struct.pack(f"<I{len(parts)}Q", len(parts), *map(len, parts))
    return b"".join([head, *parts])


def decode_frames(blob: bytes) -> list[memoryview]:
    """The frames of :func:`encode_frames`, as views on ``blob`` (no copies)."""
    (count,) = struct.unpack_from("<I", blob)
    lengths = struct.unpack_from(f"<{count}Q", blob, 4)
    view, offset, parts = memoryview(blob), 4 + 8 * count, []
    for length in lengths:
        parts.append(view[offset:offset + length])
        offset += length
    if offset != len(blob):
        raise ValueError(f"a stored result's frames add up to {offset} bytes, not {len(blob)}")
    return parts


class SqliteArchive:
    """Every result in one SQLite file, written by a background thread."""

    def __init__(self, path: Path, session: Session):
        self.path = Path(path)
        self._session = session
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._reader = self._connect()
            self._reader.execute(SCHEMA)
            self._reader.commit()
        except (OSError, sqlite3.Error) as error:
            raise ArchiveError(f"cannot keep results in {self.path}: {error}") from None
        self._queue: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()
        # each counter is written by one thread only: queued by the hub's loop, written by the writer
        self._queued = 0
        self._written = 0
        self._thread = threading.Thread(target=self._write_loop, name="pxmagic-archive", daemon=True)
        self._thread.start()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    # -- called on the hub's loop -------------------------------------------
    def put(self, msg_id: str, engine_id: int | None, parts: list) -> None:
        self._change("put", (msg_id, engine_id, time.time(), parts))

    def purge(self, everything: bool, msg_ids: list[str], engine_ids: list[int]) -> None:
        if everything:
            self._change("sql", ("DELETE FROM results", [()]))
            return
        if msg_ids:
            self._change("sql", ("DELETE FROM results WHERE msg_id = ?", [(m,) for m in msg_ids]))
        if engine_ids:
            self._change("sql", ("DELETE FROM results WHERE engine_id = ?", [(e,) for e in engine_ids]))

    def _change(self, kind: str, value: Any) -> None:
        self._queued += 1
        self._queue.put((kind, value))

    def get_many(self, msg_ids: list[str]) -> dict[str, Stored]:
        """The stored results among ``msg_ids``, signed with this cluster's key."""
        if self._queued != self._written:
            self.flush()
        found = {}
        for start in range(0, len(msg_ids), READ_CHUNK):
            chunk = msg_ids[start:start + READ_CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._reader.execute(
                f"SELECT msg_id, engine_id, frames FROM results WHERE msg_id IN ({marks})", chunk)
            for msg_id, engine_id, blob in rows:
                try:
                    parts = decode_frames(blob)
                except (struct.error, ValueError) as error:
                    log.error("the stored result of %s in %s is damaged: %s", msg_id, self.path, error)
                    continue
                if wire.check(self._session, parts, wire.AGAIN) is not None or SCHEME.encode() in bytes(parts[3]):
                    parts = self._adopt(parts)
                found[msg_id] = Stored(engine_id, parts, len(blob))
        return found

    def _adopt(self, parts: list) -> list:
        """A reply written in an earlier run of the hub, or whose buffers were in segments, tagged and
        signed with this run's key: its buffers are frames now."""
        return wire.with_framed_buffers(self._session, parts, parts[5:])

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until everything queued so far is written."""
        done = threading.Event()
        self._queue.put(("flush", done))
        if not done.wait(timeout):
            log.warning("the result store %s did not finish writing within %s s", self.path, timeout)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        self._queue.put(("stop", None))
        self._thread.join(30)
        self._reader.close()

    # -- the writer thread --------------------------------------------------
    def _write_loop(self) -> None:
        db = self._connect()
        try:
            while True:
                batch = [self._queue.get()]
                time.sleep(FLUSH_DELAY)
                while True:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                if self._write(db, batch):
                    return
        finally:
            db.close()

    def _write(self, db: sqlite3.Connection, batch: list[tuple[str, Any]]) -> bool:
        """Apply a batch in one transaction, in order; True if it asked the writer to stop."""
        rows: list[tuple] = []
        waiting: list[threading.Event] = []
        stop = False
        for kind, value in batch:
            if kind == "put":
                msg_id, engine_id, received, parts = value
                try:
                    rows.append((msg_id, engine_id, received, encode_frames(parts)))
                except Exception as error:
                    log.error("could not store the result of %s in %s: %s", msg_id, self.path, error)
            elif kind == "sql":
                self._insert(db, rows)
                rows = []
                try:
                    db.executemany(*value)
                except sqlite3.Error:
                    log.exception("could not purge results from %s", self.path)
            elif kind == "flush":
                waiting.append(value)
            else:
                stop = True
        self._insert(db, rows)
        try:
            db.commit()
        except sqlite3.Error:
            log.exception("could not write results to %s", self.path)
        self._written += sum(kind in ("put", "sql") for kind, _ in batch)
        for done in waiting:
            done.set()
        return stop

    def _insert(self, db: sqlite3.Connection, rows: list[tuple]) -> None:
        if not rows:
            return
        try:
            db.executemany(INSERT, rows)
            return
        except (sqlite3.Error, OverflowError):
            pass
        for row in rows:  # find the rows at fault, keep the others
            try:
                db.execute(INSERT, row)
            except (sqlite3.Error, OverflowError) as error:
                log.error("could not store the result of %s (%d bytes) in %s: %s",
                          row[0], len(row[3]), self.path, error)


def open_store(options: StoreOptions, archive_path: Path, session: Session) -> ResultStore:
    """The result store ``options`` describe, with an archive at ``archive_path`` for ``sqlite``."""
    archive = SqliteArchive(archive_path, session) if options.kind == "sqlite" else None
    return ResultStore(options.max_results, options.max_bytes, archive)
