"""Messages pxmagic builds frame by frame read back as standard Jupyter messages."""
from __future__ import annotations

from datetime import datetime, timezone

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
