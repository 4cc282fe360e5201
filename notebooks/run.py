"""Run the quick-start notebook headless, save the executed copy and print each cell's text.

This is the notebook's demo command (``.venv/bin/python notebooks/run.py``);
the tests reuse :func:`execute` so they run notebooks exactly as the demo does.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
QUICKSTART = HERE / "quickstart.ipynb"
EXECUTED_DIR = HERE / "executed"


def execute(path: Path, workdir: Path, timeout: int = 180, kernel_name: str = "python3") -> nbformat.NotebookNode:
    """Execute the notebook at ``path`` on a fresh kernel running in ``workdir``.

    Only cells tagged ``raises-exception`` may fail; any other error raises
    ``nbclient.exceptions.CellExecutionError``.
    """
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, startup_timeout=120, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def cell_text(cell: nbformat.NotebookNode) -> str:
    """The text a reader sees under a code cell: streams, plain-text results and errors."""
    parts = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream":
            parts.append(output["text"])
        elif kind in ("execute_result", "display_data"):
            data = output.get("data", {})
            images = sorted(mime for mime in data if mime.startswith("image/"))
            parts.append(f"<{', '.join(images)}>\n" if images else data.get("text/plain", "") + "\n")
        elif kind == "error":
            parts.append(f"{output['ename']}: {output['evalue']}\n")
    return "".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", nargs="?", type=Path, default=QUICKSTART, help="default: quickstart.ipynb")
    parser.add_argument("--output", type=Path, default=None,
                        help="where to write the executed copy (default: notebooks/executed/<name>)")
    args = parser.parse_args(argv)
    output = args.output or EXECUTED_DIR / args.notebook.name
    with tempfile.TemporaryDirectory(prefix="pxmagic-notebook-") as workdir:
        notebook = execute(args.notebook, Path(workdir))
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        print(f"In [{cell.get('execution_count') or ' '}]:")
        print("    " + cell.source.replace("\n", "\n    "))
        text = cell_text(cell)
        if text:
            print(text, end="" if text.endswith("\n") else "\n")
        print()
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, output)
    print(f"executed notebook written to {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
