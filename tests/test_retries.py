"""Load-balanced tasks tried again when their engine dies (or, when asked, when they raise),
on a real cluster of its own: engines are killed here."""
from __future__ import annotations

import pytest

from helpers import interactive
from pxmagic import Cluster, EngineError, RemoteError


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=4)  # two die in the tests; the retry of an error then still has two to choose from
    cluster.start()
    yield cluster
    cluster.stop()



#: the first try (the one that finds no marker file) dies or raises; later ones return their engine's pid
first_try_fails = interactive('''
def first_try_fails(marker, how):
    import os, signal
    if not os.path.exists(marker):
        open(marker, "w").close()
        if how == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        raise ValueError("first try")
    return os.getpid()
''')
always_fails = interactive("def always_fails():\n    raise ValueError('never works')\n")


def test_a_task_whose_engine_dies_runs_again_elsewhere(rc, tmp_path):
    lview = rc.load_balanced_view()
    lview.retries = 1
    result = lview.apply_async(first_try_fails, str(tmp_path / "died"), "die")
    pid = result.get(timeout=60)
    assert result.tries == 2
    [(slot, dead_engine, reason)] = result.retried
    assert slot == 0 and "SIGKILL" in reason, reason
    assert pid in rc[:].apply_sync(__import__("os").getpid) and result.engine_ids[0] != dead_engine


def test_without_retries_the_death_is_an_engine_error(rc, tmp_path):
    with pytest.raises(EngineError):
        rc.load_balanced_view().apply_sync(first_try_fails, str(tmp_path / "died"), "die")


def test_errors_are_retried_only_when_asked(rc, tmp_path):
    lview = rc.load_balanced_view()
    lview.retries = 1
    with pytest.raises(RemoteError, match="first try"):
        lview.apply_sync(first_try_fails, str(tmp_path / "plain"), "raise")
    lview.retry_errors = True
    result = lview.apply_async(first_try_fails, str(tmp_path / "asked"), "raise")
    result.get(timeout=60)
    [(_, failed_on, reason)] = result.retried
    assert result.tries == 2 and "ValueError: first try" in reason
    assert result.engine_ids[0] != failed_on, "the second try ran on another engine"


def test_when_every_try_fails_the_last_error_is_raised(rc):
    lview = rc.load_balanced_view()
    lview.set_flags(retries=2, retry_errors=True)
    result = lview.apply_async(always_fails)
    with pytest.raises(RemoteError, match="never works"):
        result.get(timeout=60)
    assert result.tries == 3 and len(result.retried) == 2


def test_map_tasks_are_retried_one_by_one(rc):
    lview = rc.load_balanced_view()
    with lview.temp_flags(retries=1, retry_errors=True):
        assert lview.map_sync(abs, [-1, -2, -3]) == [1, 2, 3]
    assert lview.retries == 0


def test_bad_retries_are_refused(rc):
    lview = rc.load_balanced_view()
    for bad in (-1, 1.5, "2", True):
        with pytest.raises(ValueError, match="retries is a number of further tries"):
            lview.retries = bad
    with pytest.raises(ValueError):
        lview.set_flags(block=True, retries=-1)
    assert lview.block is False and lview.retries == 0, "a refused set_flags changed nothing"
