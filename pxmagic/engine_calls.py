"""Functions that views send to engines by reference, run in the engine's namespace.

The client imports them to name them in a request, the engine to run them:
they belong to neither package.

Engines have pxmagic installed, so these travel as a module and a name rather
than as code.  ``namespace()`` is the engine's user namespace: the kernel's
``__main__``, the same one ``execute`` and a console attached to the engine see.
"""
from __future__ import annotations

import sys
from typing import Any


def namespace() -> dict:
    return sys.modules["__main__"].__dict__


def push(values: dict) -> None:
    namespace().update(values)


def pull(names: str | tuple | list) -> Any:
    ns = namespace()

    def lookup(name: str) -> Any:
        try:
            return ns[name]
        except KeyError:
            raise NameError(f"name {name!r} is not defined on this engine") from None

    if isinstance(names, str):
        return lookup(names)
    return [lookup(name) for name in names]


def map_chunk(func: Any, offset: int, *chunks: Any) -> list:
    """``[func(*items) for items in zip(*chunks)]``; an error names the element that failed."""
    results = []
    for index, items in enumerate(zip(*chunks)):
        try:
            results.append(func(*items))
        except Exception as error:
            error.add_note(f"(in map, at element {offset + index})")
            raise
    return results


def sync_imports(modules: list[str], bindings: list[tuple[str, str, str | None]]) -> None:
    """Repeat the imports of a client's ``sync_imports`` block in the user namespace.

    ``modules`` are imported first (``import a.b`` needs ``a.b`` loaded though
    it binds ``a``); then each ``(name, module, attribute)`` binds ``name`` to
    the module, or to its attribute (which may be a submodule).
    """
    import importlib

    for module_name in modules:
        importlib.import_module(module_name)
    ns = namespace()
    for name, module_name, attribute in bindings:
        module = importlib.import_module(module_name)
        if attribute is None:
            ns[name] = module
        elif hasattr(module, attribute):
            ns[name] = getattr(module, attribute)
        else:
            ns[name] = importlib.import_module(f"{module_name}.{attribute}")
