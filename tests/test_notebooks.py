"""The notebooks in notebooks/, executed headless on a real python3 kernel.

Each notebook starts its own cluster from inside the kernel (which inherits
this session's private IPYTHONDIR) and stops it in its last cell.  These
tests check what a reader sees in the cells: engine-tagged stdout, the
CompositeError summary and one plot per engine.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from types import ModuleType

import nbformat
import psutil
import pytest

from pxmagic.cluster.launcher import stop_hub
from pxmagic.connection import running_clusters

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
QUICKSTART_ENGINES = range(4)
PLOTS_ENGINES = range(2)

pytestmark = pytest.mark.timeout(900)


def load_runner() -> ModuleType:
    """notebooks/run.py, the demo's runner: the tests execute notebooks exactly as it does."""
    spec = importlib.util.spec_from_file_location("notebook_runner", NOTEBOOKS / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = load_runner()


@dataclass
class Executed:
    notebook: nbformat.NotebookNode
    leftovers: list[str]  # clusters the notebook left running (stopped since)


def stop_leftover_clusters() -> list[str]:
    """Stop every cluster still running in this IPYTHONDIR, as `pxcluster list` sees them, engines too."""
    leftovers = []
    for path, info in running_clusters():
        try:
            hub = psutil.Process(int(info["hub_pid"]))
            processes = [hub, *hub.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        stop_hub(info.get("profile", "default"), info.get("cluster_id") or "")
        _, alive = psutil.wait_procs(processes, timeout=10)
        for process in alive:
            process.kill()
        leftovers.append(f"{path.name} (hub pid {hub.pid})")
    return leftovers


def execute(name: str, tmp_path_factory: pytest.TempPathFactory) -> Executed:
    """Execute ``notebooks/<name>.ipynb``, then stop whatever cluster it left behind."""
    try:
        notebook = runner.execute(NOTEBOOKS / f"{name}.ipynb", tmp_path_factory.mktemp(name))
    finally:
        leftovers = stop_leftover_clusters()
    return Executed(notebook, leftovers)


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    return execute("quickstart", tmp_path_factory)


@pytest.fixture(scope="module")
def plots(tmp_path_factory: pytest.TempPathFactory) -> Executed:
    return execute("plots", tmp_path_factory)


def code_cell(notebook: nbformat.NotebookNode, snippet: str) -> nbformat.NotebookNode:
    """The one code cell whose source contains ``snippet``."""
    cells = [cell for cell in notebook.cells if cell.cell_type == "code" and snippet in cell.source]
    assert len(cells) == 1, f"{len(cells)} code cells contain {snippet!r}"
    return cells[0]


def stdout(cell: nbformat.NotebookNode) -> str:
    return "".join(o["text"] for o in cell.outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def result(cell: nbformat.NotebookNode) -> str:
    """The text/plain of the cell's Out[] value."""
    (output,) = [o for o in cell.outputs if o["output_type"] == "execute_result"]
    return output["data"]["text/plain"]


@pytest.mark.parametrize("name", ["quickstart", "plots"])
def test_committed_notebooks_have_no_outputs(name: str) -> None:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source


def test_quickstart_follows_the_spec(quickstart: Executed) -> None:
    notebook = quickstart.notebook
    assert result(code_cell(notebook, "rc.ids")) == "[0, 1, 2, 3]"
    assert result(code_cell(notebook, "dview.apply(lambda x: a + b + x, 27)")) == "[42, 42, 42, 42]"
    assert result(code_cell(notebook, "rc[1::2].execute")) == "[15, -5, 15, -5]"
    assert result(code_cell(notebook, "dview.pull('b', targets=0)")) == "3453"
    assert result(code_cell(notebook, "dview.gather('a')")) == str(list(range(16)))
    assert result(code_cell(notebook, "%px y = [i**10 for i in x]")) == str([i**10 for i in range(8)])


def test_quickstart_px_output_is_tagged_by_engine(quickstart: Executed) -> None:
    line_magic = stdout(code_cell(quickstart.notebook, "%px print("))
    cell_magic = stdout(code_cell(quickstart.notebook, "%%px"))
    for engine_id in QUICKSTART_ENGINES:
        assert f"[stdout:{engine_id}] engine process " in line_magic
        assert f"[stdout:{engine_id}] 16 values, the largest is " in cell_magic
    assert "Parallel execution on engines: [0, 1, 2, 3]" in cell_magic


def test_quickstart_error_cell_shows_the_composite_error(quickstart: Executed) -> None:
    cell = code_cell(quickstart.notebook, "%px 1/0")
    assert "raises-exception" in cell.metadata.tags
    (error,) = [o for o in cell.outputs if o["output_type"] == "error"]
    assert error["ename"] == "CompositeError"
    shown = "\n".join(error["traceback"])
    for engine_id in QUICKSTART_ENGINES:
        assert f"[{engine_id}:apply]: ZeroDivisionError: division by zero" in shown
    errors = [c for c in quickstart.notebook.cells if any(o["output_type"] == "error" for o in c.get("outputs", []))]
    assert errors == [cell]


def test_quickstart_stops_its_cluster(quickstart: Executed) -> None:
    assert "stopped>" in result(code_cell(quickstart.notebook, "cluster.stop()"))
    assert quickstart.leftovers == []


def test_plots_show_one_png_per_engine_under_its_tag(plots: Executed) -> None:
    outputs = code_cell(plots.notebook, "plt.show()").outputs
    tagged = []
    for before, output in pairwise(outputs):
        if output["output_type"] == "display_data" and "image/png" in output["data"]:
            assert before["output_type"] == "stream", "an image without its [output:N] tag"
            tagged.append(before["text"].splitlines()[-1])
            assert output["data"]["image/png"].startswith("iVBORw0KGgo")  # base64 of the PNG signature
    assert sorted(tagged) == [f"[output:{engine_id}]" for engine_id in PLOTS_ENGINES]


def test_plots_stops_its_cluster(plots: Executed) -> None:
    assert plots.leftovers == []
