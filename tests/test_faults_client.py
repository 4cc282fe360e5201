"""Faults a client meets: stalls, refused requests, Ctrl-C on balanced work, odd arguments."""
from __future__ import annotations

import ctypes
import json
import os
import signal
import threading
import time
from concurrent import futures

import psutil
import pytest

from pxmagic import Cluster, EngineError, RemoteError
from helpers import wait_until

N = 2


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=N, profile="faults-client")
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def rc(cluster):
    client = cluster.connect_client()
    yield client
    client.close()


def hold_the_gil(seconds: float) -> None:
    """Stall this process's Python threads, as one long C call holding the GIL does."""
    ctypes.PyDLL(None).usleep(int(seconds * 1e6))


def wait_idle(rc, timeout: float = 10.0) -> None:
    assert rc.wait(timeout=timeout), "work left outstanding"


# -- a stalled client or hub --------------------------------------------------------
def test_work_that_ran_during_a_client_stall_is_delivered_not_failed(rc, figure):
    lview = rc.load_balanced_view()
    ars = [lview.apply_async(time.sleep, 0.3) for _ in range(6)]
    hold_the_gil(rc.hub_timeout + 1.5)
    outcomes = [type(ar.exception(10)).__name__ for ar in ars]
    figure("requests failed after a client stall longer than hub_timeout", outcomes.count("EngineError"), "",
           "must be 0")
    assert outcomes == ["NoneType"] * 6


def test_a_paused_hub_fails_work_once_then_its_late_results_are_delivered(cluster, rc):
    hub = psutil.Process(json.loads(rc.connection_file.read_text())["hub_pid"])
    ars = [rc[i % N].apply_async(lambda i=i: __import__("time").sleep(0.5) or i) for i in range(4)]
    time.sleep(0.1)
    hub.suspend()
    try:
        start = time.monotonic()
        for ar in ars:
            with pytest.raises(EngineError, match="hub .* is unreachable"):
                ar.get(rc.hub_timeout + 5)
        failed_after = time.monotonic() - start
    finally:
        hub.resume()
    assert failed_after >= rc.hub_timeout - 0.6, "the hub was given its full timeout while the client listened"
    msg_ids = [ar.msg_ids[0] for ar in ars]
    # the late replies are delivered: a fresh look-up gets the values, not the stale failure
    late = [rc.get_result(msg_id, timeout=10) for msg_id in msg_ids]
    assert [ar.get(10) for ar in late] == [0, 1, 2, 3]
    assert rc[:].apply_sync(lambda: "after") == ["after"] * N


# -- requests the client or the hub refuses ----------------------------------------
@pytest.mark.parametrize("targets", [[0, 0], [1, 0, 1], [True], [0, False]], ids=str)
def test_duplicate_and_boolean_targets_are_refused_at_once(rc, targets):
    start = time.monotonic()
    with pytest.raises((ValueError, TypeError), match="repeat|boolean|bool"):
        rc[targets].apply_sync(lambda: 1)
    dview = rc[:]
    with pytest.raises((ValueError, TypeError), match="repeat|boolean|bool"):
        dview.execute("x = 1", targets=targets, block=True)
    with pytest.raises((ValueError, TypeError), match="repeat|boolean|bool"):
        dview.push({"x": 1}, targets=targets, block=True)
    assert time.monotonic() - start < 1
    wait_idle(rc)


def test_px_with_repeated_targets_says_so(rc):
    from conftest import px_shell
    from IPython.core.error import UsageError

    shell = px_shell(rc[:])
    start = time.monotonic()
    with pytest.raises((UsageError, ValueError), match="repeat"):
        shell.run_line_magic("px", "--targets 0,0 x = 1")
    assert time.monotonic() - start < 1


def test_a_request_the_hub_refuses_fails_at_once(rc):
    """A request that gets past the client's checks but not the hub's is failed, not left waiting."""
    from pxmagic.client.view import apply_request

    start = time.monotonic()
    refused = rc.submit([apply_request(len, ((),), {}, [0, True])], False, "apply")
    with pytest.raises(RemoteError, match=r"engine targets must be integers, not \[0, True\]"):
        refused.get(5)
    assert time.monotonic() - start < 2
    wait_idle(rc)


# -- Ctrl-C on load-balanced work ---------------------------------------------------
def ctrl_c_after(seconds: float) -> list[float]:
    """Send this process SIGINT in ``seconds``; the list gets the time it was sent."""
    sent: list[float] = []

    def press() -> None:
        sent.append(time.monotonic())
        os.kill(os.getpid(), signal.SIGINT)

    threading.Timer(seconds, press).start()
    return sent


def test_ctrl_c_stops_a_balanced_apply_on_its_engine(rc, figure):
    lview = rc.load_balanced_view()
    pressed = ctrl_c_after(0.5)
    with pytest.raises(KeyboardInterrupt):
        lview.apply_sync(time.sleep, 60)
    # every engine is free again: a call on all of them returns
    assert rc[:].apply_sync(lambda: "free") == ["free"] * N
    stopped_in = time.monotonic() - pressed[0]
    figure("seconds from Ctrl-C to free engines (balanced apply)", stopped_in, "s", "< 2")
    assert stopped_in < 2


