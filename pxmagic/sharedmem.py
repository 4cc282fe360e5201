"""Large buffers between processes of one host, through shared memory instead of sockets.

A sender writes a buffer once into a segment, a 0600 file in ``/dev/shm``
created with O_EXCL, and the message names it; every receiver maps that file
copy-on-write (``MAP_PRIVATE``), so a broadcast to N engines is one copy in
memory, and an engine that writes into its array gets private pages of its
own.  Named files, rather than memfds passed over Unix sockets, because a
message travels client -> hub -> engines: a name goes inside the signed
message through the hub untouched, where an fd would need a socket from
each sender to each receiver beside the ZMQ route.  The price of names is
cleanup, which the rules below pay:

* a name says which cluster and which process own it
  (``pxmagic-<cluster tag>-<pid>-<n>``), so whoever finds a segment whose
  owner has died removes it (:func:`sweep`), and a stopping hub removes its
  cluster's segments;
* a receiver holds a shared ``flock`` on the segment for as long as it maps
  it (the lock lives with the mapping, not the fd), so the owner learns,
  without any message, whether anyone still uses a segment it has lent;
* fresh pages cost far more to touch than to copy into (see FACTS), so an
  owner keeps segments nobody maps in a pool and writes the next buffer of a
  similar size into one of those, while they are warm.

A buffer that already lies in a segment this process mapped, and whose
pages it has not written since (``/proc/self/pagemap`` tells), is not
copied again: the message names that segment, and the process keeps its
mapping, hence the lock, until the buffer's receivers have theirs.  So a
pushed array pulled back, or a pulled one pushed on, costs no new segment.

The owner decides when a lent segment may be probed: a client once its
request is answered (every receiver has mapped it by then, or failed), an
engine once the hub says it has mapped the result (see ``hub/segments.py``).

Only processes of the owner's user can open a 0600 file, so a segment needs
no buffer tag: whoever could change it could as well read the cluster's key.
"""
from __future__ import annotations

import atexit
import ctypes
import errno
import fcntl
import hashlib
import itertools
import mmap
import os
import re
import stat
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

#: where segments live: a tmpfs on Linux
DIRECTORY = "/dev/shm"
#: buffers at least this large go through a segment; below, frames cost as little (benchmarks/data.py --threshold)
THRESHOLD = 256 << 10
#: bytes of unused segments an owner keeps warm for its next buffers
POOL_BYTES = 1 << 30
#: what a buffer descriptor starts with in a message's ``buffer_tags``
SCHEME = "shm:"
#: a new segment at least this large gets its pages from several threads at once (see :func:`_fill`)
PARALLEL_FILL = 16 << 20
_FILL_THREADS = max(1, min(4, os.cpu_count() or 1))
#: madvise(2) advice, Linux 5.14 and later: fault the range in, writable, as a write to each page would
_MADV_POPULATE_WRITE = 23
_libc = ctypes.CDLL(None, use_errno=True)
_libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
_NAME = re.compile(r"pxmagic-([0-9a-f]{12})-(\d+)-(\d+)")
#: pagemap(5), the top byte of a page's entry: present, swapped, a page of the file (not a private copy)
_PRESENT, _SWAPPED, _FILE_PAGE = 0x80, 0x40, 0x20
#: that byte -> 1 where the page holds this process's own writes rather than the segment's bytes
_WRITTEN = bytes(int(bool(b & _SWAPPED or (b & _PRESENT and not b & _FILE_PAGE))) for b in range(256))


class SegmentRefused(ValueError):
    """A segment reference that must not be mapped; the message says why."""


def enabled() -> bool:
    """Whether this process uses shared memory: ``PXMAGIC_SHARED_MEMORY=0`` turns it off."""
    return os.environ.get("PXMAGIC_SHARED_MEMORY", "1") != "0" and os.path.isdir(DIRECTORY)


def host_id() -> str:
    """What tells two processes they share ``/dev/shm``: the running kernel's boot id."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip()
    except OSError:
        return ""


def cluster_tag(key: bytes) -> str:
    """The part of a segment's name that says which cluster owns it (from its key, which it does not reveal)."""
    return hashlib.sha256(b"pxmagic segment\0" + key).hexdigest()[:12]


