"""The host firewall a node's cloud-init sets up, run by the real ufw in a throw-away network
namespace (its /etc/ufw a copy, bind-mounted in a mount namespace of its own: the machine's firewall
is not touched), with a second namespace on a veth pair as the other nodes. From inside the private
range the swarm ports and ESP reach the host; from outside they are dropped; and a single-node
document admits neither."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from render import cloud_init, cluster
from tests.tool_requirements import require_root, require_tool

PRIVATE_CIDR = "10.0.0.0/16"
HOST_PRIVATE, PEER_PRIVATE = "10.0.1.5", "10.0.1.9"
HOST_OUTSIDE, PEER_OUTSIDE = "192.0.2.5", "192.0.2.9"
COUNTER = re.compile(r" -c ([0-9]+) [0-9]+")

# One probe from the peer: the outcome of a TCP connect (refused: the SYN reached the host's
# stack, where nothing listens; timeout: dropped), or a UDP datagram / raw ESP packet sent.
PROBE = """
import socket, sys
proto, source, target, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
if proto == "tcp":
    s = socket.socket()
    s.settimeout(1.0)
    s.bind((source, 0))
    try:
        s.connect((target, port))
        print("connected")
    except ConnectionRefusedError:
        print("refused")
    except TimeoutError:
        print("timeout")
elif proto == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((source, 0))
    s.sendto(b"probe", (target, port))
    print("sent")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 50)
    s.bind((source, 0))
    s.sendto(b"\\x00\\x00\\x10\\x01" + b"\\x00\\x00\\x00\\x01" + b"x" * 16, (target, 0))
    print("sent")
