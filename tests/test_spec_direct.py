"""The examples of the spec's sections on creating views, calling functions and
moving objects, run as written there (in Python 3 form) against a real cluster."""
from __future__ import annotations

import time

import numpy as np
import pytest

import pxmagic
from pxmagic import AsyncResult, Client, CompositeError, RemoteError
from conftest import N_ENGINES
from helpers import wait_until


@pytest.fixture
def wait():
    """The spec's ``wait``, defined locally so that it travels by value, as in a session."""

    def wait(t):
        import time

        tic = time.time()
        time.sleep(t)
        return time.time() - tic

    return wait


def test_ids_and_views(rc):
    assert rc.ids == list(range(N_ENGINES))
    assert repr(rc[1:3]) == "<DirectView [1, 2]>"
    assert len(rc[::2]) == 2 and rc[::2].apply_sync(lambda: 1) == [1, 1]
    assert rc[1::2].apply_sync(lambda: 2) == [2, 2]


def test_client_by_file_and_by_profile(rc, cluster):
    by_file = Client(rc.connection_file)
    by_profile = Client(profile=cluster.profile, cluster_id=cluster.cluster_id)
    try:
        assert by_file.ids == by_profile.ids == rc.ids
        assert by_file[0].apply_sync(lambda: 7) == 7
    finally:
        by_file.close()
        by_profile.close()


def test_blocking_apply_finds_pushed_names(dview):
    dview["a"] = 5
    dview["b"] = 10
    assert dview.apply(lambda x: a + b + x, 27) == [42] * N_ENGINES  # noqa: F821
    dview.block = False
    assert dview.apply_sync(lambda x: a + b + x, 27) == [42] * N_ENGINES  # noqa: F821


def test_execute_on_slices(rc, dview):
    dview["a"], dview["b"] = 5, 10
    rc[::2].execute("c=a+b", block=True)
    rc[1::2].execute("c=a-b", block=True)
    assert dview["c"] == [15, -5, 15, -5]


def test_non_blocking_apply_and_timeout(dview, wait):
    ar = dview.apply_async(wait, 1)
    assert isinstance(ar, AsyncResult) and ar.ready() is False
    with pytest.raises(pxmagic.TimeoutError, match="Result not ready."):
        ar.get(0.2)
    times = ar.get(30)
    assert len(times) == N_ENGINES and all(0.9 < t < 5 for t in times)
    assert ar.ready() and ar.successful() and ar.r == times


def test_view_wait_on_a_list_of_results(dview, wait):
    dview.block = False
    pr_list = [dview.apply_async(wait, 0.2) for _ in range(5)]
    assert dview.wait(pr_list, timeout=30) is True
    assert all(len(ar.get(0)) == N_ENGINES for ar in pr_list)
    assert dview.wait([ar.msg_ids[0] for ar in pr_list], timeout=1) is True


def test_wait_returns_false_on_timeout(dview, wait):
    ar = dview.apply_async(wait, 1)
    assert dview.wait([ar], timeout=0.1) is False
    assert ar.wait(30) is True


def test_block_and_targets_attributes(rc, dview):
    dview.targets = [0, 2]
    dview.block = False
    ar = dview.apply(lambda: 10)
    assert isinstance(ar, AsyncResult) and ar.get(30) == [10, 10]
    dview.targets = rc.ids
    dview.block = True
    assert dview.apply(lambda: 42) == [42] * N_ENGINES


def test_keyword_overrides_last_one_call(dview):
    dview.push({"a": "elsewhere"}, block=True)
    dview.push({"a": "here"}, targets=1, block=True)
    dview.block = False
    assert dview.pull("a", targets=1, block=True) == "here" == dview.pull("a", block=True)[1]
    assert dview.pull("a", block=True)[0] == "elsewhere"
    assert isinstance(dview.pull("a"), AsyncResult)
    assert dview.block is False, "the keyword changed only that call"


def test_single_engine_view_returns_single_values(rc):
    view = rc[0]
    assert view.apply_sync(lambda: 3) == 3
    assert repr(view) == "<DirectView 0>"


def test_async_result_is_a_future(dview):
    ar = dview.apply_async(lambda: 5)
    assert ar.result(timeout=30) == [5] * N_ENGINES
    assert ar.get_dict() == {i: 5 for i in range(N_ENGINES)}
    assert len(ar.msg_ids) == N_ENGINES and len(set(ar.msg_ids)) == N_ENGINES


def test_push_and_pull(dview):
    assert dview.push(dict(a=1.03234, b=3453)) == [None] * N_ENGINES
    assert dview.pull("a") == [1.03234] * N_ENGINES
    assert dview.pull("b", targets=0) == 3453
    assert dview.pull(("a", "b")) == [[1.03234, 3453]] * N_ENGINES
    assert dview.push(dict(c="speed")) == [None] * N_ENGINES
    ar = dview.pull("a", block=False)
    assert ar.get(30) == [1.03234] * N_ENGINES


def test_dictionary_interface(dview):
    dview["a"] = ["foo", "bar"]
    assert dview["a"] == [["foo", "bar"]] * N_ENGINES
    dview.update({"u": 1})
    assert dview.get("u") == [1] * N_ENGINES


def test_pull_of_a_missing_name_names_it(dview):
    with pytest.raises(CompositeError) as info:
        dview.pull("no_such_name_here")
    assert info.value.ename == "NameError" and "no_such_name_here" in info.value.evalue


