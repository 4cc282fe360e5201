"""Engines that register themselves: the hub's registration socket and what it admits.

An engine started by something other than the hub (``mpiexec``, ``srun``,
``ssh``; see :mod:`pxmagic.engine.registration` for its side) reads
``profile_<p>/security/pxmagic-engine[-<cluster id>].json`` (mode 0600,
written here), starts as a kernel signed with the cluster key, and sends its
connection info in one signed ``registration_request`` to the ROUTER socket
that file names.  The hub checks the signature before reading anything,
gives the engine an id, answers at once, and connects to the kernel as it
does to one it started.

Ids are stable and ordered: an engine of a job the hub launched (an MPI job)
gets the job's first id plus its rank, so MPI rank == engine id; an engine
that gives only a rank gets the rank; others get the next free id.

Everything here is cheap per engine (one signature check, one JSON parse, a few
socket connects), so a thousand engines registering at once are admitted in
about a second; readiness is then checked for all of them concurrently.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from pathlib import Path

import zmq
from jupyter_client.session import Session

from .. import connection, sharedmem, wire
from ..replay import RefusalLog
from ..protocol import (
    ENGINE_ABORT_REQUEST,
    REGISTRATION_REPLY,
    REGISTRATION_REQUEST,
    ProtocolError,
    check_registration,
    error_content,
    kernel_url,
)
from .engines import EngineLink

log = logging.getLogger("pxmagic.hub")

#: how long the hub waits, in all, for registered engines to answer its shutdown requests
SHUTDOWN_WAIT = 2.0
#: how long the hub's last words to an engine it let go may wait to be sent, once its sockets close
LET_GO_LINGER_MS = 2000
#: connections the registration socket's listener queues (Linux caps it at net.core.somaxconn)
REGISTRATION_BACKLOG = 4096


class RegisteredEngine(EngineLink):
    """An engine kernel that registered itself; only heartbeats or its job tell whether it lives."""

    def __init__(self, engine_id: int, registration: dict, context: zmq.Context):
        super().__init__(engine_id, registration["connection_info"], context)
        self.host: str = registration["host"]
        self.shares_memory = bool(registration.get("host_id")) and registration.get("host_id") == sharedmem.host_id()
        self.job: str | None = registration["job"]
        self._pid: int = registration["pid"]
        self._connection_file: str = registration["connection_file"]
        self._death: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @property
    def connection_file(self) -> str:
        return self._connection_file

    @property
    def pid(self) -> int:
        return self._pid

    @property
    def heartbeat_url(self) -> str:
        return kernel_url(self.connection_info, "hb")

    def describe(self) -> dict:
        return {**super().describe(), "host": self.host}

    def mark_dead(self, reason: str) -> None:
        """Declare the engine gone (heartbeats stopped, its job ended); the first reason stands."""
        if not self._death.done():
            self._death.set_result(reason)

    async def is_alive(self) -> bool:
        return not self._death.done()

    def let_go(self, session: Session, msg_ids: list[str]) -> None:
        """Tell an engine found dead to drop ``msg_ids`` and shut down, before its work is failed.

        Missed heartbeats mean frozen or cut off, not always dead.  An engine
        that wakes must not run what the hub has already reported failed, nor
        live on outside the cluster: these messages wait for it in its
        control socket (the engine itself also exits on waking from a stop
        longer than the hub tolerates; see pxmagic.engine.stall).
        """
        wire.send(session, self.control, ENGINE_ABORT_REQUEST, {"msg_ids": msg_ids})
        wire.send(session, self.control, "shutdown_request", {"restart": False})
        self.control.linger = LET_GO_LINGER_MS

    async def until_dead(self) -> str:
        return await asyncio.shield(self._death)

    @classmethod
    async def shutdown_all(cls, engines: list[RegisteredEngine], session: Session) -> None:
        """Ask every live engine's kernel to shut down, and give the answers SHUTDOWN_WAIT s in all.

        One poll loop serves every control socket: a coroutine per engine
        costs milliseconds each when there are a thousand.
        """
        poller = zmq.Poller()
        for engine in engines:
            if not engine._death.done():
                wire.send(session, engine.control, "shutdown_request", {"restart": False})
                poller.register(engine.control, zmq.POLLIN)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + SHUTDOWN_WAIT
        answered = 0
        while answered < len(poller.sockets) and loop.time() < deadline:
            for socket, _ in poller.poll(0):
                socket.recv_multipart()
                answered += 1
            await asyncio.sleep(0.02)
        for engine in engines:
            engine.close_sockets()

    def remove_connection_file(self, security_dir: Path) -> None:
        """Remove the kernel's connection file if it lies in the cluster's own security directory.

        An engine that was killed (its whole MPI job, say) cannot clean up
        after itself; a file elsewhere, maybe on another host, is left alone.
        """
        path = Path(self._connection_file)
        if path.parent == security_dir and path.name.startswith("pxmagic-kernel"):
            path.unlink(missing_ok=True)


def assign_engine_id(
    rank: int | None,
    job: str | None,
    jobs: dict[str, range],
    taken: Collection[int],
) -> int:
    """The id of a registering engine; ProtocolError says why there is none.

    ``jobs`` maps each launched job to the ids reserved for its ranks.
    """
    reserved = {engine_id for ids in jobs.values() for engine_id in ids}
    if job is not None:
        ids = jobs.get(job)
        if ids is None:
            raise ProtocolError(f"this hub launched no job {job!r}")
        if rank is None or rank >= len(ids):
            raise ProtocolError(f"job {job!r} has ranks 0 to {len(ids) - 1}, not {rank!r}")
        engine_id = ids[rank]
    elif rank is not None:
        engine_id = rank
        if engine_id in reserved:
            raise ProtocolError(f"engine id {engine_id} (this engine's rank) is reserved for a job of the hub")
    else:
        engine_id = max([*taken, *reserved], default=-1) + 1
    if engine_id in taken:
        raise ProtocolError(f"engine id {engine_id} is already taken")
    return engine_id


class Registrar:
    """The registration socket, the file that names it, and the admission of engines.

    ``admit`` receives each accepted engine (the hub connects it and waits
    until it is ready); ``ids_in_use`` says which engine ids exist.
    """

    def __init__(
        self,
        session: Session,
        context: zmq.Context,
        path: Path,
        admit: Callable[[RegisteredEngine], None],
        ids_in_use: Callable[[], Collection[int]],
    ):
        self.session = session
        self.context = context
        self.path = path
        self.admit = admit
        self.ids_in_use = ids_in_use
        self.socket = context.socket(zmq.ROUTER)
        self.socket.sndhwm = self.socket.rcvhwm = 0  # a thousand engines at once: queue, never drop
        # ZMQ's listen backlog is 100 connections: past that, the kernel drops connection attempts,
        # which TCP retries after 1, 3, 7 s... A thousand engines connecting at once must all fit.
        self.socket.backlog = REGISTRATION_BACKLOG
        self.socket.linger = 0
        #: engine ids reserved for the ranks of each job the hub launched
        self.jobs: dict[str, range] = {}
        self.accepted = 0
        self.rejected = 0
        self.refusals = RefusalLog(log)

    def start(self, ip: str, hub_iopub: str, hub_timeout: float, **extra: object) -> str:
        """Bind the registration socket and write the engine file; return the socket's address."""
        port = self.socket.bind_to_random_port(f"tcp://{ip}")
        url = f"tcp://{ip}:{port}"
        connection.write_secret_json(self.path, {
            "registration": url,
            "hub_iopub": hub_iopub,
            "key": self.session.key.decode(),
            "signature_scheme": self.session.signature_scheme,
            "hub_timeout": hub_timeout,
            **extra,
        })
        return url

    def reserve(self, job: str, size: int) -> range:
        """Reserve ``size`` consecutive ids, after every id in use, for the ranks of ``job``."""
        used = [*self.ids_in_use(), *(i for ids in self.jobs.values() for i in ids)]
        first = max(used, default=-1) + 1
        self.jobs[job] = range(first, first + size)
        return self.jobs[job]

    def handle(self, frames: list) -> None:
        """Admit or refuse one registration; a message with a bad signature is dropped unanswered."""
        try:
            idents, parts = self.session.feed_identities(frames, copy=False)
            refusal = wire.check(self.session, parts, wire.FRESH) if idents else wire.Refusal("no sender", False)
        except ValueError:
            refusal = wire.Refusal("it is not a Jupyter message", False)
        if refusal is not None and not refusal.authentic:
            self.rejected += 1
            self.refusals.refused("a registration", refusal.reason)
            return
        header: dict = {}
        try:
            loaded = wire.load(parts[1])
            header = loaded if isinstance(loaded, dict) else {}
            if header.get("msg_type") != REGISTRATION_REQUEST:
                raise ProtocolError(f"the registration socket takes {REGISTRATION_REQUEST}, "
                                    f"not {header.get('msg_type')!r}")
            if refusal is not None:
                raise ProtocolError(refusal.reason)
            registration = check_registration(wire.load(parts[4]))
            engine_id = assign_engine_id(registration["rank"], registration["job"], self.jobs,
                                         self.ids_in_use())
        except (ProtocolError, ValueError) as error:
            self.rejected += 1
            self.refusals.refused("a registration", str(error))
            self._reply(idents, header, error_content("ProtocolError", str(error)))
            return
        engine = RegisteredEngine(engine_id, registration, self.context)
        self.accepted += 1
        log.info("engine %d registered from %s (pid %d)", engine_id, engine.host, engine.pid)
        self._reply(idents, header, {"status": "ok", "engine_id": engine_id})
        self.admit(engine)

    def _reply(self, idents: list, parent: dict, content: dict) -> None:
        self.socket.send_multipart(wire.build(self.session, REGISTRATION_REPLY, content, parent=parent, ident=idents))

    def stats(self) -> dict:
        return {"accepted": self.accepted, "rejected": self.rejected}

    def close(self) -> None:
        self.socket.close(linger=0)
        self.path.unlink(missing_ok=True)