"""


@dataclass
class Namespaces:
    host: str
    peer: str
    ip: str

    def probe(self, proto: str, source: str, port: int = 0) -> str:
        result = subprocess.run(
            [self.ip, "netns", "exec", self.peer, sys.executable, "-c", PROBE, proto, source, HOST_PRIVATE
             if source == PEER_PRIVATE else HOST_OUTSIDE, str(port)],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        return result.stdout.strip()

    def counters(self, iptables: str) -> dict[str, int]:
        """The packets each keel rule of ufw-user-input accepted, by its rule text."""
        result = subprocess.run(
            [self.ip, "netns", "exec", self.host, iptables, "-S", "ufw-user-input", "-v"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        counts = {}
        for line in result.stdout.splitlines():
            found = COUNTER.search(line)
            if found and "-s 10.0.0.0/16" in line:
                counts[COUNTER.sub("", line)] = int(found.group(1))
        return counts


@contextmanager
def namespaces(ip: str) -> Iterator[Namespaces]:
    suffix = f"{os.getpid()}-{id(object()) % 10000}"
    ns = Namespaces(host=f"keel-fw-host-{suffix}", peer=f"keel-fw-peer-{suffix}", ip=ip)
    commands = [
        ["netns", "add", ns.host],
        ["netns", "add", ns.peer],
        ["link", "add", "keel-h", "netns", ns.host, "type", "veth", "peer", "name", "keel-p", "netns", ns.peer],
        ["-n", ns.host, "addr", "add", f"{HOST_PRIVATE}/16", "dev", "keel-h"],
        ["-n", ns.host, "addr", "add", f"{HOST_OUTSIDE}/24", "dev", "keel-h"],
        ["-n", ns.peer, "addr", "add", f"{PEER_PRIVATE}/16", "dev", "keel-p"],
        ["-n", ns.peer, "addr", "add", f"{PEER_OUTSIDE}/24", "dev", "keel-p"],
        *([["-n", name, "link", "set", dev, "up"] for name, dev in ((ns.host, "keel-h"), (ns.peer, "keel-p"))]),
        *([["-n", name, "link", "set", "lo", "up"] for name in (ns.host, ns.peer)]),
    ]
    try:
        for command in commands:
            subprocess.run([ip, *command], check=True, capture_output=True, timeout=30)
        yield ns
    finally:
        for name in (ns.host, ns.peer):
            subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=30)


def enable_firewall(ns: Namespaces, spec: cloud_init.CloudInitSpec, tmp_path: Path) -> None:
    """The document's ufw commands, in its order, in the host namespace with a copy of /etc/ufw."""
    etc = tmp_path / "etc-ufw"
    shutil.copytree("/etc/ufw", etc, symlinks=True)
    default = tmp_path / "default-ufw"
    shutil.copy("/etc/default/ufw", default)
    ufw_commands = [command for command in cloud_init.cloud_config(spec)["runcmd"] if command[0] == "ufw"]
    assert ufw_commands[-1] == ["ufw", "--force", "enable"]
    script = " && ".join(
        [
            f"mount --bind {shlex.quote(str(etc))} /etc/ufw",
            f"mount --bind {shlex.quote(str(default))} /etc/default/ufw",
            *(shlex.join(command) for command in ufw_commands),
        ]
    )
    result = subprocess.run(
        [ns.ip, "netns", "exec", ns.host, "unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def spec(**overrides: object) -> cloud_init.CloudInitSpec:
    values: dict[str, object] = dict(
        deploy_user="deploy",
        admin_ssh_keys=("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGmtrCxHTDSu4Fgp8J ops@example.com",),
        host_private_key="-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
        host_public_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOK12 host\n",
        advertise_addr="198.51.100.10",
        data_device=None,
    )
    values.update(overrides)
    return cloud_init.CloudInitSpec(**values)  # type: ignore[arg-type]


@pytest.fixture
def tools() -> tuple[str, str]:
    require_root("network and mount namespaces of its own")
    require_tool("ufw")
    require_tool("unshare")
    require_tool("iptables-restore")
    return require_tool("ip"), str(Path(require_tool("iptables-restore")).with_name("iptables"))


def test_swarm_ports_and_esp_reach_a_node_from_the_private_network_only(tools: tuple[str, str], tmp_path: Path):
    ip, iptables = tools
    with namespaces(ip) as ns:
        enable_firewall(ns, spec(private_cidr=PRIVATE_CIDR, swarm="join"), tmp_path)
        # 2377/tcp: inside, the SYN reaches the host (refused: nothing listens here); outside, dropped.
        assert ns.probe("tcp", PEER_PRIVATE, 2377) == "refused"
        assert ns.probe("tcp", PEER_OUTSIDE, 2377) == "timeout"
        assert ns.probe("tcp", PEER_PRIVATE, 7946) == "refused"
        assert ns.probe("tcp", PEER_OUTSIDE, 7946) == "timeout"
        # A port the swarm does not use stays closed from inside too.
        assert ns.probe("tcp", PEER_PRIVATE, 2376) == "timeout"
        for port in (7946, 4789):
            assert ns.probe("udp", PEER_PRIVATE, port) == "sent"
            assert ns.probe("udp", PEER_OUTSIDE, port) == "sent"
        assert ns.probe("esp", PEER_PRIVATE) == "sent"
        assert ns.probe("esp", PEER_OUTSIDE) == "sent"
        counts = ns.counters(iptables)
    # Each rule admitted exactly the one packet that came from inside the range.
    assert counts == {
        "-A ufw-user-input -s 10.0.0.0/16 -p tcp -m tcp --dport 2377 -j ACCEPT": 1,
        "-A ufw-user-input -s 10.0.0.0/16 -p tcp -m tcp --dport 7946 -j ACCEPT": 1,
        "-A ufw-user-input -s 10.0.0.0/16 -p udp -m udp --dport 7946 -j ACCEPT": 1,
        "-A ufw-user-input -s 10.0.0.0/16 -p udp -m udp --dport 4789 -j ACCEPT": 1,
        "-A ufw-user-input -s 10.0.0.0/16 -p esp -j ACCEPT": 1,
    }, counts
    assert {(proto, port) for proto, port in cluster.SWARM_PORTS} == {("tcp", 2377), ("tcp", 7946), ("udp", 7946),
                                                                       ("udp", 4789)}  # fmt: skip


def test_a_single_node_host_admits_no_swarm_port(tools: tuple[str, str], tmp_path: Path):
    ip, iptables = tools
    with namespaces(ip) as ns:
        enable_firewall(ns, spec(), tmp_path)
        assert ns.probe("tcp", PEER_PRIVATE, 2377) == "timeout"
        assert ns.probe("tcp", PEER_PRIVATE, 22) == "refused", "the firewall is up and admits ssh"
        assert ns.counters(iptables) == {}
