"""LoadBalancedView: each call runs once, on whichever engine has room first.

The hub holds the tasks and hands each to the least loaded engine among the
view's targets (all engines by default), so a short task never waits behind
a long one.  ``map`` cuts its sequences into chunks of ``chunksize`` items
(by default about eight chunks an engine) and returns results in input order.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent import futures
from typing import Any

from .. import engine_calls
from .asyncresult import AsyncResult
from . import partition
from ..protocol import RequestTerms, is_count
from .requests import Submitter, apply_request
from .targets import Targets
from .view import View


class LoadBalancedView(View):
    """A view whose calls go to one engine each, chosen by the hub.

    ``retries = N``: a task whose engine dies under it runs again on another
    engine, up to N more times (``retry_errors = True``: a task that raises,
    too); ``AsyncResult.tries`` says how many tries each took.
    """

    flags = (*View.flags, "retries", "retry_errors")

    def __init__(self, client: Submitter, targets: Targets = None):
        super().__init__(client, targets)
        self.retries = 0
        self.retry_errors = False

    @property
    def retries(self) -> int:
        return self._retries

    @retries.setter
    def retries(self, count: int) -> None:
        if not is_count(count):
            raise ValueError(f"retries is a number of further tries, 0 or more, not {count!r}")
        self._retries = count

    def _terms(self, timeout: float | None, name: str) -> RequestTerms:
        return dataclasses.replace(super()._terms(timeout, name), retries=self.retries,
                                   retry_errors=bool(self.retry_errors))

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
                    targets: Targets = None, timeout: float | None = None,
                    return_exceptions: bool | None = None) -> Any:
        """One task a chunk of ``chunksize`` items; see :class:`AsyncMapResult` for ``ordered``."""
        candidates = self._candidates(targets)
        length = partition.shortest(sequences)
        engines = len(candidates) if candidates else len(self.client.ids)
        size = chunksize or partition.auto_chunksize(length, engines)
        if size < 1:
            raise ValueError(f"chunksize must be at least 1, not {size}")
        requests, sizes = [], []
        for start in range(0, length, size):
            sizes.append(min(start + size, length) - start)
            chunks = tuple(partition.cut(s, start, min(start + size, length)) for s in sequences)
            if elementwise:
                requests.append(apply_request(engine_calls.map_chunk, (func, start, *chunks), {}, candidates, True))
            else:
                requests.append(apply_request(func, chunks, kwargs, candidates, True))
        join = partition.flatten_lists if elementwise else partition.join
        return self._submit(requests, False, getattr(func, "__name__", "map"), block, join,
                            result_class=functools.partial(AsyncMapResult, ordered=ordered), timeout=timeout,
                            sizes=sizes if elementwise else None, return_exceptions=return_exceptions)

    def imap(self, f: Callable, *iterables: Iterable, ordered: bool = True, max_outstanding: int | None = None,
             return_exceptions: bool = False) -> Iterator[Any]:
        """Lazy ``map``: one task an item, at most ``max_outstanding`` (default: two an engine) in flight.

        The iterables are read only as tasks are sent, so they may be long
        or endless generators.  Results come in input order when ``ordered``,
        else as they complete; an error is raised when reached (its item's
        RemoteError is yielded instead with ``return_exceptions``), and
        leaving the loop early cancels what is still in flight.
        """
        if not iterables:
            raise TypeError("imap() needs at least one iterable")
        if max_outstanding is None:
            max_outstanding = 2 * max(1, len(self._candidates(None) or self.client.ids))
        if isinstance(max_outstanding, bool) or not isinstance(max_outstanding, int) or max_outstanding < 1:
            raise ValueError(f"max_outstanding is a positive number of tasks, not {max_outstanding!r}")
        return self._imap(f, zip(*iterables), ordered, max_outstanding, return_exceptions)

    def _imap(self, f: Callable, calls: Iterator[tuple], ordered: bool, max_outstanding: int,
              return_exceptions: bool) -> Iterator[Any]:
        in_flight: collections.deque[AsyncResult] = collections.deque()

        def settled() -> Iterator[AsyncResult]:
            if ordered:
                yield in_flight.popleft()
                return
            done, _ = futures.wait(in_flight, return_when=futures.FIRST_COMPLETED)
            for result in [r for r in in_flight if r in done]:
                in_flight.remove(result)
                yield result

        try:
            for args in calls:
                while len(in_flight) >= max_outstanding:
                    for result in settled():
                        yield result.get(return_exceptions=return_exceptions)
                in_flight.append(self._apply(f, args, block=False))
            while in_flight:
                for result in settled():
                    yield result.get(return_exceptions=return_exceptions)
        finally:
            for result in in_flight:
                result.cancel()


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
