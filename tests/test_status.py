"""``rc.status()``, ``%pxstatus`` and ``pxcluster status`` on a real cluster (an engine is killed last)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from IPython.terminal.interactiveshell import TerminalInteractiveShell
from IPython.utils.io import capture_output

from conftest import N_ENGINES
from helpers import wait_until

PXCLUSTER = str(Path(sys.executable).with_name("pxcluster"))



def test_a_busy_engine_says_what_it_runs_and_the_others_are_idle(rc):
    view = rc[1]
    view.label = "a long nap"
    running = view.apply_async(time.sleep, 3)
    queued = rc[1].apply_async(abs, -1)
    waiting = rc.load_balanced_view(targets=[1]).apply_async(abs, -2)
    assert wait_until(lambda: rc.status().engine(1).state == "busy", 5)
    time.sleep(0.5)
    status = rc.status()
    busy, idle = status.engine(1), status.engine(0)
    assert [(t.name, t.label) for t in busy.running] == [("sleep", "a long nap")]
    assert busy.running[0].msg_id == running.msg_ids[0] and 0.3 < busy.running[0].seconds < 3.5
    assert abs(busy.running[0].started - (time.time() - busy.running[0].seconds)) < 1
    assert [t.msg_id for t in busy.queue] == queued.msg_ids
    assert [t.msg_id for t in status.unassigned] == waiting.msg_ids
    assert idle.state == "idle" and idle.running == [] and idle.kind == "local"
    assert busy.pid in rc[:].apply_sync(os.getpid) and busy.rss_bytes > 20 * 2**20
    assert status.clients >= 1 and status.uptime > 0
    assert [r.get(timeout=30) for r in (running, queued, waiting)] == [None, 1, 2]
    after = rc.status().engine(1)
    assert after.state == "idle" and after.completed >= 3 and after.cpu_percent is not None


def test_failures_are_counted_and_the_table_reads_in_text_and_html(rc):
    before = rc.status().engine(2).failed
    with pytest.raises(Exception):
        rc[2].apply_sync(lambda: 1 / 0)
    status = rc.status()
    assert status.engine(2).failed == before + 1
    text = str(status)
    assert text.splitlines()[1].split()[:3] == ["engine", "state", "kind"]
    assert f"{N_ENGINES} engines" in text and "idle" in text
    html = status._repr_html_()
    assert html.count("<tr>") == N_ENGINES + 1 and "<th>memory</th>" in html


def test_pxstatus_and_pxcluster_status_print_the_table(rc, cluster):
    shell = TerminalInteractiveShell.instance(simple_prompt=True, colors="nocolor")
    shell.run_line_magic("load_ext", "pxmagic")
    rc[:].activate()
    with capture_output() as captured:
        shell.run_line_magic("pxstatus", "")
    assert f"{N_ENGINES} engines" in captured.stdout and "heartbeat" in captured.stdout
    done = subprocess.run([PXCLUSTER, "status", "--profile", cluster.profile, "--cluster-id", cluster.cluster_id],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert f"{N_ENGINES} engines" in done.stdout and len(done.stdout.strip().splitlines()) == N_ENGINES + 2
    watching = subprocess.Popen([PXCLUSTER, "status", "--watch", "--interval", "0.3", "--profile",
                                 cluster.profile, "--cluster-id", cluster.cluster_id],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    watching.send_signal(signal.SIGINT)
    out, err = watching.communicate(timeout=30)
    assert watching.returncode == 0, err
    assert out.count(f"{N_ENGINES} engines") >= 2, "--watch printed the table again"


def test_a_map_label_names_its_tasks(rc):
    lview = rc.load_balanced_view(targets=[0])
    result = lview.map(time.sleep, [1.5, 0], label="mapped nap", block=False)
    assert wait_until(lambda: [t.label for t in rc.status().engine(0).running] == ["mapped nap"], 5)
    result.get(timeout=30)
    assert lview.label is None


def test_a_killed_engine_shows_as_dead(rc):
    pid = rc[N_ENGINES - 1].apply_sync(os.getpid)
    os.kill(pid, signal.SIGKILL)
    assert wait_until(lambda: rc.status().engine(N_ENGINES - 1).state == "dead", 20)
    assert rc.status().engine(0).state == "idle"
