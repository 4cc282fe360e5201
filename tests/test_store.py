"""The hub's result store without sockets: culling, waiting clients, purging, the SQLite archive."""
from __future__ import annotations

import argparse
import hmac
import json
import os
import sqlite3
import stat

import pytest
import zmq
from jupyter_client.session import Session

from pxmagic.tags import MAC_MIN, matches, tag_frames
from pxmagic.hub.archive import ArchiveError, SqliteArchive, decode_frames, encode_frames
from pxmagic.hub.options import StoreOptions, add_store_options, store_options
from pxmagic.hub.store import COPY_BELOW, ResultStore, Waiter
from pxmagic.protocol import (
    RELEASE_MIN,
    RESULT_DONE,
    RESULT_MISSING,
    RESULT_PENDING,
    Found,
    ProtocolError,
    purge_selection,
    received_msg_ids,
    split_stored_results,
    stored_results_message,
)


def parts(session: Session | None = None, msg_id: str = "m", size: int = 0) -> list:
    """A signed reply's frames, with a tagged buffer of ``size`` bytes."""
    session = session or Session(key=b"key")
    buffers = [b"x" * size] if size else []
    msg = session.msg("apply_reply", {"status": "ok"}, parent={"msg_id": msg_id},
                      metadata={"buffer_tags": tag_frames(session.key, buffers)})
    return session.serialize(msg)[1:] + buffers


def nothing_outstanding(msg_id: str) -> bool:
    return False


def states(store: ResultStore, msg_ids: list[str], outstanding=nothing_outstanding) -> list[str]:
    return [found.state for found in store.find(msg_ids, outstanding, Waiter(b"c", {}))]


def test_oldest_results_are_culled_past_the_count_limit():
    store = ResultStore(max_results=3)
    for i in range(5):
        store.add(f"m{i}", 0, parts(msg_id=f"m{i}"))
    assert states(store, [f"m{i}" for i in range(5)]) == [RESULT_MISSING] * 2 + [RESULT_DONE] * 3
    assert (len(store), store.culled) == (3, 2)


def test_oldest_results_are_culled_past_the_byte_limit():
    one = sum(map(len, parts(size=1000)))
    store = ResultStore(max_bytes=2 * one + 10)
    for i in range(4):
        store.add(f"m{i}", 0, parts(size=1000))
    assert states(store, ["m0", "m1", "m2", "m3"]) == [RESULT_MISSING] * 2 + [RESULT_DONE] * 2
    assert store.nbytes == 2 * one and store.culled == 2


def test_a_result_bigger_than_the_byte_limit_is_not_kept_and_evicts_nothing():
    store = ResultStore(max_bytes=5000)
    store.add("small", 0, parts())
    store.add("big", 0, parts(size=10_000))
    assert states(store, ["small", "big"]) == [RESULT_DONE, RESULT_MISSING]
    assert (store.too_big, store.culled) == (1, 0)


def test_small_received_frames_are_copied_big_ones_kept_and_the_engine_remembered():
    small = [zmq.Frame(b"sig"), zmq.Frame(b"{}"), zmq.Frame(b"{}"), zmq.Frame(b"{}"), zmq.Frame(b"{}")]
    big = zmq.Frame(b"x" * COPY_BELOW)
    store = ResultStore()
    store.add("m", 3, [*small, big])
    [found] = store.find(["m"], nothing_outstanding, Waiter(b"c", {}))
    assert (found.msg_id, found.state, found.engine_id) == ("m", RESULT_DONE, 3)
    kept = found.parts
    assert [type(part) for part in kept] == [bytes] * 5 + [zmq.Frame]
    assert kept[:5] == [b"sig", b"{}", b"{}", b"{}", b"{}"] and kept[5] is big
    assert store.nbytes == 3 + 4 * 2 + COPY_BELOW


def test_a_result_stored_again_replaces_the_first_and_its_bytes():
    store = ResultStore()
    store.add("m", 0, parts(size=100))
    store.add("m", 1, parts(size=10))
    assert len(store) == 1 and store.nbytes == sum(map(len, parts(size=10)))
    assert store.find(["m"], nothing_outstanding, Waiter(b"c", {}))[0].engine_id == 1


