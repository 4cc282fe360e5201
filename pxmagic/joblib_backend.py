"""pxmagic as a joblib backend: ``Parallel(n_jobs=-1)`` runs on the engines.

After :func:`register_joblib_backend`, code written for joblib (and the
libraries built on it, scikit-learn first) runs its batches as load-balanced
tasks::

    pxmagic.register_joblib_backend()
    with joblib.parallel_config(backend="pxmagic"):
        Parallel(n_jobs=-1)(delayed(f)(i) for i in range(100))

joblib sizes its batches from how long they take (its ``AutoBatchingMixin``),
so many tiny calls become a few tasks.  An error in one batch cancels the
batches still queued or running, as ``AsyncResult.cancel`` does.
joblib is an optional dependency: ``pip install pxmagic[joblib]``.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

try:
    from joblib.parallel import AutoBatchingMixin, ParallelBackendBase, register_parallel_backend
except ImportError as error:  # an optional extra
    raise ImportError("pxmagic's joblib backend needs joblib: pip install 'pxmagic[joblib]'") from error

from .client import AsyncResult, Client, DirectView, LoadBalancedView

BACKEND_NAME = "pxmagic"


class PxmagicBackend(AutoBatchingMixin, ParallelBackendBase):
    """Runs joblib's batches on a load-balanced view: the given one, or all engines of ``Client()``."""

    supports_retrieve_callback = True

    def __init__(self, view: LoadBalancedView | DirectView | Client | None = None, **backend_kwargs: Any):
        super().__init__(**backend_kwargs)
        self._given = view
        self._view: LoadBalancedView | None = None
        self._own_client: Client | None = None
        self._lock = threading.Lock()
        self._outstanding: set[AsyncResult] = set()

    def configure(self, n_jobs: int | None = 1, parallel: Any = None, **backend_kwargs: Any) -> int:
        """Connect (once a Parallel call) and say how many batches run at a time."""
        self.parallel = parallel
        return self.effective_n_jobs(n_jobs)

    def effective_n_jobs(self, n_jobs: int | None) -> int:
        """``-1`` (or None) is every engine of the view, ``-2`` all but one, as joblib counts CPUs."""
        if n_jobs == 0:
            raise ValueError("n_jobs == 0 in Parallel has no meaning")
        view = self._connected()
        engines = len(view.client.resolve_targets(view.targets)[0])
        if n_jobs is None or n_jobs < 0:
            return max(engines + 1 + (n_jobs or -1), 1)
        return n_jobs

    def _connected(self) -> LoadBalancedView:
        if self._view is None:
            self._view = self._balanced_view()
        return self._view

    def _balanced_view(self) -> LoadBalancedView:
        given = self._given
        if isinstance(given, LoadBalancedView):
            return given
        if isinstance(given, DirectView):
            return given.client.load_balanced_view(given.targets)
        if isinstance(given, Client):
            return given.load_balanced_view()
        self._own_client = Client()
        return self._own_client.load_balanced_view()

    def submit(self, func: Callable, callback: Callable | None = None) -> AsyncResult:
        result = self._connected().apply_async(func)
        with self._lock:
            self._outstanding.add(result)
        result.add_done_callback(self._forget)
        if callback is not None:
            result.add_done_callback(callback)
        return result

    def retrieve_result_callback(self, result: AsyncResult) -> Any:
        return result.result()

    def abort_everything(self, ensure_ready: bool = True) -> None:
        """A batch failed: stop every other batch of this call, queued or running."""
        with self._lock:
            outstanding = list(self._outstanding)
        for result in outstanding:
            result.cancel()

    def terminate(self) -> None:
        if self._own_client is not None:
            self._own_client.close()
            self._own_client = None
        self._view = None
        self.reset_batch_stats()

    def _forget(self, result: AsyncResult) -> None:
        with self._lock:
            self._outstanding.discard(result)


def register_joblib_backend(view: LoadBalancedView | DirectView | Client | None = None,
                            name: str = BACKEND_NAME, make_default: bool = False) -> None:
    """Make ``joblib.parallel_config(backend=name)`` run on ``view`` (default: all engines of ``Client()``)."""
    if view is not None and not isinstance(view, (LoadBalancedView, DirectView, Client)):
        raise TypeError(f"the pxmagic joblib backend runs on a view or a Client, not {view!r}")
    register_parallel_backend(name, lambda **kwargs: PxmagicBackend(view, **kwargs), make_default=make_default)