def test_numpy_array_round_trip(rc):
    array = np.random.default_rng(1).random((512, 512))
    rc[1].push({"big": array}, block=True)
    back = rc[1].pull("big", block=True)
    assert isinstance(back, np.ndarray) and np.array_equal(back, array)
    assert back.flags.writeable
    assert rc[1].apply_sync(lambda: (big.sum(), big.flags.writeable)) == (array.sum(), True)  # noqa: F821


def test_composite_error_as_the_spec_prints_it(dview, capsys):
    with pytest.raises(CompositeError) as info:
        dview.execute("1/0")
    error = info.value
    text = str(error)
    assert text.startswith("one or more exceptions from call to method: execute")
    for i in range(N_ENGINES):
        assert f"[{i}:apply]: ZeroDivisionError: division by zero" in text
    assert [eid for eid, _ in error.elist] == list(range(N_ENGINES))
    error.print_tracebacks()
    printed = capsys.readouterr().out
    assert printed.count("ZeroDivisionError") >= N_ENGINES and "[3:apply]:" in printed
    with pytest.raises(RemoteError) as one:
        error.raise_exception()
    assert one.value.ename == "ZeroDivisionError" and one.value.engine_id == 0
    assert str(one.value).startswith("ZeroDivisionError(division by zero)")


def test_errors_in_non_blocking_mode_and_apply(dview):
    dview.block = False
    ar = dview.execute("1/0")
    with pytest.raises(CompositeError):
        ar.get(30)
    assert ar.successful() is False

    def fails():
        return 1 / 0

    with pytest.raises(CompositeError) as info:
        dview.apply_sync(fails)
    assert "call to method: fails" in str(info.value)
    assert "return 1 / 0" in info.value.traceback and "apply_request" not in info.value.traceback


def test_remote_error_from_one_engine(rc):
    with pytest.raises(RemoteError) as info:
        rc[2].apply_sync(lambda: {}["missing"])
    assert not isinstance(info.value, CompositeError)
    assert info.value.ename == "KeyError" and info.value.engine_id == 2


def test_engines_run_in_parallel(dview, wait):
    start = time.monotonic()
    dview.apply_sync(wait, 1)
    assert time.monotonic() - start < 1 + 0.9 * (N_ENGINES - 1)


def test_stdout_reaches_the_client_tagged_by_engine(dview):
    dview.block = False
    ar = dview.execute("import os; print('engine says', os.getpid())")
    ar.get(30)
    pids = dview.apply_sync(__import__("os").getpid)
    wait_until(lambda: all(ar.stdout.values()), timeout=5)
    for engine_id, pid in zip(dview.client.ids, pids):
        assert ar.stdout[engine_id] == f"engine says {pid}\n"


def test_an_executes_output_is_complete_once_wait_for_output_says_so(dview):
    """Engines send execute replies without ipykernel's 0.5 ms sleep: "idle" marks the output's end."""
    for _ in range(5):
        ar = dview.execute("for i in range(200): print(i)\nfrom IPython.display import display\n"
                           "display({'shown': 1}, raw=True)", block=False)
        ar.get(30)
        assert ar.wait_for_output(10)
        expected = "".join(f"{i}\n" for i in range(200))
        assert [ar.stdout[engine_id] for engine_id in ar.engine_ids] == [expected] * N_ENGINES
        assert len([o for o in ar.outputs if o.msg_type == "display_data"]) == N_ENGINES


def test_an_execute_that_puts_out_nothing_has_its_output_complete_with_its_reply(dview):
    """Its reply says so; without that, "idle" comes a little after the reply, through IOPub."""
    for _ in range(20):
        quiet = dview.client[0].execute("silent_value = 1", block=False)
        quiet.get(30)
        assert quiet.wait_for_output(0) and quiet.outputs == []
    for code, kind in (("6 * 7", "execute_result"),
                       ("from IPython.display import clear_output\nclear_output()", "clear_output")):
        ar = dview.execute(code, block=False)
        ar.get(30)
        assert ar.wait_for_output(10)
        assert [o.msg_type for o in ar.outputs] == [kind] * N_ENGINES, code


def test_track_tells_when_zmq_is_done_with_the_buffers(rc):
    view = rc[0]
    view.track = True
    array = np.ones(2_000_000)
    ar = view.push({"tracked": array})
    ar.wait_for_send(30)
    assert ar.sent
    ar.get(30)
    assert rc[0].apply_sync(lambda: float(tracked.sum())) == 2_000_000.0  # noqa: F821


def test_an_applys_output_is_complete_once_wait_for_output_says_so(dview):
    def chatty(n):
        from IPython.display import display

        for i in range(n):
            print(i)
        display({"shown": n}, raw=True)
        return n

    ar = dview.apply_async(chatty, 50)
    assert ar.get(30) == [50] * N_ENGINES
    assert ar.wait_for_output(10)
    expected = "".join(f"{i}\n" for i in range(50))
    assert [ar.stdout[engine_id] for engine_id in ar.engine_ids] == [expected] * N_ENGINES
    shown = [o for o in ar.outputs if o.msg_type == "display_data"]
    assert sorted(o.engine_id for o in shown) == sorted(ar.engine_ids)
    quiet = dview.apply_async(lambda: "nothing printed")
    quiet.get(30)
    assert quiet.wait_for_output(0) and quiet.outputs == []
