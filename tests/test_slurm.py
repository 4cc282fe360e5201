"""Engines as the tasks of a Slurm batch job, on a real single-node Slurm started for these tests.

:mod:`slurmcluster` runs munged, slurmctld and slurmd on a config of its own
(about a second to come up); ``SLURM_CONF`` points sbatch, squeue, scancel
and srun at it, for the hub and its job as for a user's shell.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import slurmcluster
from pxmagic import Client, Cluster, CompositeError, EngineError

if not os.environ.get("CI"):  # in CI (run-tests.sh installs them) missing Slurm daemons must fail, not skip
    pytestmark = pytest.mark.skipif(not slurmcluster.available(), reason="needs slurm-wlm and munge")


@pytest.fixture(scope="module")
def slurm():
    with slurmcluster.slurm_cluster() as env:
        saved = os.environ.get("SLURM_CONF")
        os.environ.update(env)
        yield env
        if saved is None:
            del os.environ["SLURM_CONF"]
        else:
            os.environ["SLURM_CONF"] = saved


def job_state(job_id: str) -> str:
    """The job's state in squeue, or "" once squeue no longer lists it."""
    return subprocess.run(["squeue", "--noheader", f"--jobs={job_id}", "--format=%T"], capture_output=True,
                          text=True, timeout=20).stdout.strip()


def wait_until_gone(job_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while (state := job_state(job_id)) and state not in ("COMPLETED", "CANCELLED") and \
            time.monotonic() < deadline:
        time.sleep(0.2)
    return state


def on_engines():
    """Functions to run on the engines, defined in a closure so they travel by value (tests/ is
    not on the engines' path)."""

    def slurm_variables():
        import os

        return os.environ["SLURM_JOB_ID"], int(os.environ["SLURM_PROCID"])

    return slurm_variables


slurm_variables = on_engines()


@pytest.fixture(scope="module")
def cluster(slurm):
    cluster = Cluster(n=4, engines="slurm", sbatch_args="--overcommit", profile="slurm", timeout=60)
    cluster.start()
    yield cluster
    cluster.stop()


def test_engines_are_the_tasks_of_one_slurm_job(rc):
    assert rc.ids == [0, 1, 2, 3]
    seen = rc[:].apply_sync(slurm_variables)
    job_ids = {job_id for job_id, _ in seen}
    assert len(job_ids) == 1, seen
    assert [rank for _, rank in seen] == [0, 1, 2, 3], "engine id == SLURM_PROCID"
    assert job_state(job_ids.pop()) == "RUNNING"


def test_spec_examples_on_slurm_engines(rc):
    dview = rc[:]
    dview.block = True
    dview.push(dict(a=1.03234, b=3453))
    assert dview.pull("a") == [1.03234] * 4
    dview.scatter("x", list(range(8)))
    assert dview.gather("x") == list(range(8))
    assert dview.map_sync(lambda x: x ** 2, range(8)) == [x ** 2 for x in range(8)]


def test_a_job_cancelled_behind_the_hubs_back_fails_the_work_of_every_engine(slurm):
    cluster = Cluster(n=2, engines="slurm", sbatch_args="--overcommit", profile="slurm-cancel", timeout=60)
    with cluster as rc:
        job_id, _ = rc[0].apply_sync(slurm_variables)
        outstanding = rc[:].apply_async(time.sleep, 60)
        time.sleep(0.5)
        subprocess.run(["scancel", job_id], check=True, timeout=20)
        with pytest.raises(CompositeError) as info:
            outstanding.get(20)
        errors = dict(info.value.elist)
        assert sorted(errors) == [0, 1]
        # whichever tells the hub first: the job's end (squeue) or the engine's silence (heartbeats)
        for engine_id, error in errors.items():
            assert isinstance(error, EngineError), error
            assert (f"engine {engine_id} died" in str(error)
                    or f"engine {engine_id} stopped answering heartbeats" in str(error)), error
        # when the heartbeats told first, the hub's next look at the queue still names the job's end
        deadline = time.monotonic() + 20
        while not (any(f"died: its Slurm job {job_id} ended (CANCELLED)" in str(e) for e in errors.values())
                   or f"Slurm job {job_id} ended (CANCELLED)" in Path(cluster.log_file).read_text()):
            assert time.monotonic() < deadline, "the hub never said that the Slurm job was cancelled"
            time.sleep(0.5)


def test_pxcluster_submits_and_stop_cancels_the_job(slurm):
    pxcluster = str(Path(sys.executable).with_name("pxcluster"))
    started = subprocess.run([pxcluster, "start", "-n", "2", "--engines", "slurm", "--sbatch-args=--overcommit",
                              "--profile", "slurm-cli", "--daemonize"], capture_output=True, text=True, timeout=90)
    assert started.returncode == 0, started.stderr
    assert "2 engines ready (slurm)" in started.stdout
    try:
        with Client(profile="slurm-cli", timeout=10) as rc:
            engines = [psutil.Process(pid) for pid in rc[:].apply_sync(os.getpid)]
            (job_id, _), _ = rc[:].apply_sync(slurm_variables)
            assert job_state(job_id) == "RUNNING"
    finally:
        stopped = subprocess.run([pxcluster, "stop", "--profile", "slurm-cli"], capture_output=True, text=True,
                                 timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    _, alive = psutil.wait_procs(engines, timeout=15)
    assert alive == [], "pxcluster stop ends the engines"
    assert wait_until_gone(job_id, 15) in ("", "COMPLETED", "CANCELLED")


def test_sbatch_refusing_the_job_is_reported(slurm):
    with pytest.raises(Exception, match="sbatch did not submit the engines' job"):
        Cluster(n=1, engines="slurm", sbatch_args="--partition=no-such-partition", profile="slurm-bad",
                timeout=30).start()
