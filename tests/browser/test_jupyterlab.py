"""End to end: ``%px`` in a real JupyterLab, driven by headless Chromium.

The other tests talk to kernels directly.  Only a browser shows what a user
sees: a notebook that starts a Cluster, loads the extension and runs
``%px``, with each engine's output landing in the cell tagged by engine
(``[stdout:0] hi from 0``).  The test needs Debian's ``chromium`` and the
``playwright``, ``jupyterlab`` and ``nbformat`` packages
(``run-tests.sh`` installs them); without them it fails, it never
skips.  A screenshot of the notebook is saved under ``artifacts/``.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent / "artifacts"
NOTEBOOK = "px_hello.ipynb"
CELLS = [
    "from pxmagic import Cluster",
    "cluster = Cluster(n=2); rc = cluster.start_and_connect_sync()",
    "%load_ext pxmagic",
    "%px print('hi from', __import__('os').environ['PXMAGIC_ENGINE_ID'])",
    "cluster.stop()",
]
EXPECTED_LINES = ["[stdout:0] hi from 0", "[stdout:1] hi from 1"]

SERVER_START_TIMEOUT = 90.0  # seconds: the machine is small and busy
SERVER_STOP_TIMEOUT = 30.0
KERNEL_IDLE_TIMEOUT_MS = 90_000
OUTPUT_TIMEOUT_MS = 150_000  # starting two engines on a loaded machine; ~16 s when quiet


@dataclass
class JupyterLab:
    url: str
    token: str
    process: subprocess.Popen
    log_path: Path


def require_browser_tools() -> None:
    """Fail, naming what to install, when the browser or a Python package is missing."""
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Debian's chromium ({CHROMIUM}): apt-get update && apt-get install -y chromium")
    packages = [name for name in ("playwright", "jupyterlab", "nbformat")
                if importlib.util.find_spec(name) is None]
    if packages:
        missing.append(f"Python packages: pip install {' '.join(packages)}")
    if missing:
        pytest.fail("the JupyterLab browser test needs " + "; ".join(missing)
                    + " (run-tests.sh installs all of it)", pytrace=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_notebook(path: Path) -> None:
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in CELLS])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                       "language": "python"}
    nbformat.write(notebook, path)


def write_lab_settings(config_dir: Path) -> None:
    """Turn off the news prompt: its toast would cover part of the screenshot."""
    path = config_dir / "lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))


def start_jupyterlab(root: Path, port: int, token: str, log_path: Path) -> subprocess.Popen:
    """``jupyter lab`` with its own config and runtime dirs; inherits IPYTHONDIR from conftest."""
    config_dir = root.parent / "jupyter-config"
    write_lab_settings(config_dir)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(config_dir),
               JUPYTER_RUNTIME_DIR=str(root.parent / "jupyter-runtime"))
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root"]
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)


def wait_for_server(lab: JupyterLab, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if lab.process.poll() is not None:
            pytest.fail(f"jupyter lab exited with status {lab.process.returncode}:\n{lab.log_path.read_text()}")
        try:
            with urllib.request.urlopen(f"{lab.url}/api/status?token={lab.token}", timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    pytest.fail(f"jupyter lab did not answer within {timeout:.0f} s:\n{lab.log_path.read_text()}")


def shut_down(lab: JupyterLab) -> None:
    """Ask the server to stop (it shuts its kernels down), then kill whatever is left of its tree."""
    try:
        leftovers = psutil.Process(lab.process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        leftovers = []
    request = urllib.request.Request(f"{lab.url}/api/shutdown?token={lab.token}", method="POST")
    try:
        urllib.request.urlopen(request, timeout=10).close()
        lab.process.wait(SERVER_STOP_TIMEOUT)
    except (urllib.error.URLError, OSError, subprocess.TimeoutExpired):
        lab.process.kill()
        lab.process.wait(10)
    _, alive = psutil.wait_procs(leftovers, timeout=5)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)
    stop_running_clusters()


def stop_running_clusters() -> None:
    """Stop any cluster the notebook left behind in this test's IPYTHONDIR (what ``pxcluster stop`` does)."""
    from pxmagic import connection
    from pxmagic.cluster.launcher import stop_hub

    for _, info in connection.running_clusters():
        stop_hub(info.get("profile", "default"), info.get("cluster_id", ""))


@pytest.fixture
def jupyterlab(ipython_dir: Path, tmp_path: Path) -> Iterator[JupyterLab]:
    require_browser_tools()
    root = tmp_path / "notebooks"
    root.mkdir()
    write_notebook(root / NOTEBOOK)
    port, token = free_port(), secrets.token_hex(16)
    log_path = tmp_path / "jupyterlab.log"
    lab = JupyterLab(f"http://127.0.0.1:{port}", token, start_jupyterlab(root, port, token, log_path), log_path)
    try:
        wait_for_server(lab, SERVER_START_TIMEOUT)
        yield lab
    finally:
        shut_down(lab)


def run_all_cells(page: Page) -> None:
    """Open the Run menu and choose Run All Cells, as a user would."""
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()


def wait_for_idle_kernel(page: Page, timeout_ms: int) -> None:
    """Wait for the status bar's "Python 3 (ipykernel) | Idle".

    Not the toolbar's execution indicator: it says idle before any kernel
    exists, and Run All then opens a Select Kernel dialog instead of running.
    """
    from playwright.sync_api import expect

    expect(page.locator(".jp-StatusBar-Widget").get_by_text("| Idle")).to_be_visible(timeout=timeout_ms)


@pytest.mark.timeout(240)
def test_px_output_is_tagged_by_engine_in_jupyterlab(jupyterlab: JupyterLab) -> None:
    from playwright.sync_api import expect, sync_playwright

    from pxmagic import connection

    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "jupyterlab-px.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(60_000)
        try:
            page.goto(f"{jupyterlab.url}/lab/tree/{NOTEBOOK}?token={jupyterlab.token}")
            wait_for_idle_kernel(page, KERNEL_IDLE_TIMEOUT_MS)
            run_all_cells(page)
            for line in EXPECTED_LINES:
                output = page.locator(".jp-OutputArea-output", has_text=line)
                expect(output).to_be_visible(timeout=OUTPUT_TIMEOUT_MS)
            last_prompt = page.locator(".jp-CodeCell .jp-InputPrompt").last
            expect(last_prompt).to_have_text(f"[{len(CELLS)}]:", timeout=KERNEL_IDLE_TIMEOUT_MS)
            wait_for_idle_kernel(page, KERNEL_IDLE_TIMEOUT_MS)
            errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            assert errors.count() == 0, f"the notebook wrote to stderr:\n{errors.all_inner_texts()}"
        finally:
            page.screenshot(path=screenshot, full_page=True)
            print(f"\nscreenshot: {screenshot}")
            browser.close()
    assert connection.running_clusters() == [], "cluster.stop() in the notebook left a cluster running"
