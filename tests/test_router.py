"""The hub's routing and scheduling rules, without sockets."""
from __future__ import annotations

import pytest

from pxmagic.hub.router import Router, Routing
from pxmagic.protocol import ProtocolError, RequestTerms, engine_msg_id, request_routing


def header(msg_type: str = "apply_request", msg_id: str = "req") -> dict:
    return {"msg_id": msg_id, "msg_type": msg_type}


def router_with(*engines: int, high_water_mark: int = 1) -> Router:
    router = Router(high_water_mark)
    for engine_id in engines:
        router.add_engine(engine_id)
    return router


def test_request_fans_out_with_per_engine_ids():
    router = router_with(0, 1, 2)
    routing = router.route_request(b"client-a", header(), [0, 2], "payload")
    assert [(d.engine_id, d.header["msg_id"], d.payload) for d in routing.deliveries] == [
        (0, "req/0", "payload"), (2, "req/2", "payload")]
    assert routing.failures == []
    assert router.on_reply("req/2") == (b"client-a", [])
    assert router.on_reply("req/2") == (None, []), "a reply is routed once"


def test_unknown_target_fails_at_once_with_an_engine_error():
    router = router_with(0)
    routing = router.route_request(b"c", header("execute_request"), [0, 5], None)
    [failure] = routing.failures
    assert failure.reply_type == "execute_reply" and failure.parent["msg_id"] == engine_msg_id("req", 5)
    assert failure.content["ename"] == "EngineError" and "engine 5 does not exist" in failure.content["evalue"]


def test_dead_engine_fails_what_it_owed():
    router = router_with(0, 1)
    router.route_request(b"c", header(msg_id="r1"), [0, 1], None)
    router.route_request(b"d", header(msg_id="r2"), [1], None)
    failures = router.remove_engine(1, "died").failures
    assert sorted((f.client, f.parent["msg_id"]) for f in failures) == [(b"c", "r1/1"), (b"d", "r2/1")]
    assert all("engine 1 died" in f.content["evalue"] for f in failures)
    assert router.on_reply("r1/0")[0] == b"c"
    assert router.route_request(b"c", header(msg_id="r3"), [1], None).failures


def test_tasks_go_to_the_least_loaded_engine_and_wait_for_room():
    router = router_with(0, 1)
    first = router.route_task(b"c", header(msg_id="t1"), None, 1)
    second = router.route_task(b"c", header(msg_id="t2"), None, 2)
    third = router.route_task(b"c", header(msg_id="t3"), None, 3)
    assert [d.engine_id for d in first.deliveries + second.deliveries] == [0, 1]
    assert third.deliveries == [] and len(router.queue) == 1
    client, freed = router.on_reply("t2")
    assert client == b"c" and [(d.engine_id, d.header["msg_id"], d.payload) for d in freed] == [(1, "t3", 3)]


def test_a_busy_engine_gets_no_tasks_while_another_has_room():
    router = router_with(0, 1)
    router.route_request(b"c", header(msg_id="long"), [0], None)
    engines = []
    for i in range(5):
        engines += [d.engine_id for d in router.route_task(b"c", header(msg_id=f"t{i}"), None, i).deliveries]
        for delivery_msg in list(router.pending):
            if delivery_msg.startswith("t"):
                engines += [d.engine_id for d in router.on_reply(delivery_msg)[1]]
    assert set(engines) == {1} and len(engines) == 5


def test_tasks_respect_their_candidates():
    router = router_with(0, 1, 2)
    routing = router.route_task(b"c", header(msg_id="t"), [2], None)
    assert [d.engine_id for d in routing.deliveries] == [2]
    blocked = router.route_task(b"c", header(msg_id="u"), [2], None)
    other = router.route_task(b"c", header(msg_id="v"), None, None)
    assert blocked.deliveries == [] and [d.engine_id for d in other.deliveries] == [0]
    assert [d.header["msg_id"] for d in router.on_reply("t")[1]] == ["u"]


def test_queued_tasks_fail_when_no_candidate_is_left():
    router = router_with(0, 1)
    router.route_task(b"c", header(msg_id="t"), [1], None)
    router.route_task(b"c", header(msg_id="u"), [1], None)
    failures = router.remove_engine(1, "died").failures
    assert sorted(f.parent["msg_id"] for f in failures) == ["t", "u"]
    assert not router.queue


def test_an_engine_that_arrives_takes_queued_tasks():
    router = router_with()
    assert router.route_task(b"c", header(msg_id="t"), None, None).deliveries == []
    assert [d.header["msg_id"] for d in router.add_engine(4).deliveries] == ["t"]


