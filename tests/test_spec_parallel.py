"""The spec's parallel map, remote functions, scatter/gather, imports and
dependencies, and the load-balanced view, on a real 4-engine cluster."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from pxmagic import AsyncResult, CompositeError, RemoteError, UnmetDependencyError, require
from conftest import N_ENGINES


def test_parallel_map_equals_serial_map(dview):
    serial_result = list(map(lambda x: x**10, range(32)))
    parallel_result = dview.map_sync(lambda x: x**10, range(32))
    assert serial_result == parallel_result
    ar = dview.map_async(lambda x: x**10, range(32))
    assert isinstance(ar, AsyncResult) and ar.get(30) == serial_result


def test_map_over_several_sequences_and_iterables(dview):
    assert dview.map_sync(lambda x, y: x + y, [1, 2, 3], (10, 20, 30)) == [11, 22, 33]
    assert dview.map_sync(lambda x: -x, (i for i in range(6))) == [0, -1, -2, -3, -4, -5]
    assert dview.map_sync(lambda x, y: (x, y), range(5), "ab") == [(0, "a"), (1, "b")], "shortest wins"
    assert dview.map_sync(lambda x: x, []) == []


def test_remote_decorator_runs_on_every_engine(dview):
    @dview.remote(block=True)
    def getpid():
        import os

        return os.getpid()

    pids = getpid()
    assert len(pids) == N_ENGINES and len(set(pids)) == N_ENGINES and os.getpid() not in pids


def test_parallel_decorator_splits_arrays(dview):
    A = np.random.random((64, 48))

    @dview.parallel(block=True)
    def pmul(A, B):
        return A * B

    C_local = A * A
    C_remote = pmul(A, A)
    assert isinstance(C_remote, np.ndarray) and (C_local == C_remote).all()


def test_parallel_call_versus_parallel_map(dview):
    @dview.parallel(block=True)
    def echo(x):
        return str(x)

    assert echo(range(5)) == ["[0, 1]", "[2]", "[3]", "[4]"]
    assert echo.map(range(5)) == ["0", "1", "2", "3", "4"]


def test_map_chunks_calls_once_a_chunk_with_the_keywords_whole(rc, dview):
    def scaled(xs, factor=1):
        return [x * factor for x in xs]

    assert dview.map_chunks(scaled, [range(5)], {"factor": 10}, block=True) == [0, 10, 20, 30, 40]
    pieces = dview.map_chunks(len, [range(5)], block=False)
    assert pieces.get(10) == [2, 1, 1, 1] and len(pieces.msg_ids) == 4, "one call an engine, on its chunk"
    lview = rc.load_balanced_view()
    assert lview.map_chunks(scaled, [range(7)], {"factor": 2}, block=True, chunksize=3) == [0, 2, 4, 6, 8, 10, 12]


def test_scatter_and_gather(dview):
    assert dview.scatter("a", range(16)) == [None] * N_ENGINES
    assert dview["a"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    assert dview.gather("a") == list(range(16))
    ar = dview.gather("a", block=False)
    assert ar.get(30) == list(range(16))


def test_scatter_uneven_flatten_and_arrays(dview):
    dview.scatter("u", list(range(10)))
    assert [len(part) for part in dview["u"]] == [3, 3, 2, 2]
    dview.scatter("one", ["w", "x", "y", "z"], flatten=True)
    assert dview["one"] == ["w", "x", "y", "z"]
    assert dview.gather("one") == ["w", "x", "y", "z"]
    array = np.arange(10_000_000)
    dview.scatter("arr", array)
    assert dview.apply_sync(lambda: type(arr).__name__) == ["ndarray"] * N_ENGINES  # noqa: F821
    back = dview.gather("arr")
    assert isinstance(back, np.ndarray) and np.array_equal(back, array)
    dview.execute("arr = None")


def test_parallel_list_comprehension(dview):
    dview.scatter("x", range(64))
    dview.execute("y = [i**10 for i in x]")
    y = dview.gather("y")
    assert y == [i**10 for i in range(64)]
    assert y[:9] == [0, 1, 1024, 59049, 1048576, 9765625, 60466176, 282475249, 1073741824]


def test_run_a_local_file(dview, tmp_path):
    script = tmp_path / "script.py"
    script.write_text("ran_from_file = 'yes'\n")
    dview.run(script)
    assert dview["ran_from_file"] == ["yes"] * N_ENGINES


def test_sync_imports(dview, capsys):
    with dview.sync_imports():
        import numpy
    assert "importing numpy on engine(s)" in capsys.readouterr().out
    with dview.sync_imports():
        import json as jsonmod
        import os.path
        from collections import OrderedDict as ODict
    printed = capsys.readouterr().out
    assert "importing json on engine(s)" in printed and "importing OrderedDict from collections" in printed
    checks = dview.apply_sync(lambda: (numpy.__name__, jsonmod.__name__, os.path.__name__,  # noqa: F821
                                       ODict.__name__))  # noqa: F821
    assert checks == [("numpy", "json", os.path.__name__, "OrderedDict")] * N_ENGINES
    import collections
    import sys

    assert numpy is sys.modules["numpy"] and jsonmod is sys.modules["json"] and ODict is collections.OrderedDict, \
        "the block imported here too, the real modules"


def test_sync_imports_local_false_is_refused(dview):
    with pytest.raises(NotImplementedError, match="local=False"):
        dview.sync_imports(local=False)


def test_require_imports_before_the_call(dview):
    import time as time_module

    @require("re")
    def findall(pat, x):
        return re.findall(pat, x)  # noqa: F821

    @require(time_module)
    def wait(t):
        time.sleep(t)  # noqa: F821
        return t

    @require("string", "textwrap")
    def both():
        return string.digits[:3] + textwrap.dedent("  x")  # noqa: F821

    assert dview.apply_sync(findall, r"\d+", "a1b22") == [["1", "22"]] * N_ENGINES
    assert dview.apply_sync(wait, 0.01) == [0.01] * N_ENGINES
    assert dview.apply_sync(both) == ["012x"] * N_ENGINES


def test_unmet_dependency_names_the_module_and_the_body_never_runs(rc, dview):
    @require("no_such_module_anywhere")
    def never():
        global body_ran
        body_ran = True

    with pytest.raises(UnmetDependencyError, match="no_such_module_anywhere"):
        rc[0].apply_sync(never)
    with pytest.raises(CompositeError) as info:
        dview.apply_sync(never)
    assert all(isinstance(err, UnmetDependencyError) for _, err in info.value.elist)
    assert dview.apply_sync(lambda: "body_ran" in globals()) == [False] * N_ENGINES


def test_results_and_waiting(rc, dview):
    dview.block = False
    ars = [dview.apply_async(lambda i=i: i) for i in range(3)]
    assert rc.wait(timeout=30) is True
    assert dview.get_result().get(0) == [2] * N_ENGINES
    assert dview.get_result(-2) is ars[1]
    assert rc.get_result(ars[0].msg_ids[2]) is ars[0]
    assert dview.get_result(ars[0].msg_ids[0]).get_dict() == {i: 0 for i in range(N_ENGINES)}
    with pytest.raises(KeyError, match="no result with msg_id"):
        rc.get_result("not-a-msg-id")


def test_gather_of_a_missing_name_names_engine_and_error(rc):
    rc[0].push({"partial": [1]}, block=True)
    with pytest.raises(CompositeError) as info:
        rc[:].gather("partial", block=True)
    failed = {eid for eid, _ in info.value.elist}
    assert failed == {1, 2, 3}
    assert all(err.ename == "NameError" and "partial" in err.evalue for _, err in info.value.elist)


def test_scatter_of_a_non_sequence(dview):
    with pytest.raises(TypeError, match="scatter's sequence must be a sequence .*, not int"):
        dview.scatter("a", 5)
    with pytest.raises(TypeError, match="not dict"):
        dview.map_sync(lambda x: x, {"a": 1})
    with pytest.raises(TypeError, match="not set"):
        dview.scatter("a", {1, 2})


def test_map_error_names_the_element(dview):
    def inverse(x):
        return 1 / x

    with pytest.raises(CompositeError) as info:
        dview.map_sync(inverse, [3, 2, 1, 0, 5, 6, 7, 8])
    [(engine_id, error)] = info.value.elist
    assert engine_id == 1 and error.ename == "ZeroDivisionError"
    assert "(in map, at element 3)" in error.evalue
    assert "[1:apply]: ZeroDivisionError: division by zero (in map, at element 3)" in str(info.value)


# -- the load-balanced view ---------------------------------------------------

def test_load_balanced_apply_and_map(rc):
    lview = rc.load_balanced_view()
    assert lview.apply_sync(lambda x: x * 2, 21) == 42
    ar = lview.apply_async(lambda: 1)
    assert isinstance(ar, AsyncResult) and ar.get(30) == 1 and ar.engine_ids[0] in rc.ids
    assert lview.map_sync(lambda x: x**2, range(100)) == [x**2 for x in range(100)]
    lview.block = True
    assert lview.map(lambda x: x + 1, range(10), chunksize=3) == list(range(1, 11))
    assert lview.map_sync(lambda x, y: x * y, range(5), range(5, 10)) == [0, 6, 14, 24, 36]


def test_load_balanced_map_iterates_in_order_or_as_completed(rc):
    lview = rc.load_balanced_view()

    def slow_first(x):
        import time

        time.sleep(0.6 if x == 0 else 0.0)
        return x

    ordered = lview.map_async(slow_first, range(8), chunksize=1)
    assert list(ordered) == list(range(8))
    unordered = lview.map_async(slow_first, range(8), chunksize=1, ordered=False)
    arrived = list(unordered)
    assert sorted(arrived) == list(range(8)) and arrived[-1] == 0
    assert unordered.get(30) == list(range(8)), "get() is in input order either way"


def test_short_tasks_do_not_wait_behind_a_long_one(rc):
    lview = rc.load_balanced_view()

    def where(delay):
        import os
        import time

        time.sleep(delay)
        return os.getpid()

    long_task = lview.apply_async(where, 3)
    time.sleep(0.3)
    start = time.monotonic()
    short = [lview.apply_async(where, 0.05) for _ in range(12)]
    short_pids = {ar.get(30) for ar in short}
    elapsed = time.monotonic() - start
    long_pid = long_task.get(30)
    assert long_pid not in short_pids and len(short_pids) >= 2
    assert elapsed < 2.5, f"short tasks took {elapsed:.1f} s: they queued behind the long one"


def test_load_balanced_targets_restrict_the_engines(rc):
    lview = rc.load_balanced_view(targets=[1, 2])
    engines = {ar.get(30) for ar in [lview.apply_async(lambda: __import__("os").getpid()) for _ in range(10)]}
    allowed = set(rc[[1, 2]].apply_sync(__import__("os").getpid))
    assert engines <= allowed
    with pytest.raises(IndexError):
        rc.load_balanced_view(targets=[7])


def test_load_balanced_errors(rc):
    lview = rc.load_balanced_view()
    with pytest.raises(RemoteError) as info:
        lview.apply_sync(lambda: 1 / 0)
    assert info.value.ename == "ZeroDivisionError" and info.value.engine_id in rc.ids
    with pytest.raises(ValueError, match="chunksize"):
        lview.map_sync(lambda x: x, range(3), chunksize=-1)
