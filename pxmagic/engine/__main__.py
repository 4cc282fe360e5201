"""Start one engine kernel.

``python -m pxmagic.engine -f CONNECTION_FILE``: an engine started by the hub
(through jupyter_client and the ``pxmagic-engine`` kernelspec).

``python -m pxmagic.engine --register PXMAGIC_ENGINE_JSON [--mpi] [--ip IP]``:
an engine started by something else (``mpiexec``, ``srun``, ``ssh``) that
binds its own ports and registers with the hub named in the file
(``--register -``: the file's content comes on standard input).
"""
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import zmq
from ipykernel.kernelapp import IPKernelApp, kernel_aliases, kernel_flags
from traitlets import Bool, Float, Integer, Unicode

from ..protocol import ENGINE_ID_ENV, rank_from_env
from . import stall
from .kernel import EngineKernel
from .registration import HubWatch, RegistrationError, address_facing, read_engine_file, register

#: seconds between looks at whether the hub that started a local engine lives
PARENT_POLL_PERIOD = 0.5


class EngineApp(IPKernelApp):
    """ipykernel's app, minus three costs an engine pays on every request.

    ipykernel 7 receives shell messages on a shell-channel thread (for
    subshells) and hands each request to the main thread, and each reply
    back, over inproc sockets: two thread hops per request, a large part of
    a small apply's cost (``benchmarks/core.py``).  Engines do not use subshells, so the main thread's
    event loop serves the shell socket itself, as in ipykernel 6.

    traitlets leaves the app's logger at DEBUG and filters in its handler, so
    each of dispatch_shell's ``log.debug`` calls builds a LogRecord; the
    logger filters at the app's level instead.

    IPython writes every executed cell to its SQLite history, a disk write
    per ``execute`` that only a user at a console reads back.  Engines keep no history database
    (command-line config can still turn it on).
    """

    register = Unicode("", config=True, help="register with the hub described by this pxmagic-engine.json "
                                               "(-: read it from standard input)")
    rank = Integer(-1, config=True, help="place asked for in the engine order (default: the MPI/Slurm rank)")
    job = Unicode("", config=True, help="the launch (an MPI job) this engine belongs to, for the hub")
    mpi = Bool(False, config=True, help="initialize MPI (mpi4py) before registering; the rank is COMM_WORLD's")
    registration_timeout = Float(60.0, config=True, help="seconds to wait for the hub to accept this engine")

    aliases = {
        **kernel_aliases,
        "register": "EngineApp.register",
        "rank": "EngineApp.rank",
        "job": "EngineApp.job",
        "registration-timeout": "EngineApp.registration_timeout",
    }
    flags = {**kernel_flags, "mpi": ({"EngineApp": {"mpi": True}}, "initialize MPI before registering")}

    def initialize(self, argv: list[str] | None = None) -> None:
        self.config.HistoryManager.enabled = False
        super().initialize(argv)
        if self.register:
            self._join_hub()

    def init_connection_file(self) -> None:
        """A registered engine signs with the cluster's key and binds where the hub can reach it."""
        if not self.register:
            super().init_connection_file()
            return
        try:
            self.engine_file = read_engine_file(self.register)
        except RegistrationError as error:
            self.log.critical("%s", error)
            self.exit(1)
        stall.block_in_new_threads()  # before the kernel's threads start: see _join_hub
        self.session.key = self.engine_file["key"].encode()
        self.session.signature_scheme = self.engine_file["signature_scheme"]
        self.transport = "tcp"
        if not any("ip" in self.config.get(section, {}) for section in ("IPKernelApp", "EngineApp")):
            self.ip = address_facing(self.engine_file["registration"])
        # no parent to outlive: the hub's heartbeat tells when to go (see _join_hub).  ipykernel
        # never polls a parent "1" (init), and prints no banner for terminal users either
        self.parent_handle = 1
        if self.engine_file.get("curve_serverkey") and "curve_secretkey" in self.class_traits():
            # the hub encrypts, so this kernel's own sockets do too, with a key pair of its own
            self.curve_publickey, self.curve_secretkey = zmq.curve_keypair()
        if self.mpi:
            self.rank = _init_mpi()
        host = socket.gethostname().split(".")[0]
        if self.register == "-":  # no file of the hub's here: ipykernel puts ours in Jupyter's runtime dir
            self.connection_file = f"pxmagic-kernel-{host}-{os.getpid()}.json"
        else:
            stem = Path(self.register).stem.replace("pxmagic-engine", "pxmagic-kernel", 1)
            self.connection_file = str(Path(self.register).with_name(f"{stem}-{host}-{os.getpid()}.json"))
        super().init_connection_file()

    def _join_hub(self) -> None:
        rank = self.rank if self.rank >= 0 else rank_from_env(os.environ)
        info = {"transport": self.transport, "ip": self.ip, "shell_port": self.shell_port,
                "iopub_port": self.iopub_port, "stdin_port": self.stdin_port,
                "control_port": self.control_port, "hb_port": self.hb_port,
                "curve_publickey": self.curve_publickey.decode() if getattr(self, "curve_publickey", None) else None}
        try:
            engine_id = register(self.engine_file, self.session, info, rank, self.job or None,
                                 self.abs_connection_file, self.registration_timeout)
        except (RegistrationError, ValueError) as error:
            self.log.critical("engine not registered: %s", error)
            self.cleanup_connection_file()
            self.exit(1)
        os.environ[ENGINE_ID_ENV] = str(engine_id)
        self.kernel.engine_id = engine_id
        self.log.info("registered with the hub as engine %d", engine_id)
        signal.signal(signal.SIGTERM, self._terminate)
        HubWatch(self.engine_file, float(self.engine_file.get("hub_timeout", 10.0)), self._hub_gone).start()
        # the hub fails the work of an engine frozen this long: on waking, it must run none of it
        tolerated = float(self.engine_file.get("tolerated_stall", 0)) - 2 * stall.TICK
        if tolerated > 0:
            stall.StallGuard(tolerated, self._stalled).start()
        else:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCONT})

    def _stalled(self, seconds: float) -> None:
        self.log.critical("this engine was stopped for %.1f s: the hub has taken it for dead and failed its "
                          "work, so it exits without running what was sent to it", seconds)
        self._terminate()

    def _hub_gone(self, silence: float) -> None:
        self.log.critical("the hub has been silent for %.0f s; this engine exits", silence)
        self._terminate()

    def init_poller(self) -> None:
        """Exit when the hub that started this engine is gone, as ipykernel's poller does, but leaving nothing behind."""
        if self.parent_handle and self.parent_handle != 1:
            threading.Thread(target=self._watch_parent, args=(self.parent_handle,), daemon=True,
                             name="pxmagic-parent-watch").start()

    def _watch_parent(self, parent: int) -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_PERIOD)
        self.log.critical("the hub that started this engine (pid %d) is gone; this engine exits", parent)
        self._terminate()

    def _terminate(self, *_: object) -> None:
        """Exit at once, removing our connection file and shared memory segments.

        ``os._exit`` skips the atexit hooks, among them mpi4py's
        MPI_Finalize, which would wait for ranks that may be gone.
        """
        segments = getattr(self.kernel, "segments", None)
        if segments is not None:
            segments.close()
        self.cleanup_connection_file()
        sys.stdout.flush()
        os._exit(1)

    def init_sockets(self) -> None:
        super().init_sockets()
        self.shell_channel_thread = None

    def init_kernel(self) -> None:
        super().init_kernel()
        self.log.setLevel(self.log_level)


def _init_mpi() -> int:
    """Initialize MPI now, so a first ``from mpi4py import MPI`` in user code never waits for peers."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise SystemExit("pxmagic engine: --mpi needs mpi4py (`pip install 'pxmagic[mpi]'`)") from None
    return MPI.COMM_WORLD.Get_rank()


if __name__ == "__main__":
    EngineApp.launch_instance(
        kernel_class=EngineKernel, outstream_class="pxmagic.engine.kernel.EngineOutStream"
    )
