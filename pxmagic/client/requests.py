"""What a view hands the client to send, and what a view needs of the client.

Views build :class:`Request` objects and pass them to the client's
``submit``; they know the client only as a :class:`Submitter`, so the view
modules never import the client's (and the client imports them to make
views).
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .. import serialize
from ..protocol import APPLY_REQUEST, RequestTerms
from .targets import Targets

if TYPE_CHECKING:
    from .asyncresult import AsyncResult


@dataclass
class Request:
    """One request for the hub: run on every engine of ``targets``, or, balanced, on one of them."""

    msg_type: str
    content: dict
    targets: list[int] | None
    balanced: bool = False
    buffers: Sequence = ()


def apply_request(func: Callable, args: tuple, kwargs: dict, targets: list[int] | None,
                  balanced: bool = False) -> Request:
    """A request to call ``func(*args, **kwargs)``, the call serialized with its buffers out of band."""
    return Request(APPLY_REQUEST, {}, targets, balanced, serialize.pack_call(func, args, kwargs))


class Submitter(Protocol):
    """The part of :class:`pxmagic.Client` that views use."""

    @property
    def ids(self) -> list[int]: ...

    def resolve_targets(self, targets: Targets) -> tuple[list[int], bool]: ...

    def submit(self, requests: list[Request], single: bool, method: str,
               join: Callable[[list], Any] | None = None, track: bool = False,
               result_class: Callable[..., AsyncResult] = ..., terms: RequestTerms = ...) -> AsyncResult: ...

    def abort(self, jobs: Any = None, targets: Targets = None, timeout: float = 10.0) -> None: ...

    def interrupt(self, targets: Targets = None) -> AsyncResult: ...

    def get_result(self, msg_ids: str | Iterable[str], timeout: float = 10.0) -> AsyncResult: ...

    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool: ...
