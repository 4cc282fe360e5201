"""Results are not lost: the hub keeps them for any client, bounded, and on disk with ``store="sqlite"``.

Real clusters, real client processes: a client that submits work and is
killed, and another that picks up the result.
"""
from __future__ import annotations

import queue
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pxmagic import Client, Cluster, EngineError, RemoteError, connection


def run_client(cluster: Cluster, body: str) -> subprocess.Popen:
    """A separate Python process with a Client of ``cluster`` named ``rc``, running ``body``.

    It prints lines the test reads; IPYTHONDIR and PYTHONPATH are inherited.
    """
    code = textwrap.dedent(f"""\
        import sys, time
        from pxmagic import Client
        rc = Client(profile={cluster.profile!r}, cluster_id={cluster.cluster_id!r})
    """) + textwrap.dedent(body)
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def read_line(process: subprocess.Popen, timeout: float = 30) -> str:
    """The next line the process prints; fails (with its stderr) if none comes in time."""
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: lines.put(process.stdout.readline()), daemon=True).start()
    try:
        line = lines.get(timeout=timeout)
    except queue.Empty:
        line = ""
    if not line:
        process.kill()
        _, stderr = process.communicate(timeout=10)
        raise AssertionError(f"the client process printed no line in {timeout} s; stderr:\n{stderr}")
    return line.strip()


# -- any client gets any result --------------------------------------------------
def test_a_second_client_gets_results_it_did_not_submit(cluster, rc):
    ar = rc[:].apply_async(lambda: __import__("os").getpid())
    pids = ar.get(30)
    failed = rc[1].apply_async(lambda: 1 / 0)
    executed = rc[2].execute("answer = 42", block=False)
    executed.get(30)
    with cluster.connect_client() as other:
        assert other.get_result(ar.msg_ids[3]).get(10) == pids[3]
        fetched = other.get_result(ar.msg_ids)
        assert fetched.get(10) == pids
        assert fetched.engine_ids == ar.engine_ids
        with pytest.raises(RemoteError, match="ZeroDivisionError") as info:
            other.get_result(failed.msg_ids[0]).get(10)
        assert info.value.engine_id == 1
        assert other.get_result(executed.msg_ids[0]).get(10) is None
        assert other.get_result(ar.msg_ids[0]) is fetched, "fetched once, then kept like a request's own"


def test_a_result_still_running_comes_when_it_is_done(cluster, rc):
    ar = rc[1].apply_async(lambda: __import__("time").sleep(1.5) or "late")
    with cluster.connect_client() as other:
        fetched = other.get_result(ar.msg_ids[0])
        assert not fetched.done()
        assert fetched.get(20) == "late"
        assert fetched.engine_ids == [1]


def test_a_queued_load_balanced_task_comes_when_it_is_done(cluster, rc):
    lview = rc.load_balanced_view()
    busy = [lview.apply_async(lambda i=i: __import__("time").sleep(1) or i) for i in range(len(rc.ids) + 1)]
    queued = busy[-1]
    with cluster.connect_client() as other:
        fetched = other.get_result(queued.msg_ids[0])
        assert fetched.get(20) == len(rc.ids)
        assert queued.get(20) == len(rc.ids)  # each client learns which engine ran it from its own copy
        assert fetched.engine_ids == queued.engine_ids
    assert [ar.get(20) for ar in busy] == list(range(len(rc.ids) + 1))


def test_a_list_of_msg_ids_mixes_local_and_fetched_results(cluster, rc):
    mine = rc[0].apply_async(lambda: "mine")
    theirs_client = cluster.connect_client()
    theirs = theirs_client[3].apply_async(lambda: "theirs")
    assert theirs.get(10) == "theirs"
    both = rc.get_result([mine.msg_ids[0], theirs.msg_ids[0]])
    assert both.get(10) == ["mine", "theirs"]
    assert both.engine_ids == [0, 3]
    theirs_client.close()


def test_an_unknown_msg_id_is_a_key_error_naming_it(rc):
    with pytest.raises(KeyError, match="no result with msg_id 'no-such-msg-id'"):
        rc.get_result("no-such-msg-id")
    with pytest.raises(ValueError, match="distinct msg_ids"):
        rc.get_result(["a", "a"])