def reference(name: str, nbytes: int, offset: int = 0) -> str:
    """The descriptor of ``nbytes`` at ``offset`` in segment ``name``: ``shm:<name>:<nbytes>[@<offset>]``."""
    return f"{SCHEME}{name}:{nbytes}" + (f"@{offset}" if offset else "")


def split_reference(entry: str) -> tuple[str, str, str]:
    """A descriptor's name, size and offset, as the text they are (unchecked)."""
    name, _, place = entry[len(SCHEME):].partition(":")
    size, _, offset = place.partition("@")
    return name, size, offset or "0"


def parse_reference(tag: str, entry: str) -> tuple[str, int, int]:
    """The segment name, buffer size and offset of a descriptor of cluster ``tag`` (see :func:`reference`)."""
    name, size, offset = split_reference(entry)
    match = _NAME.fullmatch(name)
    if match is None:
        raise SegmentRefused(f"{name!r} is not the name of a pxmagic segment")
    if match.group(1) != tag:
        raise SegmentRefused(f"segment {name} belongs to another cluster")
    if not size.isdigit() or int(size) < 1:
        raise SegmentRefused(f"segment {name}: {size!r} is not a buffer size")
    if not offset.isdigit():
        raise SegmentRefused(f"segment {name}: {offset!r} is not an offset")
    return name, int(size), int(offset)


def owner_pid(name: str) -> int | None:
    match = _NAME.fullmatch(name)
    return int(match.group(2)) if match else None


