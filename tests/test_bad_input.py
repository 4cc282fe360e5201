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
