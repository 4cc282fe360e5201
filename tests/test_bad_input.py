"""Bad input gets a clear error naming the problem; nothing hangs or crashes."""
from __future__ import annotations

import json
import socket
import threading

import pytest

import pxmagic
from pxmagic import Client, RemoteError, SerializationError


def test_unknown_engine_names_the_valid_ids(rc):
    with pytest.raises(IndexError, match=r"no engine 17: this cluster's engines are \[0, 1, 2, 3\]"):
        rc[17]
    with pytest.raises(IndexError, match=r"\[0, 1, 2, 3\]"):
        rc[[0, 9]]
    view = rc[:]
    with pytest.raises(IndexError):
        view.targets = 42


def test_unpicklable_arguments_are_refused_on_the_client(rc):
    with pytest.raises(SerializationError, match="argument 0 of type _thread.lock"):
        rc[0].apply_sync(lambda lock: None, threading.Lock())
    with socket.socket() as sock:
        with pytest.raises(SerializationError, match="keyword argument 'conn' of type socket.socket"):
            rc[:].apply_async(lambda conn=None: None, conn=sock)
    with pytest.raises(SerializationError, match="_thread.lock"):
        rc[:].push({"lock": threading.Lock()})
    assert rc.wait(timeout=0) is True, "nothing was left outstanding"
    assert rc[0].apply_sync(lambda: "still fine") == "still fine"


def test_unpicklable_result_is_a_remote_error_and_the_engine_goes_on(rc):
    def make_lock():
        import threading

        return threading.Lock()

    with pytest.raises(RemoteError) as info:
        rc[1].apply_sync(make_lock)
    assert info.value.ename == "SerializationError" and "_thread.lock" in info.value.evalue
    assert info.value.engine_id == 1
    assert rc[1].apply_sync(lambda: 2 + 2) == 4


def test_wrong_argument_types(rc):
    with pytest.raises(TypeError, match="push takes a dict"):
        rc[:].push([1, 2])
    with pytest.raises(TypeError, match="pull takes a name"):
        rc[:].pull(3)
    with pytest.raises(TypeError, match="targets must be"):
        rc.direct_view(3.5)


def test_missing_connection_file_says_where_and_what_to_do(tmp_path):
    missing = tmp_path / "nowhere.json"
    with pytest.raises(FileNotFoundError) as info:
        Client(missing)
    assert str(missing) in str(info.value) and "pxcluster start" in str(info.value)
    with pytest.raises(FileNotFoundError, match="profile_nosuchprofile"):
        Client(profile="nosuchprofile")


def test_connection_file_of_another_kind_is_named(tmp_path):
    wrong = tmp_path / "kernel.json"
    wrong.write_text(json.dumps({"shell_port": 1, "key": "x"}))
    with pytest.raises(ValueError, match="lacks .*request_port"):
        Client(wrong)


def test_a_hub_that_does_not_answer_times_out(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = tmp_path / "dead.json"
    dead.write_text(json.dumps({"transport": "tcp", "ip": "127.0.0.1", "request_port": port,
                                "iopub_port": port, "key": "k", "signature_scheme": "hmac-sha256"}))
    with pytest.raises(pxmagic.TimeoutError, match="did not answer within 1"):
        Client(dead, timeout=1)


def test_sys_exit_on_an_engine_ends_the_call_not_the_engine(rc):
    def exit_with(status: int) -> None:
        import sys

        sys.exit(status)

    with pytest.raises(RemoteError, match=r"ends the call, not the engine") as raised:
        rc[1].apply_sync(exit_with, 3)
    assert raised.value.ename == "SystemExit" and raised.value.engine_id == 1
    with pytest.raises(RemoteError) as raised:
        rc[1].execute("import sys; sys.exit(2)", block=True)
    assert raised.value.ename == "SystemExit"
    assert rc[:].apply_sync(lambda: "usable") == ["usable"] * len(rc.ids)


def test_a_process_forked_on_an_engine_does_not_answer_in_its_name(rc):
    """The parent's result comes back once; the child exits instead of using the engine's sockets."""
    def fork_and_return() -> int:
        import os

        return os.fork()

    def reap(pid: int) -> int:
        import os

        return os.waitpid(pid, 0)[1]

    child = rc[2].apply_sync(fork_and_return)
    assert isinstance(child, int) and child > 0
    assert rc[2].apply_sync(reap, child) == 0
    rc[2].execute("import os\nforked = os.fork()", block=True)
    child = rc[2].pull("forked", block=True)
    assert child > 0 and rc[2].apply_sync(reap, child) == 0
    assert [rc[2].apply_sync(lambda i=i: i) for i in range(20)] == list(range(20))


def test_runaway_recursion_is_a_clear_error(rc):
    def recurse(depth: int) -> int:
        return recurse(depth + 1)

    with pytest.raises(RemoteError, match="maximum recursion depth exceeded") as raised:
        rc[3].apply_sync(recurse, 0)
    assert raised.value.ename == "RecursionError"
    assert rc[3].apply_sync(lambda: "usable") == "usable"


def test_a_closed_client_says_so_and_the_cluster_goes_on(rc):
    other = Client(rc.connection_file)
    view = other[0]
    other.close()
    with pytest.raises(RuntimeError, match="this client is closed"):
        view.apply_sync(lambda: "never sent")
    assert rc[0].apply_sync(lambda: "still served") == "still served"


def test_a_result_over_a_gigabyte_arrives_whole(rc):
    def big():
        import numpy

        return numpy.arange(2**30 // 8 + 2**20, dtype=numpy.float64)

    result = rc[0].apply_async(big).get(180)
    assert result.nbytes > 2**30
    assert result[0] == 0 and result[-1] == result.size - 1 and result[2**29 // 8] == 2**29 // 8
    del result
    assert rc[0].apply_sync(lambda: "usable") == "usable"
