"""What importing the user-facing packages loads: a notebook that starts a cluster loads no hub."""
from __future__ import annotations

import json
import subprocess
import sys

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
