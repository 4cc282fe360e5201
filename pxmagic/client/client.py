"""Client: the user's handle on a running cluster.

``Client()`` reads the cluster's connection file, connects to the hub and
learns which engines exist; ``rc[:]``, ``rc[i]``, ``rc[1:3]`` make views.
Replies are matched to their AsyncResult by ``msg_id`` on the I/O thread.
"""
from __future__ import annotations

import dataclasses
import getpass
import html
import logging
import threading
import time
import weakref
from concurrent import futures
from functools import partial
from pathlib import Path
from collections.abc import Callable, Iterable
from typing import Any

from jupyter_client.session import Session

from .. import connection, sharedmem, tags, wire
from ..error import RemoteError, TimeoutError, content_error
from ..protocol import (
    BULK_HELLO,
    ENGINE_STATUS,
    HUB_ABORT_REQUEST,
    HUB_INFO_REQUEST,
    HUB_PURGE_REQUEST,
    HUB_RESTART_REQUEST,
    HUB_RESULT_REPLY,
    HUB_RESULT_REQUEST,
    HUB_SHUTDOWN_REQUEST,
    HUB_START_ENGINES_REQUEST,
    HUB_STATUS_REQUEST,
    HUB_STOP_ENGINES_REQUEST,
    HUB_TOPIC,
    INTERRUPT_REQUEST,
    RESULT_DONE,
    RESULT_MISSING,
    TASK_RETRY,
    ProtocolError,
    RequestTerms,
    engine_msg_id,
    request_metadata,
    split_stored_results,
    topic_engine,
)
from ..replay import RefusalLog
from .asyncresult import AsyncResult
from .balanced import LoadBalancedView
from .channel import HubChannel
from .executor import ViewExecutor
from .ledger import Ledger
from .status import ClusterStatus
from .targets import Targets, resolve_targets
from .requests import Request
from .view import DirectView

log = logging.getLogger("pxmagic.client")
#: seconds to fetch a result again whose buffers the bulk stream lost (at least; it comes by ZMQ, maybe 1 GB)
REFETCH_TIMEOUT = 60.0


