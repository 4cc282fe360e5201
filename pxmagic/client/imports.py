"""``with view.sync_imports():``: imports in the block also run on the view's engines.

While the block runs, ``builtins.__import__`` notes the imports made
directly by the block's own code.  When it ends, the names the block bound
(``import a``, ``import a.b``, ``import a as b``, ``from a import b as c``)
are repeated on the engines, so the engines' namespaces get the same names.
"""
from __future__ import annotations

import builtins
import sys
from types import FrameType, ModuleType
from typing import TYPE_CHECKING, Any

from .. import engine_calls

if TYPE_CHECKING:
    from .view import DirectView


class SyncImports:
    def __init__(self, view: DirectView, local: bool = True, quiet: bool = False):
        if not local:
            raise NotImplementedError(
                "sync_imports(local=False) is not supported: the imports run here as well, "
                "so only modules importable locally can be synced")
        self.view = view
        self.quiet = quiet
        self._frame: FrameType | None = None
        self._before: dict[str, Any] = {}
        self._modules: list[str] = []
        self._from_imports: list[tuple[str, str]] = []

    def __enter__(self) -> SyncImports:
        self._frame = sys._getframe(1)
        self._before = dict(self._frame.f_locals)
        self._original_import = builtins.__import__
        builtins.__import__ = self._import
        return self

    def _import(self, name: str, globals: Any = None, locals: Any = None, fromlist: Any = (),
                level: int = 0) -> ModuleType:
        module = self._original_import(name, globals, locals, fromlist, level)
        if level == 0 and sys._getframe(1) is self._frame:
            self._modules.append(name)
            self._from_imports += [(name, attribute) for attribute in fromlist or ()]
            if not self.quiet:
                what = f"{', '.join(fromlist)} from {name}" if fromlist else name
                print(f"importing {what} on engine(s)")
        return module

    def __exit__(self, kind: Any, error: Any, traceback: Any) -> None:
        builtins.__import__ = self._original_import
        frame, self._frame = self._frame, None
        if kind is not None or not self._modules:
            return
        bindings = []
        for name, value in frame.f_locals.items():
            if name in self._before and self._before[name] is value:
                continue
            if isinstance(value, ModuleType) and value.__name__.partition(".")[0] in self._tops():
                bindings.append((name, value.__name__, None))
                continue
            for module_name, attribute in self._from_imports:
                if getattr(sys.modules.get(module_name), attribute, None) is value:
                    bindings.append((name, module_name, attribute))
                    break
        self.view.apply_sync(engine_calls.sync_imports, self._modules, bindings)

    def _tops(self) -> set[str]:
        return {name.partition(".")[0] for name in self._modules}
