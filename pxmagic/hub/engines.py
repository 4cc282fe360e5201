"""Engines as the hub sees them: a kernel and the hub's sockets to it.

Every engine is a real Jupyter kernel that the hub reaches through the
channels named in its connection info: shell and control (DEALER sockets,
as a kernel client has) and iopub (SUB).  Engines share the cluster's key,
which lets the hub forward an engine's signed replies to clients untouched.

Engines come two ways, and differ only in how the hub learns they died:

* :class:`LocalEngine`: started by the hub through jupyter_client's
  AsyncKernelManager from the ``pxmagic-engine`` kernelspec (or any kernelspec
  named by the user), so any kernel provisioner works.  The kernel manager
  knows at once when the process exits.
* ``RegisteredEngine`` (:mod:`.registration`): started by something else
  (mpiexec, srun, ssh) on its own host; it told the hub its connection info.
  Only missed heartbeats (:mod:`.heartbeat`) or the end of its launcher's job
  tell the hub it is gone.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import signal
from pathlib import Path

import zmq
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from .. import encryption, wire
from ..protocol import ENGINE_ID_ENV, kernel_url
from .options import KERNEL_NAME

#: how often the hub asks a local engine's kernel manager whether the process lives
LIVENESS_PERIOD = 0.5
#: a starting engine is asked for its kernel info again after this long, then twice as long..., at most
READY_RETRY_FIRST = 0.2
READY_RETRY_MAX = 2.0


def allow_many_engines(context: zmq.Context) -> int:
    """Let the hub hold thousands of engines: raise the open-file limit to its hard limit.

    Each engine costs the hub four ZMQ sockets (shell, control, iopub,
    heartbeat), and each socket a file descriptor for its connection and one
    for its mailbox; 1,000 engines need ~8,000 descriptors, past the usual
    soft limit of 1,024.  ZMQ's own limit of 1,024 sockets a context is raised
    to match (it must be set before the context's first socket).
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = 65536 if hard == resource.RLIM_INFINITY else hard
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        soft = wanted
    context.set(zmq.MAX_SOCKETS, max(1024, soft // 2))
    return soft


def exit_description(status: int | None) -> str:
    """How a process ended, from its exit status as ``Popen.returncode`` gives it (negative: a signal)."""
    if not isinstance(status, int):
        return "exit status unknown"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = "unknown signal"
        return f"killed by signal {-status}, {name}"
    return f"exit status {status}"


class EngineStartError(RuntimeError):
    """An engine kernel did not start or did not answer in time."""


class EngineLink:
    """One engine kernel and the hub's shell, iopub and control sockets to it.

    Subclasses say how the engine started, how the hub learns that it died
    (:meth:`until_dead`) and how it is stopped.
    """

    #: whether the hub can replace this engine by a fresh kernel with the same id
    restartable = False

    def __init__(self, engine_id: int, connection_info: dict, context: zmq.Context):
        self.id = engine_id
        self.connection_info = connection_info
        # plain (not asyncio) sockets: the hub reads them from loop callbacks, see hub/pump.py
        self.shell = context.socket(zmq.DEALER)
        self.shell.identity = f"hub-{engine_id}".encode()
        self.control = context.socket(zmq.DEALER)
        self.iopub = context.socket(zmq.SUB)
        self.iopub.setsockopt(zmq.SUBSCRIBE, b"")
        for socket in (self.shell, self.control):
            socket.sndhwm = 0  # the hub's sends never block: queued requests wait in ZMQ
        self.iopub.rcvhwm = 0
        #: the kernel's CurveZMQ public key, if its sockets encrypt (a registered engine on another host)
        self.curve_serverkey: str | None = connection_info.get("curve_publickey")
        for socket, channel in ((self.shell, "shell"), (self.control, "control"), (self.iopub, "iopub")):
            socket.linger = 0
            if self.curve_serverkey:
                encryption.make_client(socket, self.curve_serverkey)
            socket.connect(kernel_url(connection_info, channel))

    @property
    def connection_file(self) -> str:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        raise NotImplementedError

    def describe(self) -> dict:
        """What ``hub_info`` tells clients about this engine."""
        return {"connection_file": self.connection_file, "pid": self.pid}

    #: whether an interrupt is a SIGINT from the hub rather than an ``interrupt_request`` message
    interrupts_by_signal = False
    #: whether the engine can map the hub's host's shared memory segments (an engine the hub started can)
    shares_memory = True

    async def interrupt_by_signal(self) -> None:
        raise NotImplementedError

    async def is_alive(self) -> bool:
        raise NotImplementedError

    async def until_dead(self) -> str:
        """Return, once the engine has died, why it is gone (completing "engine <id> ...")."""
        raise NotImplementedError

    async def wait_ready(self, session: Session, timeout: float) -> None:
        """Return once the kernel answers on shell and its iopub reaches us.

        A SUB socket only receives what is published after its subscription
        arrived (ipykernel 7 greets each new subscriber with ``iopub_welcome``;
        older kernels do not), so requests are repeated until an iopub message
        comes back, ever less often: a thousand engines starting at once must
        not be flooded with requests they are too busy to answer.  The sockets
        are watched with plain loop readers: zmq.asyncio's poller builds new
        asyncio sockets on every poll, milliseconds each with 1,000 engines.
        """
        loop = asyncio.get_running_loop()
        heard: set[zmq.Socket] = set()
        news = asyncio.Event()

        def read() -> None:
            for socket in (self.shell, self.iopub):
                while socket.EVENTS & zmq.POLLIN:
                    socket.recv_multipart()
                    heard.add(socket)
            news.set()

        for socket in (self.shell, self.iopub):
            loop.add_reader(socket.FD, read)
        try:
            deadline = loop.time() + timeout
            interval = READY_RETRY_FIRST
            while len(heard) < 2:
                if loop.time() > deadline:
                    raise EngineStartError(f"engine {self.id} did not answer within {timeout:.0f} s"
                                           f" at {kernel_url(self.connection_info, 'shell')}")
                if not await self.is_alive():
                    raise EngineStartError(f"engine {self.id} exited while starting")
                wire.send(session, self.shell, "kernel_info_request", {})
                read()  # the send may have taken the signal of a message that arrived meanwhile
                retry_at = min(loop.time() + interval, deadline)
                interval = min(2 * interval, READY_RETRY_MAX)
                while len(heard) < 2 and (left := retry_at - loop.time()) > 0:
                    news.clear()
                    with contextlib.suppress(asyncio.TimeoutError):
                        await asyncio.wait_for(news.wait(), left)
        finally:
            for socket in (self.shell, self.iopub):
                loop.remove_reader(socket.FD)

    async def restart(self, session: Session, timeout: float) -> EngineLink:
        raise EngineStartError(f"engine {self.id} was not started by the hub, so the hub cannot restart it")

    def close_sockets(self) -> None:
        self.shell.close(linger=0)
        self.iopub.close(linger=0)
        self.control.close()  # its linger: 0 (set above), unless the hub has last words for the engine

    @classmethod
    async def shutdown_all(cls, engines: list[EngineLink], session: Session) -> None:
        """Stop these engines, all of this class, together."""
        raise NotImplementedError


class LocalEngine(EngineLink):
    """An engine kernel the hub started with a kernel manager."""

    restartable = True

    def __init__(self, engine_id: int, manager: AsyncKernelManager):
        self.manager = manager
        super().__init__(engine_id, manager.get_connection_info(), zmq.Context.instance())

    @property
    def connection_file(self) -> str:
        return self.manager.connection_file

    @property
    def pid(self) -> int | None:
        provisioner = self.manager.provisioner
        process = getattr(provisioner, "process", None)
        return getattr(process, "pid", None)

    @classmethod
    async def start(
        cls,
        engine_id: int,
        session: Session,
        connection_dir: Path,
        kernel_name: str = KERNEL_NAME,
    ) -> LocalEngine:
        """Start an engine kernel through jupyter_client, sharing ``session``'s key.

        The hub and its engines share a host, so they talk over IPC: there is
        no TCP port to race other processes for (a port jupyter_client found
        free can be taken before the kernel binds it, which then never
        answers).  Socket paths are limited to about 107 bytes, so a deeply
        nested profile directory falls back to loopback TCP.
        """
        name = f"pxmagic-kernel-{os.getpid()}-{engine_id}"
        ipc_prefix = str(connection_dir / name)
        transport, address = ("ipc", ipc_prefix) if len(ipc_prefix) < 96 else ("tcp", "127.0.0.1")
        manager = AsyncKernelManager(
            kernel_name=kernel_name,
            transport=transport,
            ip=address,
            connection_file=str(connection_dir / f"{name}.json"),
        )
        manager.session.key = session.key
        manager.session.signature_scheme = session.signature_scheme
        env = {**os.environ, ENGINE_ID_ENV: str(engine_id)}
        try:
            await manager.start_kernel(env=env)
        except NoSuchKernel:
            raise EngineStartError(
                f"no kernelspec named {kernel_name!r} on Jupyter's path; `jupyter kernelspec list` "
                "shows what there is (an editable install of pxmagic does not install its "
                "kernelspec: `pip install .` does, or point JUPYTER_PATH at a folder whose "
                "kernels/ holds it)"
            ) from None
        except Exception as error:
            raise EngineStartError(f"engine {engine_id} did not start: {error}") from error
        return cls(engine_id, manager)

    async def restart(self, session: Session, timeout: float) -> LocalEngine:
        """A fresh kernel with the same id, ports and environment, ready for work."""
        self.close_sockets()
        await self.manager.restart_kernel(now=True)
        engine = LocalEngine(self.id, self.manager)
        await engine.wait_ready(session, timeout)
        return engine

    @property
    def interrupts_by_signal(self) -> bool:
        """A kernelspec's ``interrupt_mode: signal`` asks for SIGINT, sent by whoever started the kernel."""
        spec = self.manager.kernel_spec
        return spec is not None and spec.interrupt_mode == "signal"

    async def interrupt_by_signal(self) -> None:
        await self.manager.interrupt_kernel()

    async def is_alive(self) -> bool:
        return await self.manager.is_alive()

    async def until_dead(self) -> str:
        while await self.manager.is_alive():
            await asyncio.sleep(LIVENESS_PERIOD)
        provisioner = self.manager.provisioner
        return f"died ({exit_description(await provisioner.poll())})" if provisioner is not None else "died"

    async def shutdown(self) -> None:
        """Stop the kernel (politely first) and remove its connection file."""
        self.close_sockets()
        await self.manager.shutdown_kernel(now=False)

    @classmethod
    async def shutdown_all(cls, engines: list[LocalEngine], session: Session) -> None:
        await asyncio.gather(*(engine.shutdown() for engine in engines), return_exceptions=True)
