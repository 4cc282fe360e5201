"""The hub's routing rules, without sockets."""
from __future__ import annotations

import pytest

from pxmagic.hub.router import Router
from pxmagic.protocol import ProtocolError, engine_msg_id, request_targets


def header(msg_type: str = "apply_request", msg_id: str = "req") -> dict:
    return {"msg_id": msg_id, "msg_type": msg_type}


def test_request_fans_out_with_per_engine_ids():
    router = Router()
    for engine_id in (0, 1, 2):
        router.add_engine(engine_id)
    routing = router.route_request(b"client-a", header(), [0, 2])
    assert [(d.engine_id, d.header["msg_id"]) for d in routing.deliveries] == [(0, "req/0"), (2, "req/2")]
    assert routing.failures == []
    assert router.reply_client("req/2") == b"client-a"
    assert router.reply_client("req/2") is None, "a reply is routed once"


def test_unknown_target_fails_at_once_with_an_engine_error():
    router = Router()
    router.add_engine(0)
    routing = router.route_request(b"c", header("execute_request"), [0, 5])
    [failure] = routing.failures
    assert failure.reply_type == "execute_reply" and failure.parent["msg_id"] == engine_msg_id("req", 5)
    assert failure.content["ename"] == "EngineError" and "engine 5 does not exist" in failure.content["evalue"]


def test_dead_engine_fails_what_it_owed():
    router = Router()
    router.add_engine(0)
    router.add_engine(1)
    router.route_request(b"c", header(msg_id="r1"), [0, 1])
    router.route_request(b"d", header(msg_id="r2"), [1])
    failures = router.remove_engine(1, "died")
    assert sorted((f.client, f.parent["msg_id"]) for f in failures) == [(b"c", "r1/1"), (b"d", "r2/1")]
    assert all("engine 1 died" in f.content["evalue"] for f in failures)
    assert router.reply_client("r1/0") == b"c"
    assert router.route_request(b"c", header(msg_id="r3"), [1]).failures


@pytest.mark.parametrize("metadata", [{}, {"targets": []}, {"targets": ["0"]}, {"targets": [1, 1]},
                                      {"targets": [True]}])
def test_malformed_targets_are_rejected(metadata):
    with pytest.raises(ProtocolError):
        request_targets(metadata)
