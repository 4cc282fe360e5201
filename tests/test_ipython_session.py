"""Remote errors in a real IPython session: shown with the engines' summary, and
``%debug`` afterwards opens on the exception."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_debug_after_a_composite_error(rc):
    ipython = str(Path(sys.executable).with_name("ipython"))
    script = "\n".join([
        "from pxmagic import Client",
        f"rc = Client({str(rc.connection_file)!r})",
        "dview = rc[:]",
        "dview.block = True",
        "dview.execute('1/0')",
        "%debug",
        "up 2",
        "p type(self.exception()).__name__, len(self.exception().elist)",
        "q",
        "rc.close()",
        "exit",
    ]) + "\n"
    result = subprocess.run([ipython, "--simple-prompt", "--no-banner", "--colors=NoColor"],
                            input=script, capture_output=True, text=True, timeout=120)
    out = result.stdout
    assert "CompositeError: one or more exceptions from call to method: execute" in out
    assert "[3:apply]: ZeroDivisionError: division by zero" in out
    assert "ipdb>" in out and "('CompositeError', 4)" in out