def test_a_client_asking_for_a_pending_result_gets_it_when_it_comes():
    store = ResultStore()
    waiter = Waiter(b"late-client", {"msg_id": "request"})
    assert states(store, ["m"], outstanding=lambda m: m == "m") == [RESULT_PENDING]
    store.find(["m"], lambda m: True, waiter)
    waiting = store.add("m", 0, parts())
    assert waiting[-1] == waiter and len(waiting) == 2
    assert store.add("m", 0, parts()) == [], "a waiter is served once"


def test_purge_all_by_msg_id_and_by_engine():
    store = ResultStore()
    for i in range(6):
        store.add(f"m{i}", i % 3, parts())
    assert store.purge(msg_ids=["m0", "nope"]) == 1
    assert store.purge(engine_ids=[1]) == 2
    assert states(store, [f"m{i}" for i in range(6)]) == [
        RESULT_MISSING, RESULT_MISSING, RESULT_DONE, RESULT_DONE, RESULT_MISSING, RESULT_DONE]
    assert store.purge(everything=True) == 3
    assert (len(store), store.nbytes) == (0, 0)


@pytest.mark.parametrize("kind, max_results, max_bytes, complaint", [
    ("redis", 10, 10, "unknown result store 'redis'"),
    ("memory", -1, 10, "cannot be negative"),
    ("sqlite", 10, -5, "cannot be negative"),
])
def test_bad_store_options_are_named(kind, max_results, max_bytes, complaint):
    with pytest.raises(ValueError, match=complaint):
        StoreOptions(kind, max_results, max_bytes)


def test_store_options_round_trip_through_hub_arguments():
    options = StoreOptions("sqlite", 12, 3 * 2**20)
    assert options.arguments() == ["--store", "sqlite", "--max-results", "12", "--max-results-mb", "3.0"]
    parser = argparse.ArgumentParser()
    add_store_options(parser)
    assert store_options(parser.parse_args(options.arguments())) == options, "and back"
    assert store_options(parser.parse_args([])) == StoreOptions()


# -- the reply that carries stored results ---------------------------------------
def test_stored_results_message_splits_back_into_each_results_frames():
    a, b = parts(msg_id="a"), parts(msg_id="b", size=10)
    content, buffers = stored_results_message([
        Found("a", RESULT_DONE, 0, a), Found("p", RESULT_PENDING, None, []), Found("b", RESULT_DONE, 1, b)])
    split = split_stored_results(content, buffers)
    assert [(entry["msg_id"], frames) for entry, frames in split] == [("a", a), ("p", []), ("b", b)]


def test_a_result_reply_whose_frames_do_not_add_up_is_refused():
    content, buffers = stored_results_message([Found("a", RESULT_DONE, 0, parts())])
    with pytest.raises(ProtocolError, match="does not match its 3 frames"):
        split_stored_results(content, buffers[:3])
    with pytest.raises(ProtocolError, match="needs a 'results' list"):
        split_stored_results({"results": "a"}, [])


@pytest.mark.parametrize("content, complaint", [
    ({"msg_ids": "m1"}, "needs a list of msg_ids"),
    ({"engine_ids": [0, "1"]}, "engine_ids must be a list of integers"),
    ({"engine_ids": [True]}, "engine_ids must be a list of integers"),
])
def test_malformed_purge_requests_are_named(content, complaint):
    with pytest.raises(ProtocolError, match=complaint):
        purge_selection(content)


def test_released_results_leave_memory_if_large_and_stay_in_the_archive(tmp_path):
    session = Session(key=b"key")
    store = ResultStore(archive=SqliteArchive(tmp_path / "results.sqlite", session))
    store.add("big", 0, parts(session, "big", size=RELEASE_MIN))
    store.add("small", 0, parts(session, "small", size=10))
    store.release(["big", "small", "unknown"])
    assert "big" not in store and "small" in store
    assert store.released == 1 and store.nbytes == sum(map(len, parts(session, "small", size=10)))
    assert states(store, ["big", "small"]) == [RESULT_DONE, RESULT_DONE], "the archive still has it"
    store.close()


def test_a_requests_received_list_must_name_msg_ids():
    assert received_msg_ids({}) == []
    assert received_msg_ids({"received": ["a/0", "b"]}) == ["a/0", "b"]
    for bad in ("a", [1], None, {"a": 1}):
        with pytest.raises(ProtocolError, match="'received' metadata needs a list of msg_ids"):
            received_msg_ids({"received": bad})


