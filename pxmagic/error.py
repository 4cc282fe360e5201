"""Exceptions that pxmagic raises in the client.

They mirror the ones IPython's parallel documentation prints: a failure on one
engine is a :class:`RemoteError`, failures of a call that ran on several
engines are gathered in a :class:`CompositeError`.
"""
from __future__ import annotations

import builtins
import re
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    """Remove the colour codes IPython puts in engine tracebacks."""
    return _ANSI.sub("", text)


class PxError(Exception):
    """Base class of every pxmagic error."""


class TimeoutError(PxError, builtins.TimeoutError):  # noqa: A001 - the spec's name
    """A result was not ready within the time asked for."""


class SerializationError(PxError, TypeError):
    """An object could not be serialized for sending."""


class ConnectionFileError(PxError, FileNotFoundError):
    """No connection file where the client looked for one."""


class RemoteError(PxError):
    """An exception raised on one engine, with that engine's traceback text."""

    def __init__(self, ename: str, evalue: str, traceback: str = "", engine_id: int | None = None):
        super().__init__(ename, evalue)
        self.ename = ename
        self.evalue = evalue
        self.traceback = traceback
        self.engine_id = engine_id

    def __str__(self) -> str:
        head = f"{self.ename}({self.evalue})"
        return f"{head}\n{strip_ansi(self.traceback)}" if self.traceback else head

    def __repr__(self) -> str:
        return f"<{type(self).__name__}[{self.engine_id}]:{self.ename}({self.evalue})>"

    def _render_traceback_(self) -> list[str]:
        """What IPython shows: the engine's own traceback, not pxmagic's client stack."""
        return [f"[{self.engine_id}:apply]:", *(self.traceback.splitlines() or [f"{self.ename}: {self.evalue}"])]


class EngineError(RemoteError):
    """An engine died or could not be reached while it had work to do."""


class UnmetDependencyError(RemoteError):
    """A function's requirements could not be met on the engine, so it did not run."""


class TaskTimeout(RemoteError):
    """A task ran longer than its ``timeout=``: the hub interrupted its engine, which lives on."""


#: errors whose ``ename`` names one of pxmagic's own classes come back as that class
_REMOTE_CLASSES = {cls.__name__: cls for cls in (EngineError, UnmetDependencyError, TaskTimeout)}


def remote_error(ename: str, evalue: str, traceback: str = "", engine_id: int | None = None) -> RemoteError:
    """The client-side exception for an error an engine (or the hub for it) reported."""
    return _REMOTE_CLASSES.get(ename, RemoteError)(ename, evalue, traceback, engine_id)


def content_error(content: dict, engine_id: int | None = None) -> RemoteError:
    """The exception a reply's error content (``ename``, ``evalue``, ``traceback``) stands for."""
    traceback = "\n".join(content.get("traceback") or [])
    return remote_error(content.get("ename", "Error"), content.get("evalue", ""), traceback, engine_id)


class CompositeError(RemoteError):
    """Errors from a call on several engines, one :class:`RemoteError` each.

    ``elist`` is the list of ``(engine_id, RemoteError)`` pairs in engine order;
    ``results`` the ``(engine_id, value)`` pairs of the engines that succeeded,
    so one failed engine does not cost the others' work.
    """

    def __init__(self, message: str, elist: list[tuple[int | None, RemoteError]],
                 results: list[tuple[int | None, Any]] | None = None):
        first = elist[0][1]
        super().__init__(first.ename, first.evalue, first.traceback, first.engine_id)
        self.message = message
        self.elist = elist
        self.results = results or []
        self.args = (message, elist)

    def _lines(self) -> list[str]:
        return [f"[{eid}:apply]: {err.ename}: {err.evalue}" for eid, err in self.elist]

    def __str__(self) -> str:
        return "\n".join([self.message, *self._lines()])

    def __repr__(self) -> str:
        return f"<CompositeError: {len(self.elist)} remote exceptions>"

    def _render_traceback_(self) -> list[str]:
        """A line for each engine's error, then the first engine's traceback."""
        lines = [f"{type(self).__name__}: {self.message}", *self._lines()]
        lines += ["", *self.elist[0][1]._render_traceback_()]
        if len(self.elist) > 1:
            lines += ["", f"... {len(self.elist) - 1} more: error.print_tracebacks() shows every engine's"]
        return lines

    def __getitem__(self, index: int) -> RemoteError:
        return self.elist[index][1]

    def print_tracebacks(self, excid: int | None = None) -> None:
        """Print each engine's traceback (or only the one at index ``excid``)."""
        chosen = self.elist if excid is None else [self.elist[excid]]
        for eid, err in chosen:
            print(f"[{eid}:apply]:")
            print(strip_ansi(err.traceback) or f"{err.ename}: {err.evalue}")
            print()

    def raise_exception(self, excid: int = 0) -> Any:
        """Raise the :class:`RemoteError` at index ``excid`` of ``elist``."""
        if not -len(self.elist) <= excid < len(self.elist):
            raise IndexError(f"an exception with index {excid} does not exist")
        raise self.elist[excid][1]


def composite(errors: list[tuple[int | None, RemoteError]], method: str,
              results: list[tuple[int | None, Any]] | None = None) -> CompositeError:
    """Build the CompositeError of a call to ``method`` from ``(engine_id, error)`` pairs
    and the ``(engine_id, value)`` pairs of the engines that succeeded."""
    return CompositeError(f"one or more exceptions from call to method: {method}", errors, results)
