"""Functions that views send to engines by reference, run in the engine's namespace.

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
