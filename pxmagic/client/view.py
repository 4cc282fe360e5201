"""Views: DirectView gives explicit control of chosen engines.

Every method is built on two requests: ``apply_request`` (call a function in
the engines' namespace) and ``execute_request`` (run code, as a notebook
cell would).  ``block``, ``track`` and ``targets`` are attributes used as
defaults, and each call may override them by keyword, as the IPython parallel
documentation describes.  What differs between a direct and a load-balanced
view is only how calls are addressed, which subclasses define.
"""
from __future__ import annotations

import contextlib
import functools
import keyword
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from .. import engine_calls
from ..protocol import EXECUTE_REQUEST, RequestTerms, is_seconds
from . import partition
from .asyncresult import AsyncResult
from .imports import SyncImports
from .progress import interactive
from .remotefunction import ParallelFunction, RemoteFunction
from .requests import Request, Submitter, apply_request
from .targets import Targets


def check_timeout(seconds: Any) -> float | None:
    """A task timeout as given (None: no limit), or a ValueError that says what is wrong with it."""
    if seconds is None:
        return None
    if not is_seconds(seconds):
        raise ValueError(f"a timeout is a positive number of seconds (or None), not {seconds!r}")
    return float(seconds)


def check_variable_name(name: Any) -> None:
    """Refuse a name that ``push`` must not bind in an engine's namespace, saying why.

    A key that is not an identifier (``1``, ``"not valid"``) would sit in the
    namespace where no code can name it, and breaks ``dir()``, ``%who`` and
    completion on the engine; ``__builtins__`` would replace every builtin.
    """
    if not isinstance(name, str):
        raise TypeError(f"push needs variable names (strings) as keys, not {name!r}")
    if not name.isidentifier() or keyword.iskeyword(name):
        raise ValueError(f"push cannot bind {name!r}: it is not a Python variable name")
    if name == "__builtins__":
        raise ValueError(f"push cannot bind {name!r}: it would replace the engine's builtins")


