"""A ``concurrent.futures.Executor`` over a load-balanced view: ``rc.executor()``.

Code written for ``ProcessPoolExecutor`` (or any library that takes an
Executor) runs on the engines unchanged.  The futures it returns are the
view's AsyncResults, so ``cancel()`` stops the work on the engines, and
``map`` keeps the standard semantics: everything submitted at once, results
yielded lazily in order, ``timeout`` counted from the call, the first error
raised when iteration reaches it (the rest then cancelled).
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any

from .. import engine_calls

if TYPE_CHECKING:
    from .asyncresult import AsyncResult
    from .balanced import LoadBalancedView


class ViewExecutor(futures.Executor):
    """Submits each call as one load-balanced task of ``view``."""

    def __init__(self, view: LoadBalancedView):
        self.view = view
        self._lock = threading.Lock()
        self._shut_down = False
        #: futures not yet done, for ``shutdown(wait=True)`` and ``cancel_futures``
        self._outstanding: set[AsyncResult] = set()

    def __repr__(self) -> str:
        return f"<ViewExecutor on {self.view!r}>"

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> AsyncResult:
        with self._lock:
            if self._shut_down:
                raise RuntimeError("cannot schedule new futures after shutdown")
            result = self.view.apply_async(fn, *args, **kwargs)
            self._outstanding.add(result)
        result.add_done_callback(self._forget)
        return result

    def map(self, fn: Callable, *iterables: Iterable, timeout: float | None = None,
            chunksize: int = 1) -> Iterator:
        """As ``Executor.map``; ``chunksize`` items go to an engine as one task, as with a process pool."""
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if chunksize == 1:
            return super().map(fn, *iterables, timeout=timeout)
        calls = zip(*iterables)
        chunks = iter(lambda: list(itertools.islice(calls, chunksize)), [])
        results = super().map(_run_chunk, itertools.repeat(fn), itertools.count(0, chunksize), chunks,
                              timeout=timeout)
        return itertools.chain.from_iterable(results)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new submissions; ``cancel_futures`` stops what was submitted, ``wait`` waits for the rest."""
        with self._lock:
            self._shut_down = True
            outstanding = list(self._outstanding)
        if cancel_futures:
            for result in outstanding:
                result.cancel()
        if wait:
            futures.wait(outstanding)

    def _forget(self, result: AsyncResult) -> None:
        with self._lock:
            self._outstanding.discard(result)


def _run_chunk(fn: Callable, offset: int, calls: list[tuple]) -> list:
    """One task of a chunked map: ``fn`` on each argument tuple, on the engine."""
    return engine_calls.map_chunk(fn, offset, *zip(*calls))
