"""Stopping work on a real cluster: ``AsyncResult.cancel``, ``timeout=``, and ``await``.

Each test checks what the user sees (the Future's state, the error and its
words) and that the engines come out of it whole: the namespace kept, the
next task served.
"""
from __future__ import annotations

import asyncio
import time
from concurrent import futures

import pytest

from pxmagic import CompositeError, RemoteError, TaskTimeout
from conftest import N_ENGINES
from helpers import interactive, wait_until


#: a function as if typed in a notebook, so that it travels to the engines by value
sleep_then = interactive("def sleep_then(seconds, value='done'):\n    import time\n    time.sleep(seconds)\n"
                         "    return value\n")


def test_cancel_interrupts_running_work_and_drops_queued_work(rc):
    view = rc[1]
    view.push({"kept": 41}, block=True)
    view.execute("ran_after_cancel = False", block=True)
    running = view.apply_async(sleep_then, 30)
    queued = view.apply_async(lambda: globals().__setitem__("ran_after_cancel", True))
    time.sleep(0.5)
    started = time.monotonic()
    assert queued.cancel() is True  # first: cancelling the running task frees the engine for the next
    assert running.cancel() is True
    assert running.cancelled() and queued.cancelled()
    with pytest.raises(futures.CancelledError):
        running.result(timeout=1)
    assert view.apply_sync(lambda: kept + 1) == 42  # noqa: F821 (the engine's name)
    assert time.monotonic() - started < 10, "the engine still slept: cancel did not interrupt it"
    assert view.pull("ran_after_cancel", block=True) is False


def test_cancel_of_a_task_waiting_in_the_hub_means_it_never_runs(rc):
    view = rc.load_balanced_view(targets=[2])
    rc[2].execute("ran_after_cancel = False", block=True)
    busy = view.apply_async(sleep_then, 1.0)
    waiting = view.apply_async(lambda: globals().__setitem__("ran_after_cancel", True))
    assert waiting.cancel() is True
    assert busy.result(timeout=30) == "done"
    assert rc[2].apply_sync(lambda: 1) == 1
    assert rc[2].pull("ran_after_cancel", block=True) is False


def test_cancel_after_completion_returns_false_and_keeps_the_value(rc):
    result = rc[0].apply_async(lambda: 7)
    assert result.result(timeout=30) == 7
    assert result.cancel() is False
    assert not result.cancelled() and result.get() == 7


def test_view_timeout_interrupts_the_engine_and_names_it(rc):
    view = rc[1]
    view.push({"kept": "namespace"}, block=True)
    view.timeout = 1
    started = time.monotonic()
    with pytest.raises(TaskTimeout) as raised:
        view.apply_sync(sleep_then, 30)
    assert time.monotonic() - started < 5
    assert raised.value.engine_id == 1
    assert "engine 1" in str(raised.value) and "timeout of 1 s" in str(raised.value)
    view.timeout = None
    assert view.apply_sync(lambda: kept) == "namespace"  # noqa: F821


def test_the_clock_starts_when_a_task_starts_on_its_engine(rc):
    view = rc[3]
    view.timeout = 1.5
    results = [view.apply_async(sleep_then, 1.0, i) for i in range(2)]
    assert [r.result(timeout=30) for r in results] == [0, 1]


def test_execute_timeout_and_map_timeout(rc):
    with pytest.raises(TaskTimeout, match="engine 0"):
        rc[0].execute("import time; time.sleep(30)", block=True, timeout=0.5)
    lview = rc.load_balanced_view()
    started = time.monotonic()
    with pytest.raises(CompositeError) as raised:
        lview.map(sleep_then, [0, 30], block=True, timeout=1)
    assert time.monotonic() - started < 10
    assert [e.ename for _, e in raised.value.elist] == ["TaskTimeout"]
    assert lview.map(sleep_then, [0, 0], [1, 2], block=True) == [1, 2]


def test_bad_timeouts_are_refused_before_anything_is_sent(rc):
    view = rc[:]
    for bad in (0, -1, "1", True, float("nan")):
        with pytest.raises(ValueError, match="positive number of seconds"):
            view.timeout = bad
        with pytest.raises(ValueError, match="positive number of seconds"):
            view.map(abs, [1], timeout=bad)
    assert view.timeout is None


def test_await_gives_the_value_or_the_remote_error(rc):
    async def main():
        value = await rc[0].apply_async(lambda: 6 * 7)
        with pytest.raises(RemoteError, match="ZeroDivisionError"):
            await rc[0].apply_async(lambda: 1 / 0)
        return value

    assert asyncio.run(main()) == 42


def test_an_awaiting_task_that_times_out_cancels_the_work(rc):
    result = rc[2].apply_async(sleep_then, 30)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(result, timeout=0.5)

    asyncio.run(main())
    assert wait_until(result.cancelled, 5)
    started = time.monotonic()
    assert rc[2].apply_sync(lambda: 5) == 5
    assert time.monotonic() - started < 10


def test_all_engines_serve_after_the_stops(rc):
    assert rc[:].apply_sync(lambda: 1) == [1] * N_ENGINES


def test_futures_wait_and_as_completed_see_a_cancelled_result(rc):
    result = rc[0].apply_async(sleep_then, 30)
    result.cancel()
    done, pending = futures.wait([result], timeout=5)
    assert done == {result} and not pending
    assert list(futures.as_completed([result], timeout=5)) == [result]
