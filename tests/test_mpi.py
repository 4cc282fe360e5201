"""Engines under mpiexec: real Open MPI ranks, each a real kernel that registered with the hub."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pxmagic import Client, Cluster, CompositeError, EngineError, RemoteError
from conftest import px_shell
from helpers import wait_until

if not os.environ.get("CI"):  # in CI (run-tests.sh installs both) a missing MPI must fail, not skip
    pytestmark = pytest.mark.skipif(shutil.which("mpiexec") is None, reason="needs mpiexec (openmpi-bin)")
    pytest.importorskip("mpi4py")


def on_engines():
    """Functions to run on the engines, defined in a closure so they travel by value (tests/ is
    not on the engines' path)."""

    def rank_and_size():
        from mpi4py import MPI

        return MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size()

    def allreduce_of_rank_plus_one():
        from mpi4py import MPI

        return MPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.Get_rank() + 1)

    def barrier():
        from mpi4py import MPI

        MPI.COMM_WORLD.Barrier()
        return "passed"

    def sleep(seconds):
        import time

        time.sleep(seconds)
        return seconds

    def rank_0_in_a_barrier_alone():
        from mpi4py import MPI

        if MPI.COMM_WORLD.Get_rank() == 0:
            MPI.COMM_WORLD.Barrier()
        else:
            sleep(60)

    return rank_and_size, allreduce_of_rank_plus_one, barrier, sleep, rank_0_in_a_barrier_alone


rank_and_size, allreduce_of_rank_plus_one, barrier, sleep, rank_0_in_a_barrier_alone = on_engines()


@pytest.fixture(scope="module")
def cluster():
    cluster = Cluster(n=2, engines="mpi", profile="mpi", timeout=60)
    cluster.start()
    yield cluster
    cluster.stop()


def test_each_engine_is_the_mpi_rank_of_its_id(rc):
    assert rc.ids == [0, 1]
    assert rc[:].apply_sync(rank_and_size) == [(0, 2), (1, 2)]
    for engine_id in rc.ids:
        assert Path(rc.engine_connection_file(engine_id)).exists(), "each rank has a kernel connection file"


def test_allreduce_across_engines_through_apply(rc):
    assert rc[:].apply_sync(allreduce_of_rank_plus_one) == [3, 3]


def test_allreduce_across_engines_through_px(rc):
    from IPython.utils.io import capture_output

    view = rc[:]
    shell = px_shell(view)
    with capture_output() as captured:
        shell.run_line_magic("px", "from mpi4py import MPI")
        shell.run_line_magic("px", "total = MPI.COMM_WORLD.allreduce(MPI.COMM_WORLD.rank + 1)")
        shell.run_line_magic("px", "print(MPI.COMM_WORLD.rank, total)")
    lines = captured.stdout.splitlines()
    assert "[stdout:0] 0 3" in lines and "[stdout:1] 1 3" in lines, captured.stdout
    assert view["total"] == [3, 3]


def test_restarting_one_mpi_engine_is_refused_with_the_reason(rc):
    with pytest.raises(RemoteError, match="MPI ranks restart only with their whole job"):
        rc.restart_engine(1, timeout=10)
    assert rc[:].apply_sync(lambda: "still two") == ["still two"] * 2


def test_an_engine_stuck_in_a_collective_stops_the_whole_job():
    with Cluster(n=2, engines="mpi", profile="mpi-stuck", timeout=60, mpi_interrupt_timeout=3) as rc:
        ranks = [psutil.Process(pid) for pid in rc[:].apply_sync(os.getpid)]
        stuck = rc[0].apply_async(barrier)  # rank 1 never joins
        sleeping = rc[1].apply_async(sleep, 60)
        time.sleep(1)
        start = time.monotonic()
        rc[:].interrupt()
        with pytest.raises(RemoteError, match="KeyboardInterrupt"):
            sleeping.get(10)  # a rank in Python code is interrupted as usual
        with pytest.raises(EngineError) as info:
            stuck.get(15)
        waited = time.monotonic() - start
        assert 3 <= waited < 10, waited
        message = str(info.value)
        assert "engine 0 was stopped with its whole MPI job (engines 0-1)" in message
        assert "engine 0 did not finish within 3 s of an interrupt" in message
        assert stuck.msg_ids[0] in message
        _, alive = psutil.wait_procs(ranks, timeout=15)
        assert alive == [], "every rank of the job is gone"
        wait_until(lambda: not rc.ids, timeout=5)
        assert rc.ids == []


def test_ctrl_c_on_a_stuck_collective_in_ipython_stops_the_job_too():
    """The user's path: Ctrl-C in IPython during a blocking call whose rank 0 waits in a Barrier."""
    from IPython.terminal.interactiveshell import TerminalInteractiveShell

    TerminalInteractiveShell.instance(simple_prompt=True, colors="nocolor")  # a session: progress bars on
    with Cluster(n=2, engines="mpi", profile="mpi-ctrl-c", timeout=60, mpi_interrupt_timeout=2) as rc:
        view = rc[:]
        timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            with pytest.raises(KeyboardInterrupt):
                view.apply_sync(rank_0_in_a_barrier_alone)
        finally:
            timer.cancel()
        with pytest.raises(CompositeError) as info:
            view.history[-1].get(15)
        errors = dict(info.value.elist)
        assert isinstance(errors[0], EngineError) and "engine 0 did not finish within 2 s" in errors[0].evalue
        assert errors[1].ename in ("KeyboardInterrupt", "EngineError"), errors[1]


def test_a_rank_that_dies_fails_the_work_of_the_whole_job_at_once():
    with Cluster(n=2, engines="mpi", profile="mpi-crash", timeout=60) as rc:
        outstanding = rc[1].apply_async(sleep, 60)
        time.sleep(0.5)
        start = time.monotonic()
        with pytest.raises(EngineError, match="engine 0 died"):
            rc[0].apply_sync(lambda: __import__("os")._exit(3))
        with pytest.raises(EngineError, match="engine 1 died: its MPI job ended"):
            outstanding.get(10)
        assert time.monotonic() - start < 5


def test_pxcluster_starts_and_stops_an_mpi_job():
    pxcluster = str(Path(sys.executable).with_name("pxcluster"))
    started = subprocess.run([pxcluster, "start", "-n", "2", "--engines", "mpi", "--profile", "mpi-cli",
                              "--daemonize"], capture_output=True, text=True, timeout=90)
    assert started.returncode == 0, started.stderr
    assert "2 engines ready (mpi)" in started.stdout
    try:
        with Client(profile="mpi-cli", timeout=10) as rc:
            ranks = [psutil.Process(pid) for pid in rc[:].apply_sync(os.getpid)]
            assert rc[:].apply_sync(allreduce_of_rank_plus_one) == [3, 3]
    finally:
        stopped = subprocess.run([pxcluster, "stop", "--profile", "mpi-cli"], capture_output=True, text=True,
                                 timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    _, alive = psutil.wait_procs(ranks, timeout=10)
    assert alive == [], "pxcluster stop ends the MPI job"


def test_without_mpiexec_the_cluster_says_what_to_install(tmp_path):
    with pytest.raises(Exception, match="no 'no-such-mpiexec' on PATH: install an MPI"):
        Cluster(n=2, engines="mpi", profile="mpi-missing", timeout=30, mpiexec="no-such-mpiexec").start()

