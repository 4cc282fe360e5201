"""The task history and the /metrics text, without a cluster."""
from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from pxmagic.dashboard.metrics import metrics_text
from pxmagic.hub.history import Finished, TaskHistory


def test_history_keeps_the_latest_and_counts_everything():
    history = TaskHistory(keep=2)
    for i, failed in enumerate([False, True, False]):
        history.finished(Finished(0, f"m{i}", "f", "", started=i, finished=i + 0.5, failed=failed))
    history.moved(100)
    history.moved(23)
    assert [t.msg_id for t in history.since(0.0)] == ["m1", "m2"], "the oldest fell out"
    assert [t.msg_id for t in history.since(1.5)] == ["m2"] and history.since(2.5) == []
    assert dict(history.totals) == {"ok": 2, "error": 1} and history.bytes_moved == 123


def test_metrics_text_is_prometheus_text():
    status = {"engines": [{"state": "busy", "queue": [{"msg_id": "q"}]}, {"state": "dead", "queue": []}],
              "unassigned": [{"msg_id": "u1"}, {"msg_id": "u2"}]}
    samples = {(s.name, tuple(s.labels.items())): s.value
               for family in text_string_to_metric_families(metrics_text(status, {"ok": 5}, 4096))
               for s in family.samples}
    assert samples[("pxmagic_engines", (("state", "busy"),))] == 1
    assert samples[("pxmagic_engines", (("state", "idle"),))] == 0
    assert samples[("pxmagic_engines", (("state", "dead"),))] == 1
    assert samples[("pxmagic_tasks_total", (("outcome", "ok"),))] == 5
    assert samples[("pxmagic_tasks_total", (("outcome", "error"),))] == 0
    assert samples[("pxmagic_queue_length", ())] == 3 and samples[("pxmagic_bytes_moved_total", ())] == 4096
