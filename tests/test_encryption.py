"""CurveZMQ for a hub bound beyond loopback, and the warning when it is off."""
from __future__ import annotations

import json
import socket
import warnings

import pytest
import zmq
from jupyter_client.session import Session

from pxmagic import Cluster, connection
from pxmagic.encryption import exposure_warning, is_loopback
from pxmagic.protocol import hub_url


def host_address() -> str | None:
    """This host's address on its default route, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if is_loopback(address) else address


def hub_info_reply(info: dict, curve_serverkey: str | None, wait: float) -> dict | None:
    """Ask the hub for its info with a plain DEALER (CurveZMQ if given the server key)."""
    session = Session(key=info["key"].encode(), signature_scheme="hmac-sha256")
    with zmq.Context() as context, context.socket(zmq.DEALER) as sock:
        sock.linger = 0
        if curve_serverkey:
            public, secret = zmq.curve_keypair()
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve_serverkey.encode(), public, secret
        sock.connect(hub_url(info, "request_port"))
        sock.send_multipart(session.serialize(session.msg("hub_info_request", {})))
        if not sock.poll(wait * 1000):
            return None
        frames = sock.recv_multipart()
        return json.loads(frames[frames.index(b"<IDS|MSG>") + 5])


def test_loopback_is_quiet_and_other_interfaces_are_warned_about():
    assert exposure_warning("127.0.0.1", curve=False) is None
    assert exposure_warning("::1", curve=False) is None
    assert exposure_warning("localhost", curve=False) is None
    assert "--no-curve" in exposure_warning("10.1.2.3", curve=False)
    assert exposure_warning("10.1.2.3", curve=True) is None


def test_a_curve_hub_talks_only_to_clients_holding_its_public_key():
    with Cluster(n=1, curve=True, timeout=60) as rc:
        info = json.loads(rc.connection_file.read_text())
        assert info["curve_serverkey"]
        assert "bulk_path" not in info and "bulk_port" not in info, "no plaintext stream beside encrypted sockets"
        assert rc[0].apply_sync(lambda: "encrypted round trip") == "encrypted round trip"
        assert hub_info_reply(info, info["curve_serverkey"], wait=10)["status"] == "ok"
        # the right HMAC key is not enough: without CurveZMQ the hub never hears the request
        assert hub_info_reply(info, None, wait=2) is None
        assert rc[0].apply_sync(lambda: "still serving") == "still serving"


def test_a_hub_beyond_loopback_encrypts_unless_told_not_to_by_name():
    address = host_address()
    if address is None:
        pytest.skip("this host has no address beyond loopback")
    cluster = Cluster(n=1, ip=address, timeout=60)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster.start()
    try:
        assert not [w for w in caught if "without encryption" in str(w.message)]
        info = json.loads(connection.client_file(cluster.profile, cluster.cluster_id).read_text())
        assert info["curve_serverkey"], "a hub beyond loopback encrypts by default"
        assert hub_info_reply(info, None, wait=2) is None, "a plain client is not heard"
        with cluster.connect_client() as rc:
            assert rc[0].apply_sync(lambda: 2) == 2
    finally:
        cluster.stop()


def test_a_hub_beyond_loopback_without_curve_is_warned_about():
    address = host_address()
    if address is None:
        pytest.skip("this host has no address beyond loopback")
    cluster = Cluster(n=1, ip=address, timeout=60, curve=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cluster.start()
    try:
        assert any("without encryption" in str(w.message) for w in caught), [str(w.message) for w in caught]
        rc = cluster.connect_client()
        assert rc[0].apply_sync(lambda: 2) == 2
        rc.close()
        assert "without encryption" in cluster.log_file.read_text()
    finally:
        cluster.stop()