class View:
    """What every view shares: blocking and targets defaults, apply, map, decorators, history."""

    history_size = 1000
    #: the attributes that :meth:`set_flags` and :meth:`temp_flags` set
    flags = ("block", "track", "targets", "timeout", "return_exceptions", "label")

    def __init__(self, client: Submitter, targets: Targets):
        self.client = client
        self._targets = targets
        self.block = False
        self.track = False
        self.timeout = None
        #: results complete with the engines' RemoteErrors in place of their values, instead of raising
        #: (a map's failed chunk gives its error for each of the chunk's elements)
        self.return_exceptions = False
        #: a name for this view's tasks, shown wherever the hub lists them (``rc.status()``, the dashboard)
        self.label: str | None = None
        self.history = History(self.history_size)

    @property
    def timeout(self) -> float | None:
        """Seconds each task may run on its engine before the hub interrupts it and fails it with
        ``TaskTimeout`` (None: no limit).  The engine keeps its namespace and serves what comes next."""
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float | None) -> None:
        self._timeout = check_timeout(seconds)

    @property
    def targets(self) -> Targets:
        return self._targets

    @targets.setter
    def targets(self, targets: Targets) -> None:
        self.client.resolve_targets(targets)
        self._targets = targets

    def set_flags(self, **flags: Any) -> None:
        """Set several of the view's defaults at once (``view.set_flags(block=True, timeout=5)``),
        changing none of them if one name or value is refused."""
        unknown = sorted(set(flags) - set(self.flags))
        if unknown:
            raise TypeError(f"{type(self).__name__} has no flag {', '.join(unknown)}; "
                            f"its flags are {', '.join(self.flags)}")
        saved = {name: getattr(self, name) for name in flags}
        try:
            for name, value in flags.items():
                setattr(self, name, value)
        except (TypeError, ValueError, IndexError):
            for name, value in saved.items():
                setattr(self, name, value)
            raise

    @contextlib.contextmanager
    def temp_flags(self, **flags: Any) -> Iterator[View]:
        """``with view.temp_flags(block=False): ...``: these defaults inside the block, the old ones after."""
        saved = {name: getattr(self, name) for name in flags if name in self.flags}
        self.set_flags(**flags)
        try:
            yield self
        finally:
            self.set_flags(**saved)

    def _terms(self, timeout: float | None, name: str) -> RequestTerms:
        if self.label is not None and not isinstance(self.label, str):
            raise TypeError(f"a view's label is a string (or None), not {self.label!r}")
        return RequestTerms(self.timeout if timeout is None else check_timeout(timeout), name=name,
                            label=self.label or "")

    def _blocking(self, block: bool | None) -> bool:
        return self.block if block is None else block

    def _submit(self, requests: list[Request], single: bool, method: str, block: bool | None,
                join: Callable[[list], Any] | None = None, track: bool | None = None,
                result_class: Callable[..., AsyncResult] = AsyncResult, timeout: float | None = None,
                sizes: list[int] | None = None, return_exceptions: bool | None = None,
                name: str | None = None) -> Any:
        """``sizes``: how many elements each request's value holds (a map's chunks), for ``return_exceptions``;
        ``name`` (default: ``method``) says what the tasks are where the hub lists them."""
        in_place = self.return_exceptions if return_exceptions is None else return_exceptions
        result_class = functools.partial(result_class, sizes=sizes, return_exceptions=bool(in_place))
        result = self.client.submit(requests, single, method, join, self.track if track is None else track,
                                    result_class, self._terms(timeout, name or method))
        self.history.append(result)
        if not self._blocking(block):
            return result
        if len(result.msg_ids) > 1 and interactive():
            result.wait_interactive()
        return result.get()

    # -- calling functions ----------------------------------------------
    def _apply(self, func: Callable, args: tuple = (), kwargs: dict | None = None,
               block: bool | None = None, targets: Targets = None, track: bool | None = None) -> Any:
        raise NotImplementedError

    def apply(self, f: Callable, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` remotely; blocks if ``self.block``."""
        return self._apply(f, args, kwargs)

    def apply_sync(self, f: Callable, /, *args: Any, **kwargs: Any) -> Any:
        """Call ``f(*args, **kwargs)`` remotely and return the result(s)."""
        return self._apply(f, args, kwargs, block=True)

    def apply_async(self, f: Callable, /, *args: Any, **kwargs: Any) -> AsyncResult:
        """Call ``f(*args, **kwargs)`` remotely; return an AsyncResult at once."""
        return self._apply(f, args, kwargs, block=False)

    # -- mapping ------------------------------------------------------------
    def _distribute(self, func: Callable, sequences: list[Sequence], kwargs: dict, elementwise: bool,
                    block: bool | None, **options: Any) -> Any:
        raise NotImplementedError

    def map(self, f: Callable, *sequences: Any, block: bool | None = None, **options: Any) -> Any:
        """Parallel ``map(f, *sequences)``: a list in input order.

        Like builtin ``map``, several sequences stop at the shortest.  ``label=`` names its tasks where
        the hub lists them (as :attr:`label` does for every call of the view).
        """
        if not sequences:
            raise TypeError("map() needs at least one sequence")
        seqs = [partition.as_sequence(s, "map's sequence") for s in sequences]
        label = options.pop("label", None)
        with self.temp_flags(label=label) if label is not None else contextlib.nullcontext():
            return self._distribute(f, seqs, {}, True, block, **options)

    def map_chunks(self, f: Callable, sequences: Sequence[Sequence], kwargs: dict | None = None,
                   block: bool | None = None, **options: Any) -> Any:
        """Call ``f(*chunks, **kwargs)`` once per chunk of ``sequences`` and join the pieces: what ``@parallel`` runs.

        A DirectView gives each engine one contiguous chunk, a LoadBalancedView
        makes a task of every ``chunksize`` items; the pieces are joined in
        order (lists added, arrays concatenated).
        """
        return self._distribute(f, list(sequences), kwargs or {}, False, block, **options)

    def map_sync(self, f: Callable, *sequences: Any, **options: Any) -> list:
        return self.map(f, *sequences, block=True, **options)

    def map_async(self, f: Callable, *sequences: Any, **options: Any) -> AsyncResult:
        return self.map(f, *sequences, block=False, **options)

    def remote(self, block: bool | None = None) -> Callable[[Callable], RemoteFunction]:
        """Decorator: calling the function runs it remotely (on every engine of a DirectView)."""
        return lambda func: RemoteFunction(self, func, block)

    def parallel(self, block: bool | None = None, **options: Any) -> Callable[[Callable], ParallelFunction]:
        """Decorator: calls split their sequence arguments over the engines (see ParallelFunction)."""
        return lambda func: ParallelFunction(self, func, block, **options)

    # -- results -------------------------------------------------------------
    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait for AsyncResults or msg_ids (default: all of this view's); True if all done."""
        return self.client.wait(self.history.jobs() if jobs is None else jobs, timeout)

    def abort(self, jobs: Any = None) -> None:
        """Drop queued work of this view (or of ``jobs``) that has not started."""
        self.client.abort(self.history.jobs() if jobs is None else jobs)

    def interrupt(self) -> None:
        """Interrupt what this view's engines are running (a kernel interrupt)."""
        self.client.interrupt(self.targets)

    def get_result(self, indices_or_msg_ids: int | str = -1) -> AsyncResult:
        """An earlier result of this view by history index (default: the latest) or msg_id."""
        if isinstance(indices_or_msg_ids, str):
            return self.client.get_result(indices_or_msg_ids)
        try:
            found = self.history[indices_or_msg_ids]
        except IndexError:
            raise IndexError(f"this view has {len(self.history)} results in its history, "
                             f"no index {indices_or_msg_ids}") from None
        return found if isinstance(found, AsyncResult) else self.client.get_result(found)


class History:
    """A view's requests, latest last: their AsyncResults while the client keeps them, else their msg_ids.

    Held weakly, so that ``purge_local_results`` frees a result's data
    (a pulled array, and the shared memory under it) as in IPython
    parallel, whose histories are msg_ids.
    """

    def __init__(self, size: int):
        self._entries: deque[tuple[list[str], weakref.ref]] = deque(maxlen=size)

    def append(self, result: AsyncResult) -> None:
        self._entries.append((result.msg_ids, weakref.ref(result)))

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> AsyncResult | list[str]:
        msg_ids, ref = self._entries[index]
        return ref() or msg_ids

    def jobs(self) -> list:
        """Every entry as ``Client.wait`` and ``abort`` take them: AsyncResults and msg_ids."""
        jobs: list = []
        for msg_ids, ref in self._entries:
            result = ref()
            jobs.extend([result] if result is not None else msg_ids)
        return jobs


class DirectView(View):
    """A view on a fixed set of engines (``rc[:]``, ``rc[0]``, ``rc[::2]``)."""

    def __init__(self, client: Submitter, targets: Targets = "all"):
        super().__init__(client, targets)

    def __repr__(self) -> str:
        try:
            ids, single = self.client.resolve_targets(self._targets)
        except IndexError:  # its engines are gone
            return f"<DirectView {self._targets!r}, not among the engines {self.client.ids}>"
        return f"<DirectView {ids[0] if single else ids}>"

    def __len__(self) -> int:
        return len(self._ids(None)[0])

    def _ids(self, targets: Targets) -> tuple[list[int], bool]:
        return self.client.resolve_targets(self._targets if targets is None else targets)

    def abort(self, jobs: Any = None) -> None:
        """Drop ``jobs``, or all work queued on this view's engines from this client, not yet started.

        ``rc[0].abort()`` clears engine 0's queue, whichever view sent the work.
        """
        self.client.abort(jobs, targets=None if jobs is not None else self._targets)

    def _apply(self, func: Callable, args: tuple = (), kwargs: dict | None = None,
               block: bool | None = None, targets: Targets = None, track: bool | None = None) -> Any:
        ids, single = self._ids(targets)
        request = apply_request(func, args, kwargs or {}, ids)
        return self._submit([request], single, getattr(func, "__name__", "apply"), block, track=track)

    def _distribute(self, func: Callable, sequences: list[Sequence], kwargs: dict, elementwise: bool,
                    block: bool | None, targets: Targets = None, timeout: float | None = None,
                    return_exceptions: bool | None = None) -> Any:
        """One call an engine, each on its contiguous chunk of the sequences."""
        ids, _ = self._ids(targets)
        length = partition.shortest(sequences)
        bounds = partition.chunk_bounds(length, min(len(ids), length))
        sizes = [stop - start for start, stop in bounds] if elementwise else None
        requests = []
        for engine_id, (start, stop) in zip(ids, bounds):
            chunks = tuple(partition.cut(s, start, stop) for s in sequences)
            if elementwise:
                requests.append(apply_request(engine_calls.map_chunk, (func, start, *chunks), {}, [engine_id]))
            else:
                requests.append(apply_request(func, chunks, kwargs, [engine_id]))
        join = partition.flatten_lists if elementwise else partition.join
        return self._submit(requests, False, getattr(func, "__name__", "map"), block, join, timeout=timeout,
                            sizes=sizes, return_exceptions=return_exceptions)

    def execute(self, code: str, silent: bool = False, targets: Targets = None,
                block: bool | None = None, timeout: float | None = None) -> AsyncResult | None:
        """Run ``code`` on each engine as a cell; blocking returns None once all are done.

        ``timeout`` (default: the view's) limits each engine's run, as :attr:`timeout` says."""
        ids, single = self._ids(targets)
        content = {"code": code, "silent": silent, "store_history": not silent,
                   "user_expressions": {}, "allow_stdin": False, "stop_on_error": False}
        first_line = next((line.strip() for line in code.splitlines() if line.strip()), "")
        result = self._submit([Request(EXECUTE_REQUEST, content, ids)], single, "execute", False, timeout=timeout,
                              name=first_line)
        if self._blocking(block):
            result.get()
            return None
        return result

    def run(self, filename: str | Path, targets: Targets = None, block: bool | None = None) -> AsyncResult | None:
        """Execute the code of a local file on the engines."""
        return self.execute(Path(filename).read_text(), targets=targets, block=block)

    # -- moving objects -----------------------------------------------------
    def push(self, ns: dict, targets: Targets = None, block: bool | None = None,
             track: bool | None = None) -> Any:
        """Update each engine's namespace with the dict ``ns``."""
        if not isinstance(ns, dict):
            raise TypeError(f"push takes a dict of names to values, not {type(ns).__name__}")
        for name in ns:
            check_variable_name(name)
        return self._apply(engine_calls.push, (ns,), block=block, targets=targets, track=track)

    def pull(self, names: str | tuple | list, targets: Targets = None, block: bool | None = None) -> Any:
        """Values of ``names`` (one name, or a tuple of names) on each engine."""
        if not isinstance(names, (str, tuple, list)) or not all(isinstance(n, str) for n in names):
            raise TypeError(f"pull takes a name or a tuple of names, not {names!r}")
        return self._apply(engine_calls.pull, (names,), block=block, targets=targets)

    def scatter(self, key: str, seq: Any, targets: Targets = None, flatten: bool = False,
                block: bool | None = None, track: bool | None = None) -> Any:
        """Cut ``seq`` into one contiguous chunk an engine and push each as ``key``.

        ``flatten=True`` pushes the element itself where a chunk holds one.
        """
        sequence = partition.as_sequence(seq, "scatter's sequence")
        ids, _ = self._ids(targets)
        chunks = partition.split(sequence, len(ids))
        requests = []
        for engine_id, chunk in zip(ids, chunks):
            value = chunk[0] if flatten and len(chunk) == 1 else chunk
            requests.append(apply_request(engine_calls.push, ({key: value},), {}, [engine_id]))
        return self._submit(requests, False, "scatter", block, track=track)

    def gather(self, key: str, targets: Targets = None, block: bool | None = None) -> Any:
        """Pull ``key`` from each engine and join the pieces in engine order."""
        ids, _ = self._ids(targets)
        requests = [apply_request(engine_calls.pull, (key,), {}, ids)]
        return self._submit(requests, False, "gather", block, partition.join)

    def activate(self, suffix: str = "") -> None:
        """Bind %px, %%px, %autopx and %result (with ``suffix`` appended) to this view."""
        # the one import edge back into the magics (which find the latest Client when no view is
        # active): taken only when called, so that views load without IPython
        from ..magics import activate

        activate(self, suffix)

    def sync_imports(self, local: bool = True, quiet: bool = False) -> SyncImports:
        """Context manager: imports in its block run here and on this view's engines."""
        return SyncImports(self, local, quiet)

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
