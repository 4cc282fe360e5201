"""Starting and stopping clusters when things go wrong: concurrent starts, a stopped hub, a killed hub."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from pxmagic import connection

PXCLUSTER = str(Path(sys.executable).with_name("pxcluster"))


def pxcluster(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([PXCLUSTER, *args], capture_output=True, text=True, timeout=timeout)


def hubs_of(profile: str) -> list[psutil.Process]:
    """Every live hub process of ``profile``, found by command line rather than by its files."""
    found = []
    for process in psutil.process_iter(["cmdline", "status"]):
        command = process.info["cmdline"] or []
        if ("pxmagic.hub" in command and profile in command
                and process.info["status"] != psutil.STATUS_ZOMBIE):
            found.append(process)
    return found


def cluster_processes(profile: str) -> list[psutil.Process]:
    hubs = hubs_of(profile)
    return hubs + [child for hub in hubs for child in hub.children(recursive=True)]


def wait_gone(processes: list[psutil.Process], timeout: float = 10) -> list[psutil.Process]:
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_concurrent_starts_make_one_cluster_and_the_others_say_so():
    profile = "racetest"
    starts = [subprocess.Popen([PXCLUSTER, "start", "-n", "1", "--profile", profile, "--daemonize"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [(start.wait(120), start.stderr.read()) for start in starts]
    try:
        assert sorted(status for status, _ in outcomes) == [0, 1, 1], outcomes
        for status, stderr in outcomes:
            if status:
                assert "already running" in stderr, stderr
        assert len(hubs_of(profile)) == 1
        listing = pxcluster("list").stdout.splitlines()
        assert [line.split()[0] for line in listing[1:]].count(profile) == 1, listing
    finally:
        processes = cluster_processes(profile)
        stopped = pxcluster("stop", "--profile", profile)
    assert stopped.returncode == 0, stopped.stderr
    assert wait_gone(processes) == []
    assert hubs_of(profile) == []
    assert sorted(p.name for p in connection.security_dir(profile).iterdir()) == []


def test_stop_kills_a_stopped_hub_and_its_engines_at_once_and_says_so():
    profile = "sigstoptest"
    assert pxcluster("start", "-n", "2", "--profile", profile, "--daemonize").returncode == 0
    processes = cluster_processes(profile)
    assert len(processes) >= 3
    os.kill(processes[0].pid, signal.SIGSTOP)
    began = time.monotonic()
    stopped = pxcluster("stop", "--profile", profile, timeout=60)
    took = time.monotonic() - began
    assert stopped.returncode == 0, stopped.stderr
    assert "is stopped" in stopped.stderr and "killing it" in stopped.stderr, stopped.stderr
    assert took < 10, f"pxcluster stop took {took:.1f} s"
    assert wait_gone(processes, timeout=5) == []
    assert sorted(p.name for p in connection.security_dir(profile).iterdir()) == []


def test_the_next_start_removes_what_a_killed_hub_left():
    profile = "sigkilltest"
    assert pxcluster("start", "-n", "1", "--profile", profile, "--daemonize").returncode == 0
    info = json.loads(connection.client_file(profile).read_text())
    processes = cluster_processes(profile)
    os.kill(info["hub_pid"], signal.SIGKILL)
    assert wait_gone(processes[:1]) == []
    left = [p.name for p in connection.security_dir(profile).iterdir() if str(info["hub_pid"]) in p.name]
    assert left, "a killed hub was expected to leave its sockets and kernel files"

    restarted = pxcluster("start", "-n", "1", "--profile", profile, "--daemonize")
    assert restarted.returncode == 0, restarted.stderr
    try:
        remaining = [p.name for p in connection.security_dir(profile).iterdir()]
        assert not [name for name in remaining if str(info["hub_pid"]) in name], remaining
    finally:
        newer = cluster_processes(profile)
        assert pxcluster("stop", "--profile", profile).returncode == 0
    assert wait_gone(newer + processes) == []
    assert sorted(p.name for p in connection.security_dir(profile).iterdir()) == []