class Client:
    """A connection to one pxmagic cluster.

    ``url_file`` is the path of its ``pxmagic-client.json``; without it the
    file of ``profile`` (default ``"default"``) and ``cluster_id`` is used,
    and without a ``cluster_id`` the one cluster of the profile that runs.
    """

    #: how many msg_ids' results :meth:`get_result` finds here, without asking the hub
    max_results = 10_000
    _latest: weakref.ref | None = None

    def __init__(
        self,
        url_file: str | Path | None = None,
        profile: str | None = None,
        cluster_id: str | None = None,
        timeout: float = 10.0,
        hub_timeout: float = 5.0,
    ):
        path = Path(url_file) if url_file else connection.find_client_file(profile or "default", cluster_id)
        self.connection_file = path
        info = connection.read_client_file(path)
        self.profile = info.get("profile", profile or "default")
        #: the URL (with its token) of the live dashboard, if the hub serves one (``Cluster(dashboard=True)``)
        self.dashboard_link: str | None = info.get("dashboard_url")
        self.session = Session(
            key=info["key"].encode(),
            signature_scheme=info["signature_scheme"],
            username=getpass.getuser(),
        )
        self._engines: dict[int, dict] = {}
        self._segment_tag = sharedmem.cluster_tag(self.session.key)
        #: every request's slots, and the recent results get_result finds here
        self.ledger = Ledger(partial(_decode, self.session.key, self._segment_tag), self.max_results)
        self.results = self.ledger.results
        self._hub_requests: dict[str, futures.Future] = {}
        #: messages from the hub dropped (bad signature, malformed), logged at a bounded rate
        self.refusals = RefusalLog(log)
        self.hub_timeout = hub_timeout
        #: segments for large buffers to engines on this host, if the hub is on it (see pxmagic.sharedmem)
        self._host_id = sharedmem.host_id() if sharedmem.enabled() and info.get("host_id") == sharedmem.host_id() else ""
        self._segments = sharedmem.Pool(self._segment_tag) if self._host_id else None
        self._channel = HubChannel(info, self._on_reply, self._on_output, self._on_hub_silence, hub_timeout,
                                   hello=self._bulk_hello, on_lost=self._on_lost_buffers)
        try:
            self._refresh_engines(timeout)
        except Exception:
            self.close()
            raise
        Client._latest = weakref.ref(self)

    def _bulk_hello(self, routing_id: bytes) -> bytes:
        """What opens this client's bulk stream to the hub: its routing id, signed (see pxmagic.hub.bulk)."""
        return wire.to_stream(wire.build(self.session, BULK_HELLO, {"routing_id": routing_id.hex()}))

    # -- engines ------------------------------------------------------------
    @property
    def ids(self) -> list[int]:
        """Ids of the engines that are up, in order."""
        return sorted(self._engines)

    def _refresh_engines(self, timeout: float) -> None:
        reply = self._hub_request(HUB_INFO_REQUEST, timeout)
        self._engines = {int(k): v for k, v in reply["content"]["engines"].items()}

    def wait_for_engines(self, n: int, timeout: float = 60.0) -> None:
        """Wait until at least ``n`` engines are up."""
        deadline = time.monotonic() + timeout
        while len(self._engines) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self._engines)} of {n} engines after {timeout} s")
            time.sleep(0.05)
            self._refresh_engines(max(0.1, deadline - time.monotonic()))

    def engine_connection_file(self, engine_id: int) -> str:
        """The kernel connection file of an engine, for ``jupyter console --existing``."""
        self.resolve_targets(engine_id)
        return self._engines[engine_id]["connection_file"]

    def resolve_targets(self, targets: Targets) -> tuple[list[int], bool]:
        """Engine ids meant by ``targets``, and whether a single engine was named."""
        return resolve_targets(targets, self.ids)

    def __getitem__(self, targets: Targets) -> DirectView:
        return self.direct_view(targets)

    def direct_view(self, targets: Targets = "all") -> DirectView:
        """A DirectView on ``targets``: ``"all"`` follows the engines as they come and go."""
        self.resolve_targets(targets)
        return DirectView(self, targets)

    def load_balanced_view(self, targets: Targets = None) -> LoadBalancedView:
        """A view whose tasks go to whichever engine (of ``targets``) has room first."""
        if targets is not None:
            self.resolve_targets(targets)
        return LoadBalancedView(self, targets)

    def executor(self, targets: Targets = None) -> ViewExecutor:
        """A ``concurrent.futures.Executor`` whose calls are load-balanced over ``targets`` (default: all)."""
        return ViewExecutor(self.load_balanced_view(targets))

    # -- sending ------------------------------------------------------------
    def submit(
        self,
        requests: list[Request],
        single: bool,
        method: str,
        join: Callable[[list], Any] | None = None,
        track: bool = False,
        result_class: Callable[..., AsyncResult] = AsyncResult,
        terms: RequestTerms = RequestTerms(),
    ) -> AsyncResult:
        """Send requests to the hub; one AsyncResult resolves from all their replies.

        ``terms``: what the hub enforces on each and shows of it (a timeout, retries, a label)."""
        messages, msg_ids, engine_ids, lent = [], [], [], []
        received = self.ledger.take_received()
        for request in requests:
            descriptors, frames = tags.describe(self.session.key, request.buffers, self._segments)
            lent += tags.segment_names(descriptors)
            own_terms = terms if request.balanced else dataclasses.replace(terms, retries=0, retry_errors=False)
            metadata = request_metadata(request.targets, descriptors, request.balanced, received, self._host_id,
                                        own_terms)
            received = []
            header = wire.new_header(self.session, request.msg_type)
            request_id = header["msg_id"]
            if request.balanced:
                msg_ids.append(request_id)
                engine_ids.append(None)
            else:
                msg_ids += [engine_msg_id(request_id, e) for e in request.targets]
                engine_ids += request.targets
            messages.append(wire.build(self.session, request.msg_type, request.content, header=header,
                                       metadata=metadata) + frames)
        result = result_class(msg_ids, engine_ids, single, method, join, stop=self._stop)
        if lent:
            result.add_done_callback(partial(self._give_back, lent))
        self.ledger.add(result)
        for frames in messages:
            tracker = self._channel.send(frames, track)
            if tracker is not None:
                result._trackers.append(tracker)
        return result

    def _give_back(self, names: list[str], result: AsyncResult) -> None:
        """Every receiver of these segments has mapped them or failed, unless the hub fell silent (it may yet send)
        or the work was cancelled (an engine may map them before it hears)."""
        if result.cancelled():
            self._segments.give_back(names, reusable=False)
            return
        self._segments.give_back(names, reusable=not any(e.ename == "EngineError" for e in result.remote_errors))

    def get_result(self, msg_ids: str | Iterable[str], timeout: float = 10.0) -> AsyncResult:
        """The AsyncResult of an earlier request by one of its msg_ids, or of several msg_ids.

        A result of this client's last :attr:`max_results` requests is here
        already.  Any other (another client's, one that client never received
        because it died, one purged here) comes from the hub, which keeps
        results (``python -m pxmagic.hub --help``): the AsyncResult completes
        at once if the work is done, else when it is.  KeyError names the
        msg_ids the hub has no result for, and why: never submitted, culled, released or purged.
        """
        single = isinstance(msg_ids, str)
        wanted = [msg_ids] if single else list(msg_ids)
        if single and msg_ids in self.results:
            return self.results[msg_ids]
        if not wanted or not all(isinstance(m, str) for m in wanted) or len(set(wanted)) != len(wanted):
            raise ValueError(f"get_result needs a msg_id or a list of distinct msg_ids, not {msg_ids!r}")
        result = AsyncResult(wanted, [None] * len(wanted), single, "get_result")
        for _ in wanted:  # the output went to whoever submitted the work
            result._output_finished()
        remote = {}
        for index, msg_id in enumerate(wanted):
            local = self.ledger.find(msg_id)
            if local is None:
                remote[msg_id] = index
            else:
                local.add_done_callback(partial(_copy_slot, local.msg_ids.index(msg_id), result, index))
        if remote:
            self._fetch(result, remote, timeout)
        for msg_id in remote:
            self.ledger.remember(msg_id, result)
        return result

    def _fetch(self, result: AsyncResult, slots: dict[str, int], timeout: float) -> None:
        """Ask the hub for the results of ``slots`` (msg_id -> slot index of ``result``)."""
        self.ledger.expect(result, slots)
        try:
            content = self._hub_request(HUB_RESULT_REQUEST, timeout, {"msg_ids": list(slots)})["content"]
            _check(content)
            missing = [f"{e['msg_id']!r} ({e.get('reason', 'never submitted, culled or purged')})"
                       for e in content["results"] if e["state"] == RESULT_MISSING]
            if missing:
                raise KeyError(f"no result with msg_id {'; '.join(missing)} in this client or in the hub")
        except BaseException:
            self.ledger.unexpect(result, slots)
            raise

    def status(self, timeout: float = 10.0) -> ClusterStatus:
        """The cluster as the hub sees it now: each engine's state, tasks and use, the unassigned tasks,
        the clients and the results held.  Prints as a table; a notebook shows it as one."""
        content = self._hub_request(HUB_STATUS_REQUEST, timeout)["content"]
        return ClusterStatus.from_content(content)

    def queue_status(self, targets: Targets = None, verbose: bool = False, timeout: float = 10.0) -> dict:
        """Per engine of ``targets`` (default: all), its ``queue``, ``running`` and ``completed`` counts,
        and under ``"unassigned"`` the load-balanced tasks no engine has taken; ``verbose`` gives msg_ids
        instead of counts.  For one engine id, that engine's entry alone."""
        ids, single = self.resolve_targets("all" if targets is None else targets)
        everything = self.status(timeout).queue_status(verbose)
        empty = {"queue": [] if verbose else 0, "running": [] if verbose else 0, "completed": 0}
        if single:
            return everything.get(ids[0], empty)
        return {**{engine_id: everything.get(engine_id, empty) for engine_id in ids},
                "unassigned": everything["unassigned"]}

    def purge_local_results(self, jobs: Any = "all") -> None:
        """Forget finished results kept for :meth:`get_result` (``"all"``, or some of them)."""
        if jobs == "all":
            finished = [mid for mid, result in self.results.items() if result.done()]
        else:
            finished = [mid for result in self.ledger.results_of(jobs) if isinstance(result, AsyncResult)
                        for mid in result.msg_ids]
        for msg_id in finished:
            self.results.pop(msg_id, None)

    def purge_results(self, jobs: Any = None, targets: int | Iterable[int] | None = None,
                      timeout: float = 10.0) -> None:
        """Free results kept in the hub and here.

        ``jobs`` is ``"all"``, or msg_ids and AsyncResults; ``targets`` (an
        engine id or a list of them) frees every result of those engines.
        Work still running is unaffected: the hub keeps its result when it comes.
        """
        if jobs is None and targets is None:
            raise ValueError("purge_results needs jobs ('all', msg_ids or AsyncResults) or targets (engine ids)")
        request: dict[str, Any] = {}
        if isinstance(jobs, str) and jobs == "all":
            request["all"] = True
        elif jobs is not None:
            request["msg_ids"] = self._msg_ids_of(jobs)
        if targets is not None:
            engine_ids = [targets] if isinstance(targets, int) else list(targets)
            if not all(isinstance(e, int) and not isinstance(e, bool) for e in engine_ids):
                raise TypeError(f"targets must be an engine id or a list of engine ids, not {targets!r}")
            request["engine_ids"] = engine_ids
        _check(self._hub_request(HUB_PURGE_REQUEST, timeout, request)["content"])
        if request.get("all"):
            self.purge_local_results("all")
            return
        doomed = set(request.get("msg_ids", []))
        engines = set(request.get("engine_ids", []))
        for result in {id(r): r for r in self.results.values()}.values():
            if result.done():
                doomed.update(m for m, e in zip(result.msg_ids, result.engine_ids) if e in engines)
        for msg_id in doomed:
            self.results.pop(msg_id, None)

    def _msg_ids_of(self, jobs: Any) -> list[str]:
        if isinstance(jobs, (str, AsyncResult)):
            jobs = [jobs]
        msg_ids = []
        for job in jobs:
            if isinstance(job, AsyncResult):
                msg_ids += job.msg_ids
            elif isinstance(job, str):
                msg_ids.append(job)
            else:
                raise TypeError(f"jobs are msg_ids or AsyncResults, not {job!r}")
        return msg_ids

    def _hub_request(self, msg_type: str, timeout: float, content: dict | None = None) -> dict:
        header = wire.new_header(self.session, msg_type)
        reply: futures.Future = futures.Future()
        self._hub_requests[header["msg_id"]] = reply
        self._channel.send(wire.build(self.session, msg_type, content or {}, header=header))
        try:
            return reply.result(timeout)
        except futures.TimeoutError:
            raise TimeoutError(
                f"the hub at {self.connection_file} did not answer within {timeout} s; "
                "is the cluster running? (`pxcluster list`)"
            ) from None
        finally:
            self._hub_requests.pop(header["msg_id"], None)

    # -- receiving (I/O thread) ----------------------------------------------
    def _verified(self, parts: list) -> dict | None:
        try:
            refusal = wire.check(self.session, parts, wire.UNSEEN)
            if refusal is None:
                return wire.message(parts)
            error: Exception | str = refusal.reason
        except Exception as exc:
            error = exc
        self.refusals.refused("a message from the hub", str(error))
        return None

    def _on_reply(self, frames: list) -> None:
        _, parts = self.session.feed_identities(frames, copy=False)
        msg = self._verified(parts)
        if msg is None:
            return
        parent_id = msg["parent_header"].get("msg_id")
        stored = msg["msg_type"] == HUB_RESULT_REPLY
        if stored:  # before the hub_reply below: get_result must find these delivered
            self._on_stored_results(msg["content"], parts[5:])
        hub_reply = self._hub_requests.get(parent_id)
        if hub_reply is not None:
            hub_reply.set_result(msg)
        elif msg["msg_type"] == TASK_RETRY:
            self.ledger.retried(parent_id, msg["content"])
        elif not stored:
            self.ledger.reply(msg)

    def _on_lost_buffers(self, frames: list) -> None:
        """A reply whose buffers the bulk stream lost: a result is fetched again from the hub's store (from a
        thread: this one must not wait), a hub request fails with the reason."""
        _, parts = self.session.feed_identities(frames, copy=False)
        msg = self._verified(parts)
        if msg is None:
            return
        parent_id = msg["parent_header"].get("msg_id")
        hub_reply = self._hub_requests.get(parent_id)
        if hub_reply is not None:
            hub_reply.set_exception(ConnectionError("the results' buffers were lost when the bulk stream from "
                                                    "the hub broke; ask again"))
        elif self.ledger.awaiting(parent_id):
            threading.Thread(target=self._fetch_again, args=(parent_id,), name="pxmagic-refetch", daemon=True).start()

    def _fetch_again(self, msg_id: str) -> None:
        why = "its buffers were lost when the bulk stream from the hub broke"
        try:
            self._hub_request(HUB_RESULT_REQUEST, max(self.hub_timeout, REFETCH_TIMEOUT), {"msg_ids": [msg_id]})
        except Exception as error:
            self.ledger.lost(msg_id, f"{why}, and asking the hub again failed: {error}")
            return
        if self.ledger.awaiting(msg_id):
            self.ledger.lost(msg_id, f"{why}, and the hub no longer keeps it")

    def _on_stored_results(self, content: dict, frames: list) -> None:
        """Deliver the results a ``hub_result_reply`` carries: replies as their engines signed them."""
        try:
            entries = split_stored_results(content, frames)
        except ProtocolError as error:
            self.refusals.refused("a result reply from the hub", str(error))
            return
        for entry, parts in entries:
            if entry["state"] != RESULT_DONE:
                continue
            refusal = wire.check(self.session, parts, wire.AGAIN)
            if refusal is None:
                self.ledger.reply(wire.message(parts), entry.get("engine_id"), stored=True)
                continue
            self.refusals.refused(f"the stored result of {entry['msg_id']}", refusal.reason)
            self.ledger.unsigned_stored_result(entry["msg_id"], entry.get("engine_id"))

    def _on_output(self, frames: list) -> None:
        if len(frames) == 1:  # the hub's heartbeat: hearing it was the point
            return
        idents, parts = self.session.feed_identities(frames, copy=False)
        msg = self._verified(parts)
        if msg is None:
            return
        if idents and idents[0] == HUB_TOPIC and msg["msg_type"] == ENGINE_STATUS:
            self._on_engine_status(msg["content"])
        elif idents:
            self.ledger.output(topic_engine(idents[0]), msg)

    def _on_hub_silence(self, seconds: float) -> None:
        """Fail everything outstanding once the hub has been silent for ``hub_timeout``.

        The client's segments go too: a dead hub's cluster leaves nothing in shared memory.
        """
        if seconds < self.hub_timeout:
            return
        if self._segments is not None:
            self._segments.close()
        self.ledger.give_up(f"the hub ({self.connection_file}) is unreachable: nothing from it for {seconds:.0f} s")

    def _on_engine_status(self, content: dict) -> None:
        engine_id = int(content["engine_id"])
        if content["state"] in ("registered", "restarting"):  # requests for a restarting engine wait for it
            self._engines.setdefault(engine_id, {})
        else:
            self._engines.pop(engine_id, None)

    # -- waiting and closing ----------------------------------------------------
    def wait(self, jobs: Any = None, timeout: float | None = None) -> bool:
        """Wait for AsyncResults (or msg_ids), or for everything outstanding; True if all done."""
        results = self.ledger.results_of(jobs)
        done, not_done = futures.wait(results, timeout=timeout if timeout is None or timeout >= 0 else None)
        return not not_done

    def abort(self, jobs: Any = None, targets: Targets = None, timeout: float = 10.0) -> None:
        """Drop requests that have not started yet: ``jobs``, or everything outstanding on ``targets``.

        With neither, everything outstanding.  Their AsyncResults fail with an
        ``AbortedTask`` RemoteError; requests already running go on (see
        :meth:`interrupt`).
        """
        if jobs is not None:
            msg_ids = [mid for result in self.ledger.results_of(jobs) if isinstance(result, AsyncResult)
                       for mid in result.msg_ids if self.ledger.awaiting(mid)]
        elif targets is not None:
            msg_ids = self.ledger.outstanding(set(self.resolve_targets(targets)[0]))
        else:
            msg_ids = self.ledger.outstanding()
        if msg_ids:
            self._hub_request(HUB_ABORT_REQUEST, timeout, {"msg_ids": msg_ids})

    def _stop(self, result: AsyncResult, interrupt: bool) -> None:
        """Abort ``result``'s work not started; with ``interrupt``, interrupt the engines running it.

        An interrupt comes from Ctrl-C, so it does not wait for the hub's answer:
        the replies (KeyboardInterrupt, aborted) complete the result.
        """
        msg_ids = [msg_id for msg_id in result.msg_ids if self.ledger.awaiting(msg_id)]
        if not msg_ids:
            return
        if interrupt:
            self._channel.send(wire.build(self.session, HUB_ABORT_REQUEST, {"msg_ids": msg_ids, "interrupt": True}))
        else:
            self._hub_request(HUB_ABORT_REQUEST, 10.0, {"msg_ids": msg_ids})

    def restart_engine(self, engine_id: int, timeout: float = 90.0) -> None:
        """Replace engine ``engine_id`` (alive or dead) by a fresh kernel with the same id.

        Work outstanding on it fails with an EngineError; its namespace starts empty.
        """
        reply = self._hub_request(HUB_RESTART_REQUEST, timeout, {"engine_id": engine_id})
        _check(reply["content"], engine_id)
        self._refresh_engines(timeout)

    def start_engines(self, n: int, timeout: float = 90.0) -> list[int]:
        """Add ``n`` engines to this (local) cluster, with the lowest free ids; returns once they are up."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"start_engines takes a number of engines, 1 or more, not {n!r}")
        content = _check(self._hub_request(HUB_START_ENGINES_REQUEST, timeout, {"n": n})["content"])
        self._refresh_engines(timeout)
        return content["engine_ids"]

    def stop_engines(self, engine_ids: int | Iterable[int], timeout: float = 30.0) -> None:
        """Stop these engines for good (their work fails); a later :meth:`start_engines` reuses their ids."""
        ids = [engine_ids] if isinstance(engine_ids, int) else list(engine_ids)
        _check(self._hub_request(HUB_STOP_ENGINES_REQUEST, timeout, {"engine_ids": ids})["content"])
        self._refresh_engines(timeout)

    def interrupt(self, targets: Targets = None) -> AsyncResult:
        """Interrupt what the engines are running, as a notebook's stop button does."""
        ids, _ = self.resolve_targets(targets)
        return self.submit([Request(INTERRUPT_REQUEST, {}, ids)], False, "interrupt")

    @classmethod
    def latest(cls) -> Client | None:
        """The most recently created Client that is still open, if any."""
        client = cls._latest() if cls._latest is not None else None
        return client if client is not None and not client.closed else None

    def shutdown(self) -> None:
        """Stop the cluster: every engine and the hub."""
        self._hub_request(HUB_SHUTDOWN_REQUEST, 10.0)

    @property
    def closed(self) -> bool:
        return self._channel.closed

    def close(self) -> None:
        """Close the connection to the hub; the cluster keeps running."""
        self._channel.close()
        if self._segments is not None:
            self._segments.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<pxmagic.Client {self.connection_file} engines={self.ids}>"

    def _repr_html_(self) -> str:
        link = (f'; <a href="{html.escape(self.dashboard_link)}" target="_blank">dashboard</a>'
                if self.dashboard_link else "")
        return (f"<b>pxmagic.Client</b>: {len(self.ids)} engines {html.escape(str(self.ids))}, profile "
                f"{html.escape(self.profile)}{link}")

    def dashboard(self, width: str = "100%", height: int = 900) -> Any:
        """The live dashboard inside a notebook cell (an IFrame of :attr:`dashboard_link`)."""
        if not self.dashboard_link:
            raise RuntimeError("this cluster serves no dashboard: start it with Cluster(dashboard=True) or "
                               "pxcluster start --dashboard")
        from IPython.display import IFrame

        return IFrame(self.dashboard_link, width=width, height=height)


def _copy_slot(source_index: int, target: AsyncResult, index: int, source: AsyncResult) -> None:
    """Fill slot ``index`` of ``target`` with what slot ``source_index`` of ``source`` got."""
    target._deliver(index, *source._slot_outcome(source_index))


def _decode(key: bytes, segment_tag: str, msg: dict, engine_id: int | None) -> tuple[Any, RemoteError | None]:
    return wire.reply_value(msg, engine_id, key, segment_tag)


def _check(content: dict, engine_id: int | None = None) -> dict:
    """A hub reply's content, if it says ok; else the error it names, raised."""
    if content.get("status") != "ok":
        raise content_error(content, engine_id)
    return content
