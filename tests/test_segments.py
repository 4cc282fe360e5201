"""The rules of shared memory segments, without a cluster: naming, pooling, refusing, sweeping."""
from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

from pxmagic import sharedmem
from pxmagic.hub.segments import SegmentBook

TAG = sharedmem.cluster_tag(b"test key")


@pytest.fixture
def pool():
    pool = sharedmem.Pool(TAG, keep_bytes=64 << 20)
    yield pool
    pool.close()


def name_of(descriptor: str) -> str:
    return sharedmem.parse_reference(TAG, descriptor)[0]


def test_a_lent_buffer_is_read_back_by_a_receiver(pool):
    data = bytes(range(256)) * 8192
    descriptor = pool.lend(memoryview(data))
    view = sharedmem.open_segment(TAG, descriptor)
    assert bytes(view) == data
    view[:4] = b"mine"  # a receiver's writes are its own
    assert bytes(sharedmem.open_segment(TAG, descriptor)[:4]) == data[:4]


def test_a_large_buffer_filled_from_several_threads_is_read_back_whole(pool):
    size = sharedmem.PARALLEL_FILL + 3 * 4096 + 123  # the threads' parts end off page and buffer boundaries
    data = os.urandom(size)
    assert bytes(sharedmem.open_segment(TAG, pool.lend(memoryview(data)))) == data


@pytest.fixture
def small_shm(tmp_path, monkeypatch):
    """A 1 MB tmpfs in place of /dev/shm (mounting needs root, as CI runs)."""
    mount = tmp_path / "shm"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=True)
    monkeypatch.setattr(sharedmem, "DIRECTORY", str(mount))
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_shm_is_an_error_at_once_and_leaves_no_segment(small_shm, pool):
    with pytest.raises(OSError, match=f"segment of 2097152 bytes its pages: {small_shm} is full") as error:
        pool.lend(memoryview(bytes(2 << 20)))
    assert error.value.errno == errno.ENOSPC
    assert os.listdir(small_shm) == []
    data = os.urandom(512 << 10)
    assert bytes(sharedmem.open_segment(TAG, pool.lend(memoryview(data)))) == data, "what fits still goes"


def test_a_segment_is_reused_only_once_nobody_maps_it(pool):
    first = pool.lend(memoryview(bytes(2 << 20)))
    held = sharedmem.open_segment(TAG, first)
    pool.give_back([name_of(first)])
    second = pool.lend(memoryview(bytes(2 << 20)))
    assert name_of(second) != name_of(first)  # the first is still mapped
    held.release()
    pool.give_back([name_of(second)])
    third = pool.lend(memoryview(b"x" * (2 << 20)))
    assert name_of(third) in (name_of(first), name_of(second))
    assert len(pool.names()) == 2


def test_a_segment_lent_to_a_receiver_that_may_still_come_is_never_reused(pool):
    first = pool.lend(memoryview(bytes(2 << 20)))
    pool.give_back([name_of(first)], reusable=False)
    assert not os.path.exists(os.path.join(sharedmem.DIRECTORY, name_of(first)))
    assert name_of(pool.lend(memoryview(bytes(2 << 20)))) != name_of(first)


def test_the_pool_keeps_at_most_its_bytes_warm():
    pool = sharedmem.Pool(TAG, keep_bytes=5 << 20)
    try:
        lent = [name_of(pool.lend(memoryview(bytes(2 << 20)))) for _ in range(4)]
        pool.give_back(lent)
        assert len(pool.names()) == 2
    finally:
        pool.close()
    assert not [n for n in lent if os.path.exists(os.path.join(sharedmem.DIRECTORY, n))]


@pytest.mark.parametrize("descriptor, reason", [
    (f"shm:pxmagic-{sharedmem.cluster_tag(b'other')}-1-1:10", "another cluster"),
    ("shm:../../etc/passwd:10", "not the name of a pxmagic segment"),
    (f"shm:pxmagic-{TAG}-1-1:0", "not a buffer size"),
    (f"shm:pxmagic-{TAG}-1-1:ten", "not a buffer size"),
    (f"shm:pxmagic-{TAG}-1-1:10@-4", "not an offset"),
    (f"shm:pxmagic-{TAG}-1-424242:10", "cannot be opened"),
])
def test_a_bad_reference_is_refused_with_its_reason(descriptor, reason):
    with pytest.raises(sharedmem.SegmentRefused, match=reason):
        sharedmem.open_segment(TAG, descriptor)