def test_purge_results_frees_them_in_the_hub_and_here(cluster, rc):
    one = rc[0].apply_async(lambda: 1)
    every = rc[:].apply_async(lambda: 2)
    assert (one.get(10), every.get(10)) == (1, [2] * len(rc.ids))
    other = cluster.connect_client()
    rc.purge_results(one)
    for client in (rc, other):
        with pytest.raises(KeyError, match=one.msg_ids[0]):
            client.get_result(one.msg_ids[0])
    rc.purge_results(targets=[0, 2])
    assert other.get_result(every.msg_ids[1]).get(10) == 2
    for gone in (every.msg_ids[0], every.msg_ids[2]):
        with pytest.raises(KeyError, match=gone):
            other.get_result(gone)
    rc.purge_results("all")
    with pytest.raises(KeyError, match=every.msg_ids[3]):
        other.get_result(every.msg_ids[3])
    assert rc[0].apply_sync(lambda: "after") == "after"
    with pytest.raises(ValueError, match="needs jobs"):
        rc.purge_results()
    with pytest.raises(TypeError, match="targets must be an engine id"):
        rc.purge_results(targets=["0"])
    other.close()


def test_a_large_result_leaves_the_hub_once_its_client_has_it(cluster, rc):
    """The next request says which large results arrived; the hub keeps small ones for everyone."""
    big = rc[0].apply_async(lambda: b"x" * (2 * 2**20))
    small = rc[0].apply_async(lambda: "small")
    assert len(big.get(10)) == 2 * 2**20 and small.get(10) == "small"
    with cluster.connect_client() as other:
        assert len(other.get_result(big.msg_ids[0]).get(10)) == 2 * 2**20, "kept until its client says it has it"
    assert rc[1].apply_sync(lambda: "the next request") == "the next request"
    with cluster.connect_client() as later:
        with pytest.raises(KeyError, match=f"{big.msg_ids[0]}' .released from the hub's memory once the client"):
            later.get_result(big.msg_ids[0])
        assert later.get_result(small.msg_ids[0]).get(10) == "small"
    assert rc.get_result(big.msg_ids[0]) is big, "its own client still has it"


def test_threads_submitting_at_once_all_get_their_results(rc):
    """Callers send from their own threads, one at a time under the channel's lock, while the
    I/O thread receives: no reply is lost or crossed, large ones included."""
    def work(thread: int) -> list:
        view = rc[thread % len(rc.ids)]
        if thread == 0:
            return [len(view.apply_async(lambda: b"x" * 2**21).get(30)) for _ in range(10)]
        pending = [view.apply_async(lambda t, i: (t, i), thread, i) for i in range(300)]
        return [ar.get(30) for ar in pending]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert results[0] == [2**21] * 10
    for thread in (1, 2, 3):
        assert results[thread] == [(thread, i) for i in range(300)]


# -- client death -------------------------------------------------------------------
def wait_for_file(path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.02)


def test_a_killed_client_disturbs_no_one_and_its_result_waits_in_the_hub(cluster, rc, tmp_path):
    started = tmp_path / "started"
    dying = run_client(cluster, f"""\
        def slow():
            import pathlib, time
            pathlib.Path({str(started)!r}).touch()
            time.sleep(2)
            return "survived"
        ar = rc[0].apply_async(slow)
        print(ar.msg_ids[0], flush=True)
        time.sleep(600)
    """)
    msg_id = read_line(dying)
    wait_for_file(started)
    dying.send_signal(signal.SIGKILL)
    dying.wait(10)
    start = time.monotonic()
    assert rc[1:].apply_sync(lambda: "unaffected") == ["unaffected"] * (len(rc.ids) - 1)
    assert time.monotonic() - start < 5, "the other engines did not wait for anything"
    with Client(profile=cluster.profile, cluster_id=cluster.cluster_id) as heir:
        assert heir.get_result(msg_id).get(20) == "survived"
    assert rc[0].apply_sync(lambda: "engine 0 goes on") == "engine 0 goes on"


# -- limits ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_store():
    cluster = Cluster(n=2, profile="results", max_results=5, max_results_mb=1)
    cluster.start()
    yield cluster
    cluster.stop()


def test_results_past_the_limits_are_culled_oldest_first_with_a_clear_error(small_store):
    rc = small_store.connect_client()
    ars = [rc[0].apply_async(lambda i=i: i) for i in range(8)]
    assert [ar.get(10) for ar in ars] == list(range(8))
    big = rc[1].apply_async(lambda: b"x" * 2**21)
    assert len(big.get(10)) == 2**21
    with small_store.connect_client() as other:
        for culled in ars[:3]:
            with pytest.raises(KeyError, match=f"'{culled.msg_ids[0]}' .culled from the hub's result store"):
                other.get_result(culled.msg_ids[0])
        assert other.get_result([ar.msg_ids[0] for ar in ars[3:]]).get(10) == [3, 4, 5, 6, 7]
        with pytest.raises(KeyError, match=f"{big.msg_ids[0]}' .its result .2.0 MB. was larger than"):
            other.get_result(big.msg_ids[0])


