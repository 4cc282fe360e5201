"""Serialization: data out of band with pickle 5, interactive code by value."""
from __future__ import annotations

import sys
import threading

import numpy as np
import pytest

from pxmagic import SerializationError, serialize


def test_large_arrays_travel_as_their_own_frames_without_a_copy():
    array = np.arange(1_000_000, dtype=np.float64)
    frames = serialize.pack({"x": array, "small": np.arange(10)})
    assert len(frames) == 2
    assert frames[1].nbytes == array.nbytes
    assert np.shares_memory(np.frombuffer(frames[1], dtype=np.float64), array)
    assert len(frames[0]) < 1000
    back = serialize.unpack(frames)
    assert np.array_equal(back["x"], array) and np.array_equal(back["small"], np.arange(10))


def test_lambdas_bind_globals_of_the_receiving_namespace():
    frames = serialize.pack(lambda x: x + offset_for_test)  # noqa: F821
    main = sys.modules["__main__"].__dict__
    main["offset_for_test"] = 10
    try:
        assert serialize.unpack(frames)(1) == 11
    finally:
        del main["offset_for_test"]


def test_closures_defaults_and_recursion():
    scale = 3

    def outer():
        def fact(n, acc=1):
            return acc if n < 2 else fact(n - 1, acc * n * scale // scale)

        return fact

    fact = serialize.unpack(serialize.pack(outer()))
    assert fact(5) == 120


def test_importable_functions_go_by_reference():
    frames = serialize.pack(np.sum)
    assert len(frames[0]) < 100
    assert serialize.unpack(frames) is np.sum


def test_call_errors_name_the_argument_and_its_type():
    with pytest.raises(SerializationError, match="argument 1 of type _thread.lock"):
        serialize.pack_call(print, (1, threading.Lock()), {})
    with pytest.raises(SerializationError, match="the function of type generator"):
        serialize.pack_call((i for i in range(3)), (), {})


def test_modules_in_closures_go_by_name():
    import json as json_module

    frames = serialize.pack(lambda: json_module.dumps([1]))
    assert serialize.unpack(frames)() == "[1]"
