"""Engines on other hosts over ssh: two network namespaces, each running a real sshd.

The hosts are made by :mod:`sshhosts` (veth pairs, Debian's sshd on a
throwaway key); the hub binds this side of the first veth and the engines
are started by the system's ssh client, exactly as ``pxcluster start
--engines ssh --hosts ...`` does on a real cluster.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import zmq

from pxmagic import Client, Cluster
from conftest import px_shell
from sshhosts import NamespacesRefused, ssh_hosts

if not os.environ.get("CI"):  # in CI (run-tests.sh installs them) a missing sshd or ip must fail, not skip
    pytestmark = pytest.mark.skipif(not (shutil.which("ip") and os.path.exists("/usr/sbin/sshd")),
                                    reason="needs iproute2 and openssh-server")


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    try:
        with ssh_hosts(2, tmp_path_factory.mktemp("ssh")) as made:
            yield made
    except NamespacesRefused as refused:
        pytest.skip(f"cannot create network namespaces here: {refused}")


@pytest.fixture(scope="module")
def cluster(hosts):
    (first, second), ssh_config = hosts
    cluster = Cluster(engines="ssh", hosts=f"{first.name}:2,{second.name}:2", ip=first.hub_address,
                      ssh_options=f"-F {ssh_config}", profile="ssh", timeout=60)
    cluster.start()
    yield cluster
    cluster.stop()


def on_engines():
    """Functions to run on the engines, defined in a closure so they travel by value (tests/ is
    not on the engines' path)."""

    def network_namespace():
        import os

        return os.stat("/proc/self/ns/net").st_ino

    return network_namespace


network_namespace = on_engines()


def test_engines_run_in_the_hosts_named_in_order(hosts, rc):
    (first, second), _ = hosts
    assert rc.ids == [0, 1, 2, 3]
    here = os.stat("/proc/self/ns/net").st_ino
    namespaces = rc[:].apply_sync(network_namespace)
    assert here not in namespaces
    assert namespaces == [first.netns_inode] * 2 + [second.netns_inode] * 2


def test_the_hub_listens_on_the_address_given_and_encrypts(hosts, rc):
    (first, _), _ = hosts
    info = json.loads(Path(rc.connection_file).read_text())
    assert info["ip"] == first.hub_address
    assert info["curve_serverkey"], "--engines ssh implies CurveZMQ for clients"


def test_hub_to_engine_links_are_encrypted(rc):
    """An engine's kernel sockets take only CurveZMQ: a plain ZMQ client gets no answer from them."""
    from jupyter_client.session import Session

    info = json.loads(Path(rc.engine_connection_file(2)).read_text())
    assert info["curve_secretkey"], "the engine's kernel made its own CurveZMQ key pair"
    session = Session(key=info["key"].encode(), signature_scheme=info["signature_scheme"])
    with zmq.Context() as context, context.socket(zmq.DEALER) as plain:
        plain.linger = 0
        plain.connect(f"tcp://{info['ip']}:{info['shell_port']}")
        session.send(plain, "kernel_info_request", {})
        assert plain.poll(2000) == 0, "an unencrypted client was answered"
    assert rc[2].apply_async(lambda: "still served").get(10) == "still served"


def test_spec_examples_across_hosts(rc):
    dview = rc[:]
    dview.block = True
    assert dview.apply(lambda x: x * 2, 21) == [42] * 4
    dview.push(dict(a=1.03234, b=3453))
    assert dview.pull("a") == [1.03234] * 4
    assert rc[0].pull(("a", "b"), block=True) == [1.03234, 3453]
    dview.scatter("x", list(range(16)))
    assert dview["x"] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15]]
    dview.execute("y = [i ** 2 for i in x]")
    assert dview.gather("y") == [i ** 2 for i in range(16)]
    assert dview.map_sync(lambda x: x ** 10, range(8)) == [x ** 10 for x in range(8)]


def test_px_across_hosts(rc):
    from IPython.utils.io import capture_output

    shell = px_shell(rc[:])
    with capture_output() as captured:
        shell.run_line_magic("px", "import os")
        shell.run_line_magic("px", "print('ns', os.stat('/proc/self/ns/net').st_ino != 0)")
    lines = captured.stdout.splitlines()
    assert all(f"[stdout:{i}] ns True" in lines for i in range(4)), captured.stdout


def test_stopping_the_cluster_ends_the_remote_engines(hosts):
    (first, _), ssh_config = hosts
    pxcluster = str(Path(sys.executable).with_name("pxcluster"))
    started = subprocess.run([pxcluster, "start", "--engines", "ssh", "--hosts", f"{first.name}:2",
                              "--ip", first.hub_address, "--ssh-options", f"-F {ssh_config}",
                              "--profile", "ssh-cli", "--daemonize"], capture_output=True, text=True, timeout=90)
    assert started.returncode == 0, started.stderr
    assert "2 engines ready (ssh)" in started.stdout
    try:
        with Client(profile="ssh-cli", timeout=10) as rc:
            engines = [psutil.Process(pid) for pid in rc[:].apply_sync(os.getpid)]
            assert rc[:].apply_sync(network_namespace) == [first.netns_inode] * 2
    finally:
        stopped = subprocess.run([pxcluster, "stop", "--profile", "ssh-cli"], capture_output=True, text=True,
                                 timeout=60)
    assert stopped.returncode == 0, stopped.stderr
    _, alive = psutil.wait_procs(engines, timeout=15)
    assert alive == [], "pxcluster stop ends the engines on the other hosts"


def test_an_unreachable_host_fails_the_start_with_ssh_status(hosts):
    (first, _), ssh_config = hosts
    start = time.monotonic()
    with pytest.raises(Exception, match="exited with status 255"):
        Cluster(engines="ssh", hosts="no-such-host.invalid:1", ip=first.hub_address,
                ssh_options=f"-F {ssh_config}", profile="ssh-bad", timeout=60).start()
    assert time.monotonic() - start < 30


def test_bad_hosts_are_named():
    with pytest.raises(ValueError, match="--hosts entry 'node1:x' is not HOST or HOST:ENGINES"):
        Cluster(engines="ssh", hosts="node1:x")
    with pytest.raises(ValueError, match="-n 3 does not match --hosts 'a:2'"):
        Cluster(n=3, engines="ssh", hosts="a:2")
