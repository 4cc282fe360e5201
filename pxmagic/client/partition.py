"""Splitting sequences over engines and joining the pieces back, without I/O.

``scatter``, ``@parallel`` functions and ``map`` all cut a sequence into
contiguous chunks whose sizes differ by at most one (the first chunks take
the extra elements), and ``gather`` and the results of those calls join the
chunks back in order.  numpy arrays are cut into views along their first
axis and joined with ``numpy.concatenate``; other sequences become lists.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence, Set
from typing import Any


def is_array(value: Any) -> bool:
    """True for numpy arrays, recognised without importing numpy."""
    return type(value).__module__ == "numpy" and type(value).__name__ == "ndarray"


def as_sequence(values: Any, what: str = "argument") -> Sequence:
    """A sliceable sequence of ``values``; a generator or other iterable is read once."""
    if is_array(values) or isinstance(values, (list, tuple, range)):
        return values
    if isinstance(values, Sequence):
        return values
    if isinstance(values, (Mapping, Set)) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a sequence (a list, tuple, range, array, or an iterator), "
                        f"not {type(values).__name__}")
    return list(values)


def chunk_bounds(length: int, parts: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of ``parts`` contiguous chunks whose sizes differ by one at most."""
    if parts < 1:
        return []
    base, extra = divmod(length, parts)
    bounds, start = [], 0
    for index in range(parts):
        stop = start + base + (1 if index < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def cut(sequence: Sequence, start: int, stop: int) -> Any:
    """One chunk: a view for an array, a list otherwise."""
    return sequence[start:stop] if is_array(sequence) else list(sequence[start:stop])


def split(sequence: Sequence, parts: int) -> list:
    """``sequence`` cut into ``parts`` chunks (empty ones when it is shorter than that)."""
    return [cut(sequence, start, stop) for start, stop in chunk_bounds(len(sequence), parts)]


def join(chunks: list) -> Any:
    """Chunks back into one sequence: an array if they are arrays, else a flat list.

    Pieces that are not lists (for example one element an engine after
    ``scatter(..., flatten=True)``, or a string an engine) are kept whole.
    """
    if chunks and all(is_array(c) for c in chunks):
        import numpy

        return numpy.concatenate(chunks)
    joined: list = []
    for chunk in chunks:
        if isinstance(chunk, (list, tuple, range)) or is_array(chunk):
            joined.extend(chunk)
        else:
            joined.append(chunk)
    return joined


def flatten_lists(chunks: list[list]) -> list:
    """Concatenate lists of mapped results, in order."""
    return list(itertools.chain.from_iterable(chunks))


def shortest(sequences: list[Sequence]) -> int:
    """Length that ``map`` uses for several sequences: the shortest, as builtin ``map`` does."""
    return min(len(s) for s in sequences)


def auto_chunksize(length: int, engines: int) -> int:
    """Chunk size for a load-balanced map: about eight tasks an engine, at least one item each."""
    return max(1, math.ceil(length / (8 * max(1, engines))))