@pytest.mark.parametrize("metadata", [{}, {"targets": []}, {"targets": ["0"]}, {"targets": [1, 1]},
                                      {"targets": [True]}, {"targets": None, "balanced": "yes"}])
def test_malformed_targets_are_rejected(metadata):
    with pytest.raises(ProtocolError):
        request_routing(metadata)


def test_balanced_requests_may_leave_targets_open():
    assert request_routing({"targets": None, "balanced": True}) == (None, True)
    assert request_routing({"targets": [1, 2]}) == ([1, 2], False)


def test_stop_drops_queued_tasks_and_names_engines_of_the_rest():
    router = router_with(0, 1)
    router.route_request(b"c", header(msg_id="d"), [0, 1], None)
    router.route_task(b"c", header(msg_id="q1"), None, None)
    router.route_task(b"e", header(msg_id="q2"), None, None)
    stop = router.stop(["q2", "d/1", "unknown"])
    assert [(f.client, f.parent["msg_id"], f.content) for f in stop.aborted] == [(b"e", "q2", {"status": "aborted"})]
    assert stop.abort == {1: ["d/1"]} and stop.interrupt == []
    assert [t.header["msg_id"] for t in router.queue] == ["q1"]


def test_stop_with_interrupt_interrupts_engines_running_the_requests_and_aborts_the_rest():
    router = router_with(0, 1, 2)
    router.route_request(b"c", header(msg_id="other"), [0], None)        # engine 0 runs another request
    router.route_request(b"c", header(msg_id="mine"), [0, 1], None)      # queued on 0, running on 1
    router.route_request(b"c", header("interrupt_request", "int"), [1], None)  # served beside, not in turn
    router.route_task(b"c", header(msg_id="t"), [2], None)                # running on 2
    router.route_task(b"c", header(msg_id="queued"), None, None)
    stop = router.stop(["mine/0", "mine/1", "t", "queued"], interrupt=True)
    assert stop.interrupt == [1, 2], "engine 0 runs someone else's request: it is not interrupted"
    assert stop.abort == {0: ["mine/0"]}
    assert [f.parent["msg_id"] for f in stop.aborted] == ["queued"] and not router.queue


def test_requests_for_a_restarting_engine_wait_for_it():
    router = router_with(0, 1)
    router.route_request(b"c", header(msg_id="running"), [0], None)
    [failure] = router.restart_engine(0, "died").failures
    assert failure.parent["msg_id"] == "running/0"
    routing = router.route_request(b"c", header(msg_id="during"), [0, 1], "p")
    assert [d.engine_id for d in routing.deliveries] == [1] and routing.failures == []
    assert router.route_task(b"c", header(msg_id="task"), [0], "t").failures == []
    assert router.outstanding("during/0") and router.outstanding("task")
    back = router.add_engine(0)
    assert [(d.engine_id, d.header["msg_id"]) for d in back.deliveries] == [(0, "during/0")]
    assert [d.header["msg_id"] for d in router.on_reply("during/0")[1]] == ["task"]


def test_a_failed_restart_fails_what_waited_for_it():
    router = router_with(0)
    router.remove_engine(0, "died")
    assert router.restart_engine(0, "was restarted") == Routing(), "a dead engine can be restarted"
    router.route_request(b"c", header(msg_id="during"), [0], None)
    router.route_task(b"c", header(msg_id="task"), None, None)
    failures = router.restart_failed(0, "did not restart: boom")
    assert sorted(f.parent["msg_id"] for f in failures) == ["during/0", "task"]
    assert all("engine 0 did not restart: boom" in f.content["evalue"] for f in failures)
    assert router.route_request(b"c", header(msg_id="after"), [0], None).failures


def test_a_task_past_its_timeout_fails_once_and_its_late_reply_goes_nowhere():
    router = router_with(0)
    router.route_request(b"client-a", header(msg_id="slow"), [0], "p", RequestTerms(timeout=2.0))
    router.route_request(b"client-a", header(msg_id="next"), [0], "p", RequestTerms(timeout=2.0))
    assert router.running(0).header["msg_id"] == "slow/0"
    failure = router.time_out("slow/0", 0, 2.5)
    assert failure.client == b"client-a" and failure.reply_type == "apply_reply"
    assert failure.content["ename"] == "TaskTimeout"
    assert "engine 0 ran request slow/0 for 2.5 s, past its timeout of 2 s" in failure.content["evalue"]
    assert router.time_out("slow/0", 0, 3.0) is None, "told once"
    assert router.running(0).header["msg_id"] == "slow/0", "it runs until the engine answers"
    assert router.stop(["slow/0"], interrupt=True).interrupt == [], "stopping it again does nothing"
    assert router.on_reply("slow/0") == (None, [])
    assert router.running(0).header["msg_id"] == "next/0" and router.running(0).terms.timeout == 2.0
    assert router.remove_engine(0, "died").failures == [router._failure(b"client-a", header(msg_id="next/0"), 0, "died")]


