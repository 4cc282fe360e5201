"""Shared fixtures: a private IPython directory and one real 4-engine cluster per module.

The cluster is started exactly as a user would (``pxmagic.Cluster``), with
real kernels and real sockets.  Every blocking call in a test gives a
timeout, so a bug fails the test instead of hanging the run.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

N_ENGINES = 4

#: figures that fault tests measure, printed in the run's closing summary: name -> (value, unit, bound)
FIGURES: dict[str, tuple[float, str, str]] = {}


@pytest.fixture
def figure():
    """``figure(name, value, unit, bound="")`` records a measured figure for the closing summary.

    The fault suite (``pytest tests/test_faults*.py``) reports what it saw
    (seconds to an EngineError, requests run after being reported failed)
    next to the bound each test asserts, so a reader sees the margins.
    """

    def record(name: str, value: float, unit: str, bound: str = "") -> None:
        FIGURES[name] = (value, unit, bound)

    return record


def pytest_terminal_summary(terminalreporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("figures measured by the fault suite")
    width = max(len(name) for name in FIGURES)
    for name, (value, unit, bound) in sorted(FIGURES.items()):
        shown = f"{value:.3g}" if isinstance(value, float) else str(value)
        terminalreporter.line(f"{name:<{width}}  {shown:>8} {unit:<6} {bound}")


@pytest.fixture(scope="session", autouse=True)
def ipython_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep profiles and connection files of the tests away from the user's."""
    path = tmp_path_factory.mktemp("ipython")
    os.environ["IPYTHONDIR"] = str(path)
    return path


@pytest.fixture(scope="module")
def cluster():
    from pxmagic import Cluster

    cluster = Cluster(n=N_ENGINES)
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def rc(cluster):
    """A client of the module's cluster (a module may define its own ``cluster``)."""
    client = cluster.connect_client()
    client.wait_for_engines(cluster.n, timeout=30)
    yield client
    client.close()


@pytest.fixture
def dview(rc):
    """A fresh blocking view on all engines."""
    view = rc[:]
    view.block = True
    return view


def engine_shell_url(connection_file: str) -> str:
    """The ZMQ address of an engine's shell socket, from its kernel connection file."""
    info = json.loads(Path(connection_file).read_text())
    if info["transport"] == "ipc":
        return f"ipc://{info['ip']}-{info['shell_port']}"
    return f"tcp://{info['ip']}:{info['shell_port']}"


def px_shell(view):
    """A terminal IPython shell with pxmagic loaded and ``view`` active (blocking), as a user sets one up."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    shell = TerminalInteractiveShell.instance(simple_prompt=True, colors="nocolor")
    shell.run_line_magic("load_ext", "pxmagic")
    view.block = True
    view.activate()
    return shell