def test_a_reference_beyond_the_segment_is_refused(pool):
    name = name_of(pool.lend(memoryview(bytes(1 << 20))))
    with pytest.raises(sharedmem.SegmentRefused, match="holds 1048576 bytes, not the 2097152 named"):
        sharedmem.open_segment(TAG, sharedmem.reference(name, 2 << 20))
    with pytest.raises(sharedmem.SegmentRefused, match="holds 1048576 bytes, not the 1052672 named"):
        sharedmem.open_segment(TAG, sharedmem.reference(name, 1 << 20, offset=4096))


@pytest.fixture
def relay():
    """A second process's pool, as an engine's is: it sends on buffers it received."""
    relay = sharedmem.Pool(TAG, keep_bytes=64 << 20)
    yield relay
    relay.close()


def test_a_received_buffer_sent_on_unchanged_names_its_segment_again(pool, relay):
    data = os.urandom(2 << 20)
    descriptor = pool.lend(memoryview(data))
    received = sharedmem.open_segment(TAG, descriptor)
    assert name_of(relay.lend(received)) == name_of(descriptor)
    part = relay.lend(received[8197:8197 + (1 << 20)])  # a view from the middle: named by its offset
    assert name_of(part) == name_of(descriptor)
    assert bytes(sharedmem.open_segment(TAG, part)) == data[8197:8197 + (1 << 20)]
    assert relay.names() == [], "no segment of its own"


def test_a_received_buffer_written_into_is_copied_with_its_changes(pool, relay):
    data = os.urandom(2 << 20)
    received = sharedmem.open_segment(TAG, pool.lend(memoryview(data)))
    received[(1 << 20) + 7] = (data[(1 << 20) + 7] + 1) % 256  # one page of a private copy
    descriptor = relay.lend(received)
    assert name_of(descriptor) in relay.names()
    assert bytes(sharedmem.open_segment(TAG, descriptor)) == bytes(received) != data


def test_a_borrowed_segment_is_held_until_its_borrower_gives_it_back(pool, relay):
    descriptor = pool.lend(memoryview(bytes(2 << 20)))
    received = sharedmem.open_segment(TAG, descriptor)
    relay.lend(received)
    del received  # the relay's message may still be on its way: its mapping holds the segment
    pool.give_back([name_of(descriptor)])
    assert name_of(pool.lend(memoryview(bytes(2 << 20)))) != name_of(descriptor)
    relay.give_back([name_of(descriptor)])
    assert name_of(pool.lend(memoryview(bytes(2 << 20)))) == name_of(descriptor)


def test_sweep_removes_the_segments_of_dead_owners_only(pool):
    code = (f"import os; from pxmagic import sharedmem; p = sharedmem.Pool({TAG!r}); "
            "print(p.lend(memoryview(bytes(2 << 20)))); os._exit(0)")  # dies without cleaning up
    orphan = name_of(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip())
    mine = name_of(pool.lend(memoryview(bytes(2 << 20))))
    assert sharedmem.sweep(TAG) == 1
    assert not os.path.exists(os.path.join(sharedmem.DIRECTORY, orphan))
    assert os.path.exists(os.path.join(sharedmem.DIRECTORY, mine))
    assert sharedmem.sweep(TAG, everything=True) == 1


def test_the_hub_tells_an_engine_once_and_lets_go_when_the_client_has_the_result():
    book = SegmentBook(patience=60)
    book.forwarded("m1", 0, ["a", "b"], ["mapped"], now=0.0)
    book.forwarded("m2", 1, ["c"], ["mapped"], now=1.0)
    assert book.announcements(0) == ["a", "b"] and book.announcements(0) == []
    book.received(["m1"])
    assert len(book) == 1
    book.expire(now=30.0)
    assert len(book) == 1
    book.expire(now=61.5)
    assert len(book) == 0 and book.announcements(1) == ["c"]


def test_a_received_buffer_whose_segment_was_swept_is_copied(pool, relay):
    data = os.urandom(2 << 20)
    descriptor = pool.lend(memoryview(data))
    received = sharedmem.open_segment(TAG, descriptor)
    os.unlink(os.path.join(sharedmem.DIRECTORY, name_of(descriptor)))  # as a sweep does when its owner dies
    sent = relay.lend(received)
    assert name_of(sent) in relay.names(), "a receiver could not open the swept name"
    assert bytes(sharedmem.open_segment(TAG, sent)) == data

