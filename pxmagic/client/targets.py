"""Which engines a view's or a call's ``targets`` mean: rules with no cluster in them."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Union

#: which engines: None or "all" (every engine), an engine id, a slice of the ids, or an iterable of ids
Targets = Union[None, str, int, slice, Iterable[int]]


def resolve_targets(targets: Targets, ids: list[int]) -> tuple[list[int], bool]:
    """The engine ids among ``ids`` that ``targets`` means, and whether a single engine was named.

    Booleans are not engine ids, and naming an engine twice is an error: the
    hub would refuse the request, and the caller would wait for replies
    that never come.
    """
    known = set(ids)
    if targets is None or (isinstance(targets, str) and targets == "all"):
        chosen = ids
    elif isinstance(targets, int) and not isinstance(targets, bool):
        if targets not in known:
            raise IndexError(f"no engine {targets}: this cluster's engines are {ids}")
        return [targets], True
    elif isinstance(targets, slice):
        chosen = ids[targets]
    elif isinstance(targets, Iterable) and not isinstance(targets, (str, bytes)):
        chosen = list(targets)
        not_ids = [t for t in chosen if not isinstance(t, int) or isinstance(t, bool)]
        if not_ids:
            raise TypeError(f"engine ids are integers, not {', '.join(map(repr, not_ids))} "
                            "(a boolean is not an engine id)")
        if len(set(chosen)) != len(chosen):
            repeated = sorted({t for t in chosen if chosen.count(t) > 1})
            raise ValueError(f"targets {chosen} repeat engine {', '.join(map(str, repeated))}: "
                             "name each engine once")
        unknown = [t for t in chosen if t not in known]
        if unknown:
            raise IndexError(f"no engine {unknown}: this cluster's engines are {ids}")
    else:
        raise TypeError(f"targets must be an engine id, a slice, a list of ids or 'all', not {targets!r}")
    if not chosen:
        raise IndexError(f"{targets!r} selects no engine: this cluster's engines are {ids}")
    return chosen, False
