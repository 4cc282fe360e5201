"""How sequences are cut over engines and joined back, without a cluster."""
from __future__ import annotations

import numpy as np
import pytest

from pxmagic.client import partition


@pytest.mark.parametrize(("length", "parts", "sizes"), [
    (16, 4, [4, 4, 4, 4]), (10, 4, [3, 3, 2, 2]), (5, 4, [2, 1, 1, 1]), (2, 4, [1, 1, 0, 0]), (0, 3, [0, 0, 0]),
])
def test_chunks_are_contiguous_and_even(length, parts, sizes):
    bounds = partition.chunk_bounds(length, parts)
    assert [stop - start for start, stop in bounds] == sizes
    assert [b[0] for b in bounds[1:]] == [b[1] for b in bounds[:-1]]


def test_split_keeps_arrays_as_views_and_makes_lists_of_the_rest():
    array = np.arange(10)
    pieces = partition.split(array, 3)
    assert all(np.shares_memory(piece, array) for piece in pieces)
    assert partition.split(range(5), 2) == [[0, 1, 2], [3, 4]]
    assert partition.split("abc", 2) == [["a", "b"], ["c"]]


def test_join_restores_the_sequence():
    assert partition.join([[0, 1], [2], []]) == [0, 1, 2]
    assert partition.join(["[0, 1]", "[2]"]) == ["[0, 1]", "[2]"]
    assert partition.join([5, 6]) == [5, 6]
    joined = partition.join([np.arange(3), np.arange(3, 5)])
    assert isinstance(joined, np.ndarray) and joined.tolist() == [0, 1, 2, 3, 4]


def test_sequences_and_non_sequences():
    assert partition.as_sequence(x for x in range(3)) == [0, 1, 2]
    for bad in (5, {"a": 1}, {1, 2}, None):
        with pytest.raises(TypeError, match=type(bad).__name__):
            partition.as_sequence(bad)


def test_auto_chunksize_gives_about_eight_tasks_an_engine():
    assert partition.auto_chunksize(10_000, 2) == 625
    assert partition.auto_chunksize(3, 4) == 1