def test_ctrl_c_stops_a_balanced_map_and_drops_its_queued_tasks(rc, tmp_path, figure):
    marks = tmp_path / "marks"
    marks.mkdir()

    def task(i, folder=str(marks)):
        import pathlib
        import time

        time.sleep(0.4)
        pathlib.Path(folder, str(i)).touch()
        return i

    lview = rc.load_balanced_view()
    pressed = ctrl_c_after(1.0)
    with pytest.raises(KeyboardInterrupt):
        lview.map_sync(task, range(40), chunksize=1)
    assert rc[:].apply_sync(lambda: "free") == ["free"] * N
    stopped_in = time.monotonic() - pressed[0]
    figure("seconds from Ctrl-C to free engines (balanced map)", stopped_in, "s", "< 2")
    assert stopped_in < 2
    time.sleep(1)
    ran = len(list(marks.iterdir()))
    figure("balanced map tasks run after Ctrl-C (of 40)", ran, "", "<= ~6 started before it")
    assert ran <= 2 * N + 2, f"{ran} of 40 tasks ran: the queued ones were not dropped"


# -- arguments ---------------------------------------------------------------------
def test_a_keyword_argument_may_share_a_name_with_applys_parameters(rc):
    assert rc[0].apply_sync(lambda f: f * 2, f=5) == 10
    assert rc.load_balanced_view().apply_sync(lambda f, args, kwargs: (f, args, kwargs), f=1, args=2, kwargs=3) \
        == (1, 2, 3)


@pytest.mark.parametrize("names", [{1: 2}, {"not valid": 1}, {"__builtins__": {}}, {"": 0}, {"class": 1}], ids=str)
def test_push_refuses_names_that_are_not_assignable(rc, names):
    with pytest.raises((TypeError, ValueError)) as raised:
        rc[:].push(names, block=True)
    assert repr(next(iter(names))) in str(raised.value)
    assert rc[0].apply_sync(lambda: sorted(k for k in globals() if not isinstance(k, str))) == []


def test_client_wait_waits_for_plain_futures(rc):
    pending: futures.Future = futures.Future()
    start = time.monotonic()
    assert rc.wait([pending], timeout=0.5) is False
    assert time.monotonic() - start >= 0.45
    pending.set_result(1)
    assert rc.wait([pending, rc[0].apply_async(lambda: 1)], timeout=5) is True


def test_wait_for_send_without_a_timeout(rc):
    import numpy

    ar = rc[0].apply_async(len, numpy.zeros(10**6))
    view = rc[0]
    view.track = True
    tracked = view.apply_async(len, numpy.zeros(10**6))
    tracked.wait_for_send()
    assert tracked.sent
    assert tracked.get(10) == ar.get(10) == 10**6


def test_a_result_too_big_for_the_hub_says_so():
    with Cluster(n=1, profile="faults-client", max_results_mb=1) as rc:
        ar = rc[0].apply_async(lambda: __import__("numpy").zeros(2**18))  # 2 MB
        ar.get(10)
        small = rc[0].apply_async(lambda: 1)
        small.get(10)
        rc.purge_local_results("all")
        with rc.__class__(rc.connection_file) as other:
            with pytest.raises(KeyError, match="larger than the hub's result store limit"):
                other.get_result(ar.msg_ids[0])
            assert other.get_result(small.msg_ids[0]).get(5) == 1
            with pytest.raises(KeyError, match="never submitted"):
                other.get_result("no-such-id")


def test_repr_of_a_view_whose_engine_is_gone():
    with Cluster(n=2, profile="faults-client") as rc:
        view = rc[1]
        os.kill(view.apply_sync(os.getpid), signal.SIGKILL)
        wait_until(lambda: 1 not in rc.ids, timeout=10)
        assert "1" in repr(view) and "DirectView" in repr(view)
        assert "DirectView" in repr(rc[:])


# -- engines that die and come back ---------------------------------------------------
def test_engine_death_names_its_exit_status_or_signal(figure):
    with Cluster(n=2, profile="faults-client") as rc:
        start = time.monotonic()
        with pytest.raises(EngineError, match=r"engine 1 died \(killed by signal 9, SIGKILL\)"):
            rc[1].apply_sync(lambda: __import__("os").kill(__import__("os").getpid(), 9))
        figure("seconds to EngineError: local engine killed by SIGKILL", time.monotonic() - start, "s", "< 5")
        start = time.monotonic()
        with pytest.raises(EngineError, match=r"engine 0 died \(exit status 3\)"):
            rc[0].apply_sync(lambda: __import__("os")._exit(3))
        figure("seconds to EngineError: local engine exits", time.monotonic() - start, "s", "< 5")


def test_calls_during_an_automatic_restart_wait_for_the_fresh_engine():
    with Cluster(n=2, profile="faults-client", restart_engines=True) as rc:
        os.kill(rc[0].apply_sync(os.getpid), signal.SIGKILL)
        deadline = time.monotonic() + 60
        answers = []
        while time.monotonic() < deadline and len(answers) < 30:
            try:
                answers.append(rc[0].apply_sync(lambda: "fresh"))
            except EngineError as error:  # only the call that was running when it died
                answers.append(str(error))
            time.sleep(0.05)
        refused = [a for a in answers if "does not exist" in a]
        assert refused == [], refused[0]
        assert answers[-1] == "fresh"
        assert rc.ids == [0, 1]


def test_everything_is_left_idle(rc):
    wait_idle(rc)
    assert rc[:].apply_sync(lambda: 1) == [1] * N
