"""Engines come from whatever kernelspec, and kernel provisioner, the user names."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pxmagic import Cluster

PROVISIONER = '''
from jupyter_client.provisioning import LocalProvisioner


class MarkingProvisioner(LocalProvisioner):
    """A local provisioner that leaves a mark in every kernel's environment."""

    async def pre_launch(self, **kwargs):
        kwargs = await super().pre_launch(**kwargs)
        kwargs.setdefault("env", {})["PXTEST_PROVISIONED_BY"] = "marking-provisioner"
        return kwargs
'''


@pytest.fixture
def marking_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec ``pxtest-engine`` whose metadata names a provisioner found by entry point."""
    site = tmp_path / "site"
    (site / "pxtest_provisioner-1.0.dist-info").mkdir(parents=True)
    (site / "pxtest_provisioner.py").write_text(PROVISIONER)
    (site / "pxtest_provisioner-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pxtest-provisioner\nVersion: 1.0\n")
    (site / "pxtest_provisioner-1.0.dist-info" / "entry_points.txt").write_text(
        "[jupyter_client.kernel_provisioners]\nmarking-provisioner = pxtest_provisioner:MarkingProvisioner\n")
    spec_dir = tmp_path / "jupyter" / "kernels" / "pxtest-engine"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": ["python", "-m", "pxmagic.engine", "-f", "{connection_file}"],
        "display_name": "pxmagic engine, provisioned",
        "language": "python",
        "interrupt_mode": "message",
        "metadata": {"kernel_provisioner": {"provisioner_name": "marking-provisioner"}},
    }))
    paths = [str(tmp_path / "jupyter"), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join(paths))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return "pxtest-engine"


def test_engines_are_launched_by_the_kernelspecs_provisioner(marking_kernelspec):
    with Cluster(n=2, kernel_name=marking_kernelspec, timeout=60) as rc:
        marks = rc[:].apply_sync(lambda: __import__("os").environ.get("PXTEST_PROVISIONED_BY"))
        assert marks == ["marking-provisioner"] * 2
        assert rc[:].apply_sync(lambda: 6 * 7) == [42, 42]


def test_pxcluster_takes_the_kernelspec_by_name(marking_kernelspec):
    pxcluster = [sys.executable, "-m", "pxmagic.cluster.cli"]
    started = subprocess.run([*pxcluster, "start", "-n", "1", "--profile", "provisioned", "--daemonize",
                              "--kernelspec", marking_kernelspec], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        from pxmagic import Client

        with Client(profile="provisioned") as rc:
            assert rc[0].apply_sync(lambda: __import__("os").environ["PXTEST_PROVISIONED_BY"]) \
                == "marking-provisioner"
    finally:
        stopped = subprocess.run([*pxcluster, "stop", "--profile", "provisioned"],
                                 capture_output=True, text=True, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
