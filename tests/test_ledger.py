"""The client's request book (which reply and output fills which AsyncResult slot), without sockets."""
from __future__ import annotations

import pytest

from pxmagic.client.asyncresult import AsyncResult
from pxmagic.client.ledger import Ledger
from pxmagic.error import CompositeError, EngineError, RemoteError


def decode(msg: dict, engine_id: int | None) -> tuple:
    content = msg["content"]
    if content.get("status") == "error":
        return None, RemoteError(content["ename"], content["evalue"], engine_id=engine_id)
    return content.get("value"), None


def reply(msg_id: str, value=None, *, metadata: dict | None = None, buffers: list | None = None, **content) -> dict:
    return {"msg_type": "apply_reply", "header": {"msg_id": f"reply-{msg_id}"}, "parent_header": {"msg_id": msg_id},
            "metadata": metadata or {}, "content": {"status": "ok", "value": value, **content},
            "buffers": buffers or []}


def output(msg_id: str, msg_type: str, **content) -> dict:
    return {"msg_type": msg_type, "header": {}, "parent_header": {"msg_id": msg_id}, "metadata": {},
            "content": content}


def sent(ledger: Ledger, msg_ids: list[str], engine_ids: list[int | None], single: bool = False) -> AsyncResult:
    result = AsyncResult(msg_ids, engine_ids, single, "apply")
    ledger.add(result)
    return result


def test_replies_fill_their_slots_and_output_ends_with_idle():
    ledger = Ledger(decode)
    result = sent(ledger, ["r/0", "r/1"], [0, 1])
    ledger.output(1, output("r/1", "stream", name="stdout", text="hi\n"))
    ledger.reply(reply("r/1", "b"))
    assert not result.done() and ledger.outstanding() == ["r/0"]
    ledger.reply(reply("r/0", "a"))
    assert result.result(0) == ["a", "b"]
    assert not result.wait_for_output(0), "no idle yet: output may still come"
    ledger.output(0, output("r/0", "status", execution_state="idle"))
    ledger.output(1, output("r/1", "status", execution_state="idle"))
    assert result.wait_for_output(0) and result.stdout == {1: "hi\n"}
    assert ledger.slots == {}, "a slot goes once its reply and its output are in"


def test_a_second_reply_or_unknown_output_changes_nothing():
    ledger = Ledger(decode)
    result = sent(ledger, ["r"], [0], single=True)
    ledger.reply(reply("r", 1, metadata={"quiet": True}))
    ledger.reply(reply("r", 2))
    ledger.output(0, output("other", "stream", name="stdout", text="not ours"))
    assert result.result(0) == 1 and result.wait_for_output(0) and result.stdout == {}


def test_a_silent_hub_fails_what_is_outstanding_and_a_late_reply_is_kept_for_get_result():
    ledger = Ledger(decode)
    done = sent(ledger, ["d"], [0], single=True)
    ledger.reply(reply("d", "early", metadata={"quiet": True}))
    waiting = sent(ledger, ["w"], [1], single=True)
    ledger.give_up("the hub is unreachable")
    with pytest.raises(EngineError, match="the hub is unreachable; request w did not complete"):
        waiting.result(0)
    assert done.result(0) == "early" and ledger.outstanding() == []
    assert ledger.find("w") is None, "get_result asks the hub for it"
    ledger.reply(reply("w", "late"))
    late = ledger.find("w")
    assert late is not waiting and late.result(0) == "late"


def test_a_refused_request_fails_every_engine_copy():
    ledger = Ledger(decode)
    result = sent(ledger, ["req/0", "req/2"], [0, 2])
    refusal = reply("req", status="error", ename="ProtocolError", evalue="its timeout is -1")
    ledger.reply(refusal)
    with pytest.raises(CompositeError) as info:
        result.result(0)
    assert [(engine_id, error.evalue) for engine_id, error in info.value.elist] == [
        (0, "its timeout is -1"), (2, "its timeout is -1")]
    assert result.wait_for_output(0), "nothing ran, so no output is awaited"


def test_a_balanced_reply_names_its_engine():
    ledger = Ledger(decode)
    result = sent(ledger, ["t"], [None], single=True)
    ledger.reply(reply("t", 5, metadata={"engine_id": 3}))
    assert result.result(0) == 5 and result.engine_ids == [3]


def test_only_large_direct_replies_are_noted_as_received():
    ledger = Ledger(decode)
    sent(ledger, ["small", "big", "kept"], [0, 0, 0])
    ledger.reply(reply("small", buffers=[memoryview(b"x")]))
    ledger.reply(reply("big", buffers=[memoryview(bytes(2 ** 20))]))
    ledger.reply(reply("kept", buffers=[memoryview(bytes(2 ** 20))]), stored=True)
    assert ledger.take_received() == ["big"] and ledger.take_received() == []


def test_stored_results_fill_the_slots_get_result_asked_for():
    ledger = Ledger(decode)
    result = AsyncResult(["a", "b"], [None, None], False, "get_result")
    ledger.expect(result, {"a": 0, "b": 1})
    ledger.reply(reply("a", 1), engine_id=4, stored=True)
    ledger.unsigned_stored_result("b", 5)
    with pytest.raises(CompositeError, match="not signed with this cluster's key"):
        result.result(0)
    assert result.engine_ids == [4, 5] and ledger.slots == {}


def test_an_ask_that_failed_expects_nothing():
    ledger = Ledger(decode)
    result = AsyncResult(["a"], [None], True, "get_result")
    ledger.expect(result, {"a": 0})
    ledger.unexpect(result, ["a"])
    assert ledger.outstanding() == [] and ledger.find("a") is None


def test_outstanding_by_engine_and_what_to_wait_for():
    ledger = Ledger(decode)
    first = sent(ledger, ["x/0", "x/1"], [0, 1])
    second = sent(ledger, ["y"], [None], single=True)
    assert ledger.outstanding({1}) == ["x/1"] and ledger.outstanding() == ["x/0", "x/1", "y"]
    assert ledger.results_of(None) == {first, second}
    assert ledger.results_of("y") == {second} and ledger.awaiting("y")
    with pytest.raises(TypeError, match="jobs are AsyncResults, futures or msg_ids, not 3"):
        ledger.results_of([3])


def test_retries_are_counted_and_recent_results_are_capped():
    ledger = Ledger(decode, max_results=2)
    task = sent(ledger, ["t"], [None], single=True)
    ledger.retried("t", {"tries": 2, "engine_id": 0, "reason": "died"})
    assert task.tries == 2 and task.retried == [(0, 0, "died")]
    sent(ledger, ["u"], [0], single=True)
    sent(ledger, ["v"], [0], single=True)
    assert list(ledger.results) == ["u", "v"]
    assert ledger.find("t") is task, "still awaited, so still found"


def test_a_reply_that_cannot_be_had_fails_its_slot_with_why():
    ledger = Ledger(decode)
    result = sent(ledger, ["r/0", "r/1"], [0, 1])
    ledger.reply(reply("r/0", "a"))
    ledger.lost("r/1", "its buffers were lost")
    with pytest.raises(CompositeError) as error:
        result.result(0)
    assert "ConnectionError" in str(error.value) and "its buffers were lost" in str(error.value)
    ledger.lost("r/1", "again")  # a slot already filled: nothing changes
    assert not ledger.awaiting("r/1")
