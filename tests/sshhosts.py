"""Other hosts on one machine: network namespaces joined to this one by veth pairs, each running sshd.

Each "host" is a network namespace with one end of a veth pair (a /30 of
10.231.0.0/16 that no interface of this machine uses yet), the other end on
this side, and Debian's sshd listening on the namespace's address only,
with a throwaway host key, port and authorized key.  The client side is an
ssh config file (``ssh -F``) naming each host, with a throwaway key.  The
namespaces share the filesystem, so the same Python runs "remotely".
Everything is removed on exit, even when the body failed.
"""
from __future__ import annotations

import contextlib
import getpass
import os
import random
import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
SSH_PORT = 2222
#: variables the test's ssh sends and its sshd accepts: the engines must import this checkout's pxmagic
FORWARDED_ENV = "PYTHONPATH IPYTHONDIR JUPYTER_PATH"


class NamespacesRefused(RuntimeError):
    """The kernel does not let this process create network namespaces (no CAP_NET_ADMIN)."""


@dataclass
class SshHost:
    name: str  # the ssh config's Host alias, and the namespace's name
    address: str  # the namespace's end of the veth
    hub_address: str  # this side's end of the veth

    @property
    def netns_inode(self) -> int:
        """Identifies the namespace: a process runs in it iff its /proc/PID/ns/net has this inode."""
        return os.stat(f"/run/netns/{self.name}").st_ino


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=20)


def _free_subnet() -> int:
    """A third octet X such that no interface here has an address in 10.231.X.0/24."""
    used = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=True, timeout=20).stdout
    free = [x for x in range(256) if f" 10.231.{x}." not in used]
    if not free:
        raise RuntimeError("every 10.231.X.0/24 is in use on this machine")
    return random.choice(free)


def _wait_for_port(address: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(OSError), socket.create_connection((address, port), timeout=1):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"sshd did not listen on {address}:{port} within {timeout:.0f} s")
        time.sleep(0.1)


@contextlib.contextmanager
def ssh_hosts(count: int, directory: Path) -> Iterator[tuple[list[SshHost], Path]]:
    """``count`` hosts reachable by ssh; yields them and the ssh config file that names them.

    A hub bound to the first host's ``hub_address`` is reachable from all of them.
    """
    tag = secrets.token_hex(3)
    subnet = _free_subnet()
    hosts: list[SshHost] = []
    sshds: list[subprocess.Popen] = []
    links: list[str] = []
    try:
        probe = subprocess.run(["ip", "netns", "add", f"pxm{tag}0"], capture_output=True, text=True, timeout=20)
        if probe.returncode != 0:
            raise NamespacesRefused(f"`ip netns add` was refused: {probe.stderr.strip()}")
        hosts.append(SshHost(f"pxm{tag}0", f"10.231.{subnet}.2", f"10.231.{subnet}.1"))
        for i in range(1, count):
            _ip("netns", "add", f"pxm{tag}{i}")
            hosts.append(SshHost(f"pxm{tag}{i}", f"10.231.{subnet}.{4 * i + 2}", f"10.231.{subnet}.{4 * i + 1}"))
        for i, host in enumerate(hosts):
            outside, inside = f"pxh{tag}{i}", f"pxn{tag}{i}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
            links.append(outside)
            _ip("link", "set", inside, "netns", host.name)
            _ip("addr", "add", f"{host.hub_address}/30", "dev", outside)
            _ip("link", "set", outside, "up")
            _ip("-n", host.name, "addr", "add", f"{host.address}/30", "dev", inside)
            _ip("-n", host.name, "link", "set", inside, "up")
            _ip("-n", host.name, "link", "set", "lo", "up")
            # the hub binds one address (the first host's side): the others reach it through this side
            _ip("-n", host.name, "route", "add", "default", "via", host.hub_address)
        keygen = ["ssh-keygen", "-q", "-t", "ed25519", "-N", ""]
        subprocess.run([*keygen, "-f", str(directory / "host_key")], check=True, timeout=20)
        subprocess.run([*keygen, "-f", str(directory / "client_key")], check=True, timeout=20)
        (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege separation directory
        config_lines = []
        for host in hosts:
            sshd_config = directory / f"sshd_{host.name}.conf"
            sshd_config.write_text(
                f"Port {SSH_PORT}\nListenAddress {host.address}\nHostKey {directory / 'host_key'}\n"
                f"AuthorizedKeysFile {directory / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
                f"PasswordAuthentication no\nUsePAM no\nStrictModes no\nAcceptEnv {FORWARDED_ENV}\n"
                f"PidFile {directory / f'sshd_{host.name}.pid'}\n"
            )
            sshds.append(subprocess.Popen(["ip", "netns", "exec", host.name, SSHD, "-D", "-e", "-f",
                                           str(sshd_config)], stderr=open(directory / f"sshd_{host.name}.log", "w")))
            config_lines += [
                f"Host {host.name}", f"  HostName {host.address}", f"  Port {SSH_PORT}",
                f"  User {getpass.getuser()}", f"  IdentityFile {directory / 'client_key'}",
                "  IdentitiesOnly yes", "  StrictHostKeyChecking no", "  UserKnownHostsFile /dev/null",
                "  LogLevel ERROR", f"  SendEnv {FORWARDED_ENV}",
            ]
        ssh_config = directory / "ssh_config"
        ssh_config.write_text("\n".join(config_lines) + "\n")
        for host in hosts:
            _wait_for_port(host.address, SSH_PORT, timeout=15)
        yield hosts, ssh_config
    finally:
        for sshd in sshds:
            sshd.kill()
            sshd.wait(10)
        for link in links:  # deleting one end of a veth deletes both
            subprocess.run(["ip", "link", "del", link], capture_output=True, timeout=20)
        for host in hosts:
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True, timeout=20)