def test_a_balanced_task_keeps_its_timeout_while_it_waits():
    router = router_with(0)
    router.route_task(b"c", header(msg_id="first"), None, "p")
    router.route_task(b"c", header(msg_id="second"), None, "p", RequestTerms(timeout=1.5))
    assert router.running(0).terms.timeout is None
    _, freed = router.on_reply("first")
    assert [d.header["msg_id"] for d in freed] == ["second"] and router.running(0).terms.timeout == 1.5


def test_tasks_shows_what_runs_waits_and_was_answered():
    router = router_with(0, 1, high_water_mark=2)
    router.route_request(b"c", header(msg_id="a"), [0], "p", RequestTerms(name="train", label="fold 1"))
    router.route_request(b"c", header(msg_id="b"), [0], "p")
    router.route_request(b"c", header("interrupt_request", msg_id="i"), [0], "p")
    for msg_id in ("t1", "t2", "t3"):
        router.route_task(b"c", header(msg_id=msg_id), [1], "p", RequestTerms(name=msg_id.upper()))
    listed = router.tasks()
    assert listed["engines"][0] == {"running": [{"msg_id": "a/0", "name": "train", "label": "fold 1"}],
                                    "queue": [{"msg_id": "b/0", "name": "", "label": ""}],
                                    "completed": 0, "failed": 0}
    assert [t["name"] for t in listed["engines"][1]["running"] + listed["engines"][1]["queue"]] == ["T1", "T2"]
    assert [t["msg_id"] for t in listed["unassigned"]] == ["t3"]
    router.on_reply("a/0", failed=True)
    router.on_reply("i/0")
    router.on_reply("t1")
    listed = router.tasks()
    assert [t["msg_id"] for t in listed["engines"][0]["running"]] == ["b/0"] and listed["engines"][0]["queue"] == []
    assert (listed["engines"][0]["completed"], listed["engines"][0]["failed"]) == (1, 1), "interrupts not counted"
    assert [t["msg_id"] for t in listed["engines"][1]["queue"]] == ["t3"] and listed["unassigned"] == []


def test_a_task_whose_engine_dies_is_tried_again_on_another_engine():
    router = router_with(0, 1)
    router.route_task(b"c", header(msg_id="busy"), [1], "p")
    router.route_task(b"c", header(msg_id="t"), None, "p", RequestTerms(retries=1))
    assert router.pending["t"].engine_id == 0
    routing = router.remove_engine(0, "died")
    assert routing.failures == [] and [(r.parent["msg_id"], r.engine_id, r.reason, r.tries)
                                       for r in routing.retries] == [("t", 0, "died", 2)]
    assert routing.deliveries == [], "engine 1 is busy: the task waits for it"
    _, freed = router.on_reply("busy")
    assert [(d.engine_id, d.header["msg_id"]) for d in freed] == [(1, "t")]
    failures = router.remove_engine(1, "died too").failures
    assert [f.parent["msg_id"] for f in failures] == ["t"], "no tries left: it fails"


def test_an_error_is_retried_only_when_asked_and_elsewhere_first():
    router = router_with(0, 1)
    router.route_task(b"c", header(msg_id="plain"), None, "p", RequestTerms(retries=2))
    router.route_task(b"c", header(msg_id="picky"), None, "p", RequestTerms(retries=1, retry_errors=True))
    assert router.pending["plain"].engine_id == 0 and router.pending["picky"].engine_id == 1
    assert not router.retries_errors("plain") and router.retries_errors("picky")
    routing = router.retry("picky", "raised ValueError")
    assert [(r.engine_id, r.reason, r.tries) for r in routing.retries] == [(1, "raised ValueError", 2)]
    assert routing.deliveries == [], "engine 1 is free, but the task failed there and engine 0 lives"
    _, freed = router.on_reply("plain")
    assert [(d.engine_id, d.header["msg_id"]) for d in freed] == [(0, "picky")]
    assert not router.retries_errors("picky"), "no tries left"


def test_a_failed_task_goes_back_to_its_engine_when_it_is_the_only_one():
    router = router_with(0)
    router.route_task(b"c", header(msg_id="t"), None, "p", RequestTerms(retries=1, retry_errors=True))
    routing = router.retry("t", "raised")
    assert [d.engine_id for d in routing.deliveries] == [0]
