"""%px, %%px, %autopx and %result: IPython magics bound to a view.

``view.activate()`` binds them to that view (``activate(suffix='2')`` makes
``%px2``, ``%autopx2``, ``%result2`` for a second one).  Until a view is
activated, ``%load_ext pxmagic`` binds them to all engines of the most
recently created Client, blocking.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import display
from .client.progress import Progress, noninteractive

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .client.asyncresult import AsyncResult
    from .client.view import DirectView

GROUPS = ("order", "engine", "type")


class UsageError(ValueError):
    """A magic was called with options it does not understand."""


@dataclass
class PxOptions:
    targets: Any = None
    block: bool | None = None
    local: bool = False
    group: str = "order"


def parse_targets(text: str) -> Any:
    """``all``, ``3``, ``0::2`` or ``1,3`` as view targets."""
    text = text.strip()
    if text == "all":
        return "all"
    if ":" in text:
        parts = [int(p) if p else None for p in text.split(":")]
        return slice(*parts)
    if "," in text:
        return [int(p) for p in text.split(",") if p]
    return int(text)


def parse_px_line(line: str) -> tuple[PxOptions, str]:
    """Leading ``--options`` of a %px line, and the code after them."""
    options = PxOptions()
    rest = line.strip()
    while rest.startswith("--"):
        word, _, rest = rest.partition(" ")
        name, has_value, value = word.partition("=")
        if name in ("--targets", "--group-outputs") and not has_value:
            value, _, rest = rest.strip().partition(" ")
        rest = rest.strip()
        try:
            if name == "--targets":
                options.targets = parse_targets(value)
            elif name == "--group-outputs":
                if value not in GROUPS:
                    raise UsageError(f"--group-outputs takes one of {', '.join(GROUPS)}, not {value!r}")
                options.group = value
            elif name in ("--block", "--noblock"):
                options.block = name == "--block"
            elif name == "--local":
                options.local = True
            else:
                raise UsageError(f"unknown option {name}; %px takes --targets, --block, --noblock, "
                                 "--local and --group-outputs")
        except ValueError as error:
            if isinstance(error, UsageError):
                raise
            raise UsageError(f"--targets takes an engine id, a slice like 0::2, a list like 1,3 "
                             f"or all, not {value!r}") from None
    return options, rest


class ParallelMagics:
    """The magics of one view (or of the latest Client's engines when ``view`` is None)."""

    def __init__(self, shell: InteractiveShell, view: DirectView | None = None, suffix: str = ""):
        self.shell = shell
        self._view = view
        self.suffix = suffix
        self._implicit: DirectView | None = None
        self.autopx_enabled = False

    def register(self) -> None:
        manager = self.shell.magics_manager
        for kind, name, function in [
            ("line", "px", self.px), ("cell", "px", self.px_cell), ("line", "autopx", self.autopx),
            ("line", "result", self.result), ("line", "pxresult", self.result),
        ]:
            full_name = name + self.suffix
            existing = manager.magics[kind].get(full_name)
            owner = getattr(existing, "__self__", None)
            if existing is not None and not isinstance(owner, ParallelMagics):
                warnings.warn(f"pxmagic replaces the %{full_name} magic of {getattr(existing, '__module__', '?')}; "
                              "use view.activate(suffix='2') to keep both", stacklevel=3)
            if isinstance(owner, ParallelMagics) and owner is not self and owner.autopx_enabled:
                owner.autopx("")
            manager.register_function(function, kind, full_name)

    # -- the view ------------------------------------------------------------
    @property
    def view(self) -> DirectView:
        if self._view is not None:
            return self._view
        from .client.client import Client

        client = Client.latest()
        if client is None:
            raise UsageError("no pxmagic cluster is connected: start one (`pxcluster start -n 4 "
                             "--daemonize`, or pxmagic.Cluster(n=4).start_and_connect_sync()) and "
                             "create a Client, or call view.activate()")
        if self._implicit is None or self._implicit.client is not client:
            self._implicit = client[:]
            self._implicit.block = True
        return self._implicit

    # -- %px / %%px -----------------------------------------------------------
    def px(self, line: str) -> AsyncResult | None:
        """Run code on the engines: ``%px [--targets T] [--block|--noblock] [--local] [--group-outputs G] CODE``."""
        options, code = parse_px_line(line)
        return self.run(code, options)

    def px_cell(self, line: str, cell: str) -> AsyncResult | None:
        options, extra = parse_px_line(line)
        if extra:
            raise UsageError(f"%%px takes only options on its first line, not {extra!r}")
        return self.run(cell, options)

    def run(self, code: str, options: PxOptions) -> AsyncResult | None:
        view = self.view
        targets = view.targets if options.targets is None else options.targets
        block = view.block if options.block is None else options.block
        ids, _ = view.client.resolve_targets(targets)
        result = view.execute(code, targets=targets, block=False)
        if options.local:
            self.shell.run_cell(code, store_history=False)
        if not block:
            return result
        print(f"Parallel execution on engines: {ids}")
        self.wait_and_show(result, options.group)
        return None

    @staticmethod
    def wait_and_show(result: AsyncResult, group: str = "order") -> None:
        """Show the engines' output as it comes (or grouped at the end), then raise their errors."""
        try:
            with Progress(len(result.msg_ids), "%px") as bar:
                for output in result.iter_outputs(heartbeat=0.2):
                    bar.update(result.progress)
                    if output is not None and group == "order" and not noninteractive():
                        display.show(output)
                bar.update(result.progress)
            if group != "order" or noninteractive():
                display.show_all(result.outputs, group)
            result.get()
        except KeyboardInterrupt:
            result.interrupt()
            raise

    # -- %autopx ----------------------------------------------------------------
    def autopx(self, line: str = "") -> None:
        """Toggle running every cell on the engines, as ``%%px``."""
        transforms = self.shell.input_transformers_post
        if self.autopx_enabled:
            transforms.remove(self._as_px_cell)
            self.autopx_enabled = False
            print("Auto Parallel Disabled")
        else:
            transforms.append(self._as_px_cell)
            self.autopx_enabled = True
            print("Auto Parallel Enabled")
            print(f"Type %autopx{self.suffix} to disable")

    def _as_px_cell(self, lines: list[str]) -> list[str]:
        """Input transformer: turn a cell into a %%px cell, except the one that turns this off."""
        code = "".join(lines)
        if f"run_line_magic('autopx{self.suffix}'" in code or not code.strip():
            return lines
        return [f"get_ipython().run_cell_magic('px{self.suffix}', '', {code!r})\n"]

    # -- %result ----------------------------------------------------------------
    def result(self, line: str = "") -> Any:
        """Show an earlier result of the view: ``%result [INDEX | MSG_ID]`` (default: the latest)."""
        argument = line.strip()
        key: int | str = -1
        if argument:
            key = int(argument) if argument.lstrip("-").isdigit() else argument
        result = self.view.get_result(key)
        if result.method == "execute":
            self.wait_and_show(result, "engine")
            return None
        return result.get()


def activate(view: DirectView, suffix: str = "") -> ParallelMagics:
    """Bind %px{suffix}, %%px{suffix}, %autopx{suffix} and %result{suffix} to ``view``."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise RuntimeError("view.activate() registers IPython magics: call it inside IPython or Jupyter")
    magics = ParallelMagics(shell, view, suffix)
    magics.register()
    return magics


def load_ipython_extension(shell: InteractiveShell) -> None:
    """``%load_ext pxmagic``: magics on all engines of the latest Client, until a view is activated."""
    ParallelMagics(shell).register()
