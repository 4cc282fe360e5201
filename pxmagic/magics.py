"""%px, %%px, %autopx and %result: IPython magics bound to a view.

``view.activate()`` binds them to that view (``activate(suffix='2')`` makes
``%px2``, ``%autopx2``, ``%result2`` for a second one).  Until a view is
activated, ``%load_ext pxmagic`` binds them to all engines of the most
recently created Client, blocking.
"""
from __future__ import annotations

import functools
import keyword
import warnings
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from IPython.core.magic import no_var_expand

from . import display
from .client.progress import DELAY, Progress, noninteractive

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from .client.asyncresult import AsyncResult
    from .client.view import DirectView

GROUPS = ("order", "engine", "type")


class UsageError(ValueError):
    """A magic was called with options it does not understand."""


@dataclass
class PxOptions:
    """Options of one %px call; None is "not given", so that %pxconfig's defaults fill it in."""

    targets: Any = None
    block: bool | None = None
    local: bool | None = None
    group: str | None = None
    timeout: float | None = None
    out: str | None = None
    stream: bool | None = None
    verbose: bool | None = None
    progress_after: float | None = None
    label: str | None = None

    def over(self, defaults: PxOptions) -> PxOptions:
        """These options, with those not given taken from ``defaults``."""
        chosen = {f.name: getattr(self, f.name) for f in fields(self)}
        return PxOptions(**{name: getattr(defaults, name) if value is None else value
                            for name, value in chosen.items()})


#: what %px does when neither the line nor %pxconfig says
PX_DEFAULTS = PxOptions(local=False, group="order", stream=True, verbose=False, progress_after=DELAY)


def parse_targets(text: str) -> Any:
    """``all``, ``3``, ``0::2`` or ``1,3`` as view targets."""
    try:
        text = text.strip()
        if text == "all":
            return "all"
        if ":" in text:
            parts = [int(p) if p else None for p in text.split(":")]
            return slice(*parts)
        if "," in text:
            return [int(p) for p in text.split(",") if p]
        return int(text)
    except ValueError:
        raise UsageError(f"--targets takes an engine id, a slice like 0::2, a list like 1,3 "
                         f"or all, not {text!r}") from None


def parse_seconds(option: str, text: str, zero: bool = False) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (seconds >= 0 if zero else seconds > 0):
        kind = "a number of seconds, 0 or more" if zero else "a positive number of seconds"
        raise UsageError(f"{option} takes {kind}, not {text!r}")
    return seconds


def parse_group(text: str) -> str:
    if text not in GROUPS:
        raise UsageError(f"--group-outputs takes one of {', '.join(GROUPS)}, not {text!r}")
    return text


