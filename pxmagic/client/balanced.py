"""LoadBalancedView: each call runs once, on whichever engine has room first.

The hub holds the tasks and hands each to the least loaded engine among the
view's targets (all engines by default), so a short task never waits behind
a long one.  ``map`` cuts its sequences into chunks of ``chunksize`` items
(by default about eight chunks an engine) and returns results in input order.
"""
from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ..engine import ops
from .asyncresult import AsyncResult
from . import partition
from .view import View, apply_request

if TYPE_CHECKING:
    from .client import Client
    from .targets import Targets


class LoadBalancedView(View):
    """A view whose calls go to one engine each, chosen by the hub."""

    def __init__(self, client: Client, targets: Targets = None):
        super().__init__(client, targets)

    def __repr__(self) -> str:
        return f"<LoadBalancedView {'all engines' if self._targets is None else self._targets}>"

    def _candidates(self, targets: Targets) -> list[int] | None:
        chosen = self._targets if targets is None else targets
        return None if chosen is None else self.client.resolve_targets(chosen)[0]

    def _apply(self, func: Callable, args: tuple = (), kwargs: dict | None = None,
               block: bool | None = None, targets: Targets = None, track: bool | None = None) -> Any:
        request = apply_request(func, args, kwargs or {}, self._candidates(targets), balanced=True)
        return self._submit([request], True, getattr(func, "__name__", "apply"), block, track=track)

    def _distribute(self, func: Callable, sequences: list[Sequence], kwargs: dict, elementwise: bool,
                    block: bool | None, chunksize: int | None = None, ordered: bool = True,
                    targets: Targets = None) -> Any:
        """One task a chunk of ``chunksize`` items; see :class:`AsyncMapResult` for ``ordered``."""
        candidates = self._candidates(targets)
        length = partition.shortest(sequences)
        engines = len(candidates) if candidates else len(self.client.ids)
        size = chunksize or partition.auto_chunksize(length, engines)
        if size < 1:
            raise ValueError(f"chunksize must be at least 1, not {size}")
        requests = []
        for start in range(0, length, size):
            chunks = tuple(partition.cut(s, start, min(start + size, length)) for s in sequences)
            if elementwise:
                requests.append(apply_request(ops.map_chunk, (func, start, *chunks), {}, candidates, True))
            else:
                requests.append(apply_request(func, chunks, kwargs, candidates, True))
        join = partition.flatten_lists if elementwise else partition.join
        return self._submit(requests, False, getattr(func, "__name__", "map"), block, join,
                            result_class=functools.partial(AsyncMapResult, ordered=ordered))


class AsyncMapResult(AsyncResult):
    """The result of a load-balanced map: wait for all of it, or iterate as chunks arrive.

    Iterating yields results in input order when ``ordered``, else in the order
    their chunks complete.
    """

    def __init__(self, *args: Any, ordered: bool = True, **kwargs: Any):
        self.ordered = ordered
        super().__init__(*args, **kwargs)

    def __iter__(self) -> Iterator[Any]:
        slots = range(len(self.msg_ids)) if self.ordered else self._slots_as_completed()
        for slot in slots:
            yield from self._slot_value(slot)
