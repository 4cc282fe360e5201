"""Small helpers the test modules share."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(condition: Callable[[], Any], timeout: float = 20.0, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())


def interactive(source: str) -> Callable:
    """The function ``source`` defines, as if typed in a notebook: it travels to the engines by value
    (a function of a test module would go by reference, and engines cannot import test modules)."""
    namespace: dict = {}
    exec(source, namespace)
    return next(value for name, value in namespace.items() if name != "__builtins__")
