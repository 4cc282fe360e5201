"""Functions that run remotely when called: ``@view.remote`` and ``@view.parallel``."""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from . import partition

if TYPE_CHECKING:
    from .view import View


class RemoteFunction:
    """Calling it calls the wrapped function through ``view.apply``."""

    def __init__(self, view: View, func: Callable, block: bool | None = None):
        functools.update_wrapper(self, func)
        self.view = view
        self.func = func
        self.block = block

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {getattr(self.func, '__name__', self.func)!r} on {self.view!r}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.block is None:
            return self.view.apply(self.func, *args, **kwargs)
        call = self.view.apply_sync if self.block else self.view.apply_async
        return call(self.func, *args, **kwargs)


class ParallelFunction(RemoteFunction):
    """Calling it splits its sequence arguments over the engines; ``.map`` maps element-wise.

    ``pfunc(seq)`` makes one call an engine, each on a contiguous chunk
    ``seq[i:j]``, and joins the returned pieces (arrays are concatenated).
    ``pfunc.map(seq)`` calls the function once per element and returns the
    list of results.  Keyword arguments are passed whole to every call.
    """

    def __init__(self, view: View, func: Callable, block: bool | None = None, **options: Any):
        super().__init__(view, func, block)
        self.options = options

    def __call__(self, *sequences: Any, **kwargs: Any) -> Any:
        if not sequences:
            raise TypeError(f"{self.func.__name__}() as a parallel function needs a sequence argument")
        seqs = [partition.as_sequence(s, f"argument {i} of a parallel function") for i, s in enumerate(sequences)]
        return self.view.map_chunks(self.func, seqs, kwargs, block=self.block, **self.options)

    def map(self, *sequences: Any) -> Any:
        return self.view.map(self.func, *sequences, block=self.block, **self.options)
