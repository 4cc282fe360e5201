"""DirectView: explicit control of a chosen set of engines.

Every method is built on two requests: ``apply_request`` (call a function in
the engines' namespace) and ``execute_request`` (run code, as a notebook
cell would).  ``block``, ``track`` and ``targets`` are attributes used as
defaults, and each call may override them by keyword, as the IPython parallel
documentation describes.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any
from collections.abc import Callable

from .. import serialize
from ..engine import ops
from ..protocol import APPLY_REQUEST, EXECUTE_REQUEST
from .asyncresult import AsyncResult

if TYPE_CHECKING:
    from .client import Client, Targets


class DirectView:
    """A view on a fixed set of engines (``rc[:]``, ``rc[0]``, ``rc[::2]``)."""

    def __init__(self, client: "Client", targets: "Targets" = "all"):
        self.client = client
        self._targets = targets
        self.block = False
        self.track = False

    @property
    def targets(self) -> "Targets":
        return self._targets

    @targets.setter
    def targets(self, targets: "Targets") -> None:
        self.client.resolve_targets(targets)
        self._targets = targets

    def __repr__(self) -> str:
        ids, single = self.client.resolve_targets(self._targets)
        return f"<DirectView {ids[0] if single else ids}>"

    def __len__(self) -> int:
        return len(self.client.resolve_targets(self._targets)[0])

    # -- the two requests ---------------------------------------------------
    def _apply(
        self,
        func: Callable,
        args: tuple = (),
        kwargs: dict | None = None,
        block: bool | None = None,
        targets: "Targets" = None,
        track: bool | None = None,
    ) -> Any:
        ids, single = self.client.resolve_targets(self._targets if targets is None else targets)
        buffers = serialize.pack_call(func, args, kwargs or {})
        result = self.client.send_request(
            APPLY_REQUEST, {}, ids, single, getattr(func, "__name__", "apply"),
            buffers, self.track if track is None else track,
        )
        return self._finish(result, block)

    def _finish(self, result: AsyncResult, block: bool | None) -> Any:
        return result.get() if (self.block if block is None else block) else result

    def apply(self, f: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` on each engine; blocks if ``self.block``."""
        return self._apply(f, args, kwargs)

    def apply_sync(self, f: Callable, *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` on each engine and return the result(s)."""
        return self._apply(f, args, kwargs, block=True)

    def apply_async(self, f: Callable, *args: Any, **kwargs: Any) -> AsyncResult:
        """Call ``f(*args, **kwargs)`` on each engine; return an AsyncResult at once."""
        return self._apply(f, args, kwargs, block=False)

    def execute(
        self, code: str, silent: bool = False, targets: "Targets" = None, block: bool | None = None
    ) -> AsyncResult | None:
        """Run ``code`` on each engine as a cell; blocking returns None once all are done."""
        ids, single = self.client.resolve_targets(self._targets if targets is None else targets)
        content = {
            "code": code,
            "silent": silent,
            "store_history": not silent,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        result = self.client.send_request(EXECUTE_REQUEST, content, ids, single, "execute")
        if self.block if block is None else block:
            result.get()
            return None
        return result

    # -- moving objects -----------------------------------------------------
    def push(
        self, ns: dict, targets: "Targets" = None, block: bool | None = None, track: bool | None = None
    ) -> Any:
        """Update each engine's namespace with the dict ``ns``."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, not {type(ns).__name__}")
        return self._apply(ops.push, (ns,), block=block, targets=targets, track=track)

    def pull(self, names: str | tuple | list, targets: "Targets" = None, block: bool | None = None) -> Any:
        """Values of ``names`` (one name, or a tuple of names) on each engine."""
        if not isinstance(names, (str, tuple, list)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"pull takes a name or a tuple of names, not {names!r}")
        return self._apply(ops.pull, (names,), block=block, targets=targets)

    def __setitem__(self, name: str, value: Any) -> None:
        self.push({name: value}, block=True)

    def __getitem__(self, name: str) -> Any:
        return self.pull(name, block=True)

    def get(self, names: str | tuple | list) -> Any:
        """``pull(names, block=True)``."""
        return self.pull(names, block=True)

    def update(self, ns: dict) -> Any:
        """``push(ns)`` with the view's ``block`` and ``track``."""
        return self.push(ns)

    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait for AsyncResults (or msg_ids); see :meth:`Client.wait`."""
        return self.client.wait(jobs, timeout)
