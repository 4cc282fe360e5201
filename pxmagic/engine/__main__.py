"""``python -m pxmagic.engine -f CONNECTION_FILE``: start one engine kernel."""
from ipykernel.kernelapp import IPKernelApp

from .kernel import EngineKernel


class EngineApp(IPKernelApp):
    """ipykernel's app, minus three costs an engine pays on every request.

    ipykernel 7 receives shell messages on a shell-channel thread (for
    subshells) and hands each request to the main thread, and each reply
    back, over inproc sockets: two thread hops per request, ~0.7 ms of CPU on
    a 2-core machine.  Engines do not use subshells, so the main thread's
    event loop serves the shell socket itself, as in ipykernel 6.

    traitlets leaves the app's logger at DEBUG and filters in its handler, so
    each of dispatch_shell's ``log.debug`` calls builds a LogRecord; the
    logger filters at the app's level instead.

    IPython writes every executed cell to its SQLite history: ~2 ms of an
    engine's CPU per ``execute`` here.  Engines keep no history database
    (command-line config can still turn it on).
    """

    def initialize(self, argv: list[str] | None = None) -> None:
        self.config.HistoryManager.enabled = False
        super().initialize(argv)

    def init_sockets(self) -> None:
        super().init_sockets()
        self.shell_channel_thread = None

    def init_kernel(self) -> None:
        super().init_kernel()
        self.log.setLevel(self.log_level)


if __name__ == "__main__":
    EngineApp.launch_instance(
        kernel_class=EngineKernel, outstream_class="pxmagic.engine.kernel.EngineOutStream"
    )