def test_the_failure_of_an_engine_that_died_is_kept_for_a_client_that_died(small_store, tmp_path):
    started = tmp_path / "started"
    dying = run_client(small_store, f"""\
        def die():
            import os, pathlib, time
            pathlib.Path({str(started)!r}).touch()
            time.sleep(1)
            os._exit(1)
        ar = rc[1].apply_async(die)
        print(ar.msg_ids[0], flush=True)
        time.sleep(600)
    """)
    msg_id = read_line(dying)
    wait_for_file(started)
    dying.send_signal(signal.SIGKILL)
    dying.wait(10)
    with small_store.connect_client() as heir:
        with pytest.raises(EngineError, match=rf"engine 1 died \(exit status 1\); request {msg_id}"):
            heir.get_result(msg_id).get(20)


# -- sqlite --------------------------------------------------------------------------
def test_sqlite_keeps_results_after_the_client_exited_and_across_hub_restarts():
    cluster_id = secrets.token_hex(4)
    options = dict(n=1, profile="results", cluster_id=cluster_id, store="sqlite", max_results=2)
    cluster = Cluster(**options)
    cluster.start()
    try:
        submitter = run_client(cluster, """\
            ars = [rc[0].apply_async(lambda i=i: i * 10) for i in range(4)]
            assert [ar.get(10) for ar in ars] == [0, 10, 20, 30]
            print(" ".join(ar.msg_ids[0] for ar in ars), flush=True)
            rc.close()
        """)
        msg_ids = read_line(submitter).split()
        assert submitter.wait(20) == 0
        with cluster.connect_client() as heir:
            assert heir.get_result(msg_ids).get(10) == [0, 10, 20, 30], "the first two come from disk"
    finally:
        cluster.stop()
    path = connection.results_file("results", cluster_id)
    assert path.exists() and oct(path.stat().st_mode & 0o777) == "0o600"
    cluster = Cluster(**options)
    cluster.start()
    try:
        with cluster.connect_client() as later:
            assert later.get_result(msg_ids[1]).get(10) == 10, "signed again with the new cluster's key"
            later.purge_results("all")
            with pytest.raises(KeyError, match=msg_ids[1]):
                later.get_result(msg_ids[1])
    finally:
        cluster.stop()


# -- the command line ------------------------------------------------------------------
PXCLUSTER = str(Path(sys.executable).with_name("pxcluster"))


def test_the_hub_help_describes_the_culling_policy():
    shown = subprocess.run([sys.executable, "-m", "pxmagic.hub", "--help"], capture_output=True, text=True,
                           timeout=60)
    assert shown.returncode == 0
    text = " ".join(shown.stdout.split())
    assert "The oldest are culled first once more than --max-results results or --max-results-mb MB" in text
    assert "one of 1 MB or more leaves memory once the client that asked has it" in text
    assert "--store memory --max-results 10000 --max-results-mb 256" in text


@pytest.mark.parametrize("arguments, complaint", [
    (["--store", "redis"], "invalid choice: 'redis'"),
    (["--max-results", "-1"], "cannot be negative"),
])
def test_pxcluster_names_bad_store_options(arguments, complaint):
    started = subprocess.run([PXCLUSTER, "start", "-n", "1", "--profile", "badstore", "--daemonize", *arguments],
                             capture_output=True, text=True, timeout=60)
    assert started.returncode == 2 and complaint in started.stderr


def test_pxcluster_start_with_a_sqlite_store():
    started = subprocess.run([PXCLUSTER, "start", "-n", "2", "--profile", "clistore", "--store", "sqlite",
                              "--max-results", "0", "--daemonize"], capture_output=True, text=True, timeout=120)
    assert started.returncode == 0, started.stderr
    try:
        with Client(profile="clistore") as rc:
            msg_id = rc[0].apply_async(lambda: "on disk").msg_ids[0]
            other = rc[1].apply_async(lambda: "purged").msg_ids[0]
            assert rc.get_result(msg_id).get(10) == "on disk" and rc.get_result(other).get(10) == "purged"
        with Client(profile="clistore") as later:
            later.purge_results(targets=[1])  # engine 1's results go, engine 0's stay
            assert later.get_result(msg_id).get(10) == "on disk", "from disk: memory keeps none"
            with pytest.raises(KeyError, match=other):
                later.get_result(other)
        assert connection.results_file("clistore").exists()
    finally:
        stopped = subprocess.run([PXCLUSTER, "stop", "--profile", "clistore"], capture_output=True, text=True,
                                 timeout=60)
        assert stopped.returncode == 0, stopped.stderr
