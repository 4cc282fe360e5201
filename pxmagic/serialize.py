"""Objects to ZMQ frames and back.

Data travels with pickle protocol 5: a large contiguous buffer (a numpy array,
a bytearray) becomes a frame of its own that ZMQ sends without a copy, and the
receiver's objects view the received frame's memory.  Plain pickle stores
functions and classes by reference, which fails on an engine for anything
defined interactively, so those, and only those, go by value: a function's
code through dill, with its globals bound, on arrival, to the receiving
process's ``__main__`` namespace (an engine's user namespace).  That is what
lets ``dview['a'] = 5; dview.apply(lambda x: a + x, 1)`` find ``a``.
"""
from __future__ import annotations

import functools
import importlib
import io
import pickle
import sys
import types
import weakref
from typing import Any
from collections.abc import Callable, Sequence

from .error import SerializationError

#: buffers smaller than this stay inside the pickle; larger ones become frames
INLINE_LIMIT = 64 * 1024

_EMPTY_CELL = object()
_code_cache: "weakref.WeakKeyDictionary[types.CodeType, bytes]" = weakref.WeakKeyDictionary()


def _defined_interactively(func: types.FunctionType) -> bool:
    """True for functions an engine cannot import by name."""
    return (
        func.__module__ in ("__main__", None)
        or "<locals>" in func.__qualname__
        or func.__name__ == "<lambda>"
    )


def _code_bytes(code: types.CodeType) -> bytes:
    try:
        return _code_cache[code]
    except KeyError:
        import dill

        data = _code_cache[code] = dill.dumps(code)
        return data


@functools.lru_cache(maxsize=256)
def _load_code(code: bytes) -> types.CodeType:
    """A code object from its dill bytes; cached, as a loop of applies sends the same function again and again."""
    import dill

    return dill.loads(code)


def _make_function(code: bytes, name: str, qualname: str, ncells: int) -> types.FunctionType:
    """Rebuild a function in this process's ``__main__`` namespace (its cells come later)."""
    namespace = sys.modules["__main__"].__dict__
    closure = tuple(types.CellType() for _ in range(ncells)) or None
    func = types.FunctionType(_load_code(code), namespace, name, None, closure)
    func.__qualname__ = qualname
    func.__module__ = "__main__"
    return func


def _fill_function(func: types.FunctionType, state: tuple) -> None:
    """Set defaults and closure values; split from creation so recursion pickles."""
    defaults, kwdefaults, cell_values, attributes = state
    func.__defaults__ = defaults
    func.__kwdefaults__ = kwdefaults
    for cell, value in zip(func.__closure__ or (), cell_values):
        if value is not _EMPTY_CELL:
            cell.cell_contents = value
    if attributes:
        func.__dict__.update(attributes)


def _load_by_value(data: bytes) -> Any:
    import dill

    return dill.loads(data)


def _cell_value(cell: types.CellType) -> Any:
    try:
        return cell.cell_contents
    except ValueError:
        return _EMPTY_CELL


class _Pickler(pickle.Pickler):
    """Pickle protocol 5, sending interactively defined functions and classes by value,
    and modules (which a closure may hold) by name."""

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.FunctionType) and _defined_interactively(obj):
            cells = tuple(_cell_value(c) for c in obj.__closure__ or ())
            state = (obj.__defaults__, obj.__kwdefaults__, cells, obj.__dict__ or None)
            args = (_code_bytes(obj.__code__), obj.__name__, obj.__qualname__, len(cells))
            return _make_function, args, state, None, None, _fill_function
        if isinstance(obj, type) and obj.__module__ == "__main__":
            import dill

            return _load_by_value, (dill.dumps(obj),)
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        if obj is _EMPTY_CELL:
            return _empty_cell_marker, ()
        return NotImplemented


def _empty_cell_marker() -> object:
    return _EMPTY_CELL


def pack(obj: Any) -> list:
    """Serialize ``obj`` to frames: the pickle first, then each large buffer."""
    buffers: list[pickle.PickleBuffer] = []

    def keep_out_of_band(buffer: pickle.PickleBuffer) -> bool:
        view = buffer.raw()
        if view.nbytes < INLINE_LIMIT:
            return True
        buffers.append(view)
        return False

    stream = io.BytesIO()
    _Pickler(stream, protocol=5, buffer_callback=keep_out_of_band).dump(obj)
    return [stream.getbuffer(), *buffers]


def unpack(frames: Sequence[Any]) -> Any:
    """Inverse of :func:`pack`; large buffers view the frames' memory, uncopied."""
    return pickle.loads(frames[0], buffers=frames[1:])


def _type_name(obj: Any) -> str:
    """The qualified name of what ``obj`` is, for an error that names the value it could not send."""
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}".removeprefix("builtins.")


def pack_call(func: Callable, args: tuple, kwargs: dict) -> list:
    """Frames for calling ``func(*args, **kwargs)`` remotely.

    When something cannot be serialized, the error names which argument it is
    and its type, and nothing has been sent.
    """
    try:
        return pack((func, args, kwargs))
    except Exception as error:
        parts = [("the function", func)]
        parts += [(f"argument {i}", value) for i, value in enumerate(args)]
        parts += [(f"keyword argument {name!r}", value) for name, value in kwargs.items()]
        for label, value in parts:
            try:
                pack(value)
            except Exception as part_error:
                raise SerializationError(
                    f"cannot send {label} of type {_type_name(value)}: {part_error}"
                ) from part_error
        raise SerializationError(f"cannot serialize the call: {error}") from error
