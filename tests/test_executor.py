"""``rc.executor()`` against ``ProcessPoolExecutor``: the same calls, the same answers.

The functions are the standard library's, which both executors send by
reference.  Where pxmagic does more than a process pool (cancelling work
that already runs), the test says so.
"""
from __future__ import annotations

import math
import operator
import time
from concurrent import futures

import pytest

from conftest import N_ENGINES


@pytest.fixture(scope="module")
def process_pool():
    with futures.ProcessPoolExecutor(2) as pool:
        yield pool


@pytest.fixture(params=["pxmagic", "process pool"])
def executor(request, rc, process_pool):
    if request.param == "process pool":
        yield process_pool
        return
    with rc.executor() as executor:
        yield executor


def error_name(error: BaseException) -> str:
    """``ZeroDivisionError`` from a process pool, and from an engine (whose error is a RemoteError)."""
    return getattr(error, "ename", type(error).__name__)


def test_submit_returns_a_future_of_the_call(executor):
    future = executor.submit(pow, 2, 10)
    assert isinstance(future, futures.Future)
    assert future.result(timeout=30) == 1024
    assert executor.submit(math.factorial, 20).result(timeout=30) == math.factorial(20)


@pytest.mark.parametrize("chunksize", [1, 3, 100])
def test_map_is_ordered_and_stops_at_the_shortest(executor, chunksize):
    results = executor.map(pow, range(10), [2] * 12, chunksize=chunksize)
    assert not isinstance(results, list)
    assert list(results) == [i * i for i in range(10)]


def test_map_raises_the_first_error_when_iteration_reaches_it(executor):
    results = executor.map(operator.truediv, [1, 2, 3], [1, 0, 1])
    assert next(results) == 1.0
    with pytest.raises(Exception) as raised:
        next(results)
    assert error_name(raised.value) == "ZeroDivisionError"


def test_map_timeout_counts_from_the_call(executor):
    started = time.monotonic()
    results = executor.map(time.sleep, [0, 3], timeout=1)
    assert next(results) is None
    with pytest.raises(futures.TimeoutError):
        next(results)
    assert time.monotonic() - started < 2.5


def test_bad_chunksize_and_submit_after_shutdown(rc):
    executor = rc.executor()
    with pytest.raises(ValueError, match="chunksize"):
        executor.map(abs, [1], chunksize=0)
    executor.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(abs, -1)


def test_leaving_the_with_block_waits_for_the_work(rc):
    with rc.executor() as executor:
        submitted = [executor.submit(time.sleep, 0.3) for _ in range(N_ENGINES)]
    assert all(f.done() and f.exception() is None for f in submitted)


def test_shutdown_cancel_futures_stops_queued_and_running_work(rc):
    executor = rc.executor(targets=[0, 1])
    submitted = [executor.submit(time.sleep, 30) for _ in range(5)]
    time.sleep(0.5)
    started = time.monotonic()
    executor.shutdown(wait=True, cancel_futures=True)
    assert time.monotonic() - started < 5
    assert all(f.cancelled() for f in submitted)
    assert rc[[0, 1]].apply_sync(abs, -3) == [3, 3]
