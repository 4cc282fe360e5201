"""The hub process: one set of sockets for clients, multiplexed over the engines.

Clients talk to a ROUTER socket (requests and replies) and listen on a PUB
socket (every engine's iopub, re-tagged with the engine id, plus the hub's
own announcements).  Requests are checked (signature, then targets) and
fanned out to engine shells; replies are checked and forwarded to the client
that asked, frames untouched, and kept in the result store (:mod:`.store`)
for clients that ask for them later.  The bookkeeping is :class:`Router`'s.

Engines come from a launcher (:mod:`.launchers`: local kernels, an MPI job,
or none) and from the registration socket (:mod:`.registration`); once
connected, every engine is served alike, and only the way its death is
noticed differs (kernel manager, heartbeats, the end of its job).
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import signal
import time
from socket import gethostname
from functools import partial
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.session import Session
from zmq.utils.monitor import parse_monitor_message

from .. import connection, digest, encryption, sharedmem, wire
from ..replay import RefusalLog
from ..protocol import (
    CONTROL_REQUESTS,
    ENGINE_ABORT_REQUEST,
    INTERRUPT_REQUEST,
    ENGINE_REQUESTS,
    ENGINE_STATUS,
    HUB_INFO_REPLY,
    HUB_INFO_REQUEST,
    HUB_ABORT_REPLY,
    HUB_ABORT_REQUEST,
    HUB_RESTART_REPLY,
    HUB_RESTART_REQUEST,
    HUB_SHUTDOWN_REPLY,
    HUB_SHUTDOWN_REQUEST,
    HUB_STATUS_REPLY,
    HUB_STATUS_REQUEST,
    HUB_START_ENGINES_REPLY,
    HUB_START_ENGINES_REQUEST,
    HUB_STOP_ENGINES_REPLY,
    HUB_STOP_ENGINES_REQUEST,
    HUB_HEARTBEAT_PERIOD,
    HUB_HEARTBEAT_TOPIC,
    HUB_PURGE_REPLY,
    HUB_PURGE_REQUEST,
    HUB_RESULT_REPLY,
    HUB_RESULT_REQUEST,
    HUB_TOPIC,
    TASK_RETRY,
    USAGE_TOPIC,
    RESULT_DONE,
    ProtocolError,
    abort_msg_ids,
    error_content,
    hub_url,
    iopub_topic,
    purge_selection,
    received_msg_ids,
    reply_type,
    request_routing,
    request_terms,
    result_msg_ids,
    stored_results_message,
)
from .deadlines import Deadlines
from .history import Finished, TaskHistory
from .status import EngineFacts, status_content
from ..usage import Usage, UsageSampler
from .engines import KERNEL_NAME, LIVENESS_PERIOD, Engine, EngineStartError, LocalEngine, allow_many_engines
from .heartbeat import DEFAULT_PERIOD, HeartMonitor
from .interrupts import StuckWatch
from .launchers import LaunchContext, Launcher
from .launchers.local import LocalLauncher
from .pump import SocketPump
from .registration import RegisteredEngine, Registrar
from .router import Delivery, Failure, Retry, Router, Routing
from .segments import SegmentBook, framed, framed_request, reply_segments
from .store import Found, StoreOptions, Waiter

log = logging.getLogger("pxmagic.hub")

#: how long a registered engine waits for hub heartbeats before it exits, in heartbeat periods
HUB_SILENCE_PERIODS = 10
#: output messages queued for one subscriber before it loses more: a subscriber that stops
#: reading costs the hub that much memory, not all the output to come (clients read as it comes)
OUTPUT_QUEUE = 2_000
#: seconds between looks for tasks past their timeout (how late a timeout may fire)
DEADLINE_PERIOD = 0.05


class Hub:
    """Start ``n`` engines, serve clients until asked to stop, then stop the engines."""

    def __init__(
        self,
        n: int,
        profile: str = "default",
        cluster_id: str = "",
        ip: str = "127.0.0.1",
        kernel_name: str = KERNEL_NAME,
        start_timeout: float = 60.0,
        parent_pid: int | None = None,
        curve: bool = False,
        restart_engines: bool = False,
        store: StoreOptions | None = None,
        launcher: Launcher | None = None,
        heartbeat_period: float = DEFAULT_PERIOD,
        dashboard_port: int | None = None,
    ):
        self.n = n
        #: serve the live dashboard on this port of ``ip`` (0: any free one; None: no dashboard)
        self.dashboard_port = dashboard_port
        self.dashboard_url: str | None = None
        self.profile = profile
        self.cluster_id = cluster_id
        self.ip = ip
        self.kernel_name = kernel_name
        self.start_timeout = start_timeout
        self.parent_pid = parent_pid
        #: replace an engine that dies by a fresh kernel with the same id
        self.restart_engines = restart_engines
        self.session = Session(
            key=secrets.token_hex(32).encode(), signature_scheme="hmac-sha256", username="pxmagic-hub"
        )
        self.context = zmq.Context.instance()
        self.open_file_limit = allow_many_engines(self.context)
        self.launcher = launcher or LocalLauncher(kernel_name)
        self.heart = HeartMonitor(self.context, heartbeat_period)
        self.registrar = Registrar(self.session, self.context, connection.engine_file(profile, cluster_id),
                                   self._admit, lambda: self.engines.keys())
        # replies never block or drop: no high-water mark
        self.requests = self.context.socket(zmq.ROUTER)
        self.requests.sndhwm = 0
        self.publisher = self.context.socket(zmq.PUB)
        self.publisher.sndhwm = OUTPUT_QUEUE
        self.curve_public: bytes | None = None
        if curve:
            self.curve_public, secret = encryption.server_keys()
            for socket in (self.requests, self.publisher, self.registrar.socket):
                encryption.make_server(socket, self.curve_public, secret)
        self.router = Router()
        self.results = (store or StoreOptions()).open(connection.results_file(profile, cluster_id), self.session)
        #: result segments the hub maps, and what engines must hear of them (see .segments)
        self.segments = SegmentBook()
        self.deadlines = Deadlines()
        self.usage = UsageSampler()
        self.history = TaskHistory()
        #: what engines on other hosts last said of their memory and CPU
        self.reported_usage: dict[int, Usage] = {}
        self._started_at = time.monotonic()
        #: clients connected to the requests socket now (its monitor counts them in and out)
        self._clients_connected = 0
        self.segment_tag = sharedmem.cluster_tag(self.session.key)
        #: reads every socket the hub serves; sends on them are reported to it (see .pump)
        self.pump = SocketPump()
        self.engines: dict[int, Engine] = {}
        self.client_file: Path = connection.client_file(profile, cluster_id)
        #: path prefix of the IPC sockets for clients on this host (None: TCP only)
        self._local_ipc: str | None = None
        self.refusals = RefusalLog(log)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._watchers: dict[int, asyncio.Task] = {}
        self._starting: set[asyncio.Task] = set()
        #: engines that did not become ready while the cluster starts (None once it has started)
        self._start_failures: list[BaseException] | None = []
        self.stuck_watch: StuckWatch | None = None
        if self.launcher.interrupt_timeout is not None:
            self.stuck_watch = StuckWatch(self.router, self.launcher.interrupt_timeout, self._stop_stuck_job)

    # -- life cycle ---------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        warning = encryption.exposure_warning(self.ip, self.curve_public is not None)
        if warning:
            log.warning("%s", warning)
        addresses = self._bind_client_sockets()
        hub_iopub = hub_url(addresses, "iopub_port")
        self.registrar.start(self.ip, hub_iopub, HUB_SILENCE_PERIODS * HUB_HEARTBEAT_PERIOD,
                             tolerated_stall=self.heart.tolerated_stall,
                             curve_serverkey=self.curve_public.decode() if self.curve_public else None,
                             profile=self.profile, cluster_id=self.cluster_id, hub_pid=os.getpid())
        self.pump.serve(self.registrar.socket, self.registrar.handle)
        self._tasks.append(asyncio.create_task(self._beat()))
        self._tasks.append(asyncio.create_task(self._enforce_deadlines()))
        self._tasks.append(asyncio.create_task(self.heart.run()))
        if self.dashboard_port is not None:
            from ..dashboard import server as dashboard

            _, self.dashboard_url = dashboard.start(self._status, self.history, secrets.token_urlsafe(24), self.ip,
                                                    self.dashboard_port)
            log.info("dashboard at %s", self.dashboard_url)
        try:
            await self._start_engines()
            connection.write_secret_json(self.client_file, {
                **addresses,
                "hostname": gethostname(),
                "host_id": sharedmem.host_id(),
                "key": self.session.key.decode(),
                "signature_scheme": self.session.signature_scheme,
                "curve_serverkey": self.curve_public.decode() if self.curve_public else None,
                "hub_pid": os.getpid(),
                "profile": self.profile,
                "cluster_id": self.cluster_id,
                "engines": self.n,
                "dashboard_url": self.dashboard_url,
            })
            log.info("%d engines ready; connection file %s", self.n, self.client_file)
            self.pump.serve(self.requests, self._handle_client_message)
            monitor = self.requests.get_monitor_socket(zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED)
            self.pump.serve(monitor, self._count_clients)
            if self.parent_pid is not None:
                self._tasks.append(asyncio.create_task(self._watch_parent()))
            await self._stopping.wait()
        finally:
            await self._shutdown()

    def _bind_client_sockets(self) -> dict:
        """Bind the sockets clients use; return where they are, as the connection file says it.

        A hub on loopback serves only clients of its host, so it listens on
        IPC sockets in the profile's 0700 ``security/`` directory: a TCP port
        on 127.0.0.1 would let anyone on the host subscribe to every
        engine's output.  Beyond loopback it listens on TCP (encrypted unless
        told not to), and on IPC as well for the clients of its own host.
        """
        prefix = self._local_ipc = connection.hub_ipc_prefix(self.profile)
        if prefix:
            self.requests.bind(f"ipc://{prefix}-requests")
            self.publisher.bind(f"ipc://{prefix}-iopub")
            if encryption.is_loopback(self.ip):
                return {"transport": "ipc", "ip": prefix, "request_port": "requests", "iopub_port": "iopub",
                        "local_ipc": None}
        else:
            log.warning("the profile's directory is too deep for IPC socket paths; clients use TCP on %s", self.ip)
        return {"transport": "tcp", "ip": self.ip, "local_ipc": prefix,
                "request_port": self.requests.bind_to_random_port(f"tcp://{self.ip}"),
                "iopub_port": self.publisher.bind_to_random_port(f"tcp://{self.ip}")}

    async def _start_engines(self) -> None:
        """Have the launcher start ``n`` engines; return once ``n`` are ready, or raise why not."""
        context = LaunchContext(self.session, connection.security_dir(self.profile), self.registrar.path,
                                self._admit, self.registrar.reserve)
        deadline = asyncio.get_running_loop().time() + self.start_timeout
        await self.launcher.start(self.n, context)
        self._tasks.append(asyncio.create_task(self._watch_launcher()))
        while len(self.router.load) < self.n:
            if self._start_failures:
                raise self._start_failures[0]
            if self.launcher.end_reason is not None:
                raise EngineStartError(f"the engines' {self.launcher.label} job ended before they were all "
                                       f"ready ({len(self.router.load)} of {self.n}): engines "
                                       f"{self.launcher.end_reason}; the hub log has their output")
            if asyncio.get_running_loop().time() > deadline:
                raise EngineStartError(f"only {len(self.router.load)} of {self.n} engines were ready within "
                                       f"{self.start_timeout:.0f} s ({self.registrar.accepted} registered)")
            await asyncio.sleep(0.05)
        self._start_failures = None

    def _admit(self, engine: Engine) -> None:
        """Connect to a started or registered engine and serve it once it answers."""
        self.engines[engine.id] = engine
        if isinstance(engine, RegisteredEngine):
            self.heart.add(engine.id, engine.heartbeat_url, engine.mark_dead, engine.curve_serverkey)
        task = asyncio.create_task(self._make_ready(engine))
        self._starting.add(task)
        task.add_done_callback(self._starting.discard)

    async def _make_ready(self, engine: Engine) -> None:
        try:
            await engine.wait_ready(self.session, self.start_timeout)
        except Exception as error:
            log.error("%s", error)
            if self._start_failures is not None:
                self._start_failures.append(error)
            if not engine.restartable:  # a local engine stays, for shutdown (or a restart) to stop it
                self._forget(engine)
            return
        if self.engines.get(engine.id) is engine:
            self._add_engine(engine)

    def _forget(self, engine: Engine) -> None:
        """Let go of an engine that cannot come back (registered engines are not restarted)."""
        self.heart.discard(engine.id)
        self.reported_usage.pop(engine.id, None)
        if self.engines.get(engine.id) is engine:
            del self.engines[engine.id]
        for socket in (engine.shell, engine.control, engine.iopub):
            self.pump.unserve(socket)
        engine.close_sockets()
        if isinstance(engine, RegisteredEngine):
            engine.remove_connection_file(self.registrar.path.parent)

    async def _watch_launcher(self) -> None:
        """When the launched job ends by itself, its engines are gone with it."""
        reason = await self.launcher.wait_ended()
        self._mark_job_dead(reason)

    def _mark_job_dead(self, reason: str) -> None:
        for engine in list(self.engines.values()):
            if engine.id in self.launcher.job_engine_ids and isinstance(engine, RegisteredEngine):
                engine.mark_dead(reason)

    def _stop_stuck_job(self, stuck: list[int]) -> None:
        """Interrupted engines did not stop: their work fails now, and their whole job is stopped."""
        stuck = [e for e in stuck if e in self.launcher.job_engine_ids and e in self.router.load]
        if not stuck:
            return
        reason = self.launcher.stuck_reason(stuck)
        log.error("engines %s did not stop on an interrupt: stopping their job", stuck)
        self._mark_job_dead(reason)
        self._tasks.append(asyncio.create_task(self.launcher.stop_job()))

    def _add_engine(self, engine: Engine) -> None:
        self._deliver(self.router.add_engine(engine.id).deliveries)
        self.pump.serve(engine.shell, partial(self._handle_engine_reply, engine))
        self.pump.serve(engine.control, partial(self._handle_engine_reply, engine))
        self.pump.serve(engine.iopub, partial(self._relay_output, engine))
        self._watchers[engine.id] = asyncio.create_task(self._watch_engine(engine))
        self._announce(engine.id, "registered")

    async def _restart_engine(self, client: bytes, header: dict, engine_id: Any) -> None:
        """Replace an engine (alive or dead) by a fresh kernel with the same id."""
        engine = self.engines.get(engine_id) if isinstance(engine_id, int) else None
        if engine is None:
            reason = f"no engine {engine_id!r}: engines are {sorted(self.engines)}"
            self._refuse(f"{header['msg_type']} {header['msg_id']}", reason)
            self._reply(client, HUB_RESTART_REPLY, header, error_content("IndexError", reason))
            return
        if not engine.restartable:
            evalue = (f"engine {engine_id} registered itself (from {getattr(engine, 'host', '?')}); the hub "
                      "did not start it and cannot restart it (MPI ranks restart only with their whole job: "
                      "stop and start the cluster)")
            self._reply(client, HUB_RESTART_REPLY, header, error_content("EngineStartError", evalue))
            return
        self._watchers.pop(engine_id).cancel()
        self._route(self.router.restart_engine(engine_id, "was restarted"))
        try:
            await self._replace(engine)
        except Exception as error:
            self._reply(client, HUB_RESTART_REPLY, header, error_content(type(error).__name__, str(error)))
            return
        self._reply(client, HUB_RESTART_REPLY, header, {"status": "ok"})

    async def _start_more_engines(self, client: bytes, header: dict, n: Any) -> None:
        """Add ``n`` local kernels, with the lowest ids not in use; answer once all are ready."""
        if not isinstance(self.launcher, LocalLauncher):
            reason = (f"the engines of a {self.launcher.label} cluster come and go with their job: "
                      "only a local cluster adds engines one by one")
            self._reply(client, HUB_START_ENGINES_REPLY, header, error_content("EngineStartError", reason))
            return
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            reason = f"start_engines takes a number of engines, 1 or more, not {n!r}"
            self._reply(client, HUB_START_ENGINES_REPLY, header, error_content("ValueError", reason))
            return
        ids = list(itertools.islice((i for i in itertools.count() if i not in self.engines), n))
        started = await asyncio.gather(*(self._start_local_engine(i) for i in ids), return_exceptions=True)
        failed = [error for error in started if isinstance(error, BaseException)]
        if failed:
            self._reply(client, HUB_START_ENGINES_REPLY, header,
                        error_content(type(failed[0]).__name__, f"{len(failed)} of {n} engines did not start: "
                                      f"{failed[0]}"))
            return
        self._reply(client, HUB_START_ENGINES_REPLY, header, {"status": "ok", "engine_ids": ids})

    async def _start_local_engine(self, engine_id: int) -> LocalEngine:
        engine = await LocalEngine.start(engine_id, self.session, connection.security_dir(self.profile),
                                         self.launcher.kernel_name)
        self.engines[engine_id] = engine
        try:
            await engine.wait_ready(self.session, self.start_timeout)
        except BaseException:
            del self.engines[engine_id]
            await engine.shutdown()
            raise
        self._add_engine(engine)
        return engine

    async def _stop_engines(self, client: bytes, header: dict, engine_ids: Any) -> None:
        """Stop some local engines for good: their work fails, their ids are free for new engines."""
        reason = None
        if not isinstance(engine_ids, list) or not all(type(i) is int for i in engine_ids):
            reason = ("ValueError", f"stop_engines takes a list of engine ids, not {engine_ids!r}")
        elif any(i not in self.engines for i in engine_ids):
            missing = next(i for i in engine_ids if i not in self.engines)
            reason = ("IndexError", f"no engine {missing}: engines are {sorted(self.engines)}")
        elif any(not isinstance(self.engines[i], LocalEngine) for i in engine_ids):
            other = next(i for i in engine_ids if not isinstance(self.engines[i], LocalEngine))
            reason = ("EngineStartError", f"engine {other} registered itself: the hub did not start it and "
                                          "cannot stop it alone (stop the cluster)")
        if reason is not None:
            self._reply(client, HUB_STOP_ENGINES_REPLY, header, error_content(*reason))
            return
        engines = [self.engines[i] for i in dict.fromkeys(engine_ids)]
        for engine in engines:
            watcher = self._watchers.pop(engine.id, None)
            if watcher is not None:
                watcher.cancel()
            self.deadlines.forget_engine(engine.id)
            if engine.id in self.router.load:
                self._route(self.router.remove_engine(engine.id, "was stopped"))
            self._forget(engine)
            self._announce(engine.id, "dead")
        await asyncio.gather(*(engine.shutdown() for engine in engines), return_exceptions=True)
        self._reply(client, HUB_STOP_ENGINES_REPLY, header, {"status": "ok"})

    async def _replace(self, engine: Engine) -> None:
        """Start a fresh kernel in place of ``engine``, whose running work has already been failed.

        Requests for it wait in the router meanwhile; if it does not come back, they fail.
        """
        self._announce(engine.id, "restarting")
        for socket in (engine.shell, engine.control, engine.iopub):
            self.pump.unserve(socket)
        try:
            fresh = await engine.restart(self.session, self.start_timeout)
        except Exception as error:
            log.exception("engine %d did not restart", engine.id)
            self._send_failures(self.router.restart_failed(engine.id, f"did not restart: {error}"))
            self._announce(engine.id, "dead")
            raise
        self.engines[engine.id] = fresh
        self._add_engine(fresh)
        log.info("engine %d restarted", engine.id)

    async def _shutdown(self) -> None:
        for task in [*self._tasks, *self._watchers.values(), *self._starting]:
            task.cancel()
        self.pump.close()
        self.client_file.unlink(missing_ok=True)
        self.registrar.close()
        self.heart.close()
        by_class: dict[type[Engine], list[Engine]] = {}
        for engine in self.engines.values():
            by_class.setdefault(type(engine), []).append(engine)
        await asyncio.gather(*(kind.shutdown_all(engines, self.session) for kind, engines in by_class.items()),
                             return_exceptions=True)
        for engine in self.engines.values():
            if isinstance(engine, RegisteredEngine):
                engine.remove_connection_file(self.registrar.path.parent)
        await self.launcher.stop()
        self.requests.close(linger=0)
        self.publisher.close(linger=0)
        if self._local_ipc:
            for suffix in ("-requests", "-iopub"):
                Path(self._local_ipc + suffix).unlink(missing_ok=True)
        self.results.close()
        sharedmem.sweep(self.segment_tag, everything=True)
        log.info("hub stopped; %r", self.results)

    def _refuse(self, what: str, reason: str) -> None:
        """Count, and log at a bounded rate, a message the hub will not act on."""
        self.refusals.refused(what, reason)

    def _refuse_request(self, client: bytes, header: dict, reply_type: str, reason: str) -> None:
        """Refuse a signed, well-formed request, and tell its sender why."""
        self._refuse(f"{header['msg_type']} {header['msg_id']}", reason)
        self._reply(client, reply_type, header, error_content("ProtocolError", reason))

    # -- clients ------------------------------------------------------------
    def _handle_client_message(self, frames: list) -> None:
        try:
            idents, parts = self.session.feed_identities(frames, copy=False)
        except ValueError:
            self._refuse("a client message", "it has no <IDS|MSG> delimiter")
            return
        refusal = wire.request_refusal(self.session, parts) if idents else wire.Refusal("it has no sender", False)
        if refusal is not None and not refusal.authentic:
            self._refuse("a client message", refusal.reason)
            return
        try:
            header, metadata, content = wire.envelope(parts)
        except ProtocolError as error:
            self._refuse("a signed client message", str(error))
            return
        client = idents[0]
        if refusal is not None:  # ours, but stale or replayed: say so, or its sender waits for ever
            self._refuse_request(client, header, reply_type(header["msg_type"]), refusal.reason)
            return
        msg_type = header["msg_type"]
        if msg_type in ENGINE_REQUESTS:
            self._forward_request(client, header, metadata, parts)
        elif msg_type == HUB_INFO_REQUEST:
            self._reply(client, HUB_INFO_REPLY, header, self._hub_info())
        elif msg_type == HUB_SHUTDOWN_REQUEST:
            self._reply(client, HUB_SHUTDOWN_REPLY, header, {"status": "ok"})
            self._stopping.set()
        elif msg_type == HUB_RESTART_REQUEST:
            engine_id = content.get("engine_id")
            self._tasks.append(asyncio.create_task(self._restart_engine(client, header, engine_id)))
        elif msg_type == HUB_ABORT_REQUEST:
            self._abort(client, header, content)
        elif msg_type == HUB_RESULT_REQUEST:
            self._send_stored_results(client, header, content)
        elif msg_type == HUB_PURGE_REQUEST:
            self._purge(client, header, content)
        elif msg_type == HUB_START_ENGINES_REQUEST:
            self._tasks.append(asyncio.create_task(self._start_more_engines(client, header, content.get("n"))))
        elif msg_type == HUB_STOP_ENGINES_REQUEST:
            self._tasks.append(asyncio.create_task(self._stop_engines(client, header, content.get("engine_ids"))))
        elif msg_type == HUB_STATUS_REQUEST:
            self._reply(client, HUB_STATUS_REPLY, header, self._status())
        else:
            reason = f"the hub does not handle {msg_type!r} messages"
            self._refuse_request(client, header, reply_type(msg_type), reason)

    def _forward_request(self, client: bytes, header: dict, metadata: dict, parts: list) -> None:
        answer_type = ENGINE_REQUESTS[header["msg_type"]]
        try:
            targets, balanced = request_routing(metadata)
            received = received_msg_ids(metadata)
            terms = request_terms(metadata)
        except ProtocolError as error:
            self._refuse_request(client, header, answer_type, str(error))
            return
        self.history.moved(sum(map(len, parts)) + digest.segment_bytes(metadata.get("buffer_digests")))
        self.results.release(received)
        self.segments.received(received)
        # parent, metadata, content and buffers go to the engines as received
        payload = parts[2:]
        if balanced:
            routing = self.router.route_task(client, header, targets, payload, terms)
        else:
            routing = self.router.route_request(client, header, targets, payload, terms)
        self._deliver(routing.deliveries)
        if routing.failures:
            self._refuse(f"{header['msg_type']} {header['msg_id']}", "it names an engine that does not exist")
        self._send_failures(routing.failures)
        if header["msg_type"] == INTERRUPT_REQUEST and self.stuck_watch is not None and not balanced:
            self.stuck_watch.interrupted(targets)

    def _abort(self, client: bytes, header: dict, content: dict) -> None:
        """Drop queued tasks here; ask engines to drop requests they have not started."""
        try:
            msg_ids = abort_msg_ids(content)
        except ProtocolError as error:
            self._refuse_request(client, header, HUB_ABORT_REPLY, str(error))
            return
        stop = self.router.stop(msg_ids, interrupt=content.get("interrupt") is True)
        self._send_failures(stop.aborted)
        for engine_id, engine_msg_ids in stop.abort.items():
            control = self.engines[engine_id].control
            wire.send(self.session, control, ENGINE_ABORT_REQUEST, {"msg_ids": engine_msg_ids})
            self.pump.wrote(control)
        for engine_id in stop.interrupt:
            self._interrupt(self.engines[engine_id])
        if stop.interrupt and self.stuck_watch is not None:
            self.stuck_watch.interrupted(stop.interrupt)
        self._reply(client, HUB_ABORT_REPLY, header, {"status": "ok", "interrupted": stop.interrupt})

    def _interrupt(self, engine: Engine) -> None:
        """Interrupt what an engine runs, in the hub's own name, the way its kernelspec asks."""
        if engine.interrupts_by_signal:
            self._tasks.append(asyncio.create_task(engine.interrupt_by_signal()))
            return
        wire.send(self.session, engine.control, INTERRUPT_REQUEST, {})
        self.pump.wrote(engine.control)

    def _deliver(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            engine = self.engines[delivery.engine_id]
            if delivery.header["msg_type"] == INTERRUPT_REQUEST and engine.interrupts_by_signal:
                self._tasks.append(asyncio.create_task(self._interrupt_by_signal(engine, delivery.header)))
                continue
            socket = engine.control if delivery.header["msg_type"] in CONTROL_REQUESTS else engine.shell
            taken = self.segments.announcements(engine.id)
            header = {**delivery.header, "segments_taken": taken} if taken else delivery.header
            payload = delivery.payload if engine.shares_memory else framed_request(self.session, delivery.payload)
            wire.forward(self.session, socket, header, payload)
            self.pump.wrote(socket)
            self._clock(engine.id)

    def _clock(self, engine_id: int) -> None:
        """Start the clock of what engine ``engine_id`` runs now, if it changed."""
        running = self.router.running(engine_id)
        self.deadlines.running(engine_id, running and running.header["msg_id"], running and running.terms.timeout,
                               time.monotonic())

    async def _enforce_deadlines(self) -> None:
        """Interrupt engines running a task past its timeout, and fail the task with TaskTimeout."""
        while True:
            await asyncio.sleep(DEADLINE_PERIOD)
            for overrun in self.deadlines.overruns(time.monotonic()):
                failure = self.router.time_out(overrun.msg_id, overrun.engine_id, overrun.elapsed)
                if failure is not None:
                    log.info("engine %d: %s", overrun.engine_id, failure.content["evalue"])
                    self._send_failures([failure])
                    self._interrupt(self.engines[overrun.engine_id])

    async def _interrupt_by_signal(self, engine: Engine, header: dict) -> None:
        """Interrupt with SIGINT, as the engine's kernelspec asks, and answer in the engine's name."""
        log.info("interrupting engine %d with SIGINT (its kernelspec's interrupt_mode)", engine.id)
        try:
            await engine.interrupt_by_signal()
            content = {"status": "ok"}
        except Exception as error:
            content = error_content(type(error).__name__, f"could not interrupt engine {engine.id}: {error}")
        client, freed = self.router.on_reply(header["msg_id"])
        if client is not None:
            self._reply(client, INTERRUPT_REQUEST.replace("_request", "_reply"), header, content)
        self._deliver(freed)

    def _reply(self, client: bytes, msg_type: str, parent: dict, content: dict) -> None:
        wire.send(self.session, self.requests, msg_type, content, parent=parent, ident=client)
        self.pump.wrote(self.requests)

    def _route(self, routing: Routing) -> None:
        """Send what the router decided after an engine went: new tries, then failures."""
        self._send_retries(routing.retries)
        self._deliver(routing.deliveries)
        self._send_failures(routing.failures)

    def _send_retries(self, retries: list[Retry]) -> None:
        """Tell clients which of their tasks go for another try, and why."""
        for retry in retries:
            log.info("task %s failed on engine %d (%s): try %d", retry.parent["msg_id"], retry.engine_id,
                     retry.reason, retry.tries)
            self._reply(retry.client, TASK_RETRY, retry.parent,
                        {"engine_id": retry.engine_id, "reason": retry.reason, "tries": retry.tries})

    def _send_failures(self, failures: list[Failure]) -> None:
        """Reply in the engines' name, and keep these replies as results like the engines' own."""
        for failure in failures:
            frames = self.session.serialize(self.session.msg(failure.reply_type, failure.content, failure.parent))
            self.requests.send_multipart([failure.client, *frames], copy=False)
            self.pump.wrote(self.requests)
            self._keep(failure.parent["msg_id"], failure.engine_id, frames[1:])

    def _record(self, engine_id: int, msg_id: str, failed: bool, parts: list, segments: Any) -> None:
        """Note a reply in the task history (its task, run times, outcome) and its bytes."""
        pending = self.router.pending.get(msg_id)
        if pending is None or pending.header["msg_type"] in CONTROL_REQUESTS:
            return
        now, wall = time.monotonic(), time.time()
        since = self.deadlines.started_at(engine_id, msg_id) or now
        self.history.finished(Finished(engine_id, msg_id, pending.terms.name, pending.terms.label,
                                       wall - (now - since), wall, failed))
        buffers = [memoryview(b).nbytes for b in segments[1]] if segments else list(map(len, parts[5:]))
        self.history.moved(sum(map(len, parts[:5])) + sum(buffers))

    def _note_usage(self, engine: Engine, frames: list) -> None:
        _, parts = self.session.feed_identities(frames, copy=False)
        if not wire.verify(self.session, parts):
            self._refuse(f"a usage report from engine {engine.id}", "its signature is missing, wrong or replayed")
            return
        try:
            content = wire.load(parts[4])
            self.reported_usage[engine.id] = Usage(int(content["rss_bytes"]), content.get("cpu_percent"))
        except (ValueError, KeyError, TypeError) as error:
            self._refuse(f"a usage report from engine {engine.id}", f"it is malformed ({error})")

    def _count_clients(self, frames: list) -> None:
        event = parse_monitor_message([frame.bytes for frame in frames])["event"]
        self._clients_connected += 1 if event == zmq.EVENT_ACCEPTED else -1

    def _status(self) -> dict:
        now = time.monotonic()
        facts = [self._engine_facts(engine, now) for engine in self.engines.values()]
        self.usage.forget({f.pid for f in facts if f.pid is not None})
        return status_content(facts, self.router.tasks(), self.deadlines.started(), now, time.time(),
                              max(self._clients_connected, 0), len(self.results), self.results.nbytes,
                              now - self._started_at)

    def _engine_facts(self, engine: Engine, now: float) -> EngineFacts:
        watcher = self._watchers.get(engine.id)
        if engine.id in self.router.restarting:
            lifecycle = "restarting"
        elif engine.id in self.router.load:
            lifecycle = "up"
        else:
            lifecycle = "dead" if watcher is not None and watcher.done() else "starting"
        if isinstance(engine, LocalEngine):
            kind, host, same_host = "local", gethostname(), True
        else:
            kind = self.launcher.label if engine.id in self.launcher.job_engine_ids else "registered"
            host, same_host = getattr(engine, "host", "?"), engine.shares_memory
        if lifecycle == "dead":
            usage = None
        else:
            usage = self.usage.sample(engine.pid) if same_host else self.reported_usage.get(engine.id)
        last = self.heart.last_answer(engine.id)
        return EngineFacts(engine.id, kind, host, engine.pid, lifecycle, None if last is None else now - last, usage)

    def _hub_info(self) -> dict:
        return {
            "status": "ok",
            "engines": {str(e.id): e.describe() for e in self.engines.values() if self.router.known(e.id)},
            "registrations": self.registrar.stats(),
            "refused": self.refusals.total,
        }

    def _announce(self, engine_id: int, state: str) -> None:
        content = {"engine_id": engine_id, "state": state}
        wire.send(self.session, self.publisher, ENGINE_STATUS, content, ident=HUB_TOPIC)

    # -- engines ------------------------------------------------------------
    def _handle_engine_reply(self, engine: Engine, frames: list) -> None:
        _, parts = self.session.feed_identities(frames, copy=False)
        if not wire.verify(self.session, parts):
            self._refuse(f"a reply from engine {engine.id}", "its signature is missing, wrong or replayed")
            return
        msg_id = wire.load(parts[2]).get("msg_id", "")
        try:
            segments = reply_segments(self.session.key, self.segment_tag, parts)
        except digest.BuffersRefused as error:  # forwarded all the same: its client says why it cannot read it
            self._refuse(f"the segments of engine {engine.id}'s reply {msg_id}", str(error))
            segments = None
        try:  # a small object: whether the request failed, for the counts and for retries
            content = wire.load(parts[4])
        except ValueError:
            content = {}
        failed = isinstance(content, dict) and content.get("status") == "error"
        if failed and segments is None and self.router.retries_errors(msg_id):
            routing = self.router.retry(msg_id, f"it raised {content.get('ename')}: {content.get('evalue')}")
            self._clock(engine.id)
            self._send_retries(routing.retries)
            self._deliver(routing.deliveries)
            return
        self._record(engine.id, msg_id, failed, parts, segments)
        client, freed = self.router.on_reply(msg_id, failed)
        self._clock(engine.id)
        if client is not None:
            self.requests.send_multipart([client, *frames], copy=False)
            self.pump.wrote(self.requests)
            if segments is not None:
                names, buffers = segments
                self.segments.forwarded(msg_id, engine.id, names, buffers, time.monotonic())
            self._keep(msg_id, engine.id, parts, segments[1] if segments else None)
        self._deliver(freed)

    # -- results ------------------------------------------------------------
    def _keep(self, msg_id: str, engine_id: int | None, parts: list, buffers: list | None = None) -> None:
        """Store a result (``buffers``: all of them, mapped, if some are in segments), and send it to the
        clients that asked for it before it came."""
        for waiter in self.results.add(msg_id, engine_id, parts, buffers):
            self._send_results(waiter.client, waiter.parent, [(msg_id, RESULT_DONE, engine_id, parts)])

    def _send_stored_results(self, client: bytes, header: dict, content: dict) -> None:
        """Answer with the results asked for that the hub has; the pending ones follow when they come."""
        try:
            msg_ids = result_msg_ids(content)
        except ProtocolError as error:
            self._refuse_request(client, header, HUB_RESULT_REPLY, str(error))
            return
        found = self.results.find(msg_ids, self.router.outstanding, Waiter(client, header))
        self._send_results(client, header, found)

    def _send_results(self, client: bytes, parent: dict, found: list[Found]) -> None:
        found = [(m, state, e, framed(self.session, parts)) for m, state, e, parts in found]
        content, buffers = stored_results_message(found, self.results.why_missing)
        wire.send(self.session, self.requests, HUB_RESULT_REPLY, content, parent=parent, buffers=buffers,
                  ident=client)
        self.pump.wrote(self.requests)

    def _purge(self, client: bytes, header: dict, content: dict) -> None:
        try:
            everything, msg_ids, engine_ids = purge_selection(content)
        except ProtocolError as error:
            self._refuse_request(client, header, HUB_PURGE_REPLY, str(error))
            return
        purged = self.results.purge(everything, msg_ids, engine_ids)
        self._reply(client, HUB_PURGE_REPLY, header, {"status": "ok", "purged": purged})

    def _relay_output(self, engine: Engine, frames: list) -> None:
        if frames[0].bytes == USAGE_TOPIC:  # for the hub's status, not for clients
            self._note_usage(engine, frames)
            return
        topic = iopub_topic(engine.id, frames[0].bytes)
        self.publisher.send_multipart([topic, *frames[1:]], copy=False)

    async def _beat(self) -> None:
        """Tell clients and registered engines the hub is alive (they give up on a silent hub)."""
        while True:
            self.publisher.send(HUB_HEARTBEAT_TOPIC)
            self.pump.sweep((self.requests, self.registrar.socket))
            self.segments.expire(time.monotonic())
            sharedmem.sweep(self.segment_tag)
            await asyncio.sleep(HUB_HEARTBEAT_PERIOD)

    async def _watch_parent(self) -> None:
        """Stop when the process that started this cluster is gone (a kernel that died, say)."""
        while os.getppid() == self.parent_pid:
            await asyncio.sleep(LIVENESS_PERIOD)
        log.info("the process that started this cluster (pid %d) exited; stopping", self.parent_pid)
        self._stopping.set()

    async def _watch_engine(self, engine: Engine) -> None:
        reason = await engine.until_dead()
        log.error("engine %d %s", engine.id, reason)
        self.deadlines.forget_engine(engine.id)
        if self.restart_engines and engine.restartable:
            self._route(self.router.restart_engine(engine.id, reason))
            with contextlib.suppress(Exception):  # _replace logged it; the engine stays gone
                await self._replace(engine)
            return
        routing = self.router.remove_engine(engine.id, reason)
        if isinstance(engine, RegisteredEngine):  # it may only be frozen: it must not run this work later
            owed = [f.parent for f in routing.failures if f.engine_id == engine.id] + [r.parent for r in routing.retries]
            engine.let_go(self.session, [parent["msg_id"] for parent in owed])
        self._route(routing)
        self._announce(engine.id, "dead")
        if not engine.restartable:
            self._watchers.pop(engine.id, None)
            self._forget(engine)
