"""``AsyncResult.metadata``, ``elapsed``, ``wall_time`` and ``serial_time`` on a real cluster."""
from __future__ import annotations

import time

import pytest

from conftest import N_ENGINES


def test_timestamps_of_a_one_second_call_are_ordered(rc):
    result = rc[1].apply_async(time.sleep, 1.0)
    pending = result.metadata
    assert pending["engine_id"] == 1 and pending["started"] is None and pending["completed"] is None
    result.get(timeout=30)
    meta = result.metadata
    assert meta["engine_id"] == 1
    assert meta["submitted"] <= meta["started"] < meta["completed"]
    assert (meta["completed"] - meta["started"]).total_seconds() == pytest.approx(1.0, abs=0.3)
    assert result.elapsed == pytest.approx(1.0, abs=0.3)
    assert result.wall_time == pytest.approx(1.0, abs=0.3)
    assert result.serial_time == pytest.approx(1.0, abs=0.3)


def test_several_engines_and_balanced_tasks(rc):
    result = rc[:].apply_async(time.sleep, 0.5)
    result.get(timeout=30)
    assert [m["engine_id"] for m in result.metadata] == list(range(N_ENGINES))
    assert result.serial_time == pytest.approx(0.5 * N_ENGINES, abs=0.3 * N_ENGINES)
    assert result.wall_time < result.serial_time, "the engines ran at once"
    balanced = rc.load_balanced_view().apply_async(time.sleep, 0.2)
    balanced.get(timeout=30)
    assert balanced.metadata["engine_id"] in range(N_ENGINES) and balanced.metadata["started"] is not None
    execute = rc[0].execute("import time; time.sleep(0.3)")
    execute.get(timeout=30)
    assert (execute.metadata["completed"] - execute.metadata["started"]).total_seconds() >= 0.25