def open_segment(tag: str, entry: str) -> memoryview:
    """A private, writable mapping of the buffer that descriptor ``entry`` names.

    The file must be a regular file of this user, mode 0600, at least as
    large as the buffer; its pages are shared with every other process that
    maps it until one writes (copy-on-write).  The mapping keeps a shared
    lock on the file until it is released.
    """
    name, nbytes, offset = parse_reference(tag, entry)
    try:
        fd = os.open(os.path.join(DIRECTORY, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as error:
        raise SegmentRefused(f"segment {name} cannot be opened: {error.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o600:
            raise SegmentRefused(f"segment {name} is not a 0600 file of this user")
        if info.st_size < offset + nbytes:
            raise SegmentRefused(f"segment {name} holds {info.st_size} bytes, not the {offset + nbytes} named")
        fcntl.flock(fd, fcntl.LOCK_SH)
        start = offset - offset % mmap.ALLOCATIONGRANULARITY
        mapping = mmap.mmap(fd, offset + nbytes - start, access=mmap.ACCESS_COPY, offset=start)
    finally:
        os.close(fd)
    _received.add(mapping, name, start, info.st_ino)
    return memoryview(mapping)[offset - start:]


def _address(buffer: memoryview | mmap.mmap) -> int:
    anchor = ctypes.c_char.from_buffer(buffer)
    try:
        return ctypes.addressof(anchor)
    finally:
        del anchor


def _written(address: int, nbytes: int) -> bool:
    """Whether this process wrote into any page of a private mapping's range since mapping it (or cannot tell)."""
    first, last = address // mmap.PAGESIZE, (address + nbytes - 1) // mmap.PAGESIZE
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            pagemap.seek(first * 8)
            entries = pagemap.read((last - first + 1) * 8)
    except OSError:
        return True
    return len(entries) != (last - first + 1) * 8 or b"\x01" in entries[7::8].translate(_WRITTEN)


@dataclass
class _Mapping:
    name: str
    #: where in the segment's file the mapping starts
    offset: int
    inode: int
    address: int
    length: int
    mapping: weakref.ref


class _ReceivedMappings:
    """The segments this process maps as a receiver, while it does: where a buffer to send may already be.

    Entries of mappings that are gone are dropped on the next :meth:`add`,
    not by a finalizer: one runs inside whatever allocation triggers the
    garbage collector, perhaps while this very lock is held.
    """

    def __init__(self) -> None:
        self._by_id: dict[int, _Mapping] = {}
        self._lock = threading.Lock()

    def add(self, mapping: mmap.mmap, name: str, offset: int, inode: int) -> None:
        entry = _Mapping(name, offset, inode, _address(mapping), len(mapping), weakref.ref(mapping))
        with self._lock:
            self._by_id = {key: e for key, e in self._by_id.items() if e.mapping() is not None}
            self._by_id[id(mapping)] = entry

    def holding(self, data: memoryview) -> tuple[str, int, mmap.mmap] | None:
        """The segment, offset and mapping that ``data`` views unchanged, if any.

        Only while the segment's name leads to it and its owner lives: a
        dead owner's segments are swept, and a receiver could not open one.
        """
        if data.readonly or not self._by_id:
            return None
        address = _address(data)
        with self._lock:
            mappings = list(self._by_id.values())
        for entry in mappings:
            mapping = entry.mapping()
            if mapping is None or mapping.closed:
                continue
            if entry.address <= address and address + data.nbytes <= entry.address + entry.length:
                if not _still_named(entry) or _written(address, data.nbytes):
                    return None
                return entry.name, entry.offset + address - entry.address, mapping
        return None


def _still_named(entry: _Mapping) -> bool:
    try:
        inode = os.stat(os.path.join(DIRECTORY, entry.name)).st_ino
    except OSError:
        return False
    owner = owner_pid(entry.name)
    return inode == entry.inode and owner is not None and _alive(owner)


_received = _ReceivedMappings()
#: the last part of a new segment's name, unique in this process (itertools.count's next() is atomic)
_numbers = itertools.count(1)


def _fill(mapping: mmap.mmap, fd: int, nbytes: int) -> None:
    """Give a new segment all its pages before anything is copied in, so that a full /dev/shm is an OSError here.

    The first touch of fresh pages costs several times the copy (see FACTS),
    and the kernel serves several threads' faults at once, so a large
    segment is filled from a few threads (ctypes calls run without the GIL).
    Before Linux 5.14, which cannot populate, posix_fallocate allocates the
    pages instead (a single thread).
    """
    anchor = ctypes.c_char.from_buffer(mapping)
    try:
        start = ctypes.addressof(anchor)
        threads = _FILL_THREADS if nbytes >= PARALLEL_FILL else 1
        step = -(-nbytes // threads // mmap.PAGESIZE) * mmap.PAGESIZE
        failures = [0] * threads

        def populate(part: int) -> None:
            length = min(step, nbytes - part * step)
            if length > 0 and _libc.madvise(start + part * step, length, _MADV_POPULATE_WRITE) != 0:
                failures[part] = ctypes.get_errno()

        helpers = [threading.Thread(target=populate, args=(part,)) for part in range(1, threads)]
        for helper in helpers:
            helper.start()
        populate(0)
        for helper in helpers:
            helper.join()
    finally:
        del anchor
    failure = max(failures)
    if failure == errno.EINVAL:
        os.posix_fallocate(fd, 0, nbytes)
    elif failure in (errno.EFAULT, errno.ENOMEM):  # what populate says when the tmpfs has no room left
        raise OSError(errno.ENOSPC, f"cannot give a segment of {nbytes} bytes its pages: {DIRECTORY} is full")
    elif failure:
        raise OSError(failure, f"cannot give a segment of {nbytes} bytes its pages: {os.strerror(failure)}")


@dataclass
class Segment:
    name: str
    fd: int
    size: int
    view: memoryview

    def in_use(self) -> bool:
        """Whether another process maps this segment (holds its shared lock)."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        return False

    def named(self) -> bool:
        """Whether the segment's name still leads to it."""
        try:
            return os.stat(os.path.join(DIRECTORY, self.name)).st_ino == os.fstat(self.fd).st_ino
        except FileNotFoundError:
            return False

    def close(self, unlink: bool = True) -> None:
        if unlink:
            try:
                os.unlink(os.path.join(DIRECTORY, self.name))
            except FileNotFoundError:
                pass
        self.view.release()
        os.close(self.fd)


class Pool:
    """The segments one process owns: lent (named in a message), held (still mapped by a receiver), free (warm).

    Thread-safe: a client's user thread lends, its I/O thread gives back.
    """

    def __init__(self, tag: str, keep_bytes: int = POOL_BYTES):
        self.tag = tag
        self.keep_bytes = keep_bytes
        self._lent: dict[str, Segment] = {}
        self._held: dict[str, Segment] = {}
        self._free: list[Segment] = []
        #: segments of others named in messages this process sent, their mappings kept until given back
        self._borrowed: dict[str, list[mmap.mmap]] = {}
        self._lock = threading.Lock()
        atexit.register(self.close)

    def lend(self, buffer: memoryview) -> str:
        """Copy ``buffer`` into a segment, unless it lies unchanged in one already, and return the descriptor."""
        data = buffer.cast("B") if buffer.format != "B" or buffer.ndim != 1 else buffer
        held = _received.holding(data)
        if held is not None:
            name, offset, mapping = held
            with self._lock:
                self._borrowed.setdefault(name, []).append(mapping)
            return reference(name, data.nbytes, offset)
        segment = self._take(data.nbytes)
        segment.view[:data.nbytes] = data
        with self._lock:
            self._lent[segment.name] = segment
        return reference(segment.name, data.nbytes)

    def _take(self, nbytes: int) -> Segment:
        self._recheck()
        while True:
            with self._lock:
                fits = [s for s in self._free if nbytes <= s.size <= 2 * nbytes]
                if not fits:
                    break
                segment = min(fits, key=lambda s: s.size)
                self._free.remove(segment)
            if segment.named():
                return segment
            segment.close(unlink=False)  # swept away (a stopping hub removes its cluster's names)
        name = f"pxmagic-{self.tag}-{os.getpid()}-{next(_numbers)}"
        fd = os.open(os.path.join(DIRECTORY, name), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        mapping = None
        try:
            os.ftruncate(fd, nbytes)
            mapping = mmap.mmap(fd, nbytes)
            _fill(mapping, fd, nbytes)
            view = memoryview(mapping)
        except BaseException:
            if mapping is not None:
                mapping.close()  # its pages go at once, not when the error's traceback is dropped
            os.close(fd)
            os.unlink(os.path.join(DIRECTORY, name))
            raise
        return Segment(name, fd, nbytes, view)

    def give_back(self, names: Iterable[str], reusable: bool = True) -> None:
        """Segments whose receivers have all mapped them or failed: free again, unless someone still maps them.

        A segment still mapped elsewhere is left there, named, to be looked
        at again later: its receivers may keep their array for long.  With
        ``reusable=False`` (a receiver may still come), it is never reused.
        A borrowed segment's mapping is let go.
        """
        names = list(names)
        with self._lock:
            returned = [self._lent.pop(name) for name in names if name in self._lent]
            for name in names:
                if name in self._borrowed:
                    self._borrowed[name].pop()
                    if not self._borrowed[name]:
                        del self._borrowed[name]
        for segment in returned:
            if not reusable:
                segment.close()
            elif segment.in_use():
                with self._lock:
                    self._held[segment.name] = segment
            else:
                self._keep(segment)

    def _keep(self, segment: Segment) -> None:
        with self._lock:
            self._free.append(segment)
            doomed = []
            while sum(s.size for s in self._free) > self.keep_bytes:
                doomed.append(self._free.pop(0))
        for old in doomed:
            old.close()

    def _recheck(self) -> None:
        """Take back held segments nobody maps any more: a receiver that dropped its array frees its segment."""
        with self._lock:
            held = list(self._held.values())
        for segment in held:
            if not segment.in_use():
                with self._lock:
                    self._held.pop(segment.name, None)
                self._keep(segment)

    def names(self) -> list[str]:
        with self._lock:
            return [s.name for s in (*self._lent.values(), *self._held.values(), *self._free)]

    def close(self) -> None:
        """Remove every segment's name; receivers keep what they have mapped."""
        with self._lock:
            segments = [*self._lent.values(), *self._held.values(), *self._free]
            self._lent.clear()
            self._held.clear()
            self._free.clear()
            self._borrowed.clear()
        for segment in segments:
            segment.close()


def sweep(tag: str, everything: bool = False, keep: Iterable[str] = ()) -> int:
    """Remove cluster ``tag``'s segments whose owner process is gone (or all of them); how many went."""
    kept, removed = set(keep), 0
    try:
        names = os.listdir(DIRECTORY)
    except OSError:
        return 0
    prefix = f"pxmagic-{tag}-"
    for name in names:
        if not name.startswith(prefix) or name in kept:
            continue
        pid = owner_pid(name)
        if pid is None or not (everything or not _alive(pid)):
            continue
        try:
            os.unlink(os.path.join(DIRECTORY, name))
            removed += 1
        except FileNotFoundError:
            pass
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
