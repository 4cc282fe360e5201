"""pxmagic: IPython's parallel Direct interface, with real Jupyter kernels as engines.

    from pxmagic import Client
    rc = Client()            # after `pxcluster start -n 4 --daemonize`
    dview = rc[:]
    dview.apply_sync(lambda x: x * 2, 21)
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "pxmagic.client",
    "DirectView": "pxmagic.client",
    "AsyncResult": "pxmagic.client",
    "LoadBalancedView": "pxmagic.client",
    "AsyncMapResult": "pxmagic.client",
    "require": "pxmagic.dependencies",
    "Cluster": "pxmagic.cluster",
    "RemoteError": "pxmagic.error",
    "CompositeError": "pxmagic.error",
    "EngineError": "pxmagic.error",
    "TimeoutError": "pxmagic.error",
    "SerializationError": "pxmagic.error",
    "UnmetDependencyError": "pxmagic.error",
    "TaskTimeout": "pxmagic.error",
    "register_joblib_backend": "pxmagic.joblib_backend",
    "progress": "pxmagic.client.progress",
}

__all__ = sorted(_LAZY)


def load_ipython_extension(shell: Any) -> None:
    """``%load_ext pxmagic`` registers %px, %%px, %autopx and %result."""
    from .magics import load_ipython_extension as load

    load(shell)


def __getattr__(name: str) -> Any:
    """Import public names on first use, so ``import pxmagic`` stays fast."""
    if name not in _LAZY:
        raise AttributeError(f"module 'pxmagic' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value