def parse_name(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise UsageError(f"--out takes a Python variable name, not {text!r}")
    return text


#: options that take a value: option -> (PxOptions field, parser of the value)
VALUED = {
    "--targets": ("targets", parse_targets),
    "--group-outputs": ("group", parse_group),
    "--timeout": ("timeout", functools.partial(parse_seconds, "--timeout")),
    "--progress-after": ("progress_after", functools.partial(parse_seconds, "--progress-after", zero=True)),
    "--out": ("out", parse_name),
    "--label": ("label", str),
    "-o": ("out", parse_name),
}
#: options that are switches: option -> (PxOptions field, value)
SWITCHES = {
    "--block": ("block", True), "--noblock": ("block", False),
    "--local": ("local", True),
    "--stream": ("stream", True), "--no-stream": ("stream", False),
    "--verbose": ("verbose", True), "--no-verbose": ("verbose", False),
}
KNOWN_OPTIONS = ", ".join([*VALUED, *SWITCHES])


def parse_px_line(line: str) -> tuple[PxOptions, str]:
    """Leading options of a %px line, and the code after them.

    Options start with ``--``, except ``-o NAME``: other code starting
    with ``-`` (``%px -x``) is code.
    """
    options = PxOptions()
    rest = line.strip()
    while rest.startswith("--") or rest.partition(" ")[0] == "-o":
        word, _, rest = rest.partition(" ")
        name, has_value, value = word.partition("=")
        rest = rest.strip()
        if name in SWITCHES and not has_value:
            field_name, switched = SWITCHES[name]
            setattr(options, field_name, switched)
        elif name in VALUED:
            if not has_value:
                value, _, rest = rest.partition(" ")
                rest = rest.strip()
            field_name, parse = VALUED[name]
            setattr(options, field_name, parse(value))
        else:
            raise UsageError(f"unknown option {word}; %px takes {KNOWN_OPTIONS}")
    return options, rest


class ParallelMagics:
    """The magics of one view (or of the latest Client's engines when ``view`` is None)."""

    def __init__(self, shell: InteractiveShell, view: DirectView | None = None, suffix: str = ""):
        self.shell = shell
        self._view = view
        self.suffix = suffix
        self._implicit: DirectView | None = None
        self.autopx_enabled = False
        #: what %pxconfig set: defaults for this view's %px and %%px
        self.defaults = PxOptions()

    def register(self) -> None:
        manager = self.shell.magics_manager
        for kind, name, function in [
            ("line", "px", self.px), ("cell", "px", self.px_cell), ("line", "autopx", self.autopx),
            ("line", "result", self.result), ("line", "pxresult", self.result), ("line", "pxconfig", self.pxconfig),
            ("line", "pxstatus", self.pxstatus),
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
    @no_var_expand  # the engines' names, not the client's: `%px print(f"{a}")` and `%px echo $a` go as typed
    def px(self, line: str) -> AsyncResult | None:
        """Run code on the engines: ``%px [OPTIONS] CODE``.

        ``--targets T``, ``--block``/``--noblock``, ``--local`` (here too), ``--group-outputs
        order|engine|type``, ``--timeout S``, ``-o``/``--out NAME`` (keep the AsyncResult as NAME),
        ``--stream``/``--no-stream`` (output as it comes, or at the end), ``--verbose``,
        ``--progress-after S``, ``--label TEXT`` (how the hub lists it); ``%pxconfig`` sets their defaults.
        """
        options, code = parse_px_line(line)
        return self.run(code, options)

    @no_var_expand
    def px_cell(self, line: str, cell: str) -> AsyncResult | None:
        options, extra = parse_px_line(line)
        if extra:
            raise UsageError(f"%%px takes only options on its first line, not {extra!r}")
        return self.run(cell, options)

    def pxconfig(self, line: str) -> None:
        """Set defaults of %px and %%px, with their options: ``%pxconfig --noblock --targets 0::2``."""
        options, extra = parse_px_line(line)
        if extra:
            raise UsageError(f"%pxconfig takes only options, not {extra!r}")
        if options.targets is not None:
            self.view.client.resolve_targets(options.targets)
        self.defaults = options.over(self.defaults)

    def pxstatus(self, line: str = "") -> None:
        """Print the cluster's engines: state, what each runs, queued and done counts, memory, CPU."""
        if line.strip():
            raise UsageError(f"%pxstatus takes no arguments, not {line.strip()!r}")
        print(self.view.client.status())

    def run(self, code: str, given: PxOptions) -> AsyncResult | None:
        view = self.view
        options = given.over(self.defaults).over(PX_DEFAULTS)
        targets = view.targets if options.targets is None else options.targets
        block = view.block if options.block is None else options.block
        ids, _ = view.client.resolve_targets(targets)
        with view.temp_flags(label=options.label or view.label):
            result = view.execute(code, targets=targets, block=False, timeout=options.timeout)
        if options.out is not None:
            self.shell.user_ns[options.out] = result
        if options.verbose:
            print(f"%px: sent {', '.join(result.msg_ids)}")
        if options.local:
            self.shell.run_cell(code, store_history=False)
        if not block:
            return result
        print(f"Parallel execution on engines: {ids}")
        self.wait_and_show(result, options.group, options.stream, options.progress_after)
        if options.verbose:
            print(f"%px: done in {result.completed - result.submitted:.3g} s")
        return None

    @staticmethod
    def wait_and_show(result: AsyncResult, group: str = "order", stream: bool = True,
                      progress_after: float = DELAY) -> None:
        """Show the engines' output as it comes (or at the end, grouped as asked), then raise their errors."""
        streaming = stream and group == "order" and not noninteractive()
        try:
            with Progress(len(result.msg_ids), "%px", progress_after) as bar:
                for output in result.iter_outputs(heartbeat=0.2):
                    bar.update(result.progress)
                    if output is not None and streaming:
                        display.show(output)
                bar.update(result.progress)
            if not streaming:
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
