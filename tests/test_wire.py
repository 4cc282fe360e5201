"""Messages pxmagic builds frame by frame read back as standard Jupyter messages."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest
import zmq
from jupyter_client.session import Session

from pxmagic import wire


def test_a_reply_built_from_request_frames_is_a_standard_jupyter_message():
    session = Session(key=b"k" * 32, username="someone")
    request = session.msg("apply_request", {}, metadata={"targets": [0]})
    parts = session.serialize(request)[1:]  # signature, header, parent, metadata, content
    frames = wire.reply(session, "apply_reply", parts, {"status": "ok"}, {"quiet": True}, [b"client"])
    idents, signed = session.feed_identities(frames)
    reply = session.deserialize(signed)  # checks the signature, parses the dates
    assert idents == [b"client"]
    assert reply["msg_type"] == "apply_reply" and reply["content"] == {"status": "ok"}
    assert reply["parent_header"]["msg_id"] == request["header"]["msg_id"]
    assert reply["metadata"] == {"quiet": True}
    age = datetime.now(timezone.utc) - reply["header"]["date"]
    assert 0 <= age.total_seconds() < 5


def test_an_error_reply_keeps_its_content():
    session = Session(key=b"k" * 32)
    parts = session.serialize(session.msg("apply_request", {}))[1:]
    content = {"status": "error", "ename": "ValueError", "evalue": "bad", "traceback": []}
    reply = session.deserialize(session.feed_identities(wire.reply(session, "apply_reply", parts, content, {}, []))[1])
    assert reply["content"] == content


def signed_parts(session: Session, msg_type: str = "apply_request") -> list[zmq.Frame]:
    """signature, header, parent, metadata, content of a fresh message, as a socket gives them."""
    return [zmq.Frame(part) for part in session.serialize(session.msg(msg_type, {}))[1:]]


@pytest.mark.parametrize("replay", [wire.FRESH, wire.UNSEEN, wire.AGAIN])
def test_every_rule_refuses_a_wrong_or_missing_signature_and_a_short_message(replay):
    ours, theirs = Session(key=b"k" * 32), Session(key=b"x" * 32)
    assert wire.check(ours, signed_parts(theirs), replay) == ("its signature is missing or wrong", False)
    unsigned = [zmq.Frame(b""), *signed_parts(ours)[1:]]
    assert wire.check(ours, unsigned, replay) == ("its signature is missing or wrong", False)
    assert wire.check(ours, signed_parts(ours)[:4], replay).reason == "it has 4 parts after the delimiter, not at least 5"
    assert wire.check(ours, signed_parts(ours), replay) is None


def test_a_request_is_acted_on_once_and_a_replay_is_answered_with_the_reason():
    session = Session(key=b"k" * 32)
    request = signed_parts(session)
    assert wire.check(session, request, wire.FRESH) is None
    refusal = wire.check(session, request, wire.FRESH)
    assert refusal.authentic and "received before (a replay)" in refusal.reason


def test_a_reply_seen_again_is_refused_but_a_stored_result_may_come_again():
    session = Session(key=b"k" * 32)
    reply, stored = signed_parts(session, "apply_reply"), signed_parts(session, "apply_reply")
    assert wire.check(session, reply, wire.UNSEEN) is None
    assert wire.check(session, reply, wire.UNSEEN) == ("it was received before (a replay)", True)
    assert [wire.check(session, stored, wire.AGAIN) for _ in range(3)] == [None] * 3
