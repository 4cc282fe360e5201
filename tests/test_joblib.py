"""joblib's Parallel on the engines through ``pxmagic.register_joblib_backend``, with a real
joblib (and scikit-learn) against a real cluster."""
from __future__ import annotations

import os
import time

import joblib
import pytest
from joblib import Parallel, delayed, parallel_config

import pxmagic
from pxmagic import RemoteError
from conftest import N_ENGINES
from helpers import interactive



pid_and_square = interactive("def pid_and_square(x):\n    import os\n    return os.getpid(), x * x\n")
fail_first = interactive("def fail_first(i):\n    import time\n    if i == 0:\n        raise ValueError('bad item 0')\n"
                          "    time.sleep(20)\n    return i\n")


@pytest.fixture
def lview(rc):
    view = rc.load_balanced_view()
    pxmagic.register_joblib_backend(view, name="pxmagic-test")
    return view


def test_n_jobs_minus_one_runs_on_every_engine(rc):
    pxmagic.register_joblib_backend()
    engine_pids = set(rc[:].apply_sync(os.getpid))
    with parallel_config(backend="pxmagic"):
        assert joblib.effective_n_jobs(-1) == N_ENGINES
        assert joblib.effective_n_jobs(-2) == N_ENGINES - 1
        out = Parallel(n_jobs=-1)(delayed(pid_and_square)(i) for i in range(40))
    assert [square for _, square in out] == [i * i for i in range(40)]
    pids = {pid for pid, _ in out}
    assert pids <= engine_pids and os.getpid() not in pids


def test_many_small_calls_go_in_batches(rc, lview):
    with parallel_config(backend="pxmagic-test"):
        out = Parallel(n_jobs=-1)(delayed(abs)(-i) for i in range(2000))
    assert out == list(range(2000))
    assert len(lview.history) < 2000 / 2, "joblib's auto-batching did not group the calls"


def test_an_error_raises_and_cancels_the_other_batches(rc, lview):
    started = time.monotonic()
    with parallel_config(backend="pxmagic-test"):
        with pytest.raises(RemoteError, match="bad item 0"):
            Parallel(n_jobs=-1, batch_size=1)(delayed(fail_first)(i) for i in range(2 * N_ENGINES))
    assert time.monotonic() - started < 15
    started = time.monotonic()
    assert rc[:].apply_sync(abs, -1) == [1] * N_ENGINES
    assert time.monotonic() - started < 5, "the sleeping batches were not stopped"


def test_scikit_learn_cross_val_score_on_the_engines(rc):
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    X, y = load_iris(return_X_y=True)
    serial = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4)
    pxmagic.register_joblib_backend()
    with parallel_config(backend="pxmagic"):
        parallel = cross_val_score(LogisticRegression(max_iter=500), X, y, cv=4, n_jobs=-1)
    assert list(parallel) == pytest.approx(list(serial))


def test_a_backend_on_something_else_is_refused():
    with pytest.raises(TypeError, match="runs on a view or a Client, not 42"):
        pxmagic.register_joblib_backend(42)
