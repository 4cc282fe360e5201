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
noticed differs (kernel manager, heartbeats, the end of its job).  Their
life (start, watch, restart, stop) is :class:`.supervisor.Supervisor`'s;
this module moves the bytes, and every send on a socket it reads goes
through :meth:`.pump.SocketPump.send`.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import secrets
import signal
import time
from socket import gethostname
from functools import partial
from pathlib import Path
from collections.abc import Awaitable
from typing import Any

import zmq
from jupyter_client.session import Session
from zmq.utils.monitor import parse_monitor_message

from .. import connection, encryption, sharedmem, tags, wire
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
    HUB_RESTART_REQUEST,
    HUB_SHUTDOWN_REPLY,
    HUB_SHUTDOWN_REQUEST,
    HUB_STATUS_REPLY,
    HUB_STATUS_REQUEST,
    HUB_START_ENGINES_REQUEST,
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
    Found,
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
from . import client_sockets
from .bulk import BulkLinks
from .deadlines import Deadlines
from .history import Finished, TaskHistory
from .status import status_content
from .supervisor import Supervisor
from ..usage import Usage
from .engines import LIVENESS_PERIOD, EngineLink, allow_many_engines
from .heartbeat import HeartMonitor
from .interrupts import StuckWatch
from .launchers import LaunchContext, Launcher
from .launchers.local import LocalLauncher
from .pump import SocketPump
from .registration import Registrar
from .router import Delivery, Failure, Retry, Router, Routing
from .segments import SegmentBook, framed, framed_request, reply_segments
from .options import DEFAULT_PERIOD, KERNEL_NAME, StoreOptions
from .archive import open_store
from .store import Waiter

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
        self.parent_pid = parent_pid
        self.session = Session(
            key=secrets.token_hex(32).encode(), signature_scheme="hmac-sha256", username="pxmagic-hub"
        )
        self.context = zmq.Context.instance()
        allow_many_engines(self.context)
        self.router = Router()
        self.deadlines = Deadlines()
        launcher = launcher or LocalLauncher(kernel_name)
        self.supervisor = Supervisor(self, self.router, self.deadlines, self.session, launcher,
                                     HeartMonitor(self.context, heartbeat_period), connection.security_dir(profile),
                                     start_timeout, restart_engines)
        #: the links to the engines, as supervision keeps them
        self.engines = self.supervisor.engines
        self.registrar = Registrar(self.session, self.context, connection.engine_file(profile, cluster_id),
                                   self.supervisor.admit, self.engines.keys)
        self.supervisor.registration_dir = self.registrar.path.parent
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
        self.results = open_store(store or StoreOptions(), connection.results_file(profile, cluster_id), self.session)
        #: result segments the hub maps, and what engines must hear of them (see .segments)
        self.segments = SegmentBook()
        self.history = TaskHistory()
        self._started_at = time.monotonic()
        #: clients connected to the requests socket now (its monitor counts them in and out)
        self._clients_connected = 0
        self.segment_tag = sharedmem.cluster_tag(self.session.key)
        #: reads every socket the hub serves; sends on them are reported to it (see .pump)
        self.pump = SocketPump()
        self.client_file: Path = connection.client_file(profile, cluster_id)
        #: path prefix of the IPC sockets for clients on this host (None: TCP only)
        self._local_ipc: str | None = None
        #: messages the hub will not act on: counted, and logged at a bounded rate
        self.refusals = RefusalLog(log)
        #: the clients' bulk streams, for the buffers of large replies (see .bulk)
        self.bulk = BulkLinks(self.session, self.refusals.refused)
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self.stuck_watch: StuckWatch | None = None
        if launcher.interrupt_timeout is not None:
            self.stuck_watch = StuckWatch(self.router, launcher.interrupt_timeout, self.supervisor.stop_stuck_job)

    # -- life cycle ---------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._stopping.set)
        warning = encryption.exposure_warning(self.ip, self.curve_public is not None)
        if warning:
            log.warning("%s", warning)
        addresses, self._local_ipc = client_sockets.bind(self.requests, self.publisher,
                                                         None if self.curve_public else self.bulk, self.profile, self.ip)
        hub_iopub = hub_url(addresses, "iopub_port")
        self.registrar.start(self.ip, hub_iopub, HUB_SILENCE_PERIODS * HUB_HEARTBEAT_PERIOD,
                             tolerated_stall=self.supervisor.heart.tolerated_stall,
                             curve_serverkey=self.curve_public.decode() if self.curve_public else None,
                             profile=self.profile, cluster_id=self.cluster_id, hub_pid=os.getpid())
        self.pump.serve(self.registrar.socket, self.registrar.handle)
        self._tasks.append(asyncio.create_task(self._beat()))
        self._tasks.append(asyncio.create_task(self._enforce_deadlines()))
        self._tasks.append(asyncio.create_task(self.supervisor.heart.run()))
        if self.dashboard_port is not None:
            from ..dashboard import server as dashboard

            _, self.dashboard_url = dashboard.start(self._status, self.history, secrets.token_urlsafe(24), self.ip,
                                                    self.dashboard_port)
            log.info("dashboard at %s", self.dashboard_url)
        try:
            context = LaunchContext(self.session, connection.security_dir(self.profile), self.registrar.path,
                                    self.supervisor.admit, self.registrar.reserve)
            await self.supervisor.start(self.n, context, lambda: self.registrar.accepted)
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

    async def _shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        self.pump.close()
        self.client_file.unlink(missing_ok=True)
        self.registrar.close()
        await self.supervisor.shutdown()
        self.bulk.close()
        self.requests.close(linger=0)
        self.publisher.close(linger=0)
        client_sockets.unlink(self._local_ipc)
        self.results.close()
        sharedmem.sweep(self.segment_tag, everything=True)
        log.info("hub stopped; %r", self.results)

    def _refuse_request(self, client: bytes, header: dict, reply_type: str, reason: str) -> None:
        """Refuse a signed, well-formed request, and tell its sender why."""
        self.refusals.refused(f"{header['msg_type']} {header['msg_id']}", reason)
        self._reply(client, reply_type, header, error_content("ProtocolError", reason))

    # -- clients ------------------------------------------------------------
    def _handle_client_message(self, frames: list) -> None:
        try:
            idents, parts = self.session.feed_identities(frames, copy=False)
        except ValueError:
            self.refusals.refused("a client message", "it has no <IDS|MSG> delimiter")
            return
        refusal = wire.check(self.session, parts, wire.FRESH) if idents else wire.Refusal("it has no sender", False)
        if refusal is not None and not refusal.authentic:
            self.refusals.refused("a client message", refusal.reason)
            return
        try:
            header, metadata, content = wire.envelope(parts)
        except ProtocolError as error:
            self.refusals.refused("a signed client message", str(error))
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
            self._answer_when_done(client, header, self.supervisor.restart(content.get("engine_id")))
        elif msg_type == HUB_ABORT_REQUEST:
            self._abort(client, header, content)
        elif msg_type == HUB_RESULT_REQUEST:
            self._send_stored_results(client, header, content)
        elif msg_type == HUB_PURGE_REQUEST:
            self._purge(client, header, content)
        elif msg_type == HUB_START_ENGINES_REQUEST:
            self._answer_when_done(client, header, self.supervisor.start_more(content.get("n")), "engine_ids")
        elif msg_type == HUB_STOP_ENGINES_REQUEST:
            self._answer_when_done(client, header, self.supervisor.stop(content.get("engine_ids")))
        elif msg_type == HUB_STATUS_REQUEST:
            self._reply(client, HUB_STATUS_REPLY, header, self._status())
        else:
            reason = f"the hub does not handle {msg_type!r} messages"
            self._refuse_request(client, header, reply_type(msg_type), reason)

    def _answer_when_done(self, client: bytes, header: dict, work: Awaitable, result_key: str | None = None) -> None:
        """Reply to a request for supervision work once it is done: ok (with its result under
        ``result_key``), or the error that stopped it."""
        async def answer() -> None:
            try:
                result = await work
            except Exception as error:
                content = error_content(type(error).__name__, str(error))
            else:
                content = {"status": "ok", **({result_key: result} if result_key else {})}
            self._reply(client, reply_type(header["msg_type"]), header, content)

        self._tasks.append(asyncio.create_task(answer()))

    def _forward_request(self, client: bytes, header: dict, metadata: dict, parts: list) -> None:
        answer_type = ENGINE_REQUESTS[header["msg_type"]]
        try:
            targets, balanced = request_routing(metadata)
            received = received_msg_ids(metadata)
            terms = request_terms(metadata)
        except ProtocolError as error:
            self._refuse_request(client, header, answer_type, str(error))
            return
        self.history.moved(sum(map(len, parts)) + tags.segment_bytes(metadata.get("buffer_tags")))
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
            self.refusals.refused(f"{header['msg_type']} {header['msg_id']}", "it names an engine that does not exist")
        self.send_failures(routing.failures)
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
        self.send_failures(stop.aborted)
        for engine_id, engine_msg_ids in stop.abort.items():
            abort = wire.build(self.session, ENGINE_ABORT_REQUEST, {"msg_ids": engine_msg_ids})
            self.pump.send(self.engines[engine_id].control, abort)
        for engine_id in stop.interrupt:
            self._interrupt(self.engines[engine_id])
        if stop.interrupt and self.stuck_watch is not None:
            self.stuck_watch.interrupted(stop.interrupt)
        self._reply(client, HUB_ABORT_REPLY, header, {"status": "ok", "interrupted": stop.interrupt})

    def _interrupt(self, engine: EngineLink) -> None:
        """Interrupt what an engine runs, in the hub's own name, the way its kernelspec asks."""
        if engine.interrupts_by_signal:
            self._tasks.append(asyncio.create_task(engine.interrupt_by_signal()))
            return
        self.pump.send(engine.control, wire.build(self.session, INTERRUPT_REQUEST, {}))

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
            self.pump.send(socket, wire.forwarded(self.session, header, payload))
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
                    self.send_failures([failure])
                    self._interrupt(self.engines[overrun.engine_id])

    async def _interrupt_by_signal(self, engine: EngineLink, header: dict) -> None:
        """Interrupt with SIGINT, as the engine's kernelspec asks, and answer in the engine's name."""
        log.info("interrupting engine %d with SIGINT (its kernelspec's interrupt_mode)", engine.id)
        try:
            await engine.interrupt_by_signal()
            content = {"status": "ok"}
        except Exception as error:
            content = error_content(type(error).__name__, f"could not interrupt engine {engine.id}: {error}")
        client, freed = self.router.on_reply(header["msg_id"])
        if client is not None:
            self._reply(client, ENGINE_REQUESTS[INTERRUPT_REQUEST], header, content)
        self._deliver(freed)

    def _reply(self, client: bytes, msg_type: str, parent: dict, content: dict) -> None:
        self.pump.send(self.requests, wire.build(self.session, msg_type, content, parent=parent, ident=client))

    def route(self, routing: Routing) -> None:
        """Send what the router decided after an engine went: new tries, then failures."""
        self._send_retries(routing.retries)
        self._deliver(routing.deliveries)
        self.send_failures(routing.failures)

    def _send_retries(self, retries: list[Retry]) -> None:
        """Tell clients which of their tasks go for another try, and why."""
        for retry in retries:
            log.info("task %s failed on engine %d (%s): try %d", retry.parent["msg_id"], retry.engine_id,
                     retry.reason, retry.tries)
            self._reply(retry.client, TASK_RETRY, retry.parent,
                        {"engine_id": retry.engine_id, "reason": retry.reason, "tries": retry.tries})

    def send_failures(self, failures: list[Failure]) -> None:
        """Reply in the engines' name, and keep these replies as results like the engines' own."""
        for failure in failures:
            frames = wire.build(self.session, failure.reply_type, failure.content, failure.parent)
            self.pump.send(self.requests, [failure.client, *frames])
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

    def _count_clients(self, frames: list) -> None:
        event = parse_monitor_message([frame.bytes for frame in frames])["event"]
        self._clients_connected += 1 if event == zmq.EVENT_ACCEPTED else -1

    def _status(self) -> dict:
        now = time.monotonic()
        return status_content(self.supervisor.facts(now), self.router.tasks(), self.deadlines.started(), now, time.time(),
                              max(self._clients_connected, 0), len(self.results), self.results.nbytes,
                              now - self._started_at)

    def _hub_info(self) -> dict:
        return {
            "status": "ok",
            "engines": {str(e.id): e.describe() for e in self.engines.values() if self.router.known(e.id)},
            "registrations": self.registrar.stats(),
            "refused": self.refusals.total,
        }

    def announce(self, engine_id: int, state: str) -> None:
        """Tell clients that an engine was registered, is restarting or is dead."""
        content = {"engine_id": engine_id, "state": state}
        wire.send(self.session, self.publisher, ENGINE_STATUS, content, ident=HUB_TOPIC)

    # -- engines ------------------------------------------------------------
    def serve_engine(self, engine: EngineLink) -> None:
        """Read a ready engine's replies and output."""
        self.pump.serve(engine.shell, partial(self._handle_engine_reply, engine))
        self.pump.serve(engine.control, partial(self._handle_engine_reply, engine))
        self.pump.serve(engine.iopub, partial(self._relay_output, engine))

    def unserve_engine(self, engine: EngineLink) -> None:
        for socket in (engine.shell, engine.control, engine.iopub):
            self.pump.unserve(socket)

    def _handle_engine_reply(self, engine: EngineLink, frames: list) -> None:
        _, parts = self.session.feed_identities(frames, copy=False)
        refusal = wire.check(self.session, parts, wire.UNSEEN)
        if refusal is not None:
            self.refusals.refused(f"a reply from engine {engine.id}", refusal.reason)
            return
        msg_id = wire.load(parts[2]).get("msg_id", "")
        try:
            segments = reply_segments(self.session.key, self.segment_tag, parts)
        except tags.BuffersRefused as error:  # forwarded all the same: its client says why it cannot read it
            self.refusals.refused(f"the segments of engine {engine.id}'s reply {msg_id}", str(error))
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
            self.pump.send(self.requests, [client, *self.bulk.divert(client, frames, len(parts) - 5)])
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
            self._send_results(waiter.client, waiter.parent, [Found(msg_id, RESULT_DONE, engine_id, parts)])

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
        found = [dataclasses.replace(result, parts=framed(self.session, result.parts)) for result in found]
        content, buffers = stored_results_message(found, self.results.why_missing)
        reply = wire.build(self.session, HUB_RESULT_REPLY, content, parent=parent)
        self.pump.send(self.requests, [client, *self.bulk.divert(client, [*reply, *buffers], len(buffers))])

    def _purge(self, client: bytes, header: dict, content: dict) -> None:
        try:
            everything, msg_ids, engine_ids = purge_selection(content)
        except ProtocolError as error:
            self._refuse_request(client, header, HUB_PURGE_REPLY, str(error))
            return
        purged = self.results.purge(everything, msg_ids, engine_ids)
        self._reply(client, HUB_PURGE_REPLY, header, {"status": "ok", "purged": purged})

    def _relay_output(self, engine: EngineLink, frames: list) -> None:
        if frames[0].bytes == USAGE_TOPIC:  # for the hub's status, not for clients
            self._note_usage(engine, frames)
            return
        topic = iopub_topic(engine.id, frames[0].bytes)
        self.publisher.send_multipart([topic, *frames[1:]], copy=False)

    def _note_usage(self, engine: EngineLink, frames: list) -> None:
        _, parts = self.session.feed_identities(frames, copy=False)
        refusal = wire.check(self.session, parts, wire.UNSEEN)
        if refusal is not None:
            self.refusals.refused(f"a usage report from engine {engine.id}", refusal.reason)
            return
        try:
            content = wire.load(parts[4])
            self.supervisor.reported_usage[engine.id] = Usage(int(content["rss_bytes"]), content.get("cpu_percent"))
        except (ValueError, KeyError, TypeError) as error:
            self.refusals.refused(f"a usage report from engine {engine.id}", f"it is malformed ({error})")

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
