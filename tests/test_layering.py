"""What importing the user-facing packages loads: a notebook that starts a cluster loads no hub."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest


def loaded_by(statement: str) -> list[str]:
    """The modules a fresh Python has loaded after ``statement``."""
    shown = subprocess.run([sys.executable, "-c", f"{statement}; import sys, json; print(json.dumps(sorted(sys.modules)))"],
                           capture_output=True, text=True, check=True)
    return json.loads(shown.stdout)


@pytest.mark.parametrize("statement", ["import pxmagic", "import pxmagic.cluster", "from pxmagic import Cluster"])
def test_starting_clusters_loads_no_hub_zmq_or_kernel_manager(statement):
    modules = loaded_by(statement)
    hub = [m for m in modules if m.startswith("pxmagic.hub.") and m != "pxmagic.hub.options"]
    assert hub == [], f"{statement} loads hub modules"
    assert "zmq" not in modules and "jupyter_client.manager" not in modules


def test_the_hub_loads_its_own_modules():
    assert "pxmagic.hub.hub" in loaded_by("import pxmagic.hub.__main__"), "the check above looks at the right names"


def module_imports(root: Path) -> dict[str, set[str]]:
    """pxmagic module -> the pxmagic modules it imports when it loads (not in functions, not for type checking)."""
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found = graph[name] = set()
        pending = list(ast.parse(path.read_text()).body)
        while pending:
            node = pending.pop()
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                pending += [child for child in ast.iter_child_nodes(node) if isinstance(child, ast.stmt)]
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[:len(package.split(".")) - node.level + 1],
                                     *([node.module] if node.module else [])])
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            for target in targets:
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    found.add(target)
    return graph


def test_no_import_cycle_among_pxmagic_modules():
    graph = module_imports(Path(__file__).parent.parent / "pxmagic")
    assert graph["pxmagic.client.client"] >= {"pxmagic.client.view", "pxmagic.client.ledger"}, "the graph is read"

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])

    cycles = sorted(name for name in graph if reaches(name, name, set()))
    assert cycles == [], f"modules on an import cycle: {cycles}"
