"""The status room and the usage sampler, without a cluster (the sampler reads this process's /proc)."""
from __future__ import annotations

import os

from pxmagic.hub.status import EngineFacts, status_content
from pxmagic.usage import Usage, UsageSampler


def test_engine_states_tasks_and_usage_are_laid_out():
    tasks = {"engines": {0: {"running": [{"msg_id": "m/0", "name": "sleep", "label": "nap"}], "queue": [],
                             "completed": 3, "failed": 1},
                         1: {"running": [], "queue": [], "completed": 0, "failed": 0}},
             "unassigned": [{"msg_id": "t", "name": "f", "label": ""}]}
    engines = [EngineFacts(1, "local", "here", 11, "up", usage=Usage(1000, 2.5)),
               EngineFacts(0, "mpi", "node1", 10, "up", heartbeat_age=0.4),
               EngineFacts(2, "local", "here", None, "dead")]
    content = status_content(engines, tasks, {"m/0": 95.0}, now=100.0, wall_now=5000.0, clients=2, results=7,
                             results_bytes=123, uptime=60.0)
    first, second, third = content["engines"]
    assert [e["engine_id"] for e in content["engines"]] == [0, 1, 2]
    assert (first["state"], second["state"], third["state"]) == ("busy", "idle", "dead")
    assert first["running"] == [{"msg_id": "m/0", "name": "sleep", "label": "nap", "started": 4995.0,
                                 "seconds": 5.0}]
    assert (first["completed"], first["failed"], first["heartbeat_age"], first["kind"]) == (3, 1, 0.4, "mpi")
    assert (second["rss_bytes"], second["cpu_percent"], third["rss_bytes"]) == (1000, 2.5, None)
    assert content["unassigned"] == tasks["unassigned"]
    assert (content["clients"], content["results"], content["results_bytes"], content["uptime"]) == (2, 7, 123, 60.0)


def test_usage_of_this_process_and_of_a_gone_one():
    times = iter([1.0, 3.0])
    sampler = UsageSampler(clock=lambda: next(times))
    first = sampler.sample(os.getpid())
    assert first.rss_bytes > 10 * 2**20 and 0 < first.cpu_percent <= 100 * os.cpu_count(), "since it started"
    sum(range(3_000_000))
    second = sampler.sample(os.getpid())
    assert second.cpu_percent is not None and 0 <= second.cpu_percent <= 100
    assert sampler.sample(2**22 + 12345) is None and sampler.sample(None) is None
