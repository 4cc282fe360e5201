"""What ipyparallel and ``concurrent.futures`` users reach for on views: ``imap``,
``return_exceptions``, ``set_flags`` and ``temp_flags``, on a real cluster."""
from __future__ import annotations

import itertools
import time

import pytest

from pxmagic import CompositeError, RemoteError
from conftest import N_ENGINES
from helpers import interactive



inverse = interactive("def inverse(x):\n    return 1 / x\n")
slow_square = interactive("def slow_square(x):\n    import time\n    time.sleep(x / 10)\n    return x * x\n")


def test_imap_reads_an_endless_generator_only_as_it_sends(rc):
    view = rc.load_balanced_view()
    taken = []

    def numbers():
        for n in itertools.count():
            taken.append(n)
            yield n

    results = view.imap(abs, numbers(), max_outstanding=3)
    assert [next(results) for _ in range(5)] == [0, 1, 2, 3, 4]
    assert len(taken) <= 5 + 3
    results.close()


def test_imap_unordered_yields_as_tasks_complete(rc):
    view = rc.load_balanced_view()
    results = list(view.imap(slow_square, [8, 1, 0], ordered=False, max_outstanding=3))
    assert sorted(results) == [0, 1, 64]
    assert results[-1] == 64
    assert list(view.imap(slow_square, [3, 1, 2])) == [9, 1, 4]


def test_imap_raises_at_the_failing_item_or_yields_its_error(rc):
    view = rc.load_balanced_view()
    results = view.imap(inverse, [1, 0, 2])
    assert next(results) == 1.0
    with pytest.raises(RemoteError, match="ZeroDivisionError"):
        next(results)
    values = list(view.imap(inverse, [1, 0, 2], return_exceptions=True))
    assert values[0] == 1.0 and values[2] == 0.5
    assert isinstance(values[1], RemoteError) and values[1].ename == "ZeroDivisionError"
    with pytest.raises(ValueError, match="max_outstanding"):
        view.imap(abs, [1], max_outstanding=0)


@pytest.mark.parametrize("balanced", [False, True])
def test_map_return_exceptions_puts_each_error_in_place(rc, balanced):
    """A failed chunk's error stands for each of its elements: a direct map over four engines sends
    chunks of two, a load-balanced one (here) chunks of one."""
    view = rc.load_balanced_view() if balanced else rc[:]
    sequence = [1, 2, 0, 4, 5, 6, 7, 8]
    values = view.map(inverse, sequence, block=True, return_exceptions=True)
    assert len(values) == len(sequence)
    failed = [i for i, value in enumerate(values) if isinstance(value, RemoteError)]
    assert failed == ([2] if balanced else [2, 3])
    assert all(values[i].ename == "ZeroDivisionError" and "at element 2" in str(values[i]) for i in failed)
    assert all(values[i] == 1 / sequence[i] for i in range(len(sequence)) if i not in failed)
    with pytest.raises(CompositeError):
        view.map(inverse, sequence, block=True)


def test_apply_on_several_engines_with_errors_in_place(rc):
    view = rc[:]
    result = view.apply_async(inverse, 0)
    values = result.get(timeout=30, return_exceptions=True)
    assert len(values) == N_ENGINES and all(v.ename == "ZeroDivisionError" for v in values)
    with view.temp_flags(return_exceptions=True, block=True):
        assert [v.ename for v in view.apply(inverse, 0)] == ["ZeroDivisionError"] * N_ENGINES
        assert view.apply(inverse, 2) == [0.5] * N_ENGINES
    assert view.return_exceptions is False and view.block is False


def test_set_flags_and_temp_flags(rc):
    view = rc[:]
    targets = view.targets
    view.set_flags(block=True, timeout=20)
    assert view.block is True and view.timeout == 20
    with view.temp_flags(block=False, targets=[0, 1], timeout=None):
        result = view.apply(abs, -2)
        assert result.get(timeout=30) == [2, 2]
    assert view.block is True and view.timeout == 20 and view.targets == targets
    assert view.apply(abs, -1) == [1] * N_ENGINES
    with pytest.raises(TypeError, match="no flag colour; its flags are block, track"):
        view.set_flags(colour="red")
    with pytest.raises(ValueError, match="positive number of seconds"):
        view.set_flags(block=False, timeout=-1)
    assert view.block is True, "a refused set_flags changed nothing"
    started = time.monotonic()
    with pytest.raises(RuntimeError):
        with view.temp_flags(block=False):
            raise RuntimeError("inside")
    assert view.block is True and time.monotonic() - started < 5


def test_queue_status_of_a_busy_engine(rc):
    before = rc.queue_status(3)["completed"]
    running = rc[3].apply_async(time.sleep, 2)
    queued = rc[3].apply_async(abs, -1)
    waiting = rc.load_balanced_view(targets=[3]).apply_async(abs, -2)
    time.sleep(0.5)
    status = rc.queue_status()
    assert status[3] == {"queue": 1, "running": 1, "completed": before}
    assert status["unassigned"] == 1 and status[0]["running"] == 0
    assert sorted(key for key in status if key != "unassigned") == list(range(N_ENGINES))
    verbose = rc.queue_status(3, verbose=True)
    assert verbose["running"] == running.msg_ids and verbose["queue"] == queued.msg_ids
    assert [r.result(timeout=30) for r in (running, queued, waiting)] == [None, 1, 2]
    assert rc.queue_status(3) == {"queue": 0, "running": 0, "completed": before + 3}


def test_progress_outside_a_notebook_is_a_text_bar_that_finishes(rc, capfd):
    import pxmagic

    result = rc[:].apply_async(time.sleep, 0.5)
    watcher = pxmagic.progress(result)
    assert not result.done(), "progress returned before the work was done"
    watcher.join(timeout=30)
    assert not watcher.is_alive() and result.done()
    assert f"{N_ENGINES}/{N_ENGINES}" in capfd.readouterr().err
