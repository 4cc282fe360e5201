"""Faults inside an engine: whatever user code raises, returns or breaks, the engine answers and serves on."""
from __future__ import annotations

import sys
import time

import pytest

from pxmagic import Cluster, RemoteError

N = 2


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=N, profile="faults-engine")
    cluster.start()
    yield cluster
    cluster.stop()


def engine_pid(rc, target: int = 0) -> int:
    return rc[target].apply_sync(lambda: __import__("os").getpid())


def assert_serves(rc, pid: int, target: int = 0) -> None:
    """The engine answers the next call at once, and it is the same kernel (its namespace kept)."""
    ar = rc[target].apply_async(lambda: __import__("os").getpid())
    assert ar.wait(10), f"engine {target} no longer answers"
    assert ar.get() == pid, f"engine {target} was replaced"


def undescribable():
    """A function raising an exception whose ``__str__`` has a typo in it."""
    def raises():
        class QuotaError(Exception):
            def __str__(self):
                return f"quota exceeded for {self.usr}"  # there is no self.usr

        raise QuotaError()

    return raises


def raise_with_notes(notes):
    def raises():
        error = ValueError("bad value")
        error.__notes__ = notes
        raise error

    return raises


# -- point 1: an exception that cannot be described -------------------------------------
@pytest.mark.parametrize("queued", [False, True], ids=["alone", "queued behind a call"])
def test_an_exception_whose_str_raises_is_reported_and_the_engine_serves_on(rc, queued):
    pid = engine_pid(rc)
    ahead = rc[0].apply_async(time.sleep, 0.3) if queued else None
    ar = rc[0].apply_async(undescribable())
    with pytest.raises(RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "QuotaError"
    assert "could not be described" in info.value.evalue and "AttributeError" in info.value.evalue
    if ahead is not None:
        ahead.get(10)
    assert_serves(rc, pid)


@pytest.mark.parametrize("notes, says", [(5, "is a int, not a list"), ([1, "kept"], "1 of its __notes__"),
                                         ("a string", "is a str, not a list")])
def test_notes_that_are_not_strings_are_reported_not_fatal(rc, notes, says):
    pid = engine_pid(rc)
    with pytest.raises(RemoteError) as info:
        rc[0].apply_sync(raise_with_notes(notes))
    assert info.value.ename == "ValueError" and "bad value" in info.value.evalue and says in info.value.evalue
    assert_serves(rc, pid)


def test_an_undescribable_exception_in_a_cell_is_reported(rc):
    pid = engine_pid(rc)
    code = ("class QuotaError(Exception):\n"
            "    def __str__(self): return f'quota exceeded for {self.usr}'\n"
            "raise QuotaError()\n")
    with pytest.raises(RemoteError) as info:
        rc[0].execute(code, block=True)
    assert "QuotaError" in str(info.value)
    assert_serves(rc, pid)


# -- point 3: interrupts and BaseExceptions while (un)pickling --------------------------
class UnpicklesBy:
    """An argument whose unpickling on the engine calls ``func(*args)``, as a ``__setstate__`` would."""

    def __init__(self, func, *args):
        self.call = (func, args)

    def __reduce__(self):
        return self.call


@pytest.mark.parametrize("argument, ename", [
    (UnpicklesBy(sys.exit, "bye"), "SystemExit"),
    (UnpicklesBy(exec, "raise KeyboardInterrupt"), "KeyboardInterrupt"),
    (UnpicklesBy(exec, "raise GeneratorExit"), "GeneratorExit"),
])
def test_a_base_exception_while_loading_the_call_is_an_error(rc, argument, ename):
    pid = engine_pid(rc)
    with pytest.raises(RemoteError) as info:
        rc[0].apply_sync(len, argument)
    assert info.value.ename == ename and "could not load the call" in info.value.evalue
    assert_serves(rc, pid)


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt", "GeneratorExit"])
def test_a_base_exception_while_pickling_the_result_is_an_error(rc, raised):
    def returns_unpicklable(raised):
        class Result:
            def __reduce__(self):
                raise getattr(__import__("builtins"), raised)()

        return Result()

    pid = engine_pid(rc)
    with pytest.raises(RemoteError) as info:
        rc[0].apply_sync(returns_unpicklable, raised)
    assert info.value.ename == "SerializationError" and raised in info.value.evalue
    assert_serves(rc, pid)


def test_an_interrupt_while_loading_the_call_is_a_keyboard_interrupt(rc):
    pid = engine_pid(rc)
    ar = rc[0].apply_async(len, UnpicklesBy(time.sleep, 30))
    time.sleep(0.5)
    rc[0].interrupt()
    with pytest.raises(RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "KeyboardInterrupt"
    assert_serves(rc, pid)


def test_an_interrupt_while_pickling_the_result_is_reported(rc):
    def slow_to_pickle():
        class Result:
            def __reduce__(self):
                __import__("time").sleep(30)
                return (int, ())

        return Result()

    pid = engine_pid(rc)
    ar = rc[0].apply_async(slow_to_pickle)
    time.sleep(0.5)
    rc[0].interrupt()
    with pytest.raises(RemoteError) as info:
        ar.get(10)
    assert info.value.ename == "SerializationError" and "KeyboardInterrupt" in info.value.evalue
    assert_serves(rc, pid)


def test_a_result_whose_repr_and_str_raise_still_comes_back(rc):
    def odd_result():
        class Odd:
            def __repr__(self):
                raise RuntimeError("no repr")

            __str__ = __repr__

        return Odd()

    pid = engine_pid(rc)
    assert type(rc[0].apply_sync(odd_result)).__name__ == "Odd"
    assert_serves(rc, pid)


# -- point 9: aborting queued work -------------------------------------------------------
@pytest.mark.parametrize("queued", [3, 10, 50])
def test_aborting_any_number_of_queued_calls_leaves_the_engine_serving(rc, queued):
    pid = engine_pid(rc)
    ars = [rc[0].apply_async(time.sleep, 0.25) for _ in range(queued)]
    time.sleep(0.1)
    rc[0].abort()
    assert rc.wait(ars, timeout=10), "aborted work left outstanding"
    outcomes = [type(ar.exception()).__name__ for ar in ars]
    assert outcomes[0] == "NoneType"  # the running call finishes
    assert outcomes[1:].count("RemoteError") >= queued - 2
    assert all(ar.exception().ename == "AbortedTask" for ar in ars if ar.exception() is not None)
    start = time.monotonic()
    assert_serves(rc, pid)
    assert time.monotonic() - start < 2


# -- exit() in a cell --------------------------------------------------------------------
@pytest.mark.parametrize("call", ["exit()", "quit()", "exit(3)"])
def test_exit_in_a_cell_is_refused_and_the_engine_serves_on(rc, call):
    pid = engine_pid(rc)
    with pytest.raises(RemoteError) as info:
        rc[0].execute(call, block=True)
    assert "ends the cell, not the engine" in str(info.value)
    assert_serves(rc, pid)
