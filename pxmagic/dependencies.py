"""``@require``: modules a function needs, imported wherever it runs before it runs."""
from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any

from .error import UnmetDependencyError


class RequiringFunction:
    """A function that imports its required modules into its globals, then runs.

    If a module cannot be imported, it raises UnmetDependencyError naming the
    module, and the function's body never runs.
    """

    def __init__(self, func: Callable, modules: list[str]):
        self.func = func
        self.modules = modules
        self.__name__ = getattr(func, "__name__", "function")
        self.__doc__ = getattr(func, "__doc__", None)

    def __repr__(self) -> str:
        return f"<{self.__name__} requiring {', '.join(self.modules)}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        namespace = getattr(self.func, "__globals__", sys.modules["__main__"].__dict__)
        for name in self.modules:
            try:
                importlib.import_module(name)
            except ImportError as error:
                raise UnmetDependencyError(
                    "UnmetDependencyError",
                    f"{self.__name__} requires module {name!r}, which cannot be imported here: {error}",
                ) from error
            top = name.partition(".")[0]
            namespace[top] = sys.modules[top]
        return self.func(*args, **kwargs)


def require(*modules: str | ModuleType) -> Callable[[Callable], RequiringFunction]:
    """Decorator: import ``modules`` (names or module objects) before each call of the function."""
    names = []
    for module in modules:
        if isinstance(module, ModuleType):
            names.append(module.__name__)
        elif isinstance(module, str) and module:
            names.append(module)
        else:
            raise TypeError(f"require() takes module names or modules, not {module!r}")
    return lambda func: RequiringFunction(func, names)
