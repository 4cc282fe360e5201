"""Engines as the hub sees them: a kernel manager and the hub's sockets to that kernel.

Engines are started by jupyter_client's AsyncKernelManager from the
``pxmagic-engine`` kernelspec (or any kernelspec named by the user), so any
kernel provisioner works and each engine leaves an ordinary kernel connection
file that ``jupyter console --existing`` can attach to.  They share the
cluster's key, which lets the hub forward an engine's signed replies to
clients untouched.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import zmq
import zmq.asyncio
from jupyter_client.blocking import BlockingKernelClient
from jupyter_client.kernelspec import NoSuchKernel
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session

from .. import wire
from ..protocol import ENGINE_ID_ENV

KERNEL_NAME = "pxmagic-engine"


class EngineStartError(RuntimeError):
    """An engine kernel did not start or did not answer in time."""


class Engine:
    """One engine kernel and the hub's shell, iopub and control sockets to it."""

    def __init__(self, engine_id: int, manager: AsyncKernelManager):
        self.id = engine_id
        self.manager = manager
        # plain (not asyncio) sockets: the hub reads them from one loop callback, see Hub._pump
        self.kernel_client = BlockingKernelClient(
            **manager.get_connection_info(session=True), parent=manager, context=zmq.Context.instance()
        )
        self.shell = self.kernel_client.connect_shell(identity=f"hub-{engine_id}".encode())
        self.iopub = self.kernel_client.connect_iopub()
        self.control = self.kernel_client.connect_control()
        for socket in (self.shell, self.control):
            socket.sndhwm = 0  # the hub's sends never block: queued requests wait in ZMQ
        self.iopub.rcvhwm = 0

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
    ) -> "Engine":
        """Start an engine kernel through jupyter_client, sharing ``session``'s key.

        The hub and its engines share a host, so they talk over IPC: there is
        no TCP port to race other processes for (a port jupyter_client found
        free can be taken before the kernel binds it, which then never
        answers).  Socket paths are limited to about 107 bytes, so a deeply
        nested profile directory falls back to loopback TCP.
        """
        name = f"pxmagic-engine-{os.getpid()}-{engine_id}"
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

    async def wait_ready(self, session: Session, timeout: float) -> None:
        """Return once the kernel answers on shell and its iopub reaches us.

        A SUB socket only receives what is published after its subscription
        arrived, so requests are repeated until an iopub message comes back.
        """
        deadline = time.monotonic() + timeout
        poller = zmq.asyncio.Poller()
        poller.register(self.shell, zmq.POLLIN)
        poller.register(self.iopub, zmq.POLLIN)
        shell_ok = iopub_ok = False
        while not (shell_ok and iopub_ok):
            if time.monotonic() > deadline:
                raise EngineStartError(f"engine {self.id} did not answer within {timeout:.0f} s")
            if not await self.manager.is_alive():
                raise EngineStartError(f"engine {self.id} exited while starting")
            wire.send(session, self.shell, "kernel_info_request", {})
            for socket, _ in await poller.poll(200):
                socket.recv_multipart()
                shell_ok |= socket is self.shell
                iopub_ok |= socket is self.iopub

    async def restart(self, session: Session, timeout: float) -> Engine:
        """A fresh kernel with the same id, ports and environment, ready for work."""
        self._close_sockets()
        await self.manager.restart_kernel(now=True)
        engine = Engine(self.id, self.manager)
        await engine.wait_ready(session, timeout)
        return engine

    def _close_sockets(self) -> None:
        for socket in (self.shell, self.iopub, self.control):
            socket.close(linger=0)

    async def is_alive(self) -> bool:
        return await self.manager.is_alive()

    async def shutdown(self) -> None:
        """Stop the kernel (politely first) and remove its connection file."""
        self._close_sockets()
        await self.manager.shutdown_kernel(now=False)