# -- the SQLite archive -----------------------------------------------------------
def test_frames_round_trip_through_one_blob():
    frames = [b"", b"abc", zmq.Frame(b"z" * 1000), memoryview(b"xy")]
    assert [bytes(f) for f in decode_frames(encode_frames(frames))] == [b"", b"abc", b"z" * 1000, b"xy"]
    with pytest.raises(ValueError, match="add up to"):
        decode_frames(encode_frames(frames) + b"junk")


def test_the_archive_keeps_what_memory_culled_and_forgets_what_is_purged(tmp_path):
    session = Session(key=b"key")
    store = ResultStore(max_results=1, archive=SqliteArchive(tmp_path / "results.sqlite", session))
    kept = {f"m{i}": parts(session, f"m{i}", size=i) for i in range(4)}
    for engine_id, (msg_id, frames) in enumerate(kept.items()):
        store.add(msg_id, engine_id % 2, frames)
    assert len(store) == 1
    found = store.find(list(kept), nothing_outstanding, Waiter(b"c", {}))
    assert [(f.msg_id, f.state, f.engine_id) for f in found] == [("m0", RESULT_DONE, 0), ("m1", RESULT_DONE, 1),
                                                   ("m2", RESULT_DONE, 0), ("m3", RESULT_DONE, 1)]
    assert all([bytes(f) for f in result.parts] == [bytes(f) for f in kept[result.msg_id]] for result in found)
    store.purge(msg_ids=["m0"])
    store.purge(engine_ids=[1])
    assert states(store, list(kept)) == [RESULT_MISSING, RESULT_MISSING, RESULT_DONE, RESULT_MISSING]
    store.close()


def test_results_of_an_earlier_run_come_back_signed_with_the_new_key(tmp_path):
    path = tmp_path / "results.sqlite"
    first, second = Session(key=b"first run"), Session(key=b"second run")
    store = ResultStore(archive=SqliteArchive(path, first))
    store.add("m", 0, parts(first, "m", size=MAC_MIN))
    store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    store = ResultStore(archive=SqliteArchive(path, second))
    [found] = store.find(["m"], nothing_outstanding, Waiter(b"c", {}))
    frames = found.parts
    assert found.state == RESULT_DONE
    assert hmac.compare_digest(bytes(frames[0]), second.sign(frames[1:5]))
    assert bytes(frames[5]) == b"x" * MAC_MIN
    tags = json.loads(bytes(frames[3]))["buffer_tags"]
    assert matches(second.key, tags, frames[5:]) and not matches(first.key, tags, frames[5:])
    store.close()


def test_a_file_that_is_not_a_database_is_named(tmp_path):
    path = tmp_path / "results.sqlite"
    path.write_bytes(b"this is no SQLite file" * 100)
    with pytest.raises(ArchiveError, match="cannot keep results in .*results.sqlite"):
        SqliteArchive(path, Session(key=b"k"))


def test_a_result_that_cannot_be_written_is_logged_and_the_others_are_kept(tmp_path, caplog):
    session = Session(key=b"key")
    archive = SqliteArchive(tmp_path / "results.sqlite", session)
    archive.put("good", 0, parts(session, "good"))
    archive.put("bad", 0, [object()])  # has no length: fails to encode, like an unwritable blob would
    archive.put("also good", 1, parts(session, "also good"))
    with caplog.at_level("ERROR", logger="pxmagic.hub"):
        found = archive.get_many(["good", "bad", "also good"])
    assert sorted(found) == ["also good", "good"]
    archive.close()
    rows = sqlite3.connect(tmp_path / "results.sqlite").execute("SELECT count(*) FROM results").fetchone()
    assert rows == (2,)


def test_the_store_remembers_why_a_result_is_gone():
    store = ResultStore(max_results=2, max_bytes=1000)
    store.add("big", 0, [b"x" * 2000])
    for name in ("a", "b", "c"):
        store.add(name, 0, parts())
    store.purge(msg_ids=["c"])
    assert "larger than the hub's result store limit" in store.why_missing("big")
    assert "culled" in store.why_missing("a")
    assert "purged" in store.why_missing("c")
    assert "never submitted" in store.why_missing("unknown")
    content, _ = stored_results_message(store.find(["a", "b"], nothing_outstanding, Waiter(b"c", {})),
                                        store.why_missing)
    assert [entry.get("reason", "")[:6] for entry in content["results"]] == ["culled", ""]
